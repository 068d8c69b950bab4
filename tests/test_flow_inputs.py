"""Flow inputs: coercion of CLI strings and JSON values for every type, defaults, errors."""

from __future__ import annotations

from typing import Any

import pytest

from flowhawk.errors import FlowhawkError
from flowhawk.flow.inputs import InputError, resolve_inputs, secret_inputs
from flowhawk.flow.model import Flow

LOG = {"id": "l", "type": "io.kestra.plugin.core.log.Log", "message": "x"}


def flow_with(*inputs: dict[str, Any]) -> Flow:
    return Flow.model_validate(
        {"id": "f", "namespace": "demo", "inputs": list(inputs), "tasks": [LOG]}
    )


def one(spec: dict[str, Any], value: Any) -> Any:
    return resolve_inputs(flow_with({"id": "x", **spec}), {"x": value})["x"]


def refused(spec: dict[str, Any], value: Any) -> str:
    with pytest.raises(InputError) as caught:
        resolve_inputs(flow_with({"id": "x", **spec}), {"x": value})
    assert list(caught.value.problems) == ["x"]
    return str(caught.value)


@pytest.mark.parametrize(
    ("spec", "given", "expected"),
    [
        ({"type": "STRING"}, "hello", "hello"),
        ({"type": "STRING"}, 12, "12"),
        ({"type": "STRING", "validator": "^[a-z]+$"}, "abc", "abc"),
        ({"type": "INT"}, "2019", 2019),
        ({"type": "INT"}, " -3 ", -3),
        ({"type": "INT"}, 7, 7),
        ({"type": "INT", "min": 1, "max": 12}, "12", 12),
        ({"type": "FLOAT"}, "1.5", 1.5),
        ({"type": "FLOAT"}, 2, 2.0),
        ({"type": "BOOLEAN"}, "TRUE", True),
        ({"type": "BOOL"}, "false", False),
        ({"type": "BOOLEAN"}, True, True),
        ({"type": "SELECT", "values": ["yellow", "green"]}, "green", "green"),
        ({"type": "SELECT", "values": ["a"], "allowCustomValue": True}, "zzz", "zzz"),
        ({"type": "MULTISELECT", "values": ["a", "b", "c"]}, "a,c", ["a", "c"]),
        ({"type": "MULTISELECT", "values": ["a", "b"]}, '["b"]', ["b"]),
        ({"type": "MULTISELECT", "values": ["a", "b"]}, ["a", "b"], ["a", "b"]),
        ({"type": "DATE"}, "2019-01-31", "2019-01-31"),
        ({"type": "DATE", "min": "2019-01-01", "max": "2021-07-31"}, "2021-07-31", "2021-07-31"),
        ({"type": "DATETIME"}, "2019-01-01T10:00:00Z", "2019-01-01T10:00:00Z"),
        ({"type": "DATETIME"}, "2019-01-01T10:00:00", "2019-01-01T10:00:00Z"),
        ({"type": "DATETIME"}, "2019-01-01T10:00:00+02:00", "2019-01-01T10:00:00+02:00"),
        ({"type": "TIME"}, "08:30", "08:30:00"),
        ({"type": "DURATION"}, "pt1h", "PT1H"),
        ({"type": "DURATION", "max": "P1D"}, "PT23H", "PT23H"),
        ({"type": "JSON"}, '{"a": [1, 2]}', {"a": [1, 2]}),
        ({"type": "JSON"}, {"a": 1}, {"a": 1}),
        ({"type": "YAML"}, "a: [1, 2]", {"a": [1, 2]}),
        ({"type": "ARRAY", "itemType": "INT"}, "1, 2,3", [1, 2, 3]),
        ({"type": "ARRAY", "itemType": "INT"}, "[4, 5]", [4, 5]),
        ({"type": "ARRAY"}, "a,b", ["a", "b"]),
        ({"type": "ARRAY", "itemType": "DATE"}, ["2020-01-01"], ["2020-01-01"]),
        ({"type": "URI"}, "https://example.com/x.csv", "https://example.com/x.csv"),
        ({"type": "EMAIL"}, "a@b.io", "a@b.io"),
        ({"type": "SECRET"}, "s3cr3t", "s3cr3t"),
        ({"type": "FILE"}, "kestra:///a/b.csv", "kestra:///a/b.csv"),
    ],
)
def test_coercion(spec: dict[str, Any], given: Any, expected: Any) -> None:
    assert one(spec, given) == expected


@pytest.mark.parametrize(
    ("spec", "given", "fragment"),
    [
        ({"type": "STRING", "validator": "^[a-z]+$"}, "ABC", "does not match the validator"),
        ({"type": "STRING"}, {"a": 1}, "expected a string"),
        ({"type": "INT"}, "2019.5", "expected an integer, got '2019.5'"),
        ({"type": "INT"}, True, "expected an integer"),
        ({"type": "INT", "min": 1, "max": 12}, "13", "must be at most 12, got 13"),
        ({"type": "INT", "min": 1}, 0, "must be at least 1, got 0"),
        ({"type": "FLOAT"}, "abc", "expected a number"),
        ({"type": "FLOAT"}, "nan", "expected a finite number"),
        ({"type": "BOOLEAN"}, "yes", "expected true or false"),
        ({"type": "SELECT", "values": ["yellow", "green"]}, "purple", "'purple' is not one of"),
        ({"type": "MULTISELECT", "values": ["a", "b"]}, "a,z", "'z' is not one of"),
        ({"type": "DATE"}, "2019-13-01", "expected a date (YYYY-MM-DD)"),
        ({"type": "DATE", "min": "2019-01-01"}, "2018-12-31", "must be at least 2019-01-01"),
        ({"type": "DATETIME"}, "yesterday", "expected an ISO-8601 date-time"),
        ({"type": "DATETIME", "after": "2020-01-01T00:00:00Z"}, "2019-01-01T00:00:00Z", "at least"),
        ({"type": "TIME"}, "25:00", "expected a time"),
        ({"type": "DURATION"}, "1 hour", "invalid ISO-8601 duration"),
        ({"type": "DURATION", "min": "PT1M"}, "PT30S", "must be at least PT1M"),
        ({"type": "JSON"}, "{oops", "invalid JSON"),
        ({"type": "YAML"}, "a: [", "invalid YAML"),
        ({"type": "ARRAY", "itemType": "INT"}, "1,x", "item 1: expected an integer, got 'x'"),
        ({"type": "ARRAY"}, "[1,", "invalid JSON array"),
        ({"type": "URI"}, "not a uri", "expected a URI"),
        ({"type": "EMAIL"}, "nobody", "expected an email address"),
    ],
)
def test_refusals_name_the_input_and_the_problem(
    spec: dict[str, Any], given: Any, fragment: str
) -> None:
    message = refused(spec, given)
    assert message.startswith(f"invalid inputs: input `x`: {spec['type']}: ")
    assert fragment in message


def test_defaults_required_optional_and_unknown() -> None:
    flow = flow_with(
        {"id": "taxi", "type": "SELECT", "values": ["yellow", "green"], "defaults": "yellow"},
        {"id": "year", "type": "INT", "defaults": 2019},
        {"id": "month", "type": "STRING", "defaults": "{{ trigger.date | date('MM') }}"},
        {"id": "note", "type": "STRING", "required": False},
        {"id": "day", "type": "DATE"},
    )
    assert resolve_inputs(flow, {"day": "2020-10-01", "year": "2020"}) == {
        "taxi": "yellow",
        "year": 2020,
        "month": "{{ trigger.date | date('MM') }}",  # kept literal for the engine to render
        "note": None,
        "day": "2020-10-01",
    }
    with pytest.raises(InputError) as caught:
        resolve_inputs(flow, {"year": "twenty", "colour": "red"})
    assert isinstance(caught.value, FlowhawkError)
    assert set(caught.value.problems) == {"colour", "year", "day"}
    text = str(caught.value)
    assert "input `colour`: unknown input (the flow declares: day, month, note, taxi, year)" in text
    assert "input `year`: INT: expected an integer, got 'twenty'" in text
    assert "input `day`: required, but no value was given and it has no defaults" in text


def test_explicit_none_falls_back_to_defaults() -> None:
    flow = flow_with({"id": "n", "type": "INT", "defaults": 5})
    assert resolve_inputs(flow, {"n": None}) == {"n": 5}
    assert resolve_inputs(flow, None) == {"n": 5}


def test_secret_inputs() -> None:
    flow = flow_with({"id": "pw", "type": "SECRET"}, {"id": "user", "type": "STRING"})
    assert secret_inputs(flow) == {"pw"}


def test_declaration_checks_in_the_model() -> None:
    from pydantic import ValidationError

    for spec, fragment in [
        ({"type": "SELECT"}, "needs `values`"),
        ({"type": "INT", "values": [1]}, "`values` only applies to SELECT / MULTISELECT / ENUM"),
        ({"type": "INT", "min": "abc"}, "not a valid INT bound"),
        ({"type": "DATE", "defaults": "2020-02-30"}, "invalid DATE value"),
        ({"type": "INT", "max": 3, "defaults": 4}, "must be at most 3"),
        ({"type": "ARRAY", "itemType": "ARRAY"}, "cannot hold ARRAY items"),
    ]:
        with pytest.raises(ValidationError, match=fragment.replace("(", r"\(")):
            flow_with({"id": "x", **spec})


def test_deprecated_spellings() -> None:
    flow = flow_with({"name": "old", "type": "MULTISELECT", "options": ["a", "b"]})
    assert flow.inputs[0].id == "old" and flow.inputs[0].values == ["a", "b"]
