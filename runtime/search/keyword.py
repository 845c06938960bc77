"""The keyword side of text search: an SQLite FTS5 table over each item's text metadata, ranked by bm25.

Vector search answers queries in the model's own vocabulary (reel, dorian, strathspey); titles,
composers, places and genres ("a harp tune by O'Carolan", "a Christmas carol") are found here. Both
sides of the comparison go through `normalize`, and English query words reach the German metadata
of real collections through the synonym table (synonyms.tsv).
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Callable
from functools import cache
from pathlib import Path

import numpy as np
from unidecode import unidecode

FTS_TABLE = "items_fts"
FTS_BATCH_ROWS = 10_000
SYNONYMS_FILE = Path(__file__).with_name("synonyms.tsv")
# FTS columns, and the ABC header fields (from the items' `meta` JSON) that go into `other`.
FTS_COLUMNS = ("title", "composer", "origin", "rhythm", "key", "meter", "other")
OTHER_FIELDS = ("area", "book", "group", "history", "notes", "parts", "source")
# bm25 weight per FTS column (a match in a title or genre says more than one in the notes).
COLUMN_WEIGHTS = (2.0, 2.0, 1.0, 2.0, 1.0, 1.0, 0.5)
# Of the items matching any part of a query, those matching at least this share of its parts are kept.
MIN_COVERAGE = 0.5
WORD_COLUMNS = "{title composer origin rhythm other}"  # plain query words; keys and meters have theirs
# Query words that say nothing about which tune is meant.
STOP_WORDS = frozenset(
    "a an the in of by from for with and or to on at as is it its this that some any me my find show "
    "give play played tune tunes song songs piece pieces music melody melodies folk traditional "
    "something like style one time key mode about".split()
)
_UMLAUTS = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "Ä": "Ae", "Ö": "Oe", "Ü": "Ue", "ß": "ss"})
_MODES = {
    "": "major", "maj": "major", "major": "major", "ion": "major", "ionian": "major",
    "m": "minor", "min": "minor", "minor": "minor", "aeo": "minor", "aeolian": "minor",
    "mix": "mixolydian", "mixolydian": "mixolydian", "dor": "dorian", "dorian": "dorian",
    "phr": "phrygian", "phrygian": "phrygian", "lyd": "lydian", "lydian": "lydian",
    "loc": "locrian", "locrian": "locrian",
}  # fmt: skip
_ACCIDENTALS = {"": "", "#": "sharp", "sharp": "sharp", "b": "flat", "flat": "flat"}
_MODE_WORDS = "|".join(sorted((m for m in _MODES if len(m) > 1), key=len, reverse=True))
_KEY_FIELD = re.compile(rf"^\s*([a-g])\s*(#|b)?\s*({_MODE_WORDS}|m)?\b")
# In a query: "in G", "in e minor", "in Bb", "in Dmix", "F sharp minor", "E dorian" (a capital tonic).
_QUERY_KEY = re.compile(
    rf"\b(?i:in|key of)\s+([A-Ga-g])(#|b|\s+(?i:sharp|flat))?\s*((?i:{_MODE_WORDS})|m)?(?![A-Za-z0-9])"
    rf"|\b([A-G])(#|b|\s+(?i:sharp|flat))?\s+((?i:{_MODE_WORDS}))\b"
)
_MODE_NAMES = frozenset(_MODES.values()) | {"aeolian", "ionian"}
_NAMED_METERS = {"common time": "4/4", "cut time": "2/2", "alla breve": "2/2"}
_METER = re.compile(r"\b(\d{1,2})\s*/\s*(\d{1,2})\b")
_COMMON_TIME = {"c": "4/4 common time", "c|": "2/2 cut time"}
_TOKEN = re.compile(r"[a-z0-9]+")
_EXPANSION = re.compile(r"[a-z0-9]+(?:_[a-z0-9]+)*\*?")


def normalize(text: str) -> str:
    """What both the index and the queries compare: umlauts as ae/oe/ue, then unidecode, case-folded."""
    return unidecode(text.translate(_UMLAUTS)).casefold()


def key_words(key: str | None) -> str:
    """An ABC key field as words a query can match: "Em" -> "e minor", "Bb" -> "b flat major"."""
    m = _KEY_FIELD.match(normalize(key or ""))
    if not m:
        return normalize(key or "")
    tonic, accidental, mode = m.group(1), _ACCIDENTALS[m.group(2) or ""], _MODES[m.group(3) or ""]
    return " ".join(w for w in (tonic, accidental, mode) if w)


def meter_words(meter: str | None) -> str:
    """An ABC meter as words a query can match: C and C| also as 4/4 common time and 2/2 cut time."""
    text = normalize(meter or "").strip()
    return _COMMON_TIME.get(text, text)


def fts_row(label: int, metadata: dict[str, str | None], meta: dict[str, str]) -> tuple:
    """The FTS row of one item: its label, then the normalised text of each FTS column."""
    other = " ".join(str(meta[f]) for f in OTHER_FIELDS if meta.get(f))
    values = {
        **{c: normalize(metadata.get(c) or "") for c in ("title", "composer", "origin", "rhythm")},
        "key": key_words(metadata.get("key")),
        "meter": meter_words(metadata.get("meter")),
        "other": normalize(other),
    }
    return (label, *(values[c] for c in FTS_COLUMNS))


def create_fts(conn: sqlite3.Connection) -> None:
    """Build the keyword table from the items table (at index build time, after the bulk insert)."""
    columns = ", ".join(f'"{c}"' for c in FTS_COLUMNS)
    conn.execute(f"CREATE VIRTUAL TABLE {FTS_TABLE} USING fts5({columns}, content='', tokenize='unicode61')")
    rows = conn.execute('SELECT label, title, composer, origin, rhythm, "key", meter, meta FROM items')
    metadata_columns = ("title", "composer", "origin", "rhythm", "key", "meter")
    insert = f"INSERT INTO {FTS_TABLE} (rowid, {columns}) VALUES ({', '.join('?' * (len(FTS_COLUMNS) + 1))})"
    while batch := rows.fetchmany(FTS_BATCH_ROWS):  # batches: memory holds one, not the corpus
        conn.executemany(
            insert,
            (
                fts_row(
                    label, dict(zip(metadata_columns, values, strict=True)), json.loads(meta) if meta else {}
                )
                for label, *values, meta in batch
            ),
        )
    conn.commit()


def has_fts(conn: sqlite3.Connection) -> bool:
    """Whether an items.sqlite has the keyword table (indices built before it have not)."""
    sql = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
    return conn.execute(sql, (FTS_TABLE,)).fetchone() is not None


@cache
def synonyms(path: Path = SYNONYMS_FILE) -> dict[str, tuple[str, ...]]:
    """The synonym table: query word -> FTS terms (quoted words, prefix terms, phrases)."""
    table = {}
    for number, line in enumerate(path.read_text("utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        word, _, expansions = line.partition("\t")
        terms = expansions.split()
        if not _TOKEN.fullmatch(word) or not terms or not all(_EXPANSION.fullmatch(t) for t in terms):
            raise ValueError(
                f"{path}:{number}: expected `word<TAB>expansion ...` in lower-case ASCII letters and digits "
                f"(a trailing * for any ending, _ between the words of a phrase), got {line!r}"
            )
        table[word] = tuple(_term(t) for t in terms)
    return table


def _term(expansion: str) -> str:
    """An FTS5 term for a synonym: "word", "word"* or "two words" (quoted: nothing else is syntax)."""
    words, star = expansion.rstrip("*"), "*" if expansion.endswith("*") else ""
    return f'"{words.replace("_", " ")}"{star}'


def query_groups(query: str) -> list[str]:
    """The FTS5 expressions, one per searchable part of a free-text query (none: nothing to search).

    Keys ("in E minor") and meters ("5/8", "common time") match their own columns; every other word
    (stop words and single letters left out) matches itself, its singular and its synonyms. Only
    [a-z0-9] tokens reach the expressions, each quoted, so no FTS5 syntax can come from the user.
    """
    groups: list[str] = []
    text = normalize(_QUERY_KEY.sub(lambda m: _key_group(m, groups), unidecode(query.translate(_UMLAUTS))))
    for words, meter in _NAMED_METERS.items():
        text = text.replace(words, meter)
    groups += [f'meter : "{m.group(1)} {m.group(2)}"' for m in _METER.finditer(text)]
    text = _METER.sub(" ", text)
    table = synonyms()
    words = []
    for token in _TOKEN.findall(text):
        if token in STOP_WORDS or len(token) < 2 or token in words:
            continue
        words.append(token)
        if token in _MODE_NAMES:
            groups.append(f'key : "{_MODES.get(token, token)}"')
            continue
        singular = (
            token[:-1] if token.endswith("s") and token[-2:-1] not in "aisu" and len(token) > 3 else token
        )
        terms = dict.fromkeys([f'"{token}"', f'"{singular}"', *table.get(token, table.get(singular, ()))])
        groups.append(f"{WORD_COLUMNS} : ({' OR '.join(terms)})")
    return groups


def _key_group(m: re.Match, groups: list[str]) -> str:
    """Note a key found in a query as a group on the key column; what is left of the query in its place."""
    tonic, accidental, mode = m.group(1, 2, 3) if m.group(1) else m.group(4, 5, 6)
    if tonic == "a" and not accidental and not mode:
        return m.group(0)  # "in a ..." is an article, not A major
    accidental = _ACCIDENTALS[(accidental or "").strip().lower()]
    words = [tonic.lower(), accidental, _MODES[(mode or "").lower()]]  # "in G" is G major, as K:G is
    groups.append(f'key : "{" ".join(w for w in words if w)}"')
    return " "


def part_matches(conn: sqlite3.Connection, part: str) -> tuple[np.ndarray, np.ndarray]:
    """The items matching one part of a query (a query_groups expression): labels, ascending, and bm25.

    FTS5's bm25 of an OR of parts is the sum of the parts' bm25s (it sums over phrases, each with its own
    idf), so a query's scores are summed from its parts' and each part can be looked up once and kept.
    """
    weights = ", ".join(map(str, COLUMN_WEIGHTS))
    sql = f"SELECT rowid, -bm25({FTS_TABLE}, {weights}) FROM {FTS_TABLE} WHERE {FTS_TABLE} MATCH ?"
    rows = np.array(conn.execute(sql, [part]).fetchall(), dtype=np.float64).reshape(-1, 2)  # rowid order
    return rows[:, 0].astype(np.int64), rows[:, 1]


PartMatches = Callable[[sqlite3.Connection, str], tuple[np.ndarray, np.ndarray]]


def search(
    conn: sqlite3.Connection,
    query: str,
    k: int,
    where: str = "1",
    params: list | None = None,
    excluded: np.ndarray | None = None,
    matches: PartMatches = part_matches,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The k best items for a query: labels, bm25 scores (higher is better) and parts matched, best first.

    An item must match at least MIN_COVERAGE of the query's parts (query_groups): one word of
    "the stock market fell sharply today" in a title is no match. Items matching more parts rank
    first, bm25 orders the rest. `where`/`params` restrict the items (a SQL condition over the
    items table, from items.condition_sql); `excluded` labels (deleted rows) are never returned.
    `matches` looks up one part (part_matches, or a cache of it).
    """
    groups = query_groups(query)
    found = [matches(conn, group) for group in groups] if k > 0 else []
    if not found or not sum(len(labels) for labels, _ in found):
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.int64)
    labels, inverse = np.unique(np.concatenate([labels for labels, _ in found]), return_inverse=True)
    bm25 = np.bincount(inverse, weights=np.concatenate([scores for _, scores in found]))
    parts = np.bincount(inverse)
    keep = parts >= (MIN_COVERAGE * len(groups) if len(groups) > 1 else 0)
    if where != "1":  # filtered here: FTS5 would run the MATCH once per rowid of an IN (...) constraint
        allowed = [label for (label,) in conn.execute(f"SELECT label FROM items WHERE {where}", params or [])]
        keep &= np.isin(labels, np.asarray(allowed, dtype=np.int64))
    if excluded is not None and len(excluded):
        keep &= ~np.isin(labels, excluded)
    labels, bm25, parts = labels[keep], bm25[keep], parts[keep]
    best = np.lexsort((-bm25, -parts))[:k]
    return labels[best], bm25[best].astype(np.float32), parts[best]
