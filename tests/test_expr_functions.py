"""Filters and functions of the expression language, secrets and render() recursion."""

from __future__ import annotations

import base64
import hashlib
import re
import threading
from typing import Any

import pytest

from flowhawk.errors import ExpressionError
from flowhawk.expr import Renderer
from flowhawk.expr.pebble import FUNCTIONS

CTX: dict[str, Any] = {
    "s": "  Hello World  ",
    "name": "élan Vital: du café!",
    "items": [3, 1, 2],
    "words": ["b", "a", "c"],
    "m": {"x": 1, "y": [1, 2]},
    "body": '{"users": [{"name": "ann", "age": 31}, {"name": "bob", "age": 42}]}',
    "nothing": None,
}


@pytest.fixture
def r() -> Renderer:
    return Renderer()


def render(r: Renderer, template: str, **extra: Any) -> str:
    return r.render(template, {**CTX, **extra})


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        (
            "{{ s | upper }}|{{ s | lower }}|{{ s | trim }}",
            "  HELLO WORLD  |  hello world  |Hello World",
        ),
        (
            "{{ 'hello world' | capitalize }} {{ 'hello big world' | title }}",
            "Hello world Hello Big World",
        ),
        ("{{ 'abcdefghij' | abbreviate(6) }} {{ 'abc' | abbreviate(6) }}", "abc... abc"),
        ("{{ nothing | upper }}", ""),
        (
            "{{ items | length }} {{ 'abcd' | length }} {{ m | length }} {{ nothing | length }}",
            "3 4 2 0",
        ),
        (
            "{{ items | first }} {{ items | last }} {{ 'xyz' | first }} {{ 'xyz' | last }}",
            "3 2 x z",
        ),
        ("{{ [] | first }}", ""),
        ("{{ words | join(', ') }} {{ words | join }}", "b, a, c bac"),
        ("{{ [1, true, null, 'x'] | join('-') }}", "1-true--x"),
        ("{{ 'a,b,,c,,' | split(',') }}", '["a","b","","c"]'),
        ("{{ 'a,b,c' | split(',', 2) }}", '["a","b,c"]'),
        ("{{ 'a.b.c' | split('.') | last }}", "c"),
        (
            "{{ 'I like %this% and %that%' | replace({'%this%': 'tea', '%that%': 'cake'}) }}",
            "I like tea and cake",
        ),
        ("{{ 'aaa' | replace('a', 'b') }}", "bbb"),
        ("{{ 'v1.2.3' | replace({'\\\\d+': 'N'}, regexp=true) }}", "vN.N.N"),
        ("{{ 'john smith' | replace({'(\\\\w+) (\\\\w+)': '$2 $1'}, regexp=true) }}", "smith john"),
        ("{{ name | slugify }}", "elan-vital-du-cafe"),
        (
            "{{ '42' | number }} {{ '4.5' | number }} {{ '0x1F' | number }} {{ '7' | number + 1 }}",
            "42 4.5 31 8",
        ),
        ("{{ '42' | number('FLOAT') }} {{ '4.9' | number('INT') }}", "42.0 4"),
        ("{{ -5 | abs }} {{ -2.5 | abs }}", "5 2.5"),
        ("{{ m | keys }} {{ m | values }}", '["x","y"] [1,[1,2]]'),
        (
            "{{ m | toJson }} {{ 'q\"' | toJson }} {{ nothing | toJson }}",
            '{"x":1,"y":[1,2]} "q\\"" null',
        ),
        ("{{ m | json }}", '{"x":1,"y":[1,2]}'),
        (
            "{{ items | sort }} {{ words | sort }} {{ items | rsort }}",
            '[1,2,3] ["a","b","c"] [3,2,1]',
        ),
        ("{{ items | reverse }} {{ 'abc' | reverse }}", "[2,1,3] cba"),
        ("{{ items | slice(1, 3) }} {{ 'abcdef' | slice(2) }}", "[1,2] cdef"),
        ("{{ items | merge([9]) }} {{ m | merge({'z': 0}) | keys }}", '[3,1,2,9] ["x","y","z"]'),
        ("{{ [[1, 2], [3], 4] | flatten }} {{ [1, 1, 2, 1] | distinct }}", "[1,2,3,4] [1,2]"),
        ("{{ [1, 2, 3, 4, 5] | chunk(2) }}", "[[1,2],[3,4],[5]]"),
        ("{{ 'hi there' | urlencode }} {{ 'a%20b' | urldecode }}", "hi+there a b"),
        ("{{ 'hello' | base64encode }} {{ 'aGVsbG8=' | base64decode }}", "aGVsbG8= hello"),
        (
            "{{ 'a/b/c.txt' | substringAfterLast('/') }} {{ 'a/b/c' | substringBefore('/') }}",
            "c.txt a",
        ),
        ("{{ 'a/b/c' | substringAfter('/') }} {{ 'a/b/c' | substringBeforeLast('/') }}", "b/c a/b"),
        ("{{ 'abc' | substringAfter('z') }}|{{ 'abc' | substringBefore('z') }}", "|abc"),
        ("{{ 'abc' | startsWith('ab') }} {{ 'abc' | endsWith('x') }}", "true false"),
        ("{{ 'a\nb' | indent(2) }}", "a\n  b"),
        ("{{ 'a\nb' | nindent(2) }}", "\n  a\n  b"),
        ("{{ \"it's\" | escapeChar('single') }}", "it\\'s"),
        ("{{ 12 | string ~ 'x' }}", "12x"),
    ],
)
def test_filters(r: Renderer, template: str, expected: str) -> None:
    assert render(r, template) == expected


def test_hash_filters(r: Renderer) -> None:
    assert render(r, "{{ 'abc' | sha256 }}") == hashlib.sha256(b"abc").hexdigest()
    assert render(r, "{{ 'abc' | md5 }}") == hashlib.md5(b"abc").hexdigest()
    assert render(r, "{{ 'abc' | sha1 }}") == hashlib.sha1(b"abc").hexdigest()
    assert render(r, "{{ 'abc' | sha512 }}") == hashlib.sha512(b"abc").hexdigest()


def test_jq_filter_and_function(r: Renderer) -> None:
    assert render(r, "{{ body | jq('.users[].name') }}") == '["ann","bob"]'
    assert render(r, "{{ body | jq('.users[] | select(.age > 40) | .name') | first }}") == "bob"
    assert render(r, "{{ m | jq('.y | length') | first }}") == "2"
    assert render(r, "{{ jq(m, '.x') }}") == "[1]"
    assert render(r, "{{ body | jq('.nope') }}") == "[null]"
    assert render(r, "{{ 'plain text' | jq('.') | first }}") == "plain text"
    with pytest.raises(ExpressionError, match="invalid jq filter"):
        render(r, "{{ m | jq('.[[[') }}")
    with pytest.raises(ExpressionError, match="jq filter `.x.y` failed"):
        render(r, "{{ items | jq('.x.y') }}")


def test_filter_errors_are_clear(r: Renderer) -> None:
    with pytest.raises(ExpressionError, match="`number` cannot parse `abc`"):
        render(r, "{{ 'abc' | number }}")
    with pytest.raises(ExpressionError, match="`abs` expects a number"):
        render(r, "{{ 'x' | abs }}")
    with pytest.raises(ExpressionError, match="`upper` expects a string, got a list"):
        render(r, "{{ items | upper }}")
    with pytest.raises(ExpressionError, match="`replace` needs a replacement"):
        render(r, "{{ 'a' | replace('a') }}")
    with pytest.raises(ExpressionError, match="`keys` expects a map"):
        render(r, "{{ 5 | keys }}")


# -- functions -------------------------------------------------------------------------------


def test_range_is_inclusive(r: Renderer) -> None:
    assert render(r, "{{ range(0, 3) }}") == "[0,1,2,3]"
    assert render(r, "{{ range(0, 10, 5) }} {{ range(3, 1, -1) }}") == "[0,5,10] [3,2,1]"
    with pytest.raises(ExpressionError, match="range step cannot be 0"):
        render(r, "{{ range(0, 3, 0) }}")


def test_from_json(r: Renderer) -> None:
    assert render(r, "{{ fromJson(body).users[0].name }}") == "ann"
    assert render(r, "{{ json('{\"a\": [1, 2]}').a[1] }}") == "2"
    assert render(r, "{{ fromJson('null') is null }}") == "true"
    with pytest.raises(ExpressionError, match="fromJson: invalid JSON"):
        render(r, "{{ fromJson('{oops') }}")


def test_max_min(r: Renderer) -> None:
    assert render(r, "{{ max(1, 5, 3) }} {{ min(items) }}") == "5 1"


def test_now_is_timezone_aware_iso(r: Renderer) -> None:
    value = render(r, "{{ now() }}")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", value)
    paris = render(r, "{{ now(timeZone='Europe/Paris') }}")
    assert re.fullmatch(r".*T.*[+]0[12]:00", paris)
    assert re.fullmatch(r"\d{4}", render(r, "{{ now() | date('yyyy') }}"))


def test_read_uses_the_file_reader() -> None:
    seen: list[str] = []

    def reader(uri: str) -> str:
        seen.append(uri)
        if uri.endswith("missing"):
            raise FileNotFoundError("no such file")
        return "file content"

    renderer = Renderer(file_reader=reader)
    assert renderer.render("{{ read('kestra:///a/b.txt') }}", {}) == "file content"
    assert seen == ["kestra:///a/b.txt"]
    with pytest.raises(ExpressionError, match=r"read\(`kestra:///missing`\) failed: no such file"):
        renderer.render("{{ read('kestra:///missing') }}", {})
    with pytest.raises(ExpressionError, match="read\\(\\) is not available"):
        Renderer().render("{{ read('kestra:///a') }}", {})


def test_secret_decodes_and_reports_to_hook(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECRET_API_TOKEN", base64.b64encode(b"s3cr3t-value").decode())
    revealed: list[str] = []
    renderer = Renderer(secret_hook=revealed.append)
    assert renderer.render("Bearer {{ secret('API_TOKEN') }}", {}) == "Bearer s3cr3t-value"
    assert revealed == ["s3cr3t-value"]
    assert renderer.render_deep({"h": ["{{ secret('API_TOKEN') | upper }}"]}, {}) == {
        "h": ["S3CR3T-VALUE"]
    }
    assert revealed == ["s3cr3t-value", "s3cr3t-value"]


def test_secret_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SECRET_ABSENT_ONE", raising=False)
    monkeypatch.setenv("SECRET_BROKEN", "%%% not base64 %%%")
    renderer = Renderer(secret_hook=lambda value: None)
    with pytest.raises(
        ExpressionError, match="secret `ABSENT_ONE` is not defined.*SECRET_ABSENT_ONE"
    ):
        renderer.render("{{ secret('ABSENT_ONE') }}", {})
    with pytest.raises(ExpressionError, match="SECRET_BROKEN is not valid base64") as info:
        renderer.render("{{ secret('BROKEN') }}", {})
    assert "%%%" not in str(info.value)


def test_render_function_recurses_until_stable(r: Renderer) -> None:
    context = {
        "vars": {
            "a": "{{ vars.b }}",
            "b": "{{ vars.c | upper }}",
            "c": "deep",
            "self": "{{ vars.self }}",
        }
    }
    assert r.render("{{ render(vars.a) }}", context) == "DEEP"
    assert r.render("{{ vars.a }}", context) == "{{ vars.b }}"  # no implicit re-render
    assert r.render("{{ render(vars.a, recursive=false) }}", context) == "{{ vars.c | upper }}"
    assert r.render("{{ render(vars.self) }}", context) == "{{ vars.self }}"  # stable
    assert r.render("{{ render(42) }}", context) == "42"


def test_render_function_is_capped(r: Renderer) -> None:
    growing = {"vars": {"g": "x{{ vars.g }}"}}
    with pytest.raises(ExpressionError, match="did not settle after 10 passes"):
        r.render("{{ render(vars.g) }}", growing)
    nested = {"vars": {"n": "{{ render(vars.n ~ ' ') }}"}}
    with pytest.raises(ExpressionError, match="nested more than 10 levels"):
        r.render("{{ render(vars.n) }}", nested)


def test_render_function_sees_set_variables(r: Renderer) -> None:
    assert r.render("{% set who = 'me' %}{{ render('{{ who }}') }}", {}) == "me"


def test_registered_functions_match_the_translator() -> None:
    assert {"render", "now", "fromJson", "read", "secret", "range", "jq"} <= FUNCTIONS


def test_hooks_belong_to_each_renderer_even_with_shared_templates(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SECRET_SHARED", base64.b64encode(b"shared-value").decode())
    first: list[str] = []
    second: list[str] = []
    one = Renderer(secret_hook=first.append, file_reader=lambda uri: "one")
    two = Renderer(secret_hook=second.append, file_reader=lambda uri: "two")
    template = (
        "{{ secret('SHARED') }}/{{ read('kestra:///f') }}/{{ render(\"{{ secret('SHARED') }}\") }}"
    )

    def work(renderer: Renderer, expected: str) -> None:
        for _ in range(50):
            assert renderer.render(template, {}) == f"shared-value/{expected}/shared-value"

    threads = [
        threading.Thread(target=work, args=(one, "one")),
        threading.Thread(target=work, args=(two, "two")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert first == ["shared-value"] * 100
    assert second == ["shared-value"] * 100
