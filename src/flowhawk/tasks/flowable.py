"""Flowable tasks: their properties and children. The engine schedules them itself.

``task_lists`` names (Python field names) the properties that hold child tasks, so the
loader can build and validate each child with its own line numbers.
EachSequential/EachParallel are Kestra's older loops; they are ForEach subclasses, so the
engine only needs to know ForEach.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

from pydantic import Field, field_validator, model_validator

from flowhawk.tasks.base import Task
from flowhawk.tasks.core import normalise_labels
from flowhawk.tasks.registry import TaskList


class FlowableTask(Task):
    flowable: ClassVar[bool] = True
    #: fields holding child task lists, in the order they may run
    task_lists: ClassVar[tuple[str, ...]] = ("tasks", "errors")

    def children(self) -> list[Task]:
        result: list[Task] = []
        for name in self.task_lists:
            result.extend(getattr(self, name) or [])
        return result


class If(FlowableTask):
    types: ClassVar[tuple[str, ...]] = (
        "io.kestra.plugin.core.flow.If",
        "io.kestra.core.tasks.flows.If",
    )
    task_lists: ClassVar[tuple[str, ...]] = ("then", "else_", "errors")

    condition: str | bool
    then: TaskList = Field(min_length=1)
    else_: TaskList = Field(default_factory=list, alias="else")
    errors: TaskList = Field(default_factory=list)


class Sequential(FlowableTask):
    types: ClassVar[tuple[str, ...]] = (
        "io.kestra.plugin.core.flow.Sequential",
        "io.kestra.core.tasks.flows.Sequential",
    )

    tasks: TaskList = Field(min_length=1)
    errors: TaskList = Field(default_factory=list)


class Parallel(FlowableTask):
    """Runs its tasks at once; ``concurrent`` caps how many (0: no cap)."""

    types: ClassVar[tuple[str, ...]] = (
        "io.kestra.plugin.core.flow.Parallel",
        "io.kestra.core.tasks.flows.Parallel",
    )

    tasks: TaskList = Field(min_length=1)
    errors: TaskList = Field(default_factory=list)
    concurrent: int = Field(0, ge=0)


def _check_values(value: Any) -> Any:
    """A literal string must hold a JSON list; an expression is checked when rendered."""
    if isinstance(value, str) and "{{" not in value and "{%" not in value:
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"must be a list, or a JSON array in a string: {exc.msg}") from exc
        if not isinstance(parsed, list):
            raise ValueError("a string value must hold a JSON array")
    return value


class ForEach(FlowableTask):
    """Runs ``tasks`` once per value (``taskrun.value``); ``concurrencyLimit`` 0 = no cap."""

    types: ClassVar[tuple[str, ...]] = ("io.kestra.plugin.core.flow.ForEach",)

    values: str | list[Any]
    concurrencyLimit: int = Field(1, ge=0)
    tasks: TaskList = Field(min_length=1)
    errors: TaskList = Field(default_factory=list)

    @field_validator("values")
    @classmethod
    def _values(cls, value: Any) -> Any:
        return _check_values(value)

    def parse_values(self, rendered: Any) -> list[Any]:
        """The iteration values once ``values`` is rendered (a list, or JSON text of one)."""
        if isinstance(rendered, list):
            return rendered
        if isinstance(rendered, str):
            try:
                parsed = json.loads(rendered)
            except json.JSONDecodeError as exc:
                raise ValueError(f"`values` did not render to a JSON array: {exc.msg}") from exc
            if isinstance(parsed, list):
                return parsed
        raise ValueError(f"`values` must be a list, got {rendered!r}")


class EachSequential(ForEach):
    """Kestra's older sequential loop: ``value`` instead of ``values``."""

    types: ClassVar[tuple[str, ...]] = (
        "io.kestra.plugin.core.flow.EachSequential",
        "io.kestra.core.tasks.flows.EachSequential",
    )

    values: str | list[Any] = Field(alias="value")
    concurrencyLimit: int = Field(1, ge=1, le=1, exclude=True)


class EachParallel(ForEach):
    """Kestra's older parallel loop: ``value`` and ``concurrent`` (0 = no cap)."""

    types: ClassVar[tuple[str, ...]] = (
        "io.kestra.plugin.core.flow.EachParallel",
        "io.kestra.core.tasks.flows.EachParallel",
    )

    values: str | list[Any] = Field(alias="value")
    concurrencyLimit: int = Field(0, ge=0, alias="concurrent")


class Subflow(FlowableTask):
    """Starts another flow's execution; with ``wait`` it ends as that execution ends."""

    types: ClassVar[tuple[str, ...]] = (
        "io.kestra.plugin.core.flow.Subflow",
        "io.kestra.core.tasks.flows.Subflow",
        "io.kestra.core.tasks.flows.Flow",
    )
    task_lists: ClassVar[tuple[str, ...]] = ()

    namespace: str
    flowId: str
    inputs: dict[str, Any] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)
    wait: bool = True
    transmitFailed: bool = True
    inheritLabels: bool = False
    revision: int | None = Field(None, ge=1)

    @field_validator("labels", mode="before")
    @classmethod
    def _labels(cls, value: Any) -> dict[str, str]:
        return normalise_labels(value)

    @model_validator(mode="after")
    def _transmit(self) -> Subflow:
        if self.transmitFailed and not self.wait:
            # Kestra ignores transmitFailed without wait; so do we, explicitly
            self.transmitFailed = False
        return self
