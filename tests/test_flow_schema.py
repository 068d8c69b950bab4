"""The JSON Schema of the dialect is valid and agrees with the validator on examples."""

from __future__ import annotations

import json

import pytest

from flowhawk.flow.schema import flow_json_schema
from flowhawk.tasks.registry import all_task_classes

jsonschema = pytest.importorskip("jsonschema")


@pytest.fixture(scope="module")
def schema() -> dict:
    return flow_json_schema()


@pytest.fixture(scope="module")
def validator(schema: dict):
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_schema_is_json_and_lists_every_task_type(schema: dict) -> None:
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    json.dumps(schema)
    assert schema["required"] == ["id", "namespace", "tasks"]
    assert schema["additionalProperties"] is False
    union = schema["$defs"]["Task"]["oneOf"]
    names: set[str] = set()
    for ref in union:
        definition = schema["$defs"][ref["$ref"].rsplit("/", 1)[-1]]
        type_schema = definition["properties"]["type"]
        names.update(type_schema.get("enum", [type_schema.get("const")]))
        assert "type" in definition["required"]
    assert names == set(all_task_classes())


def test_valid_flow_passes(validator) -> None:
    flow = {
        "id": "x",
        "namespace": "demo.nyc",
        "labels": [{"key": "team", "value": "data"}],
        "inputs": [{"id": "taxi", "type": "SELECT", "values": ["a"], "defaults": "a"}],
        "tasks": [
            {
                "id": "branch",
                "type": "io.kestra.plugin.core.flow.If",
                "condition": "{{ true }}",
                "then": [{"id": "log", "type": "io.kestra.core.tasks.log.Log", "message": ["a"]}],
                "else": [
                    {"id": "wait", "type": "io.kestra.plugin.core.flow.Sleep", "duration": "PT1S"}
                ],
            }
        ],
        "finally": [{"id": "r", "type": "io.kestra.plugin.core.debug.Return", "format": "x"}],
        "triggers": [
            {"id": "t", "type": "io.kestra.plugin.core.trigger.Schedule", "cron": "@daily"}
        ],
    }
    assert list(validator.iter_errors(flow)) == []


@pytest.mark.parametrize(
    "task",
    [
        {"id": "a", "type": "io.kestra.plugin.core.log.Log", "message": "x", "colour": "red"},
        {"id": "a", "type": "io.kestra.plugin.nope.Foo"},
        {"id": "a", "type": "io.kestra.plugin.core.log.Log"},
        {"id": "a", "type": "io.kestra.plugin.core.log.Log", "message": "x", "level": "LOUD"},
    ],
)
def test_invalid_tasks_fail(validator, task: dict) -> None:
    flow = {"id": "x", "namespace": "demo", "tasks": [task]}
    assert list(validator.iter_errors(flow)) != []


def test_nested_children_are_checked(validator) -> None:
    flow = {
        "id": "x",
        "namespace": "demo",
        "tasks": [
            {
                "id": "s",
                "type": "io.kestra.plugin.core.flow.Sequential",
                "tasks": [{"id": "bad", "type": "io.kestra.plugin.core.log.Log", "oops": 1}],
            }
        ],
    }
    assert list(validator.iter_errors(flow)) != []
    flow["tasks"][0]["tasks"][0] = {
        "id": "ok",
        "type": "io.kestra.plugin.core.log.Log",
        "message": "m",
    }
    assert list(validator.iter_errors(flow)) == []


def test_type_prefixes_lead_to_the_module_of_every_type() -> None:
    """The registry imports a module only for the types its prefixes claim, so every type a
    prefixed module defines must carry one of them and no other module may use them."""
    import importlib

    from flowhawk.tasks import registry

    for module_name in registry.TASK_MODULES:
        module = importlib.import_module(module_name)
        for cls in registry._classes_of(module):
            for type_name in cls.types:
                claimed = [
                    name
                    for name, prefixes in registry.MODULE_PREFIXES.items()
                    if any(type_name.startswith(p) for p in prefixes)
                ]
                if module_name in registry.MODULE_PREFIXES:
                    assert claimed == [module_name], type_name
                else:
                    assert claimed == [], type_name


def test_looking_up_a_core_type_does_not_import_the_http_module() -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from flowhawk.tasks.registry import task_class\n"
        "assert task_class('io.kestra.plugin.core.log.Log') is not None\n"
        "assert task_class('flowhawk.taxi.Load') is not None\n"
        "assert 'flowhawk.tasks.http' not in sys.modules and 'httpx' not in sys.modules\n"
        "assert task_class('io.kestra.plugin.fs.http.Download') is not None\n"
        "assert task_class('io.kestra.plugin.core.http.Download') is not None\n"
        "assert task_class('no.such.Type') is None\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
