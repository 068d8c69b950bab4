"""Kestra's core runnable tasks: Log, Return, OutputValues, Sleep, Labels, Fail, Assert, Purge."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from flowhawk.errors import TaskError, TaskKilled
from flowhawk.tasks.base import Task, TaskContext
from flowhawk.util.durations import parse_duration

LogLevel = Literal["TRACE", "DEBUG", "INFO", "WARN", "ERROR"]

_LOG_METHODS: dict[str, str] = {
    "TRACE": "trace",
    "DEBUG": "debug",
    "INFO": "info",
    "WARN": "warning",
    "ERROR": "error",
}


def is_true(rendered: Any) -> bool:
    """The dialect's truthiness: false, 0, empty and null (any case) are false."""
    if rendered is None or rendered is False:
        return False
    return str(rendered).strip().lower() not in ("false", "0", "-0", "", "null")


def _log(ctx: TaskContext, level: str, message: str) -> None:
    getattr(ctx.logger, _LOG_METHODS[level])(message)


def normalise_labels(labels: Any) -> dict[str, str]:
    """A label map, or a list of ``{key, value}``, as a dict of strings (booleans as Kestra writes them)."""
    if labels is None:
        return {}
    if isinstance(labels, dict):
        items = list(labels.items())
    elif isinstance(labels, list):
        items = []
        for entry in labels:
            if not isinstance(entry, dict) or set(entry) != {"key", "value"}:
                raise ValueError(
                    f"a label in a list must be a mapping {{key, value}}, got {entry!r}"
                )
            items.append((entry["key"], entry["value"]))
    else:
        raise ValueError(f"labels must be a map or a list of {{key, value}}, got {labels!r}")
    result: dict[str, str] = {}
    for key, value in items:
        if key is None or str(key).strip() == "":
            raise ValueError("a label key must not be empty")
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif value is None:
            text = ""
        else:
            text = str(value)
        result[str(key)] = text
    return result


class Log(Task):
    """Logs one message, or each of a list of messages, at ``level``."""

    types: ClassVar[tuple[str, ...]] = (
        "io.kestra.plugin.core.log.Log",
        "io.kestra.core.tasks.log.Log",
    )

    message: str | list[str]
    level: LogLevel = "INFO"

    def run(self, ctx: TaskContext) -> dict[str, Any]:
        messages = self.message if isinstance(self.message, list) else [self.message]
        for index, message in enumerate(messages):
            prop = "message" if isinstance(self.message, str) else f"message[{index}]"
            _log(ctx, self.level, str(ctx.render(message, prop)))
        return {}


class Echo(Task):
    """Kestra's deprecated predecessor of Log."""

    types: ClassVar[tuple[str, ...]] = (
        "io.kestra.plugin.core.debug.Echo",
        "io.kestra.core.tasks.debugs.Echo",
    )

    format: str
    level: LogLevel = "INFO"

    def run(self, ctx: TaskContext) -> dict[str, Any]:
        _log(ctx, self.level, str(ctx.render(self.format, "format")))
        return {}


class Return(Task):
    types: ClassVar[tuple[str, ...]] = (
        "io.kestra.plugin.core.debug.Return",
        "io.kestra.core.tasks.debugs.Return",
    )

    format: str | None = None

    def run(self, ctx: TaskContext) -> dict[str, Any]:
        value = ctx.render(self.format, "format") if self.format is not None else None
        return {"value": value}


class OutputValues(Task):
    types: ClassVar[tuple[str, ...]] = (
        "io.kestra.plugin.core.output.OutputValues",
        "io.kestra.core.tasks.outputs.OutputValues",
    )

    values: dict[str, Any] = Field(default_factory=dict)

    def run(self, ctx: TaskContext) -> dict[str, Any]:
        return {"values": ctx.render(self.values, "values")}


class Sleep(Task):
    """Waits ``duration``; a kill wakes it at once."""

    types: ClassVar[tuple[str, ...]] = ("io.kestra.plugin.core.flow.Sleep",)

    duration: str

    @field_validator("duration")
    @classmethod
    def _duration(cls, value: str) -> str:
        if "{{" not in value:
            parse_duration(value)
        return value

    def run(self, ctx: TaskContext) -> dict[str, Any]:
        rendered = str(ctx.render(self.duration, "duration"))
        try:
            seconds = parse_duration(rendered).total_seconds()
        except ValueError as exc:
            raise TaskError(f"task `{self.id}`, property `duration`: {exc}") from exc
        if ctx.cancel_event.wait(max(seconds, 0.0)):
            raise TaskKilled(f"task `{self.id}` was killed while sleeping")
        return {}


class Labels(Task):
    """Adds labels to the running execution."""

    types: ClassVar[tuple[str, ...]] = (
        "io.kestra.plugin.core.execution.Labels",
        "io.kestra.core.tasks.executions.Labels",
    )

    labels: dict[str, Any] | list[dict[str, Any]]

    @field_validator("labels")
    @classmethod
    def _shape(cls, value: Any) -> Any:
        if isinstance(value, list):
            normalise_labels(value)
        if not value:
            raise ValueError("at least one label is required")
        return value

    def run(self, ctx: TaskContext) -> dict[str, Any]:
        rendered = ctx.render(self.labels, "labels")
        try:
            labels = normalise_labels(rendered)
        except ValueError as exc:
            raise TaskError(f"task `{self.id}`, property `labels`: {exc}") from exc
        ctx.add_labels(labels)
        ctx.logger.debug("added labels " + ", ".join(f"{k}={v}" for k, v in labels.items()))
        return {}


class PurgeCurrentExecutionFiles(Task):
    """Deletes every file this execution stored."""

    types: ClassVar[tuple[str, ...]] = (
        "io.kestra.plugin.core.storage.PurgeCurrentExecutionFiles",
        "io.kestra.plugin.core.storage.PurgeExecution",
        "io.kestra.core.tasks.storages.PurgeExecution",
    )

    def run(self, ctx: TaskContext) -> dict[str, Any]:
        count = ctx.purge_files()
        ctx.logger.info(f"purged {count} file(s) of execution {ctx.execution_id}")
        return {"count": count}


class Fail(Task):
    """Fails the task (hence the execution), or only when ``condition`` renders true."""

    types: ClassVar[tuple[str, ...]] = (
        "io.kestra.plugin.core.execution.Fail",
        "io.kestra.core.tasks.executions.Fail",
    )

    condition: str | bool | None = None
    errorMessage: str = "Task failure"

    def run(self, ctx: TaskContext) -> dict[str, Any]:
        if self.condition is not None and not is_true(ctx.render(self.condition, "condition")):
            return {}
        raise TaskError(str(ctx.render(self.errorMessage, "errorMessage")))


class Assert(Task):
    """Fails when any of ``conditions`` renders false, naming each one that did."""

    types: ClassVar[tuple[str, ...]] = ("io.kestra.plugin.core.execution.Assert",)

    conditions: list[str | bool] = Field(min_length=1)
    errorMessage: str | None = None

    def run(self, ctx: TaskContext) -> dict[str, Any]:
        failed = []
        for index, condition in enumerate(self.conditions):
            if not is_true(ctx.render(condition, f"conditions[{index}]")):
                failed.append(str(condition))
        if failed:
            for condition in failed:
                ctx.logger.error(f"assertion is false: {condition}")
            message = (
                str(ctx.render(self.errorMessage, "errorMessage"))
                if self.errorMessage
                else f"{len(failed)} assertion(s) failed: " + "; ".join(failed)
            )
            raise TaskError(message)
        return {}
