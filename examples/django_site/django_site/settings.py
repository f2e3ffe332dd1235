"""Settings of the example Django site: no database, no static files, no installed apps.

Served by pronghorn from the repository root, as WSGI or as ASGI (see README.md)::

    pronghorn --chdir examples/django_site django_site.wsgi:application -w 2
    pronghorn --chdir examples/django_site django_site.asgi:application -w 2 -k asgi

Only what a site without models needs is set; everything else keeps Django's default.
"""

import os

# A real deployment reads its key from the environment (or a secrets store) and has no fallback.
# This one only signs the CSRF cookie of an example.
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-secret-4c1f9a2e7b")

# Off, as in production: errors get the plain 404/500 pages (or the handlers in urls.py), never
# a debug page with settings and tracebacks.
DEBUG = False

# Host headers this site answers; any other gets 400 Bad Request.
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "[::1]"]

# No models and no contrib apps, hence no database: DATABASES stays empty and nothing needs
# migrating.
INSTALLED_APPS: list[str] = []
DATABASES: dict[str, dict[str, str]] = {}

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "django_site.urls"
WSGI_APPLICATION = "django_site.wsgi.application"

TEMPLATES: list[dict[str, object]] = []  # the views answer JSON and text only

USE_TZ = True
TIME_ZONE = "UTC"
LANGUAGE_CODE = "en-us"
USE_I18N = False
