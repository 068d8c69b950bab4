"""The REST API and the pages over real HTTP: uvicorn in a thread, the real app, PostgreSQL,
a worker pool and a scheduler running, as ``flowhawk server`` runs them."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from cluster_helpers import wait_until
from conftest import _with_db, create_database, drop_database
from flowhawk.config import Settings
from flowhawk.engine.scheduler import Scheduler
from flowhawk.engine.service import Engine
from flowhawk.engine.worker import WorkerPool
from flowhawk.server.app import ServerThread, free_port

TERMINAL = ("SUCCESS", "WARNING", "FAILED", "KILLED", "CANCELLED")


@dataclass
class Live:
    url: str
    engine: Engine
    db_url: str
    tmp: Path
    client: httpx.Client

    def wait_state(
        self, execution_id: str, states: tuple[str, ...] = TERMINAL, timeout: float = 60
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            data = self.client.get(f"/api/v1/executions/{execution_id}").json()
            if data["state"] in states:
                return data  # type: ignore[no-any-return]
            if time.monotonic() > deadline:
                raise AssertionError(f"execution {execution_id} still {data['state']}")
            time.sleep(0.1)


def wait_for(check: Callable[[], Any], timeout: float = 30, what: str = "condition") -> Any:
    return wait_until(check, timeout, what)


@pytest.fixture(scope="module")
def live(pg_server_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    name = create_database(pg_server_url, "fh_api")
    db_url = _with_db(pg_server_url, name)
    tmp = tmp_path_factory.mktemp("api")
    engine = Engine(Settings(database_url=db_url, storage_path=tmp / "storage"))
    pool = WorkerPool(engine, 4).start()
    stop = threading.Event()
    scheduler = threading.Thread(
        target=Scheduler(engine, interval=0.2).run, args=(stop,), daemon=True
    )
    scheduler.start()
    server = ServerThread(engine).start()
    client = httpx.Client(base_url=server.url, timeout=30)
    try:
        yield Live(server.url, engine, db_url, tmp, client)
    finally:
        client.close()
        server.stop()
        stop.set()
        pool.stop(timeout=10)
        scheduler.join(5)
        engine.close()
        drop_database(pg_server_url, name)


def yaml_post(
    live: Live, source: str, path: str = "/api/v1/flows", method: str = "POST"
) -> httpx.Response:
    return live.client.request(
        method, path, content=source, headers={"Content-Type": "application/x-yaml"}
    )


def deploy(live: Live, source: str) -> dict[str, Any]:
    response = yaml_post(live, source)
    assert response.status_code in (200, 201), response.text
    return response.json()  # type: ignore[no-any-return]


def execute(live: Live, namespace: str, flow_id: str, **body: Any) -> dict[str, Any]:
    body.update(namespace=namespace, flowId=flow_id)
    response = live.client.post("/api/v1/executions", json=body)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


DEMO = """id: demo
namespace: api.test
labels:
  team: api
inputs:
  - id: name
    type: STRING
    defaults: world
  - id: colour
    type: SELECT
    values: [red, blue]
    defaults: red
  - id: loud
    type: BOOLEAN
    defaults: false
  - id: token
    type: SECRET
    required: false
tasks:
  - id: hello
    type: io.kestra.plugin.core.log.Log
    message: "Hello, {{ inputs.name }}!"
  - id: branch
    type: io.kestra.plugin.core.flow.If
    condition: "{{ inputs.colour == 'red' }}"
    then:
      - id: red
        type: io.kestra.plugin.core.log.Log
        message: it is red
    else:
      - id: blue
        type: io.kestra.plugin.core.log.Log
        level: WARN
        message: it is blue
  - id: write
    type: io.kestra.plugin.scripts.shell.Commands
    taskRunner:
      type: io.kestra.plugin.core.runner.Process
    outputFiles:
      - "*.txt"
    commands:
      - echo "report for {{ inputs.name }}" > report.txt
triggers:
  - id: daily
    type: io.kestra.plugin.core.trigger.Schedule
    cron: "0 6 * * *"
"""

SLOW = """id: slow
namespace: api.test
tasks:
  - id: count
    type: io.kestra.plugin.scripts.shell.Commands
    taskRunner:
      type: io.kestra.plugin.core.runner.Process
    commands:
      - for i in 1 2 3 4; do echo "line $i"; sleep {{ inputs.pause }}; done
inputs:
  - id: pause
    type: FLOAT
    defaults: 0.4
triggers:
  - id: hourly
    type: io.kestra.plugin.core.trigger.Schedule
    cron: "0 * * * *"
"""


# -- basics -----------------------------------------------------------------------------------
def test_home_docs_and_openapi(live: Live) -> None:
    home = live.client.get("/", follow_redirects=False)
    assert home.status_code == 200
    assert home.headers["content-type"].startswith("text/html")
    assert "Dashboard" in home.text
    assert "server-timing" in home.headers
    schema = live.client.get("/openapi.json").json()
    for path in (
        "/api/v1/flows",
        "/api/v1/executions",
        "/api/v1/executions/{execution_id}/logs",
        "/api/v1/triggers",
        "/api/v1/backfills",
        "/api/v1/taxi/verify",
    ):
        assert path in schema["paths"], path
    assert live.client.get("/docs").status_code == 200


# -- flows ------------------------------------------------------------------------------------
def test_flow_create_update_revisions_delete(live: Live) -> None:
    source = DEMO.replace("id: demo", "id: crud")
    created = yaml_post(live, source)
    assert created.status_code == 201
    assert created.json() == {"namespace": "api.test", "id": "crud", "revision": 1, "changed": True}
    again = yaml_post(live, source)
    assert again.status_code == 200 and again.json()["changed"] is False

    edited = source.replace("defaults: world", "defaults: there")
    updated = yaml_post(live, edited, "/api/v1/flows/api.test/crud", "PUT")
    assert updated.status_code == 200 and updated.json()["revision"] == 2

    got = live.client.get("/api/v1/flows/api.test/crud").json()
    assert got["source"] == edited and got["revision"] == 2
    assert [i["id"] for i in got["inputs"]] == ["name", "colour", "loud", "token"]
    assert got["triggers"][0]["cron"] == "0 6 * * *"
    revisions = live.client.get("/api/v1/flows/api.test/crud/revisions").json()
    assert [r["revision"] for r in revisions] == [1, 2]
    assert revisions[0]["source"] == source
    listed = live.client.get("/api/v1/flows", params={"namespace": "api.test"}).json()
    assert "crud" in {f["id"] for f in listed}

    wrong = yaml_post(live, edited, "/api/v1/flows/api.test/other", "PUT")
    assert wrong.status_code == 422 and "api.test/crud" in wrong.json()["detail"]

    assert live.client.delete("/api/v1/flows/api.test/crud").status_code == 204
    assert live.client.get("/api/v1/flows/api.test/crud").status_code == 404
    assert live.client.delete("/api/v1/flows/api.test/crud").status_code == 404


def test_validation_errors_carry_line_numbers(live: Live) -> None:
    bad = DEMO.replace("    message: it is red\n", "    message: it is red\n    colour: 3\n")
    bad = bad.replace('cron: "0 6 * * *"', 'cron: "61 6 * * *"')
    report = yaml_post(live, bad, "/api/v1/flows/validate").json()
    assert report["valid"] is False
    lines = {p["line"] for p in report["problems"]}
    bad_lines = bad.splitlines()
    assert any("colour: 3" in bad_lines[line - 1] for line in lines), report
    assert any("61 6" in bad_lines[line - 1] for line in lines), report

    refused = yaml_post(live, bad)
    assert refused.status_code == 422
    detail = refused.json()["detail"]
    assert isinstance(detail, list) and {"line", "path", "message"} <= set(detail[0])
    assert live.client.get("/api/v1/flows/api.test/demo").status_code in (200, 404)

    good = yaml_post(live, DEMO, "/api/v1/flows/validate").json()
    assert good == {"valid": True, "namespace": "api.test", "id": "demo", "problems": []}
    syntax = yaml_post(live, "id: [unclosed\n", "/api/v1/flows/validate").json()
    assert syntax["valid"] is False and syntax["problems"][0]["line"] >= 1
    not_utf8 = live.client.post(
        "/api/v1/flows/validate",
        content=b"\xff\xfe",
        headers={"Content-Type": "application/x-yaml"},
    )
    assert not_utf8.status_code == 422


# -- executions -------------------------------------------------------------------------------
def test_execution_runs_with_inputs_labels_and_masked_secret(live: Live) -> None:
    deploy(live, DEMO)
    created = execute(
        live,
        "api.test",
        "demo",
        inputs={"name": "Ada", "colour": "blue", "token": "s3cr3t"},
        labels={"run": "one"},
    )
    assert created["state"] == "CREATED"
    done = live.wait_state(created["id"])
    assert done["state"] == "SUCCESS", done
    assert done["labels"] == {"team": "api", "run": "one"}
    assert done["inputs"]["token"] == "******"
    assert "s3cr3t" not in json.dumps(done)
    assert {r["taskId"] for r in done["taskRuns"]} >= {"hello", "branch", "blue", "write"}
    logs = live.client.get(f"/api/v1/executions/{created['id']}/logs").json()
    assert any(line["message"] == "Hello, Ada!" for line in logs)
    warn = live.client.get(
        f"/api/v1/executions/{created['id']}/logs", params={"minLevel": "WARN"}
    ).json()
    assert [line["message"] for line in warn] == ["it is blue"]
    page = live.client.get(f"/ui/executions/{created['id']}")
    assert page.status_code == 200 and "s3cr3t" not in page.text and "******" in page.text


def test_execution_bad_input(live: Live) -> None:
    deploy(live, DEMO)
    demo = {"namespace": "api.test", "flowId": "demo"}
    bad = live.client.post("/api/v1/executions", json={**demo, "inputs": {"colour": "green"}})
    assert bad.status_code == 422 and "colour" in bad.json()["detail"]
    unknown = live.client.post("/api/v1/executions", json={**demo, "inputs": {"nope": 1}})
    assert unknown.status_code == 422
    missing = live.client.post("/api/v1/executions", json={**demo, "flowId": "absent"})
    assert missing.status_code == 404
    extra = live.client.post("/api/v1/executions", json={**demo, "input": {}})
    assert extra.status_code == 422
    naive = live.client.post(
        "/api/v1/executions", json={**demo, "triggerDate": "2019-01-01T00:00:00"}
    )
    assert naive.status_code == 422
    assert live.client.get("/api/v1/executions/nope").status_code == 404


def test_list_filters_and_keyset_paging(live: Live) -> None:
    deploy(live, DEMO.replace("id: demo", "id: paged"))
    ids = [
        execute(live, "api.test", "paged", labels={"batch": "p", "n": str(i)})["id"]
        for i in range(5)
    ]
    for execution_id in ids:
        live.wait_state(execution_id)
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"flowId": "paged", "namespace": "api.test", "limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = live.client.get("/api/v1/executions", params=params).json()
        seen += [r["id"] for r in page["results"]]
        pages += 1
        cursor = page["nextCursor"]
        if not cursor:
            break
    assert seen == list(reversed(ids)) and pages == 3

    by_label = live.client.get(
        "/api/v1/executions", params=[("label", "batch:p"), ("label", "n:3")]
    ).json()
    assert [r["id"] for r in by_label["results"]] == [ids[3]]
    by_state = live.client.get(
        "/api/v1/executions", params={"flowId": "paged", "state": "FAILED"}
    ).json()
    assert by_state["results"] == []
    ok = live.client.get("/api/v1/executions", params={"flowId": "paged", "state": "SUCCESS"})
    assert len(ok.json()["results"]) == 5
    future = live.client.get(
        "/api/v1/executions", params={"flowId": "paged", "startDate": "2999-01-01T00:00:00Z"}
    ).json()
    assert future["results"] == []
    past = live.client.get(
        "/api/v1/executions", params={"flowId": "paged", "endDate": "2000-01-01T00:00:00Z"}
    ).json()
    assert past["results"] == []

    assert live.client.get("/api/v1/executions", params={"cursor": "!!"}).status_code == 422
    assert live.client.get("/api/v1/executions", params={"label": "nocolon"}).status_code == 422
    naive = live.client.get("/api/v1/executions", params={"startDate": "2020-01-01T00:00:00"})
    assert naive.status_code == 422
    assert live.client.get("/api/v1/executions", params={"limit": 0}).status_code == 422

    rows = live.client.get("/ui/executions", params={"label": "batch:p", "part": "rows"}).text
    assert all(execution_id in rows for execution_id in ids)


def test_sse_follows_new_lines_then_ends(live: Live) -> None:
    deploy(live, SLOW)
    created = execute(live, "api.test", "slow", inputs={"pause": 0.5})
    arrivals: dict[str, float] = {}
    end_state = None
    with live.client.stream(
        "GET",
        f"/api/v1/executions/{created['id']}/logs",
        headers={"Accept": "text/event-stream"},
        timeout=60,
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        event = None
        for line in response.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event == "log":
                arrivals[json.loads(line[6:])["message"]] = time.monotonic()
            elif line.startswith("data: ") and event == "end":
                end_state = json.loads(line[6:])["state"]
                break
    assert end_state == "SUCCESS"
    for i in range(1, 5):
        assert f"line {i}" in arrivals
    # the stream delivered lines while the execution ran, not all at the end
    assert arrivals["line 4"] - arrivals["line 1"] > 1.0

    # Last-Event-ID resumes after the lines already seen
    all_lines = live.client.get(f"/api/v1/executions/{created['id']}/logs").json()
    with live.client.stream(
        "GET",
        f"/api/v1/executions/{created['id']}/logs/follow",
        headers={"Last-Event-ID": str(all_lines[-2]["id"])},
    ) as response:
        body = "".join(response.iter_text())
    assert body.count("event: log") == 1 and "event: end" in body


def test_kill_and_restart(live: Live, tmp_path: Path) -> None:
    deploy(live, SLOW)
    running = execute(live, "api.test", "slow", inputs={"pause": 20})
    live.wait_state(running["id"], ("RUNNING",), timeout=30)
    wait_for(
        lambda: live.client.get(f"/api/v1/executions/{running['id']}/logs").json(), 15, "a log"
    )
    kill = live.client.post(f"/api/v1/executions/{running['id']}/kill")
    assert kill.status_code == 202, kill.text
    killed = live.wait_state(running["id"], timeout=30)
    assert killed["state"] == "KILLED"
    assert live.client.post(f"/api/v1/executions/{running['id']}/kill").status_code == 409
    assert live.client.post("/api/v1/executions/nope/kill").status_code == 404

    marker = tmp_path / "second-time"
    flaky = f"""id: flaky
namespace: api.test
tasks:
  - id: first
    type: io.kestra.plugin.core.log.Log
    message: before
  - id: maybe
    type: io.kestra.plugin.scripts.shell.Commands
    taskRunner:
      type: io.kestra.plugin.core.runner.Process
    commands:
      - test -f {marker} || (touch {marker}; echo failing on purpose; exit 3)
"""
    deploy(live, flaky)
    failed = live.wait_state(execute(live, "api.test", "flaky")["id"])
    assert failed["state"] == "FAILED"
    restarted = live.client.post(f"/api/v1/executions/{failed['id']}/restart")
    assert restarted.status_code == 200, restarted.text
    done = live.wait_state(failed["id"], ("SUCCESS", "FAILED"))
    assert done["state"] == "SUCCESS"
    conflict = live.client.post(f"/api/v1/executions/{failed['id']}/restart")
    assert conflict.status_code == 409 and "SUCCESS" in conflict.json()["detail"]
    assert live.client.post("/api/v1/executions/nope/restart").status_code == 404


def test_files_download_only_own_files(live: Live) -> None:
    deploy(live, DEMO)
    first = live.wait_state(execute(live, "api.test", "demo", inputs={"name": "one"})["id"])
    second = live.wait_state(execute(live, "api.test", "demo", inputs={"name": "two"})["id"])
    files = live.client.get(f"/api/v1/executions/{first['id']}/files").json()
    report = next(f for f in files if f["name"] == "report.txt")
    got = live.client.get(f"/api/v1/executions/{first['id']}/file", params={"uri": report["uri"]})
    assert got.status_code == 200 and got.text == "report for one\n"

    other = live.client.get(f"/api/v1/executions/{second['id']}/files").json()[0]["uri"]
    crossed = live.client.get(f"/api/v1/executions/{first['id']}/file", params={"uri": other})
    assert crossed.status_code == 404
    prefix = report["uri"].rsplit("/", 1)[0]
    for uri in (
        f"{prefix}/../../../../../../../../etc/passwd",
        "kestra:///../../etc/passwd",
        "file:///etc/passwd",
        "/etc/passwd",
    ):
        response = live.client.get(f"/api/v1/executions/{first['id']}/file", params={"uri": uri})
        assert response.status_code == 404, uri
        assert "root:" not in response.text


# -- triggers ---------------------------------------------------------------------------------
def test_triggers_list_enable_disable(live: Live) -> None:
    deploy(live, DEMO)

    def listed() -> Any:
        rows = live.client.get("/api/v1/triggers", params={"flowId": "demo"}).json()
        return rows[0] if rows else None

    trigger = wait_for(listed, 15, "the scheduler to sync the trigger")
    assert trigger["triggerId"] == "daily" and trigger["enabled"] is True
    assert trigger["nextDate"].endswith("06:00:00+00:00")
    assert "lastDate" in trigger
    off = live.client.post("/api/v1/triggers/api.test/demo/daily/disable").json()
    assert off["enabled"] is False and off["nextDate"] is None
    on = live.client.post("/api/v1/triggers/api.test/demo/daily/enable").json()
    assert on["enabled"] is True and on["nextDate"]
    assert live.client.post("/api/v1/triggers/api.test/demo/nope/enable").status_code == 404
    page = live.client.get("/ui/triggers")
    assert page.status_code == 200 and "daily" in page.text


# -- backfills --------------------------------------------------------------------------------
def test_backfill_plan_create_progress(live: Live) -> None:
    deploy(live, DEMO)
    body = {
        "namespace": "api.test",
        "flowId": "demo",
        "start": "2024-01-01",
        "end": "2024-01-05",
        "labels": {"wave": "one"},
        "inputs": {"name": "backfilled"},
        "parallelism": 2,
    }
    plan = live.client.post("/api/v1/backfills/plan", json=body).json()
    assert plan["ticks"] == [f"2024-01-0{d}T06:00:00+00:00" for d in range(1, 6)]
    assert plan["labels"]["backfill"] == "true" and plan["triggerId"] == "daily"
    none_yet = live.client.get("/api/v1/executions", params={"label": "wave:one"}).json()
    assert none_yet["results"] == []

    created = live.client.post("/api/v1/backfills", json=body)
    assert created.status_code == 201, created.text
    backfill_id = created.json()["id"]

    def finished() -> Any:
        data = live.client.get(f"/api/v1/backfills/{backfill_id}").json()
        return data if data["progress"]["done"] == 5 else None

    data = wait_for(finished, 60, "the backfill")
    assert data["state"] == "SUCCESS"
    assert [e["tick"][:10] for e in data["executions"]] == [f"2024-01-0{d}" for d in range(1, 6)]
    assert {e["state"] for e in data["executions"]} == {"SUCCESS"}
    runs = live.client.get(
        "/api/v1/executions", params=[("label", "wave:one"), ("label", "backfill:true")]
    ).json()["results"]
    assert len(runs) == 5 and {r["inputs"]["name"] for r in runs} == {"backfilled"}
    assert backfill_id in {b["id"] for b in live.client.get("/api/v1/backfills").json()}
    ended = live.client.post(f"/api/v1/backfills/{backfill_id}/pause")
    assert ended.status_code == 409
    page = live.client.get(f"/ui/backfills/{backfill_id}")
    assert page.status_code == 200 and "5 of 5" in page.text

    only_missing = live.client.post("/api/v1/backfills/plan", json={**body, "onlyMissing": True})
    assert only_missing.json()["ticks"] == [] and len(only_missing.json()["skipped"]) == 5
    nothing = live.client.post("/api/v1/backfills", json={**body, "onlyMissing": True})
    assert nothing.status_code == 422 and "0 ticks" in nothing.json()["detail"]


def test_backfill_pause_resume_cancel(live: Live) -> None:
    deploy(live, SLOW)
    body = {
        "namespace": "api.test",
        "flowId": "slow",
        "start": "2024-02-01T00:00:00Z",
        "end": "2024-02-01T05:00:00Z",
        "inputs": {"pause": 0.3},
    }
    backfill_id = live.client.post("/api/v1/backfills", json=body).json()["id"]
    paused = live.client.post(f"/api/v1/backfills/{backfill_id}/pause").json()
    assert paused["state"] == "PAUSED"
    assert live.client.post(f"/api/v1/backfills/{backfill_id}/pause").status_code == 200
    resumed = live.client.post(f"/api/v1/backfills/{backfill_id}/resume").json()
    assert resumed["state"] == "RUNNING"
    cancelled = live.client.post(f"/api/v1/backfills/{backfill_id}/cancel").json()
    assert cancelled["state"] == "CANCELLED"
    assert cancelled["progress"]["cancelled"] >= 1
    assert live.client.post(f"/api/v1/backfills/{backfill_id}/resume").status_code == 409
    assert live.client.get("/api/v1/backfills/nope").status_code == 404
    assert live.client.post("/api/v1/backfills/nope/cancel").status_code == 404


def test_backfill_bad_input(live: Live) -> None:
    deploy(live, DEMO)
    base = {"namespace": "api.test", "flowId": "demo", "start": "2024-01-05", "end": "2024-01-01"}
    after = live.client.post("/api/v1/backfills/plan", json=base)
    assert after.status_code == 422
    for change, status in (
        ({"start": "2024-01-01", "end": "2024-01-02", "triggerId": "nope"}, 422),
        ({"start": "yesterday", "end": "2024-01-02"}, 422),
        ({"start": "2024-01-01", "end": "2024-01-02", "parallelism": 0}, 422),
        ({"start": "2024-01-01", "end": "2024-01-02", "flowId": "absent"}, 404),
    ):
        response = live.client.post("/api/v1/backfills", json={**base, **change})
        assert response.status_code == status, (change, response.text)
    deploy(
        live,
        "id: plain\nnamespace: api.test\ntasks:\n  - id: a\n    type: io.kestra.plugin.core.log.Log\n    message: hi\n",
    )
    no_trigger = live.client.post(
        "/api/v1/backfills/plan",
        json={**base, "flowId": "plain", "start": "2024-01-01", "end": "2024-01-02"},
    )
    assert no_trigger.status_code == 422 and "no Schedule trigger" in no_trigger.json()["detail"]


# -- data -------------------------------------------------------------------------------------
def test_taxi_verify_and_stats(live: Live) -> None:
    report = live.client.get(
        "/api/v1/taxi/verify", params={"taxi": "green", "start": "2019-01", "end": "2019-03"}
    )
    assert report.status_code == 200
    data = report.json()
    assert [m["month"] for m in data["months"]] == ["2019-01", "2019-02", "2019-03"]
    assert data["missing"] == ["2019-01", "2019-02", "2019-03"] and data["ok"] is False
    for params in (
        {"taxi": "purple", "start": "2019-01", "end": "2019-02"},
        {"taxi": "green", "start": "2019-13", "end": "2019-02"},
        {"taxi": "green", "start": "2019-05", "end": "2019-02"},
        {"taxi": "green", "start": "2019-01", "end": "2019-02", "flow": "nope/absent"},
    ):
        assert live.client.get("/api/v1/taxi/verify", params=params).status_code in (404, 422)
    stats = live.client.get("/api/v1/stats/executions", params={"days": 3}).json()
    assert len(stats["days"]) == 3
    page = live.client.get(
        "/ui/data", params={"taxi": "green", "start": "2019-01", "end": "2019-03"}
    )
    assert page.status_code == 200 and "0 of 3" in page.text


def test_pages_render(live: Live) -> None:
    deploy(live, DEMO)
    execution = live.wait_state(execute(live, "api.test", "demo")["id"])
    for path in (
        "/",
        "/ui/flows",
        "/ui/flows/new",
        "/ui/flows/api.test/demo",
        "/ui/executions",
        "/ui/executions?state=SUCCESS&flow=api.test/demo&label=team:api&start=2000-01-01&end=2999-01-01",
        f"/ui/executions/{execution['id']}",
        f"/ui/executions/{execution['id']}?part=live",
        "/ui/backfills",
        "/ui/triggers",
        "/ui/data",
    ):
        response = live.client.get(path)
        assert response.status_code == 200, path
        assert "Traceback" not in response.text
    flow_page = live.client.get("/ui/flows/api.test/demo").text
    assert '<svg class="topology"' in flow_page and ">then<" in flow_page and ">else<" in flow_page
    assert '<select name="input.colour">' in flow_page
    assert 'type="checkbox" name="input.loud"' in flow_page
    assert live.client.get("/ui/flows/api.test/absent").status_code == 404
    assert live.client.get("/ui/executions/absent").status_code == 404
    assert live.client.get("/ui/backfills/absent").status_code == 404


# -- access -----------------------------------------------------------------------------------
def test_csrf_form_post_needs_the_token(live: Live) -> None:
    deploy(live, DEMO)
    # what a browser sends with a same-site form post
    browser_headers = {"Origin": live.url, "Sec-Fetch-Site": "same-origin"}
    with httpx.Client(base_url=live.url, timeout=30, headers=browser_headers) as browser:
        browser.get("/ui/flows/api.test/demo")
        token = browser.cookies.get("flowhawk_csrf")
        assert token
        no_token = browser.post("/ui/flows/api.test/demo/execute", data={"input.name": "x"})
        assert no_token.status_code == 403 and "CSRF" in no_token.json()["detail"]
        wrong = browser.post(
            "/ui/flows/api.test/demo/execute", data={"input.name": "x", "csrf_token": "forged"}
        )
        assert wrong.status_code == 403
        ok = browser.post(
            "/ui/flows/api.test/demo/execute",
            data={"input.name": "form", "labels": "via:form", "csrf_token": token},
            follow_redirects=False,
        )
        assert ok.status_code == 303 and ok.headers["location"].startswith("/ui/executions/")
        execution_id = ok.headers["location"].rsplit("/", 1)[1]
        assert live.wait_state(execution_id)["labels"]["via"] == "form"
        header = browser.post(
            f"/api/v1/executions/{execution_id}/kill",
            headers={"X-CSRF-Token": token},
        )
        assert header.status_code == 409  # past the CSRF check: it already ended
    # a cross-site form (Origin set, no cookie, form body) is refused
    forged = httpx.post(
        f"{live.url}/ui/flows/api.test/demo/execute",
        data={"input.name": "evil"},
        headers={"Origin": "http://evil.example"},
    )
    assert forged.status_code == 403
    # scripts without a browser's headers need no token
    assert httpx.post(f"{live.url}/api/v1/executions/nope/kill").status_code == 404


def test_basic_auth_when_configured(live: Live) -> None:
    settings = Settings(
        database_url=live.db_url,
        storage_path=live.tmp / "storage",
        server_username="admin",
        server_password="pa:ss",
    )
    engine = Engine(settings)
    server = ServerThread(engine).start()
    try:
        for path in ("/", "/api/v1/flows", "/static/app.css", "/openapi.json"):
            response = httpx.get(server.url + path)
            assert response.status_code == 401, path
            assert response.headers["www-authenticate"].startswith("Basic")
        assert httpx.get(server.url + "/", auth=("admin", "wrong")).status_code == 401
        assert httpx.get(server.url + "/", auth=("other", "pa:ss")).status_code == 401
        garbage = httpx.get(server.url + "/", headers={"Authorization": "Basic !!!"})
        assert garbage.status_code == 401
        assert httpx.get(server.url + "/", auth=("admin", "pa:ss")).status_code == 200
        flows = httpx.get(server.url + "/api/v1/flows", auth=("admin", "pa:ss"))
        assert flows.status_code == 200
        token = base64.b64encode(b"admin:pa:ss").decode()
        kill = httpx.post(
            server.url + "/api/v1/executions/nope/kill", headers={"Authorization": f"Basic {token}"}
        )
        assert kill.status_code == 404
    finally:
        server.stop()
        engine.close()


# -- the CLI ----------------------------------------------------------------------------------
def _cli_env(live: Live) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("FLOWHAWK_USERNAME", None)
    env.pop("FLOWHAWK_PASSWORD", None)
    env.update(FLOWHAWK_DATABASE_URL=live.db_url, FLOWHAWK_STORAGE=str(live.tmp / "storage"))
    return env


def test_cli_refuses_public_address_without_credentials(live: Live, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "flowhawk", "server", "--host", "0.0.0.0", "--port", "0"],
        env=_cli_env(live),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "refusing to listen on 0.0.0.0 without credentials" in result.stderr


def test_cli_server_serves_and_stops_on_sigterm(live: Live, tmp_path: Path) -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "flowhawk", "server", "--port", str(port), "--threads", "1"],
        env=_cli_env(live),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:

        def up() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(up, 60, "flowhawk server to answer")
        flows = httpx.get(f"http://127.0.0.1:{port}/api/v1/flows").json()
        assert "demo" in {f["id"] for f in flows}
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
