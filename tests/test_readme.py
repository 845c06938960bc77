"""README.md's command lines, run verbatim from a temporary cwd: none may depend on the repo being the cwd.

A tiny model stands in at build/model and a few real tunes at the paths the README names; the commands
that take minutes or run until stopped (export, serve, train, eval) are checked for what they resolve.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path

import pytest
from helpers import tiny_model_dir
from query_corpus import clamp, corpus_path

from exporter.checkpoint import resolve_checkpoint
from runtime.music.abc import split_tunes

README = Path(__file__).resolve().parent.parent / "README.md"
NOT_RUN = {"export", "serve", "train", "eval"}
PIPELINE = ("embed", "index build")  # what the queries need, run first


def readme_blocks(*languages: str) -> list[str]:
    """The fenced code blocks of the README in these languages ("" for unlabelled ones)."""
    blocks = re.findall(r"^```(\w*)\n(.*?)^```", README.read_text(), re.MULTILINE | re.DOTALL)
    return [body for language, body in blocks if language in languages]


def readme_commands() -> list[list[str]]:
    """Every `clamp ...` line of the README's shell blocks (also `$ clamp ...` in example output)."""
    lines = [
        line.strip().removeprefix("$ ") for block in readme_blocks("", "bash") for line in block.splitlines()
    ]
    return [shlex.split(line, comments=True)[1:] for line in lines if line.startswith("clamp ")]


@pytest.fixture
def user_dir(tmp_path, monkeypatch) -> Path:
    """A cwd with what the README's commands name: a model at build/model, tunes, a score, keys."""
    monkeypatch.delenv("CLAMP_MODEL", raising=False)
    monkeypatch.setenv("CLAMP_CACHE_DIR", str(tmp_path / "cache"))
    tiny_model_dir(tmp_path / "build")
    for folder, name in [("corpus", "0721-0730.abc"), ("more", "0051-0100.abc"), ("folder", "1556-1624.abc")]:
        (tmp_path / folder).mkdir()
        shutil.copy(corpus_path(f"oneills1850/{name}"), tmp_path / folder / name)
    shutil.copy(corpus_path("oneills1850/1116-1135_mh.abc"), tmp_path / "tune.abc")
    tunes = split_tunes((tmp_path / "corpus" / "0721-0730.abc").read_text())
    (tmp_path / "tunes.jsonl").write_text("".join(json.dumps({"abc": t.abc}) + "\n" for t in tunes[:3]))
    shutil.copy(corpus_path("bach/bwv1.6.mxl"), tmp_path / "score.mxl")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def item_id(index_dir: str) -> str:
    """An id of the index the README builds: what its `ITEM_ID` placeholder stands for."""
    from runtime.search.index import Index

    return Index.open(index_dir).items.items([0])[0][0]


def test_every_readme_command_works_verbatim_from_any_cwd(user_dir):
    commands = readme_commands()
    first = [c for c in commands if " ".join(c[:2]) in PIPELINE or c[0] in PIPELINE]
    ran = []
    for args in first + [c for c in commands if c not in first]:
        if args[0] in NOT_RUN:
            continue
        if "ITEM_ID" in args:
            args = [item_id("build/index") if a == "ITEM_ID" else a for a in args]
        clamp(*args)
        ran.append(args[0])
    assert {"embed", "index", "search", "similar", "classify", "query", "patch"} <= set(ran)
    assert resolve_checkpoint("default").directory.is_dir()  # `clamp export --model default`: not the cwd's
    for block in readme_blocks("python"):
        exec(block, {})
