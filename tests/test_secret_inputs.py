"""SECRET inputs reach the worker that runs an execution, and nothing shows them."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

from engine_helpers import collect, make_engine
from flowhawk.engine.worker import WorkerPool

FLOW = """
id: secret_input
namespace: test.secrets
inputs:
  - id: token
    type: SECRET
tasks:
  - id: check
    type: io.kestra.plugin.scripts.shell.Commands
    commands:
      - test "$TOKEN" = "s3cr3t-value" && echo "token is $TOKEN"
    env:
      TOKEN: "{{ inputs.token }}"
  - id: echo
    type: io.kestra.plugin.core.log.Log
    message: "token={{ inputs.token }}"
"""


def test_secret_input_runs_in_a_worker_and_stays_hidden(fresh_pg_url: str, tmp_path: Path) -> None:
    engine = make_engine(fresh_pg_url, tmp_path)
    flow, revision, _ = engine.deploy_source(textwrap.dedent(FLOW))
    started = engine.create_execution(flow, revision, inputs={"token": "s3cr3t-value"})
    execution_id = started.execution.id
    assert engine.execution(execution_id).inputs == {"token": "******"}

    pool = WorkerPool(engine, threads=1).start()
    try:
        deadline = time.monotonic() + 60
        while engine.execution(execution_id).state not in ("SUCCESS", "FAILED", "KILLED"):
            assert time.monotonic() < deadline, "execution did not end"
            time.sleep(0.2)
    finally:
        pool.stop()
    result = collect(engine, execution_id)
    assert result.state == "SUCCESS", result.log_text()
    text = result.log_text()
    assert "token is ******" in text
    assert "token=******" in text
    assert "s3cr3t-value" not in text
    with engine.repo.conn() as conn:
        rows = conn.execute(
            "SELECT inputs::text, coalesce(outputs::text, ''), labels::text FROM executions"
            " UNION ALL SELECT coalesce(outputs::text, ''), coalesce(error, ''), '' FROM task_runs"
        ).fetchall()
    assert not any("s3cr3t-value" in " ".join(r) for r in rows)
    engine.close()
