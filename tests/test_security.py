"""Security through real flow runs: the expression sandbox, secret masking, working-dir escapes.

Secrets are checked where a user or an attacker could find them afterwards: every log line,
task output, error and execution row in PostgreSQL, and the CLI's own stdout/stderr.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from cli_helpers import make_cli
from engine_helpers import make_engine, run_flow
from flowhawk.engine.service import Engine

SECRET = "s3cr3t-Taxi-Pa55"


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fhsec")


@pytest.fixture(scope="module")
def engine(pg_url: str, home: Path) -> Iterator[Engine]:
    eng = make_engine(pg_url, home)
    yield eng
    eng.close()


@pytest.fixture
def secret_env(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("SECRET_DB_PASSWORD", base64.b64encode(SECRET.encode()).decode())
    return SECRET


ESCAPES = [
    "{{ ''.__class__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ [].__class__.__base__.__subclasses__() }}",
    "{{ inputs.__class__.__init__.__globals__ }}",
    "{{ (inputs | attr('__class__')) }}",
    "{{ self._TemplateReference__context }}",
    "{{ cycler.__init__.__globals__.os.environ }}",
    "{{ lipsum.__globals__['os'].popen('id').read() }}",
    "{{ range.__globals__ }}",
    "{{ render.__globals__ }}",
    "{{ now.__globals__ }}",
    "{{ ''.format.__self__ }}",
    "{% set x = ''.__class__ %}{{ x }}",
]


def test_sandbox_refuses_python_escapes(engine: Engine) -> None:
    tasks = "\n".join(
        f"""
          - id: escape_{i}
            type: io.kestra.plugin.core.log.Log
            allowFailure: true
            message: {expression!r}"""
        for i, expression in enumerate(ESCAPES)
    )
    result = run_flow(
        engine,
        f"""
        id: sandbox
        namespace: test.security
        variables:
          nested: "{{{{ ''.__class__.__mro__ }}}}"
        tasks:{tasks}
          - id: through_render
            type: io.kestra.plugin.core.log.Log
            allowFailure: true
            message: "{{{{ render(vars.nested) }}}}"
        """,
    )
    assert result.state == "WARNING", result.log_text()
    for i in range(len(ESCAPES)):
        run = result.runs[f"escape_{i}"]
        assert run.state == "WARNING", (ESCAPES[i], result.log_text())
        assert f"task `escape_{i}`" in (run.error or ""), run.error
    assert result.runs["through_render"].state == "WARNING"
    text = result.log_text()
    for leak in ("<class", "subprocess", "uid=", "<module", "function", "environ("):
        assert leak not in text, leak
    assert "not allowed" in (result.runs["escape_0"].error or "")


def test_read_cannot_leave_storage(engine: Engine) -> None:
    result = run_flow(
        engine,
        """
        id: read_escape
        namespace: test.security
        tasks:
          - id: plain_path
            type: io.kestra.plugin.core.debug.Return
            allowFailure: true
            format: "{{ read('/etc/passwd') }}"
          - id: climbing
            type: io.kestra.plugin.core.debug.Return
            allowFailure: true
            format: "{{ read('kestra:///../../../../etc/passwd') }}"
        """,
    )
    assert result.state == "WARNING"
    assert result.runs["plain_path"].state == "WARNING"
    assert result.runs["climbing"].state == "WARNING"
    assert "root:x:0" not in result.log_text()


def _stored_text(database_url: str, execution_id: str) -> str:
    """Everything PostgreSQL holds about one execution (and its children), as text."""
    with psycopg.connect(database_url) as conn:
        parts = [
            conn.execute(
                "SELECT coalesce(string_agg(e::text, E'\\n'), '') FROM executions e"
                " WHERE e.id = %s OR e.parent_id = %s",
                (execution_id, execution_id),
            ).fetchone()[0],  # type: ignore[index]
            conn.execute(
                "SELECT coalesce(string_agg(t::text, E'\\n'), '') FROM task_runs t"
                " WHERE t.execution_id = %s",
                (execution_id,),
            ).fetchone()[0],  # type: ignore[index]
            conn.execute(
                "SELECT coalesce(string_agg(l::text, E'\\n'), '') FROM logs l"
                " WHERE l.execution_id = %s",
                (execution_id,),
            ).fetchone()[0],  # type: ignore[index]
        ]
    return "\n".join(parts)


SECRET_FLOW = """
    id: secrets
    namespace: test.security
    inputs:
      - id: token
        type: SECRET
        required: false
    tasks:
      - id: log_it
        type: io.kestra.plugin.core.log.Log
        message: "password is {{ secret('DB_PASSWORD') }}; token is {{ inputs.token }}"
      - id: return_it
        type: io.kestra.plugin.core.debug.Return
        format: "{{ secret('DB_PASSWORD') }}"
      - id: output_it
        type: io.kestra.plugin.core.output.OutputValues
        values:
          pw: "{{ secret('DB_PASSWORD') | upper | lower }}"
          copy: "{{ outputs.return_it.value }}"
      - id: label_it
        type: io.kestra.plugin.core.execution.Labels
        labels:
          pw: "{{ secret('DB_PASSWORD') }}"
      - id: shell_it
        type: io.kestra.plugin.scripts.shell.Commands
        taskRunner:
          type: io.kestra.plugin.core.runner.Process
        env:
          PW: "{{ secret('DB_PASSWORD') }}"
          TOKEN: "{{ inputs.token }}"
        commands:
          - echo "stdout $PW $TOKEN"
          - echo "stderr $PW" >&2
          - |
            echo '::{"outputs": {"pw": "'"$PW"'", "token": "'"$TOKEN"'"}}::'
      - id: fail_with_it
        type: io.kestra.plugin.core.execution.Fail
        errorMessage: "could not log in with {{ secret('DB_PASSWORD') }}"
    outputs:
      - id: pw
        type: STRING
        value: "{{ outputs.return_it.value }}"
    """


def test_secret_values_never_stored_or_logged(engine: Engine, pg_url: str, secret_env: str) -> None:
    token = "tok-ABCDEF-987"
    result = run_flow(engine, SECRET_FLOW, inputs={"token": token})
    assert result.state == "FAILED"
    for task in ("log_it", "return_it", "output_it", "label_it", "shell_it"):
        assert result.runs[task].state == "SUCCESS", (task, result.log_text())
    assert result.runs["fail_with_it"].state == "FAILED"
    text = result.log_text()
    assert "password is ******; token is ******" in text
    assert "stdout ****** ******" in text
    assert result.outputs("return_it") == {"value": "******"}
    assert result.outputs("shell_it")["vars"] == {"pw": "******", "token": "******"}
    stored = _stored_text(pg_url, result.execution.id)
    assert "could not log in with ******" in stored
    assert secret_env not in stored
    assert token not in stored
    assert base64.b64encode(secret_env.encode()).decode() not in stored


def test_secret_passed_to_a_subflow_is_masked_but_usable(
    engine: Engine, pg_url: str, secret_env: str, tmp_path: Path
) -> None:
    import textwrap

    engine.deploy_source(
        textwrap.dedent(
            """
            id: secret_child
            namespace: test.security
            inputs:
              - id: pw
                type: STRING
              - id: out
                type: STRING
            tasks:
              - id: use
                type: io.kestra.plugin.scripts.shell.Commands
                taskRunner: {type: io.kestra.plugin.core.runner.Process}
                env: {PW: "{{ inputs.pw }}"}
                commands:
                  - printf '%s' "$PW" > "{{ inputs.out }}"
                  - echo "child sees $PW"
            """
        )
    )
    out = tmp_path / "seen"
    result = run_flow(
        engine,
        f"""
        id: secret_parent
        namespace: test.security
        tasks:
          - id: call
            type: io.kestra.plugin.core.flow.Subflow
            namespace: test.security
            flowId: secret_child
            inputs:
              pw: "{{{{ secret('DB_PASSWORD') }}}}"
              out: "{out}"
            labels:
              pw: "{{{{ secret('DB_PASSWORD') }}}}"
        """,
    )
    assert result.state == "SUCCESS", result.log_text()
    assert out.read_text() == secret_env
    child_id = result.outputs("call")["executionId"]
    child = engine.execution(child_id)
    assert child.inputs["pw"] == "******"
    assert child.labels["pw"] == "******"
    stored = _stored_text(pg_url, result.execution.id) + _stored_text(pg_url, child_id)
    assert "child sees ******" in stored
    assert secret_env not in stored


def test_secret_not_printed_by_the_cli(
    pg_url: str, tmp_path: Path, secret_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    flow = tmp_path / "secrets.yaml"
    flow.write_text(SECRET_FLOW.replace("\n    ", "\n").strip() + "\n")
    cli = make_cli(pg_url, tmp_path / "home")
    cli.env["SECRET_DB_PASSWORD"] = base64.b64encode(secret_env.encode()).decode()
    done = cli.run("run", flow, "--input", "token=tok-CLI-123")
    assert done.returncode == 1
    out = done.stdout + done.stderr
    assert "password is ******" in out
    assert secret_env not in out and "tok-CLI-123" not in out
    shown = cli.run("executions", "show", done.stdout.split()[-2], "--json")
    assert secret_env not in shown.stdout and "tok-CLI-123" not in shown.stdout


@pytest.mark.parametrize(
    ("name", "spec"),
    [
        ("input_climbs", 'inputFiles: {"../escaped.txt": "x"}'),
        ("input_absolute", 'inputFiles: {"/tmp/flowhawk-escaped.txt": "x"}'),
        ("input_nested_climb", 'inputFiles: {"a/../../escaped.txt": "x"}'),
        ("output_climbs", 'outputFiles: ["../*"]'),
        ("output_absolute", 'outputFiles: ["/etc/passwd"]'),
        ("output_symlink", 'outputFiles: ["*.txt"]'),
    ],
)
def test_files_cannot_leave_the_working_dir(engine: Engine, name: str, spec: str) -> None:
    result = run_flow(
        engine,
        f"""
        id: files_{name}
        namespace: test.security
        tasks:
          - id: script
            type: io.kestra.plugin.scripts.shell.Commands
            taskRunner: {{type: io.kestra.plugin.core.runner.Process}}
            {spec}
            commands:
              - ln -s /etc/passwd passwd.txt
        """,
    )
    assert result.state == "FAILED", result.log_text()
    error = result.runs["script"].error or ""
    assert "working directory" in error, error
    assert not Path("/tmp/flowhawk-escaped.txt").exists()
    assert "root:x:0" not in result.log_text()
    assert not engine.repo.files(result.execution.id)


def test_input_file_symlink_inside_cannot_redirect_writes(engine: Engine, tmp_path: Path) -> None:
    """A later task never sees an earlier one's dir, so a planted symlink cannot be reused."""
    target = tmp_path / "victim.txt"
    result = run_flow(
        engine,
        f"""
        id: files_symlink_plant
        namespace: test.security
        tasks:
          - id: plant
            type: io.kestra.plugin.scripts.shell.Commands
            taskRunner: {{type: io.kestra.plugin.core.runner.Process}}
            commands:
              - ln -s {target} planted.txt
          - id: write
            type: io.kestra.plugin.scripts.shell.Commands
            taskRunner: {{type: io.kestra.plugin.core.runner.Process}}
            inputFiles:
              planted.txt: overwritten
            commands:
              - cat planted.txt
        """,
    )
    assert result.state == "SUCCESS", result.log_text()
    assert not target.exists()
