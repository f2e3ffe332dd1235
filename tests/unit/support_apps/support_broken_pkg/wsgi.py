"""Never importable: its package fails first."""
