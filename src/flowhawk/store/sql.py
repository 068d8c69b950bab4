"""A small builder for the optional filters of list queries."""

from __future__ import annotations

from typing import Any


class Where:
    """Collects ``AND``-ed conditions and their parameters, in order."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.params: list[Any] = []

    def add(self, condition: bool, clause: str, *params: Any) -> Where:
        """Add ``clause`` (with ``%s`` placeholders for ``params``) when ``condition`` holds."""
        if condition:
            self.parts.append(clause)
            self.params.extend(params)
        return self

    def sql(self) -> str:
        return " WHERE " + " AND ".join(self.parts) if self.parts else ""
