"""PyTorch CLaMP -> the fp32 ONNX graphs of a model dir (text and music towers, dynamic batch and length)."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from exporter.int8gate import RealSample, calibration_feeds, judge, real_sample
from exporter.manifest import write_manifest
from exporter.model import CLaMP, ordered_masked_mean
from exporter.optimize import write_fp16
from exporter.parity import GATES, PARITY_TEXTS, measure, parity_tunes, readable_tunes, torch_reference
from exporter.quantize import write_static_int8
from runtime.model.encoder import Encoder
from runtime.model.modeldir import (
    CONFIG_FILE,
    GRAPH_INPUTS,
    GRAPH_OUTPUTS,
    INT8_SCHEME,
    TOKENIZER_FILE,
    TOWERS,
    encoder_file,
)
from runtime.music.patching import PATCH_LENGTH
from runtime.music.profiles import profile_of

OPSET = 17
# Patch ids enter the music graph as uint8 [B,P,64]: 8x less to copy than int64 (host -> GPU included),
# no conversion after prepare_music, and the same ORT speed as int64 (measured; the Cast is negligible).
PATCH_DTYPE = "uint8"
CONFIG_FORMAT = "clamp-index-model/1"


class TextGraph(nn.Module):
    """Token ids + mask -> (L2-normalised vector, raw projection): the text_encoder.onnx graph."""

    def __init__(self, model: CLaMP):
        super().__init__()
        self.model = model

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        projection = self.model.encode_text(input_ids, attention_mask)
        return F.normalize(projection, dim=-1), projection


class MusicGraph(nn.Module):
    """Patch ids + mask -> (L2-normalised vector, raw projection): the music_encoder.onnx graph."""

    def __init__(self, model: CLaMP):
        super().__init__()
        self.model = model

    def forward(self, patch_ids: torch.Tensor, patch_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        projection = self.model.encode_music(patch_ids, patch_mask)
        return F.normalize(projection, dim=-1), projection


def _sample_inputs(tower: str, family: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Tracing inputs with padding in row 0, so the traced graph keeps the general masked path."""
    if tower == "text":
        ids = torch.tensor([[0, 5, 6, 2, 0, 0], [0, 7, 8, 9, 10, 2]]) % family["text"]["vocab_size"]
        ids[0, 4:] = family["text"]["pad_token_id"]
        return ids, torch.tensor([[1, 1, 1, 1, 0, 0], [1] * 6])
    patches = torch.randint(1, 96, (2, 3, PATCH_LENGTH), generator=torch.Generator().manual_seed(0))
    return patches.to(getattr(torch, PATCH_DTYPE)), torch.tensor([[1, 1, 0], [1, 1, 1]])


@contextlib.contextmanager
def _ordered_pooling(model: CLaMP, ordered: bool) -> Iterator[None]:
    """Pool with a running sum while exporting (the graphs int8 quantises: batch-invariant bits)."""
    standard = model.pool
    model.pool = ordered_masked_mean if ordered else standard
    try:
        yield
    finally:
        model.pool = standard


def export_tower(model: CLaMP, family: dict, tower: str, path: Path, ordered_pooling: bool = False) -> None:
    """Trace one tower to ONNX (TorchScript exporter: ORT's optimiser fuses attention only in its graphs).

    `ordered_pooling` traces ordered_masked_mean in place of ReduceSum pooling: the source of int8
    graphs, not of fp32 ones, whose bytes are the model's identity.
    """
    graph = (TextGraph if tower == "text" else MusicGraph)(model).eval()
    inputs, outputs = GRAPH_INPUTS[tower], GRAPH_OUTPUTS[tower]
    dynamic = {name: {0: "batch", 1: "tokens" if tower == "text" else "patches"} for name in inputs}
    dynamic.update({name: {0: "batch"} for name in outputs})
    quiet = contextlib.redirect_stdout(io.StringIO())
    with warnings.catch_warnings(), quiet, torch.no_grad(), _ordered_pooling(model, ordered_pooling):
        warnings.simplefilter("ignore")
        torch.onnx.export(
            graph,
            _sample_inputs(tower, family),
            str(path),
            input_names=list(inputs),
            output_names=list(outputs),
            dynamic_axes=dynamic,
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )


def model_config(family: dict) -> dict:
    """config.json of a model dir: what the runtime needs to prepare inputs, plus the family itself."""
    text, music = family["text"], family["music"]
    return {
        "format": CONFIG_FORMAT,
        "model_name": family["name"],
        "dim": family["projection_dim"],
        "text": {
            "tokenizer": TOKENIZER_FILE,
            "max_tokens": text["max_tokens"],
            "pad_id": text["pad_token_id"],
            # CLaMP 1 families predate these keys: they transliterate and truncate.
            "transliterate": text.get("transliterate", True),
            "long_texts": text.get("long_texts", "truncate"),
        },
        "music": {
            "preprocessing": profile_of(family).name,
            "patch_length": music["patch_length"],
            "max_patches": music["max_patches"],
            "patch_dtype": PATCH_DTYPE,
        },
        # Where the weights can be downloaded is not part of the model (and keeps CLaMP 1 hashes as before).
        "family": {key: value for key, value in family.items() if key != "hub"},
    }


def export_fp32(model: CLaMP, family: dict, tokenizer_json: Path, out_dir: Path) -> None:
    """Write config.json, tokenizer.json and both fp32 graphs into out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / CONFIG_FILE).write_text(json.dumps(model_config(family), indent=2) + "\n")
    shutil.copyfile(tokenizer_json, out_dir / TOKENIZER_FILE)
    model = model.eval()
    for tower in TOWERS:
        export_tower(model, family, tower, out_dir / encoder_file(tower, "fp32"))


class ExportError(RuntimeError):
    """An export whose graphs disagree with PyTorch beyond the parity gates."""


def write_int8(model: CLaMP, family: dict, out_dir: Path, sample: RealSample) -> None:
    """Both towers' static int8 graphs, calibrated on the sample's train tunes and texts (quantize.py)."""
    encoder = Encoder.open(out_dir, provider="cpu", precision="fp32")
    feeds = {tower: calibration_feeds(encoder, tower, sample) for tower in TOWERS}
    with tempfile.TemporaryDirectory(prefix="clamp-int8-") as scratch:
        for tower in TOWERS:
            source = Path(scratch) / encoder_file(tower, "fp32")
            export_tower(model, family, tower, source, ordered_pooling=True)
            target = out_dir / encoder_file(tower, "int8")
            write_static_int8(source, target, feeds[tower], keep_residual_fp32=tower == "text")


def build_model_dir(
    model: CLaMP, family: dict, tokenizer_json: Path, out_dir: Path, source: dict, int8: bool = True
) -> dict:
    """Write a complete model dir: fp32, fp16 (and int8) graphs, parity vs PyTorch, manifest. Returns it.

    fp32 or fp16 below their parity gate fail the export (fp32 before any variant is built). An int8
    tower below its gate vs PyTorch, or failing the int8 gate on real eval tunes (int8gate.py, recorded
    under "int8"), is deleted and the reason recorded under "dropped" (the runtime then uses fp32).
    """
    precisions = ["fp32", "fp16"] + (["int8"] if int8 else [])
    settings = {
        "exporter": "torch.onnx.export(dynamo=False) + onnxruntime.transformers optimizer + quantize_static",
        "opset": OPSET,
        "patch_dtype": PATCH_DTYPE,
        "precisions": precisions,
        **({"int8_scheme": INT8_SCHEME} if int8 else {}),
    }
    texts, tunes = list(PARITY_TEXTS), readable_tunes(parity_tunes(), family)
    reference = torch_reference(model, family, tokenizer_json, texts, tunes)
    parity: dict = {"provider": "cpu", "samples": {"texts": len(texts), "tunes": len(tunes)}, "gates": GATES}
    dropped: dict[str, str] = {}

    def drop(tower: str, reason: str) -> None:
        (out_dir / encoder_file(tower, "int8")).unlink(missing_ok=True)
        dropped[encoder_file(tower, "int8")] = reason

    def check(precision: str) -> None:
        parity[precision] = measure(out_dir, precision, reference, texts, tunes)
        for tower, figures in parity[precision].items():
            if figures["min_cosine"] >= GATES[precision]:
                continue
            reason = f"{tower} {precision}: min cosine {figures['min_cosine']:.6f} < gate {GATES[precision]}"
            if precision != "int8":
                raise ExportError(f"export of {family['name']} failed parity: {reason}")
            drop(tower, reason)

    export_fp32(model, family, tokenizer_json, out_dir)
    write_manifest(out_dir, source=source, export=settings)
    check("fp32")
    settings["fp16_fusions"] = {}
    for tower in TOWERS:
        src, shape = out_dir / encoder_file(tower, "fp32"), family[tower]
        settings["fp16_fusions"][tower] = write_fp16(
            src, out_dir / encoder_file(tower, "fp16"), shape["num_attention_heads"], shape["hidden_size"]
        )
    write_manifest(out_dir, source=source, export=settings)
    sample = _int8_sample(family, dropped) if int8 else None
    if sample is not None:
        write_int8(model, family, out_dir, sample)
        write_manifest(out_dir, source=source, export=settings)
    for precision in precisions[1:]:
        check(precision)
    gate = {}
    if sample is not None:
        write_manifest(out_dir, source=source, export=settings)
        gate = judge(out_dir, sample)
        for tower in TOWERS:
            if tower in gate and not gate[tower]["passed"]:
                drop(tower, f"{tower} int8 gate on eval tunes: {gate[tower]['failed']}")
    return write_manifest(out_dir, source=source, export=settings, parity=parity, dropped=dropped, int8=gate)


def _int8_sample(family: dict, dropped: dict[str, str]) -> RealSample | None:
    """The real tunes int8 is calibrated and judged on, or None (both towers dropped) without a corpus."""
    try:
        return real_sample(family)
    except (ImportError, RuntimeError) as error:
        for tower in TOWERS:
            dropped[encoder_file(tower, "int8")] = f"no real tunes to calibrate int8 on: {error}"
        return None
