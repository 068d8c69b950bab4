"""Script tasks run real processes: shell and Python, files in and out, kill, venvs."""

from __future__ import annotations

import base64
import hashlib
import os
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from flowhawk.errors import TaskError, TaskKilled
from flowhawk.tasks.scripts import (
    PythonCommands,
    PythonScript,
    ScriptFailed,
    ShellCommands,
    ShellScript,
    ensure_venv,
    group_members,
    safe_target,
)


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Virtualenvs of this module live in a cache of its own (XDG_CACHE_HOME)."""
    root = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(root))
        yield root


def shell(**props: Any) -> ShellCommands:
    return ShellCommands.model_validate(
        {"id": "sh", "type": "io.kestra.plugin.scripts.shell.Commands", **props}
    )


def read_uri(ctx: Any, uri: str) -> str:
    with ctx.open_file(uri) as handle:
        return handle.read().decode()


def test_outputs_protocol_env_and_before_commands(make_ctx):
    ctx = make_ctx({"who": "world"})
    task = shell(
        beforeCommands=["echo before"],
        env={"GREETING": "hello {{ who }}", "COUNT": 3},
        commands=[
            "echo $GREETING $COUNT",
            'echo "wd=$WORKING_DIR"',
            """echo '::{"outputs": {"a": 1, "name": "x"}}::'""",
            """echo '::{"outputs": {"b": [1, 2]}, "metrics": [{"name": "rows", "type": "counter", "value": 5}]}::'""",
        ],
    )
    out = task.run(ctx)
    assert out["exitCode"] == 0
    assert out["vars"] == {"a": 1, "name": "x", "b": [1, 2]}
    assert out["metrics"] == [{"name": "rows", "type": "counter", "value": 5}]
    assert out["outputFiles"] == {}
    infos = [msg for level, msg in ctx.logs if level == "INFO"]
    assert infos[:3] == ["before", "hello world 3", f"wd={ctx.working_dir}"]
    assert not any("::" in msg for _, msg in ctx.logs)


def test_commands_may_be_a_json_list_string_and_logs_protocol(make_ctx):
    ctx = make_ctx()
    task = shell(
        commands='["echo one", "echo \'::{\\"logs\\": [{\\"level\\": \\"WARN\\", \\"message\\": \\"careful\\"}]}::\'"]'
    )
    task.run(ctx)
    assert ("INFO", "one") in ctx.logs
    assert ("WARN", "careful") in ctx.logs


def test_input_files_content_and_storage_uri(make_ctx, tmp_path):
    ctx = make_ctx()
    source = tmp_path / "data.csv"
    source.write_text("a,b\n1,2\n")
    uri = ctx.put_file(source)
    task = shell(
        inputFiles={"script.sh": "echo from-script {{ x }}", "in/data.csv": uri},
        commands=["sh script.sh", "cat in/data.csv"],
    )
    ctx.variables["x"] = 7
    task.run(ctx)
    infos = [msg for level, msg in ctx.logs if level == "INFO"]
    assert infos == ["from-script 7", "a,b", "1,2"]


def test_input_files_as_json_string_and_as_stored_json_map(make_ctx, tmp_path):
    ctx = make_ctx()
    as_json = shell(inputFiles='{"f.txt": "json-map"}', commands=["cat f.txt"])
    as_json.run(ctx)
    mapping = tmp_path / "files.json"
    mapping.write_text('{"g.txt": "stored-map"}')
    ctx2 = make_ctx({"files": ctx.put_file(mapping)})
    shell(inputFiles="{{ files }}", commands=["cat g.txt"]).run(ctx2)
    assert ("INFO", "json-map") in ctx.logs
    assert ("INFO", "stored-map") in ctx2.logs


def test_output_files_globs(make_ctx):
    ctx = make_ctx()
    task = shell(
        outputFiles=["*.txt", "sub/**/*.csv", "missing-*.bin"],
        commands=[
            "echo one > first.txt",
            "echo two > second.txt",
            "mkdir -p sub/deep && echo x,y > sub/deep/t.csv && echo no > sub/skip.txt",
        ],
    )
    out = task.run(ctx)
    files = out["outputFiles"]
    assert set(files) == {"first.txt", "second.txt", "sub/deep/t.csv"}
    assert all(uri.startswith("kestra:///") for uri in files.values())
    assert read_uri(ctx, files["first.txt"]) == "one\n"
    assert read_uri(ctx, files["sub/deep/t.csv"]) == "x,y\n"
    assert any(level == "WARN" and "missing-*.bin" in msg for level, msg in ctx.logs)


def test_non_zero_exit_fails_with_code_and_keeps_vars(make_ctx):
    ctx = make_ctx()
    task = shell(commands=["""echo '::{"outputs": {"step": 1}}::'""", "exit 3", "echo never"])
    with pytest.raises(ScriptFailed, match="Command failed with exit code 3") as info:
        task.run(ctx)
    assert info.value.outputs["vars"] == {"step": 1}
    assert info.value.outputs["exitCode"] == 3
    assert ("INFO", "never") not in ctx.logs


def test_fail_fast_stops_at_first_failing_command_unless_disabled(make_ctx):
    ctx = make_ctx()
    with pytest.raises(TaskError, match="exit code 1"):
        shell(commands=["false", "echo after"]).run(ctx)
    assert ("INFO", "after") not in ctx.logs
    ctx2 = make_ctx()
    out = shell(failFast=False, commands=["false", "echo after"]).run(ctx2)
    assert out["exitCode"] == 0
    assert ("INFO", "after") in ctx2.logs


def test_stderr_is_logged_as_error_without_failing(make_ctx):
    ctx = make_ctx()
    out = shell(commands=["echo oops >&2", "echo fine"]).run(ctx)
    assert out["exitCode"] == 0
    assert ("ERROR", "oops") in ctx.logs
    assert ("INFO", "fine") in ctx.logs


def test_output_is_streamed_while_the_process_runs(make_ctx):
    ctx = make_ctx()
    task = shell(commands=["echo early", "sleep 1.5", "echo late"])
    done = threading.Event()

    def target() -> None:
        task.run(ctx)
        done.set()

    threading.Thread(target=target, daemon=True).start()
    deadline = time.monotonic() + 1.2
    while ("INFO", "early") not in ctx.logs and time.monotonic() < deadline:
        time.sleep(0.02)
    assert ("INFO", "early") in ctx.logs
    assert not done.is_set()
    assert done.wait(5)
    assert ("INFO", "late") in ctx.logs


def test_kill_terminates_the_whole_process_group_fast(make_ctx):
    ctx = make_ctx()
    task = shell(commands=["echo pid=$$", "sleep 60 & sleep 60"])
    errors: list[BaseException] = []

    def target() -> None:
        try:
            task.run(ctx)
        except BaseException as exc:
            errors.append(exc)

    runner = threading.Thread(target=target, daemon=True)
    runner.start()
    deadline = time.monotonic() + 5
    pids = []
    while not pids and time.monotonic() < deadline:
        pids = [int(m[4:]) for lvl, m in ctx.logs if m.startswith("pid=")]
        time.sleep(0.02)
    assert pids
    pgid = pids[0]
    time.sleep(0.3)
    assert len(group_members(pgid)) >= 3  # the shell and two sleeps
    killed_at = time.monotonic()
    ctx.cancel_event.set()
    runner.join(10)
    assert not runner.is_alive()
    assert time.monotonic() - killed_at < 3
    assert len(errors) == 1 and isinstance(errors[0], TaskKilled)
    assert group_members(pgid) == []


def test_cancel_before_start_does_not_run(make_ctx):
    ctx = make_ctx()
    ctx.cancel_event.set()
    with pytest.raises(TaskKilled):
        shell(commands=["touch ran.txt"]).run(ctx)
    assert not (ctx.working_dir / "ran.txt").exists()


@pytest.mark.parametrize("name", ["../escape.txt", "/tmp/abs.txt", "a/../../b.txt", ""])
def test_input_file_names_may_not_escape(make_ctx, name):
    ctx = make_ctx()
    with pytest.raises(TaskError, match="inputFiles name"):
        shell(inputFiles={name: "x"}, commands=["true"]).run(ctx)


@pytest.mark.parametrize("pattern", ["../*", "/etc/*", "sub/../../*"])
def test_output_globs_may_not_escape(make_ctx, pattern):
    ctx = make_ctx()
    with pytest.raises(TaskError, match="outputFiles pattern"):
        shell(outputFiles=[pattern], commands=["true"]).run(ctx)


def test_output_symlink_pointing_outside_is_refused(make_ctx, tmp_path):
    secret = tmp_path / "outside.txt"
    secret.write_text("private")
    ctx = make_ctx()
    task = shell(outputFiles=["*.txt"], commands=[f"ln -s {secret} leak.txt"])
    with pytest.raises(TaskError, match="leak.txt` leads outside"):
        task.run(ctx)


def test_input_file_through_symlinked_dir_is_refused(tmp_path):
    root = tmp_path / "work"
    root.mkdir()
    (root / "link").symlink_to(tmp_path)
    with pytest.raises(TaskError, match="leads outside"):
        safe_target(root, "link/evil.txt", "inputFiles name")
    assert safe_target(root, "ok/inner.txt", "inputFiles name") == root.resolve() / "ok/inner.txt"


def test_docker_runner_and_image_run_locally_with_warnings(make_ctx):
    ctx = make_ctx()
    task = shell(
        taskRunner={"type": "io.kestra.plugin.scripts.runner.docker.Docker", "pullPolicy": "NEVER"},
        containerImage="ubuntu:24.04",
        namespaceFiles={"enabled": True},
        warningOnStdErr=False,
        commands=["echo local"],
    )
    out = task.run(ctx)
    assert out["exitCode"] == 0
    warnings = " ".join(msg for level, msg in ctx.logs if level == "WARN")
    assert "local process" in warnings
    assert "ubuntu:24.04" in warnings
    assert "namespaceFiles" in warnings


def test_unknown_task_runner_is_refused_at_validation():
    with pytest.raises(ValidationError, match="not supported"):
        shell(
            taskRunner={"type": "io.kestra.plugin.ee.kubernetes.runner.Kubernetes"}, commands=["x"]
        )


def test_unknown_property_is_refused():
    with pytest.raises(ValidationError, match="comands"):
        shell(comands=["x"])


def test_shell_script(make_ctx):
    ctx = make_ctx({"n": 3})
    task = ShellScript.model_validate(
        {
            "id": "s",
            "type": "io.kestra.plugin.scripts.shell.Script",
            "outputFiles": ["count.txt"],
            "script": "i=0\nwhile [ $i -lt {{ n }} ]; do i=$((i+1)); echo line $i; done\n"
            "echo $i > count.txt\n",
        }
    )
    out = task.run(ctx)
    assert [m for lvl, m in ctx.logs if lvl == "INFO"] == ["line 1", "line 2", "line 3"]
    assert read_uri(ctx, out["outputFiles"]["count.txt"]) == "3\n"
    assert sorted(p.name for p in ctx.working_dir.iterdir()) == ["count.txt"]


def test_python_script_without_dependencies(make_ctx, shared_cache):
    ctx = make_ctx({"name": "flowhawk"})
    task = PythonScript.model_validate(
        {
            "id": "py",
            "type": "io.kestra.plugin.scripts.python.Script",
            "script": (
                "import sys\n"
                "from kestra import Kestra\n"
                "print('hello {{ name }}')\n"
                "print('prefix', sys.prefix)\n"
                "Kestra.outputs({'answer': 42})\n"
                "Kestra.counter('rows', 7, {'k': 'v'})\n"
                "Kestra.logger().warning('watch out')\n"
                "sys.stderr.write('to stderr\\n')\n"
            ),
        }
    )
    out = task.run(ctx)
    assert out["vars"] == {"answer": 42}
    assert out["metrics"] == [{"name": "rows", "type": "counter", "value": 7, "tags": {"k": "v"}}]
    assert ("INFO", "hello flowhawk") in ctx.logs
    assert ("WARN", "watch out") in ctx.logs
    assert ("ERROR", "to stderr") in ctx.logs
    prefix = next(m for lvl, m in ctx.logs if m.startswith("prefix "))
    assert prefix.startswith(f"prefix {shared_cache}")


def test_python_failure_reports_exit_code(make_ctx, shared_cache):
    ctx = make_ctx()
    task = PythonScript.model_validate(
        {
            "id": "py",
            "type": "io.kestra.plugin.scripts.python.Script",
            "script": "raise SystemExit(4)",
        }
    )
    with pytest.raises(TaskError, match="exit code 4"):
        task.run(ctx)


def _build_wheel(directory: Path, name: str = "fhdemo", value: int = 42) -> Path:
    """A minimal pure-Python wheel, so that pip installs without any index."""
    dist = f"{name}-0.1.dist-info"
    files = {
        f"{name}/__init__.py": f"VALUE = {value}\n",
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: flowhawk-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append(f"{path},sha256={digest.decode()},{len(text.encode())}")
    record.append(f"{dist}/RECORD,,")
    files[f"{dist}/RECORD"] = "\n".join(record) + "\n"
    wheel = directory / f"{name}-0.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
    return wheel


def test_python_dependencies_installed_once_and_reused(make_ctx, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    wheel = _build_wheel(tmp_path)

    def task() -> PythonCommands:
        return PythonCommands.model_validate(
            {
                "id": "deps",
                "type": "io.kestra.plugin.scripts.python.Commands",
                "dependencies": [str(wheel)],
                "commands": ["python -c 'import fhdemo; print(\"value\", fhdemo.VALUE)'"],
            }
        )

    first = make_ctx()
    task().run(first)
    assert ("INFO", "value 42") in first.logs
    assert any("creating a virtual environment" in m for _, m in first.logs)
    venvs = [
        p for p in (tmp_path / "cache" / "flowhawk" / "plugins" / "venvs").iterdir() if p.is_dir()
    ]
    assert len(venvs) == 1
    marker = venvs[0] / ".flowhawk-ready"
    stamp = marker.stat().st_mtime_ns

    second = make_ctx()
    started = time.monotonic()
    task().run(second)
    assert time.monotonic() - started < 2
    assert ("INFO", "value 42") in second.logs
    assert not any("creating a virtual environment" in m for _, m in second.logs)
    assert any("reusing the virtual environment" in m for _, m in second.logs)
    assert marker.stat().st_mtime_ns == stamp


def test_failing_dependency_install_is_a_clear_error(make_ctx, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    ctx = make_ctx()
    task = PythonCommands.model_validate(
        {
            "id": "deps",
            "type": "io.kestra.plugin.scripts.python.Commands",
            "dependencies": [str(tmp_path / "no-such-package-0.1-py3-none-any.whl")],
            "commands": ["true"],
        }
    )
    with pytest.raises(TaskError, match="installing dependencies .* failed"):
        task.run(ctx)
    ready = list((tmp_path / "cache").rglob(".flowhawk-ready"))
    assert ready == []


def test_parallel_tasks_create_one_venv(make_ctx, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    contexts = [make_ctx(task_id=f"p{i}") for i in range(3)]
    results: list[Path] = []
    threads = [
        threading.Thread(target=lambda c=c: results.append(ensure_venv(c, []))) for c in contexts
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(results) == 3 and len(set(results)) == 1
    created = sum(1 for c in contexts for _, m in c.logs if "creating a virtual environment" in m)
    assert created == 1
    assert os.access(results[0] / "bin" / "python", os.X_OK)
