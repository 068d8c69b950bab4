"""The ``io.kestra.plugin.jdbc.postgresql`` task family: Queries, Query, CopyIn, CopyOut.

Statements run through psycopg on a connection of their own. ``Queries`` runs its
statements in one transaction unless ``transaction: false``; a failing statement rolls
everything back and the error names the statement, its line and the server's message.
COPY streams the stored file in fixed-size chunks, so a file of any size loads in
constant memory. ``table``/``columns`` are never quoted: they are checked to be plain
identifiers instead, which PostgreSQL then reads (and case-folds) as written.
"""

from __future__ import annotations

import base64
import csv
import json
import math
import os
import re
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import IO, Any, ClassVar, Literal

import psycopg
from psycopg.rows import dict_row
from pydantic import Field, field_validator

from flowhawk.errors import FlowhawkError, TaskError, TaskKilled
from flowhawk.tasks.base import Task, TaskContext
from flowhawk.tasks.pgconn import (
    connect_target,
    describe_pg_error,
    kill_watch,
    raise_if_killed,
    resolve_target,
)
from flowhawk.tasks.values import as_bool as _as_bool
from flowhawk.util.jdbc import PgTarget

PREFIX = "io.kestra.plugin.jdbc.postgresql."
FETCH_TYPES = ("NONE", "FETCH_ONE", "FETCH", "STORE")
COPY_FORMATS = ("TEXT", "CSV", "BINARY")
SSL_MODES = ("DISABLE", "ALLOW", "PREFER", "REQUIRE", "VERIFY_CA", "VERIFY_FULL")
#: bytes read from a stored file per COPY message
COPY_CHUNK = 1 << 20

_IDENT = r"[A-Za-z_][A-Za-z0-9_$]*"
_TABLE_RE = re.compile(rf"{_IDENT}(?:\.{_IDENT}){{0,2}}")
_COLUMN_RE = re.compile(_IDENT)
_PARAM_RE = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")
_DOLLAR_RE = re.compile(r"\$(?:[A-Za-z_][A-Za-z0-9_]*)?\$")
#: statements whose first keyword says they return rows (streamed when storing)
_ROW_KEYWORDS = {"SELECT", "WITH", "VALUES", "TABLE", "SHOW", "EXPLAIN", "FETCH"}


# -- SQL text -------------------------------------------------------------------------


@dataclass(frozen=True)
class Statement:
    """One statement of a task's ``sql`` and the line it starts on (1-based)."""

    text: str
    line: int


def _is_ident_char(ch: str) -> bool:
    return ch.isalnum() or ch in "_$"


def _segments(sql: str) -> Iterator[tuple[str, int, int]]:
    """Cut SQL into ``(kind, start, end)``: code, string, quoted, dollar or comment.

    Only ``code`` segments may hold statement separators and ``:name`` placeholders.
    An unterminated literal runs to the end (the server reports it).
    """
    n = len(sql)
    i = code_start = 0
    while i < n:
        ch = sql[i]
        kind = ""
        end = i
        if ch == "-" and sql.startswith("--", i):
            kind = "comment"
            nl = sql.find("\n", i)
            end = n if nl < 0 else nl + 1
        elif ch == "/" and sql.startswith("/*", i):
            kind, depth, end = "comment", 1, i + 2
            while end < n and depth:
                if sql.startswith("/*", end):
                    depth, end = depth + 1, end + 2
                elif sql.startswith("*/", end):
                    depth, end = depth - 1, end + 2
                else:
                    end += 1
        elif ch == "'":
            kind = "string"
            backslash = i > 0 and sql[i - 1] in "eE" and (i < 2 or not _is_ident_char(sql[i - 2]))
            end = i + 1
            while end < n:
                if backslash and sql[end] == "\\":
                    end += 2
                elif sql[end] == "'":
                    if sql.startswith("''", end):
                        end += 2
                    else:
                        end += 1
                        break
                else:
                    end += 1
        elif ch == '"':
            kind = "quoted"
            end = i + 1
            while end < n:
                if sql.startswith('""', end):
                    end += 2
                elif sql[end] == '"':
                    end += 1
                    break
                else:
                    end += 1
        elif ch == "$" and (i == 0 or not _is_ident_char(sql[i - 1])):
            match = _DOLLAR_RE.match(sql, i)
            if match:
                kind = "dollar"
                close = sql.find(match.group(0), match.end())
                end = n if close < 0 else close + len(match.group(0))
        if not kind:
            i += 1
            continue
        if code_start < i:
            yield "code", code_start, i
        yield kind, i, min(end, n)
        i = code_start = min(end, n)
    if code_start < n:
        yield "code", code_start, n


def split_sql(sql: str) -> list[Statement]:
    """Split on top-level semicolons; statements holding only comments are dropped."""
    statements: list[Statement] = []
    first: int | None = None

    def close(upto: int) -> None:
        nonlocal first
        if first is not None:
            text = sql[first:upto].rstrip()
            statements.append(Statement(text, sql.count("\n", 0, first) + 1))
        first = None

    for kind, start, end in _segments(sql):
        if kind == "comment":
            continue
        if kind != "code":
            if first is None:
                first = start
            continue
        pos = start
        while pos < end:
            semi = sql.find(";", pos, end)
            stop = end if semi < 0 else semi
            if first is None:
                lead = len(sql[pos:stop]) - len(sql[pos:stop].lstrip())
                if pos + lead < stop:
                    first = pos + lead
            if semi < 0:
                break
            close(semi)
            pos = semi + 1
    close(len(sql))
    return statements


def bind_named(text: str, parameters: Mapping[str, Any]) -> tuple[str, dict[str, Any] | None]:
    """Turn ``:name`` placeholders of known parameters into psycopg ``%(name)s`` ones.

    Placeholders inside literals, quoted identifiers and comments, ``::`` casts and
    names absent from ``parameters`` stay as written. Without any placeholder the text
    is returned untouched and no parameters are sent.
    """
    if not parameters:
        return text, None
    segments = list(_segments(text))
    used = {
        name
        for kind, s, e in segments
        if kind == "code"
        for name in _PARAM_RE.findall(text, s, e)
        if name in parameters
    }
    if not used:
        return text, None

    def placeholder(match: re.Match[str]) -> str:
        name = match.group(1)
        return f"%({name})s" if name in used else match.group(0)

    out = []
    for kind, s, e in segments:
        piece = text[s:e].replace("%", "%%")
        out.append(_PARAM_RE.sub(placeholder, piece) if kind == "code" else piece)
    return "".join(out), {name: parameters[name] for name in used}


def abbreviate(text: str, limit: int = 160) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _first_keyword(text: str) -> str:
    for kind, s, e in _segments(text):
        if kind == "comment":
            continue
        words = text[s:e].split()
        if kind == "code" and words:
            return words[0].lstrip("(").upper()
        if kind != "code":
            return ""
    return ""


def sql_literal(value: str) -> str:
    """A string literal valid whatever ``standard_conforming_strings`` says."""
    if "\x00" in value:
        raise TaskError("a COPY option cannot contain a NUL character")
    return "E'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


# -- values -----------------------------------------------------------------------------


def json_value(value: Any) -> Any:
    """A database value as JSON can hold it (dates ISO-8601, numerics numbers...)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            return str(value)
        if value == value.to_integral_value() and int(value.as_tuple().exponent) >= 0:
            return int(value)
        return float(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return iso_duration(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, Mapping):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [json_value(v) for v in value]
    return str(value)


def iso_duration(value: timedelta) -> str:
    total = value.total_seconds()
    sign = "-" if total < 0 else ""
    days, rest = divmod(abs(total), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    out = f"{sign}P" + (f"{int(days)}D" if days else "")
    clock = (f"{int(hours)}H" if hours else "") + (f"{int(minutes)}M" if minutes else "")
    if seconds:
        clock += f"{seconds:g}S"
    if clock or not days:
        out += "T" + (clock or "0S")
    return out


def _as_int(value: Any, prop: str) -> int:
    try:
        return int(str(value).strip()) if not isinstance(value, int) else value
    except ValueError:
        raise TaskError(f"property `{prop}`: {value!r} is not an integer") from None


def _is_template(value: Any) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def check_table(value: str, prop: str = "table") -> str:
    """``schema.table`` as written, refused unless made of plain identifiers."""
    if not _TABLE_RE.fullmatch(value):
        raise TaskError(
            f"property `{prop}`: {value!r} is not a plain SQL name: use letters, digits, "
            "`_` and `$`, not starting with a digit, optionally qualified as schema.table "
            "(names are passed to PostgreSQL unquoted)"
        )
    return value


def check_column(value: str, prop: str = "columns") -> str:
    if not _COLUMN_RE.fullmatch(value):
        raise TaskError(
            f"property `{prop}`: {value!r} is not a plain column name: use letters, "
            "digits, `_` and `$`, not starting with a digit (names are passed unquoted)"
        )
    return value


def _name_list(value: Any, prop: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except ValueError:
                raise TaskError(f"property `{prop}`: {value!r} is not a list") from None
        else:
            value = [part for part in text.split(",") if part.strip()]
    if not isinstance(value, list):
        raise TaskError(f"property `{prop}`: expected a list of column names")
    return [str(item).strip() for item in value]


# -- connection properties ----------------------------------------------------------------


class PostgresConnection(Task):
    """Connection properties shared by every task of the family."""

    url: str | None = None
    username: str | None = None
    password: str | None = None
    timeZoneId: str | None = None
    ssl: bool | str | None = None
    sslMode: str | None = None
    sslRootCert: str | None = None
    sslCert: str | None = None
    sslKey: str | None = None
    sslKeyPassword: str | None = None

    @field_validator("sslMode")
    @classmethod
    def _ssl_mode(cls, value: str | None) -> str | None:
        if value is not None and not _is_template(value) and value.upper() not in SSL_MODES:
            raise ValueError(f"sslMode must be one of {', '.join(SSL_MODES)}")
        return value

    def open_connection(self, ctx: TaskContext) -> tuple[psycopg.Connection, PgTarget]:
        """Render the connection properties, connect, and apply ``timeZoneId``."""
        url = str(ctx.render(self.url, "url")) if self.url else ""
        username = ctx.render(self.username, "username")
        password = ctx.render(self.password, "password")
        target = resolve_target(
            ctx,
            url,
            str(username) if username else None,
            str(password) if password is not None else None,
            self._ssl_params(ctx),
        )
        conn = connect_target(target)
        if self.timeZoneId:
            zone = str(ctx.render(self.timeZoneId, "timeZoneId"))
            try:
                conn.execute("SELECT set_config('TimeZone', %s, false)", [zone])
            except psycopg.Error as exc:
                conn.close()
                raise TaskError(
                    f"property `timeZoneId`: {describe_pg_error(exc, target.password)}"
                ) from None
        return conn, target

    def _ssl_params(self, ctx: TaskContext) -> dict[str, str]:
        enabled = self.ssl is not None and _as_bool(ctx.render(self.ssl, "ssl"), "ssl")
        params: dict[str, str] = {}
        if self.sslMode:
            mode = str(ctx.render(self.sslMode, "sslMode")).upper()
            if mode not in SSL_MODES:
                raise TaskError(f"property `sslMode`: {mode!r} is not one of {SSL_MODES}")
            params["sslmode"] = mode.lower().replace("_", "-")
        elif enabled:
            params["sslmode"] = "verify-full" if self.sslRootCert else "require"
        files = {"sslRootCert": "sslrootcert", "sslCert": "sslcert", "sslKey": "sslkey"}
        for prop, keyword in files.items():
            value = getattr(self, prop)
            if value:
                params[keyword] = _pem_file(ctx, str(ctx.render(value, prop)), keyword)
        if self.sslKeyPassword:
            key_password = str(ctx.render(self.sslKeyPassword, "sslKeyPassword"))
            ctx.register_secret(key_password)
            params["sslpassword"] = key_password
        return params


def _pem_file(ctx: TaskContext, value: str, name: str) -> str:
    """Kestra passes certificates as PEM text; libpq wants files (keys readable by us only)."""
    if "-----BEGIN" not in value:
        return value
    path = Path(ctx.working_dir) / f"{name}.pem"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(value if value.endswith("\n") else value + "\n")
    return str(path)


# -- Query / Queries ----------------------------------------------------------------------


class _PostgresQueryBase(PostgresConnection):
    sql: str
    parameters: dict[str, Any] | None = None
    fetchType: str = "NONE"
    fetch: bool = False
    fetchOne: bool = False
    store: bool = False
    fetchSize: int | str = 10000
    afterSQL: str | None = None

    @field_validator("fetchType")
    @classmethod
    def _fetch_type(cls, value: str) -> str:
        if not _is_template(value) and value.upper() not in FETCH_TYPES:
            raise ValueError(f"fetchType must be one of {', '.join(FETCH_TYPES)}")
        return value

    def resolve_fetch_type(self, ctx: TaskContext) -> str:
        """The deprecated booleans win over ``fetchType``, as in Kestra."""
        if self.fetch:
            return "FETCH"
        if self.fetchOne:
            return "FETCH_ONE"
        if self.store:
            return "STORE"
        value = str(ctx.render(self.fetchType, "fetchType")).strip().upper()
        if value not in FETCH_TYPES:
            raise TaskError(f"property `fetchType`: {value!r} is not one of {FETCH_TYPES}")
        return value

    def _execute(self, ctx: TaskContext, transactional: bool) -> list[dict[str, Any]]:
        """Run every statement (then ``afterSQL``); the outputs of those returning rows."""
        fetch_type = self.resolve_fetch_type(ctx)
        fetch_size = max(1, _as_int(ctx.render(self.fetchSize, "fetchSize"), "fetchSize"))
        statements = split_sql(str(ctx.render(self.sql, "sql")))
        if not statements:
            raise TaskError(f"task `{ctx.task_id}`: property `sql` holds no SQL statement")
        after = split_sql(str(ctx.render(self.afterSQL, "afterSQL"))) if self.afterSQL else []
        params = ctx.render(self.parameters, "parameters") or {}
        if not isinstance(params, Mapping):
            raise TaskError("property `parameters`: expected a map of name: value")

        conn, target = self.open_connection(ctx)
        runner = _StatementRunner(
            ctx, conn, target, fetch_type, fetch_size, dict(params), transactional
        )
        with conn, kill_watch(ctx, conn):
            if transactional:
                with conn.transaction():
                    outputs = runner.run_all(statements, "sql")
                    runner.run_all(after, "afterSQL", collect=False)
            else:
                outputs = runner.run_all(statements, "sql")
                runner.run_all(after, "afterSQL", collect=False)
        return outputs


class Queries(_PostgresQueryBase):
    """Several statements, in one transaction unless ``transaction: false``.

    Outputs ``outputs`` (one entry per statement returning rows, as Kestra does) and,
    for convenience, the ``row``/``rows``/``uri``/``size`` of the last such statement.
    """

    types: ClassVar[tuple[str, ...]] = (f"{PREFIX}Queries",)

    transaction: bool | str = True

    def run(self, ctx: TaskContext) -> dict[str, Any]:
        transactional = _as_bool(ctx.render(self.transaction, "transaction"), "transaction")
        outputs = self._execute(ctx, transactional)
        result: dict[str, Any] = dict(outputs[-1]) if outputs else {}
        result["outputs"] = outputs
        return result


class Query(_PostgresQueryBase):
    """One statement; outputs ``row``/``rows``/``uri``/``size`` per ``fetchType``.

    Several statements are accepted too (older Kestra versions ran them through the
    driver): they run in one transaction and the last one returning rows gives the
    outputs. ``autoCommit`` is accepted; the work is committed when the task succeeds.
    """

    types: ClassVar[tuple[str, ...]] = (f"{PREFIX}Query",)

    autoCommit: bool | str = True

    def run(self, ctx: TaskContext) -> dict[str, Any]:
        outputs = self._execute(ctx, transactional=True)
        return dict(outputs[-1]) if outputs else {}


class _StatementRunner:
    """Runs statements on one connection and turns results into task outputs."""

    def __init__(
        self,
        ctx: TaskContext,
        conn: psycopg.Connection,
        target: PgTarget,
        fetch_type: str,
        fetch_size: int,
        parameters: dict[str, Any],
        transactional: bool,
    ) -> None:
        self.ctx = ctx
        self.conn = conn
        self.target = target
        self.fetch_type = fetch_type
        self.fetch_size = fetch_size
        self.parameters = parameters
        self.transactional = transactional

    def run_all(
        self, statements: list[Statement], prop: str, collect: bool = True
    ) -> list[dict[str, Any]]:
        outputs: list[dict[str, Any]] = []
        for index, statement in enumerate(statements, start=1):
            where = f"statement {index}/{len(statements)} of `{prop}` (line {statement.line})"
            raise_if_killed(self.ctx, f"before {where}")
            self.ctx.logger.debug(f"{where}: {abbreviate(statement.text)}")
            output = self._run_one(statement, where, collect)
            if output is not None and collect:
                outputs.append(output)
        return outputs

    def _run_one(self, statement: Statement, where: str, collect: bool) -> dict[str, Any] | None:
        query, bound = bind_named(statement.text, self.parameters)
        fetch_type = self.fetch_type if collect else "NONE"
        try:
            with self.conn.cursor(row_factory=dict_row) as cur:
                if fetch_type == "STORE" and _first_keyword(statement.text) in _ROW_KEYWORDS:
                    return self._stream_to_file(cur, query, bound, where)
                cur.execute(query, bound)
                if cur.description is None:
                    self.ctx.logger.info(f"{where}: {cur.statusmessage or 'done'}")
                    return None
                return self._collect(cur, fetch_type, where)
        except psycopg.errors.QueryCanceled as exc:
            raise_if_killed(self.ctx, f"while {where} ran")
            raise self._error(exc, statement, query, where) from None
        except psycopg.Error as exc:
            raise self._error(exc, statement, query, where) from None

    def _collect(
        self, cur: psycopg.Cursor[dict[str, Any]], fetch_type: str, where: str
    ) -> dict[str, Any]:
        if fetch_type == "FETCH_ONE":
            row = cur.fetchone()
            self.ctx.logger.info(f"{where}: fetched {1 if row else 0} row")
            return {"row": json_value(row) if row is not None else None, "size": 1 if row else 0}
        if fetch_type == "FETCH":
            rows = [json_value(row) for row in cur]
            self.ctx.logger.info(f"{where}: fetched {len(rows)} rows")
            return {"rows": rows, "size": len(rows)}
        if fetch_type == "STORE":
            return self._write_rows(cur, where)
        self.ctx.logger.info(f"{where}: {cur.statusmessage or 'done'} (fetchType NONE)")
        return {}

    def _stream_to_file(
        self,
        cur: psycopg.Cursor[dict[str, Any]],
        query: str,
        bound: dict[str, Any] | None,
        where: str,
    ) -> dict[str, Any] | None:
        """Rows go straight from the server to the file, ``fetchSize`` at a time."""
        size = self.fetch_size if psycopg.pq.version() >= 170000 else 1
        try:
            return self._write_rows(cur.stream(query, bound, size=size), where)
        except psycopg.ProgrammingError as exc:
            if "didn't produce a result" in str(exc):
                self.ctx.logger.info(f"{where}: done")
                return None
            raise

    def _write_rows(self, rows: Any, where: str) -> dict[str, Any]:
        path, uri = self.ctx.new_file_path(f"{self.ctx.task_id}.jsonl")
        count = 0
        with open(path, "w", encoding="utf-8") as out:
            for row in rows:
                out.write(json.dumps(json_value(row), ensure_ascii=False) + "\n")
                count += 1
        self.ctx.logger.info(f"{where}: stored {count} rows in {uri}")
        return {"uri": uri, "size": count}

    def _error(self, exc: psycopg.Error, statement: Statement, query: str, where: str) -> TaskError:
        line = statement.line
        column = ""
        position = exc.diag.statement_position
        if position and position.isdigit():
            before = query[: int(position) - 1]
            line += before.count("\n")
            if query == statement.text:
                column = f", column {len(before) - before.rfind(chr(10))}"
        where = where.replace(f"(line {statement.line})", f"(line {line}{column})")
        outcome = (
            "the transaction was rolled back, no statement of this task was applied"
            if self.transactional
            else "statements before this one were committed"
        )
        message = describe_pg_error(exc, self.target.password)
        return TaskError(
            f"{where} failed: {message}\n  in: {abbreviate(statement.text, 300)}\n  ({outcome})"
        )


# -- COPY -----------------------------------------------------------------------------------


class _PostgresCopy(PostgresConnection):
    table: str | None = None
    columns: list[str] | str | None = None
    format: str = "TEXT"
    oids: bool | str | None = None
    freeze: bool | str | None = None
    delimiter: str | None = None
    nullString: str | None = None
    header: bool | str | None = None
    quote: str | None = None
    escape: str | None = None
    forceQuote: list[str] | str | None = None
    forceNotNull: list[str] | str | None = None
    forceNull: list[str] | str | None = None
    encoding: str | None = None
    socketTimeout: int | str | None = None

    @field_validator("format")
    @classmethod
    def _format(cls, value: str) -> str:
        if not _is_template(value) and value.upper() not in COPY_FORMATS:
            raise ValueError(f"format must be one of {', '.join(COPY_FORMATS)}")
        return value

    @field_validator("table")
    @classmethod
    def _table(cls, value: str | None) -> str | None:
        if value is not None and not _is_template(value):
            try:
                check_table(value)
            except TaskError as exc:
                raise ValueError(str(exc)) from None
        return value

    @field_validator("columns", "forceNotNull", "forceNull")
    @classmethod
    def _columns(cls, value: list[str] | str | None) -> list[str] | str | None:
        if isinstance(value, list):
            for item in value:
                if not _is_template(item):
                    try:
                        check_column(item)
                    except TaskError as exc:
                        raise ValueError(str(exc)) from None
        return value

    def copy_format(self, ctx: TaskContext) -> str:
        value = str(ctx.render(self.format, "format")).strip().upper()
        if value not in COPY_FORMATS:
            raise TaskError(f"property `format`: {value!r} is not one of {COPY_FORMATS}")
        return value

    def target_sql(self, ctx: TaskContext) -> str:
        """``table (col, ...)`` checked and unquoted."""
        if not self.table:
            raise TaskError(f"task `{ctx.task_id}`: property `table` is required")
        table = check_table(str(ctx.render(self.table, "table")).strip())
        columns = [
            check_column(c) for c in _name_list(ctx.render(self.columns, "columns"), "columns")
        ]
        return f"{table} ({', '.join(columns)})" if columns else table

    def options_sql(self, ctx: TaskContext, direction: Literal["in", "out"]) -> str:
        fmt = self.copy_format(ctx)
        options: list[str] = [] if fmt == "TEXT" else [f"FORMAT {fmt}"]
        for prop, keyword in (("oids", "OIDS"), ("freeze", "FREEZE")):
            value = getattr(self, prop)
            if value is not None and _as_bool(ctx.render(value, prop), prop):
                options.append(keyword)
        if self.delimiter is not None:
            delimiter = str(ctx.render(self.delimiter, "delimiter"))
            options.append(f"DELIMITER {sql_literal(_unescape_char(delimiter))}")
        if self.nullString is not None:
            options.append(f"NULL {sql_literal(str(ctx.render(self.nullString, 'nullString')))}")
        if self.header is not None:
            header = _as_bool(ctx.render(self.header, "header"), "header")
            options.append(f"HEADER {'TRUE' if header else 'FALSE'}")
        for prop, keyword in (("quote", "QUOTE"), ("escape", "ESCAPE")):
            value = getattr(self, prop)
            if value is not None:
                options.append(f"{keyword} {sql_literal(str(ctx.render(value, prop)))}")
        if direction == "out" and self.forceQuote is not None:
            names = _name_list(ctx.render(self.forceQuote, "forceQuote"), "forceQuote")
            if names == ["*"]:
                options.append("FORCE_QUOTE *")
            elif names:
                checked = [check_column(n, "forceQuote") for n in names]
                options.append(f"FORCE_QUOTE ({', '.join(checked)})")
        if direction == "in":
            for prop, keyword in (("forceNotNull", "FORCE_NOT_NULL"), ("forceNull", "FORCE_NULL")):
                names = _name_list(ctx.render(getattr(self, prop), prop), prop)
                if names:
                    checked = [check_column(n, prop) for n in names]
                    options.append(f"{keyword} ({', '.join(checked)})")
        if self.encoding is not None:
            options.append(f"ENCODING {sql_literal(str(ctx.render(self.encoding, 'encoding')))}")
        return f" WITH ({', '.join(options)})" if options else ""

    def _copy_failed(
        self, ctx: TaskContext, exc: psycopg.Error, target: PgTarget, copy_sql: str
    ) -> FlowhawkError:
        if isinstance(exc, psycopg.errors.QueryCanceled) and ctx.cancel_event.is_set():
            return TaskKilled(f"task `{ctx.task_id}` killed while COPY ran")
        return TaskError(
            f"{abbreviate(copy_sql, 200)} failed: {describe_pg_error(exc, target.password)}"
        )


def _unescape_char(value: str) -> str:
    """``\\t`` written with a literal backslash (a common YAML slip) means a tab."""
    return {"\\t": "\t", "\\n": "\n", "\\r": "\r"}.get(value, value)


class CopyIn(_PostgresCopy):
    """Load a stored file into a table with ``COPY ... FROM STDIN``; output ``rowCount``."""

    types: ClassVar[tuple[str, ...]] = (f"{PREFIX}CopyIn",)

    from_: str = Field(alias="from")

    def run(self, ctx: TaskContext) -> dict[str, Any]:
        uri = str(ctx.render(self.from_, "from")).strip()
        copy_sql = f"COPY {self.target_sql(ctx)} FROM STDIN{self.options_sql(ctx, 'in')}"
        try:
            source = ctx.open_file(uri)
        except FlowhawkError as exc:
            raise TaskError(f"property `from`: {exc}") from None
        except OSError as exc:
            raise TaskError(f"property `from`: cannot read {uri}: {exc.strerror}") from None
        with source:
            self._check_header(ctx, source, uri)
            conn, target = self.open_connection(ctx)
            ctx.logger.debug(f"running {copy_sql}")
            with conn, kill_watch(ctx, conn):
                try:
                    with conn.transaction(), conn.cursor() as cur:
                        with cur.copy(copy_sql) as copy:
                            _pump(ctx, source, copy)
                        count = cur.rowcount
                except psycopg.Error as exc:
                    raise self._copy_failed(ctx, exc, target, copy_sql) from None
        into = str(ctx.render(self.table, "table")) if self.table else "?"
        ctx.logger.info(f"copied {count} rows from {uri} into {into}")
        return {"rowCount": count}

    def _check_header(self, ctx: TaskContext, source: IO[bytes], uri: str) -> None:
        """With a CSV header and `columns`, the header must name those columns (any case).

        PostgreSQL's HEADER only skips the line; a file of another layout would then load
        its values into the wrong columns.
        """
        if self.header is None or self.columns is None or self.copy_format(ctx) != "CSV":
            return
        if not _as_bool(ctx.render(self.header, "header"), "header"):
            return
        columns = _name_list(ctx.render(self.columns, "columns"), "columns")
        if not columns:
            return
        first = source.readline(1 << 20)
        source.seek(0)
        if not first.strip():
            raise TaskError(f"{uri}: the file is empty; expected a header line")
        delimiter = (
            _unescape_char(str(ctx.render(self.delimiter, "delimiter"))) if self.delimiter else ","
        )
        quote = str(ctx.render(self.quote, "quote")) if self.quote else '"'
        encoding = str(ctx.render(self.encoding, "encoding")) if self.encoding else "utf-8"
        try:
            text = first.decode(encoding).lstrip("\ufeff").rstrip("\r\n")
        except (UnicodeDecodeError, LookupError) as exc:
            raise TaskError(f"{uri}: line 1: cannot decode the header: {exc}") from None
        found = next(csv.reader([text], delimiter=delimiter, quotechar=quote), [])
        if [c.strip().lower() for c in found] != [c.lower() for c in columns]:
            into = str(ctx.render(self.table, "table")) if self.table else "the table"
            raise TaskError(
                f"COPY into {into}: {uri}: line 1: the header does not match `columns`: expected"
                f" {', '.join(columns)}; found {', '.join(found)}"
            )


def _pump(ctx: TaskContext, source: IO[bytes], copy: psycopg.Copy) -> None:
    while chunk := source.read(COPY_CHUNK):
        raise_if_killed(ctx, "while COPY ran")
        copy.write(chunk)


class CopyOut(_PostgresCopy):
    """Write a table or a query to a stored file with ``COPY ... TO STDOUT``.

    Outputs ``uri`` and ``rowCount``.
    """

    types: ClassVar[tuple[str, ...]] = (f"{PREFIX}CopyOut",)

    sql: str | None = None

    def run(self, ctx: TaskContext) -> dict[str, Any]:
        if self.sql:
            statements = split_sql(str(ctx.render(self.sql, "sql")))
            if len(statements) != 1:
                raise TaskError(
                    f"task `{ctx.task_id}`: property `sql` must hold exactly one query, "
                    f"found {len(statements)}"
                )
            source = f"({statements[0].text})"
        elif self.table:
            source = self.target_sql(ctx)
        else:
            raise TaskError(f"task `{ctx.task_id}`: set `sql` or `table`")
        copy_sql = f"COPY {source} TO STDOUT{self.options_sql(ctx, 'out')}"
        fmt = self.copy_format(ctx)
        extension = {"CSV": "csv", "TEXT": "tsv", "BINARY": "bin"}[fmt]
        path, uri = ctx.new_file_path(f"{ctx.task_id}.{extension}")
        conn, target = self.open_connection(ctx)
        ctx.logger.debug(f"running {abbreviate(copy_sql)}")
        try:
            with conn, kill_watch(ctx, conn), open(path, "wb") as out:
                try:
                    with conn.cursor() as cur:
                        with cur.copy(copy_sql) as copy:
                            for data in copy:
                                raise_if_killed(ctx, "while COPY ran")
                                out.write(data)
                        count = cur.rowcount
                except psycopg.Error as exc:
                    raise self._copy_failed(ctx, exc, target, copy_sql) from None
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        ctx.logger.info(f"copied {count} rows to {uri}")
        return {"uri": uri, "rowCount": count}


TASK_TYPES: tuple[type[Task], ...] = (Queries, Query, CopyIn, CopyOut)
