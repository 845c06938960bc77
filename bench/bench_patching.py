"""Patching rate on one core: every ABC tune of the music21 corpus, split + filter + bar-patch, as the
official CLaMP families patch (clamp1) and as the default family does (clamp1-canonical: the canonical
spelling and timeline first)."""

from __future__ import annotations

import platform
import time

import music21
import numpy as np

from runtime.music.abc import split_tunes
from runtime.music.patching import prepare_music
from runtime.music.profiles import PROFILES


def main(repeats: int = 3) -> None:
    texts = [open(p, encoding="latin-1").read() for p in music21.corpus.getPaths(fileExtensions=("abc",))]
    canonical = PROFILES["clamp1-canonical"]
    best_split = best_patch = best_canonical = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        tunes = [t for text in texts for t in split_tunes(text)]
        split_done = time.perf_counter()
        lengths = [len(prepare_music(t.abc, 512)) for t in tunes]
        patch_done = time.perf_counter()
        canonical_lengths = [len(canonical.abc_patches(t.abc, 512)) for t in tunes]
        best_split = min(best_split, split_done - start)
        best_patch = min(best_patch, patch_done - split_done)
        best_canonical = min(best_canonical, time.perf_counter() - patch_done)
    n = len(tunes)
    print(f"# patching benchmark — {platform.processor() or platform.machine()}, one core, best of {repeats}")
    print(
        f"tunes: {n}, patches per tune: mean {np.mean(lengths):.1f}, median {np.median(lengths):.0f}, "
        f"max {max(lengths)}"
    )
    print("| stage | seconds | tunes/s |\n|---|---|---|")
    print(f"| split_tunes | {best_split:.2f} | {n / best_split:,.0f} |")
    print(f"| prepare_music (filter + patch) | {best_patch:.2f} | {n / best_patch:,.0f} |")
    print(f"| both | {best_split + best_patch:.2f} | {n / (best_split + best_patch):,.0f} |")
    print(
        f"| clamp1-canonical (canonical spelling + timeline + patch; mean {np.mean(canonical_lengths):.1f} "
        f"patches) | {best_canonical:.2f} | {n / best_canonical:,.0f} |"
    )


if __name__ == "__main__":
    main()
