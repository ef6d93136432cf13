"""ASGI entry point: the lean heartbeat route in front of Django (static files included)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pas_core.settings")
django_asgi = get_asgi_application()

from channels.routing import ProtocolTypeRouter  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402

from pas_core.heartbeat_asgi import heartbeat_front  # noqa: E402

application = ProtocolTypeRouter({"http": heartbeat_front(ASGIStaticFilesHandler(django_asgi))})
