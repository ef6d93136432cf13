from django.contrib import admin
from django.urls import include, path

from hmi.streams import event_stream

from .api import api
from .health import health

urlpatterns = [
    path("health", health, name="health"),
    path("metrics", include("pas_core.metrics")),
    path("admin/", admin.site.urls),
    path("api/", api.urls),
    path("events/stream", event_stream, name="event-stream"),
    path("", include("hmi.urls")),
]
