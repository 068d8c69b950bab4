"""The ``flowhawk`` command line, run as a real subprocess against real PostgreSQL.

Checks exit codes, the plain log-line format used when stdout is not a terminal, the JSON
shapes of ``executions list/show --json``, kill and restart, triggers, and that bad input
gives a clear message (never a traceback, never a password) before any task starts.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import psycopg
import pytest

from cli_helpers import Cli, execution_id_of, make_cli

HERE = Path(__file__).resolve().parent
FLOWS = HERE / "flows"
EXAMPLES = HERE.parent / "flows"

#: TIME LEVEL TASK[attempt] message  (TASK is `-` for execution-level lines)
LOG_LINE = re.compile(
    r"^(?P<time>\S+) (?P<level>TRACE|DEBUG|INFO|WARN|ERROR) "
    r"(?P<task>-|[A-Za-z0-9_-]+(\[\d+\])?) (?P<message>.*)$"
)
EXECUTION_KEYS = {
    "id",
    "namespace",
    "flowId",
    "state",
    "labels",
    "inputs",
    "triggerDate",
    "startDate",
    "endDate",
}


@pytest.fixture(scope="module")
def cli(pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli]:
    yield make_cli(pg_url, tmp_path_factory.mktemp("fhcli"))


# -- run, output format, JSON shapes ---------------------------------------------------------


def test_run_hello_prints_plain_log_lines_and_exits_zero(cli: Cli) -> None:
    done = cli.run("run", EXAMPLES / "hello.yaml", "--input", "name=course")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    execution_id = execution_id_of(done)
    assert done.stdout.rstrip().endswith(f"execution {execution_id} SUCCESS")
    lines = [ln for ln in done.stdout.splitlines() if not ln.startswith("execution ")]
    assert lines
    parsed = []
    for line in lines:
        match = LOG_LINE.match(line)
        assert match, f"not TIME LEVEL TASK[attempt] message: {line!r}"
        datetime.fromisoformat(match["time"])
        parsed.append(match)
    assert "\x1b[" not in done.stdout
    assert any(m["task"] == "log[1]" and "Hello, course!" in m["message"] for m in parsed)
    assert any(m["task"] == "done[1]" and "14 characters" in m["message"] for m in parsed)


def test_labels_logs_and_json_shapes(cli: Cli) -> None:
    done = cli.run(
        "run",
        FLOWS / "labels_and_logs.yaml",
        "-i",
        "month=02",
        "--label",
        "origin=cli",
    )
    assert done.returncode == 0, done.stderr
    execution_id = execution_id_of(done)
    warn = [ln for ln in done.stdout.splitlines() if " WARN say[1] " in ln]
    assert warn == [warn[0]] and warn[0].endswith("line one\\nline two for 02")

    shown = cli.show(execution_id)
    assert shown["state"] == "SUCCESS"
    assert shown["labels"] == {"team": "data", "origin": "cli", "month": "2019-02", "rows": "10"}
    assert shown["inputs"] == {"month": "02", "rows": 10}
    assert shown["outputs"] == {"month": "02"}
    assert {r["taskId"]: r["state"] for r in shown["taskRuns"]} == {
        "tag": "SUCCESS",
        "say": "SUCCESS",
    }

    listed = cli.run("executions", "list", "--json", "--flow", "test.cli/labels_and_logs")
    assert listed.returncode == 0
    assert listed.stdout.lstrip().startswith("[")
    items = json.loads(listed.stdout)
    assert isinstance(items, list) and items
    item = next(i for i in items if i["id"] == execution_id)
    assert EXECUTION_KEYS <= set(item)
    assert (item["namespace"], item["flowId"], item["state"]) == (
        "test.cli",
        "labels_and_logs",
        "SUCCESS",
    )
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in item["labels"].items())
    assert item["triggerDate"] is None
    datetime.fromisoformat(item["startDate"])
    datetime.fromisoformat(item["endDate"])

    by_label = cli.executions("--label", "month=2019-02", "--label", "origin=cli")
    assert execution_id in {i["id"] for i in by_label}
    assert cli.executions("--label", "month=2019-03", "--flow", "test.cli/labels_and_logs") == []
    assert execution_id in {i["id"] for i in cli.executions("--state", "SUCCESS")}
    assert len(cli.executions("--limit", "1")) == 1

    table = cli.run("executions", "list", "--flow", "test.cli/labels_and_logs")
    assert table.returncode == 0 and execution_id in table.stdout, "ids are shown whole"

    logs = cli.run("logs", execution_id)
    assert logs.returncode == 0
    lines = logs.stdout.splitlines()
    assert all(LOG_LINE.match(ln) for ln in lines), lines
    assert any(" WARN say[1] line one\\nline two for 02" in ln for ln in lines)


def test_flow_deploy_list_schema_delete(cli: Cli) -> None:
    deployed = cli.run("flow", "deploy", FLOWS / "two_triggers.yaml")
    assert deployed.returncode == 0, deployed.stderr
    assert re.search(r"test\.cli/two_triggers revision \d+", deployed.stdout)
    flows = cli.json("flow", "list", "--json", "--namespace", "test.cli")
    assert "two_triggers" in {f["id"] for f in flows}
    schema = cli.json("flow", "schema")
    assert "tasks" in json.dumps(schema) and "io.kestra.plugin.core.log.Log" in json.dumps(schema)

    by_ref = cli.run("run", "test.cli/two_triggers", "--trigger-date", "2021-01-01T09:00:00Z")
    assert by_ref.returncode == 0, by_ref.stderr
    assert "green 2021-01" in by_ref.stdout
    assert cli.run("flow", "delete", "test.cli/two_triggers").returncode == 0
    gone = cli.run("run", "test.cli/two_triggers")
    assert gone.returncode == 1
    assert "not found" in gone.stderr and "Traceback" not in gone.stderr


# -- triggers ---------------------------------------------------------------------------------


def test_trigger_date_and_trigger_id(cli: Cli) -> None:
    plain = cli.run("run", FLOWS / "two_triggers.yaml", "--trigger-date", "2019-03-01T09:00:00Z")
    assert plain.returncode == 0, plain.stderr
    assert "green 2019-03 prev=2019-02-01 next=2019-04-01" in plain.stdout
    shown = cli.show(execution_id_of(plain))
    assert shown["inputs"] == {"taxi": "green"}
    assert "schedule" not in shown["labels"]
    assert datetime.fromisoformat(shown["triggerDate"]) == datetime.fromisoformat(
        "2019-03-01T09:00:00+00:00"
    )

    chosen = cli.run(
        "run",
        FLOWS / "two_triggers.yaml",
        "--trigger-date",
        "2019-03-01T10:00:00Z",
        "--trigger",
        "yellow_schedule",
    )
    assert chosen.returncode == 0, chosen.stderr
    assert "yellow 2019-03 prev=2019-02-01 next=2019-04-01" in chosen.stdout
    shown = cli.show(execution_id_of(chosen))
    assert shown["inputs"] == {"taxi": "yellow"}
    assert shown["labels"]["schedule"] == "yellow"

    unknown = cli.run("run", FLOWS / "two_triggers.yaml", "--trigger", "nope")
    assert unknown.returncode == 1
    assert "nope" in unknown.stderr and "yellow_schedule" in unknown.stderr


# -- kill and restart --------------------------------------------------------------------------


def _process_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_kill_a_running_execution(cli: Cli, tmp_path: Path) -> None:
    with (tmp_path / "stderr").open("w") as err:
        proc = cli.popen("run", FLOWS / "sleep_long.yaml", stderr=err)
        assert proc.stdout is not None
        execution_id = sleep_pid = None
        deadline = time.monotonic() + 30
        try:
            for line in proc.stdout:
                found = re.search(r"Execution (\S+) of test\.cli/sleep_long started", line)
                if found:
                    execution_id = found.group(1)
                found = re.search(r"SLEEP_PID=(\d+)", line)
                if found:
                    sleep_pid = int(found.group(1))
                    break
                assert time.monotonic() < deadline, "the flow never started its sleep"
            assert execution_id and sleep_pid and _process_alive(sleep_pid)
            assert cli.show(execution_id)["state"] == "RUNNING"

            killed = cli.run("executions", "kill", execution_id)
            assert killed.returncode == 0, killed.stderr
            proc.wait(timeout=20)
            rest = proc.stdout.read()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 1
    assert f"execution {execution_id} KILLED" in rest
    shown = cli.show(execution_id)
    assert shown["state"] == "KILLED"
    assert {r["taskId"]: r["state"] for r in shown["taskRuns"]} == {"wait": "KILLED"}
    deadline = time.monotonic() + 5
    while _process_alive(sleep_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _process_alive(sleep_pid), "the task's subprocess outlived the kill"

    again = cli.run("executions", "kill", execution_id)
    assert again.returncode == 1 and "already ended" in again.stderr


def test_restart_resumes_at_the_failed_task(cli: Cli, tmp_path: Path) -> None:
    first = cli.run(
        "run",
        FLOWS / "fails_at_three.yaml",
        "-i",
        f"dir={tmp_path}",
        "--trigger-date",
        "2020-10-01T00:00:00Z",
    )
    assert first.returncode == 1
    execution_id = execution_id_of(first)
    assert first.stdout.rstrip().endswith("FAILED")
    assert (tmp_path / "ran.txt").read_text().split() == ["one", "two", "three"]
    before = cli.show(execution_id)
    assert before["state"] == "FAILED"

    (tmp_path / "flag").touch()
    restarted = cli.run("executions", "restart", execution_id)
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    assert restarted.stdout.rstrip().endswith(f"execution {execution_id} SUCCESS")
    assert (tmp_path / "ran.txt").read_text().split() == ["one", "two", "three", "three"]
    after = cli.show(execution_id)
    assert after["state"] == "SUCCESS"
    assert after["inputs"] == before["inputs"] == {"dir": str(tmp_path)}
    assert after["triggerDate"] == before["triggerDate"]
    runs = {r["taskId"]: r for r in after["taskRuns"]}
    assert runs["four"]["outputs"] == {"value": f"{tmp_path} 2020-10"}
    assert len(runs["three"]["attempts"]) >= 1
    assert runs["one"]["endDate"] == {r["taskId"]: r for r in before["taskRuns"]}["one"]["endDate"]

    not_failed = cli.run("executions", "restart", execution_id)
    assert not_failed.returncode == 1 and "only FAILED" in not_failed.stderr


# -- bad input --------------------------------------------------------------------------------


def _count(cli: Cli, flow_id: str = "%") -> int:
    """Executions stored (asked of the database directly: faster than the CLI)."""
    with psycopg.connect(cli.database_url) as conn:
        row = conn.execute("SELECT count(*) FROM executions WHERE flow_id LIKE %s", (flow_id,))
        return int(row.fetchone()[0])  # type: ignore[index]


def test_validate_reports_every_problem_of_every_file(cli: Cli) -> None:
    done = cli.run("flow", "validate", FLOWS / "bad_yaml.yaml", FLOWS / "bad_tasks.yaml", EXAMPLES)
    assert done.returncode == 1
    out = done.stdout
    assert re.search(r"bad_yaml\.yaml:\d+: invalid YAML", out)
    assert re.search(r"bad_tasks\.yaml:5: tasks\[0\]\.type: unknown task type .*Lgo", out)
    assert re.search(r"bad_tasks\.yaml:10: tasks\[1\]\.mesage: unknown property", out)
    assert re.search(r"bad_tasks\.yaml:14: tasks\[2\]\.timeout: ", out)
    assert "hello.yaml" not in out and "postgres_taxi" not in out
    good = cli.run("flow", "validate", EXAMPLES)
    count = len(list(EXAMPLES.glob("*.yaml")))
    assert good.returncode == 0 and f"{count} flow(s) valid" in good.stdout


@pytest.mark.parametrize(
    ("flow", "pattern"),
    [
        ("bad_yaml.yaml", r"bad_yaml\.yaml:\d+: invalid YAML"),
        ("bad_tasks.yaml", r"tasks\[0\]\.type: unknown task type"),
    ],
)
def test_invalid_flow_runs_nothing(cli: Cli, flow: str, pattern: str) -> None:
    before = _count(cli)
    done = cli.run("run", FLOWS / flow)
    assert done.returncode == 1
    assert re.search(pattern, done.stderr), done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert _count(cli) == before


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["-i", "rows=ten"], ["rows", "ten"]),
        (["-i", "month=13"], ["month", "13", "not one of"]),
        (["-i", "colour=red"], ["colour", "unknown input"]),
        (["-i", "month"], ["key=value"]),
    ],
)
def test_bad_inputs_stop_before_any_task(cli: Cli, args: list[str], expected: list[str]) -> None:
    before = _count(cli, "labels_and_logs")
    done = cli.run("run", FLOWS / "labels_and_logs.yaml", *args)
    assert done.returncode == 1
    for part in expected:
        assert part in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert _count(cli, "labels_and_logs") == before


def test_missing_flow_file(cli: Cli) -> None:
    done = cli.run("run", FLOWS / "no_such_flow.yaml")
    assert done.returncode == 1
    assert "no_such_flow.yaml: no such flow file" in done.stderr


def test_missing_required_input(cli: Cli) -> None:
    done = cli.run("run", FLOWS / "fails_at_three.yaml")
    assert done.returncode == 1
    assert "dir" in done.stderr and "required" in done.stderr
    assert "Traceback" not in done.stderr


def test_unreachable_database_names_it_without_the_password(cli: Cli) -> None:
    bad = {"FLOWHAWK_DATABASE_URL": "postgresql://u:secretpw@127.0.0.1:1/x"}
    for args in (
        ["run", EXAMPLES / "hello.yaml"],
        ["executions", "list", "--json"],
        ["flow", "deploy", EXAMPLES / "hello.yaml"],
    ):
        done = cli.run(*args, env=bad, timeout=30)
        assert done.returncode != 0
        out = done.stdout + done.stderr
        assert "secretpw" not in out
        assert "Traceback" not in out
        assert "127.0.0.1" in done.stderr and "1" in done.stderr and "x" in done.stderr
        assert re.search(r"host=127\.0\.0\.1 port=1 dbname=x", done.stderr), done.stderr
