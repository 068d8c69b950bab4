"""Load a flow file and report every problem in it with its line and key path.

The YAML is read with ruamel's round-trip loader, which remembers where each key and item
is. Each task is dispatched on its ``type`` through the registry and validated on its own
(after pluginDefaults are merged in), children before parents, so one file's report lists
all bad tasks at once. Timestamps stay strings, as Kestra reads them.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, get_args

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.constructor import RoundTripConstructor
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from flowhawk.errors import FlowhawkError
from flowhawk.flow.defaults import apply_plugin_defaults
from flowhawk.flow.inputs import coerce_value, is_expression
from flowhawk.flow.model import SCHEDULE_TYPES, Flow, ScheduleTrigger
from flowhawk.tasks.base import Task
from flowhawk.tasks.registry import all_task_classes, task_class

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class Problem:
    file: str
    line: int
    path: str
    message: str
    column: int | None = None

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"{self.file}:{self.line}: {where}{self.message}"


class FlowValidationError(FlowhawkError):
    """The flow is invalid; ``problems`` lists everything wrong, in file order."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        count = len(self.problems)
        header = f"{count} problem{'s' if count != 1 else ''} in the flow:\n"
        super().__init__(header + "\n".join(str(p) for p in self.problems))


class _Constructor(RoundTripConstructor):
    """Round-trip constructor that keeps timestamps as the text written."""


def _timestamp_as_text(constructor: RoundTripConstructor, node: Any) -> str:
    return str(constructor.construct_scalar(node))


_Constructor.add_constructor("tag:yaml.org,2002:timestamp", _timestamp_as_text)


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.Constructor = _Constructor
    return yaml


def _plain(value: Any) -> Any:
    """ruamel's round-trip objects as plain Python values."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return value


def format_path(loc: Iterable[str | int]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def _scalar_repr(value: Any) -> str | None:
    if isinstance(value, (str, int, float, bool)) or value is None:
        text = repr(value)
        return text if len(text) <= 80 else text[:77] + "..."
    return None


_SENSITIVE = re.compile(r"password|secret|token|key", re.IGNORECASE)


def _message(error: Any) -> str:
    kind = error["type"]
    if kind == "missing":
        return "field required"
    if kind == "extra_forbidden":
        return "unknown property"
    msg = str(error["msg"])
    if kind in ("value_error", "assertion_error"):
        for prefix in ("Value error, ", "Assertion failed, "):
            msg = msg.removeprefix(prefix)
        return msg
    got = _scalar_repr(error.get("input"))
    if any(isinstance(part, str) and _SENSITIVE.search(part) for part in error["loc"]):
        got = None  # never echo what may be a credential
    if kind == "literal_error":
        return f"must be {error['ctx']['expected']}" + (f", got {got}" if got else "")
    if kind == "string_pattern_mismatch":
        return f"{got or 'the value'} does not match {error['ctx']['pattern']}"
    msg = msg.removeprefix("Input should be ")
    if msg != str(error["msg"]):
        msg = "should be " + msg
    return msg + (f" (got {got})" if got and kind != "too_short" else "")


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model an annotation holds (directly, optionally, or as list items)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _model_at(model: type[BaseModel] | None, loc: Loc) -> type[BaseModel] | None:
    """The model validating the mapping at ``loc`` inside ``model`` (None if unknown)."""
    for part in loc:
        if model is None:
            return None
        if isinstance(part, int):
            continue
        field = next((f for name, f in model.model_fields.items() if part in (name, f.alias)), None)
        model = _model_in(field.annotation) if field is not None else None
    return model


def _suggestion(key: str, model: type[BaseModel] | None) -> str:
    if model is None:
        return ""
    close = difflib.get_close_matches(key, sorted(_property_names(model)), n=1, cutoff=0.75)
    return f" (did you mean `{close[0]}`?)" if close else ""


def _truncate(loc: Loc, data: Any, kind: str) -> Loc:
    """Keep the part of ``loc`` that names real keys/items (drop union member tags)."""
    kept: list[str | int] = []
    node = data
    for index, part in enumerate(loc):
        last = index == len(loc) - 1
        if isinstance(node, dict) and isinstance(part, str):
            if part in node:
                kept.append(part)
                node = node[part]
                continue
            if last and kind in ("missing", "extra_forbidden"):
                kept.append(part)
            break
        if isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            kept.append(part)
            node = node[part]
            continue
        break
    return tuple(kept)


class _Loader:
    def __init__(self, source: str, filename: str, global_defaults: Iterable[Any]) -> None:
        self.source = source
        self.filename = filename
        self.global_defaults = list(global_defaults or ())
        self.flow_defaults: list[Any] = []
        self.root: Any = None
        self.problems: list[Problem] = []
        self.task_ids: dict[str, Loc] = {}

    # -- locating ---------------------------------------------------------------------
    def _position(self, loc: Loc) -> tuple[int, int | None]:
        """1-based line (and column) of the deepest part of ``loc`` present in the file."""
        node = self.root
        line, column = 1, None
        if isinstance(node, CommentedMap | CommentedSeq):
            line, column = node.lc.line + 1, node.lc.col + 1
        for part in loc:
            if isinstance(node, CommentedMap) and part in node:
                row, col = node.lc.key(part)
                line, column = row + 1, col + 1
                node = node[part]
            elif isinstance(node, CommentedSeq) and isinstance(part, int) and part < len(node):
                row, col = node.lc.item(part)
                line, column = row + 1, col + 1
                node = node[part]
            else:
                break
        return line, column

    def add(self, loc: Loc, message: str) -> None:
        line, column = self._position(loc)
        self.problems.append(Problem(self.filename, line, format_path(loc), message, column))

    def add_validation(
        self,
        exc: ValidationError,
        base: Loc,
        data: Any,
        model: type[BaseModel],
        written: dict[str, Any] | None = None,
        skip: Iterable[Loc] = (),
    ) -> None:
        """Report pydantic errors of the object at ``base``, one problem per key path."""
        skipped = tuple(skip)
        grouped: dict[Loc, list[str]] = {}
        for error in exc.errors():
            loc = _truncate(tuple(error["loc"]), data, error["type"])
            if any(loc[: len(prefix)] == prefix for prefix in skipped):
                continue
            message = _message(error)
            if error["type"] == "extra_forbidden" and loc and isinstance(loc[-1], str):
                message += _suggestion(loc[-1], _model_at(model, loc[:-1]))
            if written is not None and loc and loc[0] not in written and loc[0] in data:
                message += " (value from pluginDefaults)"
            messages = grouped.setdefault(loc, [])
            if message not in messages:
                messages.append(message)
        for loc, messages in grouped.items():
            if len(messages) > 1 and all(m.startswith("should be ") for m in messages):
                text = "should be " + " or ".join(
                    m.removeprefix("should be ").split(" (got ")[0] for m in messages
                )
                got = messages[0].partition(" (got ")[2]
                text += f" (got {got}" if got else ""
            else:
                text = "; ".join(messages)
            self.add(base + loc, text)

    # -- tasks ------------------------------------------------------------------------
    def build_tasks(self, items: Any, base: Loc) -> tuple[list[Task], bool]:
        """Each task of a list built (or reported); returns the good ones and whether all were."""
        if not isinstance(items, list):
            return items, True  # the enclosing model reports the wrong shape
        built: list[Task] = []
        ok = True
        for index, item in enumerate(items):
            task = self.build_task(item, base + (index,))
            if task is None:
                ok = False
            else:
                built.append(task)
        return built, ok

    def build_task(self, data: Any, loc: Loc) -> Task | None:
        if not isinstance(data, dict):
            self.add(loc, "a task must be a mapping with at least `id` and `type`")
            return None
        task_id = data.get("id")
        if isinstance(task_id, str):
            first = self.task_ids.get(task_id)
            if first is not None:
                line, _ = self._position(first + ("id",))
                self.add(
                    loc + ("id",), f"duplicate task id {task_id!r} (first used at line {line})"
                )
            else:
                self.task_ids[task_id] = loc
        type_name = data.get("type")
        if type_name is None:
            self.add(loc + ("type",), "field required (every task needs a `type`)")
            return None
        if not isinstance(type_name, str):
            self.add(loc + ("type",), f"must be a task type name, got {type_name!r}")
            return None
        cls = task_class(type_name)
        if cls is None:
            hint = difflib.get_close_matches(type_name, list(all_task_classes()), n=1, cutoff=0.9)
            suffix = f" (did you mean '{hint[0]}'?)" if hint else ""
            self.add(loc + ("type",), f"unknown task type {type_name!r}{suffix}")
            return None
        merged = apply_plugin_defaults(
            data,
            {type_name, cls.types[0]},
            _property_names(cls),
            self.flow_defaults,
            self.global_defaults,
        )
        failed: set[Loc] = set()
        for field_name in getattr(cls, "task_lists", ()):
            key = cls.model_fields[field_name].alias or field_name
            if key in merged:
                children, ok = self.build_tasks(merged[key], loc + (key,))
                merged[key] = children
                if not ok:
                    failed.add((key,))
        try:
            task = cls.model_validate(merged)
        except ValidationError as exc:
            self.add_validation(exc, loc, merged, cls, written=data, skip=failed)
            return None
        return None if failed else task

    # -- flow -------------------------------------------------------------------------
    def check_triggers(self, data: dict[str, Any]) -> set[Loc]:
        """Unknown trigger types and duplicate ids; pluginDefaults merged into each trigger."""
        triggers = data.get("triggers")
        skip: set[Loc] = set()
        if not isinstance(triggers, list):
            return skip
        seen: dict[str, int] = {}
        for index, trigger in enumerate(triggers):
            if not isinstance(trigger, dict):
                continue
            loc: Loc = ("triggers", index)
            trigger_type = trigger.get("type")
            if isinstance(trigger_type, str) and trigger_type not in SCHEDULE_TYPES:
                self.add(
                    loc + ("type",),
                    f"unknown trigger type {trigger_type!r} (flowhawk runs {SCHEDULE_TYPES[0]})",
                )
                skip.add(loc)
            elif isinstance(trigger_type, str):
                triggers[index] = apply_plugin_defaults(
                    trigger,
                    {trigger_type, SCHEDULE_TYPES[0]},
                    _property_names(ScheduleTrigger),
                    self.flow_defaults,
                    self.global_defaults,
                )
            trigger_id = trigger.get("id")
            if isinstance(trigger_id, str):
                if trigger_id in seen:
                    self.add(loc + ("id",), f"duplicate trigger id {trigger_id!r}")
                seen.setdefault(trigger_id, index)
        return skip

    def check_trigger_inputs(self, flow: Flow) -> None:
        """A trigger's inputs must be declared by the flow and fit their type."""
        for index, trigger in enumerate(flow.triggers):
            for key, value in trigger.inputs.items():
                loc: Loc = ("triggers", index, "inputs", key)
                spec = flow.input(key)
                if spec is None:
                    declared = ", ".join(s.id for s in flow.inputs) or "none"
                    self.add(loc, f"the flow has no input {key!r} (it declares: {declared})")
                elif value is not None and not is_expression(value):
                    try:
                        coerce_value(spec, value)
                    except ValueError as exc:
                        self.add(loc, f"invalid {spec.type} value: {exc}")

    def check_unique(self, data: dict[str, Any], key: str, what: str) -> None:
        items = data.get(key)
        if not isinstance(items, list):
            return
        seen: set[str] = set()
        for index, item in enumerate(items):
            if isinstance(item, dict):
                item_id = item.get("id", item.get("name"))
                if isinstance(item_id, str):
                    if item_id in seen:
                        self.add((key, index, "id"), f"duplicate {what} id {item_id!r}")
                    seen.add(item_id)

    def load(self) -> Flow:
        try:
            self.root = _yaml().load(self.source)
        except YAMLError as exc:
            raise FlowValidationError([_yaml_problem(self.filename, exc)]) from None
        if self.root is None:
            raise FlowValidationError([Problem(self.filename, 1, "", "the flow file is empty")])
        if not isinstance(self.root, dict):
            raise FlowValidationError(
                [
                    Problem(
                        self.filename, 1, "", "a flow must be a mapping (id, namespace, tasks...)"
                    )
                ]
            )
        data: dict[str, Any] = _plain(self.root)
        if isinstance(data.get("pluginDefaults"), list):
            self.flow_defaults = data["pluginDefaults"]

        skip: set[Loc] = set()
        for key in ("tasks", "errors", "finally"):
            if key in data:
                data[key], ok = self.build_tasks(data[key], (key,))
                if not ok:
                    skip.add((key,))
        skip |= self.check_triggers(data)
        self.check_unique(data, "inputs", "input")
        self.check_unique(data, "outputs", "output")

        flow: Flow | None = None
        try:
            flow = Flow.model_validate(data, context={Flow.CHECKED: True})
        except ValidationError as exc:
            self.add_validation(exc, (), data, Flow, skip=skip)
        if flow is not None:
            self.check_trigger_inputs(flow)
        if self.problems:
            ordered = sorted(enumerate(self.problems), key=lambda item: (item[1].line, item[0]))
            raise FlowValidationError([problem for _, problem in ordered])
        assert flow is not None
        flow._source = self.source
        return flow


def _yaml_problem(filename: str, exc: YAMLError) -> Problem:
    if not isinstance(exc, MarkedYAMLError):
        return Problem(filename, 1, "", f"invalid YAML: {exc}")
    mark = exc.problem_mark or exc.context_mark
    line = mark.line + 1 if mark is not None else 1
    column = mark.column + 1 if mark is not None else None
    message = f"invalid YAML: {exc.problem or exc.context or 'syntax error'}"
    if exc.problem and exc.context:
        message += f" ({exc.context})"
    return Problem(filename, line, "", message, column)


def _property_names(cls: type[BaseModel]) -> set[str]:
    names: set[str] = set()
    for name, field in cls.model_fields.items():
        names.add(field.alias or name)
        names.add(name)
    return names


def load_flow(source: str, filename: str = "<flow>", global_defaults: Iterable[Any] = ()) -> Flow:
    """Parse and validate a flow; raises FlowValidationError listing every problem."""
    return _Loader(source, filename, global_defaults).load()


def validate_source(
    source: str, filename: str = "<flow>", global_defaults: Iterable[Any] = ()
) -> list[Problem]:
    """Every problem of a flow's source (empty when it is valid)."""
    try:
        load_flow(source, filename, global_defaults)
    except FlowValidationError as exc:
        return exc.problems
    return []


def load_flow_file(path: str | Path, global_defaults: Iterable[Any] = ()) -> Flow:
    return load_flow(read_flow_file(path), str(path), global_defaults)


def read_flow_file(path: str | Path) -> str:
    """A flow file's text; a file that cannot be read is a FlowValidationError naming it."""
    file = Path(path)
    try:
        return file.read_text(encoding="utf-8")
    except OSError as exc:
        raise FlowValidationError(
            [Problem(str(file), 1, "", f"cannot read: {exc.strerror}")]
        ) from None
    except UnicodeDecodeError as exc:
        raise FlowValidationError(
            [Problem(str(file), 1, "", f"not UTF-8 text: {exc.reason}")]
        ) from None
