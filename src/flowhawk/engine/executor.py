"""Runs one execution to its end by walking the flow's task tree.

Each task run is keyed by a stable *path* (``if_yellow/then/copy`` or ``each[3]/load``), so a
restarted execution reuses the runs that already succeeded and resumes at the one that failed.
Flowable tasks (If, Sequential, Parallel, ForEach, Subflow) are walked here; every other task
gets a ``RunContext`` and its ``run`` method is called, with retries and a timeout around it.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from flowhawk.config import Settings, data_dir
from flowhawk.engine.context import Masker, RunContext
from flowhawk.engine.logs import ConsoleSink, LogWriter
from flowhawk.errors import FlowhawkError, TaskError, TaskKilled
from flowhawk.expr import Renderer
from flowhawk.flow.loader import load_flow
from flowhawk.flow.model import Flow
from flowhawk.store.files import FileStorage
from flowhawk.store.ids import new_id
from flowhawk.store.records import ExecutionRecord, TaskRunRecord
from flowhawk.store.repository import Repository
from flowhawk.tasks.base import Task
from flowhawk.util.durations import parse_duration

DONE_OK = ("SUCCESS", "WARNING", "SKIPPED")


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _interrupted(attempts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Attempts of a task run taken over from a dead or stopping worker: one still marked
    RUNNING was interrupted, so it ends KILLED and the task runs again as a new attempt."""
    return [
        {**a, "state": "KILLED", "endDate": a.get("endDate") or _iso(_now())}
        if a.get("state") == "RUNNING"
        else dict(a)
        for a in attempts
    ]


def _worst(states: list[str]) -> str:
    for state in ("KILLED", "FAILED", "WARNING"):
        if state in states:
            return state
    return "SUCCESS"


@dataclass
class Scope:
    """Where a task sits: its parent path and the ForEach values above it."""

    path: str = ""
    values: tuple[str, ...] = ()
    local_outputs: dict[str, Any] = field(default_factory=dict)
    parents: tuple[dict[str, Any], ...] = ()

    def child(self, segment: str) -> str:
        return f"{self.path}/{segment}" if self.path else segment


class _FlowCache:
    """Parsed flows by database, global plugin defaults and (namespace, id, revision).

    A server parses each revision once; the database and the defaults are part of the key
    because one process may hold several engines (tests, embedded use).
    """

    def __init__(self) -> None:
        self._flows: dict[tuple[str, str, str, str, int], Flow] = {}
        self._lock = threading.Lock()

    def get(self, repo: Repository, settings: Settings, ns: str, fid: str, rev: int) -> Flow:
        key = (repo.url, repr(settings.plugin_defaults), ns, fid, rev)
        with self._lock:
            cached = self._flows.get(key)
        if cached is not None:
            return cached
        record = repo.get_flow(ns, fid, rev)
        if record is None:
            raise FlowhawkError(f"flow {ns}/{fid} revision {rev} not found")
        flow = load_flow(record.source, f"{ns}/{fid}", settings.plugin_defaults)
        flow.revision = rev
        with self._lock:
            if len(self._flows) > 500:
                self._flows.clear()
            self._flows[key] = flow
        return flow


FLOW_CACHE = _FlowCache()


class Executor:
    """Runs executions against a repository and a file storage."""

    def __init__(
        self,
        repo: Repository,
        settings: Settings,
        *,
        console: ConsoleSink | None = None,
        worker_id: str | None = None,
        log_writer: LogWriter | None = None,
    ) -> None:
        self.repo = repo
        self.settings = settings
        self.storage = FileStorage(settings.storage_path)
        self.worker_id = worker_id
        self._own_writer = log_writer is None
        self.logs = log_writer or LogWriter(repo, console)
        self.work_root = data_dir() / "work"
        self._runs: dict[str, _ExecutionRun] = {}
        self._runs_lock = threading.Lock()

    def close(self) -> None:
        if self._own_writer:
            self.logs.close()

    def load_flow(self, execution: ExecutionRecord) -> Flow:
        return FLOW_CACHE.get(
            self.repo,
            self.settings,
            execution.namespace,
            execution.flow_id,
            execution.flow_revision,
        )

    def run(self, execution_id: str, *, secret_inputs: dict[str, Any] | None = None) -> str:
        """Run the execution to its end; returns its final state."""
        execution = self.repo.get_execution(execution_id)
        if execution is None:
            raise FlowhawkError(f"execution {execution_id} not found")
        try:
            flow = self.load_flow(execution)
        except FlowhawkError as exc:
            self.logs.emit(execution_id, None, None, None, "ERROR", str(exc))
            self.logs.flush()
            self.repo.set_execution_state(execution_id, "FAILED", error=str(exc))
            return "FAILED"
        if not secret_inputs:
            secret_inputs = self.repo.secret_inputs(execution_id)
        run = _ExecutionRun(self, execution, flow, secret_inputs or {})
        with self._runs_lock:
            self._runs[execution_id] = run
        try:
            return run.run()
        finally:
            with self._runs_lock:
                self._runs.pop(execution_id, None)
            self.logs.flush()

    def interrupt(self, execution_id: str) -> bool:
        """Stop a run of this process as a kill does (its subprocesses included); used when a
        stopping worker hands the execution back. False when it is not running here."""
        with self._runs_lock:
            run = self._runs.get(execution_id)
        if run is None:
            return False
        run.kill()
        return True


class _ExecutionRun:
    def __init__(
        self,
        executor: Executor,
        execution: ExecutionRecord,
        flow: Flow,
        secret_inputs: dict[str, Any],
    ) -> None:
        self.ex = executor
        self.repo = executor.repo
        self.execution = execution
        self.flow = flow
        self.masker = Masker()
        self.renderer = Renderer(secret_hook=self.masker.add, file_reader=self._read_file)
        self.outputs: dict[str, Any] = {}
        self.labels: dict[str, str] = dict(execution.labels or {})
        self.lock = threading.RLock()
        self.killed = threading.Event()
        self.active_events: set[threading.Event] = set()
        self.storage_prefix = executor.storage.execution_prefix(
            execution.namespace, execution.flow_id, execution.id
        )
        self.inputs = dict(execution.inputs or {})
        for key, value in secret_inputs.items():
            self.inputs[key] = value
            if value is not None:
                self.masker.add(str(value))
        self.previous = {r.path: r for r in self.repo.task_runs(execution.id)}
        self.work_dir = self.ex.work_root / execution.id

    # -- plumbing -------------------------------------------------------------------
    def _read_file(self, uri: str) -> str:
        return self.ex.storage.path_for(uri).read_text()

    def log(
        self,
        level: str,
        message: str,
        task_id: str | None = None,
        attempt: int | None = None,
        task_run_id: str | None = None,
    ) -> None:
        self.ex.logs.emit(
            self.execution.id, task_run_id, task_id, attempt, level, self.masker.mask(message)
        )

    def _trigger_vars(self) -> dict[str, Any]:
        trig = dict(self.execution.trigger or {})
        if self.execution.trigger_date and "date" not in trig:
            trig["date"] = self.execution.trigger_date.isoformat()
        return trig

    def base_vars(self) -> dict[str, Any]:
        envs = {k[4:].lower(): v for k, v in os.environ.items() if k.startswith("ENV_")}
        return {
            "flow": {
                "id": self.flow.id,
                "namespace": self.flow.namespace,
                "revision": self.execution.flow_revision,
            },
            "execution": {
                "id": self.execution.id,
                "startDate": _iso(self.execution.start_date or _now()),
                "originalId": self.execution.original_id or self.execution.id,
                "state": "RUNNING",
            },
            "inputs": self.inputs,
            "vars": dict(self.flow.variables or {}),
            "labels": dict(self.labels),
            "trigger": self._trigger_vars(),
            "envs": envs,
        }

    def vars_for(self, task: Task, scope: Scope, taskrun: dict[str, Any]) -> dict[str, Any]:
        variables = self.base_vars()
        with self.lock:
            outputs = dict(self.outputs)
            for tid, outs in scope.local_outputs.items():
                merged = dict(outputs.get(tid) or {}) if isinstance(outputs.get(tid), dict) else {}
                merged.update(outs)
                outputs[tid] = merged
        variables["outputs"] = outputs
        variables["task"] = {"id": task.id, "type": task.type}
        variables["taskrun"] = taskrun
        if scope.parents:
            variables["parent"] = scope.parents[-1]
            variables["parents"] = list(reversed(scope.parents))
        return variables

    def store_outputs(self, task_id: str, scope: Scope, outs: dict[str, Any]) -> None:
        with self.lock:
            if not scope.values:
                self.outputs[task_id] = outs
                return
            node = self.outputs.setdefault(task_id, {})
            for value in scope.values[:-1]:
                node = node.setdefault(value, {})
            node[scope.values[-1]] = outs
            scope.local_outputs[task_id] = outs

    def on_labels(self, labels: dict[str, str]) -> None:
        labels = self.masker.mask(labels)
        with self.lock:
            self.labels.update(labels)
        self.repo.add_labels(self.execution.id, labels)

    # -- kill -----------------------------------------------------------------------
    def _watch_kill(self, done: threading.Event) -> None:
        while not done.wait(0.5):
            try:
                if self.repo.kill_requested(self.execution.id):
                    self.kill()
                    return
            except Exception:
                continue

    def kill(self) -> None:
        self.killed.set()
        with self.lock:
            for event in list(self.active_events):
                event.set()

    # -- execution ------------------------------------------------------------------
    def run(self) -> str:
        ex = self.execution
        if not (ex.state == "RUNNING" and ex.worker_id and ex.worker_id == self.ex.worker_id):
            self.repo.set_execution_state(ex.id, "RUNNING", worker_id=self.ex.worker_id)
        if self.execution.start_date is None:
            self.execution.start_date = _now()
        self.log("INFO", f"Execution {ex.id} of {ex.namespace}/{ex.flow_id} started")
        done = threading.Event()
        watcher = threading.Thread(target=self._watch_kill, args=(done,), daemon=True)
        watcher.start()
        error: str | None = None
        try:
            state = self.run_list(self.flow.tasks, Scope())
            if state in ("FAILED", "KILLED") and self.flow.errors and not self.killed.is_set():
                self.run_list(self.flow.errors, Scope(path="errors"))
            if self.flow.finally_:
                final_state = self.run_list(self.flow.finally_, Scope(path="finally"))
                state = _worst([state, final_state])
            if self.killed.is_set():
                state = "KILLED"
        except Exception as exc:  # an engine bug must still end the execution
            error = f"internal error: {exc}"
            self.log("ERROR", error + "\n" + traceback.format_exc())
            state = "FAILED"
        finally:
            done.set()
        flow_outputs = None
        if state in ("SUCCESS", "WARNING") and self.flow.outputs:
            try:
                flow_outputs = self._flow_outputs()
            except TaskError as exc:
                self.log("ERROR", f"flow outputs: {exc}")
                state = "FAILED"
        shutil.rmtree(self.work_dir, ignore_errors=True)
        self.log("INFO", f"Execution {ex.id} ended {state}")
        self.ex.logs.flush()
        if error is None and state == "FAILED":
            error = self.first_error
        self.repo.set_execution_state(
            ex.id,
            state,
            error=self.masker.mask(error),
            outputs=self.masker.mask(flow_outputs),
            worker_id=self.ex.worker_id,
        )
        return state

    first_error: str | None = None

    def _flow_outputs(self) -> dict[str, Any]:
        variables = self.base_vars()
        variables["outputs"] = dict(self.outputs)
        result: dict[str, Any] = {}
        for output in self.flow.outputs or []:
            try:
                result[output.id] = self.renderer.render_deep(output.value, variables)
            except FlowhawkError as exc:
                raise TaskError(f"output `{output.id}`: {exc}") from exc
        return result

    def run_list(self, tasks: list[Task], scope: Scope) -> str:
        states: list[str] = []
        for task in tasks:
            if self.killed.is_set():
                states.append("KILLED")
                break
            state = self.run_task(task, scope)
            states.append(state)
            if state in ("FAILED", "KILLED"):
                break
        return _worst(states)

    # -- one task run ---------------------------------------------------------------
    def run_task(self, task: Task, scope: Scope) -> str:
        if task.disabled:
            return "SUCCESS"
        path = scope.child(task.id)
        error_before = self.first_error
        previous = self.previous.get(path)
        if previous is not None and previous.state in DONE_OK and not task.flowable:
            if previous.outputs is not None:
                self.store_outputs(task.id, scope, previous.outputs)
            return "SUCCESS" if previous.state == "SKIPPED" else previous.state
        record = TaskRunRecord(
            id=previous.id if previous else new_id(),
            execution_id=self.execution.id,
            path=path,
            task_id=task.id,
            parent_path=scope.path or None,
            value=scope.values[-1] if scope.values else None,
            state="RUNNING",
            attempts=_interrupted(previous.attempts) if previous else [],
            start_date=_now(),
        )
        if task.flowable:  # its children show under it; any other task is saved by its attempt
            self.repo.save_task_run(record)
        taskrun = {
            "id": record.id,
            "value": record.value,
            "attemptsCount": len(record.attempts),
        }
        try:
            if task.runIf is not None and task.runIf != "":
                cond = self._render(task, scope, taskrun, task.runIf, "runIf")
                if not self.renderer.is_true(cond):
                    record.state = "SKIPPED"
                    self._finish(record)
                    self.log("INFO", f"runIf is false: {task.id} skipped", task.id)
                    return "SUCCESS"
            if task.flowable:
                state = self.run_flowable(task, scope, record, taskrun)
            else:
                state = self.run_attempts(task, scope, record, taskrun)
        except TaskError as exc:
            self.log("ERROR", str(exc), task.id, task_run_id=record.id)
            record.error = str(exc)
            self.first_error = self.first_error or str(exc)
            state = "FAILED"
        if state == "FAILED" and task.allowFailure:
            self.log("WARN", f"{task.id} failed; allowFailure turns it into a warning", task.id)
            state = "WARNING"
            self.first_error = error_before  # a tolerated failure is not the execution's error
        record.state = state
        self._finish(record)
        return state

    def _finish(self, record: TaskRunRecord) -> None:
        record.end_date = _now()
        record.outputs = self.masker.mask(record.outputs) if record.outputs else record.outputs
        record.error = self.masker.mask(record.error)
        self.repo.save_task_run(record)

    def _render(
        self, task: Task, scope: Scope, taskrun: dict[str, Any], value: Any, prop: str
    ) -> Any:
        ctx = self._context(task, scope, taskrun, 0, threading.Event(), Path(self.work_dir))
        return ctx.render(value, prop)

    def _context(
        self,
        task: Task,
        scope: Scope,
        taskrun: dict[str, Any],
        attempt: int,
        cancel: threading.Event,
        working_dir: Path,
    ) -> RunContext:
        variables = self.vars_for(task, scope, taskrun)
        variables["workingDir"] = str(working_dir)
        run_id = taskrun.get("id")

        def emit(level: str, message: str) -> None:
            self.log(level, message, task.id, attempt or None, run_id)

        return RunContext(
            execution_id=self.execution.id,
            task_id=task.id,
            attempt=attempt,
            working_dir=working_dir,
            storage=self.ex.storage,
            storage_prefix=self.storage_prefix,
            variables=variables,
            renderer=self.renderer,
            emit=emit,
            masker=self.masker,
            on_labels=self.on_labels,
            cancel_event=cancel,
            default_database_url=self.repo.url,
        )

    def run_attempts(
        self, task: Task, scope: Scope, record: TaskRunRecord, taskrun: dict[str, Any]
    ) -> str:
        retry = task.retry
        max_attempts = 1
        if retry is not None:
            max_attempts = max(1, retry.maxAttempt or retry.maxAttempts or 1)
        deadline = (
            time.monotonic() + parse_duration(retry.maxDuration).total_seconds()
            if retry is not None and retry.maxDuration
            else None
        )
        timeout = None
        if task.timeout:
            timeout = parse_duration(
                str(self._render(task, scope, taskrun, task.timeout, "timeout"))
            )
        for number in range(1, max_attempts + 1):
            attempt_no = len(record.attempts) + 1
            taskrun["attemptsCount"] = attempt_no - 1
            attempt = {"state": "RUNNING", "startDate": _iso(_now()), "endDate": None}
            record.attempts.append(attempt)
            self.repo.save_task_run(record)
            state, error = self._one_attempt(task, scope, record, taskrun, attempt_no, timeout)
            attempt["state"] = state
            attempt["endDate"] = _iso(_now())
            if state == "SUCCESS":
                if number > 1 and retry is not None and retry.warningOnRetry:
                    return "WARNING"
                return "SUCCESS"
            if state == "KILLED" or number == max_attempts:
                if error:
                    record.error = error
                    self.first_error = self.first_error or f"{task.id}: {error}"
                return state
            delay = self._retry_delay(task, number)
            if deadline is not None and time.monotonic() + delay > deadline:
                record.error = error
                self.first_error = self.first_error or f"{task.id}: {error}"
                return "FAILED"
            attempt["state"] = "RETRYING"
            record.state = "RETRYING"
            self.repo.save_task_run(record)
            self.log("WARN", f"attempt {attempt_no} failed; retrying in {delay:g}s", task.id)
            if self.killed.wait(delay):
                return "KILLED"
        return "FAILED"

    def _retry_delay(self, task: Task, number: int) -> float:
        retry = task.retry
        assert retry is not None
        base = parse_duration(retry.interval).total_seconds() if retry.interval else 1.0
        cap = parse_duration(retry.maxInterval).total_seconds() if retry.maxInterval else None
        if retry.type == "exponential":
            base = base * ((retry.delayFactor or 2.0) ** (number - 1))
        elif retry.type == "random":
            low = parse_duration(retry.minInterval).total_seconds() if retry.minInterval else 0.0
            high = cap or base
            base = random.uniform(low, max(low, high))
        if cap is not None:
            base = min(base, cap)
        return max(0.0, base)

    def _one_attempt(
        self,
        task: Task,
        scope: Scope,
        record: TaskRunRecord,
        taskrun: dict[str, Any],
        attempt_no: int,
        timeout: timedelta | None,
    ) -> tuple[str, str | None]:
        cancel = threading.Event()
        with self.lock:
            self.active_events.add(cancel)
        if self.killed.is_set():
            cancel.set()
        timed_out = threading.Event()
        timer: threading.Timer | None = None
        if timeout is not None:

            def expire() -> None:
                timed_out.set()
                cancel.set()

            timer = threading.Timer(timeout.total_seconds(), expire)
            timer.daemon = True
            timer.start()
        working_dir = self.work_dir / f"{record.id}-{attempt_no}"
        ctx = self._context(task, scope, taskrun, attempt_no, cancel, working_dir)
        try:
            outputs = task.run(ctx) or {}
            outputs = self.masker.mask(outputs)
            record.outputs = outputs
            self.store_outputs(task.id, scope, outputs)
            return "SUCCESS", None
        except TaskKilled as exc:
            if timed_out.is_set():
                message = f"Timeout after {task.timeout}"
                self.log("ERROR", message, task.id, attempt_no, record.id)
                return "FAILED", message
            self.log("WARN", f"killed: {exc}" if str(exc) else "killed", task.id, attempt_no)
            return "KILLED", "killed"
        except TaskError as exc:
            if timed_out.is_set():
                message = f"Timeout after {task.timeout}"
                self.log("ERROR", message, task.id, attempt_no, record.id)
                return "FAILED", message
            if self.killed.is_set():
                return "KILLED", "killed"
            self.log("ERROR", str(exc), task.id, attempt_no, record.id)
            return "FAILED", str(exc)
        except FlowhawkError as exc:
            self.log("ERROR", str(exc), task.id, attempt_no, record.id)
            return "FAILED", str(exc)
        except Exception as exc:
            message = f"{type(exc).__name__}: {exc}"
            self.log("ERROR", message, task.id, attempt_no, record.id)
            self.log("DEBUG", traceback.format_exc(), task.id, attempt_no, record.id)
            return "FAILED", message
        finally:
            if timer is not None:
                timer.cancel()
            with self.lock:
                self.active_events.discard(cancel)
            files = self.ex.storage.list_prefix(f"{self.storage_prefix}/tasks/{task.id}")
            if files:
                sizes = []
                for uri in files:
                    try:
                        sizes.append((uri, self.ex.storage.path_for(uri).stat().st_size))
                    except OSError:
                        continue
                try:
                    self.repo.record_files(self.execution.id, task.id, sizes)
                except Exception:
                    pass
            shutil.rmtree(working_dir, ignore_errors=True)

    # -- flowable tasks -------------------------------------------------------------
    def run_flowable(
        self, task: Task, scope: Scope, record: TaskRunRecord, taskrun: dict[str, Any]
    ) -> str:
        kind = type(task).__name__
        handler: Callable[..., str] | None = getattr(self, f"_flow_{kind.lower()}", None)
        if handler is None:
            raise TaskError(f"task `{task.id}`: flowable type {task.type} is not supported")
        record.attempts.append({"state": "RUNNING", "startDate": _iso(_now()), "endDate": None})
        state: str = handler(task, scope, record, taskrun)
        record.attempts[-1]["state"] = state
        record.attempts[-1]["endDate"] = _iso(_now())
        return state

    def _sub(self, scope: Scope, path: str) -> Scope:
        return Scope(
            path=path,
            values=scope.values,
            local_outputs=scope.local_outputs,
            parents=scope.parents,
        )

    def _flow_if(self, task: Any, scope: Scope, record: TaskRunRecord, taskrun: dict) -> str:
        cond = self._render(task, scope, taskrun, task.condition, "condition")
        branch_true = self.renderer.is_true(cond)
        record.outputs = {"evaluationResult": branch_true}
        self.log("INFO", f"condition is {str(branch_true).lower()}", task.id)
        children = task.then if branch_true else (getattr(task, "else_", None) or [])
        name = "then" if branch_true else "else"
        return self.run_list(children, self._sub(scope, f"{scope.child(task.id)}/{name}"))

    def _flow_sequential(
        self, task: Any, scope: Scope, record: TaskRunRecord, taskrun: dict
    ) -> str:
        return self.run_list(task.tasks, self._sub(scope, scope.child(task.id)))

    def _flow_parallel(self, task: Any, scope: Scope, record: TaskRunRecord, taskrun: dict) -> str:
        sub = self._sub(scope, scope.child(task.id))
        workers = task.concurrent or len(task.tasks) or 1
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"par-{task.id}") as pool:
            states = list(pool.map(lambda t: self.run_task(t, sub), task.tasks))
        return _worst(states)

    def _foreach_values(self, task: Any, scope: Scope, taskrun: dict) -> list[Any]:
        raw = self._render(task, scope, taskrun, task.values, "values")
        if isinstance(raw, str):
            try:
                raw = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise TaskError(
                    f"task `{task.id}`: `values` must be a list or a JSON array, got {raw[:80]!r}"
                ) from exc
        if not isinstance(raw, list):
            raise TaskError(f"task `{task.id}`: `values` must be a list, got {type(raw).__name__}")
        return raw

    def _flow_foreach(self, task: Any, scope: Scope, record: TaskRunRecord, taskrun: dict) -> str:
        values = self._foreach_values(task, scope, taskrun)
        limit = task.concurrencyLimit if task.concurrencyLimit is not None else 1
        base = scope.child(task.id)

        def iteration(index_value: tuple[int, Any]) -> str:
            index, value = index_value
            text = value if isinstance(value, str) else json.dumps(value)
            parent = {"taskrun": {"value": text}, "outputs": {}}
            child = Scope(
                path=f"{base}[{index}]",
                values=(*scope.values, text),
                local_outputs=dict(scope.local_outputs),
                parents=(*scope.parents, parent),
            )
            return self.run_list(task.tasks, child)

        items = list(enumerate(values))
        if limit == 1:
            states = []
            for item in items:
                state = iteration(item)
                states.append(state)
                if state in ("FAILED", "KILLED"):
                    break
        else:
            workers = limit if limit > 0 else max(1, len(items))
            with ThreadPoolExecutor(
                max_workers=workers, thread_name_prefix=f"each-{task.id}"
            ) as pool:
                states = list(pool.map(iteration, items))
        record.outputs = {"iterations": len(values)}
        return _worst(states)

    _flow_eachsequential = _flow_foreach

    def _flow_eachparallel(
        self, task: Any, scope: Scope, record: TaskRunRecord, taskrun: dict
    ) -> str:
        return self._flow_foreach(task, scope, record, taskrun)

    def _flow_subflow(self, task: Any, scope: Scope, record: TaskRunRecord, taskrun: dict) -> str:
        from flowhawk.flow.inputs import resolve_inputs

        namespace = self._render(task, scope, taskrun, task.namespace, "namespace")
        flow_id = self._render(task, scope, taskrun, task.flowId, "flowId")
        flow_record = self.repo.get_flow(namespace, flow_id)
        if flow_record is None:
            raise TaskError(f"task `{task.id}`: subflow {namespace}/{flow_id} is not deployed")
        child_flow = load_flow(
            flow_record.source, f"{namespace}/{flow_id}", self.ex.settings.plugin_defaults
        )
        given = self._render(task, scope, taskrun, task.inputs or {}, "inputs")
        try:
            inputs = resolve_inputs(child_flow, given)
        except FlowhawkError as exc:
            raise TaskError(f"task `{task.id}`: subflow inputs: {exc}") from exc
        labels = self._render(task, scope, taskrun, task.labels or {}, "labels")
        if isinstance(labels, list):
            labels = {str(i["key"]): str(i["value"]) for i in labels}
        labels = self.masker.mask(labels)
        # secret values never reach the child's stored inputs; a waited-for child gets them
        # in memory, as the CLI hands SECRET inputs to a run
        stored_inputs = self.masker.mask(inputs)
        secrets = {k: v for k, v in inputs.items() if stored_inputs.get(k) != v}
        child = self.repo.create_execution(
            namespace=namespace,
            flow_id=flow_id,
            flow_revision=flow_record.revision,
            labels={**(child_flow.labels or {}), **{str(k): str(v) for k, v in labels.items()}},
            inputs=stored_inputs,
            parent_id=self.execution.id,
            state="CREATED",
        )
        self.log("INFO", f"subflow {namespace}/{flow_id} execution {child.id} created", task.id)
        record.outputs = {"executionId": child.id}
        if not task.wait:
            return "SUCCESS"
        child_executor = Executor(self.repo, self.ex.settings, log_writer=self.ex.logs)
        child_state = child_executor.run(child.id, secret_inputs=secrets)
        done = self.repo.get_execution(child.id)
        outs = {
            "executionId": child.id,
            "state": child_state,
            "outputs": (done.outputs if done else None) or {},
        }
        record.outputs = outs
        self.store_outputs(task.id, scope, outs)
        if child_state in ("SUCCESS", "WARNING"):
            return child_state
        message = f"subflow execution {child.id} ended {child_state}"
        if task.transmitFailed:
            raise TaskError(f"task `{task.id}`: {message}")
        self.log("WARN", message, task.id)
        return "WARNING"
