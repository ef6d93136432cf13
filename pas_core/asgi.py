"""ASGI entry point: the lean heartbeat and event-stream routes in front of Django."""

import gc
import os
import sys

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pas_core.settings")
django_asgi = get_asgi_application()

from channels.routing import ProtocolTypeRouter  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402
from django.urls import get_resolver  # noqa: E402

from hmi.streams import stream_front  # noqa: E402
from pas_core.heartbeat_asgi import heartbeat_front  # noqa: E402

application = ProtocolTypeRouter(
    {"http": heartbeat_front(stream_front(ASGIStaticFilesHandler(django_asgi)))}
)

# Everything imported so far lives as long as the process: move it out of the
# collector's sight, so a full collection (which walks every tracked object) costs
# what requests allocate, not the 250k objects of Django, Channels and Twisted. Its
# pauses were the tail of event delivery to hundreds of open streams.
get_resolver().url_patterns  # noqa: B018 - import every view now, before the freeze
gc.collect()
gc.freeze()

# Threads of this process (sync views, fragment rendering) hand the interpreter back to
# the event loop after at most this long instead of 5 ms: the loop serves heartbeats,
# and a beat waits for the interpreter at each of its few turns.
sys.setswitchinterval(0.001)
