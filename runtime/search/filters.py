"""The metadata filter language: a recursive-descent parser to a small tree, compiled to parameterised SQL.

    filter    := or
    or        := and ("or" and)*
    and       := not ("and" not)*
    not       := "not" not | "(" or ")" | condition
    condition := FIELD ("=" | "!=" | "<" | "<=" | ">" | ">=") VALUE
               | FIELD ["not"] ("contains" | "like") VALUE | FIELD ["not"] "in" "(" VALUE ("," VALUE)* ")"

One parser for the CLI, HTTP and Python; values only ever travel as SQL parameters. Length, term count
and nesting are capped, so no filter can reach SQLite's expression-tree limit or Python's recursion limit.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NoReturn

MAX_FILTER_CHARS = 2000
MAX_FILTER_TERMS = 64
MAX_FILTER_DEPTH = 16
FILTER_HELP = (
    'FIELD OP VALUE, joined by "and" / "or", negated by "not", grouped by parentheses; OP is =, !=, <, <=, '
    '>, >=, contains, like (with % and _) or in ("a", "b"); case-insensitive; quote values with spaces, '
    "commas or parentheses. key and meter are canonical (key = Em finds E minor); raw.FIELD is the header as "
    "written. Example: (meter = 6/8 or meter = 9/8) and key in (Em, Am) and not origin contains Ireland"
)

_FIELD = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)?)")
_OP = re.compile(r"\s*(!=|<=|>=|=|<|>|(?:(not)\s+)?(contains|like|in)\b)", re.IGNORECASE)
_VALUE = re.compile(r"""\s*("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|[^\s"'(),=!<>][^\s"'(),]*)""")
_WORDS = {word: re.compile(rf"\s*{word}\b", re.IGNORECASE) for word in ("and", "or", "not")}
_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)")
_PUNCT = {p: re.compile(rf"\s*\{p}") for p in "(),"}


@dataclass(frozen=True)
class Condition:
    """`field op value`; `in` holds a tuple of values. `column` (1-based) is where it starts in the filter."""

    field: str
    op: str
    value: str | tuple[str, ...]
    column: int = field(default=0, compare=False)


@dataclass(frozen=True)
class And:
    terms: tuple[Filter, ...]


@dataclass(frozen=True)
class Or:
    terms: tuple[Filter, ...]


@dataclass(frozen=True)
class Not:
    term: Filter


Filter = Condition | And | Or | Not
# condition -> (SQL for its field, that SQL's parameters, how a value for the field is read); ValueError
# for a field that does not exist.
FieldResolver = Callable[[Condition], tuple[str, list[str], Callable[[str], str]]]


def parse_filter(text: str) -> Filter:
    """The tree of a filter such as `meter = 6/8 and (key = Em or key = Am)`; ValueError says where, what."""
    if len(text) > MAX_FILTER_CHARS:
        raise ValueError(
            f"filter too long: {len(text)} characters, at most {MAX_FILTER_CHARS}; "
            'shorten it (several `field = value` terms on one field can be one `field in ("a", "b")`)'
        )
    return _Parser(text).parse()


class _Parser:
    def __init__(self, text: str):
        self.text, self.pos, self.terms = text, 0, 0

    def parse(self) -> Filter:
        tree = self._or(0)
        if self.text[self.pos :].strip():
            self._fail('"and", "or" or the end')
        return tree

    def _or(self, depth: int) -> Filter:
        terms = [self._and(depth)]
        while self._take(_WORDS["or"]):
            terms.append(self._and(depth))
        return terms[0] if len(terms) == 1 else Or(tuple(terms))

    def _and(self, depth: int) -> Filter:
        terms = [self._not(depth)]
        while self._take(_WORDS["and"]):
            terms.append(self._not(depth))
        return terms[0] if len(terms) == 1 else And(tuple(terms))

    def _not(self, depth: int) -> Filter:
        if depth > MAX_FILTER_DEPTH:
            raise ValueError(
                f"bad filter at column {self._column()}: nested deeper than {MAX_FILTER_DEPTH} levels of "
                '"not" and parentheses; simplify it'
            )
        if self._take(_WORDS["not"]):
            return Not(self._not(depth + 1))
        if self._take(_PUNCT["("]):
            tree = self._or(depth + 1)
            if not self._take(_PUNCT[")"]):
                self._fail('")" or "and" / "or"')
            return tree
        return self._condition()

    def _condition(self) -> Filter:
        field_match = self._take(_FIELD)
        if field_match is None:
            self._fail('a field name (title, key, meter...), "not" or "("')
        column = field_match.start(1) + 1
        self.terms += 1
        if self.terms > MAX_FILTER_TERMS:
            raise ValueError(
                f"bad filter at column {column}: more than {MAX_FILTER_TERMS} terms; "
                'shorten it (several `field = value` terms on one field can be one `field in ("a", "b")`)'
            )
        op_match = self._take(_OP)
        if op_match is None:
            ops = "=, !=, <, <=, >, >=, contains, like, in"
            self._fail(f"an operator after {field_match.group(1)!r} ({ops})")
        name, op = field_match.group(1).lower(), (op_match.group(3) or op_match.group(1)).lower()
        if op == "in":
            if not self._take(_PUNCT["("]):
                self._fail('"(" to open the list of values after "in"')
            values = [self._value()]
            while self._take(_PUNCT[","]):
                values.append(self._value())
            if not self._take(_PUNCT[")"]):
                self._fail('"," or ")" in the list of values')
            condition = Condition(name, op, tuple(values), column)
        else:
            condition = Condition(name, op, self._value(), column)
        return Not(condition) if op_match.group(2) else condition

    def _value(self) -> str:
        m = self._take(_VALUE)
        if m is None:
            self._fail('a value (a word such as 6/8, or "quoted text")')
        value = m.group(1)
        return re.sub(r"\\(.)", r"\1", value[1:-1]) if value[0] in "\"'" else value

    def _take(self, pattern: re.Pattern) -> re.Match | None:
        m = pattern.match(self.text, self.pos)
        if m is not None:
            self.pos = m.end()
        return m

    def _column(self) -> int:
        return len(self.text) - len(self.text[self.pos :].lstrip()) + 1

    def _fail(self, expected: str) -> NoReturn:
        rest = self.text[self.pos :].strip()
        found = f"found {rest[:20]!r}" if rest else "found the end"
        raise ValueError(
            f"bad filter at column {self._column()}: expected {expected}, {found}. Syntax: {FILTER_HELP}"
        )


def filter_sql(tree: Filter, resolve: FieldResolver) -> tuple[str, list[str | float]]:
    """A SQL condition and its parameters: = and in ignore case; `not X` is exactly the items X leaves out."""
    if isinstance(tree, And | Or):
        parts = [filter_sql(term, resolve) for term in tree.terms]
        joiner = " AND " if isinstance(tree, And) else " OR "
        return joiner.join(f"({sql})" for sql, _ in parts), [p for _, params in parts for p in params]
    if isinstance(tree, Not):
        sql, params = filter_sql(tree.term, resolve)
        return f"({sql}) IS NOT 1", params  # NULL (a missing field) counts as false, so NOT keeps it
    target, target_params, read = resolve(tree)
    if tree.op == "in":
        values = [read(v) for v in tree.value]
        return f"{target} COLLATE NOCASE IN ({', '.join('?' * len(values))})", [*target_params, *values]
    value = tree.value if tree.op in ("contains", "like") else read(tree.value)
    if tree.op == "=":
        return f"{target} = ? COLLATE NOCASE", [*target_params, value]
    if tree.op == "!=":  # a missing field is "not equal", as before `not` existed
        return f"({target} IS NULL OR {target} != ? COLLATE NOCASE)", [*target_params, *target_params, value]
    if tree.op == "contains":
        return f"instr(lower({target}), lower(?)) > 0", [*target_params, value]
    if tree.op == "like":
        return f"{target} LIKE ? ESCAPE '\\'", [*target_params, value]
    if _is_number(value):  # tempo > 100, tune_index < 5: by number, whatever the column holds
        return f"CAST({target} AS REAL) {tree.op} ?", [*target_params, float(value)]
    return f"{target} {tree.op} ? COLLATE NOCASE", [*target_params, value]


def _is_number(text: str) -> bool:
    return _NUMBER.fullmatch(text) is not None
