"""Connections of PostgreSQL tasks: connect with a timeout, report failures, honour kills.

Shared by the ``io.kestra.plugin.jdbc.postgresql.*`` tasks and flowhawk's own PostgreSQL
tasks. Every message built here names the target as ``postgresql://user@host:port/db``
and never carries the password.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace

import psycopg
from psycopg.conninfo import make_conninfo

from flowhawk.errors import TaskError, TaskKilled
from flowhawk.tasks.base import TaskContext
from flowhawk.util.jdbc import PgTarget, jdbc_settings, parse_pg_url

#: seconds libpq waits for the server before giving up, unless the URL says otherwise
DEFAULT_CONNECT_TIMEOUT = 10

#: how often the kill watcher looks at the task's cancel event
_WATCH_INTERVAL = 0.1


def resolve_target(
    ctx: TaskContext,
    url: str,
    username: str | None = None,
    password: str | None = None,
    extra_params: Mapping[str, str] | None = None,
) -> PgTarget:
    """Parse the task's connection properties and mask the password in every log line.

    With no ``url`` at all (none in the task, none from pluginDefaults) the task uses the
    database flowhawk keeps its own state in (the embedded one by default).
    """
    if not url:
        fallback = getattr(ctx, "default_database_url", None)
        if not fallback:
            raise TaskError(
                "no PostgreSQL `url` given (set it on the task or with pluginDefaults, e.g."
                " jdbc:postgresql://localhost:5432/db)"
            )
        settings = jdbc_settings(fallback)
        url = settings["url"]
        username = username or settings.get("username")
        password = password if password is not None else settings.get("password")
    target = parse_pg_url(url, username or None, password)
    if target.password:
        ctx.register_secret(target.password)
    if extra_params:
        known = {key for key, _ in target.params}
        added = tuple((k, v) for k, v in extra_params.items() if k not in known)
        target = replace(target, params=target.params + added)
    return target


def connect_target(target: PgTarget, *, autocommit: bool = True) -> psycopg.Connection:
    """Open a connection to ``target``; a failure is a TaskError without the password."""
    keys = {key for key, _ in target.params}
    extras: dict[str, str | int] = {}
    if "connect_timeout" not in keys:
        extras["connect_timeout"] = DEFAULT_CONNECT_TIMEOUT
    if "application_name" not in keys:
        extras["application_name"] = "flowhawk"
    try:
        conninfo = make_conninfo(target.conninfo(), **extras)
        return psycopg.connect(conninfo, autocommit=autocommit)
    except psycopg.Error as exc:
        reason = first_line(str(exc)).removeprefix("connection failed: ")
        raise TaskError(
            f"cannot connect to PostgreSQL at {target.display()}: {hide(reason, target.password)}"
        ) from None


def connect_task(
    ctx: TaskContext,
    url: str,
    username: str | None = None,
    password: str | None = None,
    *,
    extra_params: Mapping[str, str] | None = None,
    autocommit: bool = True,
) -> psycopg.Connection:
    """Connect a task to PostgreSQL given its ``url`` (JDBC or libpq URL) and credentials.

    ``extra_params`` are libpq keywords (``sslmode``, ``sslrootcert``...) added unless the
    URL already sets them. The connection is in autocommit mode by default: callers open
    transactions explicitly with ``conn.transaction()``.
    """
    return connect_target(
        resolve_target(ctx, url, username, password, extra_params), autocommit=autocommit
    )


@contextmanager
def kill_watch(ctx: TaskContext, conn: psycopg.Connection) -> Iterator[None]:
    """Cancel the running statement of ``conn`` as soon as ``ctx.cancel_event`` is set.

    The statement then fails with ``QueryCanceled``; callers turn that into TaskKilled
    with :func:`raise_if_killed`.
    """
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            if ctx.cancel_event.wait(_WATCH_INTERVAL):
                if not done.is_set():
                    try:
                        conn.cancel_safe(timeout=5)
                    except psycopg.Error:
                        pass
                return

    watcher = threading.Thread(target=watch, name=f"pg-kill-{ctx.task_id}", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        # no join: the daemon watcher sees `done` at its next wake-up and leaves without
        # touching the connection; joining would add up to one interval to every statement
        done.set()


def raise_if_killed(ctx: TaskContext, what: str = "") -> None:
    """Raise TaskKilled when the execution was killed."""
    if ctx.cancel_event.is_set():
        suffix = f" {what}" if what else ""
        raise TaskKilled(f"task `{ctx.task_id}` killed{suffix}")


def describe_pg_error(exc: psycopg.Error, password: str | None = None) -> str:
    """The server's message with its detail and hint, one per line, password hidden."""
    diag = exc.diag
    primary = diag.message_primary or first_line(str(exc)) or type(exc).__name__
    parts = [primary]
    if diag.message_detail:
        parts.append(f"DETAIL: {diag.message_detail}")
    if diag.message_hint:
        parts.append(f"HINT: {diag.message_hint}")
    if diag.context and diag.sqlstate and not diag.sqlstate.startswith("42"):
        parts.append(f"CONTEXT: {first_line(diag.context)}")
    return hide("\n".join(parts), password)


def first_line(text: str) -> str:
    return text.strip().splitlines()[0].strip() if text.strip() else ""


def hide(text: str, secret: str | None) -> str:
    return text.replace(secret, "***") if secret else text
