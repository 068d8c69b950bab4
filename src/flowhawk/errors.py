"""Exceptions shared across packages."""

from __future__ import annotations


class FlowhawkError(Exception):
    """Base class of every error flowhawk reports to a user."""


class TaskError(FlowhawkError):
    """A task failed; the message is what the user reads in the logs."""


class TaskKilled(FlowhawkError):
    """The execution was killed while this task ran."""


class ExpressionError(FlowhawkError):
    """An expression could not be rendered (syntax, undefined name, sandbox refusal...)."""


class DatabaseError(FlowhawkError):
    """The state database cannot be reached or refused an operation."""
