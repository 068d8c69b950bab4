"""The flow model built from plain data (not through the loader)."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from flowhawk.flow.model import Flow, ScheduleTrigger, check_cron
from flowhawk.tasks.core import Log

LOG = {"type": "io.kestra.plugin.core.log.Log", "message": "x"}


def make(**extra) -> Flow:
    return Flow.model_validate(
        {"id": "f", "namespace": "demo", "tasks": [{"id": "a", **LOG}], **extra}
    )


def test_labels_map_or_list_become_strings() -> None:
    assert make(labels={"a": 1, "b": True, "c": "x"}).labels == {"a": "1", "b": "true", "c": "x"}
    assert make(labels=[{"key": "k", "value": False}]).labels == {"k": "false"}
    with pytest.raises(ValidationError, match="key, value"):
        make(labels=[{"name": "k"}])
    with pytest.raises(ValidationError, match="must not be empty"):
        make(labels={"": "x"})


def test_dispatch_and_duplicate_checks_without_the_loader() -> None:
    flow = make(errors=[{"id": "e", **LOG}])
    assert isinstance(flow.tasks[0], Log) and [t.id for t in flow.all_tasks()] == ["a", "e"]
    dumped = flow.model_dump(by_alias=True, exclude_defaults=True)
    assert dumped["tasks"] == [{"id": "a", **LOG}]
    with pytest.raises(ValidationError, match="duplicate task id 'a'"):
        make(finally_=[{"id": "a", **LOG}])
    with pytest.raises(ValidationError, match="duplicate input id 'i'"):
        make(inputs=[{"id": "i", "type": "STRING"}, {"id": "i", "type": "INT"}])
    with pytest.raises(ValidationError, match="unknown task type 'no.Such'"):
        make(errors=[{"id": "e", "type": "no.Such"}])
    assert make().source is None and make().uid == "demo.f"


def test_schedule_ticks_in_the_trigger_time_zone() -> None:
    trigger = ScheduleTrigger.model_validate(
        {
            "id": "t",
            "type": "io.kestra.plugin.core.trigger.Schedule",
            "cron": "0 9 1 * *",
            "timezone": "America/New_York",
        }
    )
    start = datetime(2020, 1, 15, tzinfo=UTC)
    nxt = trigger.next_after(start)
    assert nxt == datetime(2020, 2, 1, 9, 0, tzinfo=ZoneInfo("America/New_York"))
    assert trigger.previous_before(start) == datetime(
        2020, 1, 1, 9, tzinfo=ZoneInfo("America/New_York")
    )
    assert trigger.recoverMissedSchedules == "ALL"
    seconds = ScheduleTrigger.model_validate(
        {
            "id": "s",
            "type": "io.kestra.plugin.core.trigger.Schedule",
            "cron": "30 0 0 * * *",
            "withSeconds": True,
        }
    )
    assert seconds.next_after(start) == datetime(2020, 1, 15, 0, 0, 30, tzinfo=UTC)
    with pytest.raises(ValueError, match="no time zone"):
        trigger.next_after(datetime(2020, 1, 1))


def test_check_cron_messages() -> None:
    check_cron("@DAILY", False)
    with pytest.raises(ValueError, match=r"invalid month field '13' \(allowed: 1-12 or JAN-DEC\)"):
        check_cron("0 0 1 13 *", False)
    with pytest.raises(ValueError, match="expected 6"):
        check_cron("* * * * *", True)
