"""Reading rendered property values: booleans written as text, and the like."""

from __future__ import annotations

from typing import Any

from flowhawk.errors import TaskError

TRUE_WORDS = ("true", "1", "yes")
FALSE_WORDS = ("false", "0", "no", "", "null", "none")


def as_bool(value: Any, prop: str) -> bool:
    """A boolean property that may have been rendered from an expression."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in TRUE_WORDS:
        return True
    if text in FALSE_WORDS:
        return False
    raise TaskError(f"property `{prop}`: expected true or false, got {value!r}")
