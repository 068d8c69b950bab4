"""Connection settings of PostgreSQL tasks: JDBC URLs to libpq conninfo, passwords hidden."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from flowhawk.errors import TaskError

_JDBC_PARAM_MAP = {
    "user": "user",
    "password": "password",
    "sslmode": "sslmode",
    "ssl": None,
    "connectTimeout": "connect_timeout",
    "ApplicationName": "application_name",
    "applicationName": "application_name",
    "currentSchema": "options",
}


@dataclass(frozen=True)
class PgTarget:
    """Where a PostgreSQL task connects."""

    host: str
    port: int
    dbname: str
    user: str | None = None
    password: str | None = None
    params: tuple[tuple[str, str], ...] = ()

    def conninfo(self) -> str:
        parts = [
            f"host={_q(self.host)}",
            f"port={self.port}",
            f"dbname={_q(self.dbname)}",
        ]
        if self.user:
            parts.append(f"user={_q(self.user)}")
        if self.password:
            parts.append(f"password={_q(self.password)}")
        for key, value in self.params:
            parts.append(f"{key}={_q(value)}")
        return " ".join(parts)

    def display(self) -> str:
        """The target as a user may see it: never the password."""
        user = f"{quote(self.user)}@" if self.user else ""
        return f"postgresql://{user}{self.host}:{self.port}/{self.dbname}"


def _q(value: str) -> str:
    if value and all(c not in value for c in " '\\"):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def parse_pg_url(url: str, username: str | None = None, password: str | None = None) -> PgTarget:
    """Accept ``jdbc:postgresql://host:port/db?user=..`` or ``postgresql://...`` URLs.

    ``username``/``password`` (task properties) win over credentials written in the URL.
    """
    if not url:
        raise TaskError(
            "no PostgreSQL url given (set `url`, e.g. jdbc:postgresql://localhost:5432/db)"
        )
    raw = url.strip()
    if raw.startswith("jdbc:"):
        raw = raw[len("jdbc:") :]
    if raw.startswith("postgres://"):
        raw = "postgresql://" + raw[len("postgres://") :]
    if not raw.startswith("postgresql://"):
        raise TaskError(
            f"unsupported database URL {redact_url(url)!r}: expected jdbc:postgresql://host:port/database"
        )
    split = urlsplit(raw)
    try:
        port = split.port or 5432
    except ValueError as exc:
        raise TaskError(f"bad port in database URL {redact_url(url)!r}") from exc
    host = split.hostname or "localhost"
    dbname = unquote(split.path.lstrip("/")) or "postgres"
    user = unquote(split.username) if split.username else None
    pw = unquote(split.password) if split.password else None
    params: list[tuple[str, str]] = []
    for key, value in parse_qsl(split.query):
        mapped = _JDBC_PARAM_MAP.get(key, key)
        if key == "host":
            host = value
        elif key == "port" and value.isdigit():
            port = int(value)
        elif key == "dbname":
            dbname = value
        elif key == "user":
            user = user or value
        elif key == "password":
            pw = pw or value
        elif key == "currentSchema":
            params.append(("options", f"-csearch_path={value}"))
        elif mapped:
            params.append((mapped, value))
    return PgTarget(
        host=host,
        port=port,
        dbname=dbname,
        user=username or user,
        password=password if password is not None else pw,
        params=tuple(params),
    )


def redact_url(url: str) -> str:
    """A URL with any password replaced by ``***``."""
    try:
        raw = url[5:] if url.startswith("jdbc:") else url
        split = urlsplit(raw)
        netloc = split.netloc
        if split.password is not None:
            userinfo, _, hostpart = netloc.rpartition("@")
            user = userinfo.split(":", 1)[0]
            netloc = f"{user}:***@{hostpart}"
        query = "&".join(
            f"{k}=***" if k.lower() == "password" else f"{k}={v}" for k, v in parse_qsl(split.query)
        )
        prefix = "jdbc:" if url.startswith("jdbc:") else ""
        rebuilt = f"{split.scheme}://{netloc}{split.path}"
        return prefix + rebuilt + (f"?{query}" if query else "")
    except Exception:
        return "<unparsable URL>"


def jdbc_settings(url: str) -> dict[str, str]:
    """Task properties (``url`` in JDBC form, ``username``, ``password``) for a libpq URL/DSN."""
    from psycopg import conninfo

    info = conninfo.conninfo_to_dict(url)
    host = str(info.get("host") or "localhost")
    port = str(info.get("port") or "5432")
    db = str(info.get("dbname") or "postgres")
    query = ""
    if host.startswith("/"):
        query = f"?host={quote(host, safe='/')}"
        host = "localhost"
    result = {"url": f"jdbc:postgresql://{host}:{port}/{quote(db)}{query}"}
    if info.get("user"):
        result["username"] = str(info["user"])
    if info.get("password"):
        result["password"] = str(info["password"])
    return result
