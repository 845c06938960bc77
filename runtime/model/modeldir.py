"""The model dir contract: file names, graph I/O names, manifest reading, identity hash and verification.

Written by `clamp export` (exporter/), read by runtime.model.encoder.Encoder; both sides use these names.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from runtime.storage.integrity import check_files, file_sha256, listed_files

CONFIG_FILE = "config.json"
MANIFEST_FILE = "manifest.json"
TOKENIZER_FILE = "tokenizer.json"
TOWERS = ("text", "music")
PRECISIONS = ("fp32", "fp16", "int8")
# The int8 graphs `auto` may select: static quantisation (fixed activation scales) and the export's int8
# gate, recorded per tower under manifest["int8"] (exporter/quantize.py, exporter/int8gate.py).
INT8_SCHEME = "static-qdq-minmax/1"

# Graph inputs and outputs. Output names are distinctive on purpose (a graph output called "embedding"
# collides with an internal name in the dynamo exporter). "*_vector" is L2-normalised; "*_projection"
# is the raw projection, comparable to clamp.py's features.
GRAPH_INPUTS = {"text": ("input_ids", "attention_mask"), "music": ("patch_ids", "patch_mask")}
GRAPH_OUTPUTS = {"text": ("text_vector", "text_projection"), "music": ("music_vector", "music_projection")}

# Files whose bytes define the model's identity: the fp16/int8 files are derived from the fp32 ones.
IDENTITY_FILES = (CONFIG_FILE, TOKENIZER_FILE, "text_encoder.onnx", "music_encoder.onnx")


class ModelDirError(ValueError):
    """A model dir that is missing, incomplete or altered since export."""


def encoder_file(tower: str, precision: str) -> str:
    """File name of one encoder graph: text_encoder.onnx, music_encoder.fp16.onnx, ..."""
    if tower not in TOWERS or precision not in PRECISIONS:
        raise ValueError(f"no encoder file for tower {tower!r} / precision {precision!r}")
    return f"{tower}_encoder.onnx" if precision == "fp32" else f"{tower}_encoder.{precision}.onnx"


def compute_model_hash(model_dir: str | Path) -> str:
    """The model's identity: sha256 over the names and bytes of its config, tokenizer and fp32 graphs."""
    directory = Path(model_dir)
    digest = hashlib.sha256()
    for name in IDENTITY_FILES:
        digest.update(name.encode() + b"\0" + bytes.fromhex(file_sha256(directory / name)))
    return digest.hexdigest()


def read_config(model_dir: str | Path) -> dict[str, Any]:
    """The model dir's config.json (family, dim, tokenizer settings, patching limits)."""
    return _read_json(Path(model_dir), CONFIG_FILE)


def read_manifest(model_dir: str | Path) -> dict[str, Any]:
    """The model dir's manifest.json (model_hash, files with sizes and sha256, parity, versions)."""
    return _read_json(Path(model_dir), MANIFEST_FILE)


def _read_json(directory: Path, name: str) -> dict[str, Any]:
    path = directory / name
    if not directory.is_dir():
        raise ModelDirError(f"model dir {directory} does not exist; create one with `clamp export --out DIR`")
    if not path.is_file():
        raise ModelDirError(
            f"{path} is missing: {directory} is not a complete model dir; re-run `clamp export`"
        )
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ModelDirError(f"{path} is not valid JSON ({error}); re-run `clamp export`") from error


def required_files(model_dir: Path) -> list[str]:
    """What the encoder may open, so what the manifest must list: config, tokenizer, every graph there."""
    try:
        tokenizer = read_config(model_dir)["text"]["tokenizer"]
    except (ModelDirError, KeyError, TypeError):
        tokenizer = TOKENIZER_FILE
    graphs = [p.name for p in model_dir.iterdir() if p.name.endswith((".onnx", ".onnx.data", ".data"))]
    return [CONFIG_FILE, str(tokenizer), *graphs]


def verify_model_dir(model_dir: str | Path, full: bool = False) -> dict[str, Any]:
    """The manifest, after checking its files: sizes always, sha256 and model hash when `full`."""
    directory = Path(model_dir)
    manifest = read_manifest(directory)
    remedy = "re-run `clamp export --force`"
    where = directory / MANIFEST_FILE
    files = listed_files(manifest, where, required_files(directory), remedy, ModelDirError)
    if not isinstance(manifest.get("model_hash"), str):
        raise ModelDirError(f"{directory / MANIFEST_FILE} has no model_hash; {remedy}")
    check_files(directory, files, full, remedy, ModelDirError)
    if full and compute_model_hash(directory) != manifest["model_hash"]:
        raise ModelDirError(f"{directory}: model_hash in {MANIFEST_FILE} does not match the files it names")
    return manifest
