"""A JSON Schema (draft 2020-12) of the flow dialect, for editors' completion and checks.

Generated from the pydantic models: the flow, and every registered task class, each
discriminated by a ``type`` enum of its names; everywhere a task may appear (a flow's
``tasks``/``errors``/``finally``, a flowable's children) the schema says "one of those".
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from flowhawk.flow.model import Flow
from flowhawk.tasks.base import Task
from flowhawk.tasks.registry import all_task_classes

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"

_LABELS = {
    "anyOf": [
        {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean"]}},
        {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"key": {"type": "string"}, "value": {}},
                "required": ["key", "value"],
                "additionalProperties": False,
            },
        },
    ],
    "description": "A map, or a list of {key, value}.",
}


def _def_name(ref: dict[str, Any]) -> str:
    return str(ref["$ref"]).rsplit("/", 1)[-1]


def _loosen_labels(defs: dict[str, Any]) -> None:
    """Labels are written as a map or a list of {key, value}; the models hold the map."""
    for schema in defs.values():
        labels = schema.get("properties", {}).get("labels")
        if labels is not None and labels.get("type") == "object":
            title = labels.get("title")
            schema["properties"]["labels"] = {**_LABELS, **({"title": title} if title else {})}


def flow_json_schema() -> dict[str, Any]:
    """The schema of one flow file."""
    classes: dict[type[Task], list[str]] = {}
    for name, cls in all_task_classes().items():
        classes.setdefault(cls, []).append(name)
    ordered = sorted(classes, key=lambda cls: cls.types[0])
    models: list[type[BaseModel]] = [Flow, Task, *ordered]
    key_map, generated = models_json_schema(
        [(model, "validation") for model in models], ref_template="#/$defs/{model}"
    )
    defs: dict[str, Any] = generated.get("$defs", {})

    task_refs = []
    for cls in ordered:
        ref = key_map[(cls, "validation")]
        schema = defs[_def_name(ref)]
        names = [cls.types[0]] + sorted(n for n in classes[cls] if n != cls.types[0])
        type_schema: dict[str, Any] = {"const": names[0]} if len(names) == 1 else {"enum": names}
        type_schema["description"] = f"Task type {names[0]}"
        schema["properties"]["type"] = type_schema
        if cls.__doc__:
            schema["description"] = " ".join(cls.__doc__.split())
        task_refs.append(dict(ref))

    # the base Task stands for "any task": replace it with the discriminated union
    defs[_def_name(key_map[(Task, "validation")])] = {
        "title": "Task",
        "description": "A task: `id`, `type` and the properties of that type.",
        "oneOf": task_refs,
    }
    _loosen_labels(defs)

    flow_name = _def_name(key_map[(Flow, "validation")])
    root = defs.pop(flow_name)
    root.update(
        {
            "$schema": SCHEMA_DIALECT,
            "$id": "https://flowhawk.dev/schemas/flow.json",
            "title": "flowhawk flow",
            "description": "A Kestra-dialect flow run by flowhawk.",
            "$defs": defs,
        }
    )
    return root
