"""The filter language: grammar, errors that say where, caps, SQL semantics on canonical fields, facets."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from music21 import corpus

from runtime.music.abc import split_tunes
from runtime.music.formats import decode_bytes
from runtime.search.filters import MAX_FILTER_TERMS, And, Condition, Not, Or, parse_filter
from runtime.search.items import ItemStore, ItemWriter, item_row
from runtime.search.masks import FilterMasks

TUNES = [  # label: raw header fields (as the shards' `meta` JSON holds them)
    {"title": "Alpha", "key": "Em", "meter": "6/8", "rhythm": "Jig", "origin": "Ireland"},
    {"title": "Beta % a comment", "key": "E minor % comment", "meter": "C", "rhythm": "reel"},
    {"title": "Gamma", "key": "G", "meter": "C|", "rhythm": "Reel", "origin": "Irland"},
    {"title": "Delta", "key": "Ador", "meter": "3/4", "origin": "Scotland", "reference": "12"},
    {"title": 'say "hi"', "key": "D", "meter": "6/8", "rhythm": "jig", "reference": "7"},
]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> ItemStore:
    path = tmp_path_factory.mktemp("items") / "items.sqlite"
    writer = ItemWriter(path)
    writer.add(
        item_row(
            label,
            f"id{label}",
            f"corpus/{'oneills' if label < 3 else 'essen'}/f.abc",
            label,
            json.dumps(m),
            "",
        )
        for label, m in enumerate(TUNES)
    )
    writer.finish()
    return ItemStore(path)


def labels(store: ItemStore, text: str) -> list[int]:
    return store.labels_matching(parse_filter(text)).tolist()


def test_precedence_is_not_then_and_then_or_and_parentheses_group():
    a, b, c = (Condition(name, "=", "1") for name in "abc")
    assert parse_filter("a = 1 or b = 1 and c = 1") == Or((a, And((b, c))))
    assert parse_filter("(a = 1 or b = 1) and c = 1") == And((Or((a, b)), c))
    assert parse_filter("not a = 1 and b = 1") == And((Not(a), b))
    assert parse_filter("NOT (a = 1 OR b = 1)") == Not(Or((a, b)))
    assert parse_filter("a not in (1, '2')") == Not(Condition("a", "in", ("1", "2")))
    assert parse_filter("a not contains 1") == Not(Condition("a", "contains", "1"))


def test_yesterdays_syntax_still_parses():
    assert parse_filter("meter = \"6/8\" and origin contains 'Co. Cork' AND key != G") == And(
        (
            Condition("meter", "=", "6/8"),
            Condition("origin", "contains", "Co. Cork"),
            Condition("key", "!=", "G"),
        )
    )
    assert parse_filter("meter=6/8") == Condition("meter", "=", "6/8")
    assert parse_filter(r'title = "say \"hi\""') == Condition("title", "=", 'say "hi"')


SELECTIONS = [  # filter, the labels it selects from TUNES
    ("key = Em", [0, 1]),  # canonical field, value read as ABC: Em, E minor, "E minor % comment"
    ("key = 'e minor'", [0, 1]),
    ("raw.key = Em", [0]),  # the header as written
    ("meter = C", [1]),
    ("meter = 4/4", [1]),
    ("meter = 2/2", [2]),
    ("title = Beta", [1]),  # comment stripped
    ("rhythm = REEL", [1, 2]),
    ("rhythm in (jig, reel)", [0, 1, 2, 4]),
    ("rhythm not in (jig, reel)", [3]),  # a missing field is not in the list
    ("not rhythm = jig", [1, 2, 3]),  # `not X` is every item X leaves out
    ("rhythm != jig", [1, 2, 3]),
    ("(meter = 6/8 or meter = 3/4) and not key = D", [0, 3]),
    ("origin contains IRE or origin = irland", [0, 2]),
    ("title like 'say%'", [4]),
    ("reference >= 10", [3]),  # by number: "12" >= 10, though "12" < "7" as text
    ("reference < 10", [4]),
    ("tune_index <= 1", [0, 1]),
    ("title < B", [0]),
    ("collection = oneills", [0, 1, 2]),
    ("key = 'A dorian' and collection = essen", [3]),
    ("raw.reference = 7", [4]),
    ("raw.colour = red", []),  # any raw field: tables add their own columns to meta
]


@pytest.mark.parametrize(("text", "expected"), SELECTIONS)
def test_filters_select_items_on_canonical_fields(store, text, expected):
    assert labels(store, text) == expected


@pytest.mark.parametrize(("text", "expected"), SELECTIONS)
def test_masks_from_in_memory_columns_select_what_sql_selects(store, text, expected):
    assert np.flatnonzero(FilterMasks(store, len(TUNES)).mask(parse_filter(text))).tolist() == expected


@pytest.mark.parametrize(
    ("text", "column", "expected"),
    [
        ("meter == 6/8", 8, "a value"),
        ("= 6/8", 1, "a field name"),
        ("meter = 6/8 and", 16, "a field name"),
        ("", 1, "a field name"),
        ("(meter = 3/4", 13, '")"'),
        ("key in (Em, Am", 15, '"," or ")"'),
        ("key in Em", 8, '"("'),
        ("meter = 3/4 key = G", 13, '"and", "or" or the end'),
        ("meter is 3/4", 7, "an operator after 'meter'"),
    ],
)
def test_a_filter_that_fails_to_parse_says_where_and_what_was_expected(text, column, expected):
    with pytest.raises(
        ValueError, match=rf"bad filter at column {column}: expected {re.escape(expected)}.*Syntax"
    ):
        parse_filter(text)


def test_unknown_fields_are_refused_naming_the_known_ones(store):
    with pytest.raises(
        ValueError, match=r"unknown filter field 'colour' at column 14; use one of: .*meter.*raw"
    ):
        labels(store, "meter = C or colour = red")


def test_caps_on_length_terms_and_nesting_say_what_to_do(store):
    most = " or ".join(f"tune_index = {i}" for i in range(MAX_FILTER_TERMS))
    assert labels(store, most) == [0, 1, 2, 3, 4]  # the most terms allowed is within SQLite's limits
    with pytest.raises(ValueError, match=r"more than 64 terms.*in \("):
        parse_filter(most + " or tune_index = 99")
    with pytest.raises(ValueError, match=r"filter too long: 17595 characters, at most 2000"):
        parse_filter(
            " and ".join(["meter = 6/8"] * 1100)
        )  # issue #16: SQLite's "Expression tree is too large"
    with pytest.raises(ValueError, match="nested deeper than 16"):
        parse_filter("not " * 17 + "meter = 6/8")
    with pytest.raises(ValueError, match="nested deeper than 16"):
        parse_filter("(" * 17 + "meter = 6/8" + ")" * 17)


def test_among_narrows_the_whole_filter_not_its_last_term(store):
    tree = parse_filter("rhythm = jig or rhythm = reel")
    assert store.labels_matching(tree, among=[1, 3, 4]).tolist() == [1, 4]


def test_values_travel_as_parameters_never_as_sql(store):
    assert labels(store, "title = \"x'); DROP TABLE items; --\" or title like '%\" OR 1=1 --'") == []
    assert labels(store, "key = Em") == [0, 1]


def test_facets_count_canonical_values_among_the_items_a_filter_keeps(store):
    assert store.facet(None, "key", 10) == [("E minor", 2), ("A dorian", 1), ("D major", 1), ("G major", 1)]
    assert store.facet(None, "key", 1) == [("E minor", 2)]
    assert store.facet(parse_filter("rhythm in (jig, reel)"), "rhythm", 10) == [("jig", 2), ("reel", 2)]
    assert store.facet(None, "raw.key", 2) == [("Ador", 1), ("D", 1)]
    assert store.facet(None, "origin", 10) == [("Ireland", 1), ("Irland", 1), ("Scotland", 1)]  # no NULL
    with pytest.raises(ValueError, match="unknown filter field 'colour'; use one of"):
        store.facet(None, "colour", 10)


def test_an_items_table_from_before_canonical_fields_asks_for_a_rebuild(tmp_path):
    path = tmp_path / "items.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute(
            'CREATE TABLE items (label INTEGER PRIMARY KEY, id TEXT, "key" TEXT, meta TEXT, abc TEXT)'
        )
    with pytest.raises(ValueError, match=r"no .*collection column .*clamp index build.*no re-embedding"):
        ItemStore(path)


@pytest.fixture(scope="module")
def music21_store(tmp_path_factory) -> ItemStore:
    """Items of every tune in music21's ABC corpus (what `make demo` indexes), without embeddings."""
    path = tmp_path_factory.mktemp("music21") / "items.sqlite"
    files = sorted(Path(corpus.__file__).parent.rglob("*.abc"))
    tunes = [(f.as_posix(), t) for f in files for t in split_tunes(decode_bytes(f.read_bytes())[0])]
    writer = ItemWriter(path)
    writer.add(
        item_row(label, str(label), source, tune.index, json.dumps(tune.meta), "")
        for label, (source, tune) in enumerate(tunes)
    )
    writer.finish()
    return ItemStore(path)


def test_every_filter_in_the_readme_and_the_demo_selects_tunes_of_the_demo_corpus(music21_store):
    docs = "".join((Path(__file__).parents[1] / name).read_text() for name in ("README.md", "Makefile"))
    filters = re.findall(r"--filter '([^']+)'", docs) + re.findall(r"filter='([^']+)'", docs)
    assert len(filters) >= 8
    for text in filters:
        assert len(labels(music21_store, text)) > 0, text
    facets = music21_store.facet(None, "collection", 3)
    assert facets == [("essenFolksong", 8514), ("oneills1850", 2009), ("airdsAirs", 1180)]


def test_masks_select_what_sql_selects_on_the_demo_corpus(music21_store, monkeypatch):
    docs = "".join((Path(__file__).parents[1] / name).read_text() for name in ("README.md", "Makefile"))
    filters = re.findall(r"--filter '([^']+)'", docs) + re.findall(r"filter='([^']+)'", docs)
    filters += [
        "not origin contains Ireland and tune_index < 3",
        "title contains reel or raw.R = jig",
        "key not in (G, D) and (meter != 6/8 or composer like '%o%')",
        "collection > m and not rhythm = reel",
    ]
    with sqlite3.connect(music21_store.path) as conn:
        count = conn.execute("SELECT count(*) FROM items").fetchone()[0]
    monkeypatch.setattr("runtime.search.masks.MAX_DISTINCT", 2000)  # titles and sources go to SQLite
    masks = FilterMasks(music21_store, count)
    for text in filters:
        tree = parse_filter(text)
        assert np.flatnonzero(masks.mask(tree)).tolist() == music21_store.labels_matching(tree).tolist(), text
    assert masks.mask(parse_filter(filters[0])) is masks.mask(parse_filter(filters[0]))  # cached
    with pytest.raises(ValueError, match="unknown filter field 'colour'"):
        masks.mask(parse_filter("colour = red or key = G"))
