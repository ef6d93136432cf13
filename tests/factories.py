"""factory_boy factories for the PAS models. Tests pass every value they assert on."""

from __future__ import annotations

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.utils import timezone

from pas_core.models import (
    Agent,
    Attempt,
    CommsMessage,
    Event,
    Fault,
    Job,
    Notification,
    Role,
    Run,
)


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    # No usable password: hashing one is slow; log in with client.force_login().
    password = factory.LazyFunction(lambda: make_password(None))


class AgentFactory(factory.django.DjangoModelFactory):
    """A programmer under no one, unless told otherwise."""

    class Meta:
        model = Agent
        django_get_or_create = ("agent_id",)

    agent_id = factory.Sequence(lambda n: f"Agent-{n:03d}")
    role = Role.PROGRAMMER
    lane = "Code"
    parent = None
    primary_model = "google/gemini-2.5-flash"
    fallback_models = factory.LazyFunction(
        lambda: ["ollama/llama3.1:8b", "anthropic/claude-sonnet-4-5"]
    )
    current_model = factory.SelfAttribute("primary_model")


class RunFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Run

    title = factory.Sequence(lambda n: f"Directive {n}")
    goal = "Make the tests pass"


class JobFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Job

    run = factory.SubFactory(RunFactory)
    agent = factory.SubFactory(AgentFactory)
    job_id = factory.LazyAttributeSequence(lambda o, n: f"jc-{str(o.run.run_id)[:8]}-{n}")
    lane = factory.SelfAttribute("agent.lane")
    card = factory.LazyFunction(dict)


class AttemptFactory(factory.django.DjangoModelFactory):
    """A running attempt that became the job's current one."""

    class Meta:
        model = Attempt
        skip_postgeneration_save = True  # current() writes with a queryset update.

    job = factory.SubFactory(JobFactory)
    number = factory.Sequence(lambda n: n + 1)
    agent = factory.SelfAttribute("job.agent")
    model = factory.SelfAttribute("agent.current_model")
    status = Attempt.Status.RUNNING
    started_at = factory.LazyFunction(timezone.now)

    @factory.post_generation
    def current(obj: Attempt, create: bool, extracted: bool | None, **kwargs: object) -> None:  # noqa: N805
        if create and extracted is not False:
            Job.objects.filter(pk=obj.job_id).update(current_attempt=obj)
            obj.job.current_attempt = obj


class EventFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Event

    event_type = "agent_status"
    data = factory.LazyFunction(dict)


class CommsMessageFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = CommsMessage

    ts = factory.LazyFunction(timezone.now)
    sender = "Architect"
    recipient = "Dir-Code"
    kind = CommsMessage.Kind.CMD
    message = "Do the work"


class FaultFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Fault

    agent = factory.SubFactory(AgentFactory)
    kind = Fault.Kind.HANG
    remaining = 1


class NotificationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Notification

    title = "Job permanently failed"


def time_out(attempt_id: int, *, now: float, last_beat: float) -> Attempt | None:
    """Time one attempt out as TRON does (a list of one); return it if this call won."""
    from pas_core.config import hhmrs_get
    from pas_core.services.supervision import attempts_time_out

    if attempts_time_out([(attempt_id, last_beat)], now=now, cfg=hhmrs_get()) != 1:
        return None
    return Attempt.objects.get(pk=attempt_id)
