"""manifest.json of a model dir: file sizes and sha256, model hash, source checkpoint, versions, parity."""

from __future__ import annotations

import hashlib
import json
import platform
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from runtime.model.modeldir import MANIFEST_FILE, compute_model_hash, file_sha256
from runtime.storage.dirs import MODEL
from runtime.storage.integrity import file_entries

VERSIONED_PACKAGES = ("torch", "transformers", "onnx", "onnxruntime", "tokenizers", "clamp-index")


def source_sha256(files: list[Path]) -> str:
    """One sha256 over the names and bytes of the checkpoint files an export reads."""
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + b"\0" + bytes.fromhex(file_sha256(path)))
    return digest.hexdigest()


def versions() -> dict[str, str]:
    """Versions of the packages that shaped the exported graphs."""
    found = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def write_manifest(model_dir: Path, **sections: Any) -> dict[str, Any]:
    """List every file of the model dir with size and sha256, add the model hash and `sections`; write it."""
    names = [p.name for p in sorted(model_dir.iterdir()) if p.is_file() and p.name != MANIFEST_FILE]
    files = file_entries(model_dir, names)
    manifest = {
        "kind": MODEL,
        "model_hash": compute_model_hash(model_dir),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "files": files,
        "versions": versions(),
        **sections,
    }
    (model_dir / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest
