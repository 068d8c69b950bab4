"""Which class runs which task type.

Every task module lists its classes through their ``types`` ClassVar; the registry imports
the task modules on first use (so importing it costs nothing) and maps every name, canonical
or alias, to its class. Modules that are not written yet are skipped; any other import error
is a bug and propagates.
"""

from __future__ import annotations

import importlib
import inspect
import threading
from collections.abc import Iterable
from types import ModuleType
from typing import Annotated, Any

from pydantic import BeforeValidator, SerializeAsAny

from flowhawk.tasks.base import Task

TASK_MODULES: tuple[str, ...] = (
    "flowhawk.tasks.core",
    "flowhawk.tasks.flowable",
    "flowhawk.tasks.scripts",
    "flowhawk.tasks.http",
    "flowhawk.tasks.postgres",
    "flowhawk.taxi.tasks",
)

#: flowhawk's own type prefixes that also receive the pluginDefaults given for another
#: prefix: one entry for ``io.kestra.plugin.jdbc.postgresql`` reaches flowhawk's own
#: PostgreSQL tasks too.
PLUGIN_DEFAULTS_AS: dict[str, str] = {
    "flowhawk.taxi": "io.kestra.plugin.jdbc.postgresql",
    "flowhawk.postgres": "io.kestra.plugin.jdbc.postgresql",
}

#: older Kestra names of task types implemented in modules other than core/flowable
_ALIASES: dict[str, str] = {
    "io.kestra.plugin.fs.http.Download": "io.kestra.plugin.core.http.Download",
}

_lock = threading.Lock()
_registry: dict[str, type[Task]] | None = None


def _import_optional(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing == name or name.startswith(missing + "."):
            return None
        raise


def _classes_of(module: ModuleType) -> Iterable[type[Task]]:
    for value in vars(module).values():
        if (
            inspect.isclass(value)
            and issubclass(value, Task)
            and value is not Task
            and value.__dict__.get("types")
        ):
            yield value


def _build() -> dict[str, type[Task]]:
    found: dict[str, type[Task]] = {}
    for module_name in TASK_MODULES:
        module = _import_optional(module_name)
        if module is None:
            continue
        for cls in _classes_of(module):
            for type_name in cls.types:
                other = found.get(type_name)
                if other is not None and other is not cls:
                    raise RuntimeError(
                        f"task type {type_name!r} claimed by both "
                        f"{other.__module__}.{other.__name__} and {cls.__module__}.{cls.__name__}"
                    )
                found[type_name] = cls
    for alias, canonical in _ALIASES.items():
        if canonical in found and alias not in found:
            found[alias] = found[canonical]
    return found


def all_task_classes() -> dict[str, type[Task]]:
    """Every accepted type name (canonical and aliases) → its class."""
    global _registry
    if _registry is None:
        with _lock:
            if _registry is None:
                _registry = _build()
    return dict(_registry)


def task_class(type_name: str) -> type[Task] | None:
    return all_task_classes().get(type_name)


def canonical_type(type_name: str) -> str | None:
    cls = task_class(type_name)
    return cls.types[0] if cls is not None else None


def reset_registry() -> None:
    """Forget the cached mapping (tests that add modules use it)."""
    global _registry
    with _lock:
        _registry = None


def build_task(data: Any) -> Task:
    """Build a task object from its mapping, dispatching on ``type``.

    The loader does this itself to report every problem with its line; this is the path
    for code that constructs flows from plain data.
    """
    if isinstance(data, Task):
        return data
    if not isinstance(data, dict):
        raise ValueError(f"a task must be a mapping with `id` and `type`, got {data!r}")
    type_name = data.get("type")
    if not type_name:
        raise ValueError(f"task {data.get('id')!r} has no `type`")
    cls = task_class(str(type_name))
    if cls is None:
        raise ValueError(f"unknown task type {type_name!r}")
    return cls.model_validate(data)


def _build_tasks(value: Any) -> Any:
    if isinstance(value, list):
        return [build_task(item) for item in value]
    return value


#: a list of tasks of any registered type (use in flowable tasks and the flow)
TaskList = Annotated[list[SerializeAsAny[Task]], BeforeValidator(_build_tasks)]
