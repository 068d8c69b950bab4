"""Translate a Pebble (Kestra) template into the Jinja2 source the renderer compiles.

The template is split into text, ``{{ }}``, ``{% %}`` and ``{# #}`` parts by a scanner that
respects string literals and bracket nesting; each expression is tokenized and parsed with
Pebble's operator precedences, then written back as fully parenthesized Jinja. Everything
with Pebble-specific meaning becomes a call of a ``__fh_*`` helper (attribute access, ``??``,
``contains``, ``~``, ``..``, truthiness, integer division...), so the Jinja side never reads a
Python attribute itself and undefined values are tracked with the path that produced them.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from flowhawk.errors import ExpressionError
from flowhawk.expr import filters

#: Helpers and functions live under this prefix; user names may not start with ``__``.
PREFIX = "__fh_"

#: Filters, tests and functions the translator accepts (the renderer registers them).
FILTERS: frozenset[str] = frozenset(filters.FILTERS)
TESTS: frozenset[str] = frozenset(filters.TESTS)
FUNCTIONS: frozenset[str] = frozenset(
    "render now fromJson json jsonDecode read secret range jq max min".split()
)

_BINARY = {
    "or": 10,
    "and": 15,
    "is": 20,
    "contains": 20,
    "in": 30,
    "not in": 30,
    "==": 30,
    "equals": 30,
    "!=": 30,
    "<": 30,
    ">": 30,
    "<=": 30,
    ">=": 30,
    "+": 40,
    "-": 40,
    "*": 60,
    "/": 60,
    "%": 60,
    "|": 100,
    "~": 110,
    "..": 120,
    "??": 120,
    "???": 120,
}
_UNARY_PRECEDENCE = 500
_SYMBOLS = sorted(
    ["???", "??", "==", "!=", "<=", ">=", "..", *"+-*/%~|?:.,()[]{}<>="], key=len, reverse=True
)
_LITERALS = {
    "true": "true",
    "True": "true",
    "false": "false",
    "False": "false",
    "null": "none",
    "none": "none",
    "None": "none",
}
_UNSUPPORTED_TAGS = {
    "macro",
    "block",
    "extends",
    "include",
    "import",
    "from",
    "embed",
    "parallel",
    "cache",
    "flush",
    "autoescape",
}
_PRINT_CLOSE = "}}"
_EXEC_CLOSE = "%}"


@dataclass
class Token:
    kind: str  # name | num | str | op | end
    value: Any
    pos: int  # offset in the whole template


@dataclass
class Node:
    """A translated expression: Jinja code plus the Pebble text shown in error messages."""

    code: str
    text: str


def _location(template: str, pos: int) -> str:
    line = template.count("\n", 0, pos) + 1
    column = pos - (template.rfind("\n", 0, pos) + 1) + 1
    return f"line {line}, column {column}"


def syntax_error(template: str, pos: int, message: str) -> ExpressionError:
    shown = template if len(template) <= 300 else template[:297] + "..."
    return ExpressionError(f"syntax error at {_location(template, pos)}: {message} in `{shown}`")


def jinja_string(value: str) -> str:
    """A Jinja string literal for ``value`` (Jinja decodes escapes like Python does)."""
    out = ['"']
    for ch in value:
        code = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif code < 32 or code > 126:
            out.append(f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


# -- lexer -----------------------------------------------------------------------------------


class Lexer:
    """Tokens of one tag body, starting at ``pos`` and ending at the tag's close delimiter."""

    def __init__(self, template: str, pos: int, close: str | None) -> None:
        self.template = template
        self.pos = pos
        self.close = close
        self.tokens: list[Token] = []
        self.trim_right = False
        self.end = pos  # offset just after the close delimiter

    def error(self, pos: int, message: str) -> ExpressionError:
        return syntax_error(self.template, pos, message)

    def run(self) -> list[Token]:
        text, depth = self.template, 0
        stack: list[str] = []
        n = len(text)
        while True:
            while self.pos < n and text[self.pos] in " \t\r\n":
                self.pos += 1
            if self.pos >= n:
                if self.close is None:
                    break
                raise self.error(self.pos, f"missing `{self.close}`")
            start = self.pos
            if self.close is not None and depth == 0:
                if text.startswith("-" + self.close, start):
                    self.trim_right = True
                    self.end = start + 1 + len(self.close)
                    break
                if text.startswith(self.close, start):
                    self.end = start + len(self.close)
                    break
            ch = text[start]
            if ch.isalpha() or ch == "_":
                end = start + 1
                while end < n and (text[end].isalnum() or text[end] == "_"):
                    end += 1
                self.tokens.append(Token("name", text[start:end], start))
                self.pos = end
            elif ch.isdigit():
                self._number(start)
            elif ch in "'\"":
                self._string(start)
            else:
                for symbol in _SYMBOLS:
                    if text.startswith(symbol, start):
                        break
                else:
                    raise self.error(start, f"unexpected character `{ch}`")
                if symbol in "([{":
                    stack.append(symbol)
                elif symbol in ")]}":
                    opener = {")": "(", "]": "[", "}": "{"}[symbol]
                    if not stack:
                        raise self.error(start, f"unbalanced `{symbol}`")
                    if stack[-1] != opener:
                        closer = {"(": ")", "[": "]", "{": "}"}[stack[-1]]
                        raise self.error(start, f"expected `{closer}` before `{symbol}`")
                    stack.pop()
                depth = len(stack)
                self.tokens.append(Token("op", symbol, start))
                self.pos = start + len(symbol)
        self.tokens.append(Token("end", None, self.pos))
        return self.tokens

    def _number(self, start: int) -> None:
        text, end = self.template, start
        n = len(text)
        while end < n and text[end].isdigit():
            end += 1
        after_dot = bool(self.tokens) and self.tokens[-1].value == "."
        if not after_dot and end + 1 < n and text[end] == "." and text[end + 1].isdigit():
            end += 1
            while end < n and text[end].isdigit():
                end += 1
            self.tokens.append(Token("num", float(text[start:end]), start))
        else:
            self.tokens.append(Token("num", int(text[start:end]), start))
        self.pos = end

    def _string(self, start: int) -> None:
        """A quoted string; double-quoted ones may interpolate ``#{expression}``."""
        text, quote = self.template, self.template[start]
        n = len(text)
        i = start + 1
        parts: list[str | Node] = []
        buf: list[str] = []
        escapes = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "0": "\0"}
        while True:
            if i >= n:
                raise self.error(start, "unterminated string")
            ch = text[i]
            if ch == "\\" and i + 1 < n:
                nxt = text[i + 1]
                if nxt == "u" and i + 5 < n:
                    try:
                        buf.append(chr(int(text[i + 2 : i + 6], 16)))
                        i += 6
                        continue
                    except ValueError:
                        pass
                buf.append(escapes.get(nxt, nxt))
                i += 2
                continue
            if ch == quote:
                break
            if quote == '"' and ch == "#" and text.startswith("#{", i):
                if buf:
                    parts.append("".join(buf))
                    buf = []
                inner = Lexer(text, i + 2, "}")
                tokens = inner.run()
                node = Parser(text, tokens).parse_complete()
                parts.append(node)
                i = inner.end
                continue
            buf.append(ch)
            i += 1
        if buf or not parts:
            parts.append("".join(buf))
        self.tokens.append(Token("str", parts, start))
        self.pos = i + 1


# -- parser ----------------------------------------------------------------------------------


def helper(name: str, *args: str) -> str:
    return f"{PREFIX}{name}({', '.join(args)})"


class Parser:
    """Pebble expressions by precedence climbing, producing :class:`Node` objects."""

    def __init__(self, template: str, tokens: list[Token]) -> None:
        self.template = template
        self.tokens = tokens
        self.i = 0

    # token helpers
    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def peek(self, offset: int = 1) -> Token:
        return self.tokens[min(self.i + offset, len(self.tokens) - 1)]

    def advance(self) -> Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def error(self, message: str, token: Token | None = None) -> ExpressionError:
        return syntax_error(self.template, (token or self.tok).pos, message)

    def is_op(self, value: str) -> bool:
        return self.tok.kind == "op" and self.tok.value == value

    def is_name(self, value: str) -> bool:
        return self.tok.kind == "name" and self.tok.value == value

    def expect_op(self, value: str) -> Token:
        if not self.is_op(value):
            raise self.error(f"expected `{value}`, found {self.describe(self.tok)}")
        return self.advance()

    def expect_name(self, what: str = "a name") -> str:
        if self.tok.kind != "name":
            raise self.error(f"expected {what}, found {self.describe(self.tok)}")
        return str(self.advance().value)

    @staticmethod
    def describe(token: Token) -> str:
        if token.kind == "end":
            return "the end of the expression"
        if token.kind == "str":
            return "a string"
        return f"`{token.value}`"

    def expect_end(self) -> None:
        if self.tok.kind != "end":
            raise self.error(f"unexpected {self.describe(self.tok)}")

    def parse_complete(self) -> Node:
        node = self.expression()
        self.expect_end()
        return node

    # grammar
    def expression(self) -> Node:
        cond = self.binary(0)
        if self.is_op("?"):
            self.advance()
            yes = self.expression()
            self.expect_op(":")
            no = self.expression()
            return Node(
                f"({yes.code} if {helper('truth', cond.code)} else {no.code})",
                f"{cond.text} ? {yes.text} : {no.text}",
            )
        return cond

    def binary_operator(self) -> str | None:
        tok = self.tok
        if tok.kind == "op" and tok.value in _BINARY:
            return str(tok.value)
        if tok.kind == "name":
            if tok.value == "not" and self.peek().kind == "name" and self.peek().value == "in":
                return "not in"
            if tok.value in ("or", "and", "is", "contains", "in", "equals"):
                return str(tok.value)
        return None

    def binary(self, min_precedence: int) -> Node:
        left = self.unary()
        while True:
            op = self.binary_operator()
            if op is None or _BINARY[op] < min_precedence:
                return left
            op_token = self.advance()
            if op == "not in":
                self.advance()
            if op == "|":
                left = self.filter_call(left)
            elif op == "is":
                left = self.test_call(left)
            else:
                right = self.binary(_BINARY[op] + 1)
                left = self.combine(op, left, right, op_token)

    @staticmethod
    def combine(op: str, left: Node, right: Node, token: Token) -> Node:
        a, b = left.code, right.code
        text = f"{left.text} {op} {right.text}"
        if op == "or":
            code = f"({helper('truth', a)} or {helper('truth', b)})"
        elif op == "and":
            code = f"({helper('truth', a)} and {helper('truth', b)})"
        elif op in ("==", "equals"):
            code = helper("eq", a, b)
        elif op == "!=":
            code = f"(not {helper('eq', a, b)})"
        elif op in ("<", ">", "<=", ">="):
            code = helper("compare", jinja_string(op), a, b)
        elif op in ("+", "-", "*", "/", "%"):
            code = helper("arith", jinja_string(op), a, b)
        elif op == "~":
            code = helper("cat", a, b)
        elif op == "..":
            code = helper("f_range", a, b)
        elif op == "??":
            code = f"({b} if {helper('missing', a)} else {a})"
        elif op == "???":
            code = f"({b} if {helper('undefined', a)} else {a})"
        elif op == "contains":
            code = helper("contains", a, b)
        elif op == "in":
            code = helper("contains", b, a)
        elif op == "not in":
            code = f"(not {helper('contains', b, a)})"
        else:  # pragma: no cover - every operator of _BINARY is handled above
            raise AssertionError(op)
        return Node(code, text)

    def unary(self) -> Node:
        if self.is_name("not"):
            self.advance()
            operand = self.binary(_UNARY_PRECEDENCE)
            return Node(f"(not {helper('truth', operand.code)})", f"not {operand.text}")
        if self.is_op("-") or self.is_op("+"):
            sign = str(self.advance().value)
            operand = self.binary(_UNARY_PRECEDENCE)
            return Node(helper("neg" if sign == "-" else "pos", operand.code), sign + operand.text)
        return self.postfix(self.primary())

    def arguments(self) -> tuple[list[str], list[str]]:
        """``(a, b, name=c)``: Jinja argument code, and its Pebble text."""
        self.expect_op("(")
        codes: list[str] = []
        texts: list[str] = []
        seen_named = False
        while not self.is_op(")"):
            if self.tok.kind == "name" and self.peek().kind == "op" and self.peek().value == "=":
                name = str(self.advance().value)
                if name.startswith("_"):
                    raise self.error(f"invalid argument name `{name}`")
                self.advance()
                value = self.expression()
                codes.append(f"{name}={value.code}")
                texts.append(f"{name}={value.text}")
                seen_named = True
            else:
                if seen_named:
                    raise self.error("a positional argument cannot follow a named one")
                value = self.expression()
                codes.append(value.code)
                texts.append(value.text)
            if not self.is_op(")"):
                self.expect_op(",")
        self.advance()
        return codes, texts

    def filter_call(self, value: Node) -> Node:
        token = self.tok
        name = self.expect_name("a filter name")
        if name not in FILTERS:
            raise self.error(f"unknown filter `{name}`", token)
        codes: list[str] = []
        texts: list[str] = []
        if self.is_op("("):
            codes, texts = self.arguments()
        args = f"({', '.join(codes)})" if codes else ""
        shown = f"({', '.join(texts)})" if texts else ""
        return Node(f"(({value.code})|{name}{args})", f"{value.text} | {name}{shown}")

    def test_call(self, value: Node) -> Node:
        negate = False
        if self.is_name("not"):
            self.advance()
            negate = True
        token = self.tok
        name = self.expect_name("a test name")
        if name not in TESTS:
            raise self.error(f"unknown test `{name}`", token)
        codes: list[str] = []
        if self.is_op("("):
            codes, _ = self.arguments()
        args = f"({', '.join(codes)})" if codes else ""
        code = f"(({value.code}) is {'not ' if negate else ''}{name}{args})"
        return Node(code, f"{value.text} is {'not ' if negate else ''}{name}")

    def primary(self) -> Node:
        tok = self.tok
        if tok.kind == "num":
            self.advance()
            return Node(repr(tok.value), str(tok.value))
        if tok.kind == "str":
            self.advance()
            return self.string(tok)
        if tok.kind == "name":
            return self.name()
        if self.is_op("("):
            self.advance()
            inner = self.expression()
            self.expect_op(")")
            return Node(f"({inner.code})", f"({inner.text})")
        if self.is_op("["):
            self.advance()
            items: list[Node] = []
            while not self.is_op("]"):
                items.append(self.expression())
                if not self.is_op("]"):
                    self.expect_op(",")
            self.advance()
            return Node(
                "[" + ", ".join(i.code for i in items) + "]",
                "[" + ", ".join(i.text for i in items) + "]",
            )
        if self.is_op("{"):
            self.advance()
            pairs: list[tuple[Node, Node]] = []
            while not self.is_op("}"):
                key = self.expression()
                self.expect_op(":")
                pairs.append((key, self.expression()))
                if not self.is_op("}"):
                    self.expect_op(",")
            self.advance()
            code = ", ".join(f"{k.code}: {v.code}" for k, v in pairs)
            text = ", ".join(f"{k.text}: {v.text}" for k, v in pairs)
            return Node(f"{PREFIX}mapof({{{code}}})", "{" + text + "}")
        raise self.error(f"unexpected {self.describe(tok)}")

    @staticmethod
    def string(tok: Token) -> Node:
        parts: list[str | Node] = tok.value
        if len(parts) == 1 and isinstance(parts[0], str):
            return Node(jinja_string(parts[0]), repr(parts[0]))
        codes = [jinja_string(p) if isinstance(p, str) else p.code for p in parts]
        texts = [p if isinstance(p, str) else "#{" + p.text + "}" for p in parts]
        code = codes[0]
        for other in codes[1:]:
            code = helper("cat", code, other)
        return Node(code, '"' + "".join(texts) + '"')

    def name(self) -> Node:
        tok = self.advance()
        name = str(tok.value)
        if name in _LITERALS:
            return Node(_LITERALS[name], name)
        if self.is_op("("):
            if name not in FUNCTIONS:
                raise self.error(f"unknown function `{name}`", tok)
            codes, texts = self.arguments()
            return Node(f"{PREFIX}f_{name}({', '.join(codes)})", f"{name}({', '.join(texts)})")
        if name.startswith("__"):
            raise self.error(f"names starting with `__` are not allowed: `{name}`", tok)
        if name in ("and", "or", "not", "is", "in", "contains", "equals"):
            raise self.error(f"unexpected `{name}`", tok)
        return Node(name, name)

    def postfix(self, node: Node) -> Node:
        while True:
            if self.is_op("."):
                self.advance()
                tok = self.tok
                if tok.kind == "name":
                    key = str(self.advance().value)
                    if self.is_op("("):
                        raise self.error(
                            f"method calls are not supported (`.{key}(...)`); use a filter", tok
                        )
                    node = Node(
                        helper("at", node.code, jinja_string(key), jinja_string(node.text)),
                        f"{node.text}.{key}",
                    )
                elif tok.kind == "num" and isinstance(tok.value, int):
                    self.advance()
                    node = Node(
                        helper("at", node.code, str(tok.value), jinja_string(node.text)),
                        f"{node.text}.{tok.value}",
                    )
                else:
                    raise self.error(f"expected a name after `.`, found {self.describe(tok)}")
            elif self.is_op("["):
                self.advance()
                index = self.expression()
                self.expect_op("]")
                node = Node(
                    helper("at", node.code, index.code, jinja_string(node.text)),
                    f"{node.text}[{index.text}]",
                )
            else:
                return node


# -- template scanner ------------------------------------------------------------------------


def _find_open(template: str, start: int) -> int:
    """Offset of the next ``{{``, ``{%`` or ``{#`` at or after ``start`` (-1 if none)."""
    i = template.find("{", start)
    while i != -1 and i + 1 < len(template):
        if template[i + 1] in "{%#":
            return i
        i = template.find("{", i + 1)
    return -1


def _verbatim_end(template: str, start: int) -> tuple[int, int, str]:
    """Find ``{% endverbatim %}`` / ``{% endraw %}``: (body end, tag end, tag name)."""
    i = start
    while True:
        i = template.find("{%", i)
        if i == -1:
            raise syntax_error(template, start, "missing `{% endverbatim %}`")
        j = i + 2
        if j < len(template) and template[j] == "-":
            j += 1
        rest = template[j:].lstrip()
        for name in ("endverbatim", "endraw"):
            if rest.startswith(name):
                after = rest[len(name) :].lstrip()
                if after.startswith("%}") or after.startswith("-%}"):
                    close = template.index("%}", j) + 2
                    return i, close, name
        i += 2


def _trim(flag: bool) -> str:
    return "-" if flag else ""


def _statement(template: str, tokens: list[Token], left: bool, right: bool) -> str:
    parser = Parser(template, tokens)
    head = parser.tok
    if head.kind != "name":
        raise parser.error("expected a tag name")
    tag = str(parser.advance().value)
    open_, close = "{%" + _trim(left), _trim(right) + "%}"
    if tag in ("if", "elseif", "elif"):
        cond = parser.expression()
        parser.expect_end()
        keyword = "if" if tag == "if" else "elif"
        return f"{open_} {keyword} {helper('truth', cond.code)} {close}"
    if tag in ("else", "endif", "endfor", "endfilter"):
        parser.expect_end()
        return f"{open_} {tag} {close}"
    if tag == "for":
        targets = [parser.expect_name("a loop variable")]
        if parser.is_op(","):
            parser.advance()
            targets.append(parser.expect_name("a loop variable"))
        for target in targets:
            if target.startswith("__") or target in _LITERALS:
                raise parser.error(f"invalid loop variable `{target}`", head)
        if not parser.is_name("in"):
            raise parser.error("expected `in`")
        parser.advance()
        iterable = parser.expression()
        parser.expect_end()
        iterated = helper("iter", iterable.code, str(len(targets)))
        return f"{open_} for {', '.join(targets)} in {iterated} {close}"
    if tag == "set":
        name = parser.expect_name("a variable name")
        if name.startswith("__") or name in _LITERALS or name == "loop":
            raise parser.error(f"invalid variable name `{name}`", head)
        parser.expect_op("=")
        value = parser.expression()
        parser.expect_end()
        return f"{open_} set {name} = {value.code} {close}"
    if tag == "filter":
        chain = []
        while True:
            token = parser.tok
            fname = parser.expect_name("a filter name")
            if fname not in FILTERS:
                raise parser.error(f"unknown filter `{fname}`", token)
            codes: list[str] = []
            if parser.is_op("("):
                codes, _ = parser.arguments()
            chain.append(fname + (f"({', '.join(codes)})" if codes else ""))
            if not parser.is_op("|"):
                break
            parser.advance()
        parser.expect_end()
        return f"{open_} filter {'|'.join(chain)} {close}"
    if tag in _UNSUPPORTED_TAGS:
        raise parser.error(f"the `{tag}` tag is not supported", head)
    raise parser.error(f"unknown tag `{tag}`", head)


def _text(text: str) -> str:
    """Literal template text; Jinja would turn ``\\r\\n`` into ``\\n``, so text holding a
    carriage return is emitted as a string literal instead."""
    return "{{ " + jinja_string(text) + " }}" if "\r" in text else text


@functools.lru_cache(maxsize=4096)
def translate(template: str) -> str:
    """The Jinja source equivalent to the Pebble ``template`` (raises ExpressionError)."""
    out: list[str] = []
    pos, n = 0, len(template)
    while pos < n:
        start = _find_open(template, pos)
        if start == -1:
            out.append(_text(template[pos:]))
            break
        out.append(_text(template[pos:start]))
        kind = template[start + 1]
        body = start + 2
        left = body < n and template[body] == "-"
        if left:
            body += 1
        if kind == "#":
            end = template.find("#}", body)
            if end == -1:
                raise syntax_error(template, start, "unterminated comment `{#`")
            trim_right = template[end - 1] == "-" and end - 1 >= body
            out.append("{#" + _trim(left) + " " + _trim(trim_right) + "#}")
            pos = end + 2
            continue
        lexer = Lexer(template, body, _PRINT_CLOSE if kind == "{" else _EXEC_CLOSE)
        tokens = lexer.run()
        if kind == "{":
            if tokens[0].kind == "end":
                raise syntax_error(template, start, "empty expression `{{ }}`")
            node = Parser(template, tokens).parse_complete()
            out.append("{{" + _trim(left) + " " + node.code + " " + _trim(lexer.trim_right) + "}}")
            pos = lexer.end
            continue
        if tokens[0].kind == "name" and tokens[0].value in ("verbatim", "raw"):
            if len(tokens) != 2:
                raise syntax_error(template, tokens[1].pos, "unexpected text after `verbatim`")
            body_end, tag_end, _ = _verbatim_end(template, lexer.end)
            raw = template[lexer.end : body_end]
            out.append("{{ " + jinja_string(raw) + " }}")
            pos = tag_end
            continue
        out.append(_statement(template, tokens, left, lexer.trim_right))
        pos = lexer.end
    return "".join(out)
