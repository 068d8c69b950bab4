"""The expression language: syntax, operators, statements, output, errors."""

from __future__ import annotations

import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowhawk.errors import ExpressionError
from flowhawk.expr import Renderer
from flowhawk.expr.pebble import translate

CTX: dict[str, Any] = {
    "inputs": {"name": "world", "count": 3, "flag": True, "nothing": None, "empty": ""},
    "vars": {"items": [1, 2, 3], "map": {"a": 1, "b": 2}, "key": "b", "tags": ["x", "y"]},
    "outputs": {
        "extract": {"uri": "kestra:///ns/flow/file.csv", "rows": 10},
        "http": {"body": '{"items": [{"id": 7}, {"id": 8}], "ok": true}'},
        "my-task": {"value": "dashed"},
    },
    "labels": {"team": "data"},
    "flow": {"id": "hello", "namespace": "company.team", "revision": 2},
    "execution": {"id": "exec1", "startDate": "2024-05-01T10:11:12.345Z"},
    "trigger": {"date": "2019-03-01T09:00:00Z"},
    "taskrun": {"value": "v1", "attemptsCount": 1},
    "envs": {"region": "eu"},
}


@pytest.fixture
def r() -> Renderer:
    return Renderer()


def render(r: Renderer, template: str, **extra: Any) -> str:
    return r.render(template, {**CTX, **extra})


# -- output ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("plain text", "plain text"),
        ("Hello {{ inputs.name }}!", "Hello world!"),
        ("{{ inputs.count }}", "3"),
        ("{{ true }} {{ false }} {{ inputs.flag }}", "true false true"),
        ("[{{ null }}][{{ inputs.nothing }}]", "[][]"),
        ("{{ vars.items }}", "[1,2,3]"),
        ("{{ vars.map }}", '{"a":1,"b":2}'),
        ("{{ {'k': [1, 'two', null, true]} }}", '{"k":[1,"two",null,true]}'),
        ("{{ 1.0 }} {{ 2.5 }} {{ 10 }}", "1.0 2.5 10"),
        ("{{ 'été' }}", "été"),
        ("{{ {'é': 'ü'} }}", '{"é":"ü"}'),
        ("a\n{{ inputs.name }}\n", "a\nworld\n"),
        ("{{ flow.namespace }}.{{ flow.id }} r{{ flow.revision }}", "company.team.hello r2"),
    ],
)
def test_output(r: Renderer, template: str, expected: str) -> None:
    assert render(r, template) == expected


def test_string_literals(r: Renderer) -> None:
    assert render(r, "{{ 'single' }} {{ \"double\" }}") == "single double"
    assert render(r, r"""{{ 'it\'s' }} {{ "say \"hi\"" }}""") == 'it\'s say "hi"'
    assert render(r, r"{{ 'a\nb' }}") == "a\nb"
    assert render(r, "{{ '}}' }}") == "}}"
    assert render(r, "{{ '{{ not an expression }}' }}") == "{{ not an expression }}"
    assert render(r, "{{ \"%}\" ~ '#}' }}") == "%}#}"
    assert render(r, '{{ "Hi #{inputs.name | upper}!" }}') == "Hi WORLD!"
    assert render(r, "{{ 'no #{interpolation} in single quotes' }}") == (
        "no #{interpolation} in single quotes"
    )


def test_nested_braces_in_map_literal(r: Renderer) -> None:
    assert render(r, "{{ {'a': {'b': 1}} }}") == '{"a":{"b":1}}'
    assert render(r, "{{ {'a': {'b': 1}}['a']['b'] }}") == "1"


# -- names and access ------------------------------------------------------------------------


def test_attribute_and_index_access(r: Renderer) -> None:
    assert render(r, "{{ outputs.extract.uri }}") == "kestra:///ns/flow/file.csv"
    assert render(r, "{{ outputs['my-task'].value }}") == "dashed"
    assert render(r, "{{ outputs[\"extract\"]['rows'] }}") == "10"
    assert render(r, "{{ vars.map[vars.key] }}") == "2"
    assert render(r, "{{ vars.items[0] }} {{ vars.items[1 + 1] }}") == "1 3"
    assert render(r, "{{ vars.items.1 }}") == "2"
    assert render(r, "{{ [10, 20][1] }}") == "20"
    assert render(r, "{{ envs.region }} {{ labels.team }}") == "eu data"


def test_literals_null_true_false(r: Renderer) -> None:
    assert render(r, "{{ null is null }} {{ true == true }} {{ false != true }}") == (
        "true true true"
    )


# -- operators -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ 'a' ~ 'b' ~ 1 ~ true ~ null }}", "ab1true"),
        ("{{ 'a' ~ 'b' | upper }}", "AB"),  # Pebble: ~ binds tighter than |
        ("{{ 1 + 2 * 3 }}", "7"),
        ("{{ (1 + 2) * 3 }}", "9"),
        ("{{ 10 - 4 - 3 }}", "3"),
        ("{{ 7 / 2 }} {{ -7 / 2 }} {{ 7.0 / 2 }}", "3 -3 3.5"),
        ("{{ 7 % 3 }} {{ -7 % 3 }}", "1 -1"),
        ("{{ -inputs.count }} {{ +2 }}", "-3 2"),
        ("{{ 'a' + 'b' }}", "ab"),
        ("{{ 1 == 1 }} {{ 1 == 1.0 }} {{ 1 == '1' }} {{ true == 1 }}", "true true false false"),
        ("{{ 1 equals 1 }}", "true"),
        (
            "{{ 1 != 2 }} {{ 2 < 3 }} {{ 3 > 2 }} {{ 2 <= 2 }} {{ 3 >= 4 }}",
            "true true true true false",
        ),
        ("{{ 'a' < 'b' }}", "true"),
        ("{{ true and false }} {{ true or false }} {{ not false }}", "false true true"),
        ("{{ not inputs.flag and true }}", "false"),
        (
            "{{ 2 in vars.items }} {{ 5 in vars.items }} {{ 5 not in vars.items }}",
            "true false true",
        ),
        ("{{ 'a' in vars.map }} {{ 'orl' in inputs.name }}", "true true"),
        ("{{ vars.map contains 'a' }} {{ vars.map contains 'z' }}", "true false"),
        ("{{ vars.items contains 2 }} {{ vars.items contains [1, 3] }}", "true true"),
        ("{{ vars.items contains [1, 9] }}", "false"),
        ("{{ inputs.name contains 'orl' }} {{ inputs.name contains 'x' }}", "true false"),
        ("{{ inputs.count > 2 ? 'many' : 'few' }}", "many"),
        ("{{ inputs.count > 5 ? 'many' : inputs.count > 1 ? 'some' : 'few' }}", "some"),
        ("{{ 1..4 }}", "[1,2,3,4]"),
    ],
)
def test_operators(r: Renderer, template: str, expected: str) -> None:
    assert render(r, template) == expected


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ inputs.nothing ?? 'dflt' }}", "dflt"),
        ("{{ inputs.name ?? 'dflt' }}", "world"),
        ("{{ inputs.empty ?? 'dflt' }}", ""),
        ("{{ outputs.missing.x ?? 'd' }}", "d"),
        ("{{ missing ?? 'd' }}", "d"),
        ("{{ missing.deep.er['x'] ?? 'd' }}", "d"),
        ("{{ vars.items[10] ?? 'none' }}", "none"),
        ("{{ inputs.nothing.x ?? 'null-safe' }}", "null-safe"),
        ("{{ missing ?? inputs.nothing ?? 'third' }}", "third"),
        ("{{ missing ?? 'x' | upper }}", "X"),  # ?? binds tighter than | (Kestra: 120)
        ("{{ inputs.nothing ??? 'only-undefined' }}", ""),
        ("{{ missing ??? 'only-undefined' }}", "only-undefined"),
    ],
)
def test_null_coalescing(r: Renderer, template: str, expected: str) -> None:
    assert render(r, template) == expected


def test_null_coalescing_does_not_evaluate_the_right_side_when_not_needed(r: Renderer) -> None:
    assert render(r, "{{ inputs.name ?? secret('SURELY_NOT_SET_ANYWHERE') }}") == "world"


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ inputs.nothing is null }} {{ inputs.name is null }}", "true false"),
        ("{{ inputs.nothing is not null }} {{ inputs.name is not null }}", "false true"),
        ("{{ inputs.name is defined }} {{ inputs.zzz is defined }}", "true false"),
        ("{{ inputs.zzz is not defined }} {{ undefined_name is not defined }}", "true true"),
        ("{{ missing.a.b is defined }}", "false"),
        (
            "{{ inputs.empty is empty }} {{ inputs.nothing is empty }} {{ [] is empty }}",
            "true true true",
        ),
        (
            "{{ {} is empty }} {{ '  ' is empty }} {{ 'x' is empty }} {{ 0 is empty }}",
            "true true false false",
        ),
        ("{{ 4 is even }} {{ 3 is odd }} {{ 3 is even }}", "true true false"),
        (
            "{{ vars.map is map }} {{ vars.items is iterable }} {{ 'x' is iterable }}",
            "true true false",
        ),
        (
            "{{ 9 is divisibleby(3) }} {{ '{\"a\": 1}' is json }} {{ 'nope' is json }}",
            "true true false",
        ),
    ],
)
def test_tests(r: Renderer, template: str, expected: str) -> None:
    assert render(r, template) == expected


# -- statements ------------------------------------------------------------------------------


@pytest.mark.parametrize(("count", "expected"), [(1, "one"), (2, "two"), (3, "three"), (9, "many")])
def test_if_elseif_elif_else(r: Renderer, count: int, expected: str) -> None:
    template = (
        "{% if inputs.count == 1 %}one{% elseif inputs.count == 2 %}two"
        "{% elif inputs.count == 3 %}three{% else %}many{% endif %}"
    )
    assert r.render(template, {"inputs": {"count": count}}) == expected


def test_if_truthiness(r: Renderer) -> None:
    template = "{% if v %}yes{% else %}no{% endif %}"
    for value, expected in [
        (True, "yes"),
        (False, "no"),
        (None, "no"),
        ("false", "no"),
        ("FALSE", "no"),
        ("0", "no"),
        ("", "no"),
        ("anything", "yes"),
        (0, "no"),
        (2, "yes"),
        ([], "no"),
        ([1], "yes"),
    ]:
        assert r.render(template, {"v": value}) == expected, value


def test_for_loops(r: Renderer) -> None:
    assert render(r, "{% for x in vars.items %}{{ x }};{% endfor %}") == "1;2;3;"
    assert render(r, "{% for x in vars.tags %}{{ loop.index }}{% endfor %}") == "01"
    assert (
        render(r, "{% for x in vars.tags %}{{ x }}{% if not loop.last %},{% endif %}{% endfor %}")
        == "x,y"
    )
    assert render(r, "{% for x in vars.tags %}{{ loop.length }}{% endfor %}") == "22"
    assert render(r, "{% for e in vars.map %}{{ e.key }}={{ e.value }} {% endfor %}") == "a=1 b=2 "
    assert render(r, "{% for k, v in vars.map %}{{ k }}:{{ v }},{% endfor %}") == "a:1,b:2,"
    assert render(r, "{% for x in [] %}{{ x }}{% else %}none{% endfor %}") == "none"
    assert render(r, "{% for x in inputs.nothing %}{{ x }}{% endfor %}") == ""
    assert render(r, "{% for i in range(1, 3) %}{{ i }}{% endfor %}") == "123"


def test_set_and_comments(r: Renderer) -> None:
    assert render(r, "{% set x = inputs.count * 2 %}{{ x }}") == "6"
    assert render(r, "a{# a comment {{ nope }} #}b") == "ab"
    assert render(r, "{% set greeting = 'hi ' ~ inputs.name %}{{ greeting | upper }}") == "HI WORLD"


def test_whitespace_control_and_newlines(r: Renderer) -> None:
    assert render(r, "a  {{- inputs.name -}}  b") == "aworldb"
    assert render(r, "{% if true %}\nx\n{% endif %}\n") == "\nx\n\n"  # Kestra: no newline trimming
    assert render(r, "{%- if true -%}\n x \n{%- endif -%}") == "x"


def test_verbatim_and_filter_tag(r: Renderer) -> None:
    assert render(r, "{% verbatim %}{{ inputs.name }}{% endverbatim %}!") == "{{ inputs.name }}!"
    assert render(r, "{% raw %}{% if %}{% endraw %}") == "{% if %}"
    assert render(r, "{% filter upper %}hi {{ inputs.name }}{% endfilter %}") == "HI WORLD"


def test_kestra_style_expressions(r: Renderer) -> None:
    assert render(r, "{{ outputs.http.body | jq('.items[].id') }}") == "[7,8]"
    assert render(r, "{{ outputs.http.body | jq('.items[0].id') | first }}") == "7"
    assert render(r, "{{ fromJson(outputs.http.body).items[1].id }}") == "8"
    assert render(r, "{{ trigger.date | date('yyyy-MM') }}") == "2019-03"
    assert (
        render(r, "{{ inputs.start ?? trigger.date | dateAdd(-1, 'DAYS') | date('yyyy-MM-dd') }}")
        == "2019-02-28"
    )
    assert render(r, "{{ taskrun.value }}-{{ execution.id }}") == "v1-exec1"


# -- rendering structures --------------------------------------------------------------------


def test_render_deep_walks_structures(r: Renderer) -> None:
    value = {
        "url": "http://x/{{ inputs.name }}",
        "n": 5,
        "flag": True,
        "none": None,
        "list": ["{{ inputs.count }}", 7, {"k": "{% if true %}y{% endif %}"}],
        "{{ inputs.name }}": "key rendered",
        "plain": "no { expressions } here {# comment #}",
    }
    assert r.render_deep(value, CTX) == {
        "url": "http://x/world",
        "n": 5,
        "flag": True,
        "none": None,
        "list": ["3", 7, {"k": "y"}],
        "world": "key rendered",
        "plain": "no { expressions } here {# comment #}",
    }


def test_render_deep_error_path(r: Renderer) -> None:
    with pytest.raises(ExpressionError) as info:
        r.render_deep({"headers": {"Authorization": "Bearer {{ inputs.token }}"}}, CTX)
    assert info.value.path == ".headers.Authorization"  # type: ignore[attr-defined]
    assert "`inputs` has no key `token`" in str(info.value)
    with pytest.raises(ExpressionError) as info:
        r.render_deep(["ok", "{{ 1 }}", "{{ nope }}"], CTX)
    assert info.value.path == "[2]"  # type: ignore[attr-defined]
    with pytest.raises(ExpressionError) as info:
        r.render_deep({"a b": [{"c": "{{ nope }}"}]}, CTX)
    assert info.value.path == '["a b"][0].c'  # type: ignore[attr-defined]


def test_is_true(r: Renderer) -> None:
    for falsy in (None, False, "false", "False", " FALSE ", "0", "", "null", "NULL", 0):
        assert r.is_true(falsy) is False, falsy
    for truthy in (True, "true", "yes", "1", "anything", 1, "0.0"):
        assert r.is_true(truthy) is True, truthy


# -- errors ----------------------------------------------------------------------------------


def error_of(r: Renderer, template: str, **extra: Any) -> str:
    with pytest.raises(ExpressionError) as info:
        render(r, template, **extra)
    return str(info.value)


def test_undefined_name_is_an_error(r: Renderer) -> None:
    message = error_of(r, "{{ nothere }}")
    assert "undefined name `nothere`" in message
    assert "{{ nothere }}" in message


def test_missing_key_is_an_error_naming_it(r: Renderer) -> None:
    assert "`inputs` has no key `taxii`" in error_of(r, "{{ inputs.taxii }}")
    message = error_of(r, "{{ outputs.extracted.uri }}")
    assert "`outputs` has no key `extracted`" in message
    assert "outputs.extracted.uri" in message
    assert "`vars.items` has no index 7" in error_of(r, "{{ vars.items[7] }}")
    assert "`inputs.nothing` is null" in error_of(r, "{{ inputs.nothing.x }}")
    assert "is a string, it has no key `x`" in error_of(r, "{{ inputs.name.x }}")


@pytest.mark.parametrize(
    "template",
    [
        "{{ nope ~ 'x' }}",
        "{{ nope | upper }}",
        "{{ nope == 1 }}",
        "{{ nope + 1 }}",
        "{% if nope %}x{% endif %}",
        "{% for x in nope %}{% endfor %}",
        "{{ 'a' in nope }}",
        "{{ nope is null }}",
        "{{ nope is empty }}",
        "{{ [nope] }}",
        "{{ {'a': nope} }}",
        "{{ vars.map[nope] }}",
        "{{ nope ? 1 : 2 }}",
        "{{ render(nope) }}",
        "{{ nope | date('yyyy') }}",
        "{{ nope | jq('.') }}",
    ],
)
def test_undefined_is_never_silent(r: Renderer, template: str) -> None:
    assert "undefined name `nope`" in error_of(r, template)


def test_default_filter_accepts_undefined(r: Renderer) -> None:
    assert render(r, "{{ nope | default('d') }}") == "d"
    assert render(r, "{{ outputs.x.y | default('d') }}") == "d"
    assert render(r, "{{ inputs.empty | default('d') }} {{ inputs.name | default('d') }}") == (
        "d world"
    )
    assert render(r, "{{ inputs.nothing | default(0) }} {{ 0 | default(5) }}") == "0 0"


@pytest.mark.parametrize(
    ("template", "fragment"),
    [
        ("{{ inputs.name ", "missing `}}`"),
        ("{{ }}", "empty expression"),
        ("{{ 1 + }}", "unexpected the end of the expression"),
        ("{{ (1 }}", "expected `)` before `}`"),
        ("{{ [1, 2 }}", "expected `]`"),
        ("{{ 'abc }}", "unterminated string"),
        ("{{ x | nosuchfilter }}", "unknown filter `nosuchfilter`"),
        ("{{ x is nosuchtest }}", "unknown test `nosuchtest`"),
        ("{{ nosuchfn() }}", "unknown function `nosuchfn`"),
        ("{{ 'a'.upper() }}", "method calls are not supported"),
        ("{% if true %}x", "endif"),
        ("{% endif %}", "endif"),
        ("{% include 'x' %}", "the `include` tag is not supported"),
        ("{% import 'x' as y %}", "the `import` tag is not supported"),
        ("{% macro m() %}{% endmacro %}", "the `macro` tag is not supported"),
        ("{% whatever %}", "unknown tag `whatever`"),
        ("{# never closed", "unterminated comment"),
        ("{{ 1 ! 2 }}", "unexpected character `!`"),
        ("{% verbatim %}x", "endverbatim"),
        ("{{ a b }}", "unexpected `b`"),
        ("{{ 1 ]] }}", "unbalanced"),
    ],
)
def test_syntax_errors(r: Renderer, template: str, fragment: str) -> None:
    message = error_of(r, template)
    assert fragment in message
    assert "syntax error" in message
    assert template.strip()[:8] in message  # the message shows the template text


def test_syntax_error_location(r: Renderer) -> None:
    message = error_of(r, "line one\n  {{ 1 + * 2 }}")
    assert "line 2, column 10" in message


def test_runtime_type_errors_are_expression_errors(r: Renderer) -> None:
    assert "cannot apply `-` to a string and a number" in error_of(r, "{{ 'a' - 1 }}")
    assert "division by zero" in error_of(r, "{{ 1 / 0 }}")
    assert "cannot compare a string with a number" in error_of(r, "{{ 'a' < 1 }}")
    assert "cannot loop over a string" in error_of(r, "{% for c in 'abc' %}{% endfor %}")
    assert "range too large" in error_of(r, "{{ range(0, 10000000) }}")
    assert "cannot apply `*`" in error_of(r, "{{ 'ab' * 100000000 }}")


def test_template_cache_is_used(r: Renderer) -> None:
    template = "{{ inputs.name | upper }} {% for x in vars.items %}{{ x * 2 }}{% endfor %}"
    render(r, template)
    hits_before = translate.cache_info().hits
    started = time.perf_counter()
    for _ in range(2000):
        assert render(r, template) == "WORLD 246"
    elapsed = time.perf_counter() - started
    assert translate.cache_info().hits == hits_before  # compiled template reused as a whole
    assert elapsed < 2.0


def test_carriage_returns_are_kept(r: Renderer) -> None:
    assert render(r, "echo {{ inputs.name }}\r\nexit 0\r\n") == "echo world\r\nexit 0\r\n"


@given(st.text(alphabet=st.characters(blacklist_characters="{", blacklist_categories=["Cs"])))
def test_text_and_string_literals_round_trip(text: str) -> None:
    renderer = Renderer()
    assert renderer.render(text + "{{ 1 }}", {}) == text + "1"
    literal = "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
    assert renderer.render("{{ " + literal + " }}", {}) == text
    assert renderer.render("{{ value }}", {"value": text}) == text
