"""The run context handed to a task: rendering, files, logs, labels, secrets."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

from platformdirs import user_cache_dir

from flowhawk.errors import ExpressionError, TaskError
from flowhawk.expr import Renderer
from flowhawk.store.files import FileStorage
from flowhawk.tasks.base import TaskLogger

LEVELS = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR")

#: (level, message) -> None ; the engine binds execution, task, attempt and masking
LogEmitter = Callable[[str, str], None]


class Masker:
    """Replaces registered secret values with ``******`` in any text or structure."""

    def __init__(self) -> None:
        self._secrets: set[str] = set()
        self._lock = threading.Lock()

    def add(self, value: str) -> None:
        if value and len(value) >= 1:
            with self._lock:
                self._secrets.add(value)

    def mask(self, value: Any) -> Any:
        if not self._secrets:
            return value
        if isinstance(value, str):
            for secret in sorted(self._secrets, key=len, reverse=True):
                if secret in value:
                    value = value.replace(secret, "******")
            return value
        if isinstance(value, dict):
            return {k: self.mask(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.mask(v) for v in value]
        return value


class ContextLogger:
    def __init__(self, emit: LogEmitter) -> None:
        self._emit = emit

    def trace(self, message: str) -> None:
        self._emit("TRACE", message)

    def debug(self, message: str) -> None:
        self._emit("DEBUG", message)

    def info(self, message: str) -> None:
        self._emit("INFO", message)

    def warning(self, message: str) -> None:
        self._emit("WARN", message)

    def error(self, message: str) -> None:
        self._emit("ERROR", message)


class RunContext:
    """What one attempt of one task run sees (implements ``tasks.base.TaskContext``)."""

    def __init__(
        self,
        *,
        execution_id: str,
        task_id: str,
        attempt: int,
        working_dir: Path,
        storage: FileStorage,
        storage_prefix: str,
        variables: Mapping[str, Any],
        renderer: Renderer,
        emit: LogEmitter,
        masker: Masker | None = None,
        on_labels: Callable[[dict[str, str]], None] | None = None,
        cancel_event: threading.Event | None = None,
        default_database_url: str | None = None,
    ) -> None:
        self.execution_id = execution_id
        self.task_id = task_id
        self.attempt = attempt
        self.working_dir = Path(working_dir)
        self.working_dir.mkdir(parents=True, exist_ok=True)
        self.storage = storage
        self.storage_prefix = storage_prefix
        self.variables = dict(variables)
        self.renderer = renderer
        self.masker = masker or Masker()
        self.logger: TaskLogger = ContextLogger(
            lambda level, msg: emit(level, self.masker.mask(msg))
        )
        self._on_labels = on_labels
        self.cancel_event = cancel_event or threading.Event()
        #: where PostgreSQL tasks connect when no `url` is set anywhere (the state database)
        self.default_database_url = default_database_url

    # -- rendering ------------------------------------------------------------------
    def render(self, value: Any, prop: str | None = None) -> Any:
        try:
            return self.renderer.render_deep(value, self.variables)
        except ExpressionError as exc:
            where = f"task `{self.task_id}`"
            if prop:
                path = getattr(exc, "path", None)
                where += f", property `{prop}{path or ''}`"
            raise TaskError(f"{where}: {exc}") from exc

    # -- files ----------------------------------------------------------------------
    def put_file(self, local_path: Path, name: str | None = None) -> str:
        return self.storage.put(f"{self.storage_prefix}/tasks/{self.task_id}", local_path, name)

    def open_file(self, uri: str) -> IO[bytes]:
        return self.file_path(uri).open("rb")

    def file_path(self, uri: str) -> Path:
        path = self.storage.path_for(uri)
        if not path.exists():
            raise TaskError(f"stored file not found: {uri}")
        return path

    def new_file_path(self, name: str) -> tuple[Path, str]:
        return self.storage.new_path(f"{self.storage_prefix}/tasks/{self.task_id}", name)

    def purge_files(self) -> int:
        return self.storage.delete_prefix(self.storage_prefix)

    # -- execution ------------------------------------------------------------------
    def add_labels(self, labels: dict[str, str]) -> None:
        if self._on_labels is not None:
            self._on_labels({str(k): str(v) for k, v in labels.items()})

    def register_secret(self, value: str) -> None:
        self.masker.add(value)

    def plugin_cache_dir(self) -> Path:
        path = Path(user_cache_dir("flowhawk")) / "plugins"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def cleanup(self) -> None:
        shutil.rmtree(self.working_dir, ignore_errors=True)
