"""The expression sandbox: nothing of the Python process is reachable from a template."""

from __future__ import annotations

import os

import pytest

from flowhawk.errors import ExpressionError
from flowhawk.expr import Renderer


@pytest.fixture
def r() -> Renderer:
    return Renderer()


ESCAPES = [
    "{{ ''.__class__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ ''['__class__'] }}",
    "{{ x.__globals__ }}",
    "{{ x['__globals__'] }}",
    "{{ [].__class__.__base__ }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ joiner.__init__ }}",
    "{{ namespace.__init__ }}",
    "{{ lipsum.__globals__['os'] }}",
    "{{ range.__self__ }}",
    "{{ range }}",
    "{{ self }}",
    "{{ self.__init__.__globals__ }}",
    "{{ config }}",
    "{{ request.application }}",
    "{{ dict(a=1) }}",
    "{{ x | attr('__class__') }}",
    "{{ ''.__class__ ?? 'fallback' }}",
    "{{ x.a.__class__ ?? 'fallback' }}",
    "{% for c in [].__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}",
    "{{ now.__globals__ }}",
    "{{ __fh_at }}",
    "{{ __fh_f_secret('X') }}",
    "{% set __fh_at = 1 %}",
    "{{ loop.__class__ }}",
    "{% for i in [1] %}{{ loop.__class__ }}{% endfor %}",
    "{% for i in [1] %}{{ loop.cycle }}{% endfor %}",
    "{{ 'x'.format }}",
    "{{ 'abc'.upper() }}",
    "{% include '/etc/passwd' %}",
    "{% import 'os' as os %}",
    "{% extends 'base' %}",
    "{{ fromJson.__code__ }}",
    "{{ (1).__class__ }}",
    "{{ x.keys }}",
]


@pytest.mark.parametrize("template", ESCAPES)
def test_escape_attempts_raise(r: Renderer, template: str) -> None:
    with pytest.raises(ExpressionError):
        r.render(template, {"x": {"a": 1}})


def test_underscore_keys_of_maps_are_data(r: Renderer) -> None:
    context = {"m": {"_private": 1, "__dunder__": 2}}
    assert r.render("{{ m._private }} {{ m['__dunder__'] }}", context) == "1 2"


def test_python_objects_in_the_context_are_opaque(r: Renderer) -> None:
    class Secretive:
        token = "leak"

        def __str__(self) -> str:
            return "leak"

    with pytest.raises(ExpressionError, match="is a object, it has no key `token`"):
        r.render("{{ obj.token }}", {"obj": Secretive()})
    with pytest.raises(ExpressionError, match="cannot render a Secretive value"):
        r.render("{{ obj }}", {"obj": Secretive()})


def test_envs_come_from_the_context_not_the_process(
    r: Renderer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENV_REGION", "from-process")
    assert r.render("{{ envs.region }}", {"envs": {"region": "from-context"}}) == "from-context"
    with pytest.raises(ExpressionError, match="undefined name `envs`"):
        r.render("{{ envs.region }}", {})
    assert "PATH" in os.environ
    with pytest.raises(ExpressionError):
        r.render("{{ envs.PATH }}", {"envs": {}})


def test_context_cannot_override_helpers(r: Renderer) -> None:
    assert r.render("{{ m.a }}", {"m": {"a": 1}, "__fh_at": "evil"}) == "1"


def test_sandbox_messages_are_clear(r: Renderer) -> None:
    with pytest.raises(ExpressionError, match="access to `__class__` is not allowed"):
        r.render("{{ ''.__class__ }}", {})
    with pytest.raises(ExpressionError, match="names starting with `__` are not allowed"):
        r.render("{{ __fh_at }}", {})
    with pytest.raises(ExpressionError, match="method calls are not supported"):
        r.render("{{ 'abc'.upper() }}", {})
