"""Music embedding throughput on real tunes: clamp.py-style PyTorch vs our batched PyTorch vs ONNX Runtime.

    python bench/bench_embed.py [--tunes 256] [--budget 8192]

Rows: PyTorch eager one tune at a time with the 6272-wide one-hot input (what clamp.py does), PyTorch
eager batched (embedding-bag, length-sorted padded batches), ORT fp32 and ORT int8 through the runtime
Encoder. Models: the clamp-s-512 shape with random weights, and the default model (models/default; its
untrained architecture if that checkpoint is missing). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from exporter.checkpoint import REPO_ROOT, init_model, load_model, pretrained_text_dir
from exporter.export import export_fp32
from exporter.manifest import write_manifest
from exporter.model import CLaMP, masked_mean
from exporter.optimize import write_int8
from runtime.abc import split_tunes
from runtime.encoder import Encoder, available_cores, patch_batches
from runtime.families import load_family
from runtime.modeldir import encoder_file
from runtime.patching import N_CLASSES, prepare_music


def corpus_tunes(count: int) -> list[str]:
    """`count` real tunes spread evenly over music21's ABC corpus."""
    from music21 import corpus

    paths = sorted(str(p) for p in corpus.getPaths(fileExtensions=("abc",)))
    tunes = [t.abc for p in paths for t in split_tunes(Path(p).read_text(encoding="utf-8", errors="replace"))]
    return tunes[:: max(1, len(tunes) // count)][:count]


def clamp_py_style(model: CLaMP, patches: list[np.ndarray]) -> None:
    """One tune at a time, one-hot input through the 6272-wide Linear, as the released clamp.py runs it."""
    encoder = model.music_enc
    for array in patches:
        ids = torch.from_numpy(array.astype(np.int64)).unsqueeze(0)
        one_hot = F.one_hot(ids, num_classes=N_CLASSES).reshape(1, len(array), -1).float()
        mask = torch.ones(1, len(array))
        hidden = encoder.enc(
            inputs_embeds=encoder.patch_embedding(one_hot), attention_mask=mask
        ).last_hidden_state
        model.music_proj(masked_mean(hidden, mask))


def torch_batched(model: CLaMP, patches: list[np.ndarray], budget: int) -> None:
    """Length-sorted padded batches through the model's embedding-bag path."""
    lengths = [len(p) for p in patches]
    for rows in patch_batches(lengths, budget):
        width = lengths[rows[0]]
        ids = torch.zeros(len(rows), width, patches[0].shape[1], dtype=torch.long)
        mask = torch.zeros(len(rows), width, dtype=torch.long)
        for slot, row in enumerate(rows):
            ids[slot, : lengths[row]] = torch.from_numpy(patches[row].astype(np.int64))
            mask[slot, : lengths[row]] = 1
        model.encode_music(ids, mask)


def bench_model_dir(model: CLaMP, family: dict, out: Path) -> Path:
    """A model dir with fp32 graphs and an int8 music graph: enough for the music rows (no parity run)."""
    export_fp32(model, family, pretrained_text_dir(load_family("default")) / "tokenizer.json", out)
    write_int8(out / encoder_file("music", "fp32"), out / encoder_file("music", "int8"))
    write_manifest(out, source={"sha256": "benchmark"}, export={"precisions": ["fp32", "int8"]})
    return out


def bench(label: str, model: CLaMP, family: dict, tunes: list[str], budget: int, work: Path) -> list[str]:
    model = model.eval()
    max_patches = family["music"]["max_patches"]
    patches = [prepare_music(abc, max_patches) for abc in tunes]
    model_dir = bench_model_dir(model, family, work / label)
    fp32, int8 = (Encoder.open(model_dir, provider="cpu", precision=p) for p in ("fp32", "int8"))
    runs: dict[str, Callable[[list[np.ndarray]], object]] = {
        "PyTorch eager, batch 1, one-hot input (clamp.py)": lambda ps: clamp_py_style(model, ps),
        "PyTorch eager, batched, embedding-bag": lambda ps: torch_batched(model, ps, budget),
        "ONNX Runtime fp32 (Encoder)": lambda ps: fp32.embed_patches(ps, budget),
        "ONNX Runtime int8 (Encoder)": lambda ps: int8.embed_patches(ps, budget),
    }
    rows, baseline = [], None
    with torch.no_grad():
        for name, run in runs.items():
            run(patches[:8])  # warm-up
            start = time.perf_counter()
            run(patches)
            rate = len(patches) / (time.perf_counter() - start)
            baseline = baseline or rate
            rows.append(f"| {label} | {name} | {rate:,.1f} | {rate / baseline:.1f}x |")
            print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tunes", type=int, default=256)
    parser.add_argument("--budget", type=int, default=8192, help="padded patches per batch")
    args = parser.parse_args()
    tunes = corpus_tunes(args.tunes)
    lengths = [len(prepare_music(t, 512)) for t in tunes]
    print(
        f"# music embedding benchmark: {len(tunes)} music21 tunes (patches mean {np.mean(lengths):.1f}, "
        f"max {max(lengths)}), {platform.machine()}, torch threads {torch.get_num_threads()}, "
        f"ORT threads {available_cores()}\n"
    )
    print("| model | path | tunes/s | vs clamp.py |\n|---|---|---|---|")
    work = Path(tempfile.mkdtemp(prefix="bench-embed-"))
    try:
        torch.manual_seed(0)
        family = load_family("clamp-s-512")
        rows = bench("clamp-s-512 (random)", CLaMP(family), family, tunes, args.budget, work)
        if (REPO_ROOT / "models/default/config.json").is_file():
            model, family, _ = load_model("default")
            label = "default (trained)"
        else:
            family = load_family("default")
            model, label = init_model(family), "default (untrained)"
        rows += bench(label, model, family, tunes, args.budget, work)
    finally:
        shutil.rmtree(work)
    print("\n" + "\n".join(["| model | path | tunes/s | vs clamp.py |", "|---|---|---|---|", *rows]))


if __name__ == "__main__":
    main()
