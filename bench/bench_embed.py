"""Embedding throughput on real tunes and texts: clamp.py-style PyTorch vs batched PyTorch vs ONNX Runtime.

    python bench/bench_embed.py [--tunes 1000] [--budget 2048]

Music rows: PyTorch eager one tune at a time with the 6272-wide one-hot input (what clamp.py does);
PyTorch eager in length-sorted padded batches, with the one-hot input (the official formulation) and
with our embedding-bag; ORT fp32 and static int8 (calibrated as `clamp export` does) through the runtime
Encoder; ORT fp16 on the CUDA provider when this onnxruntime has it. Text rows: PyTorch eager batched,
ORT fp32, ORT int8 (and fp16 on CUDA).
Tunes are spread evenly over music21's ABC corpus (its real length distribution); texts are their
canonical descriptions. Models: the clamp-s-512 shape with random weights, and the trained default
model. Every row reports its min cosine to the PyTorch fp32 batched vectors of the same items.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
import torch.nn.functional as F

from exporter.checkpoint import REPO_ROOT, init_model, load_model, pretrained_text_dir
from exporter.export import export_fp32, write_int8
from exporter.int8gate import real_sample
from exporter.manifest import write_manifest
from exporter.model import CLaMP, masked_mean
from exporter.optimize import write_fp16
from runtime.model.encoder import Encoder, available_cores, patch_batches
from runtime.model.families import load_family
from runtime.model.modeldir import TOWERS, encoder_file
from runtime.model.text import TextTokenizer
from runtime.music.patching import N_CLASSES, prepare_music
from training.batches import text_embeddings
from training.corpus import load_corpus
from training.describe import describe
from training.texts import canonical_text

CUDA = "CUDAExecutionProvider" in ort.get_available_providers()


def corpus_sample(count: int) -> tuple[list[str], list[str]]:
    """`count` real tunes spread evenly over music21's ABC corpus, and their canonical descriptions."""
    tunes = load_corpus()
    sample = tunes[:: max(1, len(tunes) // count)][:count]
    return [t.abc for t in sample], [canonical_text(describe(t)) for t in sample]


def music_one_hot(model: CLaMP, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The music tower as the released code computes it: a 6272-wide one-hot through a Linear."""
    encoder = model.music_enc
    one_hot = F.one_hot(ids.long(), num_classes=N_CLASSES).reshape(*ids.shape[:2], -1).float()
    hidden = encoder.enc(
        inputs_embeds=encoder.patch_embedding(one_hot), attention_mask=mask
    ).last_hidden_state
    return model.music_proj(masked_mean(hidden, mask))


def clamp_py_loop(model: CLaMP, patches: Sequence[np.ndarray]) -> np.ndarray:
    """One tune at a time, no padding, one-hot input: the released clamp.py's loop."""
    rows = []
    for array in patches:
        ids = torch.from_numpy(array).unsqueeze(0)
        rows.append(music_one_hot(model, ids, torch.ones(ids.shape[:2], dtype=torch.long)))
    return F.normalize(torch.cat(rows), dim=-1).numpy()


def torch_batched(
    model: CLaMP, patches: Sequence[np.ndarray], budget: int, one_hot: bool, normalized: bool = True
) -> np.ndarray:
    """Length-sorted padded batches (the Encoder's batch plan) through PyTorch eager."""
    lengths = [len(p) for p in patches]
    out = np.zeros((len(patches), model.music_proj.out_features), dtype=np.float32)
    for rows in patch_batches(lengths, budget):
        width = lengths[rows[0]]
        ids = torch.zeros(len(rows), width, patches[0].shape[1], dtype=torch.uint8)
        mask = torch.zeros(len(rows), width, dtype=torch.long)
        for slot, row in enumerate(rows):
            ids[slot, : lengths[row]] = torch.from_numpy(patches[row])
            mask[slot, : lengths[row]] = 1
        features = music_one_hot(model, ids, mask) if one_hot else model.encode_music(ids, mask)
        out[rows] = (F.normalize(features, dim=-1) if normalized else features).numpy()
    return out


def bench_model_dir(model: CLaMP, family: dict, out: Path) -> Path:
    """A model dir with fp32, static int8 (and, with CUDA, fp16) graphs, made as `clamp export` makes them."""
    export_fp32(model, family, pretrained_text_dir(load_family("default")) / "tokenizer.json", out)
    for tower in TOWERS if CUDA else ():
        shape = family[tower]
        src = out / encoder_file(tower, "fp32")
        write_fp16(src, out / encoder_file(tower, "fp16"), shape["num_attention_heads"], shape["hidden_size"])
    write_manifest(out, source={"sha256": "benchmark"}, export={"precisions": ["fp32"]})
    write_int8(model, family, out, real_sample(family))
    write_manifest(out, source={"sha256": "benchmark"}, export={"precisions": ["fp32", "int8"]})
    return out


def timed(run: Callable[[], np.ndarray], count: int, repeats: int) -> tuple[float, np.ndarray]:
    """Items per second (best of `repeats`, after a warm-up run) and the vectors of the last run."""
    vectors = run()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        vectors = run()
        best = min(best, time.perf_counter() - start)
    return count / best, vectors


def table_rows(
    label: str,
    tower: str,
    runs: dict[str, Callable[[], np.ndarray]],
    reference: str,
    count: int,
    repeats: int,
) -> list[str]:
    """Time each run; ratios are to the first run, cosines to the `reference` run (PyTorch fp32 batched)."""
    results = {name: timed(run, count, repeats) for name, run in runs.items()}
    base, expected = next(iter(results.values()))[0], results[reference][1]
    rows = []
    for name, (rate, vectors) in results.items():
        cosine = float((vectors * expected).sum(axis=1).min())
        rows.append(f"| {label} | {tower} | {name} | {rate:,.1f} | {rate / base:.2f}x | {cosine:.5f} |")
        print(rows[-1], flush=True)
    return rows


def bench(
    label: str, model: CLaMP, family: dict, tunes: list[str], texts: list[str], args, work: Path
) -> list[str]:
    model = model.eval()
    patches = [prepare_music(abc, family["music"]["max_patches"]) for abc in tunes]
    model_dir = bench_model_dir(model, family, work / label)
    cpu = {p: Encoder.open(model_dir, provider="cpu", precision=p) for p in ("fp32", "int8")}
    text = family["text"]
    tokenizer = TextTokenizer.from_file(
        model_dir / "tokenizer.json", text["max_tokens"], text["pad_token_id"]
    )
    budget = args.budget
    music = {
        "PyTorch eager, batch 1, one-hot (clamp.py)": lambda: clamp_py_loop(model, patches),
        "PyTorch eager, batched, one-hot (official formulation)": lambda: torch_batched(
            model, patches, budget, True
        ),
        "PyTorch eager, batched, embedding-bag": lambda: torch_batched(model, patches, budget, False),
        "ONNX Runtime fp32": lambda: cpu["fp32"].embed_patches(patches, budget),
        "ONNX Runtime int8": lambda: cpu["int8"].embed_patches(patches, budget),
    }
    texts_runs = {
        "PyTorch eager, batched": lambda: text_embeddings(model, tokenizer, texts, torch.device("cpu"), 64),
        "ONNX Runtime fp32": lambda: cpu["fp32"].embed_texts(texts),
        "ONNX Runtime int8": lambda: cpu["int8"].embed_texts(texts),
    }
    if CUDA:
        gpu = Encoder.open(model_dir, provider="cuda", precision="fp16")
        music["ONNX Runtime fp16, CUDA"] = lambda: gpu.embed_patches(patches, args.gpu_budget)
        texts_runs["ONNX Runtime fp16, CUDA"] = lambda: gpu.embed_texts(texts, batch_size=256)
    with torch.no_grad():
        reference = "PyTorch eager, batched"
        return table_rows(
            label, "music", music, f"{reference}, embedding-bag", len(patches), args.repeats
        ) + (table_rows(label, "text", texts_runs, reference, len(texts), args.repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tunes", type=int, default=1000, help="real tunes (and texts) to embed")
    parser.add_argument(
        "--budget", type=int, default=2048, help="padded patches per CPU batch (clamp embed's)"
    )
    parser.add_argument("--gpu-budget", type=int, default=65536, help="padded patches per CUDA batch")
    parser.add_argument(
        "--repeats", type=int, default=1, help="timed runs per row after a warm-up (best kept)"
    )
    args = parser.parse_args()
    tunes, texts = corpus_sample(args.tunes)
    lengths = [len(prepare_music(t, 512)) for t in tunes]
    print(
        f"# embedding benchmark: {len(tunes)} music21 tunes (patches mean {np.mean(lengths):.1f}, max "
        f"{max(lengths)}), {platform.processor() or platform.machine()}, torch {torch.__version__} threads "
        f"{torch.get_num_threads()}, onnxruntime {ort.__version__} threads {available_cores()}, "
        f"CUDA EP: {CUDA}\n"
    )
    header = [
        "| model | tower | path | items/s | vs first row | min cosine vs PyTorch fp32 |",
        "|---|---|---|---|---|---|",
    ]
    print("\n".join(header))
    work = Path(tempfile.mkdtemp(prefix="bench-embed-"))
    try:
        torch.manual_seed(0)
        family = load_family("clamp-s-512")
        rows = bench("clamp-s-512 (random)", CLaMP(family), family, tunes, texts, args, work)
        if (REPO_ROOT / "models/default/config.json").is_file():
            model, family, _ = load_model("default")
            label = "default (trained)"
        else:
            family = load_family("default")
            model, label = init_model(family), "default (untrained)"
        rows += bench(label, model, family, tunes, texts, args, work)
    finally:
        shutil.rmtree(work)
    print("\n" + "\n".join([*header, *rows]))


if __name__ == "__main__":
    main()
