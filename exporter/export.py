"""PyTorch CLaMP -> the fp32 ONNX graphs of a model dir (text and music towers, dynamic batch and length)."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from exporter.manifest import write_manifest
from exporter.model import CLaMP
from exporter.optimize import write_fp16, write_int8
from exporter.parity import GATES, PARITY_TEXTS, measure, parity_tunes, readable_tunes, torch_reference
from runtime.model.modeldir import (
    CONFIG_FILE,
    GRAPH_INPUTS,
    GRAPH_OUTPUTS,
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


def export_tower(model: CLaMP, family: dict, tower: str, path: Path) -> None:
    """Trace one tower to ONNX (TorchScript exporter: ORT's optimiser fuses attention only in its graphs)."""
    graph = (TextGraph if tower == "text" else MusicGraph)(model).eval()
    inputs, outputs = GRAPH_INPUTS[tower], GRAPH_OUTPUTS[tower]
    dynamic = {name: {0: "batch", 1: "tokens" if tower == "text" else "patches"} for name in inputs}
    dynamic.update({name: {0: "batch"} for name in outputs})
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), torch.no_grad():
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


def build_model_dir(
    model: CLaMP, family: dict, tokenizer_json: Path, out_dir: Path, source: dict, int8: bool = True
) -> dict:
    """Write a complete model dir: fp32, fp16 (and int8) graphs, parity vs PyTorch, manifest. Returns it.

    fp32 or fp16 below their parity gate fail the export (fp32 before any variant is built); an int8
    tower below its gate is deleted and the reason recorded under "dropped" (the runtime then uses
    fp32 for that tower).
    """
    precisions = ["fp32", "fp16"] + (["int8"] if int8 else [])
    settings = {
        "exporter": "torch.onnx.export(dynamo=False) + onnxruntime.transformers optimizer + quantize_dynamic",
        "opset": OPSET,
        "patch_dtype": PATCH_DTYPE,
        "precisions": precisions,
    }
    texts, tunes = list(PARITY_TEXTS), readable_tunes(parity_tunes(), family)
    reference = torch_reference(model, family, tokenizer_json, texts, tunes)
    parity: dict = {"provider": "cpu", "samples": {"texts": len(texts), "tunes": len(tunes)}, "gates": GATES}
    dropped: dict[str, str] = {}

    def check(precision: str) -> None:
        parity[precision] = measure(out_dir, precision, reference, texts, tunes)
        for tower, figures in parity[precision].items():
            if figures["min_cosine"] >= GATES[precision]:
                continue
            reason = f"{tower} {precision}: min cosine {figures['min_cosine']:.6f} < gate {GATES[precision]}"
            if precision != "int8":
                raise ExportError(f"export of {family['name']} failed parity: {reason}")
            (out_dir / encoder_file(tower, precision)).unlink()
            dropped[encoder_file(tower, precision)] = reason

    export_fp32(model, family, tokenizer_json, out_dir)
    write_manifest(out_dir, source=source, export=settings)
    check("fp32")
    settings["fp16_fusions"] = {}
    for tower in TOWERS:
        src, shape = out_dir / encoder_file(tower, "fp32"), family[tower]
        settings["fp16_fusions"][tower] = write_fp16(
            src, out_dir / encoder_file(tower, "fp16"), shape["num_attention_heads"], shape["hidden_size"]
        )
        if int8:
            write_int8(src, out_dir / encoder_file(tower, "int8"), keep_residual_fp32=tower == "text")
    write_manifest(out_dir, source=source, export=settings)
    for precision in precisions[1:]:
        check(precision)
    return write_manifest(out_dir, source=source, export=settings, parity=parity, dropped=dropped)
