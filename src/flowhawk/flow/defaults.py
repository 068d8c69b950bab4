"""pluginDefaults, with Kestra's semantics.

An entry applies to a task (or trigger) whose type starts with the entry's ``type``; for
flowhawk's own types, also when the entry names the prefix they stand in for
(``registry.PLUGIN_DEFAULTS_AS``). Its values fill the properties the task does not set,
merging maps key by key. Precedence, strongest first: global forced, flow forced, the
task itself, flow, global. Among entries of one layer the longer (more specific) type
wins. Only properties the task type has are filled, so one prefix entry can serve task
types with different property sets.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

from flowhawk.tasks.registry import PLUGIN_DEFAULTS_AS

_NEVER = frozenset({"id", "type"})


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``override`` on top of ``base``; nested maps merge, anything else is replaced."""
    result = dict(base)
    for key, value in override.items():
        current = result.get(key)
        if isinstance(current, Mapping) and isinstance(value, Mapping):
            result[key] = deep_merge(current, value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def entry_matches(entry_type: str, type_names: Iterable[str]) -> bool:
    for name in type_names:
        if name.startswith(entry_type):
            return True
        for own_prefix, stands_for in PLUGIN_DEFAULTS_AS.items():
            if name.startswith(own_prefix) and stands_for.startswith(entry_type):
                return True
    return False


def _entries(raw: Iterable[Any]) -> list[tuple[str, dict[str, Any], bool]]:
    """Well-formed entries only; the flow model reports malformed ones."""
    result = []
    for entry in raw or ():
        if not isinstance(entry, Mapping):
            continue
        entry_type, values = entry.get("type"), entry.get("values")
        if isinstance(entry_type, str) and entry_type and isinstance(values, Mapping):
            result.append((entry_type, dict(values), bool(entry.get("forced", False))))
    return result


def apply_plugin_defaults(
    data: Mapping[str, Any],
    type_names: Iterable[str],
    properties: Iterable[str] | None,
    flow_defaults: Iterable[Any] = (),
    global_defaults: Iterable[Any] = (),
) -> dict[str, Any]:
    """The task's properties with the matching defaults merged in.

    ``type_names``: the type as written and its canonical name; ``properties``: the names
    the task type accepts (None: accept all).
    """
    names = list(type_names)
    accepted = set(properties) if properties is not None else None

    def layer(raw: Iterable[Any], forced: bool) -> list[dict[str, Any]]:
        chosen = [
            (entry_type, values)
            for entry_type, values, is_forced in _entries(raw)
            if is_forced == forced and entry_matches(entry_type, names)
        ]
        chosen.sort(key=lambda item: len(item[0]))
        return [
            {
                k: v
                for k, v in values.items()
                if k not in _NEVER and (accepted is None or k in accepted)
            }
            for _, values in chosen
        ]

    result: dict[str, Any] = {}
    for values in layer(global_defaults, False) + layer(flow_defaults, False):
        result = deep_merge(result, values)
    result = deep_merge(result, data)
    for values in layer(flow_defaults, True) + layer(global_defaults, True):
        result = deep_merge(result, values)
    return result
