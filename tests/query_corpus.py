"""The real chain under the query tests: tiny model -> `clamp embed` (music21 ABC) -> `clamp index build`."""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from click.testing import CliRunner
from helpers import tiny_model_dir
from music21 import corpus

from runtime.cli import main

# 10 jigs, 20 slip jigs, 69 hornpipes (O'Neill's, with R: fields) and 62 Irish songs (Essen, with O: fields).
CORPUS_FILES = (
    "oneills1850/0721-0730.abc",
    "oneills1850/1116-1135_mh.abc",
    "oneills1850/1556-1624.abc",
    "essenFolksong/irl.abc",
)


@dataclass(frozen=True)
class Corpus:
    """A tiny model, the ABC files, their shards and the index built from them."""

    model_dir: Path
    abc_dir: Path
    shards_dir: Path
    index_dir: Path

    @property
    def files(self) -> list[Path]:
        return sorted(self.abc_dir.glob("*.abc"))


def clamp(*args: object, input: str | None = None, ok: bool = True) -> str:
    """Run `clamp ARGS...` in-process; assert it succeeded (or failed, with ok=False); return its output."""
    result = CliRunner().invoke(main, [str(a) for a in args], input=input)
    if ok:
        assert result.exit_code == 0, f"clamp {args} failed: {result.output} {result.exception!r}"
    else:
        assert result.exit_code != 0, f"clamp {args} should have failed: {result.output}"
    return result.output


def corpus_path(name: str) -> Path:
    """A file of music21's ABC corpus."""
    return Path(corpus.__file__).parent / name


def other_model_dir(model_dir: Path, out: Path) -> Path:
    """A model dir with another identity (model_hash), as a re-export with other weights would have.

    The runtime compares models by the manifest's hash; exporting a second tiny model would cost ~30 s.
    """
    shutil.copytree(model_dir, out)
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["model_hash"] = hashlib.sha256(b"another model").hexdigest()
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


def build_corpus(root: Path, files: tuple[str, ...] = CORPUS_FILES) -> Corpus:
    """Embed music21 ABC files with a tiny random model and index them, through the real commands."""
    model_dir = tiny_model_dir(root)
    abc_dir = root / "abc"
    abc_dir.mkdir()
    for name in files:
        shutil.copy(corpus_path(name), abc_dir / name.replace("/", "-"))
    shards_dir, index_dir = root / "shards", root / "index"
    clamp("embed", abc_dir, "--model", model_dir, "--out", shards_dir, "--workers", 0, "--quiet")
    clamp("index", "build", shards_dir, "--out", index_dir, "--model", model_dir)
    return Corpus(model_dir, abc_dir, shards_dir, index_dir)
