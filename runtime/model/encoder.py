"""Text and music encoders on ONNX Runtime: batched, padded, length-sorted; returns L2-normalised vectors."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from runtime.model.cpu import fast_int8_flags
from runtime.model.modeldir import (
    GRAPH_INPUTS,
    GRAPH_OUTPUTS,
    INT8_SCHEME,
    PRECISIONS,
    ModelDirError,
    encoder_file,
    read_config,
    verify_model_dir,
)
from runtime.model.text import TextTokenizer
from runtime.music.patching import PAD_ID, window_spans
from runtime.music.profiles import PROFILES

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}


def resolve_provider(provider: str) -> str:
    """ "auto" -> "cuda" when ONNX Runtime has the CUDA provider, else "cpu"."""
    available = ort.get_available_providers()
    if provider == "auto":
        return "cuda" if PROVIDERS["cuda"] in available else "cpu"
    if provider not in PROVIDERS:
        raise ValueError(f"unknown provider {provider!r}; use auto, cpu or cuda")
    if PROVIDERS[provider] not in available:
        raise ValueError(
            f"ONNX Runtime here has no {PROVIDERS[provider]} (available: {', '.join(available)}); "
            "install onnxruntime-gpu with a matching CUDA, or use --provider cpu"
        )
    return provider


def auto_precision(provider: str, tower: str, manifest: dict[str, Any]) -> str:
    """What "auto" runs: fp16 on CUDA; on CPU int8 where the CPU has VNNI/AMX and the export's int8 gate
    passed this tower (static scales: bit-identical vectors whatever the batch), else fp32.

    Dynamic int8 (older exports, no gate record) is never chosen: it quantises activations per batch, so
    a vector shifts (cosine ~1e-4) with its batch-mates. On AVX2 alone int8 gains only 1.6-2x.
    """
    if provider == "cuda":
        return "fp16"
    record = manifest.get("int8", {})
    passed = record.get("scheme") == INT8_SCHEME and record.get(tower, {}).get("passed") is True
    return "int8" if passed and fast_int8_flags() else "fp32"


def resolve_precisions(
    model_dir: Path, provider: str, precision: str, manifest: dict[str, Any]
) -> dict[str, str]:
    """Precision per tower ("auto": auto_precision); a variant the export dropped -> fp32."""
    if precision != "auto" and precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; use auto, {', '.join(PRECISIONS)}")
    wanted = {
        tower: auto_precision(provider, tower, manifest) if precision == "auto" else precision
        for tower in GRAPH_INPUTS
    }
    return {
        tower: wanted[tower] if (model_dir / encoder_file(tower, wanted[tower])).is_file() else "fp32"
        for tower in GRAPH_INPUTS
    }


def available_cores() -> int:
    """CPU cores this process may run on (the container's share, not the host's)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _normalize(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def patch_batches(lengths: Sequence[int], max_batch_patches: int) -> list[np.ndarray]:
    """Indices grouped longest first so each batch's padded size (count x longest) stays within the budget."""
    order = np.argsort(-np.asarray(lengths, dtype=np.int64), kind="stable")
    batches, start = [], 0
    while start < len(order):
        per_item = lengths[order[start]]
        size = max(1, max_batch_patches // max(per_item, 1))
        batches.append(order[start : start + size])
        start += size
    return batches


def windowed(items: Sequence, size: int) -> tuple[list, np.ndarray, np.ndarray]:
    """Every item's windows (clamp2-3-spec §12.4), flattened, with the item each belongs to and its weight."""
    windows, owners, weights = [], [], []
    for owner, item in enumerate(items):
        spans, spans_weights = window_spans(len(item), size)
        windows += [item[start:stop] for start, stop in spans]
        owners += [owner] * len(spans)
        weights.append(spans_weights)
    return windows, np.asarray(owners, dtype=np.int64), np.concatenate(weights) if weights else np.zeros(0)


def pooled_windows(
    raw: np.ndarray, owners: np.ndarray, weights: np.ndarray, n: int, normalized: bool
) -> np.ndarray:
    """Length-weighted mean of each item's window projections, then (optionally) L2-normalised."""
    summed = np.zeros((n, raw.shape[1]), dtype=np.float64)
    np.add.at(summed, owners, raw * weights[:, None])
    totals = np.zeros(n, dtype=np.float64)
    np.add.at(totals, owners, weights)
    pooled = (summed / np.maximum(totals, 1e-12)[:, None]).astype(np.float32)
    return _normalize(pooled) if normalized else pooled


class Encoder:
    """A model dir's text and music encoders, ready to embed texts, patch arrays and ABC tunes."""

    def __init__(
        self, model_dir: Path, manifest: dict[str, Any], provider: str, precision: str, threads: int
    ):
        self.model_dir = model_dir
        self.config = read_config(model_dir)
        self.manifest = manifest
        self.model_hash: str = manifest["model_hash"]
        self.model_name: str = self.config["model_name"]
        self.dim: int = self.config["dim"]
        self.max_patches: int = self.config["music"]["max_patches"]
        self.patch_length: int = self.config["music"]["patch_length"]
        self.patch_dtype = np.dtype(self.config["music"]["patch_dtype"])
        self.profile = PROFILES[self.config["music"]["preprocessing"]]
        self.text_windows: bool = self.config["text"].get("long_texts") == "segment-average"
        self.provider = provider
        self.precisions = resolve_precisions(model_dir, provider, precision, manifest)
        self.threads = threads
        self._sessions: dict[str, ort.InferenceSession] = {}
        self._tokenizer: TextTokenizer | None = None
        self._lock = threading.Lock()

    @classmethod
    def open(
        cls,
        model_dir: str | Path,
        provider: str = "auto",
        precision: str = "auto",
        threads: int | None = None,
        full_check: bool = False,
    ) -> Encoder:
        """Open a model dir written by `clamp export`, checking its files against the manifest first.

        `threads` defaults to the cores this process may use; `full_check` also verifies every sha256.
        """
        directory = Path(model_dir)
        manifest = verify_model_dir(directory, full=full_check)
        return cls(directory, manifest, resolve_provider(provider), precision, threads or available_cores())

    def session(self, tower: str) -> ort.InferenceSession:
        """The ONNX Runtime session of one tower ("text" or "music"), created once, on first use.

        The lock matters: a server's first burst of concurrent queries otherwise builds one session per
        request (32 sessions and 3.7 GB peak, measured with 32 threads on the default model).
        """
        with self._lock:
            if tower not in self._sessions:
                self._sessions[tower] = self._new_session(tower)
            return self._sessions[tower]

    def _new_session(self, tower: str) -> ort.InferenceSession:
        path = self.model_dir / encoder_file(tower, self.precisions[tower])
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.log_severity_level = 3
        # Idle ORT threads spin by default. With the text and music sessions taking turns (zero-shot,
        # score queries, a server's mixed load) each spun against the other: single queries ran 2x
        # slower (text 9-12 vs 5 ms, music 7-8 vs 3.5 ms on 2 cores), bulk embedding was no faster.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers = [PROVIDERS[self.provider]] + (["CPUExecutionProvider"] if self.provider != "cpu" else [])
        try:
            return ort.InferenceSession(str(path), options, providers=providers)
        except Exception as error:  # ORT raises its own exception types
            raise ModelDirError(f"cannot load {path}: {error}; re-run `clamp export --force`") from error

    @property
    def tokenizer(self) -> TextTokenizer:
        with self._lock:
            if self._tokenizer is None:
                text = self.config["text"]
                self._tokenizer = TextTokenizer.from_file(
                    self.model_dir / text["tokenizer"],
                    None if self.text_windows else text["max_tokens"],
                    text["pad_id"],
                    transliterate=text.get("transliterate", True),
                )
            return self._tokenizer

    def _run(self, tower: str, first: np.ndarray, mask: np.ndarray, normalized: bool) -> np.ndarray:
        names = GRAPH_INPUTS[tower]
        output = GRAPH_OUTPUTS[tower][0 if normalized else 1]
        vectors = self.session(tower).run([output], {names[0]: first, names[1]: mask})[0].astype(np.float32)
        return _normalize(vectors) if normalized else vectors

    def embed_texts(self, texts: Sequence[str], batch_size: int = 64, normalized: bool = True) -> np.ndarray:
        """Texts -> float32 [N, dim], L2-normalised (raw projections when `normalized` is False).

        A family whose texts are windowed (CLaMP 2/3) embeds each 128-token window of a long text and
        averages them by length (clamp2-3-spec §12.4); others truncate to max_tokens.
        """
        if not self.text_windows:
            return self._embed_token_batches(texts, batch_size, normalized)
        max_tokens = self.config["text"]["max_tokens"]
        ids = self.tokenizer.token_ids(texts)
        windows, owners, weights = windowed(ids, max_tokens)
        raw = self._embed_token_batches(windows, batch_size, normalized=False, pretokenized=True)
        return pooled_windows(raw, owners, weights, len(texts), normalized)

    def _embed_token_batches(
        self, items: Sequence, batch_size: int, normalized: bool, pretokenized: bool = False
    ) -> np.ndarray:
        out = np.zeros((len(items), self.dim), dtype=np.float32)
        order = sorted(range(len(items)), key=lambda i: len(items[i]))
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            batch = [items[i] for i in rows]
            ids, mask = self.tokenizer.pad(batch) if pretokenized else self.tokenizer(batch)
            out[rows] = self._run("text", ids, mask, normalized)
        return out

    def embed_patches(
        self, patches: Sequence[np.ndarray], max_batch_patches: int = 8192, normalized: bool = True
    ) -> np.ndarray:
        """Patch arrays [P_i, 64] -> float32 [N, dim], L2-normalised; batched by a padded-patch budget.

        A windowed family (CLaMP 2/3) takes pieces of any length: windows of max_patches, averaged by
        length (clamp2-3-spec §12.4); others take 1..max_patches patches (the head, as CLaMP 1 truncates).
        """
        if not self.profile.windowed:
            return self._embed_patch_batches(patches, max_batch_patches, normalized)
        windows, owners, weights = windowed(patches, self.max_patches)
        raw = self._embed_patch_batches(windows, max_batch_patches, normalized=False)
        return pooled_windows(raw, owners, weights, len(patches), normalized)

    def _embed_patch_batches(
        self, patches: Sequence[np.ndarray], max_batch_patches: int, normalized: bool
    ) -> np.ndarray:
        lengths = [self._check_patches(i, p) for i, p in enumerate(patches)]
        out = np.zeros((len(patches), self.dim), dtype=np.float32)
        for rows in patch_batches(lengths, max_batch_patches):
            width = lengths[rows[0]]
            ids = np.full((len(rows), width, self.patch_length), PAD_ID, dtype=self.patch_dtype)
            mask = np.zeros((len(rows), width), dtype=np.int64)
            for slot, row in enumerate(rows):
                ids[slot, : lengths[row]] = patches[row]
                mask[slot, : lengths[row]] = 1
            out[rows] = self._run("music", ids, mask, normalized)
        return out

    def embed_abc(self, abcs: Sequence[str], max_batch_patches: int = 8192) -> np.ndarray:
        """ABC tunes -> float32 [N, dim], normalised: the model dir's preprocessing, then embed_patches."""
        patches = [self.profile.abc_patches(abc, self.max_patches) for abc in abcs]
        return self.embed_patches(patches, max_batch_patches)

    def _check_patches(self, index: int, patches: np.ndarray) -> int:
        shape = np.shape(patches)
        if len(shape) != 2 or shape[1] != self.patch_length:
            raise ValueError(f"patches[{index}] has shape {shape}; expected [P, {self.patch_length}]")
        if not 1 <= shape[0] <= self.max_patches:
            raise ValueError(
                f"patches[{index}] has {shape[0]} patches; this model takes 1 to {self.max_patches} "
                "(prepare_music(abc, encoder.max_patches) truncates as CLaMP does)"
            )
        return shape[0]
