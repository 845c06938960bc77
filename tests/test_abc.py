"""Tune splitting keeps every tune, its position and its header fields."""

from runtime.music.abc import split_tunes, tune_id

FILE = """% a collection
B:The Book
O:Ireland

X:1
T:The First
T:Alt Title
R:jig
M:6/8
K:D
ABc|def|

X:2
T: Second
C: Trad.
M: 3/4
L: 1/8
K: Ador
T:not a header (after K:)
GAB|
"""


def test_split_tunes_positions_and_metadata():
    tunes = split_tunes(FILE)
    assert [t.index for t in tunes] == [0, 1]
    assert [t.line for t in tunes] == [5, 13]
    assert tunes[0].abc.startswith("X:1\n") and "X:2" not in tunes[0].abc
    assert tunes[0].meta == {
        "book": "The Book",
        "origin": "Ireland",
        "reference": "1",
        "title": "The First / Alt Title",
        "rhythm": "jig",
        "meter": "6/8",
        "key": "D",
    }
    assert tunes[1].meta["title"] == "Second" and tunes[1].meta["key"] == "Ador"
    assert tunes[1].meta["composer"] == "Trad." and tunes[1].meta["unit"] == "1/8"


def test_no_tunes_and_crlf():
    assert split_tunes("") == [] and split_tunes("just text") == []
    assert split_tunes("X:1\r\nK:C\r\nC|\r\n")[0].abc == "X:1\nK:C\nC|\n"


def test_tune_id_is_stable_and_content_derived():
    a = tune_id("a.abc", 0, "X:1\nK:C\nC|\n")
    assert a == tune_id("a.abc", 0, "X:1\nK:C\nC|\n") and len(a) == 32
    assert a != tune_id("a.abc", 1, "X:1\nK:C\nC|\n") and a != tune_id("a.abc", 0, "X:1\nK:C\nD|\n")
