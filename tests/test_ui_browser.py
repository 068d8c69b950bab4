"""The course, done in a browser: headless Debian chromium driven by Playwright.

Deploy the scheduled taxi flow through the editor, execute it for one month against a local
HTTP server, backfill 2019 with ``backfill: true``, filter the executions by that label and
see the twelve months on the data page. Each page is saved to ``artifacts/screenshots/``.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conftest import _with_db, create_database, drop_database
from flowhawk.config import Settings
from flowhawk.engine.scheduler import Scheduler
from flowhawk.engine.service import Engine
from flowhawk.engine.worker import WorkerPool
from flowhawk.server.app import ServerThread
from taxi_helpers import make_months, serve_taxi_files

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "artifacts" / "screenshots"
FLOW = ROOT / "flows" / "postgres_taxi_scheduled.yaml"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (/usr/bin/chromium)"),
]
sync_api = pytest.importorskip("playwright.sync_api")

ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@dataclass
class App:
    url: str
    engine: Engine


@pytest.fixture(scope="module")
def app(pg_server_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    name = create_database(pg_server_url, "fh_ui")
    tmp = tmp_path_factory.mktemp("ui")
    engine = Engine(Settings(database_url=_with_db(pg_server_url, name), storage_path=tmp / "st"))
    pool = WorkerPool(engine, 4).start()
    stop = threading.Event()
    scheduler = threading.Thread(
        target=Scheduler(engine, interval=0.5).run, args=(stop,), daemon=True
    )
    scheduler.start()
    server = ServerThread(engine).start()
    try:
        yield App(server.url, engine)
    finally:
        server.stop()
        stop.set()
        pool.stop(timeout=10)
        engine.close()
        drop_database(pg_server_url, name)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda exc: errors.append(str(exc)))
    yield opened
    context.close()
    assert not errors, f"JavaScript errors: {errors}"


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_editor_validates_as_you_type(app: App, page: Any) -> None:
    page.goto(f"{app.url}/ui/flows/new")
    page.wait_for_selector("#validity.good")
    broken = (
        "id: broken\n"
        "namespace: ui.test\n"
        "tasks:\n"
        "  - id: hello\n"
        "    type: io.kestra.plugin.core.log.Log\n"
        "    mesage: hi\n"
    )
    page.fill("#source", broken)
    problem = page.wait_for_selector('#problems li[data-line="6"]')
    assert "mesage" in problem.inner_text()
    assert "6" in page.locator(".gutter .err").all_inner_texts()
    assert "problem" in page.inner_text("#validity")
    shot(page, "editor-errors")
    page.click("#save")
    page.wait_for_selector("#validity:has-text('not saved')")
    assert app.engine.repo.get_flow("ui.test", "broken") is None


def test_the_course_in_a_browser(app: App, page: Any, httpserver: Any, tmp_path: Path) -> None:
    months = make_months(tmp_path, "green", [(2019, m) for m in range(1, 13)], rows=300)
    base_url = serve_taxi_files(httpserver, months)

    # 1. deploy the scheduled taxi flow through the editor
    page.goto(f"{app.url}/ui/flows/new")
    page.fill("#source", FLOW.read_text())
    page.wait_for_selector("#validity.good")
    shot(page, "flow-new-editor")
    page.click("#save")
    page.wait_for_url(re.compile(r".*/ui/flows/zoomcamp/postgres_taxi_scheduled(#.*)?$"))
    page.wait_for_selector("svg.topology")
    assert page.locator("svg.topology text.branch").all_text_contents() == ["then", "else"]
    page.wait_for_selector("#triggers .next-tick:has-text('09:00:00')", timeout=20_000)
    shot(page, "flow-overview")

    # 2. execute it for January 2019 against the local HTTP server
    page.click("a[data-tab=execute]")
    assert page.locator("#execute-form select[name='input.taxi'] option").all_inner_texts() == [
        "yellow",
        "green",
    ]
    page.select_option("#execute-form select[name='input.taxi']", "green")
    page.fill("#execute-form input[name='input.base_url']", base_url)
    page.select_option("#execute-form select[name=trigger]", "green_schedule")
    page.fill("#execute-form input[name=trigger_date]", "2019-01-01T09:00:00Z")
    shot(page, "flow-execute")
    page.click("#execute-form button[type=submit]")
    page.wait_for_url(re.compile(r".*/ui/executions/\w+$"))
    page.wait_for_selector(".summary .badge[data-state=SUCCESS]", timeout=90_000)
    page.wait_for_selector("#logs .line:has-text('ended SUCCESS')", timeout=15_000)
    assert page.locator("svg.gantt .bar").count() >= 8
    assert "file:green_tripdata_2019-01.csv" in page.inner_text(".labels-line")
    shot(page, "execution")
    page.select_option("#log-level", "WARN")
    page.wait_for_function("document.querySelectorAll('#logs .line').length === 0")

    # 3. backfill 2019 with the label backfill: true, after looking at the planned ticks
    page.goto(f"{app.url}/ui/flows/zoomcamp/postgres_taxi_scheduled#backfill")
    page.select_option("#backfill-form select[name=trigger]", "green_schedule")
    page.fill("#backfill-form input[name=start]", "2019-01-01")
    page.fill("#backfill-form input[name=end]", "2019-12-31")
    page.fill("#backfill-form input[name=labels]", "backfill:true")
    page.fill("#backfill-form input[name=parallelism]", "2")
    page.click("#backfill-form summary")
    page.fill("#backfill-form input[name='input.base_url']", base_url)
    assert page.is_disabled("#backfill-submit")
    page.click("#plan-button")
    page.wait_for_selector("#plan ol.ticks li >> nth=11")
    ticks = page.locator("#plan ol.ticks li").all_inner_texts()
    assert ticks[0] == "2019-01-01T09:00:00+00:00" and ticks[-1] == "2019-12-01T09:00:00+00:00"
    assert "12 ticks" in page.inner_text(".plan-summary")
    shot(page, "backfill-plan")
    page.click("#backfill-submit")
    page.wait_for_url(re.compile(r".*/ui/backfills/\w+$"))
    shot(page, "backfill-running")
    page.wait_for_selector("#progress-text:has-text('12 of 12')", timeout=150_000)
    assert page.locator("table.calendar .cell[data-state=SUCCESS]").count() == 12
    shot(page, "backfill-done")

    # 4. the executions of the backfill, by their label
    page.goto(f"{app.url}/ui/executions")
    page.fill("#filters input[name=label]", "backfill:true")
    page.click("#filters button[type=submit]")
    page.wait_for_url(re.compile(r".*label=backfill%3Atrue.*"))
    rows = page.locator("#executions tbody tr[data-id]")
    assert rows.count() == 12
    assert set(page.locator("#executions tbody tr[data-id] .badge").all_inner_texts()) == {
        "SUCCESS"
    }
    shot(page, "executions-backfill")

    # 5. the data page: twelve loaded months
    page.goto(f"{app.url}/ui/data?taxi=green&start=2019-01&end=2019-12")
    assert page.inner_text("#loaded-count") == "12 of 12"
    assert page.locator("svg.bars .month.loaded").count() == 12
    assert page.locator("svg.bars .month.missing").count() == 0
    shot(page, "data")
    page.goto(f"{app.url}/ui/data?taxi=green&start=2018-11&end=2019-02")
    assert page.inner_text("#loaded-count") == "2 of 4"
    assert page.locator("svg.bars .month.missing").count() == 2
    shot(page, "data-missing")

    # the other pages, for the record
    for path, name in (
        ("/", "dashboard"),
        ("/ui/flows", "flows"),
        ("/ui/triggers", "triggers"),
        ("/ui/backfills", "backfills"),
        ("/ui/flows/zoomcamp/postgres_taxi_scheduled#editor", "flow-editor"),
    ):
        page.goto(app.url + path)
        page.wait_for_load_state("networkidle")
        shot(page, name)
