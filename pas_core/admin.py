from __future__ import annotations

from django.contrib import admin

from .models import (
    Agent,
    ApiToken,
    Attempt,
    CommsMessage,
    Event,
    Fault,
    HhmrsSettings,
    Job,
    Notification,
    Run,
)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Append-only records: viewable and searchable, never edited by hand."""

    def has_add_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False

    def has_change_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False


@admin.register(Agent)
class AgentAdmin(admin.ModelAdmin):
    list_display = ("agent_id", "role", "lane", "parent", "status", "current_model", "enabled")
    list_filter = ("role", "lane", "status", "enabled")
    search_fields = ("agent_id", "current_model", "primary_model")


class JobInline(admin.TabularInline):
    model = Job
    fields = ("job_id", "agent", "status", "restart_count", "llm_failure_count")
    readonly_fields = fields
    extra = 0
    show_change_link = True
    can_delete = False


@admin.register(Run)
class RunAdmin(admin.ModelAdmin):
    list_display = ("title", "status", "created_at", "started_at", "finished_at")
    list_filter = ("status",)
    search_fields = ("title", "goal", "run_id")
    date_hierarchy = "created_at"
    inlines = [JobInline]


class AttemptInline(admin.TabularInline):
    model = Attempt
    fields = ("number", "phase", "model", "status", "started_at", "finished_at", "error_kind")
    readonly_fields = fields
    extra = 0
    can_delete = False


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = (
        "job_id",
        "run",
        "agent",
        "status",
        "restart_count",
        "llm_failure_count",
        "retryable",
    )
    list_filter = ("status", "retryable", "lane", "agent__role")
    search_fields = ("job_id", "agent__agent_id", "run__title", "run__run_id")
    raw_id_fields = ("run", "parent", "current_attempt")
    inlines = [AttemptInline]


@admin.register(Attempt)
class AttemptAdmin(ReadOnlyAdmin):
    list_display = ("__str__", "agent", "phase", "model", "status", "started_at", "error_kind")
    list_filter = ("status", "phase", "error_kind")
    search_fields = ("job__job_id", "agent__agent_id", "model")


@admin.register(Event)
class EventAdmin(ReadOnlyAdmin):
    list_display = ("id", "event_type", "agent_id", "run_id", "created_at")
    list_filter = ("event_type",)
    search_fields = ("agent_id", "run_id", "job_id", "event_type")


@admin.register(CommsMessage)
class CommsMessageAdmin(ReadOnlyAdmin):
    list_display = ("ts", "sender", "recipient", "kind", "message", "llm_model", "status")
    list_filter = ("kind", "sender")
    search_fields = ("sender", "recipient", "message", "run_id")


@admin.register(HhmrsSettings)
class HhmrsSettingsAdmin(admin.ModelAdmin):
    list_display = ("__str__", "heartbeat_interval_s", "timeout_threshold_s", "max_restarts")

    def has_add_permission(self, request):  # type: ignore[no-untyped-def]
        return not HhmrsSettings.objects.exists()


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    list_display = ("created_at", "level", "title", "agent_id", "read")
    list_filter = ("level", "read")
    search_fields = ("title", "body", "agent_id")


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ("name", "prefix", "agent", "created_at", "last_used_at", "revoked")
    list_filter = ("revoked",)
    search_fields = ("name", "prefix")
    readonly_fields = ("token_hash", "prefix", "created_at", "last_used_at")


@admin.register(Fault)
class FaultAdmin(admin.ModelAdmin):
    list_display = ("agent", "kind", "remaining", "model", "created_by", "created_at")
    list_filter = ("kind",)
