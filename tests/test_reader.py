"""The corpus reader: files, directories and globs of ABC files and JSONL/Parquet tables -> tune records."""

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from indexer.reader import Failure, TableColumns, TuneRecord, count_items, expand_inputs, read_inputs
from runtime.music.abc import split_tunes, tune_id

JIG = "X:1\nT:The Kesh\nR:jig\nM:6/8\nK:G\n|:GAG GAB|ABA ABd:|\n"
REEL = "X:2\nT:Drowsy Maggie\nC:Trad.\nR:reel\nM:4/4\nK:Edor\n|:E2BE dEBE|E2BE AFDF:|\n"


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def test_abc_file_gives_one_record_per_tune_with_stable_ids_and_header_metadata(tmp_path):
    path = write(tmp_path / "tunes.abc", "% a collection\n\n" + JIG + "\n" + REEL)
    records = list(read_inputs([path]))
    assert [r.tune_index for r in records] == [0, 1]
    tunes = split_tunes(path.read_text())
    assert [r.id for r in records] == [tune_id(path.as_posix(), t.index, t.abc) for t in tunes]
    assert records[1].meta["title"] == "Drowsy Maggie" and records[1].meta["rhythm"] == "reel"
    assert records[0].abc == tunes[0].abc and records[0].source == path.as_posix()


def test_an_abc_file_without_x_lines_is_one_tune(tmp_path):
    path = write(tmp_path / "one.abc", "T:No number\nK:D\n|:DEF:|\n")
    [record] = read_inputs([path])
    assert record.tune_index == 0 and record.meta["title"] == "No number"


def test_non_utf8_file_is_read_as_latin1_and_noted(tmp_path):
    path = write(tmp_path / "old.abc", "X:1\nT:Caf\xe9\nK:C\n|CDE|\n".encode("latin-1"))
    note, record = read_inputs([path])
    assert isinstance(note, Failure) and note.is_note and note.tune_index is None and "Latin-1" in note.reason
    assert record.meta["title"] == "Café"


def test_unreadable_file_is_a_failure_not_a_crash(tmp_path):
    [failure] = read_inputs([tmp_path / "gone.abc"])
    assert failure.stage == "read" and "gone.abc" in failure.reason and failure.tune_index is None


def test_inputs_expand_directories_recursively_and_globs_each_file_once(tmp_path):
    a = write(tmp_path / "corpus" / "a.abc", JIG)
    b = write(tmp_path / "corpus" / "deep" / "b.abc", REEL)
    write(tmp_path / "corpus" / "notes.txt", "not a corpus file")
    files = expand_inputs([str(tmp_path / "corpus"), str(tmp_path / "corpus" / "**" / "*.abc"), str(a)])
    assert files == [a, b]
    with pytest.raises(ValueError, match="no .abc/.jsonl/.parquet/.mxl/.musicxml/.xml/.mid/.midi files"):
        expand_inputs([str(tmp_path / "nothing-*.abc")])
    with pytest.raises(ValueError, match="cannot read .txt"):
        expand_inputs([str(tmp_path / "corpus" / "notes.txt")])


def table_rows() -> list[dict]:
    return [
        {"uid": "k1", "abc": JIG, "genre": "jig", "year": 1850},
        {"uid": "k2", "abc": None, "genre": "reel", "year": None},
        {"uid": "k3", "abc": REEL, "genre": "reel", "year": 1907},
    ]


def check_table_records(items: list, source: str, id_column: str | None) -> None:
    ok = [i for i in items if isinstance(i, TuneRecord)]
    [bad] = [i for i in items if isinstance(i, Failure)]
    assert bad.tune_index == 1 and bad.stage == "read" and "'abc' is missing" in bad.reason
    assert [r.tune_index for r in ok] == [0, 2]
    derived = [tune_id(source, 0, JIG), tune_id(source, 2, REEL)]
    assert [r.id for r in ok] == (["k1", "k3"] if id_column else derived)
    assert ok[1].meta["title"] == "Drowsy Maggie"  # from the ABC header
    assert (ok[1].meta["genre"], ok[1].meta["year"]) == ("reel", "1907")  # from the row's other columns
    assert ("uid" in ok[0].meta) == (id_column is None)


@pytest.mark.parametrize("id_column", [None, "uid"])
def test_jsonl_table_rows_are_tunes_with_their_columns_as_metadata(tmp_path, id_column):
    lines = [json.dumps(row) for row in table_rows()]
    path = write(tmp_path / "tunes.jsonl", "\n".join(lines[:2] + ["", lines[2], "{not json"]) + "\n")
    items = list(read_inputs([path], TableColumns(id=id_column)))
    assert items[-1].stage == "read" and "line 5: not a JSON object" in items[-1].reason
    check_table_records(items[:-1], path.as_posix(), id_column)


@pytest.mark.parametrize("id_column", [None, "uid"])
def test_parquet_table_rows_are_tunes_with_their_columns_as_metadata(tmp_path, id_column):
    path = tmp_path / "tunes.parquet"
    pq.write_table(pa.Table.from_pylist(table_rows()), path)
    check_table_records(list(read_inputs([path], TableColumns(id=id_column))), path.as_posix(), id_column)
    [missing] = read_inputs([path], TableColumns(abc="score"))
    assert missing.tune_index is None and "no column 'score'" in missing.reason
    assert "--abc-column" in missing.reason


def test_musicxml_and_midi_scores_are_converted_and_a_broken_one_is_an_error_row(tmp_path):
    music21 = pytest.importorskip("music21")
    chorale = Path(music21.corpus.getPaths(fileExtensions=("mxl",))[0])
    (tmp_path / "chorale.mxl").write_bytes(chorale.read_bytes())
    (tmp_path / "broken.mid").write_bytes(b"MThd not really midi")
    items = list(read_inputs(expand_inputs([str(tmp_path)])))
    records = [i for i in items if isinstance(i, TuneRecord)]
    failures = [i for i in items if isinstance(i, Failure)]
    assert len(records) == 1 and records[0].meta["converted_from"] == "musicxml"
    assert "K:" in records[0].abc and records[0].abc.count("|") > 8
    assert len(failures) == 1 and failures[0].source.endswith("broken.mid") and failures[0].reason


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be"])  # BOM; LE and BE without one
def test_utf16_abc_files_are_decoded_not_embedded_as_byte_salad(tmp_path, encoding):
    path = write(tmp_path / "wide.abc", (JIG + "\n" + REEL.replace("Drowsy", "Dr\u00f6wsy")).encode(encoding))
    records = list(read_inputs([path]))
    assert [r.meta["title"] for r in records] == ["The Kesh", "Dr\u00f6wsy Maggie"]
    assert records[0].abc == JIG


def test_a_file_that_claims_utf16_but_is_not_is_one_error_row(tmp_path):
    path = write(tmp_path / "odd.abc", "X:1\nK:G\n|GAB|\n".encode("utf-16-le") + b"\x00\xd8|\x00")
    [failure] = read_inputs([path])
    assert failure.tune_index is None and failure.stage == "read"
    assert (
        "looks like UTF-16-LE text but is not valid UTF-16" in failure.reason
        and "save it as UTF-8" in failure.reason
    )


def test_tunes_are_counted_up_front_as_the_reader_will_yield_them(tmp_path):
    write(tmp_path / "two.abc", JIG + "\r\n" + REEL)
    write(tmp_path / "bare.abc", "K:D\n|DEF|\n")
    write(tmp_path / "blank.abc", "\n  \n")
    write(tmp_path / "rows.jsonl", "\n".join(json.dumps(row) for row in table_rows()) + "\n\n")
    pq.write_table(pa.Table.from_pylist(table_rows()), tmp_path / "rows.parquet")
    write(tmp_path / "score.mxl", b"PK not a zip")
    write(tmp_path / "wide.abc", JIG.encode("utf-16"))
    files = expand_inputs([str(tmp_path)])
    tunes = [i for i in read_inputs(files) if isinstance(i, TuneRecord) or i.tune_index is not None]
    assert count_items(files) == len(tunes) + 1  # + the broken score, one error row
