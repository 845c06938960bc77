"""What can go wrong reading an index dir, as errors a user can act on (each says what to do)."""

from __future__ import annotations

REBUILD = "rebuild the index with `clamp index build`"


class IndexDirError(ValueError):
    """An index dir that is incomplete, damaged or altered since it was built."""


class DamagedIndexError(IndexDirError):
    """An index file that cannot be read (its database is corrupt, truncated or not a database)."""


class QueryTooComplexError(ValueError):
    """A query (a filter of very many terms) beyond what the metadata database evaluates."""
