"""The WSGI entry point: ``pronghorn --chdir examples/django_site django_site.wsgi:application``.

The settings module is chosen here, before Django is set up, unless the environment already
names one (``DJANGO_SETTINGS_MODULE=...`` wins over this default).
"""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "django_site.settings")

application = get_wsgi_application()
