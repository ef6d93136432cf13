from django.contrib.auth import views as auth_views
from django.urls import path

from .views import agents, logs, overview, retry, runs, search, settings, tree

app_name = "hmi"

urlpatterns = [
    path("login/", auth_views.LoginView.as_view(template_name="hmi/login.html"), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", tree.tree, name="tree"),
    path("tree/beats", tree.tree_beats, name="tree-beats"),
    path("overview/", overview.overview, name="overview"),
    path("search/", search.search_page, name="search"),
    path("agents/<str:agent_id>/", agents.agent, name="agent"),
    path("agents/<str:agent_id>/actions", tree.agent_actions, name="agent-actions"),
    path("agents/<str:agent_id>/restart", tree.agent_restart, name="agent-restart"),
    path("agents/<str:agent_id>/fault", tree.agent_fault, name="agent-fault"),
    path("agents/<str:agent_id>/model-reset", tree.agent_model_reset, name="agent-model-reset"),
    path("agents/<str:agent_id>/enabled", tree.agent_enabled, name="agent-enabled"),
    path("agents/<str:agent_id>/faults/clear", tree.agent_faults_clear, name="agent-faults-clear"),
    path("runs/", runs.runs, name="runs"),
    path("runs/<uuid:run_id>/", runs.run_detail, name="run-detail"),
    path("runs/<uuid:run_id>/retry", runs.run_retry, name="run-retry"),
    path("runs/<uuid:run_id>/files/<path:relpath>", runs.artifact, name="run-artifact"),
    path("retry/", retry.retry_queue, name="retry"),
    path("retry/bulk", retry.retry_bulk, name="retry-bulk"),
    path("retry/<str:job_id>/", retry.job_retry, name="job-retry"),
    path("retry/<str:job_id>/discard", retry.job_discard, name="job-discard"),
    path("notifications/", logs.notifications, name="notifications"),
    path("notifications/read-all", logs.notifications_read_all, name="notifications-read-all"),
    path("notifications/<int:pk>/read", logs.notification_read, name="notification-read"),
    path("events/", logs.events, name="events"),
    path("comms/", logs.comms, name="comms"),
    path("comms/download", logs.comms_download, name="comms-download"),
    path("settings/", settings.settings_page, name="settings"),
    path("settings/providers/", settings.provider_save_view, name="provider-save"),
    path("settings/providers/<str:name>/cap", settings.provider_cap, name="provider-cap"),
    path("settings/<str:section>/", settings.settings_save, name="settings-save"),
]
