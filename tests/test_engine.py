"""End-to-end tests of the executor: flows run in-process through ``Engine`` on real PostgreSQL.

Each test deploys a small flow, runs it to its end and checks what the repository holds
afterwards: the execution's state, its task runs (by path) with their attempts, outputs,
labels, logs and stored files. Helpers here (``make_engine``, ``run_flow``) are reused by
the other end-to-end test modules.
"""

from __future__ import annotations

import textwrap
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from engine_helpers import collect, make_engine, overlaps, run_flow
from flowhawk.engine.service import Engine

# -- fixtures ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fhhome")


@pytest.fixture(scope="module")
def engine(pg_url: str, home: Path) -> Iterator[Engine]:
    eng = make_engine(pg_url, home)
    yield eng
    eng.close()


# -- task states, attempts, runIf ----------------------------------------------------------


def test_task_states_attempts_outputs_and_flow_outputs(engine: Engine) -> None:
    result = run_flow(
        engine,
        """
        id: basics
        namespace: test.engine
        inputs:
          - id: name
            type: STRING
            defaults: world
        tasks:
          - id: greet
            type: io.kestra.plugin.core.debug.Return
            format: "Hello, {{ inputs.name }}!"
          - id: shout
            type: io.kestra.plugin.core.debug.Return
            format: "{{ outputs.greet.value | upper }}"
        outputs:
          - id: loud
            type: STRING
            value: "{{ outputs.shout.value }}"
        """,
        inputs={"name": "taxi"},
    )
    assert result.state == "SUCCESS"
    assert list(result.runs) == ["greet", "shout"]
    for run in result.runs.values():
        assert run.state == "SUCCESS"
        assert [a["state"] for a in run.attempts] == ["SUCCESS"]
        assert run.start_date and run.end_date and run.start_date <= run.end_date
    assert result.outputs("greet") == {"value": "Hello, taxi!"}
    assert result.outputs("shout") == {"value": "HELLO, TAXI!"}
    assert result.execution.outputs == {"loud": "HELLO, TAXI!"}
    assert result.execution.inputs == {"name": "taxi"}
    assert result.execution.start_date and result.execution.end_date


def test_run_if_false_skips_the_task(engine: Engine) -> None:
    result = run_flow(
        engine,
        """
        id: run_if
        namespace: test.engine
        inputs:
          - id: go
            type: BOOLEAN
            defaults: false
        tasks:
          - id: maybe
            type: io.kestra.plugin.core.debug.Return
            format: ran
            runIf: "{{ inputs.go }}"
          - id: always
            type: io.kestra.plugin.core.debug.Return
            format: "{{ outputs.maybe.value ?? 'nothing' }}"
        """,
    )
    assert result.state == "SUCCESS"
    assert result.runs["maybe"].state == "SKIPPED"
    assert result.outputs("always") == {"value": "nothing"}


def test_if_then_and_else(engine: Engine) -> None:
    source = """
        id: branches
        namespace: test.engine
        inputs:
          - id: taxi
            type: SELECT
            values: [yellow, green]
        tasks:
          - id: pick
            type: io.kestra.plugin.core.flow.If
            condition: "{{ inputs.taxi == 'yellow' }}"
            then:
              - id: yellow
                type: io.kestra.plugin.core.debug.Return
                format: y
            else:
              - id: green
                type: io.kestra.plugin.core.debug.Return
                format: g
        """
    yellow = run_flow(engine, source, inputs={"taxi": "yellow"})
    assert yellow.state == "SUCCESS"
    assert "pick/then/yellow" in yellow.runs
    assert not any(p.startswith("pick/else") for p in yellow.runs)
    green = run_flow(engine, source, inputs={"taxi": "green"})
    assert green.state == "SUCCESS"
    assert green.outputs("pick/else/green") == {"value": "g"}
    assert not any(p.startswith("pick/then") for p in green.runs)


def test_sequential_runs_children_in_order(engine: Engine) -> None:
    result = run_flow(
        engine,
        """
        id: seq
        namespace: test.engine
        tasks:
          - id: group
            type: io.kestra.plugin.core.flow.Sequential
            tasks:
              - id: first
                type: io.kestra.plugin.core.debug.Return
                format: "1"
              - id: second
                type: io.kestra.plugin.core.debug.Return
                format: "{{ outputs.first.value }}2"
          - id: after
            type: io.kestra.plugin.core.debug.Return
            format: "{{ outputs.second.value }}3"
        """,
    )
    assert result.state == "SUCCESS"
    first, second = result.runs["group/first"], result.runs["group/second"]
    assert first.end_date and second.start_date and first.end_date <= second.start_date
    assert result.outputs("after") == {"value": "123"}
    assert result.runs["group"].state == "SUCCESS"


def test_parallel_runs_children_concurrently(engine: Engine) -> None:
    started = time.monotonic()
    result = run_flow(
        engine,
        """
        id: par
        namespace: test.engine
        tasks:
          - id: fan
            type: io.kestra.plugin.core.flow.Parallel
            tasks:
              - id: a
                type: io.kestra.plugin.core.flow.Sleep
                duration: PT0.6S
              - id: b
                type: io.kestra.plugin.core.flow.Sleep
                duration: PT0.6S
              - id: c
                type: io.kestra.plugin.core.flow.Sleep
                duration: PT0.6S
        """,
    )
    elapsed = time.monotonic() - started
    assert result.state == "SUCCESS"
    a, b, c = (result.runs[f"fan/{t}"] for t in "abc")
    assert overlaps(a, b) and overlaps(b, c) and overlaps(a, c)
    assert elapsed < 1.7, f"three 0.6 s sleeps in parallel took {elapsed:.2f} s"


def test_foreach_taskrun_value_and_concurrency_limit(engine: Engine) -> None:
    source = """
        id: each_{limit}
        namespace: test.engine
        tasks:
          - id: each
            type: io.kestra.plugin.core.flow.ForEach
            values: ["a", "b", "c"]
            concurrencyLimit: {limit}
            tasks:
              - id: nap
                type: io.kestra.plugin.core.flow.Sleep
                duration: PT0.3S
              - id: echo
                type: io.kestra.plugin.core.debug.Return
                format: "item {{{{ taskrun.value }}}}"
          - id: summary
            type: io.kestra.plugin.core.debug.Return
            format: "{{{{ outputs.echo['b'].value }}}}"
        """
    serial = run_flow(engine, source.format(limit=1))
    assert serial.state == "SUCCESS"
    assert [serial.outputs(f"each[{i}]/echo")["value"] for i in range(3)] == [
        "item a",
        "item b",
        "item c",
    ]
    assert [serial.runs[f"each[{i}]/echo"].value for i in range(3)] == ["a", "b", "c"]
    assert serial.outputs("summary") == {"value": "item b"}
    naps = [serial.runs[f"each[{i}]/nap"] for i in range(3)]
    assert not overlaps(naps[0], naps[1]) and not overlaps(naps[1], naps[2])

    unlimited = run_flow(engine, source.format(limit=0))
    assert unlimited.state == "SUCCESS"
    naps = [unlimited.runs[f"each[{i}]/nap"] for i in range(3)]
    assert overlaps(naps[0], naps[1]) and overlaps(naps[1], naps[2])
    assert unlimited.outputs("summary") == {"value": "item b"}


CHILD = """
    id: child
    namespace: test.engine
    inputs:
      - id: n
        type: INT
      - id: fail
        type: BOOLEAN
        defaults: false
    tasks:
      - id: double
        type: io.kestra.plugin.core.debug.Return
        format: "{{ inputs.n * 2 }}"
      - id: maybe_fail
        type: io.kestra.plugin.core.execution.Fail
        condition: "{{ inputs.fail }}"
        errorMessage: child asked to fail
    outputs:
      - id: doubled
        type: STRING
        value: "{{ outputs.double.value }}"
    """

PARENT = """
    id: parent_{name}
    namespace: test.engine
    tasks:
      - id: call
        type: io.kestra.plugin.core.flow.Subflow
        namespace: test.engine
        flowId: child
        inputs:
          n: 21
          fail: {fail}
        labels:
          origin: parent
        wait: true
        transmitFailed: {transmit}
      - id: use
        type: io.kestra.plugin.core.debug.Return
        format: "got {{{{ outputs.call.outputs.doubled ?? 'none' }}}} {{{{ outputs.call.state }}}}"
    """


def test_subflow_waits_and_returns_outputs(engine: Engine) -> None:
    engine.deploy_source(textwrap.dedent(CHILD))
    result = run_flow(engine, PARENT.format(name="ok", fail="false", transmit="true"))
    assert result.state == "SUCCESS", result.log_text()
    child_id = result.outputs("call")["executionId"]
    child = engine.execution(child_id)
    assert child.state == "SUCCESS"
    assert child.parent_id == result.execution.id
    assert child.labels.get("origin") == "parent"
    assert child.outputs == {"doubled": "42"}
    assert result.outputs("use") == {"value": "got 42 SUCCESS"}


def test_subflow_failure_is_transmitted_or_not(engine: Engine) -> None:
    engine.deploy_source(textwrap.dedent(CHILD))
    failed = run_flow(engine, PARENT.format(name="fails", fail="true", transmit="true"))
    assert failed.state == "FAILED"
    assert failed.runs["call"].state == "FAILED"
    assert "use" not in failed.runs
    child = engine.execution(failed.outputs("call")["executionId"])
    assert child.state == "FAILED"
    assert "child asked to fail" in (child.error or "")

    tolerated = run_flow(engine, PARENT.format(name="tolerates", fail="true", transmit="false"))
    assert tolerated.state in ("SUCCESS", "WARNING")
    assert tolerated.outputs("use") == {"value": "got none FAILED"}


# -- failure handling ------------------------------------------------------------------------


def test_errors_branch_runs_and_execution_still_fails(engine: Engine) -> None:
    result = run_flow(
        engine,
        """
        id: with_errors
        namespace: test.engine
        tasks:
          - id: ok
            type: io.kestra.plugin.core.debug.Return
            format: fine
          - id: boom
            type: io.kestra.plugin.scripts.shell.Commands
            taskRunner: {type: io.kestra.plugin.core.runner.Process}
            commands:
              - echo about to fail
              - exit 3
          - id: never
            type: io.kestra.plugin.core.debug.Return
            format: unreachable
        errors:
          - id: alert
            type: io.kestra.plugin.core.log.Log
            message: "alert for {{ flow.id }}"
        finally:
          - id: cleanup
            type: io.kestra.plugin.core.log.Log
            message: cleaning up
        """,
    )
    assert result.state == "FAILED"
    assert result.runs["boom"].state == "FAILED"
    assert "never" not in result.runs
    assert result.runs["errors/alert"].state == "SUCCESS"
    assert result.runs["finally/cleanup"].state == "SUCCESS"
    text = result.log_text()
    assert "alert for with_errors" in text
    assert "about to fail" in text
    assert "exit code 3" in (result.runs["boom"].error or "")
    assert "exit code 3" in (result.execution.error or "")


def test_finally_runs_on_success_and_errors_branch_does_not(engine: Engine) -> None:
    result = run_flow(
        engine,
        """
        id: with_finally
        namespace: test.engine
        tasks:
          - id: ok
            type: io.kestra.plugin.core.debug.Return
            format: fine
        errors:
          - id: alert
            type: io.kestra.plugin.core.log.Log
            message: should not run
        finally:
          - id: cleanup
            type: io.kestra.plugin.core.debug.Return
            format: "after {{ outputs.ok.value }}"
        """,
    )
    assert result.state == "SUCCESS"
    assert "errors/alert" not in result.runs
    assert result.outputs("finally/cleanup") == {"value": "after fine"}


def test_allow_failure_turns_the_execution_warning(engine: Engine) -> None:
    result = run_flow(
        engine,
        """
        id: allow_failure
        namespace: test.engine
        tasks:
          - id: flaky
            type: io.kestra.plugin.core.execution.Fail
            errorMessage: tolerated failure
            allowFailure: true
          - id: next
            type: io.kestra.plugin.core.debug.Return
            format: still running
        """,
    )
    assert result.state == "WARNING"
    assert result.runs["flaky"].state == "WARNING"
    assert result.outputs("next") == {"value": "still running"}
    assert "tolerated failure" in result.log_text()
    assert not result.execution.error


def test_execution_error_is_the_failure_not_a_tolerated_one(engine: Engine) -> None:
    result = run_flow(
        engine,
        """
        id: allow_then_fail
        namespace: test.engine
        tasks:
          - id: flaky
            type: io.kestra.plugin.core.execution.Fail
            errorMessage: tolerated failure
            allowFailure: true
          - id: fatal
            type: io.kestra.plugin.core.execution.Fail
            errorMessage: the real failure
        """,
    )
    assert result.state == "FAILED"
    assert "the real failure" in (result.execution.error or "")
    assert "tolerated" not in (result.execution.error or "")


RETRY = """
    id: retry_{name}
    namespace: test.engine
    inputs:
      - id: counter
        type: STRING
    tasks:
      - id: flaky
        type: io.kestra.plugin.scripts.shell.Commands
        taskRunner: {{type: io.kestra.plugin.core.runner.Process}}
        retry:
          type: constant
          interval: PT0.1S
          maxAttempt: {max_attempt}
          warningOnRetry: {warning}
        commands:
          - echo x >> "{{{{ inputs.counter }}}}"
          - test "$(wc -l < "{{{{ inputs.counter }}}}")" -ge 3
    """


def test_retry_until_success(engine: Engine, tmp_path: Path) -> None:
    counter = tmp_path / "count"
    result = run_flow(
        engine,
        RETRY.format(name="ok", max_attempt=5, warning="false"),
        inputs={"counter": str(counter)},
    )
    assert result.state == "SUCCESS", result.log_text()
    assert [a["state"] for a in result.runs["flaky"].attempts] == [
        "RETRYING",
        "RETRYING",
        "SUCCESS",
    ]
    assert counter.read_text().count("x") == 3
    assert [r.attempt for r in result.logs if r.task_id == "flaky" and r.level == "ERROR"][:2] == [
        1,
        2,
    ]


def test_retry_warning_on_retry(engine: Engine, tmp_path: Path) -> None:
    result = run_flow(
        engine,
        RETRY.format(name="warn", max_attempt=3, warning="true"),
        inputs={"counter": str(tmp_path / "count")},
    )
    assert result.state == "WARNING"
    assert result.runs["flaky"].state == "WARNING"
    assert len(result.runs["flaky"].attempts) == 3


def test_retry_stops_at_max_attempt(engine: Engine, tmp_path: Path) -> None:
    counter = tmp_path / "count"
    result = run_flow(
        engine,
        RETRY.format(name="exhausted", max_attempt=2, warning="false"),
        inputs={"counter": str(counter)},
    )
    assert result.state == "FAILED"
    assert len(result.runs["flaky"].attempts) == 2
    assert result.runs["flaky"].attempts[-1]["state"] == "FAILED"
    assert counter.read_text().count("x") == 2


def test_timeout_fails_a_long_shell_task_quickly(engine: Engine) -> None:
    started = time.monotonic()
    result = run_flow(
        engine,
        """
        id: timeout
        namespace: test.engine
        tasks:
          - id: slow
            type: io.kestra.plugin.scripts.shell.Commands
            taskRunner: {type: io.kestra.plugin.core.runner.Process}
            timeout: PT1S
            commands:
              - sleep 30
        """,
    )
    elapsed = time.monotonic() - started
    assert result.state == "FAILED"
    assert result.runs["slow"].state == "FAILED"
    assert "timeout" in (result.runs["slow"].error or "").lower()
    assert elapsed < 8, f"a PT1S timeout took {elapsed:.1f} s"


# -- labels, logs, working dirs, files ---------------------------------------------------------


def test_labels_added_at_run_time(engine: Engine) -> None:
    result = run_flow(
        engine,
        """
        id: labels
        namespace: test.engine
        labels:
          team: data
        tasks:
          - id: tag
            type: io.kestra.plugin.core.execution.Labels
            labels:
              month: "2019-{{ '01' }}"
              taxi: green
          - id: read
            type: io.kestra.plugin.core.debug.Return
            format: "{{ labels.taxi }}"
        """,
        labels={"run": "manual"},
    )
    assert result.state == "SUCCESS"
    assert result.execution.labels == {
        "team": "data",
        "run": "manual",
        "month": "2019-01",
        "taxi": "green",
    }
    assert result.outputs("read") == {"value": "green"}


def test_logs_carry_time_level_task_and_attempt(engine: Engine) -> None:
    before = datetime.now(UTC)
    result = run_flow(
        engine,
        """
        id: logs
        namespace: test.engine
        tasks:
          - id: say
            type: io.kestra.plugin.core.log.Log
            level: WARN
            message: ["first line", "second line"]
          - id: shell
            type: io.kestra.plugin.scripts.shell.Commands
            taskRunner: {type: io.kestra.plugin.core.runner.Process}
            commands:
              - echo from stdout
              - echo from stderr >&2
        """,
    )
    assert result.state == "SUCCESS"
    said = [r for r in result.logs if r.task_id == "say"]
    assert {r.message for r in said} >= {"first line", "second line"}
    assert all(r.level == "WARN" and r.attempt == 1 for r in said)
    shell = {r.message: r for r in result.logs if r.task_id == "shell"}
    assert shell["from stdout"].level == "INFO"
    assert shell["from stderr"].level == "ERROR"
    assert shell["from stdout"].attempt == 1
    assert shell["from stdout"].task_run_id == result.runs["shell"].id
    assert all(before <= r.ts <= datetime.now(UTC) for r in result.logs)
    ids = [r.id for r in result.logs]
    assert ids == sorted(ids)


def test_each_task_gets_its_own_working_dir(engine: Engine, home: Path) -> None:
    result = run_flow(
        engine,
        """
        id: workdirs
        namespace: test.engine
        tasks:
          - id: write
            type: io.kestra.plugin.scripts.shell.Commands
            taskRunner: {type: io.kestra.plugin.core.runner.Process}
            commands:
              - echo hi > note.txt
              - |
                echo '::{"outputs": {"dir": "'"$(pwd)"'"}}::'
          - id: look
            type: io.kestra.plugin.scripts.shell.Commands
            taskRunner: {type: io.kestra.plugin.core.runner.Process}
            commands:
              - test ! -e note.txt
              - |
                echo '::{"outputs": {"dir": "'"$(pwd)"'", "wd": "{{ workingDir }}"}}::'
        """,
    )
    assert result.state == "SUCCESS", result.log_text()
    first = result.outputs("write")["vars"]["dir"]
    second = result.outputs("look")["vars"]
    assert first != second["dir"]
    assert Path(second["dir"]).resolve() == Path(second["wd"]).resolve()
    assert Path(first).resolve().is_relative_to((home / "work").resolve())
    assert not Path(first).exists(), "working dirs are removed after the execution"


def test_stored_files_and_purge(engine: Engine, home: Path) -> None:
    source = """
        id: files_{purge}
        namespace: test.engine
        tasks:
          - id: make
            type: io.kestra.plugin.scripts.shell.Commands
            taskRunner: {{type: io.kestra.plugin.core.runner.Process}}
            outputFiles: ["*.csv"]
            commands:
              - printf 'a,b\\n1,2\\n' > data.csv
          - id: purge
            type: io.kestra.plugin.core.storage.PurgeCurrentExecutionFiles
            runIf: "{purge}"
        """
    kept = run_flow(engine, source.format(purge="false"))
    assert kept.state == "SUCCESS", kept.log_text()
    uri = kept.outputs("make")["outputFiles"]["data.csv"]
    assert uri.startswith("kestra:///")
    stored = engine.repo.files(kept.execution.id)
    assert [f["uri"] for f in stored] == [uri]
    path = (home / "storage" / uri.removeprefix("kestra:///")).resolve()
    assert path.read_text() == "a,b\n1,2\n"

    purged = run_flow(engine, source.format(purge="true"))
    assert purged.state == "SUCCESS"
    assert purged.outputs("purge")["count"] == 1
    uri = purged.outputs("make")["outputFiles"]["data.csv"]
    assert not (home / "storage" / uri.removeprefix("kestra:///")).exists()


# -- triggers ------------------------------------------------------------------------------

TRIGGERED = """
    id: triggered
    namespace: test.engine
    inputs:
      - id: taxi
        type: SELECT
        values: [green, yellow]
        defaults: green
    tasks:
      - id: when
        type: io.kestra.plugin.core.debug.Return
        format: "{{ inputs.taxi }} {{ trigger.date | date('yyyy-MM') }} {{ trigger.previous | date('yyyy-MM-dd HH:mm') }} {{ trigger.next | date('yyyy-MM-dd HH:mm') }}"
    triggers:
      - id: green_schedule
        type: io.kestra.plugin.core.trigger.Schedule
        cron: "0 9 1 * *"
        inputs: {taxi: green}
      - id: yellow_schedule
        type: io.kestra.plugin.core.trigger.Schedule
        cron: "0 10 1 * *"
        inputs: {taxi: yellow}
        labels: {schedule: yellow}
    """


def test_trigger_date_sets_trigger_variables(engine: Engine) -> None:
    tick = datetime(2019, 3, 1, 9, 0, tzinfo=UTC)
    result = run_flow(engine, TRIGGERED, trigger_date=tick)
    assert result.state == "SUCCESS", result.log_text()
    assert result.outputs("when") == {"value": "green 2019-03 2019-02-01 09:00 2019-04-01 09:00"}
    assert result.execution.trigger_date == tick
    assert "schedule" not in result.execution.labels


def test_trigger_id_applies_its_inputs_and_labels(engine: Engine) -> None:
    tick = datetime(2019, 3, 1, 10, 0, tzinfo=UTC)
    result = run_flow(engine, TRIGGERED, trigger_id="yellow_schedule", trigger_date=tick)
    assert result.state == "SUCCESS", result.log_text()
    assert result.outputs("when") == {"value": "yellow 2019-03 2019-02-01 10:00 2019-04-01 10:00"}
    assert result.execution.labels.get("schedule") == "yellow"
    assert result.execution.inputs["taxi"] == "yellow"


def test_unknown_trigger_id_is_refused(engine: Engine) -> None:
    from flowhawk.errors import FlowhawkError

    flow, revision, _ = engine.deploy_source(textwrap.dedent(TRIGGERED))
    with pytest.raises(FlowhawkError, match="no trigger `nope`.*green_schedule"):
        engine.create_execution(flow, revision, trigger_id="nope")


# -- restart ---------------------------------------------------------------------------------


def test_restart_resumes_at_the_failed_task(engine: Engine, tmp_path: Path) -> None:
    from flowhawk.engine.service import Started

    log = tmp_path / "ran.txt"
    flag = tmp_path / "flag"
    source = """
        id: restartable
        namespace: test.engine
        inputs:
          - id: dir
            type: STRING
        tasks:
          - id: one
            type: io.kestra.plugin.scripts.shell.Commands
            taskRunner: {type: io.kestra.plugin.core.runner.Process}
            commands: ['echo one >> "{{ inputs.dir }}/ran.txt"']
          - id: two
            type: io.kestra.plugin.core.debug.Return
            format: "two for {{ trigger.date | date('yyyy-MM') }}"
          - id: three
            type: io.kestra.plugin.scripts.shell.Commands
            taskRunner: {type: io.kestra.plugin.core.runner.Process}
            commands:
              - echo three >> "{{ inputs.dir }}/ran.txt"
              - test -e "{{ inputs.dir }}/flag"
          - id: four
            type: io.kestra.plugin.core.debug.Return
            format: "{{ outputs.two.value }} / {{ inputs.dir }}"
        """
    tick = datetime(2020, 10, 1, tzinfo=UTC)
    first = run_flow(engine, source, inputs={"dir": str(tmp_path)}, trigger_date=tick)
    assert first.state == "FAILED"
    assert log.read_text().split() == ["one", "three"]

    flag.touch()
    execution = engine.prepare_restart(first.execution.id)
    flow, _ = engine.flow(execution.namespace, execution.flow_id)
    state = engine.run_to_end(Started(execution, flow, {}))
    again = collect(engine, first.execution.id)
    assert state == "SUCCESS" == again.state
    assert log.read_text().split() == ["one", "three", "three"]
    assert again.outputs("four") == {"value": f"two for 2020-10 / {tmp_path}"}
    assert again.execution.trigger_date == tick
    assert again.runs["one"].id == first.runs["one"].id
    assert again.runs["one"].end_date == first.runs["one"].end_date


def test_only_ended_executions_restart(engine: Engine) -> None:
    from flowhawk.errors import FlowhawkError

    result = run_flow(
        engine,
        """
        id: fine
        namespace: test.engine
        tasks:
          - id: ok
            type: io.kestra.plugin.core.debug.Return
            format: fine
        """,
    )
    assert result.state == "SUCCESS"
    with pytest.raises(FlowhawkError, match="only FAILED"):
        engine.prepare_restart(result.execution.id)


# -- bad input through the engine --------------------------------------------------------------


def test_undefined_name_fails_naming_task_property_and_name(engine: Engine) -> None:
    result = run_flow(
        engine,
        """
        id: undefined
        namespace: test.engine
        tasks:
          - id: ok
            type: io.kestra.plugin.core.debug.Return
            format: fine
          - id: oops
            type: io.kestra.plugin.core.log.Log
            message: "value is {{ missing_name }}"
        """,
    )
    assert result.state == "FAILED"
    error = result.runs["oops"].error or ""
    assert "`oops`" in error and "`message`" in error and "missing_name" in error
    assert error in result.log_text()


def test_invalid_inputs_create_no_execution(engine: Engine) -> None:
    from flowhawk.errors import FlowhawkError

    flow, revision, _ = engine.deploy_source(
        textwrap.dedent(
            """
            id: typed_inputs
            namespace: test.engine
            inputs:
              - id: n
                type: INT
              - id: taxi
                type: SELECT
                values: [green, yellow]
            tasks:
              - id: ok
                type: io.kestra.plugin.core.debug.Return
                format: "{{ inputs.n }}"
            """
        )
    )
    before = len(engine.repo.list_executions(namespace="test.engine", flow_id="typed_inputs"))
    with pytest.raises(FlowhawkError) as bad:
        engine.create_execution(flow, revision, inputs={"n": "ten", "taxi": "purple"})
    message = str(bad.value)
    assert "n" in message and "ten" in message
    assert "taxi" in message and "purple" in message
    with pytest.raises(FlowhawkError, match="required"):
        engine.create_execution(flow, revision, inputs={"taxi": "green"})
    after = len(engine.repo.list_executions(namespace="test.engine", flow_id="typed_inputs"))
    assert after == before


def test_kill_stops_parallel_sleeps(engine: Engine) -> None:
    import threading

    flow, revision, _ = engine.deploy_source(
        textwrap.dedent(
            """
            id: killable
            namespace: test.engine
            tasks:
              - id: fan
                type: io.kestra.plugin.core.flow.Parallel
                tasks:
                  - id: a
                    type: io.kestra.plugin.core.flow.Sleep
                    duration: PT30S
                  - id: b
                    type: io.kestra.plugin.core.flow.Sleep
                    duration: PT30S
              - id: after
                type: io.kestra.plugin.core.log.Log
                message: not reached
            """
        )
    )
    started = engine.create_execution(flow, revision)
    states: list[str] = []
    runner = threading.Thread(target=lambda: states.append(engine.run_to_end(started)))
    began = time.monotonic()
    runner.start()
    deadline = began + 10
    while engine.execution(started.execution.id).state != "RUNNING":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.3)
    assert engine.repo.request_kill(started.execution.id)
    runner.join(10)
    assert states == ["KILLED"]
    assert time.monotonic() - began < 5
    result = collect(engine, started.execution.id)
    assert result.state == "KILLED"
    assert result.runs["fan/a"].state == "KILLED" and result.runs["fan/b"].state == "KILLED"
    assert "after" not in result.runs
