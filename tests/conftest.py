"""The shared test harness: an isolated Redis per session, per-test artifacts, fixtures.

Several test sessions may run at once against one Redis server. At import time (pytest
has configured Django, nothing has touched Redis yet) this session claims a free
database 1..15 with ``SET pastest:db:<N> <pid> NX EX 3600`` on database 0, points every
Redis user (``REDIS_URL``, Celery's broker, the channel layer) at it, and gives its keys
and pub/sub channels the prefix ``pastest-<pid>`` (pub/sub channels are not per
database). The claim is released at session end; a crashed session's claim expires.
That database is flushed before every test, so Redis state (heartbeats, Celery queues
and bindings) never outlives the test that made it: start real processes per test.

Child processes (real Celery workers, Daphne, beat: see ``tests/procs.py``) get the
same database, Redis and artifacts directory through ``proc_env``. Tests that use them
are ``@pytest.mark.django_db(transaction=True)``: their writes must be committed for
another process to see them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import pytest
import redis as redis_lib
from django.conf import settings

from tests import procs

SQLITE_ENGINES = ("django.db.backends.sqlite3", "pas_core.sqlite")
BASE_REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
LOCK_TTL_S = 3600


def _redis_url(base: str, db: int) -> str:
    """Return ``base`` pointing at database ``db`` (path form, any ``?db=`` dropped)."""
    parts = urlsplit(base)
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query) if k != "db"])
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", query, parts.fragment))


def _claim_redis_db() -> tuple[int, str]:
    """Claim a free Redis database 1..15 for this session; return its number and URL."""
    control = redis_lib.Redis.from_url(_redis_url(BASE_REDIS_URL, 0), socket_connect_timeout=2)
    try:
        for db in range(1, 16):
            if control.set(f"pastest:db:{db}", os.getpid(), nx=True, ex=LOCK_TTL_S):
                return db, _redis_url(BASE_REDIS_URL, db)
    except redis_lib.ConnectionError as exc:
        raise pytest.UsageError(
            f"the tests need a Redis server at {BASE_REDIS_URL} (set REDIS_URL, or run "
            f"`make test`, which starts a private one): {exc}"
        ) from None
    finally:
        control.close()
    raise pytest.UsageError(
        "every Redis database 1..15 is claimed by another test session "
        "(keys pastest:db:N on database 0; they expire after an hour)"
    )


REDIS_DB, REDIS_URL = _claim_redis_db()
REDIS_PREFIX = f"pastest-{os.getpid()}"


def _isolate_redis() -> None:
    from pas_core.celery import app

    settings.REDIS_URL = REDIS_URL
    settings.CELERY_BROKER_URL = REDIS_URL
    settings.PAS_REDIS_PREFIX = REDIS_PREFIX
    layer = cast(dict[str, Any], settings.CHANNEL_LAYERS["default"]["CONFIG"])
    layer["hosts"] = [REDIS_URL]
    layer["prefix"] = REDIS_PREFIX
    app.conf.broker_url = REDIS_URL
    # Anything this process spawns without proc_env still lands on the test Redis.
    os.environ["REDIS_URL"] = REDIS_URL
    os.environ["PAS_REDIS_PREFIX"] = REDIS_PREFIX


_isolate_redis()

if settings.DATABASES["default"]["ENGINE"] in SQLITE_ENGINES:
    # The per-session test database file lives in .run/, which a fresh clone lacks.
    Path(settings.DATABASES["default"]["TEST"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)


def _test_redis() -> redis_lib.Redis:
    return redis_lib.Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=5)


def pytest_sessionstart(session: pytest.Session) -> None:
    _test_redis().flushdb()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    try:
        _test_redis().flushdb()
        control = redis_lib.Redis.from_url(_redis_url(BASE_REDIS_URL, 0))
        key = f"pastest:db:{REDIS_DB}"
        # Release only our own claim (it may have expired and been taken since).
        if control.get(key) == str(os.getpid()).encode():
            control.delete(key)
    except redis_lib.RedisError:
        pass  # The claim expires by itself.


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach the logs of every process a failed test started to its report."""
    report = yield
    if report.failed:
        report.sections.extend(procs.log_sections())
    return report


@pytest.fixture(autouse=True)
def _isolation(settings: Any, tmp_path: Path) -> Iterator[None]:
    """Give each test a fresh artifacts directory, an empty Redis database, no cached tokens."""
    from pas_core import auth

    settings.PAS_ARTIFACTS_DIR = tmp_path / "artifacts"
    client = _test_redis()
    client.flushdb()
    # Keep the claim alive through long sessions.
    redis_lib.Redis.from_url(_redis_url(BASE_REDIS_URL, 0)).expire(
        f"pastest:db:{REDIS_DB}", LOCK_TTL_S
    )
    auth._cache.clear()
    procs.test_started()
    yield
    procs.stop_all()


@pytest.fixture
def redis() -> redis_lib.Redis:
    """Return a Redis client on this session's test database."""
    from pas_core.stores.redis import redis_client

    return redis_client()


@pytest.fixture
def tree(db: None) -> dict[str, Any]:
    """Bootstrap the database (tree, settings row, sweep schedule); return agents by id.

    The ``admin`` superuser is created beforehand without a usable password: hashing
    one costs a noticeable fraction of a second per test, and bootstrap would otherwise
    write it to the developer's ``.run/admin-password``.
    """
    from django.contrib.auth import get_user_model

    from pas_core.bootstrap import bootstrap
    from pas_core.models import Agent

    user_model = get_user_model()
    if not user_model.objects.filter(username="admin").exists():
        user_model.objects.create_superuser("admin", "", None)
    bootstrap()
    return {agent.agent_id: agent for agent in Agent.objects.all()}


@pytest.fixture
def operator_user(db: None) -> Any:
    """Return a user in the ``operators`` group (not staff)."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    from pas_core.bootstrap import OPERATORS

    user = get_user_model().objects.create_user("operator", "", None)
    user.groups.add(Group.objects.get_or_create(name=OPERATORS)[0])
    return user


@pytest.fixture
def plain_user(db: None) -> Any:
    """Return a user with no group and no staff rights."""
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_user("visitor", "", None)


@pytest.fixture
def user_client(client: Any, operator_user: Any) -> Any:
    """Return a Django test client logged in as an operator.

    ``admin_client`` (pytest-django) is the superuser ``admin``; it reuses the one the
    ``tree`` fixture creates when both are used.
    """
    client.force_login(operator_user)
    return client


@pytest.fixture
def viewer(client: Any, tree: dict[str, Any], plain_user: Any) -> Any:
    """Return a test client logged in as a viewer (reads the HMI, may not act), tree loaded."""
    client.force_login(plain_user)
    return client


@pytest.fixture
def operator(client: Any, tree: dict[str, Any], operator_user: Any) -> Any:
    """Return a test client logged in as an operator, tree loaded."""
    client.force_login(operator_user)
    return client


@pytest.fixture
def api_token(db: None) -> str:
    """Return the plain text of a fresh full-API bearer token."""
    from pas_core.auth import token_create

    raw, _token = token_create(name="tests")
    return raw


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup: None, django_db_blocker: Any) -> Iterator[None]:
    """pytest-django's test database; on PostgreSQL, sessions a test left connected to
    it (a thread's connection, a child process slow to exit) are ended before it is
    dropped, so that no test database is left behind on the server."""
    yield
    from django.db import DatabaseError, connection

    if connection.vendor != "postgresql":
        return
    with django_db_blocker.unblock():
        try:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
        except DatabaseError:
            pass  # Django's teardown says so if the database cannot be dropped.


@pytest.fixture
def proc_env(django_db_setup: None, settings: Any) -> Callable[..., dict[str, str]]:
    """Return ``make(**extra)``: the environment for a child process of this test.

    The child shares this session's test database, Redis database, key prefix, secret
    key (so sessions made here are valid there) and this test's artifacts directory.
    """

    def make(**extra: Any) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
        env.update(
            DATABASE_URL=database_url(),
            REDIS_URL=settings.REDIS_URL,
            PAS_REDIS_PREFIX=settings.PAS_REDIS_PREFIX,
            PAS_ARTIFACTS_DIR=str(settings.PAS_ARTIFACTS_DIR),
            DJANGO_SETTINGS_MODULE=os.environ.get("DJANGO_SETTINGS_MODULE", "pas_core.settings"),
            DJANGO_SECRET_KEY=settings.SECRET_KEY,
            PYTHONUNBUFFERED="1",
        )
        env.update({k: str(v) for k, v in extra.items()})
        return env

    return make


def database_url() -> str:
    """Return a DATABASE_URL for the database this process is connected to (the test one)."""
    from django.db import connection

    db = connection.settings_dict
    engine = db["ENGINE"]
    if engine in SQLITE_ENGINES:
        return f"sqlite:///{Path(db['NAME']).resolve()}"
    if engine == "django.db.backends.postgresql":
        auth = quote(db.get("USER") or "", safe="")
        if db.get("PASSWORD"):
            auth += ":" + quote(db["PASSWORD"], safe="")
        host = db.get("HOST") or "localhost"
        port = f":{db['PORT']}" if db.get("PORT") else ""
        return f"postgres://{auth + '@' if auth else ''}{host}{port}/{db['NAME']}"
    raise NotImplementedError(f"no DATABASE_URL for {engine}")
