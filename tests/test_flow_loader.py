"""Loading flow files: every problem reported with file, line and key path."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from flowhawk.flow.loader import FlowValidationError, load_flow, load_flow_file, validate_source
from flowhawk.tasks.core import Log
from flowhawk.tasks.flowable import EachParallel, ForEach, If, Subflow

HEAD = """\
id: demo
namespace: demo.nyc
"""


def problems(source: str, **kwargs) -> list[str]:
    """Problems of a flow; an indented body after HEAD is dedented."""
    if source.startswith(HEAD):
        source = HEAD + textwrap.dedent(source[len(HEAD) :])
    else:
        source = textwrap.dedent(source)
    return [str(p) for p in validate_source(source, "flows/x.yaml", **kwargs)]


def test_valid_flow_loads_with_nested_tasks_and_keeps_source() -> None:
    source = textwrap.dedent(
        """\
        id: taxi_monthly
        namespace: demo.nyc
        description: Loads one month.
        labels: {team: data, year: 2020, nightly: true}
        inputs:
          - id: taxi
            type: SELECT
            values: [yellow, green]
            defaults: yellow
          - id: day
            type: DATE
            defaults: 2020-10-01
        variables:
          file: "{{ inputs.taxi }}_tripdata.csv"
        concurrency: {limit: 1}
        tasks:
          - id: branch
            type: io.kestra.plugin.core.flow.If
            condition: "{{ inputs.taxi == 'green' }}"
            then:
              - id: loop
                type: io.kestra.plugin.core.flow.ForEach
                values: '["a", "b"]'
                tasks:
                  - id: say
                    type: io.kestra.core.tasks.log.Log
                    message: "{{ taskrun.value }}"
            else:
              - id: child
                type: io.kestra.plugin.core.flow.Subflow
                namespace: demo
                flowId: other
                labels: [{key: a, value: b}]
        errors:
          - id: on_error
            type: io.kestra.plugin.core.log.Log
            message: failed
            level: ERROR
        finally:
          - id: bye
            type: io.kestra.plugin.core.log.Log
            message: [one, two]
        outputs:
          - id: rows
            type: INT
            value: "{{ outputs.x.rowCount }}"
        triggers:
          - id: monthly
            type: io.kestra.plugin.core.trigger.Schedule
            cron: "0 9 1 * *"
            timezone: Europe/Paris
            backfill: {start: 2020-01-01T00:00:00Z}
        """
    )
    flow = load_flow(source, "flows/taxi.yaml")
    assert flow.source == source
    assert flow.labels == {"team": "data", "year": "2020", "nightly": "true"}
    assert flow.inputs[1].defaults == "2020-10-01"  # timestamps stay text, as in Kestra
    assert flow.concurrency is not None and flow.concurrency.behavior == "QUEUE"
    assert [t.id for t in flow.all_tasks()] == ["branch", "loop", "say", "child", "on_error", "bye"]
    branch = flow.tasks[0]
    assert isinstance(branch, If)
    assert isinstance(branch.then[0], ForEach) and isinstance(branch.else_[0], Subflow)
    assert branch.else_[0].labels == {"a": "b"}
    assert isinstance(flow.find_task("say"), Log)
    assert flow.find_task("nope") is None
    assert flow.triggers[0].timezone == "Europe/Paris"
    assert flow.finally_[0].id == "bye"


def test_invalid_yaml_reports_the_yaml_error_line() -> None:
    found = problems(HEAD + "tasks:\n  - id: a\n    type: [oops\n  - id: b\n")
    assert len(found) == 1
    assert found[0].startswith("flows/x.yaml:6: invalid YAML:")


def test_duplicate_yaml_key_is_a_yaml_problem() -> None:
    found = problems(HEAD + "namespace: again\ntasks: []\n")
    assert len(found) == 1 and found[0].startswith("flows/x.yaml:3: invalid YAML:")
    assert "duplicate key" in found[0]


def test_empty_and_non_mapping_files() -> None:
    assert problems("") == ["flows/x.yaml:1: the flow file is empty"]
    assert problems("- a\n- b\n") == [
        "flows/x.yaml:1: a flow must be a mapping (id, namespace, tasks...)"
    ]


def test_unknown_task_type_unknown_property_missing_property() -> None:
    found = problems(
        HEAD
        + """\
        tasks:
          - id: ok
            type: io.kestra.plugin.core.log.Log
            message: hi
          - id: bad
            type: io.kestra.plugin.nope.Foo
            message: hi
          - id: extra
            type: io.kestra.plugin.core.log.Log
            message: hi
            colour: red
          - id: branch
            type: io.kestra.plugin.core.flow.If
            condition: "true"
            then:
              - id: inner
                type: io.kestra.plugin.core.debug.Return
              - id: sleepy
                type: io.kestra.plugin.core.flow.Sleep
        """
    )
    assert found == [
        "flows/x.yaml:8: tasks[1].type: unknown task type 'io.kestra.plugin.nope.Foo'",
        "flows/x.yaml:13: tasks[2].colour: unknown property",
        "flows/x.yaml:20: tasks[3].then[1].duration: field required",
    ]


def test_typo_in_type_suggests_the_close_name() -> None:
    found = problems(HEAD + "tasks:\n  - id: a\n    type: io.kestra.plugin.core.log.Logg\n")
    assert found == [
        "flows/x.yaml:5: tasks[0].type: unknown task type 'io.kestra.plugin.core.log.Logg'"
        " (did you mean 'io.kestra.plugin.core.log.Log'?)"
    ]


def test_missing_type_and_non_mapping_task() -> None:
    found = problems(HEAD + "tasks:\n  - id: a\n    message: hi\n  - just a string\n")
    assert found == [
        "flows/x.yaml:4: tasks[0].type: field required (every task needs a `type`)",
        "flows/x.yaml:6: tasks[1]: a task must be a mapping with at least `id` and `type`",
    ]


def test_duplicate_task_ids_across_the_whole_flow() -> None:
    found = problems(
        HEAD
        + """\
        tasks:
          - id: a
            type: io.kestra.plugin.core.flow.Sequential
            tasks:
              - id: b
                type: io.kestra.plugin.core.log.Log
                message: x
        errors:
          - id: b
            type: io.kestra.plugin.core.log.Log
            message: y
        """
    )
    assert found == ["flows/x.yaml:11: errors[0].id: duplicate task id 'b' (first used at line 7)"]


def test_wrong_value_types_and_patterns() -> None:
    found = problems(
        HEAD
        + """\
        tasks:
          - id: bad id
            type: io.kestra.plugin.core.log.Log
            message: 42
            level: LOUD
            disabled: maybe
        """
    )
    assert found == [
        "flows/x.yaml:4: tasks[0].id: 'bad id' does not match ^[a-zA-Z0-9][a-zA-Z0-9_-]*$",
        "flows/x.yaml:6: tasks[0].message: should be a valid string or a valid list (got 42)",
        "flows/x.yaml:7: tasks[0].level: must be 'TRACE', 'DEBUG', 'INFO', 'WARN' or 'ERROR', got 'LOUD'",
        "flows/x.yaml:8: tasks[0].disabled: should be a valid boolean, unable to interpret input (got 'maybe')",
    ]


def test_flow_level_problems() -> None:
    found = problems(
        """\
        id: has space
        namespace: demo..x
        colour: blue
        concurrency: {limit: 0, behavior: WAIT}
        tasks: []
        """
    )
    assert found == [
        "flows/x.yaml:1: id: 'has space' does not match ^[a-zA-Z0-9][a-zA-Z0-9_-]*$",
        "flows/x.yaml:2: namespace: 'demo..x' does not match "
        r"^[a-zA-Z0-9][a-zA-Z0-9_-]*(\.[a-zA-Z0-9][a-zA-Z0-9_-]*)*$",
        "flows/x.yaml:3: colour: unknown property",
        "flows/x.yaml:4: concurrency.limit: should be greater than or equal to 1 (got 0)",
        "flows/x.yaml:4: concurrency.behavior: must be 'QUEUE', 'CANCEL' or 'FAIL', got 'WAIT'",
        "flows/x.yaml:5: tasks: List should have at least 1 item after validation, not 0",
    ]


def test_missing_tasks() -> None:
    assert problems(HEAD) == ["flows/x.yaml:1: tasks: field required"]


def test_inputs_problems() -> None:
    found = problems(
        HEAD
        + """\
        inputs:
          - id: taxi
            type: SELECT
            values: [yellow, green]
            defaults: purple
          - id: year
            type: INTEGER
          - id: n
            type: INT
            defaults: ten
          - id: taxi
            type: STRING
            validator: "[a-z"
          - id: s
            type: STRING
            itemType: INT
        tasks:
          - id: a
            type: io.kestra.plugin.core.log.Log
            message: x
        """
    )
    assert found[0] == (
        "flows/x.yaml:7: inputs[0].defaults: invalid SELECT value: 'purple' is not one of"
        " ['yellow', 'green']"
    )
    assert found[1].startswith("flows/x.yaml:9: inputs[1].type: must be 'STRING', 'INT',")
    assert found[1].endswith(", got 'INTEGER'")
    assert found[2] == (
        "flows/x.yaml:12: inputs[2].defaults: invalid INT value: expected an integer, got 'ten'"
    )
    assert found[3] == "flows/x.yaml:13: inputs[3].id: duplicate input id 'taxi'"
    assert found[4].startswith("flows/x.yaml:15: inputs[3].validator: invalid regular expression")
    assert (
        found[5] == "flows/x.yaml:18: inputs[4].itemType: `itemType` only applies to ARRAY inputs"
    )
    assert len(found) == 6


@pytest.mark.parametrize(
    ("cron", "extra", "message"),
    [
        ("61 * * * *", "", "cron '61 * * * *': invalid minute field '61' (allowed: 0-59)"),
        ("0 25 * * *", "", "cron '0 25 * * *': invalid hour field '25' (allowed: 0-23)"),
        (
            "0 0 * * * *",
            "",
            "cron '0 0 * * * *' has 6 field(s), expected 5 (minute hour day-of-month month"
            " day-of-week); a six-field expression needs `withSeconds: true`",
        ),
        (
            "* * *",
            "",
            "cron '* * *' has 3 field(s), expected 5 (minute hour day-of-month month day-of-week)",
        ),
        ("@fortnightly", "", "unknown cron nickname '@fortnightly'"),
        ("70 0 * * * *", "    withSeconds: true\n", "invalid second field '70'"),
    ],
)
def test_bad_cron(cron: str, extra: str, message: str) -> None:
    source = (
        HEAD
        + "tasks:\n  - id: a\n    type: io.kestra.plugin.core.log.Log\n    message: x\n"
        + "triggers:\n  - id: t\n    type: io.kestra.plugin.core.trigger.Schedule\n"
        + extra
        + f'    cron: "{cron}"\n'
    )
    found = problems(source)
    assert len(found) == 1
    line = 10 + (1 if extra else 0)
    assert found[0].startswith(f"flows/x.yaml:{line}: triggers[0].cron: ")
    assert message in found[0]


@pytest.mark.parametrize(
    "cron",
    [
        "@hourly",
        "@daily",
        "@weekly",
        "@monthly",
        "@yearly",
        "@annually",
        "@midnight",
        "*/15 2-4 1,15 JAN-MAR MON-FRI",
    ],
)
def test_good_cron(cron: str) -> None:
    source = (
        HEAD
        + "tasks:\n  - id: a\n    type: io.kestra.plugin.core.log.Log\n    message: x\n"
        + f'triggers:\n  - id: t\n    type: io.kestra.core.models.triggers.types.Schedule\n    cron: "{cron}"\n'
    )
    assert problems(source) == []


def test_trigger_problems() -> None:
    found = problems(
        HEAD
        + """\
        tasks:
          - id: a
            type: io.kestra.plugin.core.log.Log
            message: x
        triggers:
          - id: t
            type: io.kestra.plugin.core.trigger.Schedule
            cron: "@daily"
            timezone: Mars/Olympus
            recoverMissedSchedules: SOME
            stopAfter: [FAILED, EXPLODED]
          - id: t
            type: io.kestra.plugin.core.trigger.Webhook
            key: abc
        """
    )
    assert found[0] == (
        "flows/x.yaml:11: triggers[0].timezone: unknown time zone 'Mars/Olympus'"
        " (expected an IANA name such as UTC or Europe/Paris)"
    )
    assert found[1] == (
        "flows/x.yaml:12: triggers[0].recoverMissedSchedules: must be 'ALL', 'LAST' or 'NONE', got 'SOME'"
    )
    assert found[2].startswith("flows/x.yaml:13: triggers[0].stopAfter[1]: must be 'CREATED',")
    assert found[3] == "flows/x.yaml:14: triggers[1].id: duplicate trigger id 't'"
    assert found[4] == (
        "flows/x.yaml:15: triggers[1].type: unknown trigger type"
        " 'io.kestra.plugin.core.trigger.Webhook' (flowhawk runs io.kestra.plugin.core.trigger.Schedule)"
    )
    assert len(found) == 5


def test_flowable_problems_and_children_reported_together() -> None:
    found = problems(
        HEAD
        + """\
        tasks:
          - id: loop
            type: io.kestra.plugin.core.flow.ForEach
            values: "not json"
            concurrencyLimit: -1
            tasks:
              - id: x
                type: io.kestra.plugin.core.log.Log
          - id: par
            type: io.kestra.plugin.core.flow.Parallel
            tasks: []
          - id: sub
            type: io.kestra.plugin.core.flow.Subflow
            namespace: demo
        """
    )
    assert found == [
        "flows/x.yaml:6: tasks[0].values: must be a list, or a JSON array in a string: Expecting value",
        "flows/x.yaml:7: tasks[0].concurrencyLimit: should be greater than or equal to 0 (got -1)",
        "flows/x.yaml:9: tasks[0].tasks[0].message: field required",
        "flows/x.yaml:13: tasks[1].tasks: List should have at least 1 item after validation, not 0",
        "flows/x.yaml:14: tasks[2].flowId: field required",
    ]


def test_old_loops_are_foreach() -> None:
    flow = load_flow(
        HEAD
        + textwrap.dedent(
            """\
            tasks:
              - id: each
                type: io.kestra.core.tasks.flows.EachParallel
                value: [1, 2, 3]
                concurrent: 2
                tasks:
                  - id: x
                    type: io.kestra.plugin.core.log.Log
                    message: "{{ taskrun.value }}"
              - id: seq
                type: io.kestra.plugin.core.flow.EachSequential
                value: '["a"]'
                tasks:
                  - id: y
                    type: io.kestra.plugin.core.log.Log
                    message: "{{ taskrun.value }}"
            """
        )
    )
    each, seq = flow.tasks
    assert isinstance(each, EachParallel) and isinstance(each, ForEach)
    assert each.values == [1, 2, 3] and each.concurrencyLimit == 2
    assert isinstance(seq, ForEach) and seq.concurrencyLimit == 1
    assert seq.parse_values('["a"]') == ["a"]


def test_error_str_lists_every_problem(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(HEAD + "tasks:\n  - id: a\n    type: x.Y\n  - id: b\n    type: z.W\n")
    with pytest.raises(FlowValidationError) as caught:
        load_flow_file(path)
    assert len(caught.value.problems) == 2
    text = str(caught.value)
    assert text.startswith("2 problems in the flow:\n")
    assert f"{path}:5: tasks[0].type: unknown task type 'x.Y'" in text
    assert f"{path}:7: tasks[1].type: unknown task type 'z.W'" in text
    problem = caught.value.problems[0]
    assert (problem.line, problem.path, problem.column) == (5, "tasks[0].type", 5)


def test_missing_file() -> None:
    with pytest.raises(FlowValidationError, match="cannot read"):
        load_flow_file("/nonexistent/flow.yaml")


def test_unknown_property_suggests_a_close_name() -> None:
    found = problems(
        HEAD
        + """\
        inputs:
          - id: name
            type: STRING
            default: Will
        tasks:
          - id: a
            type: io.kestra.plugin.core.log.Log
            mesage: hi
            retry: {type: constant, maxAtempt: 3}
        """
    )
    assert found == [
        "flows/x.yaml:6: inputs[0].default: unknown property (did you mean `defaults`?)",
        "flows/x.yaml:8: tasks[0].message: field required",
        "flows/x.yaml:10: tasks[0].mesage: unknown property (did you mean `message`?)",
        "flows/x.yaml:11: tasks[0].retry.maxAtempt: unknown property (did you mean `maxAttempt`?)",
    ]


def test_trigger_inputs_must_be_declared_and_fit() -> None:
    found = problems(
        HEAD
        + """\
        inputs:
          - id: taxi
            type: SELECT
            values: [yellow, green]
        tasks:
          - id: a
            type: io.kestra.plugin.core.log.Log
            message: x
        triggers:
          - id: t
            type: io.kestra.plugin.core.trigger.Schedule
            cron: "@monthly"
            inputs:
              taxi: purple
              colour: red
              ok: "{{ trigger.date }}"
        """
    )
    assert found == [
        "flows/x.yaml:16: triggers[0].inputs.taxi: invalid SELECT value: 'purple' is not one of"
        " ['yellow', 'green']",
        "flows/x.yaml:17: triggers[0].inputs.colour: the flow has no input 'colour' (it declares: taxi)",
        "flows/x.yaml:18: triggers[0].inputs.ok: the flow has no input 'ok' (it declares: taxi)",
    ]
