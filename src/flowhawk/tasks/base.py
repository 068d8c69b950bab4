"""What every task type shares: common properties, the run context a task sees, outputs.

A task type is a pydantic model whose fields are its properties (values may hold
expressions, rendered at run time through ``ctx.render``) and whose ``run`` method does
the work and returns its outputs. Flowable tasks (If, Parallel, ForEach...) have no
``run``: the engine walks their children itself.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import IO, Any, ClassVar, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator

from flowhawk.util.durations import parse_duration


class Retry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["constant", "exponential", "random"] = "constant"
    interval: str | None = None
    maxInterval: str | None = None
    minInterval: str | None = None
    delayFactor: float | None = None
    maxAttempt: int | None = None
    maxAttempts: int | None = None
    maxDuration: str | None = None
    warningOnRetry: bool = False
    behavior: Literal["RETRY_FAILED_TASK", "CREATE_NEW_EXECUTION"] | None = None

    @field_validator("interval", "maxInterval", "minInterval", "maxDuration")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value)
        return value


class TaskLogger(Protocol):
    def trace(self, message: str) -> None: ...
    def debug(self, message: str) -> None: ...
    def info(self, message: str) -> None: ...
    def warning(self, message: str) -> None: ...
    def error(self, message: str) -> None: ...


class TaskContext(Protocol):
    """Everything a running task may use. Tasks never reach into the state store."""

    execution_id: str
    task_id: str
    attempt: int
    working_dir: Path
    logger: TaskLogger
    cancel_event: threading.Event

    def render(self, value: Any, prop: str | None = None) -> Any:
        """Render expressions in a string, or recursively in a list/dict; other values pass.

        ``prop`` names the property being rendered, so that an error can say where it was.
        """

    def put_file(self, local_path: Path, name: str | None = None) -> str:
        """Copy a local file into execution storage; returns its ``kestra:///`` URI."""

    def open_file(self, uri: str) -> IO[bytes]:
        """Open a stored file (``kestra:///`` URI) for reading."""

    def file_path(self, uri: str) -> Path:
        """The local path behind a stored file's URI."""

    def new_file_path(self, name: str) -> tuple[Path, str]:
        """A fresh path in execution storage and the URI it will have once written."""

    def add_labels(self, labels: dict[str, str]) -> None: ...

    def purge_files(self) -> int: ...

    def register_secret(self, value: str) -> None:
        """Mask this value wherever it would be logged or stored."""

    def plugin_cache_dir(self) -> Path: ...


class Task(BaseModel):
    """Properties every task accepts."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    #: full Kestra type names this class answers to (first is the canonical one)
    types: ClassVar[tuple[str, ...]] = ()
    #: flowable tasks have children the engine schedules itself
    flowable: ClassVar[bool] = False

    id: str = Field(pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_-]*$")
    type: str
    description: str | None = None
    disabled: bool = False
    runIf: str | bool | None = None
    timeout: str | None = None
    retry: Retry | None = None
    allowFailure: bool = False
    logLevel: Literal["TRACE", "DEBUG", "INFO", "WARN", "ERROR"] | None = None
    workerGroup: dict[str, Any] | None = None

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, value: str | None) -> str | None:
        if value is not None and "{{" not in value:
            parse_duration(value)
        return value

    def run(self, ctx: TaskContext) -> dict[str, Any]:
        raise NotImplementedError(f"{type(self).__name__} is flowable; the engine runs it")

    def children(self) -> list[Task]:
        """Every task nested under this one (for validation and id uniqueness)."""
        return []
