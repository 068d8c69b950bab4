"""Finding and opening the state database: a URL, or the embedded PostgreSQL (pgserver)."""

from __future__ import annotations

import contextlib
import fcntl
import time
from pathlib import Path

import psycopg
from psycopg import conninfo as pg_conninfo

from flowhawk.config import Settings, data_dir
from flowhawk.errors import DatabaseError

EMBEDDED_DB = "flowhawk"


def describe(url: str) -> str:
    """host, port and database of a conninfo/URL, never its password."""
    try:
        info = pg_conninfo.conninfo_to_dict(url)
    except Exception:
        return "<unparsable database URL>"
    host = info.get("host") or "localhost"
    port = info.get("port") or "5432"
    db = info.get("dbname") or info.get("user") or "?"
    return f"host={host} port={port} dbname={db}"


def _embedded_dir() -> Path:
    return data_dir() / "pgdata"


def _cached_uri_file() -> Path:
    return data_dir() / "embedded-uri"


def _try_connect(url: str, timeout: int = 3) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=timeout, autocommit=True):
            return True
    except psycopg.Error:
        return False


def embedded_url() -> str:
    """Start (or reuse) the embedded server in the user data dir; return its flowhawk DB URL.

    The server keeps running after this process exits so later commands start fast; its
    URL is cached and tried before pgserver is asked.
    """
    cache = _cached_uri_file()
    if cache.exists():
        url = cache.read_text().strip()
        if url and _try_connect(url, timeout=2):
            return url
    lock_path = data_dir() / "embedded.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if cache.exists():
            url = cache.read_text().strip()
            if url and _try_connect(url, timeout=2):
                return url
        import pgserver  # slow import; only when the embedded server is needed

        pgdata = _embedded_dir()
        pgdata.mkdir(parents=True, exist_ok=True)
        server = pgserver.get_server(pgdata, cleanup_mode=None)
        admin = server.get_uri("postgres")
        with psycopg.connect(admin, autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (EMBEDDED_DB,)
            ).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{EMBEDDED_DB}"')
        url = server.get_uri(EMBEDDED_DB)
        cache.write_text(url)
        return url


def database_url(settings: Settings) -> str:
    return settings.database_url or embedded_url()


def connect(url: str, *, autocommit: bool = True, retries: int = 0) -> psycopg.Connection:
    """Open a connection; on failure raise DatabaseError naming host, port and database."""
    last: Exception | None = None
    for attempt in range(retries + 1):
        try:
            return psycopg.connect(url, autocommit=autocommit, connect_timeout=10)
        except psycopg.OperationalError as exc:
            last = exc
            if attempt < retries:
                time.sleep(min(2.0, 0.2 * (attempt + 1)))
    reason = str(last).strip().splitlines()[0] if last else "unknown error"
    with contextlib.suppress(Exception):
        reason = reason.replace(
            str(pg_conninfo.conninfo_to_dict(url).get("password") or "\0"), "***"
        )
    raise DatabaseError(f"cannot connect to PostgreSQL ({describe(url)}): {reason}")
