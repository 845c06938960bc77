"""The training corpus: real music21 tunes, deduplicated, split by music body, and no label in the music."""

from pathlib import Path

import pytest

from runtime.music.patching import decode_patches, prepare_music
from training.corpus import (
    EVAL_PERCENT,
    abc_files,
    body_key,
    dedupe,
    load_corpus,
    music21_corpus_dir,
    read_tunes,
    split_of,
)

ROOT = music21_corpus_dir()
SAMPLE_FILES = [
    "essenFolksong/altdeu10.abc",
    "essenFolksong/han1.abc",
    "oneills1850/0001-0050.abc",
    "airdsAirs/book1.abc",
]
REEL = """X:{n}
T:{title}
R:reel
M:C|
L:1/8
K:D
{body}
"""


@pytest.fixture(scope="module")
def sample_tunes():
    files = [ROOT / name for name in SAMPLE_FILES] + abc_files(ROOT, ["ryansMammoth"])[:80]
    return read_tunes(files, ROOT)


def test_split_is_fixed_and_about_ten_percent():
    tunes = load_corpus(collections=["oneills1850"])
    again = load_corpus(collections=["oneills1850"])
    assert [(t.id, t.split) for t in tunes] == [(t.id, t.split) for t in again]
    assert all(t.split == split_of(t.body_key) for t in tunes)
    share = sum(t.split == "eval" for t in tunes) / len(tunes)
    assert EVAL_PERCENT / 100 - 0.03 < share < EVAL_PERCENT / 100 + 0.03
    assert len({t.body_key for t in tunes}) == len(tunes), "one tune per music body after dedupe"


def test_copies_of_a_tune_share_their_side_and_are_merged(tmp_path: Path):
    (tmp_path / "coll").mkdir()
    body = '|:A2FA DAFA|"4"B2GB dBGB:|\n'
    (tmp_path / "coll" / "a.abc").write_text(REEL.format(n=1, title="The First Name", body=body))
    respaced = "|: A2 FA  DAFA | B2GB !trill!dBGB :|\n"  # other spacing, no fingering, a decoration
    copy = REEL.format(n=1, title="Another Name", body=respaced).replace("R:reel\n", "R:reel\nO:Ireland\n")
    other = REEL.format(n=2, title="Different", body="|:d2fd AdFA|G2BG EGBG:|\n")
    (tmp_path / "coll" / "b.abc").write_text(copy + "\n" + other)
    tunes = read_tunes(abc_files(tmp_path), tmp_path)
    assert len(tunes) == 3 and tunes[0].body_key == tunes[1].body_key != tunes[2].body_key
    assert tunes[0].split == tunes[1].split
    kept = dedupe(tunes)
    assert [t.meta["title"] for t in kept] == ["The First Name", "Different"]
    assert kept[0].meta["origin"] == "Ireland", "fields missing in the first copy come from the others"


def test_tunes_without_bar_lines_are_left_out(tmp_path: Path):
    (tmp_path / "c.abc").write_text("X:1\nT:No bars\nK:C\nCDEF GABc\n\nX:2\nT:Bars\nK:C\nCDEF|GABc|cBAG|\n")
    assert [t.meta["title"] for t in read_tunes([tmp_path / "c.abc"], tmp_path)] == ["Bars"]


def test_body_key_ignores_headers_spacing_and_annotations():
    plain = "X:1\nT:A\nK:G\nGABc|d2e2|\n"
    decorated = 'X:9\nT:B\nC:Someone\nK:G\n"G"G A B c | "^fine"d2 e2 |  % comment\n'
    assert body_key(plain) == body_key(decorated)
    assert body_key(plain) != body_key(plain.replace("d2e2", "d2e3"))


def test_no_label_reaches_the_music(sample_tunes):
    """Titles, origins and tune types are what the texts say: the patches CLaMP sees must not contain them."""
    checked = 0
    for tune in sample_tunes:
        music = "\n".join(decode_patches(prepare_music(tune.abc, 512))).lower()
        for field in ("title", "origin", "rhythm"):
            for value in tune.meta.get(field, "").split(" / "):
                if len(value.strip()) >= 4:
                    assert value.strip().lower() not in music, (tune.source, tune.index, field, value)
                    checked += 1
    assert checked > 1000
