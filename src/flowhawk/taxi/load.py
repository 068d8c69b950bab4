"""Loading one month file into the course's ``<taxi>_tripdata`` table, fast and atomically.

How a month goes in (one transaction; a failure anywhere rolls all of it back, so nothing
is published and no staging table is left):

1. a staging table of this load's own is created (``<table>_stg_<execution>_<random>``),
   with the course's columns, ``filename NOT NULL DEFAULT '<file>'`` and
   ``CHECK (filename = '<file>')``;
2. the reader subprocess (``flowhawk.taxi.reader``) streams the source, checks it and
   writes every row with its ``unique_row_id``; this process relays that into one
   ``COPY ... FROM STDIN (FORMAT csv, FREEZE)`` (FREEZE: the table is new in this
   transaction, so later reads set no hint bits);
3. publishing. A **partitioned** main table (``PARTITION BY LIST (filename)``, which this
   module creates when the table is absent, with a DEFAULT partition so the course's own
   flow can still MERGE months into it) gets the staging table as the month's partition:
   the month's previous partition is dropped, rows of that month in the DEFAULT partition
   (put there by the course's flow) are deleted, and the staging table is ATTACHed — its
   CHECK constraint lets PostgreSQL skip the validation scan, so the cost does not depend
   on the size of the main table. A **plain** table (created by the course's flow) gets
   ``DELETE ... WHERE filename = '<file>'`` and ``INSERT ... SELECT`` from a temporary
   staging table instead: correct, but its cost grows with the table;
4. the source's row count, the in-file duplicate count, a checksum of the ids
   (``ID_CHECKSUM_SQL``, one scan of the staging table) and who loaded it are upserted in
   ``<schema>.flowhawk_taxi_loads``, which verification compares against.

Every row of the file is kept, in-file duplicate ids included: that is what the course's
MERGE gives on a first load too (it only compares source rows with rows already in the
table), so the two methods leave the same rows.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import Any

import psycopg
from psycopg import sql

from flowhawk.errors import TaskError, TaskKilled
from flowhawk.taxi.layout import TaxiLayout, layout_for
from flowhawk.taxi.streams import CopyStopped, StreamCopyError, copy_in_streams

LOADS_TABLE = "flowhawk_taxi_loads"
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*$")
_COPY_CONTEXT = re.compile(r"line (\d+)(?:, column (\w+))?")
_RELAY_CHUNK = 1 << 20

Log = Callable[[str], None]


@dataclass(frozen=True)
class TableName:
    """A ``schema.table`` name as PostgreSQL reads it unquoted (folded to lower case)."""

    schema: str
    name: str

    @classmethod
    def parse(cls, text: str) -> TableName:
        parts = text.strip().split(".")
        if len(parts) > 2 or not all(_IDENT.match(p) for p in parts):
            raise TaskError(f"invalid table name {text!r}: expected [schema.]table")
        if len(parts) == 1:
            parts.insert(0, "public")
        return cls(parts[0].lower(), parts[1].lower())

    @property
    def ident(self) -> sql.Composable:
        return sql.Identifier(self.schema, self.name)

    def sibling(self, name: str) -> TableName:
        return TableName(self.schema, name[:63])

    def __str__(self) -> str:
        return f"{self.schema}.{self.name}"


@dataclass
class LoadResult:
    table: str
    filename: str
    source_rows: int
    loaded_rows: int
    duplicates: int
    seconds: float
    mode: str
    replaced: bool

    def outputs(self) -> dict[str, Any]:
        return {
            "rowCount": self.loaded_rows,
            "sourceRows": self.source_rows,
            "duplicates": self.duplicates,
            "filename": self.filename,
            "table": self.table,
            "mode": self.mode,
            "replaced": self.replaced,
            "seconds": round(self.seconds, 3),
        }

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def default_table(taxi: str) -> str:
    return f"public.{layout_for(taxi).colour}_tripdata"


def filename_from_source(source: str) -> str:
    """``.../green_tripdata_2019-01.csv.gz`` → ``green_tripdata_2019-01.csv`` (the course's name)."""
    base = os.path.basename(source.split("?", 1)[0].rstrip("/"))
    return base.removesuffix(".gz")


def partition_name(table: str, filename: str) -> str:
    """``green_tripdata`` + ``green_tripdata_2019-01.csv`` → ``green_tripdata_2019_01``."""
    stem = re.sub(r"[^a-z0-9_]", "_", filename.lower().removesuffix(".gz").removesuffix(".csv"))
    return (stem if stem.startswith(table) else f"{table}_{stem}")[:63]


# -- table set-up ------------------------------------------------------------------------
def _columns_sql(layout: TaxiLayout, filename: str | None) -> sql.Composable:
    cols: list[sql.Composable] = []
    for name, sqltype in layout.table_columns:
        column = sql.SQL("{} {}").format(sql.Identifier(name.lower()), sql.SQL(sqltype))
        if name == "filename" and filename is not None:
            column = sql.SQL("{} text NOT NULL DEFAULT {}").format(
                sql.Identifier("filename"), sql.Literal(filename)
            )
        cols.append(column)
    return sql.SQL(", ").join(cols)


def _expected_types(layout: TaxiLayout) -> dict[str, str]:
    return {
        name.lower(): sqltype.replace("timestamp", "timestamp without time zone")
        for name, sqltype in layout.table_columns
    }


def ensure_tables(conn: psycopg.Connection, layout: TaxiLayout, table: TableName) -> str:
    """Create the main table (partitioned) and the loads record when absent; return the
    main table's mode, ``partitioned`` or ``plain``. Serialised by an advisory lock so that
    parallel loads do not race to create them."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"flowhawk.taxi:{table}",))
        loads = table.sibling(LOADS_TABLE)
        conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} ("
                " table_name text NOT NULL, filename text NOT NULL, taxi text NOT NULL,"
                " source text, source_rows bigint NOT NULL, loaded_rows bigint NOT NULL,"
                " duplicates bigint NOT NULL, seconds double precision,"
                " loaded_at timestamptz NOT NULL DEFAULT now(), execution_id text,"
                " PRIMARY KEY (table_name, filename))"
            ).format(loads.ident)
        )
        conn.execute(
            sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS id_checksum numeric").format(
                loads.ident
            )
        )
        row = conn.execute(
            "SELECT c.relkind, pg_get_partkeydef(c.oid) FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s",
            (table.schema, table.name),
        ).fetchone()
        if row is None:
            conn.execute(
                sql.SQL("CREATE TABLE {} ({}) PARTITION BY LIST (filename)").format(
                    table.ident, _columns_sql(layout, None)
                )
            )
            conn.execute(
                sql.SQL("CREATE TABLE {} PARTITION OF {} DEFAULT").format(
                    table.sibling(f"{table.name}_default").ident, table.ident
                )
            )
            return "partitioned"
        kind, partkey = row
        _check_columns(conn, layout, table)
        if kind == "p":
            if (partkey or "").lower() != "list (filename)":
                raise TaskError(
                    f"table {table} is partitioned by {partkey}; flowhawk loads need "
                    "PARTITION BY LIST (filename) or a plain table"
                )
            return "partitioned"
        if kind == "r":
            return "plain"
        raise TaskError(f"{table} is not a table (relkind {kind!r})")


def _check_columns(conn: psycopg.Connection, layout: TaxiLayout, table: TableName) -> None:
    rows = conn.execute(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a"
        " WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped",
        (str(table.ident.as_string(conn)),),
    ).fetchall()
    found = {name: typ for name, typ in rows}
    expected = _expected_types(layout)
    problems = [
        f"{name} {typ} (found {found.get(name, 'no such column')})"
        for name, typ in expected.items()
        if found.get(name) != typ
    ]
    extra = sorted(set(found) - set(expected))
    if problems or extra:
        detail = "; ".join(problems + [f"unexpected column {c}" for c in extra])
        raise TaskError(
            f"table {table} does not have the course's {layout.colour} layout: {detail}"
        )


# -- the reader subprocess ---------------------------------------------------------------
def _widen_pipe(pipe: Any) -> None:
    """A 1 MiB pipe instead of the default 64 KiB (Linux): the reader and the relay then
    wake up for a block of thousands of rows rather than a few hundred."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not on Windows
        return
    if pipe is None or not hasattr(fcntl, "F_SETPIPE_SZ"):
        return
    try:
        fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, _RELAY_CHUNK)
    except OSError:
        pass  # above /proc/sys/fs/pipe-max-size for this user: keep the default


class ReaderProcess:
    """``python -m flowhawk.taxi.reader`` with its stderr collected by a thread."""

    def __init__(self, source: str, taxi: str, name: str, count_only: bool = False) -> None:
        args = [
            sys.executable,
            "-m",
            "flowhawk.taxi.reader",
            source,
            "--taxi",
            taxi,
            "--name",
            name,
        ]
        if count_only:
            args.append("--count-only")
        self.proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        _widen_pipe(self.proc.stdout)
        self._err = bytearray()
        self._thread = threading.Thread(target=self._drain, daemon=True, name="taxi-reader-stderr")
        self._thread.start()

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        while chunk := self.proc.stderr.read(65536):
            if len(self._err) < 1 << 20:
                self._err += chunk

    def read(self) -> bytes:
        assert self.proc.stdout is not None
        return os.read(self.proc.stdout.fileno(), _RELAY_CHUNK)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.finish()

    def finish(self) -> tuple[dict[str, Any] | None, str | None]:
        """Wait for the process: (summary, error message)."""
        self.proc.wait()
        self._thread.join(timeout=5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        text = self._err.decode("utf-8", "replace").strip()
        last = text.splitlines()[-1] if text else ""
        try:
            report = json.loads(last) if last.startswith("{") else None
        except ValueError:
            report = None
        if self.proc.returncode == 0 and report and "rows" in report:
            return report, None
        if report and "error" in report:
            return None, str(report["error"])
        detail = text[-2000:] if text else f"exit status {self.proc.returncode}"
        return None, f"the reader process failed: {detail}"


def count_source(source: str, taxi: str, name: str) -> dict[str, Any]:
    """Download/read ``source`` again and count its rows and duplicate ids (``--recount``)."""
    reader = ReaderProcess(source, taxi, name, count_only=True)
    summary, error = reader.finish()
    if error or summary is None:
        raise TaskError(error or "the reader process failed")
    return summary


# -- the load ----------------------------------------------------------------------------
def _copy_error(
    exc: psycopg.Error, filename: str, layout: TaxiLayout, *, split: bool = False,
    row: int | None = None,
) -> str:  # fmt: skip
    """A PostgreSQL COPY error as ``file: line N, column C: message`` (file lines count the
    header). ``split``: the COPY was one of several streams, whose ``line N`` counts that
    stream's rows only; ``row`` is then the row of the whole (0-based), when known."""
    diag = exc.diag
    primary = diag.message_primary or str(exc).strip().splitlines()[0]
    match = _COPY_CONTEXT.search(diag.context or "")
    if not match or (split and row is None):
        return f"{filename}: {primary}"
    names = {c.lower(): c for c in layout.csv_columns}
    where = f"line {row + 2 if split and row is not None else int(match.group(1)) + 1}"
    if match.group(2):
        where += f", column {names.get(match.group(2), match.group(2))}"
    return f"{filename}: {where}: {primary}"


def load_month(
    conn: psycopg.Connection,
    *,
    taxi: str,
    source: str,
    filename: str | None = None,
    table: str | None = None,
    execution_id: str = "",
    display_source: str | None = None,
    log: Log | None = None,
    cancel_event: threading.Event | None = None,
    connect: Callable[[], psycopg.Connection] | None = None,
    streams: int = 1,
) -> LoadResult:
    """Load one month file into the main table; see the module docstring.

    ``conn`` must be in autocommit mode (transactions are opened here). ``source`` is an
    ``http(s)://`` URL or a local path; ``display_source`` is what the loads record and
    messages show for it. With ``streams`` > 1 and ``connect`` (opens another connection
    to the same database) a partitioned table's month is COPYed over that many connections
    (see ``load_parallel``).
    """
    started = time.perf_counter()
    layout = layout_for(taxi)
    name = filename or filename_from_source(source)
    target = TableName.parse(table or default_table(taxi))
    say = log or (lambda _msg: None)
    mode = ensure_tables(conn, layout, target)
    stage = target.sibling(
        f"{target.name}_stg_{re.sub(r'[^a-z0-9]', '', execution_id.lower())[:10]}_{secrets.token_hex(3)}"
    )
    say(f"loading {display_source or source} into {target} ({mode} table) as {name}")
    if mode == "partitioned" and streams > 1 and connect is not None:
        return load_parallel(
            conn, connect, streams, layout=layout, target=target, stage=stage, source=source,
            name=name, execution_id=execution_id, display_source=display_source,
            cancel_event=cancel_event, say=say, started=started,
        )  # fmt: skip
    reader: ReaderProcess | None = None
    try:
        with conn.transaction():
            if mode == "partitioned":
                conn.execute(
                    sql.SQL("CREATE TABLE {} ({}, CHECK (filename = {}))").format(
                        stage.ident, _columns_sql(layout, name), sql.Literal(name)
                    )
                )
                stage_ident: sql.Composable = stage.ident
            else:
                stage_ident = sql.Identifier(stage.name)
                conn.execute(
                    sql.SQL("CREATE TEMP TABLE {} ({}) ON COMMIT DROP").format(
                        stage_ident, _columns_sql(layout, name)
                    )
                )
            reader = ReaderProcess(source, taxi, name)
            if cancel_event is not None:
                _kill_on_cancel(reader, cancel_event)
            loaded = _copy(conn, reader, stage_ident, layout, name, cancel_event)
            summary = _reader_summary(reader, loaded, name)
            checksum = _id_checksum(conn, stage_ident)
            if mode == "partitioned":
                replaced = _publish_partition(conn, target, stage, name)
            else:
                replaced = _publish_plain(conn, layout, target, stage_ident, name)
            _record_load(
                conn, target, name, taxi=layout.colour, source=display_source or source,
                summary=summary, loaded=loaded, seconds=time.perf_counter() - started,
                execution_id=execution_id, checksum=checksum,
            )  # fmt: skip
    except psycopg.Error as exc:
        raise _load_failed(exc, name, target, layout, cancel_event) from None
    finally:
        if reader is not None:
            reader.kill()
    return _finished(target, name, summary, loaded, mode, replaced, started, say)


def _reader_summary(reader: ReaderProcess, loaded: int, name: str) -> dict[str, Any]:
    """The reader's report once its rows are in; its error, or a row count PostgreSQL does
    not agree with, fails the load."""
    summary, error = reader.finish()
    if error or summary is None:
        raise TaskError(error or "the reader process failed")
    if loaded != summary["rows"]:
        raise TaskError(
            f"{name}: the reader sent {summary['rows']} rows but PostgreSQL stored {loaded}"
        )
    return summary


def _load_failed(
    exc: psycopg.Error, name: str, target: TableName, layout: TaxiLayout,
    cancel_event: threading.Event | None,
) -> Exception:  # fmt: skip
    if cancel_event is not None and cancel_event.is_set():
        return TaskKilled(f"loading {name} was killed")
    return TaskError(f"loading {name} into {target} failed: {_copy_error(exc, name, layout)}")


def _finished(
    target: TableName, name: str, summary: dict[str, Any], loaded: int, mode: str,
    replaced: bool, started: float, say: Log,
) -> LoadResult:  # fmt: skip
    result = LoadResult(
        table=str(target),
        filename=name,
        source_rows=summary["rows"],
        loaded_rows=loaded,
        duplicates=summary["duplicates"],
        seconds=time.perf_counter() - started,
        mode=mode,
        replaced=replaced,
    )
    say(
        f"{name}: {loaded:,} rows ({summary['duplicates']} duplicate ids) published in "
        f"{result.seconds:.2f}s ({loaded / max(result.seconds, 1e-9):,.0f} rows/s)"
        + (", replacing the previous load" if replaced else "")
    )
    return result


def _record_load(
    conn: psycopg.Connection, target: TableName, name: str, *, taxi: str, source: str,
    summary: dict[str, Any], loaded: int, seconds: float, execution_id: str,
    checksum: Decimal | None,
) -> None:  # fmt: skip
    """Upsert the month's row in the loads record (inside the publishing transaction)."""
    conn.execute(
        sql.SQL(
            "INSERT INTO {} (table_name, filename, taxi, source, source_rows, loaded_rows,"
            " duplicates, seconds, loaded_at, execution_id, id_checksum)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, now(), %s, %s)"
            " ON CONFLICT (table_name, filename) DO UPDATE SET taxi = EXCLUDED.taxi,"
            " source = EXCLUDED.source, source_rows = EXCLUDED.source_rows,"
            " loaded_rows = EXCLUDED.loaded_rows, duplicates = EXCLUDED.duplicates,"
            " seconds = EXCLUDED.seconds, loaded_at = now(),"
            " execution_id = EXCLUDED.execution_id, id_checksum = EXCLUDED.id_checksum"
        ).format(target.sibling(LOADS_TABLE).ident),
        (
            str(target), name, taxi, source, summary["rows"], loaded, summary["duplicates"],
            seconds, execution_id or None, checksum,
        ),
    )  # fmt: skip


# -- several COPY streams --------------------------------------------------------------
def _stage_lock_key(stage: TableName) -> str:
    return f"flowhawk.taxi.stage:{stage}"


def abandoned_stages(
    conn: psycopg.Connection, target: TableName, *, drop: bool = False
) -> list[str]:
    """Staging tables of ``target`` that no running load owns (``drop``: and drop them).

    A parallel load holds a session advisory lock named after its staging table for as
    long as it runs; a staging table whose lock can be taken was left by a load that died
    (SIGKILL, a lost connection) before it could drop it."""
    found = []
    for schema, relname in conn.execute(
        "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relname LIKE %s AND c.relkind = 'r' AND NOT c.relispartition"
        " ORDER BY 2",
        (target.schema, target.name.replace("_", r"\_") + r"\_stg\_%"),
    ).fetchall():
        stage = TableName(schema, relname)
        key = _stage_lock_key(stage)
        row = conn.execute(
            "SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", (key,)
        ).fetchone()
        if not row or not row[0]:
            continue
        try:
            if drop:
                conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(stage.ident))
            found.append(str(stage))
        finally:
            conn.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (key,))
    return found


def load_parallel(
    conn: psycopg.Connection,
    connect: Callable[[], psycopg.Connection],
    streams: int,
    *,
    layout: TaxiLayout,
    target: TableName,
    stage: TableName,
    source: str,
    name: str,
    execution_id: str,
    display_source: str | None,
    cancel_event: threading.Event | None,
    say: Log,
    started: float,
) -> LoadResult:
    """A partitioned table's month COPYed over ``streams`` connections.

    The COPYs cannot share one transaction, so the staging table is created (committed)
    first, under a session advisory lock that marks it as owned; the rows are COPYed
    (``flowhawk.taxi.streams``); then one transaction checks, publishes and records the
    month as in the one-stream load. Until that commits the main table is untouched; on
    any failure the staging table is dropped, and a load that dies before it can do that
    leaves a table whose lock is free, which the next load of the table drops
    (``abandoned_stages``)."""
    key = _stage_lock_key(stage)
    reader: ReaderProcess | None = None
    published = False
    conn.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", (key,))
    try:
        for gone in abandoned_stages(conn, target, drop=True):
            say(f"dropped {gone}, a staging table left by a load that did not finish")
        conn.execute(
            sql.SQL("CREATE TABLE {} ({}, CHECK (filename = {}))").format(
                stage.ident, _columns_sql(layout, name), sql.Literal(name)
            )
        )
        reader = ReaderProcess(source, layout.colour, name)
        if cancel_event is not None:
            _kill_on_cancel(reader, cancel_event)
        loaded = _copy_streams(connect, streams, reader, stage, layout, name, cancel_event)
        summary = _reader_summary(reader, loaded, name)
        with conn.transaction():
            checksum = _id_checksum(conn, stage.ident)
            replaced = _publish_partition(conn, target, stage, name)
            _record_load(
                conn, target, name, taxi=layout.colour, source=display_source or source,
                summary=summary, loaded=loaded, seconds=time.perf_counter() - started,
                execution_id=execution_id, checksum=checksum,
            )  # fmt: skip
        published = True
    except psycopg.Error as exc:
        raise _load_failed(exc, name, target, layout, cancel_event) from None
    finally:
        if reader is not None:
            reader.kill()
        _release_stage(conn, stage, key, drop=not published)
    return _finished(target, name, summary, loaded, "partitioned", replaced, started, say)


def _release_stage(conn: psycopg.Connection, stage: TableName, key: str, *, drop: bool) -> None:
    """Drop the unpublished staging table and give up its lock; a broken connection gives
    both up by itself (the table is then dropped by the next load)."""
    if conn.closed:
        return
    try:
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            conn.rollback()
        if drop:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(stage.ident))
        conn.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (key,))
    except psycopg.Error:
        pass


def _copy_streams(
    connect: Callable[[], psycopg.Connection],
    streams: int,
    reader: ReaderProcess,
    stage: TableName,
    layout: TaxiLayout,
    name: str,
    cancel_event: threading.Event | None,
) -> int:
    statement = _copy_statement(stage.ident, layout, freeze=False)
    try:
        return copy_in_streams(
            connect, statement, reader.read, streams,
            lambda: cancel_event is not None and cancel_event.is_set(),
        )  # fmt: skip
    except CopyStopped:
        reader.kill()
        raise TaskKilled(f"loading {name} was killed") from None
    except StreamCopyError as exc:
        reader.kill()
        _, error = reader.finish()
        if error and "loader stopped reading" not in error and "exit status -9" not in error:
            raise TaskError(error) from None
        raise TaskError(_copy_error(exc.error, name, layout, split=True, row=exc.row)) from None
    except BaseException:
        reader.kill()
        raise


#: an order-independent checksum of a month's ids (exact numeric sum of 64-bit hashes),
#: recorded at load time; verification compares it to know that the month still holds the
#: very ids whose duplicates the reader counted, without sorting them again
ID_CHECKSUM_SQL = "sum(hashtextextended(unique_row_id, 0))"


def _id_checksum(conn: psycopg.Connection, stage: sql.Composable) -> Decimal | None:
    row = conn.execute(
        sql.SQL("SELECT {} FROM {}").format(sql.SQL(ID_CHECKSUM_SQL), stage)
    ).fetchone()
    return row[0] if row else None


def _kill_on_cancel(reader: ReaderProcess, cancel_event: threading.Event) -> None:
    """Stop the reader as soon as the execution is killed, even while it waits on the
    network (the relay loop then sees the end of its output and notices the kill)."""

    def watch() -> None:
        while reader.proc.poll() is None:
            if cancel_event.wait(0.2):
                if reader.proc.poll() is None:
                    reader.proc.kill()
                return

    threading.Thread(target=watch, daemon=True, name="taxi-reader-kill").start()


def _copy_statement(stage: sql.Composable, layout: TaxiLayout, *, freeze: bool) -> sql.Composed:
    """``COPY <stage> (unique_row_id, <the file's columns>) FROM STDIN`` for the reader's rows;
    ``freeze`` only where the table was created in the same transaction."""
    columns = sql.SQL(", ").join(
        sql.Identifier(c.lower()) for c in ("unique_row_id", *layout.csv_columns)
    )
    options = sql.SQL("FORMAT csv, FREEZE true" if freeze else "FORMAT csv")
    return sql.SQL("COPY {} ({}) FROM STDIN WITH ({})").format(stage, columns, options)


def _copy(
    conn: psycopg.Connection,
    reader: ReaderProcess,
    stage: sql.Composable,
    layout: TaxiLayout,
    name: str,
    cancel_event: threading.Event | None,
) -> int:
    statement = _copy_statement(stage, layout, freeze=True)
    cur = conn.cursor()
    try:
        with cur.copy(statement) as copy:
            while block := reader.read():
                copy.write(block)
            if cancel_event is not None and cancel_event.is_set():
                raise TaskKilled(f"loading {name} was killed")
            # the reader closed its output: make sure it succeeded before COPY commits rows
            summary, error = reader.finish()
            if error:
                raise TaskError(error)
    except psycopg.Error as exc:
        reader.kill()
        _, error = reader.finish()
        if error and "loader stopped reading" not in error and "exit status -9" not in error:
            raise TaskError(error) from None
        raise TaskError(_copy_error(exc, name, layout)) from None
    except BaseException:
        reader.kill()
        raise
    return cur.rowcount


def _publish_partition(
    conn: psycopg.Connection, table: TableName, stage: TableName, name: str
) -> bool:
    conn.execute(sql.SQL("LOCK TABLE {} IN SHARE UPDATE EXCLUSIVE MODE").format(table.ident))
    parts = conn.execute(
        "SELECT n.nspname, c.relname, pg_get_expr(c.relpartbound, c.oid)"
        " FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE i.inhparent = %s::regclass",
        (table.ident.as_string(conn),),
    ).fetchall()
    wanted = conn.execute("SELECT format('FOR VALUES IN (%%L)', %s::text)", (name,)).fetchone()
    replaced = False
    default: TableName | None = None
    for schema, relname, bound in parts:
        if wanted is not None and bound == wanted[0]:
            conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(schema, relname)))
            replaced = True
        elif bound == "DEFAULT":
            default = TableName(schema, relname)
    if default is not None:
        cur = conn.execute(
            sql.SQL("DELETE FROM {} WHERE filename = %s").format(default.ident), (name,)
        )
        replaced = replaced or cur.rowcount > 0
    conn.execute(sql.SQL("ALTER TABLE {} ALTER COLUMN filename DROP DEFAULT").format(stage.ident))
    conn.execute(
        sql.SQL("ALTER TABLE {} ATTACH PARTITION {} FOR VALUES IN ({})").format(
            table.ident, stage.ident, sql.Literal(name)
        )
    )
    final = table.sibling(partition_name(table.name, name))
    taken = conn.execute("SELECT to_regclass(%s)", (final.ident.as_string(conn),)).fetchone()
    if taken is not None and taken[0] is None:
        conn.execute(
            sql.SQL("ALTER TABLE {} RENAME TO {}").format(stage.ident, sql.Identifier(final.name))
        )
    return replaced


def _publish_plain(
    conn: psycopg.Connection, layout: TaxiLayout, table: TableName, stage: sql.Composable, name: str
) -> bool:
    conn.execute(sql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(table.ident))
    cur = conn.execute(sql.SQL("DELETE FROM {} WHERE filename = %s").format(table.ident), (name,))
    replaced = cur.rowcount > 0
    cols = sql.SQL(", ").join(sql.Identifier(n.lower()) for n, _ in layout.table_columns)
    conn.execute(
        sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {}").format(table.ident, cols, cols, stage)
    )
    return replaced
