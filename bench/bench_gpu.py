"""GPU embedding in one call: ORT CUDA fp16 music towers with I/O binding, patching in worker processes.

    python bench/bench_gpu.py prepare --out build/gpu        # on a CPU machine with music21 (seconds)
    PYTHONPATH=.:build/gpu/site python bench/bench_gpu.py run --tunes-file build/gpu/tunes.abc

`prepare` writes music21's ABC tunes to one file and copies the pure-Python packages the runtime needs
beyond the GPU image (torch, transformers, tokenizers, onnx, onnxruntime, pyarrow, click) into site/.
`run` exports the music towers of the clamp-s-512 shape (random weights) and of the default model
(models/default) to ONNX fp32 and fp16, then per model measures: patching alone in worker processes,
fp16 inference alone (pre-patched, length-sorted batches, inputs bound from host memory, the vector
output bound on the device), both together as `clamp embed` runs them (workers patch while the
device embeds), and the min cosine of fp16 on the provider against CPU fp32 on real tunes. `--smoke`
runs it all small on the CPU provider (tests/test_bench_gpu.py).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import multiprocessing
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from safetensors.torch import load_file

from exporter.export import export_tower
from exporter.model import CLaMP
from exporter.optimize import write_fp16
from runtime.model.encoder import patch_batches
from runtime.model.families import load_family
from runtime.model.modeldir import GRAPH_INPUTS, GRAPH_OUTPUTS
from runtime.music.abc import split_tunes
from runtime.music.patching import PAD_ID, prepare_music

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DIR = REPO / "models" / "default"
SMOKE_SIZES = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
RUNTIME_EXTRAS = ("unidecode",)  # pure-Python imports of runtime/ the GPU image lacks
PROVIDERS = {"cuda": "CUDAExecutionProvider", "cpu": "CPUExecutionProvider"}
GOAL = {"tunes_per_s": 20_000, "min_cosine": 0.999}
CHUNK = 256  # tunes per patching task


def prepare(out: Path) -> None:
    """Write tunes.abc (music21's ABC tunes) and site/ (runtime imports missing on the GPU image)."""
    from training.corpus import load_corpus

    out.mkdir(parents=True, exist_ok=True)
    tunes = load_corpus()
    (out / "tunes.abc").write_text("\n\n".join(t.abc.strip() for t in tunes) + "\n")
    for name in RUNTIME_EXTRAS:
        package = Path(next(iter(importlib.util.find_spec(name).submodule_search_locations)))
        shutil.copytree(
            package, out / "site" / name, dirs_exist_ok=True, ignore=shutil.ignore_patterns("*.pyc")
        )
    print(
        f"wrote {len(tunes)} tunes to {out / 'tunes.abc'} and {', '.join(RUNTIME_EXTRAS)} to {out / 'site'}"
    )


def music_models(smoke: bool) -> Iterator[tuple[str, CLaMP, dict]]:
    """(label, model, family): the clamp-s-512 shape (random; tiny in smoke mode), the default model."""
    family = load_family("clamp-s-512")
    if smoke:
        family["music"].update(SMOKE_SIZES)
    torch.manual_seed(0)
    yield ("clamp-s-512 shape (random)" + (", smoke size" if smoke else ""), CLaMP(family), family)
    family = json.loads((DEFAULT_DIR / "config.json").read_text())
    model = CLaMP(family)  # the text tower stays random: only the music tower is measured
    music = {k: v for k, v in load_file(DEFAULT_DIR / "model.safetensors").items() if k.startswith("music_")}
    missing = [k for k in model.load_state_dict(music, strict=False).missing_keys if k.startswith("music_")]
    if missing:
        raise SystemExit(f"{DEFAULT_DIR / 'model.safetensors'} lacks music weights: {', '.join(missing[:3])}")
    yield "default (trained)", model, family


def patch_chunk(args: tuple[list[str], int]) -> list[np.ndarray]:
    """Worker task: ABC tunes -> patch arrays."""
    abcs, max_patches = args
    return [prepare_music(abc, max_patches) for abc in abcs]


def padded(patches: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Right-padded uint8 ids [B, P, 64] and int64 mask [B, P], as the runtime Encoder builds them."""
    width = max(len(p) for p in patches)
    ids = np.full((len(patches), width, patches[0].shape[1]), PAD_ID, dtype=np.uint8)
    mask = np.zeros((len(patches), width), dtype=np.int64)
    for row, array in enumerate(patches):
        ids[row, : len(array)], mask[row, : len(array)] = array, 1
    return ids, mask


class BoundMusic:
    """One music graph on one provider, run through I/O binding: only the normalised vector comes back."""

    def __init__(self, path: Path, provider: str):
        options = ort.SessionOptions()
        options.log_severity_level = 3
        providers = [PROVIDERS[provider]] + (["CPUExecutionProvider"] if provider != "cpu" else [])
        self.session = ort.InferenceSession(str(path), options, providers=providers)
        self.device = provider
        self.inputs, self.output = GRAPH_INPUTS["music"], GRAPH_OUTPUTS["music"][0]

    def __call__(self, patches: Sequence[np.ndarray]) -> np.ndarray:
        ids, mask = padded(patches)
        binding = self.session.io_binding()
        binding.bind_cpu_input(self.inputs[0], ids)
        binding.bind_cpu_input(self.inputs[1], mask)
        binding.bind_output(self.output, self.device)
        self.session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()[0]

    def embed(self, patches: Sequence[np.ndarray], budget: int) -> np.ndarray:
        """Vectors in input order, from length-sorted batches of at most `budget` padded patches."""
        out = np.zeros((len(patches), self.session.get_outputs()[0].shape[1]), dtype=np.float32)
        for rows in patch_batches([len(p) for p in patches], budget):
            out[rows] = self([patches[i] for i in rows])
        return out


def chunks(tunes: Sequence[str], max_patches: int) -> Iterable[tuple[list[str], int]]:
    return ((list(tunes[i : i + CHUNK]), max_patches) for i in range(0, len(tunes), CHUNK))


def measure(label: str, model: CLaMP, family: dict, tunes: list[str], args, work: Path) -> dict:
    """One model's row: export, patching, inference, end to end, parity (see the module docstring)."""
    work.mkdir()
    fp32, fp16 = work / "music.fp32.onnx", work / "music.fp16.onnx"
    export_tower(model.eval(), family, "music", fp32)
    music = family["music"]
    write_fp16(fp32, fp16, music["num_attention_heads"], music["hidden_size"])
    device, max_patches = BoundMusic(fp16, args.provider), music["max_patches"]
    with multiprocessing.get_context("spawn").Pool(args.workers) as pool:
        list(pool.imap(patch_chunk, chunks(tunes[: CHUNK * args.workers], max_patches)))  # warm the workers
        start = time.perf_counter()
        patches = [p for chunk in pool.imap(patch_chunk, chunks(tunes, max_patches)) for p in chunk]
        patching = time.perf_counter() - start
        device.embed(patches[: args.parity_tunes], args.budget)  # warm-up: kernels, arena
        start = time.perf_counter()
        device.embed(patches, args.budget)
        inference = time.perf_counter() - start
        start = time.perf_counter()
        pending: list[np.ndarray] = []
        for chunk in pool.imap(patch_chunk, chunks(tunes, max_patches)):
            pending += chunk
            if len(pending) >= args.window:  # length-sort a window of tunes, as `clamp embed` does
                device.embed(pending, args.budget)
                pending = []
        if pending:
            device.embed(pending, args.budget)
        end_to_end = time.perf_counter() - start
    sample = patches[: args.parity_tunes]
    reference = BoundMusic(fp32, "cpu").embed(sample, 2048)
    cosine = float((device.embed(sample, args.budget) * reference).sum(axis=1).min())
    return {
        "model": label,
        "provider": f"{args.provider} fp16",
        "tunes": len(tunes),
        "mean_patches": float(np.mean([len(p) for p in patches])),
        "patching": len(tunes) / patching,
        "inference": len(tunes) / inference,
        "end_to_end": len(tunes) / end_to_end,
        "min_cosine": cosine,
    }


def table(rows: list[dict], workers: int) -> str:
    """The rows as markdown, with the issue's goals beside them."""
    lines = [
        f"| model | provider | tunes (mean patches) | patching, {workers} workers | inference | end to end "
        f"| min cosine vs CPU fp32 |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ok = "meets" if r["min_cosine"] >= GOAL["min_cosine"] else "below"
        rates = " | ".join(f"{r[key]:,.0f}/s" for key in ("patching", "inference", "end_to_end"))
        lines.append(
            f"| {r['model']} | {r['provider']} | {r['tunes']:,} ({r['mean_patches']:.1f}) | {rates} "
            f"| {r['min_cosine']:.6f} ({ok} {GOAL['min_cosine']}) |"
        )
    return (
        "\n".join(lines)
        + f"\n\nGoal: >= {GOAL['tunes_per_s']:,} clamp-s-512 tunes/s end to end on an H100-class GPU."
    )


def run(args) -> list[dict]:
    """Every model's row, printed as a table (and written as JSON with --json)."""
    if args.provider == "cuda" and PROVIDERS["cuda"] not in ort.get_available_providers():
        raise SystemExit(f"no CUDAExecutionProvider in this onnxruntime ({ort.get_available_providers()})")
    pool = [t.abc for t in split_tunes(Path(args.tunes_file).read_text(encoding="utf-8", errors="replace"))]
    tunes = (pool * (args.tunes // max(1, len(pool)) + 1))[: args.tunes]
    print(
        f"# bench_gpu: onnxruntime {ort.__version__}, torch {torch.__version__}, {len(pool)} distinct tunes\n"
    )
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as work:
        for number, (label, model, family) in enumerate(music_models(args.smoke)):
            rows.append(measure(label, model, family, tunes, args, Path(work) / str(number)))
            print(table(rows[-1:], args.workers).split("\n\n")[0].splitlines()[-1], flush=True)
    print("\n" + table(rows, args.workers))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return rows


def main(argv: Sequence[str] | None = None) -> list[dict] | None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    prep = commands.add_parser("prepare", help="write tunes.abc and site/ for the GPU machine")
    prep.add_argument("--out", type=Path, default=REPO / "build" / "gpu")
    bench = commands.add_parser("run", help="measure (on CUDA unless --smoke)")
    bench.add_argument("--tunes-file", required=True, help="ABC file of tunes (from `prepare`)")
    bench.add_argument("--tunes", type=int, default=200_000, help="tunes to embed (the file's, repeated)")
    bench.add_argument("--workers", type=int, default=max(1, (multiprocessing.cpu_count() or 2) - 1))
    bench.add_argument("--budget", type=int, default=65_536, help="padded patches per device batch")
    bench.add_argument("--window", type=int, default=16_384, help="tunes length-sorted together end to end")
    bench.add_argument("--parity-tunes", type=int, default=2_000, help="tunes compared with CPU fp32")
    bench.add_argument("--provider", choices=sorted(PROVIDERS), default="cuda")
    bench.add_argument("--smoke", action="store_true", help="tiny clamp-s-512 tower on the CPU provider")
    bench.add_argument("--json", help="also write the rows here")
    args = parser.parse_args(argv)
    if args.command == "prepare":
        prepare(args.out)
        return None
    if args.smoke:
        args.provider = "cpu"
    return run(args)


if __name__ == "__main__":
    main()
