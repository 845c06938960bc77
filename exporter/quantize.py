"""Static int8 graphs: activation scales fixed at export by calibration on real inputs.

Dynamic quantisation re-scales activations per batch, so a vector moved (cosine ~1e-4) with whatever
shared its batch. Here every activation scale is a constant of the graph, and the graph it quantises
pools with a running sum (exporter.model.ordered_masked_mean), so a vector's bits depend on its own
input alone: the same alone, in any batch, in any run (tests/test_int8.py).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import onnx

from exporter.optimize import RESIDUAL_WRITER, quiet


def weight_matmuls(src: Path, keep_residual_fp32: bool) -> list[str]:
    """Names of the MatMuls whose second input is a weight: the only ones worth int8 in a transformer
    (the attention products multiply two activations). `keep_residual_fp32` leaves the residual-stream
    writers (attention and FFN `output.dense`) in fp32, as the text tower needs (optimize.py history)."""
    graph = onnx.load(str(src), load_external_data=False).graph
    weights = {tensor.name for tensor in graph.initializer}
    return [
        node.name
        for node in graph.node
        if node.op_type == "MatMul"
        and node.input[1] in weights
        and not (keep_residual_fp32 and RESIDUAL_WRITER in node.name)
    ]


def calibration_feed(names: Sequence[str], ids: np.ndarray) -> dict[str, np.ndarray]:
    """One unpadded item as a graph feed: ids [1, L(, 64)] and an all-ones mask [1, L]."""
    return {names[0]: ids[None], names[1]: np.ones((1, len(ids)), dtype=np.int64)}


def write_static_int8(
    src: Path, dst: Path, feeds: Sequence[dict[str, np.ndarray]], keep_residual_fp32: bool
) -> None:
    """Quantise src's weight MatMuls to int8 with activation ranges from `feeds` (MinMax) into dst.

    QDQ format with per-channel 7-bit weights (reduce_range: no u8s8 saturation on CPUs without VNNI)
    and fp32 MatMul outputs: ORT fuses each DequantizeLinear -> MatMul into MatMulIntegerToFloat, the
    kernel dynamic int8 runs, minus the per-batch range pass. Measured on the trained default music
    tower (300 eval tunes, 2-core AVX2): min cosine 0.99968 vs fp32 at the speed of dynamic int8;
    with the MatMul outputs quantised too it was 0.9990 and 12% slower. Percentile and entropy
    calibration need equal-length calibration items, so MinMax it is.
    """
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Feeds(CalibrationDataReader):
        def __init__(self) -> None:
            self.items: Iterator[dict[str, np.ndarray]] = iter(feeds)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.items, None)

    with quiet():
        quantize_static(
            str(src),
            str(dst),
            Feeds(),
            quant_format=QuantFormat.QDQ,
            nodes_to_quantize=weight_matmuls(src, keep_residual_fp32),
            per_channel=True,
            reduce_range=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            extra_options={
                "MatMulConstBOnly": True,
                "OpTypesToExcludeOutputQuantization": ["MatMul"],
                "CalibMaxIntermediateOutputs": 32,  # bounds calibration memory, same ranges
            },
        )
