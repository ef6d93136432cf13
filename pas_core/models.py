"""PAS data: the agent tree, runs, jobs, attempts, and what happened to them."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models


class Role(models.TextChoices):
    ROOT = "root"
    ARCHITECT = "architect"
    DIRECTOR = "director"
    MANAGER = "manager"
    PROGRAMMER = "programmer"


class Lane(models.TextChoices):
    CODE = "Code"
    MODELS = "Models"
    DATA = "Data"
    DEVSECOPS = "DevSecOps"
    DOCS = "Docs"


class Agent(models.Model):
    """One node of the supervision tree. Its id (e.g. ``Dir-Code``) is its primary key."""

    class Status(models.TextChoices):
        IDLE = "idle"
        WORKING = "working"
        LATE = "late"
        TIMED_OUT = "timed_out"
        RESTARTING = "restarting"
        ESCALATED = "escalated"
        FAILED = "failed"
        DISABLED = "disabled"

    agent_id = models.CharField(max_length=64, primary_key=True)
    role = models.CharField(max_length=16, choices=Role.choices)
    lane = models.CharField(max_length=16, choices=Lane.choices, blank=True)
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="children"
    )
    description = models.CharField(max_length=200, blank=True)
    primary_model = models.CharField(max_length=128, blank=True)
    fallback_models = models.JSONField(default=list, blank=True)
    current_model = models.CharField(max_length=128, blank=True)
    enabled = models.BooleanField(default=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.IDLE)
    # The agent's own supervision counters, for timeouts reported while it has no job
    # (the seed's handlers); a job's own counters are on the job.
    restart_count = models.PositiveIntegerField(default=0)
    llm_failure_count = models.PositiveIntegerField(default=0)
    position = models.PositiveIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["position", "agent_id"]

    def __str__(self) -> str:
        return self.agent_id

    @property
    def model_chain(self) -> list[str]:
        """Return the primary model followed by the fallbacks, without repeats."""
        chain: list[str] = []
        for model in [self.primary_model, *self.fallback_models]:
            if model and model not in chain:
                chain.append(model)
        return chain

    @property
    def model_switched(self) -> bool:
        return bool(self.current_model) and self.current_model != self.primary_model


class Run(models.Model):
    """One Prime Directive, from submission to its end."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        COMPLETED = "completed"
        FAILED = "failed"

    run_id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    title = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    goal = models.TextField()
    repo_root = models.CharField(max_length=500, blank=True)
    entry_files = models.JSONField(default=list, blank=True)
    # The directive's checks ({name: command}), accepted from operators only; the
    # repository's own ([tool.pas.checks]) are read from its base commit at the start.
    checks = models.JSONField(default=dict, blank=True)
    # With a git repository at repo_root: the run's branch (pas/<run8>) and the commit
    # it starts from (the repository's HEAD at submission). Blank: an artifacts folder.
    branch = models.CharField(max_length=100, blank=True)
    base_commit = models.CharField(max_length=64, blank=True)
    budget_tokens_max = models.PositiveIntegerField(default=25000)
    budget_cost_usd_max = models.FloatField(default=2.0)
    budget_wall_s = models.FloatField(null=True, blank=True)  # None: no wall-time budget.
    # What the run's model calls spent so far (failed attempts included), from the
    # providers' streamed usage.
    tokens_used = models.PositiveBigIntegerField(default=0)
    cost_usd = models.FloatField(default=0.0)
    stop_reason = models.CharField(max_length=200, blank=True)  # e.g. a budget it broke.
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    message = models.TextField(blank=True)
    summary = models.JSONField(default=dict, blank=True)
    submitted_by = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.title} ({self.status})"

    @property
    def duration_s(self) -> float | None:
        if not self.started_at:
            return None
        end = self.finished_at
        if end is None:
            from django.utils import timezone

            end = timezone.now()
        return round((end - self.started_at).total_seconds(), 3)


class Job(models.Model):
    """One job card for one agent. Its attempts are its executions."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        WAITING = "waiting"  # Delegated: waiting for its children to end.
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"

    TERMINAL = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)

    job_id = models.CharField(max_length=120, primary_key=True)
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="jobs")
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="children"
    )
    agent = models.ForeignKey(Agent, on_delete=models.PROTECT, related_name="jobs")
    lane = models.CharField(max_length=16, blank=True)
    card = models.JSONField(default=dict)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    restart_count = models.PositiveIntegerField(default=0)
    llm_failure_count = models.PositiveIntegerField(default=0)
    result = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True)
    retryable = models.BooleanField(default=False)
    current_attempt = models.ForeignKey(
        "Attempt", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "job_id"]
        indexes = [models.Index(fields=["run", "status"]), models.Index(fields=["status"])]

    def __str__(self) -> str:
        return self.job_id

    @property
    def is_terminal(self) -> bool:
        return self.status in self.TERMINAL


class Attempt(models.Model):
    """One execution of a job. ``number`` is the fencing generation."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        ERRORED = "errored"
        TIMED_OUT = "timed_out"
        KILLED = "killed"

    class Phase(models.TextChoices):
        STEP = "step"  # The role's step: plan and delegate, or do the work.
        AGGREGATE = "aggregate"  # Roll the children's results up.

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="attempts")
    number = models.PositiveIntegerField()
    phase = models.CharField(max_length=16, choices=Phase.choices, default=Phase.STEP)
    agent = models.ForeignKey(Agent, on_delete=models.PROTECT, related_name="attempts")
    model = models.CharField(max_length=128, blank=True)
    celery_task_id = models.CharField(max_length=64, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    last_heartbeat_at = models.DateTimeField(null=True, blank=True)
    progress = models.FloatField(default=0.0)
    message = models.CharField(max_length=500, blank=True)
    state = models.CharField(max_length=32, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    error_kind = models.CharField(max_length=32, blank=True)
    error = models.TextField(blank=True)
    # A restart that backs off is sent with a delay: until then it waits (queued).
    not_before = models.DateTimeField(null=True, blank=True)
    # A provider that answered 429 asked to be left alone this long.
    retry_after_s = models.FloatField(null=True, blank=True)
    tokens = models.PositiveIntegerField(default=0)
    cost_usd = models.FloatField(default=0.0)

    class Meta:
        ordering = ["job", "number"]
        constraints = [
            models.UniqueConstraint(fields=["job", "number"], name="attempt_unique_number")
        ]
        indexes = [models.Index(fields=["status"]), models.Index(fields=["agent", "status"])]

    def __str__(self) -> str:
        return f"{self.job_id}#{self.number}"


class Event(models.Model):
    """Append-only record of everything that happened; its id is the SSE id."""

    id = models.BigAutoField(primary_key=True)
    event_type = models.CharField(max_length=64, db_index=True)
    agent_id = models.CharField(max_length=64, blank=True, db_index=True)
    run_id = models.CharField(max_length=64, blank=True, db_index=True)
    job_id = models.CharField(max_length=120, blank=True)
    data = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.id} {self.event_type}"


class CommsMessage(models.Model):
    """One line of the comms log, also appended to the day's file."""

    class Kind(models.TextChoices):
        CMD = "CMD"
        STATUS = "STATUS"
        HEARTBEAT = "HEARTBEAT"
        RESPONSE = "RESPONSE"

    ts = models.DateTimeField(db_index=True)
    sender = models.CharField(max_length=64, db_index=True)
    recipient = models.CharField(max_length=64)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    message = models.TextField()
    llm_model = models.CharField(max_length=128, blank=True)
    run_id = models.CharField(max_length=64, blank=True, db_index=True)
    status = models.CharField(max_length=32, blank=True)
    progress = models.FloatField(null=True, blank=True)
    metadata = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["ts", "id"]

    def __str__(self) -> str:
        return f"{self.sender}→{self.recipient} {self.kind}"


class HhmrsSettings(models.Model):
    """The one row of live-editable supervision settings (see pas_core.config)."""

    heartbeat_interval_s = models.FloatField(default=30)
    timeout_threshold_s = models.FloatField(default=60)
    missed_heartbeat_threshold = models.PositiveIntegerField(default=2)
    max_restarts = models.PositiveIntegerField(default=3)
    max_llm_retries = models.PositiveIntegerField(default=3)
    enable_auto_restart = models.BooleanField(default=True)
    enable_llm_switching = models.BooleanField(default=True)
    sweep_interval_s = models.FloatField(default=5)
    restart_backoff_initial_s = models.FloatField(default=1)
    restart_backoff_factor = models.FloatField(default=2)
    restart_backoff_max_s = models.FloatField(default=60)
    restart_backoff_jitter = models.FloatField(default=0.2)
    tron_chime = models.JSONField(default=dict, blank=True)
    notifications = models.JSONField(default=dict, blank=True)
    hmi_display = models.JSONField(default=dict, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "HHMRS settings"
        verbose_name_plural = "HHMRS settings"

    def __str__(self) -> str:
        return "HHMRS settings"


class Notification(models.Model):
    """A permanent failure (or other notice) for a person to read."""

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    level = models.CharField(max_length=16, default="error")
    title = models.CharField(max_length=200)
    body = models.TextField(blank=True)
    # The rung of the ladder that gave up, or the error kind that skipped it.
    reason = models.CharField(max_length=64, blank=True)
    run = models.ForeignKey(Run, null=True, blank=True, on_delete=models.CASCADE)
    job = models.ForeignKey(Job, null=True, blank=True, on_delete=models.CASCADE)
    agent_id = models.CharField(max_length=64, blank=True)
    read = models.BooleanField(default=False)
    delivery = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.title


class ApiToken(models.Model):
    """A bearer token; only its SHA-256 is stored. Bound to an agent, it may only beat."""

    name = models.CharField(max_length=100)
    token_hash = models.CharField(max_length=64, unique=True)
    prefix = models.CharField(max_length=12)
    agent = models.ForeignKey(Agent, null=True, blank=True, on_delete=models.CASCADE)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked = models.BooleanField(default=False)

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"


class Fault(models.Model):
    """An injected fault: the next ``remaining`` attempts of the agent misbehave."""

    class Kind(models.TextChoices):
        HANG = "hang"
        CRASH = "crash"
        ERROR = "error"
        SLOW = "slow"
        BAD_OUTPUT = "bad_output"
        SPIN = "spin"  # A CPU busy loop that never returns to the interpreter.
        # A Programmer's output is made to fail its checks (a failing test is added).
        FAILING_OUTPUT = "failing_output"

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="faults")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    remaining = models.PositiveIntegerField(default=1)
    model = models.CharField(max_length=128, blank=True)
    created_by = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.kind} x{self.remaining} on {self.agent_id}"


class Provider(models.Model):
    """An OpenAI-compatible endpoint; model ids ``<name>/<model>`` are served by it.

    Keys never live here: ``key_env`` names the environment variable that holds one.
    """

    class Structured(models.TextChoices):
        JSON_SCHEMA = "json_schema"  # response_format json_schema: the reply is constrained.
        JSON_OBJECT = "json_object"  # response_format json_object: JSON, schema unchecked.
        NONE = "none"  # No response_format at all; the reply is validated all the same.

    name = models.CharField(max_length=32, primary_key=True)
    base_url = models.CharField(max_length=300, blank=True)
    base_url_env = models.CharField(max_length=64, blank=True)
    key_env = models.CharField(max_length=64, blank=True)
    # False: a call goes out without a key when key_env is unset (a local server).
    key_required = models.BooleanField(default=True)
    max_concurrency = models.PositiveIntegerField(default=8)
    structured = models.CharField(
        max_length=16, choices=Structured.choices, default=Structured.JSON_OBJECT
    )
    builtin = models.BooleanField(default=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name
