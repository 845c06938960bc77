"""The allowed range of every numeric query option, defined once for the Python API, the CLI and HTTP.

The CLI (runtime.cli.InRange) and the HTTP request models (runtime.serve.errors.limited) both check
through `Limit.check`, so a bad value is refused with the same words everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

Number = TypeVar("Number", int, float)


@dataclass(frozen=True)
class Limit:
    """A closed range [low, high] (either end may be open-ended: None) for one named option."""

    name: str
    low: float | None = None
    high: float | None = None
    low_exclusive: bool = False  # for durations: more than `low`, not `low` itself

    def describe(self) -> str:
        if self.low is not None and self.high is not None:
            return f"from {self.low:g} to {self.high:g}"
        if self.low is not None:
            return f"more than {self.low:g}" if self.low_exclusive else f"at least {self.low:g}"
        return f"at most {self.high:g}" if self.high is not None else "any number"

    def message(self, value: object) -> str:
        return f"{self.name} must be {self.describe()}, got {value}"

    def check(self, value: Number) -> Number:
        """The value itself when it is in range; else ValueError saying the range."""
        too_low = self.low is not None and (value <= self.low if self.low_exclusive else value < self.low)
        if too_low or (self.high is not None and value > self.high):
            raise ValueError(self.message(value))
        return value


K_MAX = 1000
K = Limit("k (the number of results)", 1, K_MAX)
TOP_N = Limit("top-n (the number of results; 0 for all keys)", 0)
TUNE = Limit("tune (the tune's index in its file, from 0)", 0)
PORT = Limit("port", 1, 65535)
CONCURRENCY = Limit("max-concurrency (queries at once)", 1, 1024)
TIMEOUT_S = Limit("request-timeout (seconds)", 0, 3600, low_exclusive=True)
EF = Limit("ef (the HNSW search beam)", 1, 100_000)
HNSW_M = Limit("m (HNSW links per node)", 2, 256)
EF_CONSTRUCTION = Limit("ef-construction", 1, 100_000)
THREADS = Limit("threads", 1, 4096)
FIRST_LABEL = Limit("first-label (where an index's labels start)", 0, 1 << 62)  # labels are int64

TEXT_CHARS = 4096  # a text query (the text tower reads at most 128 tokens of it)
ABC_CHARS = 1 << 20  # an ABC query
NAME_CHARS = 256  # an item id, a label, a label set's name, a prompt template
EXCERPT_CHARS = 200  # the most of a user's input an error message repeats


def require_text(text: str) -> str:
    """A text query, refused when empty or blank (nothing to embed), with what to write instead."""
    if not text.strip():
        raise ValueError('the text query is empty: describe the music, e.g. "a lively jig in D major"')
    return text


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """At most `limit` characters of a user's input, for error messages (never the whole of a huge input)."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text)} characters in all)"
