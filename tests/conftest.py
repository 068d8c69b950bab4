"""Shared fixtures: a PostgreSQL database of this test run's own, and task contexts.

``FLOWHAWK_TEST_DATABASE_URL`` names a server to use (a fresh database is created on it
and dropped at the end); without it the embedded PostgreSQL (pgserver) is used.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import conninfo

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def _server_url() -> str:
    url = os.environ.get("FLOWHAWK_TEST_DATABASE_URL")
    if url:
        return url
    from flowhawk.store.db import embedded_url

    return embedded_url()


def _with_db(url: str, dbname: str) -> str:
    info = conninfo.conninfo_to_dict(url)
    info["dbname"] = dbname
    return conninfo.make_conninfo(**info)


@pytest.fixture(scope="session")
def pg_server_url() -> str:
    return _server_url()


def create_database(server_url: str, prefix: str = "fh_test") -> str:
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name


def drop_database(server_url: str, name: str) -> None:
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_url(pg_server_url: str) -> Iterator[str]:
    """A database of this test session's own, dropped at the end."""
    name = create_database(pg_server_url)
    yield _with_db(pg_server_url, name)
    drop_database(pg_server_url, name)


@pytest.fixture
def fresh_pg_url(pg_server_url: str) -> Iterator[str]:
    """A database of this one test's own."""
    name = create_database(pg_server_url, "fh_t")
    yield _with_db(pg_server_url, name)
    drop_database(pg_server_url, name)


def jdbc_of(url: str) -> dict[str, Any]:
    """Task properties (url in JDBC form, username, password) for a libpq URL."""
    info = conninfo.conninfo_to_dict(url)
    host = info.get("host") or "localhost"
    if host.startswith("/"):
        host = "127.0.0.1"
    port = info.get("port") or "5432"
    props: dict[str, Any] = {"url": f"jdbc:postgresql://{host}:{port}/{info.get('dbname')}"}
    if info.get("user"):
        props["username"] = info["user"]
    if info.get("password"):
        props["password"] = info["password"]
    return props


class CollectedLogs(list[tuple[str, str]]):
    def text(self) -> str:
        return "\n".join(f"{level} {msg}" for level, msg in self)


@pytest.fixture
def make_ctx(tmp_path: Path):
    """Build a real RunContext over a temporary storage, collecting its logs."""
    from flowhawk.engine.context import RunContext
    from flowhawk.expr import Renderer
    from flowhawk.store.files import FileStorage

    storage = FileStorage(tmp_path / "storage")

    def factory(variables: dict[str, Any] | None = None, task_id: str = "t") -> RunContext:
        logs = CollectedLogs()
        labels: dict[str, str] = {}
        ctx = RunContext(
            execution_id=uuid.uuid4().hex,
            task_id=task_id,
            attempt=1,
            working_dir=tmp_path / "work" / uuid.uuid4().hex[:8],
            storage=storage,
            storage_prefix="test/flow/executions/e1",
            variables=variables or {},
            renderer=Renderer(),
            emit=lambda level, msg: logs.append((level, msg)),
            on_labels=labels.update,
            cancel_event=threading.Event(),
        )
        ctx.logs = logs  # type: ignore[attr-defined]
        ctx.labels = labels  # type: ignore[attr-defined]
        return ctx

    return factory


@pytest.fixture
def cluster(fresh_pg_url: str, tmp_path: Path) -> Iterator[Any]:
    """Worker/server processes on a database of this test's own, stopped at the end."""
    from cluster_helpers import Cluster

    found = Cluster(fresh_pg_url, tmp_path)
    yield found
    found.stop()
