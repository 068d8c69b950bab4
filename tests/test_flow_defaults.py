"""pluginDefaults: prefix match, flow over global, forced, deep merge, flowhawk's own types."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest

from flowhawk.flow.defaults import apply_plugin_defaults, deep_merge, entry_matches
from flowhawk.flow.loader import load_flow, validate_source
from flowhawk.tasks import registry
from flowhawk.tasks.base import Task


class OwnLoad(Task):
    """A flowhawk task standing in for PostgreSQL tasks (registered only in these tests)."""

    types: ClassVar[tuple[str, ...]] = ("flowhawk.taxi.TestLoad",)

    url: str
    username: str | None = None
    table: str = "t"


@pytest.fixture
def own_task_registered(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(registry, "TASK_MODULES", (*registry.TASK_MODULES, __name__))
    registry.reset_registry()
    yield
    monkeypatch.undo()
    registry.reset_registry()


def flow_source(tasks: str, defaults: str = "") -> str:
    text = "id: d\nnamespace: demo\ntasks:\n" + textwrap.indent(textwrap.dedent(tasks), "  ")
    if defaults:
        text += "pluginDefaults:\n" + textwrap.indent(textwrap.dedent(defaults), "  ")
    return text


LOG = """\
- id: plain
  type: io.kestra.plugin.core.log.Log
- id: own
  type: io.kestra.core.tasks.log.Log
  message: mine
  level: DEBUG
"""


def test_prefix_entry_fills_missing_properties_only() -> None:
    flow = load_flow(
        flow_source(
            LOG,
            """\
            - type: io.kestra.plugin.core.log
              values: {message: from defaults, level: WARN, colour: ignored-not-a-property}
            """,
        )
    )
    plain, own = flow.tasks
    assert (plain.message, plain.level) == ("from defaults", "WARN")
    # an alias type also receives defaults given for the canonical name's prefix
    assert (own.message, own.level) == ("mine", "DEBUG")


def test_defaults_satisfy_required_properties_and_nothing_reports_missing() -> None:
    assert validate_source(flow_source(LOG)) != []
    source = flow_source(LOG, "- type: io.kestra.plugin.core.log.Log\n  values: {message: hi}\n")
    assert validate_source(source) == []


def test_non_matching_prefix_does_not_apply() -> None:
    source = flow_source(LOG, "- type: io.kestra.plugin.core.debug\n  values: {message: hi}\n")
    assert [p.path for p in validate_source(source)] == ["tasks[0].message"]


def test_flow_level_wins_over_global_and_global_fills_the_rest() -> None:
    global_defaults = [
        {"type": "io.kestra.plugin.core.log", "values": {"message": "global", "level": "ERROR"}}
    ]
    flow = load_flow(
        flow_source(LOG, "- type: io.kestra.plugin.core.log.Log\n  values: {message: flow}\n"),
        global_defaults=global_defaults,
    )
    assert (flow.tasks[0].message, flow.tasks[0].level) == ("flow", "ERROR")
    assert (flow.tasks[1].message, flow.tasks[1].level) == ("mine", "DEBUG")


def test_forced_global_overrides_task_and_flow() -> None:
    global_defaults = [
        {"type": "io.kestra.plugin.core.log.Log", "values": {"level": "TRACE"}, "forced": True}
    ]
    flow = load_flow(
        flow_source(
            LOG,
            """\
            - type: io.kestra.plugin.core.log
              values: {message: flow, level: INFO}
              forced: true
            """,
        ),
        global_defaults=global_defaults,
    )
    assert [(t.message, t.level) for t in flow.tasks] == [("flow", "TRACE"), ("flow", "TRACE")]


def test_forced_flow_entry_overrides_the_task() -> None:
    flow = load_flow(
        flow_source(
            LOG, "- type: io.kestra.plugin.core.log\n  forced: true\n  values: {level: ERROR}\n"
        ),
        global_defaults=[{"type": "io.kestra", "values": {"level": "WARN", "message": "g"}}],
    )
    assert [(t.message, t.level) for t in flow.tasks] == [("g", "ERROR"), ("mine", "ERROR")]


def test_defaults_reach_nested_tasks_and_bad_default_values_are_reported() -> None:
    source = flow_source(
        """\
        - id: seq
          type: io.kestra.plugin.core.flow.Sequential
          tasks:
            - id: inner
              type: io.kestra.plugin.core.log.Log
        """,
        "- type: io.kestra.plugin.core.log.Log\n  values: {message: hi, level: LOUD}\n",
    )
    found = [str(p) for p in validate_source(source, "f.yaml")]
    assert found == [
        "f.yaml:7: tasks[0].tasks[0].level: must be 'TRACE', 'DEBUG', 'INFO', 'WARN' or 'ERROR',"
        " got 'LOUD' (value from pluginDefaults)"
    ]


def test_defaults_apply_to_triggers() -> None:
    source = flow_source(
        "- id: a\n  type: io.kestra.plugin.core.log.Log\n  message: x\n",
        "- type: io.kestra.plugin.core.trigger\n  values: {timezone: Europe/Paris, recoverMissedSchedules: NONE}\n",
    )
    source += "triggers:\n  - id: t\n    type: io.kestra.plugin.core.trigger.Schedule\n    cron: '@daily'\n"
    trigger = load_flow(source).triggers[0]
    assert (trigger.timezone, trigger.recoverMissedSchedules) == ("Europe/Paris", "NONE")


def test_malformed_entries_are_reported_by_the_flow() -> None:
    source = flow_source(LOG, "- values: {message: x}\n- type: io.kestra\n  values: 3\n")
    found = [str(p) for p in validate_source(source, "f.yaml")]
    assert "f.yaml:11: pluginDefaults[0].type: field required" in found
    assert any(
        p.startswith("f.yaml:13: pluginDefaults[1].values: should be a valid dictionary")
        for p in found
    )


def test_own_types_receive_defaults_given_for_the_kestra_prefix(own_task_registered: None) -> None:
    source = flow_source(
        "- id: load\n  type: flowhawk.taxi.TestLoad\n",
        """\
        - type: io.kestra.plugin.jdbc.postgresql
          values: {url: "jdbc:postgresql://localhost:5432/ny_taxi", username: root, fetchType: STORE}
        """,
    )
    task = load_flow(source).tasks[0]
    assert isinstance(task, OwnLoad)
    assert (task.url, task.username) == ("jdbc:postgresql://localhost:5432/ny_taxi", "root")
    # an entry for one specific Kestra type does not reach it
    source = flow_source(
        "- id: load\n  type: flowhawk.taxi.TestLoad\n",
        "- type: io.kestra.plugin.jdbc.postgresql.Queries\n  values: {url: x}\n",
    )
    assert [p.path for p in validate_source(source)] == ["tasks[0].url"]


def test_entry_matches_and_merge_rules() -> None:
    assert entry_matches("io.kestra.plugin.jdbc", ["io.kestra.plugin.jdbc.postgresql.Query"])
    assert entry_matches("io.kestra.plugin.jdbc.postgresql", ["flowhawk.taxi.Load"])
    assert not entry_matches("io.kestra.plugin.scripts", ["flowhawk.taxi.Load"])
    merged = deep_merge(
        {"env": {"A": "1", "B": "2"}, "list": [1]}, {"env": {"B": "3"}, "list": [2]}
    )
    assert merged == {"env": {"A": "1", "B": "3"}, "list": [2]}
    task: dict[str, Any] = {"id": "x", "type": "a.b.C", "env": {"A": "task"}}
    result = apply_plugin_defaults(
        task,
        ["a.b.C"],
        None,
        flow_defaults=[
            {"type": "a", "values": {"env": {"A": "flow", "B": "flow"}, "id": "never"}},
            {"type": "a.b", "values": {"env": {"B": "specific"}}},
        ],
        global_defaults=[{"type": "a.b.C", "values": {"env": {"C": "global"}}}],
    )
    assert result == {
        "id": "x",
        "type": "a.b.C",
        "env": {"A": "task", "B": "specific", "C": "global"},
    }
    assert task == {"id": "x", "type": "a.b.C", "env": {"A": "task"}}  # input untouched
