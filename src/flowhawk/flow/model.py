"""The flow: pydantic models of everything a flow file may say (the dialect's "A flow").

Tasks are the registry's classes (``tasks.registry``). Building a Flow from plain data
works (``Flow.model_validate``), but files go through ``flow.loader``, which reports every
problem of a file with its line.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, tzinfo
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, ClassVar, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from croniter.croniter import CroniterError
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from flowhawk.flow.inputs import coerce_value, is_expression
from flowhawk.tasks.base import Task
from flowhawk.tasks.core import normalise_labels
from flowhawk.tasks.registry import TaskList
from flowhawk.util.durations import parse_duration

ID_PATTERN = r"^[a-zA-Z0-9][a-zA-Z0-9_-]*$"
NAMESPACE_PATTERN = r"^[a-zA-Z0-9][a-zA-Z0-9_-]*(\.[a-zA-Z0-9][a-zA-Z0-9_-]*)*$"
INPUT_ID_PATTERN = r"^[a-zA-Z0-9][.a-zA-Z0-9_-]*$"

InputType = Literal[
    "STRING",
    "INT",
    "FLOAT",
    "BOOLEAN",
    "BOOL",
    "SELECT",
    "MULTISELECT",
    "ENUM",
    "DATE",
    "DATETIME",
    "TIME",
    "DURATION",
    "ARRAY",
    "JSON",
    "YAML",
    "URI",
    "EMAIL",
    "SECRET",
    "FILE",
]

State = Literal[
    "CREATED",
    "QUEUED",
    "RUNNING",
    "PAUSED",
    "RESTARTED",
    "SUCCESS",
    "WARNING",
    "FAILED",
    "KILLING",
    "KILLED",
    "CANCELLED",
    "RETRYING",
    "RETRIED",
    "SKIPPED",
]

SCHEDULE_TYPE = "io.kestra.plugin.core.trigger.Schedule"
SCHEDULE_TYPES = (SCHEDULE_TYPE, "io.kestra.core.models.triggers.types.Schedule")

#: which input types each type-specific property applies to
_PROPERTY_TYPES: dict[str, tuple[str, ...]] = {
    "values": ("SELECT", "MULTISELECT", "ENUM"),
    "allowCustomValue": ("SELECT", "MULTISELECT"),
    "expression": ("SELECT", "MULTISELECT"),
    "autoSelectFirst": ("SELECT", "MULTISELECT"),
    "isRadio": ("SELECT",),
    "validator": ("STRING",),
    "itemType": ("ARRAY",),
    "min": ("INT", "FLOAT", "DATE", "DATETIME", "TIME", "DURATION"),
    "max": ("INT", "FLOAT", "DATE", "DATETIME", "TIME", "DURATION"),
    "after": ("DATE", "DATETIME", "TIME"),
    "before": ("DATE", "DATETIME", "TIME"),
    "allowedFileExtensions": ("FILE",),
}

_CRON_NICKNAMES = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
_CRON_FIELDS = ("minute", "hour", "day-of-month", "month", "day-of-week")
_CRON_RANGES = {
    "second": "0-59",
    "minute": "0-59",
    "hour": "0-23",
    "day-of-month": "1-31",
    "month": "1-12 or JAN-DEC",
    "day-of-week": "0-7 or SUN-SAT",
}


class DependsOn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    inputs: list[str] = Field(default_factory=list)
    condition: str | None = None


class Input(BaseModel):
    """One flow input. ``defaults`` comes last so its check sees every other property."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=INPUT_ID_PATTERN)
    type: InputType
    description: str | None = None
    displayName: str | None = None
    required: bool = True
    values: list[Any] | None = None
    allowCustomValue: bool = False
    expression: str | None = None
    autoSelectFirst: bool = False
    isRadio: bool = False
    validator: str | None = None
    itemType: InputType | None = None
    min: Any = None
    max: Any = None
    after: Any = None
    before: Any = None
    allowedFileExtensions: list[str] | None = None
    dependsOn: DependsOn | None = None
    prefill: Any = None
    defaults: Any = None

    @model_validator(mode="before")
    @classmethod
    def _deprecated_names(cls, data: Any) -> Any:
        """Kestra's older spellings: ``name`` for ``id``, ``options`` for ``values``."""
        if isinstance(data, dict):
            data = dict(data)
            if "name" in data and "id" not in data:
                data["id"] = data.pop("name")
            if "options" in data and "values" not in data:
                data["values"] = data.pop("options")
        return data

    @field_validator(*_PROPERTY_TYPES)
    @classmethod
    def _applies_to_type(cls, value: Any, info: ValidationInfo) -> Any:
        kind = info.data.get("type")
        allowed = _PROPERTY_TYPES[info.field_name or ""]
        if kind is not None and value is not None and kind not in allowed:
            raise ValueError(f"`{info.field_name}` only applies to {' / '.join(allowed)} inputs")
        return value

    @field_validator("validator")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"invalid regular expression: {exc}") from None
        return value

    @field_validator("itemType")
    @classmethod
    def _item_type(cls, value: str | None) -> str | None:
        if value in ("ARRAY", "SELECT", "MULTISELECT", "ENUM", "FILE", "SECRET"):
            raise ValueError(f"an ARRAY cannot hold {value} items")
        return value

    @field_validator("min", "max", "after", "before")
    @classmethod
    def _bound(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None or info.data.get("type") is None:
            return value
        view = _spec_view(info.data, bounds=False)
        try:
            coerce_value(view, value)
        except ValueError as exc:
            raise ValueError(f"not a valid {view.type} bound: {exc}") from None
        return value

    @field_validator("defaults", "prefill")
    @classmethod
    def _value(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None or is_expression(value) or info.data.get("type") is None:
            return value
        try:
            coerce_value(_spec_view(info.data, bounds=True), value)
        except ValueError as exc:
            raise ValueError(f"invalid {info.data['type']} value: {exc}") from None
        return value

    @model_validator(mode="after")
    def _select_values(self) -> Input:
        if self.type in ("SELECT", "MULTISELECT", "ENUM"):
            if self.values is None and self.expression is None:
                raise ValueError(f"a {self.type} input needs `values` (or `expression`)")
        return self


def _spec_view(data: dict[str, Any], *, bounds: bool) -> Any:
    """An input-like object of already-validated properties, for checking one value."""
    fields: dict[str, Any] = {name: data.get(name) for name in Input.model_fields}
    fields["allowCustomValue"] = bool(fields["allowCustomValue"])
    if not bounds:
        fields.update(min=None, max=None, after=None, before=None)
    return SimpleNamespace(**fields)


class FlowOutput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=INPUT_ID_PATTERN)
    type: InputType
    value: Any
    description: str | None = None
    displayName: str | None = None
    required: bool = True


class Concurrency(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limit: int = Field(ge=1)
    behavior: Literal["QUEUE", "CANCEL", "FAIL"] = "QUEUE"


class PluginDefault(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: str = Field(min_length=1)
    values: dict[str, Any] = Field(default_factory=dict)
    forced: bool = False


def check_cron(expression: str, with_seconds: bool) -> None:
    """Raise ValueError saying precisely what is wrong with a Kestra cron expression."""
    text = expression.strip()
    if text.startswith("@"):
        if text.lower() not in _CRON_NICKNAMES:
            raise ValueError(
                f"unknown cron nickname {text!r} (known: {', '.join(_CRON_NICKNAMES)})"
            )
        return
    fields = text.split()
    names = (("second",) if with_seconds else ()) + _CRON_FIELDS
    if len(fields) != len(names):
        hint = (
            "; a six-field expression needs `withSeconds: true`"
            if len(fields) == 6 and not with_seconds
            else ""
        )
        raise ValueError(
            f"cron {text!r} has {len(fields)} field(s), expected {len(names)} "
            f"({' '.join(names)}){hint}"
        )
    for index, (name, field) in enumerate(zip(names, fields, strict=True)):
        probe = ["*"] * len(names)
        probe[index] = field
        if not croniter.is_valid(" ".join(probe), second_at_beginning=with_seconds):
            raise ValueError(
                f"cron {text!r}: invalid {name} field {field!r} (allowed: {_CRON_RANGES[name]})"
            )
    try:
        croniter(text, second_at_beginning=with_seconds)
    except CroniterError as exc:
        raise ValueError(f"cron {text!r}: {exc}") from None
    from flowhawk.engine.ticks import CronSchedule

    CronSchedule(text, "UTC", with_seconds)


if TYPE_CHECKING:
    from flowhawk.engine.ticks import CronSchedule


class ScheduleTrigger(BaseModel):
    """Kestra's Schedule trigger."""

    model_config = ConfigDict(extra="forbid")

    types: ClassVar[tuple[str, ...]] = SCHEDULE_TYPES

    id: str = Field(pattern=ID_PATTERN)
    type: Literal[
        "io.kestra.plugin.core.trigger.Schedule", "io.kestra.core.models.triggers.types.Schedule"
    ]
    description: str | None = None
    withSeconds: bool = False
    cron: str
    timezone: str = "UTC"
    inputs: dict[str, Any] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)
    disabled: bool = False
    recoverMissedSchedules: Literal["ALL", "LAST", "NONE"] = "ALL"
    stopAfter: list[State] = Field(default_factory=list)
    lateMaximumDelay: str | None = None
    #: Kestra stores a running backfill here; accepted and ignored (flowhawk keeps its own)
    backfill: dict[str, Any] | None = None

    @field_validator("labels", mode="before")
    @classmethod
    def _labels(cls, value: Any) -> dict[str, str]:
        return normalise_labels(value)

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str, info: ValidationInfo) -> str:
        check_cron(value, bool(info.data.get("withSeconds", False)))
        return value.strip()

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r} (expected an IANA name such as UTC or Europe/Paris)"
            ) from None
        return value

    @field_validator("lateMaximumDelay")
    @classmethod
    def _delay(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value)
        return value

    @property
    def tz(self) -> tzinfo:
        return ZoneInfo(self.timezone)

    def schedule(self) -> CronSchedule:
        """The trigger's ticks, with flowhawk's documented DST rules."""
        from flowhawk.engine.ticks import CronSchedule

        return CronSchedule(self.cron, self.timezone, self.withSeconds)

    def next_after(self, moment: datetime) -> datetime:
        return self.schedule().next_after(moment)

    def previous_before(self, moment: datetime) -> datetime:
        return self.schedule().previous_before(moment)


class Flow(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    id: str = Field(pattern=ID_PATTERN, max_length=100)
    namespace: str = Field(pattern=NAMESPACE_PATTERN, max_length=150)
    revision: int | None = Field(None, ge=1)
    description: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    disabled: bool = False
    inputs: list[Input] = Field(default_factory=list)
    variables: dict[str, Any] = Field(default_factory=dict)
    concurrency: Concurrency | None = None
    tasks: TaskList = Field(min_length=1)
    errors: TaskList = Field(default_factory=list)
    finally_: TaskList = Field(default_factory=list, alias="finally")
    outputs: list[FlowOutput] = Field(default_factory=list)
    pluginDefaults: list[PluginDefault] = Field(default_factory=list)
    triggers: list[ScheduleTrigger] = Field(default_factory=list)

    _source: str | None = PrivateAttr(default=None)

    #: context key the loader sets: it checks uniqueness itself, with line numbers
    CHECKED: ClassVar[str] = "flowhawk_checked"

    @field_validator("labels", mode="before")
    @classmethod
    def _labels(cls, value: Any) -> dict[str, str]:
        return normalise_labels(value)

    @model_validator(mode="after")
    def _unique_ids(self, info: ValidationInfo) -> Flow:
        if info.context and info.context.get(self.CHECKED):
            return self
        for what, ids in (
            ("task", [task.id for task in self.all_tasks()]),
            ("input", [spec.id for spec in self.inputs]),
            ("trigger", [trigger.id for trigger in self.triggers]),
            ("output", [output.id for output in self.outputs]),
        ):
            seen: set[str] = set()
            for item in ids:
                if item in seen:
                    raise ValueError(f"duplicate {what} id {item!r}")
                seen.add(item)
        return self

    @property
    def source(self) -> str | None:
        """The YAML text the flow was loaded from (None when built from data)."""
        return self._source

    @property
    def uid(self) -> str:
        return f"{self.namespace}.{self.id}"

    def walk(self) -> Iterator[Task]:
        """Every task, nested ones right after their parent, then errors, then finally."""

        def visit(tasks: list[Task]) -> Iterator[Task]:
            for task in tasks:
                yield task
                yield from visit(task.children())

        yield from visit(self.tasks)
        yield from visit(self.errors)
        yield from visit(self.finally_)

    def all_tasks(self) -> list[Task]:
        return list(self.walk())

    def find_task(self, task_id: str) -> Task | None:
        return next((task for task in self.walk() if task.id == task_id), None)

    def input(self, input_id: str) -> Input | None:
        return next((spec for spec in self.inputs if spec.id == input_id), None)
