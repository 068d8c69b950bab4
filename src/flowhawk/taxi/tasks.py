"""flowhawk's own taxi task types: ``flowhawk.taxi.Load`` and ``flowhawk.taxi.Verify``.

Both connect like the ``io.kestra.plugin.jdbc.postgresql`` tasks (``url`` in JDBC form,
``username``, ``password``, the SSL properties) and receive the ``pluginDefaults`` given
for that prefix (see ``tasks.registry.PLUGIN_DEFAULTS_AS``), so one setting points the
course's flows and these tasks at the same database.

``flowhawk.taxi.Load``
    ``taxi`` (green | yellow), ``uri`` (``http(s)://`` or ``kestra:///``, ``.csv.gz`` or
    ``.csv``), ``filename`` (the month's name in the table, default: the uri's file name
    without ``.gz``, e.g. ``green_tripdata_2019-01.csv``), ``table`` (default
    ``public.<taxi>_tripdata``), ``streams`` (COPY streams PostgreSQL parses in parallel,
    default 2; 1 loads in a single transaction; a plain table always gets 1). Outputs: ``rowCount``, ``sourceRows``, ``duplicates``,
    ``filename``, ``table``, ``mode``, ``replaced``, ``seconds``.

``flowhawk.taxi.Verify``
    ``taxi``, ``month`` (``YYYY-MM``, e.g. ``"{{ trigger.date | date('yyyy-MM') }}"``),
    ``table``, ``recount`` (download the source again and count, default false),
    ``failOnDiscrepancy`` (default true). Outputs: ``ok``, ``problems`` and the month's
    figures (``rows``, ``distinctIds``, ``withoutVendor``, ``sourceRows``).
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import field_validator

from flowhawk.errors import TaskError
from flowhawk.tasks.base import TaskContext
from flowhawk.tasks.pgconn import connect_target, kill_watch, raise_if_killed
from flowhawk.tasks.postgres import PostgresConnection
from flowhawk.taxi.layout import LAYOUTS
from flowhawk.taxi.load import filename_from_source, load_month
from flowhawk.taxi.synth import parse_year_month
from flowhawk.taxi.verify import verify_months
from flowhawk.util.jdbc import redact_url


def _taxi(ctx: TaskContext, value: str) -> str:
    taxi = str(ctx.render(value, "taxi")).strip().lower()
    if taxi not in LAYOUTS:
        raise TaskError(f"property `taxi`: {taxi!r} is not one of {', '.join(sorted(LAYOUTS))}")
    return taxi


def _static_taxi(value: str) -> str:
    if "{{" not in value and "{%" not in value and value.strip().lower() not in LAYOUTS:
        raise ValueError(f"taxi must be one of {', '.join(sorted(LAYOUTS))}")
    return value


class Load(PostgresConnection):
    """Streams one month file into the course's table; see ``flowhawk.taxi.load``."""

    types: ClassVar[tuple[str, ...]] = ("flowhawk.taxi.Load",)

    taxi: str
    uri: str
    filename: str | None = None
    table: str | None = None
    streams: int | str = 2

    @field_validator("taxi")
    @classmethod
    def _check_taxi(cls, value: str) -> str:
        return _static_taxi(value)

    def run(self, ctx: TaskContext) -> dict[str, Any]:
        taxi = _taxi(ctx, self.taxi)
        streams = _streams(ctx.render(self.streams, "streams"))
        uri = str(ctx.render(self.uri, "uri")).strip()
        if uri.startswith("kestra://"):
            source = str(ctx.file_path(uri))
        elif uri.startswith(("http://", "https://")):
            source = uri
        else:
            raise TaskError(
                f"property `uri`: expected an http(s):// or kestra:/// URI, got {uri!r}"
            )
        filename = (
            str(ctx.render(self.filename, "filename")).strip()
            if self.filename
            else filename_from_source(uri)
        )
        table = str(ctx.render(self.table, "table")).strip() if self.table else None
        conn, target = self.open_connection(ctx)
        with conn, kill_watch(ctx, conn):
            try:
                result = load_month(
                    conn,
                    taxi=taxi,
                    source=source,
                    filename=filename,
                    table=table,
                    execution_id=ctx.execution_id,
                    display_source=redact_url(uri),
                    log=ctx.logger.info,
                    cancel_event=ctx.cancel_event,
                    connect=lambda: connect_target(target),
                    streams=streams,
                )
            except TaskError:
                raise_if_killed(ctx, f"while loading {filename}")
                raise
        return result.outputs()


class Verify(PostgresConnection):
    """Checks one loaded month against its recorded source row count."""

    types: ClassVar[tuple[str, ...]] = ("flowhawk.taxi.Verify",)

    taxi: str
    month: str
    table: str | None = None
    recount: bool | str = False
    failOnDiscrepancy: bool | str = True

    @field_validator("taxi")
    @classmethod
    def _check_taxi(cls, value: str) -> str:
        return _static_taxi(value)

    def run(self, ctx: TaskContext) -> dict[str, Any]:
        taxi = _taxi(ctx, self.taxi)
        month_text = str(ctx.render(self.month, "month")).strip()
        try:
            month = parse_year_month(month_text[:7] if len(month_text) > 7 else month_text)
        except ValueError as exc:
            raise TaskError(f"property `month`: {exc}") from None
        table = str(ctx.render(self.table, "table")).strip() if self.table else None
        recount = _flag(ctx.render(self.recount, "recount"))
        fail = _flag(ctx.render(self.failOnDiscrepancy, "failOnDiscrepancy"))
        conn, _target = self.open_connection(ctx)
        with conn, kill_watch(ctx, conn):
            report = verify_months(conn, taxi, [month], table=table, recount=recount)
        info = report.months[0]
        for line in report.lines():
            ctx.logger.info(line)
        outputs = {
            "ok": report.ok,
            "problems": report.problems(),
            "filename": info.filename,
            "rows": info.rows,
            "distinctIds": info.distinct_ids,
            "withoutVendor": info.without_vendor,
            "sourceRows": info.source_rows,
        }
        if fail and not report.ok:
            raise TaskError(
                f"verification of {info.filename} failed: " + "; ".join(report.problems())
            )
        return outputs


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() not in ("", "false", "0", "null", "none", "no")


def _streams(value: Any) -> int:
    try:
        count = int(str(value).strip())
    except ValueError:
        count = 0
    if not 1 <= count <= 16:
        raise TaskError(f"property `streams`: expected a whole number from 1 to 16, got {value!r}")
    return count
