"""Flow inputs: turn what a user gave (CLI strings, JSON values) into typed values.

Every value is checked before an execution is created: its type, ``values`` for SELECT
and MULTISELECT, ``validator`` for STRING, ``min``/``max``. Dates and times come out as
ISO-8601 strings, as Kestra renders them; JSON and ARRAY come out parsed.
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from flowhawk.errors import FlowhawkError
from flowhawk.util.durations import parse_duration

if TYPE_CHECKING:
    from flowhawk.flow.model import Flow

_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:\S+$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class InputError(FlowhawkError):
    """One or more inputs were refused; ``problems`` maps each input id to what is wrong."""

    def __init__(self, problems: dict[str, str]) -> None:
        self.problems = dict(problems)
        text = "; ".join(f"input `{key}`: {msg}" for key, msg in self.problems.items())
        super().__init__(f"invalid inputs: {text}")


class InputSpec(Protocol):
    """What coercion needs of an input declaration (``flow.model.Input``); read-only."""

    @property
    def id(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def values(self) -> list[Any] | None: ...
    @property
    def allowCustomValue(self) -> bool: ...
    @property
    def validator(self) -> str | None: ...
    @property
    def itemType(self) -> str | None: ...
    @property
    def min(self) -> Any: ...
    @property
    def max(self) -> Any: ...
    @property
    def after(self) -> Any: ...
    @property
    def before(self) -> Any: ...


def is_expression(value: Any) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def _scalar_text(value: Any, what: str) -> str:
    if isinstance(value, (dict, list)):
        raise ValueError(f"expected {what}, got {type(value).__name__} {value!r}")
    return str(value)


def _to_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"expected an integer, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    text = _scalar_text(value, "an integer").strip()
    if re.fullmatch(r"[+-]?\d+", text):
        return int(text)
    raise ValueError(f"expected an integer, got {value!r}")


def _to_float(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {value!r}")
    if isinstance(value, (int, float)):
        result = float(value)
    else:
        text = _scalar_text(value, "a number").strip()
        try:
            result = float(text)
        except ValueError:
            raise ValueError(f"expected a number, got {value!r}") from None
    if math.isnan(result) or math.isinf(result):
        raise ValueError(f"expected a finite number, got {value!r}")
    return result


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = _scalar_text(value, "true or false").strip().lower()
    if text == "true":
        return True
    if text == "false":
        return False
    raise ValueError(f"expected true or false, got {value!r}")


def _to_date(value: Any) -> date:
    if isinstance(value, datetime):
        raise ValueError(f"expected a date (YYYY-MM-DD), got a date-time {value.isoformat()}")
    if isinstance(value, date):
        return value
    text = _scalar_text(value, "a date").strip()
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"expected a date (YYYY-MM-DD), got {value!r}") from None


def _to_datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, date):
        parsed = datetime(value.year, value.month, value.day)
    else:
        text = _scalar_text(value, "a date-time").strip()
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(
                f"expected an ISO-8601 date-time (e.g. 2024-01-31T08:00:00Z), got {value!r}"
            ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def _to_time(value: Any) -> time:
    if isinstance(value, time):
        return value
    text = _scalar_text(value, "a time").strip()
    try:
        return time.fromisoformat(text)
    except ValueError:
        raise ValueError(f"expected a time (HH:MM[:SS]), got {value!r}") from None


def _to_duration(value: Any) -> timedelta:
    if isinstance(value, timedelta):
        return value
    return parse_duration(_scalar_text(value, "an ISO-8601 duration"))


def format_datetime(value: datetime) -> str:
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _to_list(value: Any, what: str) -> list[Any]:
    """A list, a JSON array in a string, or a comma-separated string."""
    if isinstance(value, list):
        return value
    if isinstance(value, tuple):
        return list(value)
    text = _scalar_text(value, what).strip()
    if text.startswith("["):
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"invalid JSON array: {exc.msg}") from None
        if not isinstance(parsed, list):
            raise ValueError(f"expected {what}, got {value!r}")
        return parsed
    if text == "":
        return []
    return [part.strip() for part in text.split(",")]


def _check_bounds(spec: InputSpec, comparable: Any, parse: Any) -> None:
    low = spec.min if spec.min is not None else spec.after
    high = spec.max if spec.max is not None else spec.before
    if low is not None and comparable < parse(low):
        raise ValueError(f"must be at least {low}, got {comparable_text(comparable)}")
    if high is not None and comparable > parse(high):
        raise ValueError(f"must be at most {high}, got {comparable_text(comparable)}")


def comparable_text(value: Any) -> str:
    if isinstance(value, datetime):
        return format_datetime(value)
    if isinstance(value, (date, time)):
        return value.isoformat()
    return str(value)


def _choice(spec: InputSpec, value: Any) -> str:
    text = _scalar_text(value, "one of the input's values")
    allowed = [str(v) for v in spec.values or []]
    if spec.values is not None and not spec.allowCustomValue and text not in allowed:
        raise ValueError(f"{text!r} is not one of {allowed}")
    return text


def coerce_value(spec: InputSpec, value: Any) -> Any:
    """The typed value of ``value`` for this input; ValueError says what is wrong."""
    kind = spec.type
    if kind == "STRING":
        text = _scalar_text(value, "a string")
        if spec.validator is not None and re.fullmatch(spec.validator, text) is None:
            raise ValueError(f"{text!r} does not match the validator {spec.validator!r}")
        return text
    if kind == "INT":
        number = _to_int(value)
        _check_bounds(spec, number, _to_int)
        return number
    if kind == "FLOAT":
        real = _to_float(value)
        _check_bounds(spec, real, _to_float)
        return real
    if kind in ("BOOLEAN", "BOOL"):
        return _to_bool(value)
    if kind in ("SELECT", "ENUM"):
        return _choice(spec, value)
    if kind == "MULTISELECT":
        return [_choice(spec, item) for item in _to_list(value, "a list of values")]
    if kind == "DATE":
        day = _to_date(value)
        _check_bounds(spec, day, _to_date)
        return day.isoformat()
    if kind == "DATETIME":
        moment = _to_datetime(value)
        _check_bounds(spec, moment, _to_datetime)
        return format_datetime(moment)
    if kind == "TIME":
        clock = _to_time(value)
        _check_bounds(spec, clock, _to_time)
        return clock.isoformat()
    if kind == "DURATION":
        delta = _to_duration(value)
        _check_bounds(spec, delta, _to_duration)
        return _scalar_text(value, "a duration").strip().upper()
    if kind == "JSON":
        if isinstance(value, str):
            try:
                return json.loads(value)
            except json.JSONDecodeError as exc:
                raise ValueError(f"invalid JSON: {exc.msg} at column {exc.colno}") from None
        return value
    if kind == "YAML":
        if isinstance(value, str):
            try:
                return YAML(typ="safe").load(value)
            except YAMLError as exc:
                raise ValueError(f"invalid YAML: {exc}") from None
        return value
    if kind == "ARRAY":
        item_spec = _ItemSpec(spec.itemType or "STRING")
        items = _to_list(value, "a list")
        result = []
        for index, item in enumerate(items):
            try:
                result.append(coerce_value(item_spec, item))
            except ValueError as exc:
                raise ValueError(f"item {index}: {exc}") from None
        return result
    if kind == "URI":
        text = _scalar_text(value, "a URI").strip()
        if not _URI.match(text):
            raise ValueError(f"expected a URI with a scheme (e.g. https://...), got {value!r}")
        return text
    if kind == "EMAIL":
        text = _scalar_text(value, "an email address").strip()
        if not _EMAIL.match(text):
            raise ValueError(f"expected an email address, got {value!r}")
        return text
    if kind in ("SECRET", "FILE"):
        return _scalar_text(value, "a string")
    raise ValueError(f"unsupported input type {kind!r}")


class _ItemSpec:
    """The declaration an ARRAY item is checked against: only its type."""

    def __init__(self, kind: str) -> None:
        self.id = "item"
        self.type = kind
        self.values: list[Any] | None = None
        self.allowCustomValue = True
        self.validator: str | None = None
        self.itemType: str | None = None
        self.min = self.max = self.after = self.before = None


def resolve_inputs(flow: Flow, given: dict[str, Any] | None) -> dict[str, Any]:
    """Typed inputs of one execution: given values coerced, defaults applied, all checked.

    Defaults are taken literally (an expression in them is left for the engine to render).
    Raises InputError listing every problem.
    """
    given = dict(given or {})
    problems: dict[str, str] = {}
    declared = {spec.id for spec in flow.inputs}
    for key in given:
        if key not in declared:
            known = ", ".join(sorted(declared)) or "none"
            problems[key] = f"unknown input (the flow declares: {known})"
    resolved: dict[str, Any] = {}
    for spec in flow.inputs:
        value = given.get(spec.id)
        source = "value"
        if value is None and spec.defaults is not None:
            value, source = spec.defaults, "defaults"
        if value is None:
            if spec.required:
                problems[spec.id] = "required, but no value was given and it has no defaults"
            resolved[spec.id] = None
            continue
        if source == "defaults" and is_expression(value):
            resolved[spec.id] = value
            continue
        try:
            resolved[spec.id] = coerce_value(spec, value)
        except ValueError as exc:
            where = " (from defaults)" if source == "defaults" else ""
            problems[spec.id] = f"{spec.type}{where}: {exc}"
    if problems:
        raise InputError(problems)
    return resolved


def secret_inputs(flow: Flow) -> set[str]:
    """Ids of SECRET inputs, whose values must be masked wherever they would appear."""
    return {spec.id for spec in flow.inputs if spec.type == "SECRET"}
