"""Corpus inputs -> tune records: files, directories and globs of ABC files and tables, one file at a time.

Each input file kind has one reader in `READERS`, keyed by extension; a converter for another format
(MusicXML, MIDI) slots in as one more entry that yields `TuneRecord`s.
"""

from __future__ import annotations

import glob
import json
import os
import stat
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from runtime.music.abc import count_tunes, read_header, source_path, split_tunes, tune_id
from runtime.music.formats import KIND_OF_SUFFIX, ScoreError, decode_bytes, read_tunes
from runtime.music.profiles import Profile
from runtime.music.validate import music_problem


@dataclass(frozen=True)
class TuneRecord:
    """One tune to embed: its stable id, where it came from, its ABC text and its metadata."""

    id: str
    source: str
    tune_index: int
    abc: str
    meta: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Failure:
    """Something that could not be read, decoded, patched or embedded; `tune_index` None means the whole file.

    stage: "read" (file or row unreadable; nothing embedded), "decode" (a note: the file was not valid
    UTF-8 and was read as Latin-1; its tunes are still embedded), "patch", "encode".
    """

    source: str
    tune_index: int | None
    stage: str
    reason: str
    id: str | None = None

    @property
    def is_note(self) -> bool:
        """True for records that do not stop anything from being embedded."""
        return self.stage == "decode"

    @property
    def key(self) -> str:
        """What makes two failures the same one, so a resumed run does not record it twice."""
        return self.id or f"{self.source}\x00{self.tune_index}\x00{self.stage}"


@dataclass(frozen=True)
class TableColumns:
    """Which columns of a JSONL/Parquet table hold the ABC text and (optionally) the tune id."""

    abc: str = "abc"
    id: str | None = None


Item = TuneRecord | Failure
FileReader = Callable[[Path, str, TableColumns, Profile | None], Iterator[Item]]


def tune_item(
    source: str, index: int, abc: str, meta: dict[str, str], ident: str | None = None, where: str = ""
) -> Item:
    """A tune as a record, or as a failure when it is not ABC music (runtime.music.validate's rule)."""
    ident = ident or tune_id(source, index, abc)
    problem = music_problem(abc)
    if problem:
        return Failure(source, index, "read", where + problem, ident)
    return TuneRecord(ident, source, index, abc, meta)


def read_abc_file(
    path: Path, source: str, columns: TableColumns, profile: Profile | None = None
) -> Iterator[Item]:
    """Tunes of a multi-tune ABC file (one per X: record; a file with no X: line is one tune)."""
    try:
        text, note = decode_bytes(path.read_bytes())
    except ScoreError as err:  # claims UTF-16 but is not
        yield Failure(source, None, "read", str(err))
        return
    if note:
        yield Failure(source, None, "decode", note)
    tunes = split_tunes(text)
    if not tunes and text.strip():
        yield tune_item(source, 0, text, read_header(text.split("\n")))
    for tune in tunes:
        yield tune_item(source, tune.index, tune.abc, dict(tune.meta))


def read_score_file(
    path: Path, source: str, columns: TableColumns, profile: Profile | None = None
) -> Iterator[Item]:
    """A MusicXML or MIDI score converted to ABC (with a timeout), or read natively as the model's
    preprocessing `profile` does (CLaMP 2/3: MIDI as MTF); a score that fails is an error row."""
    try:
        tunes = read_tunes(path, profile=profile)
    except ScoreError as err:
        yield Failure(source, None, "read", str(err))
        return
    for tune in tunes:
        yield tune_item(source, tune.index, tune.abc, dict(tune.meta))


def row_record(row: dict, source: str, index: int, columns: TableColumns) -> Item:
    """A table row as a tune: ABC headers give the metadata, the row's other columns add to it."""
    abc = row.get(columns.abc)
    problem = (
        "missing" if abc is None
        else f"a {type(abc).__name__}, not text" if not isinstance(abc, str)
        else "empty" if not abc.strip()
        else None
    )  # fmt: skip
    if problem:
        return Failure(source, index, "read", f"row {index}: ABC column {columns.abc!r} is {problem}")
    try:  # JSON may escape unpaired UTF-16 surrogates ("\\ud800"): no shard could store such text
        json.dumps(row, ensure_ascii=False, default=str).encode("utf-8")
    except UnicodeEncodeError as err:
        bad = err.object[err.start : err.end]
        return Failure(source, index, "read", f"row {index}: not valid Unicode ({err.reason}: {bad!r})")
    if columns.id is not None and row.get(columns.id) in (None, ""):
        return Failure(source, index, "read", f"row {index}: id column {columns.id!r} is empty")
    abc = abc.replace("\r\n", "\n")
    meta = read_header(abc.split("\n"))
    for name, value in row.items():
        if name not in (columns.abc, columns.id) and value is not None:
            meta[name] = value if isinstance(value, str) else json.dumps(value, default=str)
    ident = str(row[columns.id]) if columns.id is not None else None
    return tune_item(source, index, abc, meta, ident, where=f"row {index}: ")


def read_jsonl_file(
    path: Path, source: str, columns: TableColumns, profile: Profile | None = None
) -> Iterator[Item]:
    """Rows of a JSON-lines table (one object per non-empty line), streamed line by line."""
    with path.open("rb") as lines:
        index = 0
        for line_no, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except (ValueError, RecursionError) as err:  # RecursionError: nested too deep to parse
                yield Failure(source, index, "read", f"line {line_no}: not a JSON object ({err})")
            else:
                if isinstance(row, dict):
                    yield row_record(row, source, index, columns)
                else:
                    yield Failure(
                        source, index, "read", f"line {line_no}: a JSON {type(row).__name__}, not an object"
                    )
            index += 1


def read_parquet_file(
    path: Path, source: str, columns: TableColumns, profile: Profile | None = None, batch_rows: int = 1024
) -> Iterator[Item]:
    """Rows of a Parquet table, streamed a row group batch at a time."""
    import pyarrow.parquet as pq

    table = pq.ParquetFile(path)
    names = table.schema_arrow.names
    for needed, option in ((columns.abc, "--abc-column"), (columns.id, "--id-column")):
        if needed is not None and needed not in names:
            yield Failure(
                source, None, "read", f"no column {needed!r} (columns: {', '.join(names)}); pass {option}"
            )
            return
    index = 0
    for batch in table.iter_batches(batch_size=batch_rows):
        for row in batch.to_pylist():
            yield row_record(row, source, index, columns)
            index += 1


READERS: dict[str, FileReader] = {
    ".abc": read_abc_file,
    ".jsonl": read_jsonl_file,
    ".parquet": read_parquet_file,
    **dict.fromkeys(KIND_OF_SUFFIX, read_score_file),
}


@dataclass(frozen=True)
class InputFiles:
    """What a run's inputs name: the files to read (each once), what was ignored, and the corpus roots."""

    files: list[Path]
    ignored: dict[str, int]  # extension -> files met in folders and globs that no reader takes
    roots: list[str]  # canonical folder of each input, so a source can be shown relative to its corpus


def find_inputs(inputs: Iterable[str]) -> InputFiles:
    """The files that inputs name (files, folders searched recursively, globs), each once, in order.

    Everything met in a folder that a reader takes is listed, even what cannot be read (a FIFO, a
    broken or looping symlink, a folder that cannot be listed): reading it records why.
    """
    files: list[Path] = []
    ignored: Counter[str] = Counter()
    roots: list[str] = []
    for spec in inputs:
        path = Path(spec)
        problems: list[Path] = []
        if path.is_dir():
            met, problems, root = *_walk(path), path
        elif path.exists() or path.is_symlink():
            if path.suffix.lower() not in READERS:
                raise ValueError(
                    f"{spec}: cannot read {path.suffix or 'extensionless'} files; inputs are "
                    f"{', '.join(READERS)} files, directories of them, or glob patterns"
                )
            met, root = [path], path.parent
        else:
            met = sorted(Path(p) for p in glob.glob(spec, recursive=True) if not os.path.isdir(p))
            root = _glob_root(spec)
        found = [p for p in met if p.suffix.lower() in READERS]
        ignored.update(p.suffix.lower() or "(no extension)" for p in met if p.suffix.lower() not in READERS)
        if not found and not problems:
            raise ValueError(
                f"{spec}: no {'/'.join(READERS)} files there (not a file, a directory or a matching glob)"
            )
        files.extend(sorted(found + problems))
        if source_path(root) not in roots:
            roots.append(source_path(root))
    unique: dict[str, Path] = {}
    for path in files:
        unique.setdefault(source_path(path), path)
    return InputFiles(list(unique.values()), dict(ignored), roots)


def expand_inputs(inputs: Iterable[str]) -> list[Path]:
    """Only the files of `find_inputs`."""
    return find_inputs(inputs).files


def _walk(folder: Path) -> tuple[list[Path], list[Path]]:
    """Every non-folder under folder, following symlinked folders; and the links that loop back up.

    Those, and folders that cannot be listed, are returned as problems: reading them records why.
    """
    met: list[Path] = []
    problems: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(
        folder, followlinks=True, onerror=lambda err: problems.append(Path(err.filename))
    ):
        here = os.path.realpath(dirpath)
        for name in list(dirnames):
            target = os.path.realpath(os.path.join(dirpath, name))
            if here == target or here.startswith(target.rstrip(os.sep) + os.sep):
                dirnames.remove(name)
                problems.append(Path(dirpath, name))
        met.extend(Path(dirpath, name) for name in filenames)
    return met, problems


def _glob_root(spec: str) -> Path:
    """The folder a glob pattern searches: its parts before the first wildcard."""
    parts = Path(spec).parts
    fixed = next((i for i, part in enumerate(parts) if glob.has_magic(part)), len(parts))
    return Path(*parts[:fixed]) if fixed else Path(".")


def _check_readable(path: Path) -> None:
    """Raise, saying why, for what no reader may open: a missing target, a folder, a FIFO, socket or device.

    Only stat is used: opening a FIFO would block the run forever.
    """
    mode = os.stat(path).st_mode  # FileNotFoundError for a broken symlink, ELOOP for a looping one
    if stat.S_ISDIR(mode):
        os.listdir(path)  # PermissionError for a folder that cannot be listed
        raise IsADirectoryError(
            f"a symlink to {os.path.realpath(path)}, a folder that holds it (a loop): not followed"
        )
    if not stat.S_ISREG(mode):
        kind = next((name for test, name in _SPECIAL_FILES if test(mode)), "special file")
        raise OSError(f"not a regular file but a {kind}: not opened")


_SPECIAL_FILES = (
    (stat.S_ISFIFO, "FIFO (named pipe)"),
    (stat.S_ISSOCK, "socket"),
    (stat.S_ISCHR, "character device"),
    (stat.S_ISBLK, "block device"),
)


def read_inputs(
    files: Iterable[Path], columns: TableColumns = TableColumns(), profile: Profile | None = None
) -> Iterator[Item]:
    """Every tune record (or failure) of the files, one file at a time so memory stays bounded.

    Each file's source is its canonical path (`source_path`), the same however the path was spelled.
    `profile` is the model's preprocessing (how scores are read); None: CLaMP 1's.
    """
    for path in files:
        source = source_path(path)
        try:
            _check_readable(path)
            yield from READERS[path.suffix.lower()](path, source, columns, profile)
        except Exception as err:  # one unreadable file never stops a run: it is recorded and skipped
            yield Failure(source, None, "read", f"cannot read {source}: {type(err).__name__}: {err}")


def count_items(files: Iterable[Path], columns: TableColumns = TableColumns()) -> int:
    """About how many tunes read_inputs will yield, cheaply (for a progress bar's total): X: lines of ABC
    files, non-blank lines of JSONL, Parquet row counts from the footer, one per score; unreadable files 0.
    """
    total = 0
    for path in files:
        suffix = path.suffix.lower()
        if not path.is_file():  # a FIFO would block; read_inputs records these
            continue
        try:
            if suffix == ".abc":
                total += count_tunes(decode_bytes(path.read_bytes())[0])
            elif suffix == ".jsonl":
                with path.open("rb") as lines:
                    total += sum(1 for line in lines if line.strip())
            elif suffix == ".parquet":
                import pyarrow.parquet as pq

                total += pq.ParquetFile(path).metadata.num_rows
            else:
                total += 1
        except (OSError, ValueError, ImportError):  # read_inputs records why; the total stays an estimate
            continue
    return total
