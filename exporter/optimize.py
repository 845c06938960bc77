"""The fp16 graphs of a model dir (fused by ORT's transformer optimiser); int8 is exporter/quantize.py."""

from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path

# Portable: level 0 applies only the optimiser's own fusions (Attention, SkipLayerNorm, BiasGelu...),
# never ORT's hardware-specific level-99 rewrites, so the file runs on every machine and provider.
OPT_LEVEL = 0
# Node-name part of the Linear layers that write into the residual stream (BERT/RoBERTa module paths).
# int8 keeps them fp32 in the text tower: all-MiniLM-L6-v2 on real sentences (dynamic int8, min cosine
# vs fp32) gave 0.983 with every MatMul quantised, 0.990 with 7-bit weights, 0.993 keeping these.
RESIDUAL_WRITER = "/output/dense/"


@contextlib.contextmanager
def quiet():
    """The optimiser and quantiser log and print progress; keep CLI output clean."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logging.disable(previous)


def fused(src: Path, num_heads: int, hidden_size: int):
    """The fp32 graph with attention, LayerNorm and GELU fused (an onnxruntime OnnxModel)."""
    from onnxruntime.transformers.optimizer import optimize_model

    with quiet():
        return optimize_model(
            str(src), model_type="bert", num_heads=num_heads, hidden_size=hidden_size, opt_level=OPT_LEVEL
        )


def write_fp16(src: Path, dst: Path, num_heads: int, hidden_size: int) -> dict[str, int]:
    """Fused fp16 graph for CUDA (runs on CPU too) with fp32 inputs/outputs; returns the fusion counts."""
    model = fused(src, num_heads, hidden_size)
    counts = {op: n for op, n in model.get_fused_operator_statistics().items() if n}
    with quiet():
        model.convert_float_to_float16(keep_io_types=True)
        model.save_model_to_file(str(dst))
    return counts
