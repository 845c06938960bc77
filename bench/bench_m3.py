"""CLaMP 3 shape (clamp3-c2, random weights): music and text throughput per precision on this machine.

    python bench/bench_m3.py [--tunes 200] [--texts 500]

Music: real tunes from music21's ABC corpus, interleaved and M3-patched as the family's preprocessing
does, windowed (512 patches) and averaged by the runtime Encoder; PyTorch eager batched over the same
windows as the baseline. Text: the tunes' canonical descriptions; the tokenizer is MiniLM's WordPiece
(XLM-R's is not on this machine), so token counts are close to, not equal to, XLM-R's. Rows report
items per second and the min cosine to PyTorch fp32.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
from pathlib import Path

import numpy as np
import torch
from bench_embed import bench_model_dir, corpus_sample, table_rows, torch_batched

from exporter.model import CLaMP
from runtime.model.encoder import Encoder, available_cores, pooled_windows, windowed
from runtime.model.families import load_family
from runtime.music.profiles import profile_of
from training.batches import text_embeddings


def readable(tunes: list[str], family: dict) -> list[np.ndarray]:
    """The tunes' M3 patches (whole pieces), leaving out those the official interleaving refuses."""
    profile, out = profile_of(family), []
    for abc in tunes:
        try:
            out.append(profile.abc_patches(abc, None))
        except ValueError:
            continue
    return out


def torch_windows(model: CLaMP, pieces: list[np.ndarray], size: int, budget: int) -> np.ndarray:
    """PyTorch eager over every piece's windows in padded batches, then each piece's length-weighted mean."""
    windows, owners, weights = windowed(pieces, size)
    raw = torch_batched(model, windows, budget, False, normalized=False)
    return pooled_windows(raw, owners, weights, len(pieces), normalized=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tunes", type=int, default=200)
    parser.add_argument("--texts", type=int, default=500)
    parser.add_argument("--budget", type=int, default=8192, help="padded patches per batch")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(available_cores())
    family = load_family("clamp3-c2")
    model = CLaMP(family).eval()
    tunes, texts = corpus_sample(max(args.tunes, args.texts))
    pieces = readable(tunes[: args.tunes], family)
    texts = texts[: args.texts]
    print(
        f"# {platform.processor() or platform.machine()}, {available_cores()} cores; {len(pieces)} pieces "
        f"({sum(map(len, pieces))} M3 patches), {len(texts)} texts"
    )
    print("| model | tower | run | items/s | vs first | min cosine |\n|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as work, torch.no_grad():
        model_dir = bench_model_dir(model, family, Path(work) / "clamp3-c2")
        cpu = {p: Encoder.open(model_dir, provider="cpu", precision=p) for p in ("fp32", "int8")}
        size = family["music"]["max_patches"]
        music = {
            "PyTorch eager, batched windows": lambda: torch_windows(model, pieces, size, args.budget),
            "ONNX Runtime fp32": lambda: cpu["fp32"].embed_patches(pieces, args.budget),
            "ONNX Runtime int8": lambda: cpu["int8"].embed_patches(pieces, args.budget),
        }
        tokenizer = cpu["fp32"].tokenizer
        text = {
            "PyTorch eager, batched": lambda: text_embeddings(
                model, tokenizer, texts, torch.device("cpu"), 64
            ),
            "ONNX Runtime fp32": lambda: cpu["fp32"].embed_texts(texts),
            "ONNX Runtime int8": lambda: cpu["int8"].embed_texts(texts),
        }
        reference = "PyTorch eager, batched"
        table_rows("clamp3-c2 shape", "music", music, f"{reference} windows", len(pieces), args.repeats)
        table_rows("clamp3-c2 shape", "text", text, reference, len(texts), args.repeats)


if __name__ == "__main__":
    main()
