"""The run query language of ``GET …/runs?q=``: a tokenizer, a recursive-descent parser, a matcher.

A query is a boolean expression over runs::

    lr>=1e-3 and (status:FINISHED or tag:sweep) not name~debug

Terms:

- ``NAME OP VALUE`` compares a run's value with a value. ``OP`` is one of
  ``=``, ``==`` or ``:`` (equal), ``!=``, ``<``, ``<=``, ``>``, ``>=`` and
  ``~`` (contains, as text). A value may contain ``:`` after its first
  character, as times do.
- A bare ``WORD`` matches runs whose id or name contains it.

Terms combine with ``and``, ``or``, ``not`` (any letter case) and parentheses.
Two terms side by side mean ``and``; ``and`` binds tighter than ``or``. Names
and values with spaces or operator characters are quoted with ``"`` or ``'``
(a backslash escapes the next character inside quotes).

A name is looked up, in this order, among the run fields (:data:`FIELDS`,
any letter case), the metric tails, the scalars and the params. The prefixes
``metrics.``, ``scalars.`` and ``params.`` pick one of those explicitly.

Comparisons: numbers compare as numbers, also against text params that hold a
number (YAML reads ``1e-3`` as text). Text compares without regard to letter
case. Time fields (``started_at``, ``finished_at``, ``heartbeat_at``) compare
as instants, so ``started_at>=2026-01-05`` works. A list (``tags``) matches
when any of its items does, except ``!=``, which matches when none is equal.
``null`` matches a null value with ``=``, and ``!=`` matches the other values.
A name the run does not have counts as null.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

from .metadata import parse_instant

#: Maximum length of a query, in characters.
MAX_QUERY_LENGTH = 4000

#: Maximum nesting depth of parentheses and ``not`` in a query.
MAX_DEPTH = 64

#: Run fields a query can name, with the key of the run summary each one reads.
FIELDS = {
    "id": "id", "name": "name", "experiment": "experiment", "status": "status",
    "tag": "tags", "tags": "tags", "description": "description", "group": "group",
    "rank": "rank", "language": "language", "env_path": "env_path", "stale": "stale",
    "started_at": "started_at", "finished_at": "finished_at", "heartbeat_at": "heartbeat_at",
    "duration": "duration_secs", "duration_secs": "duration_secs",
}  # fmt: skip

TIME_FIELDS = frozenset({"started_at", "finished_at", "heartbeat_at"})

#: Prefixes that pick one group of a run's values: ``params.lr``, ``metrics.loss``.
GROUPS = {"params": "params", "param": "params", "metrics": "metrics", "metric": "metrics",
          "scalars": "scalars", "scalar": "scalars"}

OPERATORS = ("<=", ">=", "!=", "==", "=", ":", "<", ">", "~")
KEYWORDS = ("and", "or", "not")

_SPECIAL = set("()\"'<>=!:~")
_NUMBER = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$")
_INTEGER = re.compile(r"^[+-]?\d+$")


class SearchError(ValueError):
    """A query that cannot be parsed, with the wrong token and its 0-based offset ``position``.

    The message names the token's 1-based character number.
    """

    def __init__(self, message: str, position: int, token: str):
        super().__init__(message)
        self.position = position
        self.token = token


# Tokens


@dataclass(frozen=True)
class Token:
    """One token: ``kind`` is word, text (quoted), op, lparen, rparen, and, or, not or end."""

    kind: str
    text: str
    position: int


def tokenize(query: str) -> list[Token]:
    """Split a query into tokens, ending with an ``end`` token; raise SearchError."""
    tokens = []
    index = 0
    while index < len(query):
        char = query[index]
        if char.isspace():
            index += 1
        elif char in "()":
            tokens.append(Token("lparen" if char == "(" else "rparen", char, index))
            index += 1
        elif char in "\"'":
            text, end = _read_quoted(query, index)
            tokens.append(Token("text", text, index))
            index = end
        elif char in _SPECIAL:
            operator = next((op for op in OPERATORS if query.startswith(op, index)), None)
            if operator is None:
                raise SearchError("unexpected %r at character %d; use '!=' or 'not'"
                                  % (char, index + 1), index, char)
            tokens.append(Token("op", operator, index))
            index += len(operator)
        else:
            # A value may contain ':' after its first character, as times do (09:00:00).
            inside = _SPECIAL - {":"} if tokens and tokens[-1].kind == "op" else _SPECIAL
            end = index
            while end < len(query) and not query[end].isspace() and query[end] not in inside:
                end += 1
            word = query[index:end]
            kind = word.lower() if word.lower() in KEYWORDS else "word"
            tokens.append(Token(kind, word, index))
            index = end
    tokens.append(Token("end", "", len(query)))
    return tokens


def _read_quoted(query: str, start: int) -> tuple[str, int]:
    quote = query[start]
    chars = []
    index = start + 1
    while index < len(query):
        char = query[index]
        if char == "\\" and index + 1 < len(query):
            chars.append(query[index + 1])
            index += 2
        elif char == quote:
            return "".join(chars), index + 1
        else:
            chars.append(char)
            index += 1
    raise SearchError("the quote at character %d is never closed" % (start + 1), start, query[start:])


# Syntax tree


@dataclass(frozen=True)
class Value:
    """A value written in a query, as text and, when it is an unquoted number, as a number."""

    text: str
    number: int | float | None = None
    boolean: bool | None = None
    is_null: bool = False

    @classmethod
    def from_token(cls, token: Token) -> Value:
        if token.kind == "text":
            return cls(token.text)
        word = token.text
        if _INTEGER.match(word):
            return cls(word, number=int(word))
        if _NUMBER.match(word):
            return cls(word, number=float(word))
        if word.lower() in ("true", "false"):
            return cls(word, boolean=word.lower() == "true")
        if word.lower() in ("null", "none"):
            return cls(word, is_null=True)
        return cls(word)


class Node:
    """A node of a parsed query."""

    def matches(self, run: dict) -> bool:
        raise NotImplementedError


@dataclass(frozen=True)
class AnyOf(Node):
    """Terms joined by ``or``."""

    items: tuple[Node, ...]

    def matches(self, run: dict) -> bool:
        return any(item.matches(run) for item in self.items)


@dataclass(frozen=True)
class AllOf(Node):
    """Terms joined by ``and`` or written side by side."""

    items: tuple[Node, ...]

    def matches(self, run: dict) -> bool:
        return all(item.matches(run) for item in self.items)


@dataclass(frozen=True)
class Not(Node):
    """A term after ``not``."""

    item: Node

    def matches(self, run: dict) -> bool:
        return not self.item.matches(run)


@dataclass(frozen=True)
class Word(Node):
    """A bare word: the run's id or name contains it (letter case ignored)."""

    text: str

    def matches(self, run: dict) -> bool:
        needle = self.text.casefold()
        return any(needle in str(run.get(key) or "").casefold() for key in ("id", "name"))


@dataclass(frozen=True)
class Comparison(Node):
    """``NAME OP VALUE``: a run's value compared with a value of the query."""

    name: str
    operator: str
    value: Value

    def matches(self, run: dict) -> bool:
        actual = lookup(run, self.name)
        is_time = self.name.lower() in TIME_FIELDS
        if isinstance(actual, list):
            if self.operator == "!=":
                return not any(compare(item, "=", self.value, is_time) for item in actual)
            return any(compare(item, self.operator, self.value, is_time) for item in actual)
        return compare(actual, self.operator, self.value, is_time)


_MISSING = object()


def lookup(run: dict, name: str) -> Any:
    """Return the run's value that ``name`` names, or None when the run has none."""
    field = FIELDS.get(name.lower())
    if field is not None and field in run:
        return run[field]
    group, _, key = name.partition(".")
    if key and group.lower() in GROUPS:
        value = (run.get(GROUPS[group.lower()]) or {}).get(key, _MISSING)
        if value is not _MISSING:
            return value
    for group_key in ("metrics", "scalars", "params"):
        value = (run.get(group_key) or {}).get(name, _MISSING)
        if value is not _MISSING:
            return value
    return None


def compare(actual: Any, operator: str, value: Value, is_time: bool = False) -> bool:
    """Compare one run value with a query value (see the module's description)."""
    if actual is None or value.is_null:
        both_null = actual is None and value.is_null
        if operator == "!=":
            return not both_null
        return both_null and operator in ("=", "==", ":")
    if operator == "~":
        return value.text.casefold() in _as_text(actual).casefold()
    if is_time:
        left, right = parse_instant(actual), parse_instant(value.text)
        if left is not None and right is not None:
            return _ORDER[operator](left, right)
    if isinstance(actual, bool) or value.boolean is not None:
        if isinstance(actual, bool) and value.boolean is not None and operator in ("=", "==", ":", "!="):
            return _ORDER[operator](actual, value.boolean)
        return operator == "!=" and _as_text(actual).casefold() != value.text.casefold()
    number = _as_number(actual)
    if value.number is not None and number is not None:
        return _ORDER[operator](number, value.number)
    if operator in ("<", "<=", ">", ">=") and (value.number is not None or number is not None):
        return False  # A number and a text are not ordered.
    return _ORDER[operator](_as_text(actual).casefold(), value.text.casefold())


def _as_number(value: Any) -> int | float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and _NUMBER.match(value.strip()):
        text = value.strip()
        return int(text) if _INTEGER.match(text) else float(text)
    return None


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


_ORDER: dict[str, Callable[[Any, Any], bool]] = {
    "=": lambda a, b: a == b,
    "==": lambda a, b: a == b,
    ":": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


# Parser


class _Parser:
    """Recursive descent over the grammar::

        query      = [or_expr] end
        or_expr    = and_expr {"or" and_expr}
        and_expr   = unary {["and"] unary}
        unary      = "not" unary | primary
        primary    = "(" or_expr ")" | term
        term       = (word | text) [op (word | text)]
    """

    def __init__(self, tokens: list[Token]):
        self.tokens = tokens
        self.index = 0
        self.depth = 0

    @property
    def current(self) -> Token:
        return self.tokens[self.index]

    def advance(self) -> Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def fail(self, expected: str, token: Token | None = None) -> SearchError:
        token = token or self.current
        found = "the end of the query" if token.kind == "end" else repr(token.text)
        return SearchError("expected %s at character %d, found %s"
                           % (expected, token.position + 1, found), token.position, token.text)

    def parse(self) -> Node | None:
        if self.current.kind == "end":
            return None
        node = self.or_expr()
        if self.current.kind == "rparen":
            token = self.current
            raise SearchError("the ')' at character %d has no matching '('" % (token.position + 1),
                              token.position, token.text)
        if self.current.kind != "end":
            raise self.fail("'and', 'or', another term or the end of the query")
        return node

    def or_expr(self) -> Node:
        items = [self.and_expr()]
        while self.current.kind == "or":
            self.advance()
            items.append(self.and_expr())
        return items[0] if len(items) == 1 else AnyOf(tuple(items))

    def and_expr(self) -> Node:
        items = [self.unary()]
        while self.current.kind in ("and", "not", "lparen", "word", "text"):
            if self.current.kind == "and":
                self.advance()
            items.append(self.unary())
        return items[0] if len(items) == 1 else AllOf(tuple(items))

    def unary(self) -> Node:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            token = self.current
            raise SearchError("more than %d nested parentheses or 'not' at character %d"
                              % (MAX_DEPTH, token.position + 1), token.position, token.text)
        try:
            if self.current.kind == "not":
                self.advance()
                return Not(self.unary())
            return self.primary()
        finally:
            self.depth -= 1

    def primary(self) -> Node:
        if self.current.kind == "lparen":
            opening = self.advance()
            node = self.or_expr()
            if self.current.kind != "rparen":
                raise SearchError("the '(' at character %d is never closed" % (opening.position + 1),
                                  opening.position, opening.text)
            self.advance()
            return node
        if self.current.kind not in ("word", "text"):
            raise self.fail("a name, a word or '('")
        name = self.advance()
        if self.current.kind != "op":
            return Word(name.text)
        operator = self.advance()
        if self.current.kind not in ("word", "text"):
            raise self.fail("a value after %r" % operator.text)
        value = Value.from_token(self.advance())
        if name.text.lower() in TIME_FIELDS and operator.text != "~" and not value.is_null \
                and parse_instant(value.text) is None:
            raise self.fail("a date or time like 2026-01-05 or 2026-01-05T09:00:00Z",
                            self.tokens[self.index - 1])
        return Comparison(name.text, operator.text, value)


def parse_query(query: str) -> Node | None:
    """Parse a query; return None for an empty one (every run matches); raise SearchError."""
    if len(query) > MAX_QUERY_LENGTH:
        raise SearchError("the query is %d characters long; the limit is %d"
                          % (len(query), MAX_QUERY_LENGTH), MAX_QUERY_LENGTH, query[MAX_QUERY_LENGTH:][:20])
    return _Parser(tokenize(query)).parse()
