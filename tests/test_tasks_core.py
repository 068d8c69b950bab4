"""Core tasks run against a real RunContext."""

from __future__ import annotations

import threading
import time

import pytest
from pydantic import ValidationError

from flowhawk.errors import TaskError, TaskKilled
from flowhawk.tasks.core import (
    Assert,
    Echo,
    Fail,
    Labels,
    Log,
    OutputValues,
    PurgeCurrentExecutionFiles,
    Return,
    Sleep,
    is_true,
)
from flowhawk.tasks.registry import task_class


def test_log_levels_and_lists(make_ctx) -> None:
    ctx = make_ctx({"inputs": {"name": "Ada"}})
    Log(id="l", type="io.kestra.plugin.core.log.Log", message="hi {{ inputs.name }}").run(ctx)
    Log(
        id="w",
        type="io.kestra.plugin.core.log.Log",
        message=["a", "b {{ inputs.name }}"],
        level="WARN",
    ).run(ctx)
    for level in ("TRACE", "DEBUG", "ERROR"):
        Log(id="x", type="io.kestra.plugin.core.log.Log", message=level.lower(), level=level).run(
            ctx
        )
    assert list(ctx.logs) == [
        ("INFO", "hi Ada"),
        ("WARN", "a"),
        ("WARN", "b Ada"),
        ("TRACE", "trace"),
        ("DEBUG", "debug"),
        ("ERROR", "error"),
    ]
    with pytest.raises(ValidationError):
        Log(id="x", type="io.kestra.plugin.core.log.Log", message="m", level="LOUD")


def test_log_render_error_names_the_property(make_ctx) -> None:
    ctx = make_ctx({}, task_id="l")
    with pytest.raises(TaskError, match="message"):
        Log(id="l", type="io.kestra.plugin.core.log.Log", message=["ok", "{{ missing.name }}"]).run(
            ctx
        )


def test_echo_return_output_values(make_ctx) -> None:
    ctx = make_ctx({"inputs": {"n": 3}})
    Echo(id="e", type="io.kestra.core.tasks.debugs.Echo", format="n={{ inputs.n }}").run(ctx)
    assert list(ctx.logs) == [("INFO", "n=3")]
    assert Return(id="r", type="io.kestra.plugin.core.debug.Return", format="{{ inputs.n }}!").run(
        ctx
    ) == {"value": "3!"}
    assert Return(id="r", type="io.kestra.plugin.core.debug.Return").run(ctx) == {"value": None}
    values = OutputValues(
        id="o",
        type="io.kestra.plugin.core.output.OutputValues",
        values={"a": "{{ inputs.n }}", "nested": {"b": ["x{{ inputs.n }}"]}, "c": 5},
    )
    assert values.run(ctx) == {"values": {"a": "3", "nested": {"b": ["x3"]}, "c": 5}}


def test_labels_map_and_list_are_rendered_and_added(make_ctx) -> None:
    ctx = make_ctx({"inputs": {"taxi": "green"}})
    Labels(
        id="l",
        type="io.kestra.plugin.core.execution.Labels",
        labels={"taxi": "{{ inputs.taxi }}", "ok": True},
    ).run(ctx)
    Labels(
        id="l2",
        type="io.kestra.plugin.core.execution.Labels",
        labels=[{"key": "year", "value": 2020}],
    ).run(ctx)
    assert ctx.labels == {"taxi": "green", "ok": "true", "year": "2020"}
    with pytest.raises(ValidationError, match="key, value"):
        Labels(id="l", type="io.kestra.plugin.core.execution.Labels", labels=[{"k": "v"}])
    with pytest.raises(ValidationError, match="at least one label"):
        Labels(id="l", type="io.kestra.plugin.core.execution.Labels", labels={})


def test_sleep_waits_then_returns(make_ctx) -> None:
    ctx = make_ctx()
    started = time.monotonic()
    assert Sleep(id="s", type="io.kestra.plugin.core.flow.Sleep", duration="PT0.2S").run(ctx) == {}
    assert time.monotonic() - started >= 0.19


def test_sleep_is_woken_by_cancel(make_ctx) -> None:
    ctx = make_ctx()
    threading.Timer(0.2, ctx.cancel_event.set).start()
    started = time.monotonic()
    with pytest.raises(TaskKilled):
        Sleep(id="s", type="io.kestra.plugin.core.flow.Sleep", duration="PT1H").run(ctx)
    assert time.monotonic() - started < 5


def test_sleep_duration_checked(make_ctx) -> None:
    with pytest.raises(ValidationError, match="invalid ISO-8601 duration"):
        Sleep(id="s", type="io.kestra.plugin.core.flow.Sleep", duration="10s")
    ctx = make_ctx({"vars": {"d": "soon"}})
    task = Sleep(id="s", type="io.kestra.plugin.core.flow.Sleep", duration="{{ vars.d }}")
    with pytest.raises(TaskError, match="duration"):
        task.run(ctx)


def test_purge_deletes_this_executions_files(make_ctx, tmp_path) -> None:
    ctx = make_ctx()
    local = tmp_path / "a.csv"
    local.write_text("x\n")
    uri = ctx.put_file(local)
    path, uri2 = ctx.new_file_path("b.csv")
    path.write_text("y\n")
    assert ctx.file_path(uri).exists() and ctx.file_path(uri2).exists()
    out = PurgeCurrentExecutionFiles(
        id="p", type="io.kestra.plugin.core.storage.PurgeCurrentExecutionFiles"
    ).run(ctx)
    assert out == {"count": 2}
    assert ctx.logs[-1][0] == "INFO" and "purged 2 file(s)" in ctx.logs[-1][1]
    with pytest.raises(TaskError, match="not found"):
        ctx.file_path(uri)


def test_fail_and_condition(make_ctx) -> None:
    ctx = make_ctx({"inputs": {"mode": "ok"}})
    with pytest.raises(TaskError, match="^Task failure$"):
        Fail(id="f", type="io.kestra.plugin.core.execution.Fail").run(ctx)
    cond = Fail(
        id="f",
        type="io.kestra.plugin.core.execution.Fail",
        condition="{{ inputs.mode == 'fail' }}",
        errorMessage="mode was {{ inputs.mode }}",
    )
    assert cond.run(ctx) == {}
    with pytest.raises(TaskError, match="^mode was fail$"):
        cond.run(make_ctx({"inputs": {"mode": "fail"}}))


def test_assert(make_ctx) -> None:
    ctx = make_ctx({"inputs": {"n": 3}})
    ok = Assert(
        id="a", type="io.kestra.plugin.core.execution.Assert", conditions=["{{ inputs.n > 1 }}"]
    )
    assert ok.run(ctx) == {}
    bad = Assert(
        id="a",
        type="io.kestra.plugin.core.execution.Assert",
        conditions=["{{ inputs.n > 1 }}", "{{ inputs.n > 5 }}"],
    )
    with pytest.raises(TaskError, match=r"1 assertion\(s\) failed: \{\{ inputs.n > 5 \}\}"):
        bad.run(ctx)


def test_truthiness() -> None:
    for value in (None, False, "false", "FALSE", " 0 ", "", "null", "-0"):
        assert not is_true(value)
    for value in (True, "true", "1", "yes", 2, "anything"):
        assert is_true(value)


def test_registry_names() -> None:
    assert task_class("io.kestra.plugin.core.log.Log") is Log
    assert task_class("io.kestra.core.tasks.log.Log") is Log
    assert task_class("io.kestra.core.tasks.storages.PurgeExecution") is PurgeCurrentExecutionFiles
    assert task_class("io.kestra.core.tasks.executions.Fail") is Fail
    assert task_class("io.kestra.plugin.nope.Foo") is None
    for name in ("io.kestra.plugin.core.flow.If", "io.kestra.plugin.core.flow.ForEach"):
        cls = task_class(name)
        assert cls is not None and cls.flowable


def test_registry_skips_missing_modules_but_not_broken_ones(tmp_path, monkeypatch) -> None:
    from flowhawk.tasks import registry

    assert registry._import_optional("flowhawk.tasks.not_written_yet") is None
    (tmp_path / "fh_broken_tasks.py").write_text("import fh_no_such_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError, match="fh_no_such_dependency"):
        registry._import_optional("fh_broken_tasks")
