"""Kestra/Pebble expression language rendered with a sandboxed Jinja2 environment."""

from __future__ import annotations

from flowhawk.expr.dates import java_date_format, parse_date
from flowhawk.expr.renderer import Renderer

__all__ = ["Renderer", "java_date_format", "parse_date"]
