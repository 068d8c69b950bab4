"""Script tasks: shell and Python ``Commands`` / ``Script``, run as local processes.

Decisions where Kestra's docs leave room:

* The program is ``beforeCommands`` then ``commands`` joined by newlines and handed to
  ``interpreter`` (default ``/bin/sh -c``). With ``failFast`` (default true) and a POSIX
  shell interpreter, ``set -e`` comes first, so the first failing command fails the task.
* stdout lines are logged at INFO, stderr lines at ERROR (as Kestra does); stderr alone
  never fails a task, only the exit code does.
* Every task runs in its own process group; killing (cancel or timeout) terminates the
  whole group: SIGTERM, then SIGKILL after a grace period.
* Python tasks always run in a cached virtual environment keyed by the Python version
  and the sorted ``dependencies`` (the empty set included), created from the interpreter
  flowhawk runs on. Its ``bin`` comes first on ``PATH``, so ``python`` and ``pip`` in
  commands are the environment's own. When the requirements do not bring the ``kestra``
  helper library, a small offline stand-in is written into the environment.
* Docker task runners and ``containerImage`` are accepted but the commands run as a local
  process, with a warning saying so.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any, ClassVar

from pydantic import field_validator

from flowhawk.errors import TaskError, TaskKilled
from flowhawk.tasks.base import Task, TaskContext
from flowhawk.tasks.values import as_bool

PROCESS_RUNNER = "io.kestra.plugin.core.runner.Process"
DOCKER_RUNNERS = (
    "io.kestra.plugin.scripts.runner.docker.Docker",
    "io.kestra.plugin.scripts.runner.docker.DockerTaskRunner",
)
POSIX_SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "ash", "busybox"})
#: seconds between SIGTERM and SIGKILL when a task is killed
KILL_GRACE = 5.0
#: seconds to wait for background processes still holding the output pipes after exit
DRAIN_GRACE = 2.0


class ScriptFailed(TaskError):
    """A script exited non-zero; ``outputs`` holds what it handed back before failing."""

    def __init__(self, message: str, outputs: dict[str, Any]) -> None:
        super().__init__(message)
        self.outputs = outputs


# -- running a process --------------------------------------------------------------


@dataclass
class ProcessResult:
    exit_code: int
    vars: dict[str, Any] = field(default_factory=dict)
    metrics: list[Any] = field(default_factory=list)


class _OutputCollector:
    """Turns output lines into logs, and ``::{...}::`` lines into vars, metrics and logs."""

    def __init__(self, ctx: TaskContext, protocol: bool) -> None:
        self._ctx = ctx
        self._protocol = protocol
        self._lock = threading.Lock()
        self.vars: dict[str, Any] = {}
        self.metrics: list[Any] = []

    def line(self, text: str, level: str) -> None:
        if self._protocol and self._message(text):
            return
        _log(self._ctx, level, text)

    def _message(self, text: str) -> bool:
        stripped = text.strip()
        if not (stripped.startswith("::{") and stripped.endswith("}::")):
            return False
        try:
            payload = json.loads(stripped[2:-2])
        except ValueError:
            return False
        if not isinstance(payload, dict):
            return False
        with self._lock:
            outputs = payload.get("outputs")
            if isinstance(outputs, dict):
                self.vars.update(outputs)
            metrics = payload.get("metrics")
            if isinstance(metrics, list):
                self.metrics.extend(metrics)
        for entry in payload.get("logs") or []:
            if isinstance(entry, dict):
                level = str(entry.get("level", "INFO")).upper()
                _log(self._ctx, level, str(entry.get("message", "")))
        return True


def _log(ctx: TaskContext, level: str, message: str) -> None:
    method = {
        "TRACE": ctx.logger.trace,
        "DEBUG": ctx.logger.debug,
        "INFO": ctx.logger.info,
        "WARN": ctx.logger.warning,
        "WARNING": ctx.logger.warning,
        "ERROR": ctx.logger.error,
    }.get(level, ctx.logger.info)
    method(message)


def _pump(stream: IO[bytes], collector: _OutputCollector, level: str) -> None:
    with stream:
        for raw in iter(stream.readline, b""):
            collector.line(raw.decode("utf-8", "replace").rstrip("\r\n"), level)


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of a process group; Linux ``/proc``, else a probe."""
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return []
        return [pgid]
    members = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # fields after the parenthesised command name: state ppid pgrp ...
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 2 and fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _wait_group_gone(pgid: int, deadline: float) -> bool:
    while time.monotonic() < deadline:
        if not group_members(pgid):
            return True
        time.sleep(0.05)
    return not group_members(pgid)


def terminate_group(proc: subprocess.Popen[bytes], grace: float = KILL_GRACE) -> None:
    """SIGTERM the process group of ``proc``, SIGKILL whatever is left after ``grace``."""
    pgid = proc.pid
    _signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace)
    if not _wait_group_gone(pgid, deadline):
        _signal_group(pgid, signal.SIGKILL)
    proc.wait()
    _wait_group_gone(pgid, time.monotonic() + 1.0)


def run_process(
    ctx: TaskContext,
    argv: list[str],
    *,
    cwd: Path,
    env: dict[str, str],
    stdout_level: str = "INFO",
    stderr_level: str = "ERROR",
    protocol: bool = True,
) -> ProcessResult:
    """Run ``argv`` in its own process group, streaming its output to the task logs.

    Honours ``ctx.cancel_event`` (set on kill and on timeout) within ~0.1 s: the whole
    group is terminated and ``TaskKilled`` raised.
    """
    if ctx.cancel_event.is_set():
        raise TaskKilled(f"task `{ctx.task_id}` killed before it started")
    try:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as exc:
        raise TaskError(f"cannot start `{argv[0]}`: {exc.strerror or exc}") from exc
    collector = _OutputCollector(ctx, protocol)
    assert proc.stdout is not None and proc.stderr is not None
    readers = [
        threading.Thread(target=_pump, args=(proc.stdout, collector, stdout_level), daemon=True),
        threading.Thread(target=_pump, args=(proc.stderr, collector, stderr_level), daemon=True),
    ]
    for reader in readers:
        reader.start()
    killed = False
    try:
        while proc.poll() is None:
            if ctx.cancel_event.wait(0.1):
                killed = True
                terminate_group(proc)
                break
    except BaseException:
        terminate_group(proc, grace=0.5)
        raise
    finally:
        deadline = time.monotonic() + DRAIN_GRACE
        for reader in readers:
            reader.join(max(0.0, deadline - time.monotonic()))
        if any(reader.is_alive() for reader in readers):
            ctx.logger.warning(
                "background processes still hold the task's output after it ended; terminating them"
            )
            _signal_group(proc.pid, signal.SIGTERM)
            _wait_group_gone(proc.pid, time.monotonic() + 1.0)
            _signal_group(proc.pid, signal.SIGKILL)
            for reader in readers:
                reader.join(5.0)
    if killed:
        raise TaskKilled(f"task `{ctx.task_id}` killed: its process group was terminated")
    return ProcessResult(proc.returncode, collector.vars, collector.metrics)


# -- files in and out ---------------------------------------------------------------


def _relative_name(name: str, what: str) -> PurePosixPath:
    path = PurePosixPath(name.replace("\\", "/"))
    if not name.strip() or path.is_absolute() or ".." in path.parts or str(path) == ".":
        raise TaskError(
            f"{what} `{name}` must be a path relative to the working directory, without `..`"
        )
    return path


def safe_target(root: Path, name: str, what: str) -> Path:
    """``root/name``, refused when it is absolute, climbs out, or a symlink leads out."""
    rel = _relative_name(name, what)
    base = root.resolve()
    target = base.joinpath(*rel.parts)
    if not target.resolve().is_relative_to(base):
        raise TaskError(f"{what} `{name}` leads outside the working directory")
    return target


def write_input_files(ctx: TaskContext, root: Path, files: dict[str, Any]) -> None:
    for name, content in files.items():
        target = safe_target(root, str(name), "inputFiles name")
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.parent.resolve().is_relative_to(root.resolve()):
            raise TaskError(f"inputFiles name `{name}` leads outside the working directory")
        if isinstance(content, str) and _is_storage_uri(content):
            shutil.copyfile(ctx.file_path(content.strip()), target)
        elif isinstance(content, str):
            target.write_text(content)
        elif isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(json.dumps(content))


def collect_output_files(ctx: TaskContext, root: Path, patterns: list[str]) -> dict[str, str]:
    """Store every file matching the globs; name relative to ``root`` → storage URI."""
    base = root.resolve()
    found: dict[str, str] = {}
    for pattern in patterns:
        rel = _relative_name(pattern, "outputFiles pattern")
        matches = sorted(base.glob(rel.as_posix()))
        files = [m for m in matches if m.is_file() or m.is_symlink()]
        if not files:
            ctx.logger.warning(f"outputFiles: no file matches `{pattern}` in the working directory")
        for match in files:
            key = match.relative_to(base).as_posix()
            if key in found:
                continue
            if not match.resolve().is_relative_to(base):
                raise TaskError(f"output file `{key}` leads outside the working directory")
            if not match.is_file():
                continue
            found[key] = ctx.put_file(match, match.name)
    return found


def _is_storage_uri(value: str) -> bool:
    text = value.strip()
    return text.startswith("kestra://") and not any(c.isspace() for c in text)


# -- values -------------------------------------------------------------------------


def as_str_list(value: Any, prop: str) -> list[str]:
    """A rendered list property; a string holding a JSON list is accepted too."""
    if value is None:
        return []
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                parsed = json.loads(text)
            except ValueError as exc:
                raise TaskError(f"property `{prop}`: invalid JSON list: {exc}") from exc
            return as_str_list(parsed, prop)
        return [value]
    if isinstance(value, list | tuple):
        return [_scalar_text(item) for item in value]
    raise TaskError(f"property `{prop}`: expected a list of strings, got {type(value).__name__}")


def _scalar_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


def _as_map(ctx: TaskContext, value: Any, prop: str) -> dict[str, Any]:
    """A rendered map property; a JSON string, or a storage URI of a JSON file, also do."""
    if value is None:
        return {}
    if isinstance(value, str):
        text = value.strip()
        if _is_storage_uri(text):
            text = ctx.file_path(text).read_text()
        try:
            value = json.loads(text) if text else {}
        except ValueError as exc:
            raise TaskError(f"property `{prop}`: expected a map or a JSON object: {exc}") from exc
    if not isinstance(value, dict):
        raise TaskError(f"property `{prop}`: expected a map, got {type(value).__name__}")
    return value


# -- the tasks ----------------------------------------------------------------------


class _ScriptTask(Task):
    """Properties and behaviour shared by every script task."""

    beforeCommands: list[str] | str | None = None
    env: dict[str, Any] | str | None = None
    inputFiles: dict[str, Any] | str | None = None
    outputFiles: list[str] | str | None = None
    namespaceFiles: dict[str, Any] | None = None
    taskRunner: dict[str, Any] | None = None
    containerImage: str | None = None
    interpreter: list[str] = ["/bin/sh", "-c"]
    warningOnStdErr: bool | None = None
    failFast: bool | str = True
    docker: dict[str, Any] | None = None
    runner: str | None = None
    targetOS: str | None = None

    @field_validator("taskRunner")
    @classmethod
    def _runner(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return value
        kind = value.get("type")
        if kind not in (PROCESS_RUNNER, *DOCKER_RUNNERS):
            raise ValueError(
                f"taskRunner type {kind!r} is not supported: use {PROCESS_RUNNER} "
                f"(or {DOCKER_RUNNERS[0]}, which flowhawk runs as a local process)"
            )
        return value

    @field_validator("interpreter")
    @classmethod
    def _interpreter(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("interpreter needs at least one item, e.g. [/bin/sh, -c]")
        return value

    # what subclasses provide --------------------------------------------------------
    def _body(self, ctx: TaskContext, scratch: Path, python: Path | None) -> list[str]:
        raise NotImplementedError

    def _python_env(self, ctx: TaskContext) -> Path | None:
        """The virtual environment to run in (Python tasks), else None."""
        return None

    # the run ------------------------------------------------------------------------
    def run(self, ctx: TaskContext) -> dict[str, Any]:
        self._warn_unsupported(ctx)
        workdir = Path(ctx.working_dir)
        workdir.mkdir(parents=True, exist_ok=True)
        env = self._environment(ctx, workdir)
        write_input_files(
            ctx, workdir, _as_map(ctx, ctx.render(self.inputFiles, "inputFiles"), "inputFiles")
        )
        patterns = as_str_list(ctx.render(self.outputFiles, "outputFiles"), "outputFiles")
        for pattern in patterns:
            _relative_name(pattern, "outputFiles pattern")
        venv = self._python_env(ctx)
        if venv is not None:
            env["VIRTUAL_ENV"] = str(venv)
            env["PATH"] = os.pathsep.join([str(venv / "bin"), env.get("PATH", os.defpath)])
            env.pop("PYTHONHOME", None)
        scratch = Path(tempfile.mkdtemp(prefix="flowhawk-script-"))
        try:
            lines = [
                *as_str_list(ctx.render(self.beforeCommands, "beforeCommands"), "beforeCommands"),
                *self._body(ctx, scratch, venv / "bin" / "python" if venv else None),
            ]
            fail_fast = as_bool(ctx.render(self.failFast, "failFast"), "failFast")
            if fail_fast and Path(self.interpreter[0]).name in POSIX_SHELLS:
                lines.insert(0, "set -e")
            program = "\n".join(lines)
            ctx.logger.debug(f"running with {' '.join(self.interpreter)} in {workdir}")
            started = time.monotonic()
            result = run_process(ctx, [*self.interpreter, program], cwd=workdir, env=env)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        outputs: dict[str, Any] = {"exitCode": result.exit_code, "vars": result.vars}
        if result.metrics:
            outputs["metrics"] = result.metrics
        if result.exit_code != 0:
            raise ScriptFailed(f"Command failed with exit code {result.exit_code}", outputs)
        ctx.logger.debug(f"commands ended after {time.monotonic() - started:.1f}s")
        outputs["outputFiles"] = collect_output_files(ctx, workdir, patterns)
        return outputs

    def _environment(self, ctx: TaskContext, workdir: Path) -> dict[str, str]:
        env = dict(os.environ)
        env.setdefault("PYTHONUNBUFFERED", "1")
        extra = _as_map(ctx, ctx.render(self.env, "env"), "env")
        env.update({str(k): _scalar_text(v) for k, v in extra.items()})
        env["WORKING_DIR"] = str(workdir)
        return env

    def _warn_unsupported(self, ctx: TaskContext) -> None:
        runner = (self.taskRunner or {}).get("type")
        if runner in DOCKER_RUNNERS:
            ctx.logger.warning(
                f"taskRunner {runner} is not available in flowhawk: running the commands as a "
                "local process with the host's tools instead of a container"
            )
        if self.containerImage and runner != PROCESS_RUNNER:
            ctx.logger.warning(
                f"containerImage `{self.containerImage}` is ignored: flowhawk runs scripts as "
                "local processes"
            )
        if self.docker:
            ctx.logger.warning(
                "`docker` options are ignored: flowhawk runs scripts as local processes"
            )
        if self.runner and self.runner.upper() == "DOCKER":
            ctx.logger.warning("runner DOCKER is not available: running as a local process")
        if self.namespaceFiles and as_bool(
            self.namespaceFiles.get("enabled", True), "namespaceFiles"
        ):
            ctx.logger.warning("namespaceFiles are not supported by flowhawk and are ignored")


class ShellCommands(_ScriptTask):
    types: ClassVar[tuple[str, ...]] = ("io.kestra.plugin.scripts.shell.Commands",)

    commands: list[str] | str

    def _body(self, ctx: TaskContext, scratch: Path, python: Path | None) -> list[str]:
        commands = as_str_list(ctx.render(self.commands, "commands"), "commands")
        if not commands:
            raise TaskError("property `commands`: at least one command is required")
        return commands


class ShellScript(_ScriptTask):
    """The script is written to a file outside the working directory and run by the shell."""

    types: ClassVar[tuple[str, ...]] = ("io.kestra.plugin.scripts.shell.Script",)

    script: str

    def _body(self, ctx: TaskContext, scratch: Path, python: Path | None) -> list[str]:
        path = scratch / "script.sh"
        path.write_text(str(ctx.render(self.script, "script")))
        shell = self.interpreter[0] if Path(self.interpreter[0]).name in POSIX_SHELLS else "/bin/sh"
        return [f"{shlex.quote(shell)} {shlex.quote(str(path))}"]


class _PythonTask(_ScriptTask):
    dependencies: list[str] | str | None = None
    dependencyCacheEnabled: bool | None = None
    pythonVersion: str | None = None

    def _python_env(self, ctx: TaskContext) -> Path | None:
        if self.pythonVersion:
            running = f"{sys.version_info.major}.{sys.version_info.minor}"
            if not running.startswith(str(self.pythonVersion).strip()) and not str(
                self.pythonVersion
            ).startswith(running):
                ctx.logger.warning(
                    f"pythonVersion {self.pythonVersion} is not available: using Python {running}"
                )
        requirements = as_str_list(ctx.render(self.dependencies, "dependencies"), "dependencies")
        return ensure_venv(ctx, requirements)


class PythonScript(_PythonTask):
    """The script is written to a file outside the working directory and run by the venv."""

    types: ClassVar[tuple[str, ...]] = ("io.kestra.plugin.scripts.python.Script",)

    script: str

    def _body(self, ctx: TaskContext, scratch: Path, python: Path | None) -> list[str]:
        path = scratch / "main.py"
        path.write_text(str(ctx.render(self.script, "script")))
        return [f"{shlex.quote(str(python or 'python3'))} {shlex.quote(str(path))}"]


class PythonCommands(_PythonTask):
    types: ClassVar[tuple[str, ...]] = ("io.kestra.plugin.scripts.python.Commands",)

    commands: list[str] | str

    def _body(self, ctx: TaskContext, scratch: Path, python: Path | None) -> list[str]:
        commands = as_str_list(ctx.render(self.commands, "commands"), "commands")
        if not commands:
            raise TaskError("property `commands`: at least one command is required")
        return commands


# -- cached virtual environments ----------------------------------------------------


def venv_key(requirements: list[str]) -> str:
    """Stable name of the environment for a Python version and a set of requirements."""
    reqs = sorted({r.strip() for r in requirements if r.strip()})
    payload = json.dumps({"python": list(sys.version_info[:2]), "requirements": reqs})
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


@contextlib.contextmanager
def _file_lock(path: Path, cancel: threading.Event) -> Iterator[None]:
    """An exclusive advisory lock between processes and threads; waiting honours cancel."""
    with path.open("a") as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if cancel.wait(0.2):
                    raise TaskKilled("killed while waiting for a virtual environment") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_venv(ctx: TaskContext, requirements: list[str]) -> Path:
    """The cached virtualenv holding ``requirements``, created (once) when missing."""
    reqs = sorted({r.strip() for r in requirements if r.strip()})
    root = ctx.plugin_cache_dir() / "venvs"
    root.mkdir(parents=True, exist_ok=True)
    venv = root / venv_key(reqs)
    ready = venv / ".flowhawk-ready"
    if ready.exists():
        ctx.logger.debug(f"reusing the virtual environment {venv}")
        return venv
    with _file_lock(root / f"{venv.name}.lock", ctx.cancel_event):
        if ready.exists():
            ctx.logger.debug(f"reusing the virtual environment {venv}")
            return venv
        shutil.rmtree(venv, ignore_errors=True)
        what = ", ".join(reqs) if reqs else "no dependencies"
        ctx.logger.info(f"creating a virtual environment ({what}) in {venv}")
        started = time.monotonic()
        env = dict(os.environ)
        env.pop("PYTHONHOME", None)
        env.pop("VIRTUAL_ENV", None)
        _setup_step(
            ctx, [sys.executable, "-m", "venv", str(venv)], env, "creating the virtual environment"
        )
        python = venv / "bin" / "python"
        if reqs:
            pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "--no-input"]
            _setup_step(ctx, [*pip, *reqs], env, f"installing dependencies ({what})")
        _install_kestra_helper(venv)
        (venv / "requirements.txt").write_text("".join(f"{r}\n" for r in reqs))
        ready.write_text(f"ready after {time.monotonic() - started:.1f}s\n")
        ctx.logger.info(f"virtual environment ready in {time.monotonic() - started:.1f}s")
        return venv


def _setup_step(ctx: TaskContext, argv: list[str], env: dict[str, str], what: str) -> None:
    result = run_process(
        ctx,
        argv,
        cwd=Path(ctx.working_dir),
        env=env,
        stdout_level="DEBUG",
        stderr_level="WARN",
        protocol=False,
    )
    if result.exit_code != 0:
        raise TaskError(f"{what} failed with exit code {result.exit_code} (see the log above)")


def _site_packages(venv: Path) -> Path:
    found = sorted(venv.glob("lib/python*/site-packages"))
    if not found:
        raise TaskError(f"virtual environment {venv} has no site-packages directory")
    return found[0]


def _install_kestra_helper(venv: Path) -> None:
    site = _site_packages(venv)
    if (site / "kestra").exists() or (site / "kestra.py").exists():
        return
    (site / "kestra.py").write_text(KESTRA_HELPER)


#: written as ``kestra.py`` into environments that lack the real ``kestra`` library, so that
#: scripts using ``from kestra import Kestra`` hand back outputs, metrics and logs offline.
KESTRA_HELPER = '''"""flowhawk's offline stand-in for the `kestra` helper library."""

import json
import logging
import time


class Kestra:
    @staticmethod
    def _send(payload):
        print("::" + json.dumps(payload, default=str) + "::", flush=True)

    @staticmethod
    def outputs(values):
        Kestra._send({"outputs": values})

    @staticmethod
    def counter(key, value, tags=None):
        Kestra._send({"metrics": [{"name": key, "type": "counter", "value": value, "tags": tags or {}}]})

    @staticmethod
    def timer(key, duration, tags=None):
        if callable(duration):
            start = time.perf_counter()
            duration()
            duration = time.perf_counter() - start
        Kestra._send({"metrics": [{"name": key, "type": "timer", "value": duration, "tags": tags or {}}]})

    @staticmethod
    def logger():
        log = logging.getLogger("Kestra")
        if not any(isinstance(h, _Handler) for h in log.handlers):
            log.addHandler(_Handler())
            log.setLevel(logging.DEBUG)
            log.propagate = False
        return log


class _Handler(logging.Handler):
    _LEVELS = {"WARNING": "WARN", "CRITICAL": "ERROR"}

    def emit(self, record):
        level = self._LEVELS.get(record.levelname, record.levelname)
        Kestra._send({"logs": [{"level": level, "message": self.format(record)}]})
'''
