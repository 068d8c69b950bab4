"""Which class runs which task type.

Every task module lists its classes through their ``types`` ClassVar; the registry imports
the task modules on first use (so importing it costs nothing) and maps every name, canonical
or alias, to its class. Modules that are not written yet are skipped; any other import error
is a bug and propagates.

Looking up one type imports only the modules whose ``MODULE_PREFIXES`` match it (a flow of
core and taxi tasks never imports httpx or the script runners: ~0.15 s less for every
``flowhawk run``); listing every type, or a type no prefix claims, imports them all.
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

#: type-name prefixes → the modules that may define them (checked by a test)
MODULE_PREFIXES: dict[str, tuple[str, ...]] = {
    "flowhawk.tasks.scripts": ("io.kestra.plugin.scripts.",),
    "flowhawk.tasks.http": ("io.kestra.plugin.core.http.", "io.kestra.plugin.fs.http."),
    "flowhawk.tasks.postgres": ("io.kestra.plugin.jdbc.postgresql.", "flowhawk.postgres."),
    "flowhawk.taxi.tasks": ("flowhawk.taxi.",),
}

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
_partial: dict[str, type[Task]] = {}
_imported: set[str] = set()


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


def _add_module(found: dict[str, type[Task]], module_name: str) -> None:
    module = _import_optional(module_name)
    if module is None:
        return
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


def _build() -> dict[str, type[Task]]:
    found: dict[str, type[Task]] = {}
    for module_name in TASK_MODULES:
        _add_module(found, module_name)
    return found


def _modules_for(type_name: str) -> list[str]:
    """The modules to import to find ``type_name``: those always imported (no prefixes),
    plus those whose prefixes match."""
    return [
        name
        for name in TASK_MODULES
        if name not in MODULE_PREFIXES
        or any(type_name.startswith(prefix) for prefix in MODULE_PREFIXES[name])
    ]


def all_task_classes() -> dict[str, type[Task]]:
    """Every accepted type name (canonical and aliases) → its class."""
    global _registry
    if _registry is None:
        with _lock:
            if _registry is None:
                _registry = _build()
    return dict(_registry)


def task_class(type_name: str) -> type[Task] | None:
    if _registry is not None:
        return _registry.get(type_name)
    with _lock:
        for module_name in _modules_for(type_name):
            if module_name not in _imported:
                _add_module(_partial, module_name)
                _imported.add(module_name)
        found = _partial.get(type_name)
    if found is not None:
        return found
    return all_task_classes().get(type_name)


def canonical_type(type_name: str) -> str | None:
    cls = task_class(type_name)
    return cls.types[0] if cls is not None else None


def reset_registry() -> None:
    """Forget the cached mapping (tests that add modules use it)."""
    global _registry
    with _lock:
        _registry = None
        _partial.clear()
        _imported.clear()


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
