"""Derived graphs of a model dir: fp16 (fused by ORT's transformer optimiser) and int8 (dynamic quant)."""

from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path

import onnx

# Portable: level 0 applies only the optimiser's own fusions (Attention, SkipLayerNorm, BiasGelu...),
# never ORT's hardware-specific level-99 rewrites, so the file runs on every machine and provider.
OPT_LEVEL = 0
# Node-name part of the Linear layers that write into the residual stream (BERT/RoBERTa module paths).
RESIDUAL_WRITER = "/output/dense/"


@contextlib.contextmanager
def _quiet():
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

    with _quiet():
        return optimize_model(
            str(src), model_type="bert", num_heads=num_heads, hidden_size=hidden_size, opt_level=OPT_LEVEL
        )


def write_fp16(src: Path, dst: Path, num_heads: int, hidden_size: int) -> dict[str, int]:
    """Fused fp16 graph for CUDA (runs on CPU too) with fp32 inputs/outputs; returns the fusion counts."""
    model = fused(src, num_heads, hidden_size)
    counts = {op: n for op, n in model.get_fused_operator_statistics().items() if n}
    with _quiet():
        model.convert_float_to_float16(keep_io_types=True)
        model.save_model_to_file(str(dst))
    return counts


def write_int8(src: Path, dst: Path, keep_residual_fp32: bool) -> None:
    """Dynamic int8 quantisation of the fp32 graph's weight MatMuls, for CPU.

    Per-channel 7-bit weights (reduce_range: no u8s8 saturation on AVX2 CPUs without VNNI); embedding
    tables (Gather) stay fp32. `keep_residual_fp32` also keeps the residual-stream writers (attention
    and FFN `output.dense`) in fp32: the text tower needs it, the music tower does not. Measured, min
    cosine vs fp32: all-MiniLM-L6-v2 on real sentences 0.983 plain, 0.990 with 7-bit weights, 0.993
    keeping the writers; the trained default music tower on 1,000 real tunes 0.9999 with every MatMul
    quantised, which runs 1.2x (default) to 1.6-2.1x (clamp-s-512 shape) ORT fp32 on a 2-core AVX2
    CPU, against 1.1x / 1.7x keeping the writers (BENCHMARKS.md). Per-tensor weights give 0.83 on MiniLM.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(src), load_external_data=False).graph
    keep_fp32 = [
        node.name
        for node in graph.node
        if keep_residual_fp32 and node.op_type == "MatMul" and RESIDUAL_WRITER in node.name
    ]
    with _quiet():
        quantize_dynamic(
            str(src),
            str(dst),
            per_channel=True,
            reduce_range=True,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["MatMul"],
            nodes_to_exclude=keep_fp32,
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT, "MatMulConstBOnly": True},
        )
