"""Running the flowhawk command line as a subprocess against a test database."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class Cli:
    """Runs ``python -m flowhawk`` with a test database and home directory."""

    env: dict[str, str]
    cwd: Path
    database_url: str

    def run(
        self, *args: str | Path, env: dict[str, str] | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "flowhawk", *map(str, args)],
            env={**self.env, **(env or {})},
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def popen(self, *args: str | Path, stderr: Any) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "flowhawk", *map(str, args)],
            env=self.env,
            cwd=self.cwd,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )

    def json(self, *args: str | Path) -> Any:
        done = self.run(*args)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def show(self, execution_id: str) -> dict[str, Any]:
        data: dict[str, Any] = self.json("executions", "show", execution_id, "--json")
        return data

    def executions(self, *filters: str) -> list[dict[str, Any]]:
        data: list[dict[str, Any]] = self.json("executions", "list", "--json", *filters)
        return data


def make_cli(database_url: str, home: Path) -> Cli:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWHAWK_")}
    env.update(
        FLOWHAWK_DATABASE_URL=database_url,
        FLOWHAWK_HOME=str(home),
        PYTHONUNBUFFERED="1",
        NO_COLOR="1",
    )
    cwd = home / "cwd"
    cwd.mkdir(parents=True, exist_ok=True)
    return Cli(env, cwd, database_url)


def execution_id_of(done: subprocess.CompletedProcess[str]) -> str:
    """`flowhawk run` ends with `execution ID STATE` on stdout."""
    match = re.search(r"^execution (\S+) [A-Z]+$", done.stdout, re.M)
    assert match, f"no execution id in: {done.stdout}\n{done.stderr}"
    return match.group(1)
