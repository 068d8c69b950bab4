"""The expression renderer: Pebble templates compiled to sandboxed Jinja2 and evaluated."""

from __future__ import annotations

import base64
import binascii
import contextvars
import functools
import json
import math
import os
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from jinja2 import Template, pass_context
from jinja2.exceptions import SecurityError, TemplateSyntaxError, UndefinedError
from jinja2.runtime import Context, LoopContext, Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

from flowhawk.errors import ExpressionError
from flowhawk.expr import dates, filters
from flowhawk.expr.filters import FlowUndefined, check_defined, stringify, type_name
from flowhawk.expr.pebble import FUNCTIONS, PREFIX, translate

#: ``render()`` re-renders until the text is stable, at most this many passes; nested
#: ``render()`` calls are capped at the same depth.
MAX_RENDER_DEPTH = 10
_SHOWN_TEMPLATE = 300
_LOOP_KEYS = {
    "index": "index0",
    "length": "length",
    "first": "first",
    "last": "last",
    "revindex": "revindex0",
}
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

_render_depth: contextvars.ContextVar[int] = contextvars.ContextVar(
    "flowhawk_render_depth", default=0
)
#: The renderer whose ``render`` is running: ``secret()``, ``read()`` and ``render()`` use its
#: hooks, while the environment and the compiled templates are shared by all renderers.
_active: contextvars.ContextVar[Renderer] = contextvars.ContextVar("flowhawk_renderer")


def _shown(template: str) -> str:
    return template if len(template) <= _SHOWN_TEMPLATE else template[: _SHOWN_TEMPLATE - 3] + "..."


def _locate(exc: ExpressionError, template: str) -> ExpressionError:
    """Add the template text to an error's message, once (nested renders keep the inner one)."""
    if getattr(exc, "_fh_located", False):
        return exc
    located = ExpressionError(f"{exc} in `{_shown(template)}`")
    located._fh_located = True  # type: ignore[attr-defined]
    return located


def _key_text(key: Any) -> str:
    if isinstance(key, str) and _IDENTIFIER.match(key):
        return f".{key}"
    return f"[{json.dumps(key) if isinstance(key, str) else stringify(key)}]"


# -- operator helpers (called by the translated Jinja code) ----------------------------------


def _at(obj: Any, key: Any, text: str) -> Any:
    """``obj.key`` / ``obj[key]``: map keys and list indexes only, never Python attributes."""
    check_defined(key)
    if isinstance(key, str) and key.startswith("_") and not isinstance(obj, Mapping):
        raise ExpressionError(f"access to `{key}` is not allowed in expressions")
    path = f"{text}{_key_text(key)}"
    if isinstance(obj, FlowUndefined):
        return obj.child(path)
    if isinstance(obj, Undefined):
        obj._fail_with_undefined_error()
    if isinstance(obj, Mapping):
        try:
            return obj[key]
        except KeyError:
            if isinstance(key, int) and not isinstance(key, bool) and str(key) in obj:
                return obj[str(key)]
            return FlowUndefined(reason=f"`{text}` has no key `{stringify(key)}`", path=path)
        except TypeError:
            raise ExpressionError(f"a {type_name(key)} cannot be a map key") from None
    if obj is None:
        return FlowUndefined(reason=f"`{text}` is null", path=path)
    if isinstance(obj, list | tuple):
        index: int | None = None
        if isinstance(key, int) and not isinstance(key, bool):
            index = key
        elif isinstance(key, float) and key.is_integer():
            index = int(key)
        elif isinstance(key, str) and key.isdigit():
            index = int(key)
        if index is None:
            reason = f"`{text}` is a list, it has no key `{stringify(key)}`"
        elif 0 <= index < len(obj):
            return obj[index]
        else:
            reason = f"`{text}` has no index {index} (it has {len(obj)} items)"
        return FlowUndefined(reason=reason, path=path)
    if isinstance(obj, LoopContext) and key in _LOOP_KEYS:
        return getattr(obj, _LOOP_KEYS[key])
    return FlowUndefined(
        reason=f"`{text}` is a {type_name(obj)}, it has no key `{stringify(key)}`", path=path
    )


def _missing(value: Any) -> bool:
    return value is None or isinstance(value, Undefined)


def _undefined(value: Any) -> bool:
    return isinstance(value, Undefined)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


def _eq(a: Any, b: Any) -> bool:
    check_defined(a, b)
    if isinstance(a, bool) != isinstance(b, bool):
        return False
    return bool(a == b)


def _compare(op: str, a: Any, b: Any) -> bool:
    check_defined(a, b)
    try:
        if op == "<":
            return bool(a < b)
        if op == ">":
            return bool(a > b)
        if op == "<=":
            return bool(a <= b)
        return bool(a >= b)
    except TypeError:
        raise ExpressionError(
            f"cannot compare a {type_name(a)} with a {type_name(b)} using `{op}`"
        ) from None


def _arith(op: str, a: Any, b: Any) -> Any:
    check_defined(a, b)
    if op == "+" and not (_is_number(a) and _is_number(b)):
        if isinstance(a, str) and isinstance(b, str):
            return a + b
        if isinstance(a, list | tuple) and isinstance(b, list | tuple):
            if len(a) + len(b) > filters.MAX_SEQUENCE:
                raise ExpressionError("list too long")
            return [*a, *b]
    if not (_is_number(a) and _is_number(b)):
        raise ExpressionError(f"cannot apply `{op}` to a {type_name(a)} and a {type_name(b)}")
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if b == 0:
        raise ExpressionError(f"division by zero in `{op}`")
    if isinstance(a, int) and isinstance(b, int):
        quotient = abs(a) // abs(b) * (1 if (a >= 0) == (b >= 0) else -1)
        return quotient if op == "/" else a - b * quotient  # Java truncates toward zero
    return a / b if op == "/" else math.fmod(a, b)


def _neg(value: Any) -> Any:
    check_defined(value)
    if not _is_number(value):
        raise ExpressionError(f"cannot negate a {type_name(value)}")
    return -value


def _pos(value: Any) -> Any:
    check_defined(value)
    if not _is_number(value):
        raise ExpressionError(f"unary `+` needs a number, got a {type_name(value)}")
    return value


def _cat(a: Any, b: Any) -> str:
    check_defined(a, b)
    return stringify(a) + stringify(b)


def _contains(container: Any, item: Any) -> bool:
    """Pebble's ``contains``: map key, list item (all items for a list), or substring."""
    check_defined(container, item)
    if container is None:
        return False
    items = list(item) if isinstance(item, list | tuple) else [item]
    if isinstance(container, Mapping):
        try:
            return all(i in container for i in items)
        except TypeError:
            return False
    if isinstance(container, list | tuple):
        return all(i in container for i in items)
    if isinstance(container, str):
        return all(stringify(i) in container for i in items)
    raise ExpressionError(
        f"`contains` needs a map, a list or a string, not a {type_name(container)}"
    )


def _iter(value: Any, targets: int) -> list[Any]:
    """What ``{% for %}`` walks: list items, or map entries (``entry.key``/``entry.value``,
    or ``k, v`` pairs with two loop variables); null walks nothing."""
    check_defined(value)
    if value is None:
        return []
    if isinstance(value, Mapping):
        if targets == 2:
            return list(value.items())
        return [{"key": k, "value": v} for k, v in value.items()]
    if isinstance(value, list | tuple):
        return list(value)
    raise ExpressionError(f"cannot loop over a {type_name(value)}")


def _mapof(value: dict[Any, Any]) -> dict[Any, Any]:
    check_defined(*value.keys(), *value.values())
    return value


def _range(start: Any, end: Any, step: Any = 1) -> list[int]:
    """Pebble's ``range`` and ``..``: inclusive of ``end``."""
    check_defined(start, end, step)
    for value in (start, end, step):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ExpressionError(f"range needs integers, got a {type_name(value)}")
    if step == 0:
        raise ExpressionError("range step cannot be 0")
    count = (end - start) // step + 1
    if count > filters.MAX_SEQUENCE:
        raise ExpressionError(f"range too large ({count} items, at most {filters.MAX_SEQUENCE})")
    return list(range(start, end + (1 if step > 0 else -1), step))


def _from_json(value: Any) -> Any:
    check_defined(value)
    if value is None or not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError as exc:
        raise ExpressionError(f"fromJson: invalid JSON ({exc})") from None


def _now(timeZone: str | None = None, timezone: str | None = None) -> str:  # noqa: N803
    tz = dates.zone(timeZone if timeZone is not None else timezone)
    return dates.java_date_format(datetime.now(UTC), "iso", tz)


def _extreme(pick: Callable[..., Any], name: str) -> Callable[..., Any]:
    def apply(*values: Any) -> Any:
        check_defined(*values)
        items = list(values[0]) if len(values) == 1 and isinstance(values[0], list) else values
        if not items:
            raise ExpressionError(f"{name}() needs at least one value")
        try:
            return pick(items)
        except TypeError:
            raise ExpressionError(f"{name}() cannot compare these values") from None

    return apply


# -- the renderer ----------------------------------------------------------------------------


def _active_renderer() -> Renderer:
    try:
        return _active.get()
    except LookupError:
        raise ExpressionError("this function can only run inside Renderer.render") from None


@pass_context
def _fn_render(ctx: Context, value: Any, recursive: bool = True) -> Any:
    """``render(x)``: render ``x`` again until it no longer changes (Kestra's behaviour)."""
    check_defined(value)
    if not isinstance(value, str):
        return value
    depth = _render_depth.get()
    if depth >= MAX_RENDER_DEPTH:
        raise ExpressionError(f"render() nested more than {MAX_RENDER_DEPTH} levels deep")
    renderer = _active_renderer()
    variables = {k: v for k, v in ctx.get_all().items() if not k.startswith(PREFIX)}
    token = _render_depth.set(depth + 1)
    try:
        text = value
        for _ in range(MAX_RENDER_DEPTH):
            if "{{" not in text and "{%" not in text:
                return text
            again = renderer.render(text, variables)
            if again == text or not filters.truth(recursive):
                return again
            text = again
        raise ExpressionError(
            f"render() did not settle after {MAX_RENDER_DEPTH} passes "
            f"(last result `{_shown(text)}`)"
        )
    finally:
        _render_depth.reset(token)


def _fn_read(uri: Any) -> str:
    check_defined(uri)
    if not isinstance(uri, str):
        raise ExpressionError(f"read() needs a file URI string, got a {type_name(uri)}")
    reader = _active_renderer().file_reader
    if reader is None:
        raise ExpressionError("read() is not available here (no file storage)")
    try:
        return reader(uri)
    except ExpressionError:
        raise
    except Exception as exc:  # noqa: BLE001 - the reader's failure, told to the user
        raise ExpressionError(f"read(`{uri}`) failed: {exc}") from None


def _fn_secret(name: Any) -> str:
    """``secret('NAME')``: environment variable ``SECRET_NAME``, base64-decoded; the value
    goes to the active renderer's ``secret_hook`` so that the engine can mask it."""
    check_defined(name)
    if not isinstance(name, str) or not name:
        raise ExpressionError("secret() needs a secret name")
    variable = f"SECRET_{name}"
    encoded = os.environ.get(variable)
    if encoded is None and name != name.upper():
        variable = f"SECRET_{name.upper()}"
        encoded = os.environ.get(variable)
    if encoded is None:
        raise ExpressionError(
            f"secret `{name}` is not defined (set the environment variable "
            f"SECRET_{name} to its base64-encoded value)"
        )
    try:
        value = base64.b64decode("".join(encoded.split()), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ExpressionError(
            f"secret `{name}`: environment variable {variable} is not valid base64"
        ) from None
    hook = _active_renderer().secret_hook
    if hook is not None:
        hook(value)
    return value


def _environment() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(
        undefined=FlowUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        finalize=stringify,
        cache_size=0,
    )
    env.globals.clear()
    env.filters = dict(filters.FILTERS)
    env.tests = dict(filters.TESTS)
    helpers: dict[str, Any] = {
        "at": _at,
        "truth": filters.truth,
        "eq": _eq,
        "compare": _compare,
        "arith": _arith,
        "neg": _neg,
        "pos": _pos,
        "cat": _cat,
        "contains": _contains,
        "missing": _missing,
        "undefined": _undefined,
        "iter": _iter,
        "mapof": _mapof,
    }
    functions: dict[str, Any] = {
        "render": _fn_render,
        "now": _now,
        "fromJson": _from_json,
        "json": _from_json,
        "jsonDecode": _from_json,
        "read": _fn_read,
        "secret": _fn_secret,
        "range": _range,
        "jq": filters.jq,
        "max": _extreme(max, "max"),
        "min": _extreme(min, "min"),
    }
    if set(functions) != FUNCTIONS:
        raise RuntimeError("pebble.FUNCTIONS and the registered functions differ")
    env.globals.update({PREFIX + name: func for name, func in helpers.items()})
    env.globals.update({f"{PREFIX}f_{name}": func for name, func in functions.items()})
    return env


_ENV = _environment()


@functools.lru_cache(maxsize=4096)
def _compile(template: str) -> Template:
    """The compiled Jinja template of a Pebble template (shared by every renderer)."""
    source = translate(template)
    try:
        return _ENV.from_string(source)
    except TemplateSyntaxError as exc:
        message = (exc.message or "invalid template").replace(
            "Jinja was looking for the following tags", "expected one of the tags"
        )
        raise ExpressionError(
            f"syntax error at line {exc.lineno}: {message} in `{_shown(template)}`"
        ) from None


class Renderer:
    """Renders Kestra (Pebble) expressions against a context mapping.

    ``secret_hook`` receives every secret value an expression reads (the engine masks them in
    logs); ``file_reader`` serves ``read(uri)``. Renderers are cheap: the environment and the
    compiled templates are shared.
    """

    def __init__(
        self,
        *,
        secret_hook: Callable[[str], None] | None = None,
        file_reader: Callable[[str], str] | None = None,
    ) -> None:
        self.secret_hook = secret_hook
        self.file_reader = file_reader

    # -- public API --------------------------------------------------------------------------
    def render(self, template: str, context: Mapping[str, Any]) -> str:
        """Render one template string; errors are :class:`ExpressionError`."""
        if not isinstance(template, str):
            raise TypeError(f"template must be a string, not {type(template).__name__}")
        if "{" not in template:
            return template
        try:
            compiled = _compile(template)
        except ExpressionError as exc:
            exc._fh_located = True  # type: ignore[attr-defined]
            raise
        variables = {k: v for k, v in context.items() if not str(k).startswith(PREFIX)}
        active = _active.set(self)
        try:
            return compiled.render(variables)
        except ExpressionError as exc:
            raise _locate(exc, template) from None
        except UndefinedError as exc:
            raise _locate(ExpressionError(exc.message or "undefined value"), template) from None
        except SecurityError as exc:
            raise _locate(ExpressionError(f"not allowed: {exc}"), template) from None
        except RecursionError:
            raise _locate(ExpressionError("expression nested too deeply"), template) from None
        except Exception as exc:  # noqa: BLE001 - any evaluation failure is the user's to read
            raise _locate(ExpressionError(f"cannot evaluate: {exc}"), template) from None
        finally:
            _active.reset(active)

    def render_deep(self, value: Any, context: Mapping[str, Any]) -> Any:
        """Render every string holding ``{{`` or ``{%`` inside dicts and lists; other values
        are returned unchanged. A failure's ``path`` attribute says which element failed
        (``[2]``, ``.headers.Authorization``)."""
        if isinstance(value, str):
            if "{{" in value or "{%" in value:
                return self.render(value, context)
            return value
        if isinstance(value, Mapping):
            out: dict[Any, Any] = {}
            for key, item in value.items():
                try:
                    rendered_key = self.render_deep(key, context) if isinstance(key, str) else key
                    out[rendered_key] = self.render_deep(item, context)
                except ExpressionError as exc:
                    exc.path = _key_text(key) + (getattr(exc, "path", None) or "")  # type: ignore[attr-defined]
                    raise
            return out
        if isinstance(value, list | tuple):
            items = []
            for index, item in enumerate(value):
                try:
                    items.append(self.render_deep(item, context))
                except ExpressionError as exc:
                    exc.path = f"[{index}]" + (getattr(exc, "path", None) or "")  # type: ignore[attr-defined]
                    raise
            return items
        return value

    def is_true(self, rendered: Any) -> bool:
        """The dialect's truth of a rendered condition: false for None/False and, ignoring
        case and surrounding blanks, 'false', '0', 'null' and ''."""
        if rendered is None or rendered is False:
            return False
        if isinstance(rendered, str):
            return rendered.strip().lower() not in ("false", "0", "", "null")
        if _is_number(rendered):
            return rendered != 0
        return True
