"""Two ``flowhawk scheduler`` processes on one database, one killed with SIGKILL midway:
every tick of an every-second trigger is fired exactly once (read back from PostgreSQL)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from flowhawk.config import Settings
from flowhawk.engine.service import Engine

FLOW = """\
id: every_second
namespace: sched.proc
tasks:
  - id: t
    type: io.kestra.plugin.core.log.Log
    message: "{{ trigger.date }}"
triggers:
  - id: tick
    type: io.kestra.plugin.core.trigger.Schedule
    withSeconds: true
    cron: "* * * * * *"
"""


def _start(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "flowhawk", "scheduler", "--interval", "0.2"],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


def _ticks(engine: Engine) -> list[datetime]:
    with engine.repo.conn() as conn:
        rows = conn.execute(
            "SELECT trigger_date FROM executions WHERE namespace = 'sched.proc' AND scheduled"
        ).fetchall()
    return [r[0] for r in rows]


def test_two_schedulers_one_killed_every_tick_exactly_once(
    fresh_pg_url: str, tmp_path: Path
) -> None:
    env = {**os.environ, "FLOWHAWK_DATABASE_URL": fresh_pg_url, "FLOWHAWK_HOME": str(tmp_path)}
    engine = Engine(Settings(database_url=fresh_pg_url, storage_path=tmp_path / "storage"))
    engine.deploy_source(FLOW)
    first = _start(env, tmp_path / "a.log")
    second = _start(env, tmp_path / "b.log")
    try:
        deadline = time.monotonic() + 30
        while len(_ticks(engine)) < 3:
            assert time.monotonic() < deadline, (tmp_path / "a.log").read_text()
            assert first.poll() is None and second.poll() is None
            time.sleep(0.2)
        time.sleep(3)
        killed_at = datetime.now(UTC)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        time.sleep(4)
    finally:
        for proc in (first, second):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in (first, second):
            proc.wait(15)
    assert second.returncode == 0, (tmp_path / "b.log").read_text()
    ticks = _ticks(engine)
    engine.close()
    counts = Counter(ticks)
    assert max(counts.values()) == 1, [t for t, n in counts.items() if n > 1]
    ordered = sorted(counts)
    print(f"{len(ordered)} ticks from {ordered[0]} to {ordered[-1]}, killed at {killed_at}")
    # every second of the window is there: no tick lost when one scheduler died
    assert ordered == [ordered[0] + timedelta(seconds=i) for i in range(len(ordered))]
    assert ordered[0] < killed_at - timedelta(seconds=2)
    assert ordered[-1] > killed_at + timedelta(seconds=3)
