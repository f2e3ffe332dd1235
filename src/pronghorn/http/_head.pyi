from typing import Any, Literal

def scan_head(
    buf: bytes | bytearray, start: int, line_type: type, caps: tuple[int, int, int, int], /
) -> tuple[Any, ...] | Literal[False] | None: ...

def new_tuple(cls: type, /, *items: object) -> Any: ...
