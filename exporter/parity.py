"""Parity of the exported graphs with PyTorch on real tunes and sentences, and the gates export enforces."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from exporter.model import CLaMP
from runtime.model.encoder import Encoder
from runtime.model.text import TextTokenizer
from runtime.music.abc import split_tunes
from runtime.music.patching import window_spans
from runtime.music.profiles import profile_of

# Minimum cosine of each variant against PyTorch: below it fp32/fp16 fail the export, int8 is dropped.
GATES = {"fp32": 0.99999, "fp16": 0.999, "int8": 0.99}
FALLBACK_TUNES = Path(__file__).with_name("parity_tunes.abc")
PARITY_TEXTS = (
    "a lively jig in D major",
    "A slow, mournful air from the west of Ireland.",
    "reel",
    "hornpipe",
    "This piece of music is composed by Chopin.",
    "Ein Liebeslied aus dem Elsass",
    "a Chinese folk song in pentatonic mode",
    "Café au lait: a naïve waltz in 3/4, with élan.",
    "strathspey with dotted rhythms and Scotch snaps, played at a steady pace by a fiddler at a ceilidh",
    "a march for pipes and drums",
    "Ballade",
    "slip jig in 9/8 time",
    "A children's song with a simple repeated melody that everyone can sing along to, " * 8,
)


def parity_tunes(count: int = 32) -> list[str]:
    """Real ABC tunes: spread over music21's corpus when it is installed, else the committed sample file."""
    try:
        from music21 import corpus
    except ImportError:
        return [tune.abc for tune in split_tunes(FALLBACK_TUNES.read_text())]
    paths = sorted(str(p) for p in corpus.getPaths(fileExtensions=("abc",)))
    step = max(1, len(paths) // count)
    return [split_tunes(Path(p).read_text(encoding="utf-8", errors="replace"))[0].abc for p in paths[::step]][
        :count
    ]


def torch_reference(
    model: CLaMP, family: dict, tokenizer_json: Path, texts: list[str], tunes: list[str]
) -> dict[str, np.ndarray]:
    """Raw projections from PyTorch, one item at a time as the official scripts run it (no padding);
    a windowed family's long inputs window by window, averaged by length (clamp2-3-spec §12.4)."""
    text, profile = family["text"], profile_of(family)
    windowed_text = text.get("long_texts") == "segment-average"
    tokenizer = TextTokenizer.from_file(
        tokenizer_json,
        None if windowed_text else text["max_tokens"],
        text["pad_token_id"],
        transliterate=text.get("transliterate", True),
    )
    max_patches = family["music"]["max_patches"]

    def pooled(encode, items: list[np.ndarray], weights: np.ndarray) -> torch.Tensor:
        rows = [
            encode(torch.from_numpy(x.astype(np.int64))[None], torch.ones(1, len(x), dtype=torch.long))
            for x in items
        ]
        weights_t = torch.from_numpy(weights).float()[:, None]
        return (torch.cat(rows) * weights_t).sum(0, keepdim=True) / weights_t.sum()

    model = model.eval()
    with torch.no_grad():
        text_rows = []
        for ids in tokenizer.token_ids(texts):
            spans, weights = window_spans(len(ids), text["max_tokens"] if windowed_text else len(ids))
            text_rows.append(pooled(model.encode_text, [np.asarray(ids[a:b]) for a, b in spans], weights))
        music_rows = []
        for abc in tunes:
            windows, weights = profile.windows(profile.abc_patches(abc, max_patches), max_patches)
            music_rows.append(pooled(model.encode_music, windows, weights))
    return {"text": torch.cat(text_rows).numpy(), "music": torch.cat(music_rows).numpy()}


def readable_tunes(tunes: list[str], family: dict) -> list[str]:
    """The parity tunes this family's preprocessing reads (CLaMP 2/3's interleaving refuses some)."""
    profile, kept = profile_of(family), []
    for abc in tunes:
        try:
            profile.abc_patches(abc, family["music"]["max_patches"])
        except ValueError:
            continue
        kept.append(abc)
    return kept


def compare(reference: np.ndarray, raw: np.ndarray, vectors: np.ndarray) -> dict[str, float]:
    """Max abs diff of the raw projections and min cosine of the normalised vectors vs the reference."""
    unit = reference / np.linalg.norm(reference, axis=1, keepdims=True)
    return {
        "max_abs_diff": float(np.abs(raw - reference).max()),
        "min_cosine": float((unit * vectors).sum(axis=1).min()),
    }


def measure(
    model_dir: Path, precision: str, reference: dict[str, np.ndarray], texts: list[str], tunes: list[str]
) -> dict[str, dict[str, float]]:
    """Parity per tower of one precision, through the runtime Encoder on CPU (padded batches included)."""
    encoder = Encoder.open(model_dir, provider="cpu", precision=precision)
    results = {}
    if encoder.precisions["text"] == precision:
        raw, vectors = encoder.embed_texts(texts, normalized=False), encoder.embed_texts(texts)
        results["text"] = compare(reference["text"], raw, vectors)
    if encoder.precisions["music"] == precision:
        patches = [encoder.profile.abc_patches(abc, encoder.max_patches) for abc in tunes]
        raw, vectors = encoder.embed_patches(patches, normalized=False), encoder.embed_patches(patches)
        results["music"] = compare(reference["music"], raw, vectors)
    return results
