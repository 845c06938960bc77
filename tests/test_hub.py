"""Weights by hub name: a family found offline in a Hugging Face cache laid out as the hub writes it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from runtime.model.families import load_family

REPO = Path(__file__).resolve().parent.parent
# In a fresh process: huggingface_hub reads HF_HUB_CACHE / HF_HUB_OFFLINE when it is imported.
RESOLVE = (
    "import json, sys\nfrom exporter.hub import checkpoint_from_hub\n"
    "from runtime.model.families import load_family\n"
    "try:\n"
    "    d = checkpoint_from_hub(load_family(sys.argv[1]), 'HELP')\n"
    "    print(json.dumps({'files': {p.name: str(p.resolve()) for p in d.iterdir()}}))\n"
    "except ValueError as e:\n"
    "    print(json.dumps({'error': str(e)}))\n"
)


def write_hub_cache(cache: Path, repo: str, files: dict[str, bytes], commit: str = "0123abcd" * 5):
    """models--{org}--{name}/refs/main + snapshots/{commit}/{file} -> blobs, as huggingface_hub lays out."""
    root = cache / f"models--{repo.replace('/', '--')}"
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text(commit)
    snapshot = root / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    (root / "blobs").mkdir(exist_ok=True)
    for name, data in files.items():
        blob = root / "blobs" / f"blob-{abs(hash(name))}"
        blob.write_bytes(data)
        (snapshot / name).symlink_to(os.path.relpath(blob, snapshot))


def resolve(name: str, tmp_path: Path) -> dict:
    env = {
        **os.environ,
        "HF_HUB_CACHE": str(tmp_path / "hub"),
        "HF_HUB_OFFLINE": "1",
        "XDG_CACHE_HOME": str(tmp_path / "xdg"),
        "PYTHONPATH": str(REPO),
    }
    out = subprocess.run(
        [sys.executable, "-c", RESOLVE, name],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    ).stdout
    return json.loads(out)


@pytest.mark.parametrize("name", ["clamp3-c2", "clamp2", "clamp-s-512"])
def test_a_family_resolves_from_the_cache_offline(tmp_path, name):
    hub = load_family(name)["hub"]
    weights = {f: f"weights of {f}".encode() for f in hub["files"]}
    tokenizer = {f: f"tokenizer {f}".encode() for f in hub["tokenizer"]["files"]}
    write_hub_cache(tmp_path / "hub", hub["repo"], weights)
    write_hub_cache(tmp_path / "hub", hub["tokenizer"]["repo"], tokenizer)
    source = resolve(name, tmp_path)
    assert set(source["files"]) == {*weights, *tokenizer}
    for file, data in {**weights, **tokenizer}.items():
        assert Path(source["files"][file]).read_bytes() == data
        assert str(tmp_path / "hub") in source["files"][file]  # linked, not copied
    assert resolve(name, tmp_path) == source  # a second resolution reuses the links


def test_a_family_missing_from_the_cache_names_what_to_download(tmp_path):
    error = resolve("clamp3-c2", tmp_path)["error"]
    assert "needs --checkpoint DIR" in error and "HF_HUB_OFFLINE is set" in error and "HELP" in error
    assert (
        "sander-wood/clamp3/weights_clamp3_c2_" in error
        and "FacebookAI/xlm-roberta-base/tokenizer.json" in error
    )
