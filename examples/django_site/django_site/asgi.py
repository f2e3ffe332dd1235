"""The ASGI entry point: ``pronghorn --chdir examples/django_site django_site.asgi:application``.

``application`` is a coroutine callable, so pronghorn serves it as ASGI without ``-k asgi``. Django
answers HTTP only: it refuses the lifespan protocol, which pronghorn then skips (logging that it is
not used), and it has no WebSockets of its own (Channels or a small ASGI router adds them).
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "django_site.settings")

application = get_asgi_application()
