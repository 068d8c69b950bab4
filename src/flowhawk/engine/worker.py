"""Worker pool: threads that claim executions from PostgreSQL and run them.

Woken by LISTEN/NOTIFY (new execution, state change), with polling as the fallback. Workers
heartbeat; a worker whose heartbeat is older than ``FLOWHAWK_TAKEOVER_SECONDS`` (default 30)
loses its executions to the others, which re-run the interrupted task run as a new attempt.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

import psycopg

from flowhawk.engine.executor import FLOW_CACHE, Executor
from flowhawk.engine.logs import LogWriter
from flowhawk.engine.service import Engine
from flowhawk.store.ids import new_id
from flowhawk.store.queue import Limit, Queue
from flowhawk.store.repository import Repository

log = logging.getLogger("flowhawk.worker")

CHANNELS = ("flowhawk_queue", "flowhawk_executions")


def takeover_seconds() -> float:
    return float(os.environ.get("FLOWHAWK_TAKEOVER_SECONDS", "30"))


def stop_grace_seconds() -> float:
    """How long a stopping worker lets running executions finish before handing them back."""
    return float(os.environ.get("FLOWHAWK_STOP_GRACE_SECONDS", "30"))


def live_workers(repo: Repository) -> int:
    return Queue(repo).live_workers(max(5.0, takeover_seconds()))


def _after_execution(repo: Repository, execution_id: str) -> None:
    """Hooks that run when an execution has ended (trigger stopAfter)."""
    try:
        from flowhawk.engine.scheduler import apply_stop_after
    except ImportError:
        return
    execution = repo.get_execution(execution_id)
    if execution is not None:
        apply_stop_after(repo, execution)


class WorkerPool:
    def __init__(
        self,
        engine: Engine,
        threads: int = 4,
        *,
        worker_id: str | None = None,
        kind: str = "worker",
    ) -> None:
        self.engine = engine
        self.repo = engine.repo
        self.queue = Queue(self.repo)
        self.threads = max(1, threads)
        self.worker_id = worker_id or f"w-{new_id()[:10]}"
        self.kind = kind
        self.stopping = threading.Event()
        self._halted = threading.Event()
        self.wake = threading.Condition()
        self._wakeups = 0
        self._threads: list[threading.Thread] = []
        self._running: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()
        self.logs = LogWriter(self.repo)
        self.executor = Executor(
            self.repo, engine.settings, worker_id=self.worker_id, log_writer=self.logs
        )
        self.started = False

    # -- lifecycle ------------------------------------------------------------------
    def start(self) -> WorkerPool:
        if self.started:
            return self
        self.started = True
        self.queue.register_worker(self.worker_id, self.threads, self.kind)
        for name, target in (("heartbeat", self._heartbeat_loop), ("listen", self._listen_loop)):
            thread = threading.Thread(target=target, name=f"flowhawk-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        for i in range(self.threads):
            thread = threading.Thread(
                target=self._work_loop, name=f"flowhawk-worker-{i}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Stop claiming; let running executions finish for ``timeout`` seconds (default
        ``FLOWHAWK_STOP_GRACE_SECONDS``, 30), then hand back what is still running: its tasks
        are interrupted here and another worker re-runs them as new attempts. The heartbeat
        goes on meanwhile, so nobody takes these executions over early."""
        grace = stop_grace_seconds() if timeout is None else timeout
        self.stopping.set()
        self._notify()
        deadline = time.monotonic() + grace
        workers = [t for t in self._threads if t.name.startswith("flowhawk-worker-")]
        for thread in workers:
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            left = dict(self._running)
        for execution_id, thread in left.items():
            self._hand_back(execution_id, thread)
        self._halted.set()
        for thread in self._threads:
            thread.join(5.0)
        try:
            self.queue.stop_worker(self.worker_id)
        except Exception:
            log.warning("could not mark worker %s stopped", self.worker_id)
        self.logs.close()

    def _hand_back(self, execution_id: str, thread: threading.Thread) -> None:
        try:
            released = self.queue.release(execution_id, self.worker_id)
        except Exception as exc:
            log.warning(
                "could not hand back %s (another worker takes it over): %s", execution_id, exc
            )
            return
        if released:
            self.executor.interrupt(execution_id)
            thread.join(15.0)
        try:
            self.queue.hand_back(execution_id, self.worker_id)
            log.info("handed back execution %s", execution_id)
        except Exception as exc:
            log.warning(
                "could not hand back %s (another worker takes it over): %s", execution_id, exc
            )

    def run_until(self, done: Callable[[], bool], timeout: float | None = None) -> bool:
        self.start()
        deadline = None if timeout is None else time.monotonic() + timeout
        while not done():
            if deadline is not None and time.monotonic() > deadline:
                return False
            time.sleep(0.2)
        return True

    # -- loops ----------------------------------------------------------------------
    def _notify(self) -> None:
        with self.wake:
            self._wakeups += 1
            self.wake.notify_all()

    def _limit(self, namespace: str, flow_id: str, revision: int) -> Limit:
        flow = FLOW_CACHE.get(self.repo, self.engine.settings, namespace, flow_id, revision)
        concurrency = flow.concurrency
        if concurrency is None:
            return Limit(None)
        return Limit(concurrency.limit, concurrency.behavior)

    def _work_loop(self) -> None:
        while not self.stopping.is_set():
            with self.wake:
                seen = self._wakeups
            try:
                claimed = self.queue.claim(self.worker_id, self._limit)
            except Exception as exc:
                log.warning("claim failed (retrying): %s", exc)
                self.stopping.wait(1.0)
                continue
            if claimed is None:
                with self.wake:
                    # a wake-up that came while claiming may be for work that claim missed
                    if self._wakeups == seen:
                        self.wake.wait(1.0)
                continue
            with self._lock:
                self._running[claimed.id] = threading.current_thread()
            try:
                self.executor.run(claimed.id)
            except Exception as exc:
                log.exception(
                    "execution %s failed in the worker, handing it back: %s", claimed.id, exc
                )
                self._retry_hand_back(claimed.id)
            finally:
                with self._lock:
                    self._running.pop(claimed.id, None)
            try:
                _after_execution(self.repo, claimed.id)
            except Exception as exc:
                log.warning("after-execution hook failed for %s: %s", claimed.id, exc)

    def _retry_hand_back(self, execution_id: str) -> None:
        """After the executor itself failed (e.g. PostgreSQL went away mid-run): make the
        execution claimable again, so it does not stay RUNNING under a live worker."""
        for attempt in range(60):
            try:
                self.queue.hand_back(execution_id, self.worker_id)
                return
            except Exception:
                if self._halted.wait(min(2.0, 0.2 * (attempt + 1))):
                    return

    def _heartbeat_loop(self) -> None:
        last_takeover = 0.0
        while not self._halted.wait(2.0):
            try:
                self.queue.heartbeat(self.worker_id)
                if time.monotonic() - last_takeover > 5.0:
                    last_takeover = time.monotonic()
                    if self.queue.take_over(takeover_seconds()):
                        self._notify()
            except Exception as exc:
                log.warning("heartbeat failed (retrying): %s", exc)

    def _listen_loop(self) -> None:
        while not self.stopping.is_set():
            try:
                with psycopg.connect(self.repo.url, autocommit=True) as conn:
                    for channel in CHANNELS:
                        conn.execute(f"LISTEN {channel}")
                    while not self.stopping.is_set():
                        # wake the workers at each notification, not when the batch ends
                        for _ in conn.notifies(timeout=1.0, stop_after=100):
                            self._notify()
            except Exception as exc:
                log.warning("LISTEN connection lost (polling meanwhile): %s", exc)
                self.stopping.wait(1.0)
