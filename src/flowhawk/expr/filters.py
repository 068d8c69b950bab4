"""Values, filters and tests of the expression language (Pebble core + Kestra extensions).

Every filter refuses an undefined input or argument with the undefined value's own message
(``default`` excepted), so a typo never turns into an empty string.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import json
import math
import re
import unicodedata
import urllib.parse
from collections.abc import Callable, Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import jq as jqlib
from jinja2 import StrictUndefined, Undefined

from flowhawk.errors import ExpressionError
from flowhawk.expr import dates
from flowhawk.expr.dates import type_name

MAX_SEQUENCE = 100_000


class FlowUndefined(StrictUndefined):
    """An undefined value that remembers why it is undefined and the path that reached it.

    Reading a key of it yields another undefined value (so ``a.b.c ?? 'd'`` works); any other
    use raises with the first reason, e.g. "`outputs` has no key `extract`".
    """

    __slots__ = ("_fh_reason", "_fh_path")

    def __init__(
        self,
        hint: str | None = None,
        obj: Any = None,
        name: str | None = None,
        exc: type[Exception] = ExpressionError,
        *,
        reason: str | None = None,
        path: str | None = None,
    ) -> None:
        super().__init__(hint, obj, name, exc)  # type: ignore[arg-type]
        self._fh_reason = reason or (f"undefined name `{name}`" if name else hint or "undefined")
        self._fh_path = path or name or ""

    @property
    def _undefined_message(self) -> str:
        reason = self._fh_reason
        if self._fh_path and f"`{self._fh_path}`" not in reason:
            return f"{reason} (reading `{self._fh_path}`)"
        return reason

    def child(self, path: str) -> FlowUndefined:
        return FlowUndefined(exc=self._undefined_exception, reason=self._fh_reason, path=path)

    def fail(self) -> Any:
        return self._fail_with_undefined_error()


def check_defined(*values: Any) -> None:
    for value in values:
        if isinstance(value, Undefined):
            value._fail_with_undefined_error()


def strict(func: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a filter/function so that undefined arguments raise their own message."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        check_defined(*args, *kwargs.values())
        return func(*args, **kwargs)

    return wrapper


# -- rendering values ------------------------------------------------------------------------


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return dates.iso(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    if isinstance(value, Undefined):
        value._fail_with_undefined_error()
    raise ExpressionError(f"cannot convert a {type(value).__name__} to JSON")


def to_json(value: Any, pretty: bool = False) -> str:
    """JSON text as Kestra writes it: compact, non-ASCII kept as is."""
    check_defined(value)
    try:
        if pretty:
            return json.dumps(value, ensure_ascii=False, indent=2, default=_json_default)
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=_json_default)
    except ValueError as exc:  # NaN/inf are allowed by Python; circular refs are not
        raise ExpressionError(f"cannot convert to JSON: {exc}") from None


def jsonable(value: Any) -> Any:
    """``value`` with only JSON types (dates as ISO strings), for jq."""
    return json.loads(to_json(value))


def format_float(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    text = repr(value)
    if "e" in text:  # Java writes 1.0E20 where Python writes 1e+20
        mantissa, exponent = text.split("e")
        if "." not in mantissa:
            mantissa += ".0"
        return f"{mantissa}E{int(exponent)}"
    return text


def stringify(value: Any) -> str:
    """How a value prints in ``{{ }}``: true/false, null as '', maps and lists as JSON."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return format_float(value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return dates.iso(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Mapping | list | tuple):
        return to_json(value if not isinstance(value, Mapping) else dict(value))
    if isinstance(value, Undefined):
        value._fail_with_undefined_error()
    raise ExpressionError(f"cannot render a {type(value).__name__} value")


def truth(value: Any) -> bool:
    """Truthiness in conditions: the strings 'false', '0', 'null' and '' are false too."""
    check_defined(value)
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return value.strip().lower() not in ("false", "0", "", "null")
    if isinstance(value, int | float | Decimal):
        return value != 0
    if isinstance(value, Mapping | list | tuple):
        return len(value) > 0
    return True


# -- tests -----------------------------------------------------------------------------------


def is_empty(value: Any) -> bool:
    check_defined(value)
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, Mapping | list | tuple):
        return len(value) == 0
    return False


def _integer(value: Any, what: str) -> int:
    check_defined(value)
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        raise ExpressionError(f"{what} needs an integer, got {type_name(value)}")
    return int(value)


def _is_json(value: Any) -> bool:
    check_defined(value)
    if not isinstance(value, str):
        return False
    try:
        json.loads(value)
    except ValueError:
        return False
    return True


TESTS: dict[str, Callable[..., bool]] = {
    "defined": lambda value: not isinstance(value, Undefined),
    "null": strict(lambda value: value is None),
    "none": strict(lambda value: value is None),
    "empty": is_empty,
    "even": lambda value: _integer(value, "`even`") % 2 == 0,
    "odd": lambda value: _integer(value, "`odd`") % 2 == 1,
    "iterable": strict(lambda value: isinstance(value, list | tuple | Mapping)),
    "map": strict(lambda value: isinstance(value, Mapping)),
    "json": _is_json,
    "divisibleby": lambda value, n: _integer(value, "`divisibleby`") % _integer(n, "divisor") == 0,
}


# -- filters ---------------------------------------------------------------------------------


def _text(value: Any, filter_name: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping | list | tuple):
        raise ExpressionError(f"`{filter_name}` expects a string, got a {type_name(value)}")
    return stringify(value)


def _string_filter(name: str, func: Callable[[str], Any]) -> Callable[..., Any]:
    def apply(value: Any) -> Any:
        return None if value is None else func(_text(value, name))

    return strict(apply)


def _default(value: Any, default: Any = None) -> Any:
    if isinstance(value, Undefined) or is_empty(value):
        return default
    return value


def _length(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, str | Mapping | list | tuple):
        return len(value)
    raise ExpressionError(f"`length` expects a string, list or map, got a {type_name(value)}")


def _edge(value: Any, last: bool) -> Any:
    if value is None:
        return None
    if isinstance(value, str | list | tuple):
        if not value:
            return None
        return value[-1] if last else value[0]
    name = "last" if last else "first"
    raise ExpressionError(f"`{name}` expects a string or a list, got a {type_name(value)}")


def _join(value: Any, separator: str = "") -> Any:
    if value is None:
        return None
    if not isinstance(value, list | tuple):
        raise ExpressionError(f"`join` expects a list, got a {type_name(value)}")
    return str(separator).join(stringify(item) for item in value)


def _split(value: Any, delimiter: str, limit: int | None = None) -> Any:
    """Java ``String.split`` on a literal delimiter (trailing empty parts dropped)."""
    if value is None:
        return None
    text = _text(value, "split")
    if not isinstance(delimiter, str) or not delimiter:
        raise ExpressionError("`split` needs a non-empty delimiter string")
    if limit is not None and limit > 0:
        return text.split(delimiter, limit - 1)
    parts = text.split(delimiter)
    if limit is None or limit == 0:
        while parts and parts[-1] == "":
            parts.pop()
    return parts


def _java_replacement(replacement: str) -> str:
    r"""Java ``$1`` / ``${name}`` group references as Python ``\g<1>``."""
    out, i = [], 0
    while i < len(replacement):
        ch = replacement[i]
        if ch == "\\" and i + 1 < len(replacement):
            out.append(replacement[i + 1].replace("\\", "\\\\"))
            i += 2
        elif ch == "$" and i + 1 < len(replacement) and replacement[i + 1].isdigit():
            j = i + 1
            while j < len(replacement) and replacement[j].isdigit():
                j += 1
            out.append(f"\\g<{replacement[i + 1 : j]}>")
            i = j
        elif ch == "$" and replacement.startswith("${", i) and "}" in replacement[i:]:
            j = replacement.index("}", i)
            out.append(f"\\g<{replacement[i + 2 : j]}>")
            i = j + 1
        else:
            out.append("\\\\" if ch == "\\" else ch)
            i += 1
    return "".join(out)


def _replace(value: Any, target: Any, replacement: Any = None, regexp: bool = False) -> Any:
    """``replace({'a': 'b', ...})`` (Pebble) or ``replace('a', 'b')``; ``regexp=true`` for
    Java regular expressions with ``$1`` group references."""
    if value is None:
        return None
    text = _text(value, "replace")
    if isinstance(target, Mapping):
        if replacement is not None:
            raise ExpressionError("`replace` takes either a map or two strings")
        pairs = [(str(k), stringify(v)) for k, v in target.items()]
    elif isinstance(target, str):
        if replacement is None:
            raise ExpressionError("`replace` needs a replacement string")
        pairs = [(target, stringify(replacement))]
    else:
        raise ExpressionError("`replace` takes a map of replacements or two strings")
    for search, repl in pairs:
        if regexp:
            try:
                text = re.sub(search, _java_replacement(repl), text)
            except re.error as exc:
                raise ExpressionError(f"invalid regular expression `{search}`: {exc}") from None
        elif search:
            text = text.replace(search, repl)
    return text


def _slugify(value: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", value).encode("ascii", "ignore").decode("ascii")
    return re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")


def _number(value: Any, kind: str | None = None) -> Any:
    """Parse a string to an int or a float (``kind`` forces INT/LONG/FLOAT/DOUBLE...)."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ExpressionError("`number` cannot convert a boolean")
    if isinstance(value, int | float):
        number: int | float = value
    elif isinstance(value, str):
        text = value.strip().replace("_", "")
        try:
            if re.fullmatch(r"[+-]?0[xX][0-9a-fA-F]+", text):
                number = int(text, 16)
            elif re.fullmatch(r"[+-]?\d+[lL]?", text):
                number = int(text.rstrip("lL"))
            else:
                number = float(text.rstrip("fFdD"))
        except ValueError:
            raise ExpressionError(f"`number` cannot parse `{value}`") from None
    else:
        raise ExpressionError(f"`number` expects a string, got a {type_name(value)}")
    if kind is None:
        return number
    key = str(kind).upper()
    if key in ("INT", "INTEGER", "LONG", "BIGINTEGER", "SHORT", "BYTE"):
        return int(number)
    if key in ("FLOAT", "DOUBLE", "BIGDECIMAL"):
        return float(number)
    raise ExpressionError(f"unknown `number` type `{kind}` (INT, LONG, FLOAT, DOUBLE...)")


def _abs(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise ExpressionError(f"`abs` expects a number, got a {type_name(value)}")
    return abs(value)


def _keys(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, Mapping):
        return list(value.keys())
    if isinstance(value, list | tuple):
        return list(range(len(value)))
    raise ExpressionError(f"`keys` expects a map, got a {type_name(value)}")


def _values(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, Mapping):
        return list(value.values())
    raise ExpressionError(f"`values` expects a map, got a {type_name(value)}")


@functools.lru_cache(maxsize=512)
def _jq_program(program: str) -> Any:
    try:
        return jqlib.compile(program)
    except ValueError as exc:
        raise ExpressionError(f"invalid jq filter `{program}`: {exc}") from None


def jq(value: Any, program: Any) -> Any:
    """The list of all results of jq ``program`` on ``value`` (a JSON string is parsed)."""
    check_defined(value, program)
    if not isinstance(program, str):
        raise ExpressionError("`jq` needs a filter string such as '.items[0]'")
    if value is None:
        return None
    data: Any = value
    if isinstance(value, str):
        try:
            data = json.loads(value)
        except ValueError:
            data = value
    else:
        data = jsonable(value)
    try:
        return list(_jq_program(program).input_value(data).all())
    except ValueError as exc:
        raise ExpressionError(f"jq filter `{program}` failed: {exc}") from None


def _sequence(value: Any, name: str) -> list[Any] | str:
    if isinstance(value, str):
        return value
    if isinstance(value, list | tuple):
        return list(value)
    raise ExpressionError(f"`{name}` expects a list or a string, got a {type_name(value)}")


def _sorted(value: Any, reverse: bool) -> Any:
    if value is None:
        return None
    if not isinstance(value, list | tuple):
        raise ExpressionError(f"`sort` expects a list, got a {type_name(value)}")
    try:
        return sorted(value, reverse=reverse)
    except TypeError:
        raise ExpressionError("`sort` cannot compare the items of this list") from None


def _reverse(value: Any) -> Any:
    if value is None:
        return None
    seq = _sequence(value, "reverse")
    return seq[::-1]


def _slice(value: Any, fromIndex: int = 0, toIndex: int | None = None) -> Any:  # noqa: N803
    if value is None:
        return None
    seq = _sequence(value, "slice")
    end = len(seq) if toIndex is None else _integer(toIndex, "`slice`")
    return seq[_integer(fromIndex, "`slice`") : end]


def _merge(value: Any, other: Any) -> Any:
    if isinstance(value, Mapping) and isinstance(other, Mapping):
        return {**value, **other}
    if isinstance(value, list | tuple):
        return [*value, *(other if isinstance(other, list | tuple) else [other])]
    raise ExpressionError("`merge` expects two maps or lists")


def _abbreviate(value: Any, length: int) -> Any:
    if value is None:
        return None
    text = _text(value, "abbreviate")
    width = _integer(length, "`abbreviate`")
    if len(text) <= width:
        return text
    if width < 4:
        raise ExpressionError("`abbreviate` needs a length of at least 4")
    return text[: width - 3] + "..."


def _title(text: str) -> str:
    return re.sub(r"(^|\s)(\S)", lambda m: m.group(1) + m.group(2).upper(), text)


def _b64decode(text: str) -> str:
    try:
        return base64.b64decode(text.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ExpressionError("`base64decode`: the input is not valid base64 text") from None


def _flatten(value: Any) -> Any:
    if not isinstance(value, list | tuple):
        raise ExpressionError(f"`flatten` expects a list, got a {type_name(value)}")
    out: list[Any] = []
    for item in value:
        out.extend(item if isinstance(item, list | tuple) else [item])
    return out


def _distinct(value: Any) -> Any:
    if not isinstance(value, list | tuple):
        raise ExpressionError(f"`distinct` expects a list, got a {type_name(value)}")
    out: list[Any] = []
    for item in value:
        if item not in out:
            out.append(item)
    return out


def _chunk(value: Any, size: int) -> Any:
    if not isinstance(value, list | tuple):
        raise ExpressionError(f"`chunk` expects a list, got a {type_name(value)}")
    step = _integer(size, "`chunk`")
    if step < 1:
        raise ExpressionError("`chunk` size must be at least 1")
    return [list(value[i : i + step]) for i in range(0, len(value), step)]


def _indent(value: Any, amount: int, prefix: str = " ", newline: bool = False) -> Any:
    if value is None:
        return None
    pad = str(prefix) * _integer(amount, "`indent`")
    lines = _text(value, "indent").split("\n")
    if newline:
        return "\n" + "\n".join(pad + line if line else line for line in lines)
    return "\n".join([lines[0], *(pad + line if line else line for line in lines[1:])])


def _between(value: Any, sep: str, after: bool, last: bool) -> Any:
    if value is None:
        return None
    text = _text(value, "substring")
    separator = str(sep)
    index = text.rfind(separator) if last else text.find(separator)
    if index < 0:
        return "" if after else text
    return text[index + len(separator) :] if after else text[:index]


def _hash(algorithm: str) -> Callable[..., Any]:
    return _string_filter(algorithm, lambda s: hashlib.new(algorithm, s.encode()).hexdigest())


def _date(
    value: Any,
    format: str = "iso",  # noqa: A002 - Kestra's argument name
    existingFormat: str | None = None,  # noqa: N803
    timeZone: str | None = None,  # noqa: N803
    locale: str | None = None,
    timezone: str | None = None,
) -> Any:
    if value is None:
        return None
    tz = dates.zone(timeZone if timeZone is not None else timezone)
    moment = dates.parse_date(value, existingFormat, tz)
    return dates.java_date_format(moment, str(format), tz)


def _date_add(
    value: Any,
    amount: int,
    unit: str,
    format: str = "iso",  # noqa: A002 - Kestra's argument name
    timeZone: str | None = None,  # noqa: N803
    existingFormat: str | None = None,  # noqa: N803
    locale: str | None = None,
    timezone: str | None = None,
) -> Any:
    if value is None:
        return None
    tz_name = timeZone if timeZone is not None else timezone
    moment = dates.parse_date(value, existingFormat, dates.zone(tz_name))
    shifted = dates.date_add(moment, amount, unit, tz_name)
    return dates.java_date_format(shifted, str(format), dates.zone(tz_name))


def _timestamp(scale: int) -> Callable[..., Any]:
    def apply(
        value: Any,
        timeZone: str | None = None,  # noqa: N803
        existingFormat: str | None = None,  # noqa: N803
        timezone: str | None = None,
    ) -> Any:
        if value is None:
            return None
        tz_name = timeZone if timeZone is not None else timezone
        return dates.epoch(value, scale, tz_name, existingFormat)

    return strict(apply)


FILTERS: dict[str, Callable[..., Any]] = {
    "default": _default,
    "upper": _string_filter("upper", str.upper),
    "lower": _string_filter("lower", str.lower),
    "trim": _string_filter("trim", str.strip),
    "capitalize": _string_filter("capitalize", lambda s: s[:1].upper() + s[1:]),
    "title": _string_filter("title", _title),
    "slugify": _string_filter("slugify", _slugify),
    "urlencode": _string_filter("urlencode", lambda s: urllib.parse.quote_plus(s)),
    "urldecode": _string_filter("urldecode", urllib.parse.unquote_plus),
    "base64encode": _string_filter("base64encode", lambda s: base64.b64encode(s.encode()).decode()),
    "base64decode": _string_filter("base64decode", _b64decode),
    "string": strict(lambda value: stringify(value)),
    "escapeChar": strict(
        lambda value, type="SINGLE": _text(value, "escapeChar").replace(  # noqa: A006
            "'" if str(type).upper() == "SINGLE" else '"',
            "\\'" if str(type).upper() == "SINGLE" else '\\"',
        )
    ),
    "startsWith": strict(lambda value, prefix: _text(value, "startsWith").startswith(str(prefix))),
    "endsWith": strict(lambda value, suffix: _text(value, "endsWith").endswith(str(suffix))),
    "substringBefore": strict(lambda v, s: _between(v, s, after=False, last=False)),
    "substringBeforeLast": strict(lambda v, s: _between(v, s, after=False, last=True)),
    "substringAfter": strict(lambda v, s: _between(v, s, after=True, last=False)),
    "substringAfterLast": strict(lambda v, s: _between(v, s, after=True, last=True)),
    "abbreviate": strict(_abbreviate),
    "indent": strict(lambda v, amount, prefix=" ": _indent(v, amount, prefix)),
    "nindent": strict(lambda v, amount, prefix=" ": _indent(v, amount, prefix, newline=True)),
    "length": strict(_length),
    "first": strict(lambda value: _edge(value, last=False)),
    "last": strict(lambda value: _edge(value, last=True)),
    "join": strict(_join),
    "split": strict(_split),
    "replace": strict(_replace),
    "number": strict(_number),
    "abs": strict(_abs),
    "keys": strict(_keys),
    "values": strict(_values),
    "toJson": strict(lambda value: to_json(value)),
    "json": strict(lambda value: to_json(value)),
    "jsonEncode": strict(lambda value: to_json(value)),
    "jq": jq,
    "sort": strict(lambda value: _sorted(value, reverse=False)),
    "rsort": strict(lambda value: _sorted(value, reverse=True)),
    "reverse": strict(_reverse),
    "slice": strict(_slice),
    "merge": strict(_merge),
    "flatten": strict(_flatten),
    "distinct": strict(_distinct),
    "uniq": strict(_distinct),
    "chunk": strict(_chunk),
    "sha1": _hash("sha1"),
    "sha256": _hash("sha256"),
    "sha512": _hash("sha512"),
    "md5": _hash("md5"),
    "date": strict(_date),
    "dateAdd": strict(_date_add),
    "timestamp": _timestamp(1),
    "timestampMilli": _timestamp(1000),
    "timestampMicro": _timestamp(1_000_000),
    "timestampNano": _timestamp(1_000_000_000),
}
