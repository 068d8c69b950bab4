"""Execution logs: masked, batched into PostgreSQL with COPY, optionally echoed to a console."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from flowhawk.store.repository import Repository


@dataclass(frozen=True)
class LogLine:
    execution_id: str
    task_run_id: str | None
    task_id: str | None
    attempt: int | None
    ts: datetime
    level: str
    message: str


ConsoleSink = Callable[[LogLine], None]


class LogWriter:
    """Collects log lines from any thread; a background thread writes them in batches."""

    def __init__(
        self,
        repo: Repository,
        console: ConsoleSink | None = None,
        *,
        flush_interval: float = 0.1,
        batch_size: int = 1000,
    ) -> None:
        self._repo = repo
        self._console = console
        self._queue: queue.Queue[LogLine | None] = queue.Queue()
        self._flush_interval = flush_interval
        self._batch_size = batch_size
        self._thread = threading.Thread(target=self._loop, name="flowhawk-logs", daemon=True)
        self._closed = False
        self._idle = threading.Event()
        self._idle.set()
        self._thread.start()

    def emit(
        self,
        execution_id: str,
        task_run_id: str | None,
        task_id: str | None,
        attempt: int | None,
        level: str,
        message: str,
    ) -> None:
        line = LogLine(
            execution_id, task_run_id, task_id, attempt, datetime.now(UTC), level, message
        )
        if self._console is not None:
            self._console(line)
        self._idle.clear()
        self._queue.put(line)

    def _loop(self) -> None:
        pending: list[LogLine] = []
        stop = False
        while not stop:
            try:
                item = self._queue.get(timeout=self._flush_interval)
                if item is None:
                    stop = True
                else:
                    pending.append(item)
                while len(pending) < self._batch_size:
                    item = self._queue.get_nowait()
                    if item is None:
                        stop = True
                        break
                    pending.append(item)
            except queue.Empty:
                pass
            if pending:
                self._write(pending)
                pending = []
            if self._queue.empty():
                self._idle.set()

    def _write(self, lines: list[LogLine]) -> None:
        rows = [
            (
                line.execution_id,
                line.task_run_id,
                line.task_id,
                line.attempt,
                line.ts,
                line.level,
                line.message.replace("\x00", ""),
            )
            for line in lines
        ]
        for attempt in range(30):
            try:
                self._repo.write_logs(rows)
                return
            except Exception:  # the database may be restarting: keep the lines, retry
                time.sleep(min(2.0, 0.1 * (attempt + 1)))

    def flush(self, timeout: float = 30.0) -> None:
        """Wait until every line emitted so far is written."""
        deadline = time.monotonic() + timeout
        while not (self._idle.is_set() and self._queue.empty()):
            if time.monotonic() > deadline:
                return
            self._idle.wait(0.05)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            self._thread.join(timeout=30)
