"""The int8 gate: calibrate on train tunes, judge against fp32 on eval tunes, record what `auto` trusts.

Tunes come from music21's corpus split by training/corpus.py, texts are their canonical descriptions:
calibration reads train tunes only, every figure is measured on eval tunes (inputs the scales never
saw). A tower passes when its int8 vectors stay close to fp32, text->music retrieval barely moves and
its vectors are bit-identical alone and in batches; the record goes into manifest["int8"].
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from exporter.quantize import calibration_feed
from runtime.model.encoder import Encoder
from runtime.model.modeldir import GRAPH_INPUTS, INT8_SCHEME
from runtime.music.profiles import profile_of

CALIBRATION_TUNES = 200
EVAL_TUNES = 500
ALONE_CHECKS = 32  # eval items also embedded one at a time, to compare bits with their batched vectors
GATES = {
    "min_cosine": {"music": 0.999, "text": 0.99},  # int8 vs fp32 on every eval item
    "max_mrr_drop": 0.01,  # text->music MRR over the eval tunes, int8 on this tower vs all fp32 (absolute)
}


@dataclass(frozen=True)
class RealSample:
    """Real tunes and texts for the gate: calibration from the train split, evaluation from eval."""

    calibration_tunes: list[str]
    calibration_texts: list[str]
    eval_tunes: list[str]
    eval_texts: list[str]


def _spread(items: Sequence, count: int) -> list:
    return list(items[:: max(1, len(items) // count)][:count])


def real_sample(
    family: dict, calibration: int = CALIBRATION_TUNES, evaluation: int = EVAL_TUNES
) -> RealSample:
    """Tunes spread evenly over each side of the split, those this family's preprocessing reads."""
    from exporter.parity import readable_tunes
    from training.corpus import load_corpus
    from training.describe import describe
    from training.texts import canonical_text

    tunes = load_corpus()
    readable = set(readable_tunes([t.abc for t in tunes], family)) if profile_of(family).windowed else None
    sides = {
        side: [t for t in tunes if t.split == side and (readable is None or t.abc in readable)]
        for side in ("train", "eval")
    }
    train, held_out = _spread(sides["train"], calibration), _spread(sides["eval"], evaluation)
    return RealSample(
        [t.abc for t in train],
        [canonical_text(describe(t)) for t in train],
        [t.abc for t in held_out],
        [canonical_text(describe(t)) for t in held_out],
    )


def calibration_feeds(encoder: Encoder, tower: str, sample: RealSample) -> list[dict[str, np.ndarray]]:
    """One unpadded feed per calibration item, prepared as the runtime prepares it (first window only)."""
    if tower == "music":
        items = [
            encoder.profile.abc_patches(abc, encoder.max_patches)[: encoder.max_patches]
            for abc in sample.calibration_tunes
        ]
    else:
        max_tokens = encoder.config["text"]["max_tokens"]
        ids = encoder.tokenizer.token_ids(sample.calibration_texts)
        items = [np.asarray(row[:max_tokens], dtype=np.int64) for row in ids]
    return [calibration_feed(GRAPH_INPUTS[tower], item) for item in items]


def _mrr(texts: np.ndarray, music: np.ndarray) -> float:
    from training.metrics import mean_reciprocal_rank, true_match_ranks

    return float(mean_reciprocal_rank(true_match_ranks(texts @ music.T)))


def judge(model_dir: Path, sample: RealSample) -> dict:
    """The gate record of the int8 towers in model_dir, measured on the eval sample (see module doc)."""
    encoders = {p: Encoder.open(model_dir, provider="cpu", precision=p) for p in ("fp32", "int8")}
    patches = [
        encoders["fp32"].profile.abc_patches(abc, encoders["fp32"].max_patches) for abc in sample.eval_tunes
    ]
    embed = {
        "music": lambda encoder: encoder.embed_patches(patches),
        "text": lambda encoder: encoder.embed_texts(sample.eval_texts),
    }
    vectors = {(p, tower): embed[tower](e) for p, e in encoders.items() for tower in embed}
    fp32_mrr = _mrr(vectors["fp32", "text"], vectors["fp32", "music"])
    record: dict = {
        "scheme": INT8_SCHEME,
        "calibration": {
            "split": "train",
            "tunes": len(sample.calibration_tunes),
            "texts": len(sample.calibration_texts),
        },
        "eval": {"split": "eval", "tunes": len(sample.eval_tunes), "texts": len(sample.eval_texts)},
        "gates": GATES,
    }
    int8 = encoders["int8"]
    for tower in (t for t, p in int8.precisions.items() if p == "int8"):
        mixed = {t: vectors["int8" if t == tower else "fp32", t] for t in embed}
        singles = _embed_alone(int8, tower, patches, sample.eval_texts)
        figures = {
            "min_cosine_vs_fp32": float((vectors["int8", tower] * vectors["fp32", tower]).sum(axis=1).min()),
            "mrr_fp32": fp32_mrr,
            "mrr_int8": _mrr(mixed["text"], mixed["music"]),
            "bit_identical_alone_and_batched": bool(
                np.array_equal(singles, vectors["int8", tower][: len(singles)])
            ),
        }
        failed = _failures(tower, figures)
        record[tower] = {**figures, "passed": not failed, **({"failed": "; ".join(failed)} if failed else {})}
    return record


def _embed_alone(encoder: Encoder, tower: str, patches: list[np.ndarray], texts: list[str]) -> np.ndarray:
    """The first ALONE_CHECKS eval items, each embedded in a batch of its own."""
    if tower == "music":
        return np.concatenate([encoder.embed_patches([p]) for p in patches[:ALONE_CHECKS]])
    return np.concatenate([encoder.embed_texts([t]) for t in texts[:ALONE_CHECKS]])


def _failures(tower: str, figures: dict) -> list[str]:
    """Why a tower fails the gate, in words; empty when it passes."""
    failed = []
    if figures["min_cosine_vs_fp32"] < GATES["min_cosine"][tower]:
        failed.append(
            f"min cosine vs fp32 {figures['min_cosine_vs_fp32']:.6f} < {GATES['min_cosine'][tower]}"
        )
    if figures["mrr_fp32"] - figures["mrr_int8"] > GATES["max_mrr_drop"]:
        failed.append(
            f"MRR {figures['mrr_int8']:.4f} vs fp32 {figures['mrr_fp32']:.4f} drops > {GATES['max_mrr_drop']}"
        )
    if not figures["bit_identical_alone_and_batched"]:
        failed.append("vectors differ alone and in batches")
    return failed
