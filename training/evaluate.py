"""Held-out evaluation of a CLaMP checkpoint: retrieval, zero-shot classification, invariance, generalisation.

Only music the model never trained on is used: the "eval" side of the fixed split (training/corpus.py), and
the collections training leaves out whole (TrainConfig.held_out_collections, leave-one-collection-out).
- Retrieval: each eval tune's canonical text against all eval tunes' music (spec §5.1).
- Zero-shot: each labelset of runtime/search/labelsets.json, next to chance (1 / number of labels) and a
  majority-class baseline (the label most frequent among *training* tunes, predicted for every eval tune).
- Invariance: each notation variant of an eval tune (training/variants.py, the MusicXML and MIDI round trips
  from training/roundtrip.py's cache): mean cosine to the tune as written, and how often the variant finds
  its original first among all eval tunes.
- Held-out collections: the dance-type zero-shot and retrieval on a collection left out of training.
Every checkpoint patches music through its own family's preprocessing, so v1 and v2 are compared fairly.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

import runtime
from exporter.checkpoint import load_model
from runtime.model.encoder import Encoder
from runtime.model.text import TextTokenizer
from runtime.music.profiles import PROFILES, profile_of
from training.batches import music_embeddings, resolve_device, text_embeddings
from training.classical.corpus import label_sets as classical_label_sets
from training.classical.corpus import load_classical
from training.classical.texts import canonical_text as classical_canonical_text
from training.corpus import CorpusTune, load_corpus
from training.describe import TuneFacts, describe
from training.metrics import accuracy, hit_rate, macro_f1, mean_reciprocal_rank, random_mrr, true_match_ranks
from training.roundtrip import DEFAULT_CACHE, cache_file, read_cache
from training.texts import canonical_text
from training.train import TrainConfig
from training.variants import ROUND_TRIPS, TEXTUAL, variants_of

LABELSETS = Path(runtime.__file__).parent / "search" / "labelsets.json"
DANCE_TASK = "tune-type (dance tunes)"  # tune-type without the songs, whose label is trivial to guess
CARD_START, CARD_END = "<!-- metrics:start -->", "<!-- metrics:end -->"


def load_labelsets(path: Path = LABELSETS) -> dict[str, dict]:
    """{name: {"template": "... {} ...", "labels": [...]}}: prompts for zero-shot classification."""
    return json.loads(path.read_text())


def classification_tasks(labelsets: dict[str, dict]) -> dict[str, dict]:
    """The labelsets, plus tune-type restricted to dance tunes (labels without "song")."""
    tasks = {name: {**spec, "labelset": name} for name, spec in labelsets.items()}
    if "tune-type" in labelsets:
        labels = [label for label in labelsets["tune-type"]["labels"] if label != "song"]
        tasks[DANCE_TASK] = {**labelsets["tune-type"], "labels": labels, "labelset": "tune-type"}
    return tasks


def zero_shot_row(
    task: dict,
    music: np.ndarray,
    prompts: np.ndarray,
    eval_facts: list[TuneFacts],
    train_facts: list[TuneFacts],
) -> dict | None:
    """Accuracy and macro-F1 of zero-shot classification for one task, with chance and majority baselines."""
    labels = task["labels"]
    truth = [(i, f.labels().get(task["labelset"])) for i, f in enumerate(eval_facts)]
    truth = [(i, label) for i, label in truth if label in labels]
    if not truth:
        return None
    rows, y_true = [i for i, _ in truth], [label for _, label in truth]
    y_pred = [labels[j] for j in np.argmax(music[rows] @ prompts.T, axis=1)]
    train_labels = Counter(f.labels().get(task["labelset"]) for f in train_facts)
    majority = max(labels, key=lambda label: train_labels[label])
    return {
        "n": len(rows),
        "labels": len(labels),
        "accuracy": accuracy(y_true, y_pred),
        "macro_f1": macro_f1(y_true, y_pred),
        "chance": 1 / len(labels),
        "majority_label": majority,
        "majority_accuracy": accuracy(y_true, [majority] * len(y_true)),
        "majority_macro_f1": macro_f1(y_true, [majority] * len(y_true)),
    }


class TorchEmbedder:
    """A PyTorch checkpoint behind the runtime Encoder's embedding interface (texts and patch arrays)."""

    def __init__(self, checkpoint: str | Path, device: str = "auto", profile: str | None = None):
        self.device = resolve_device(device)
        model, family, tokenizer_json = load_model(checkpoint)
        self.model = model.to(self.device).eval()
        text = family["text"]
        self.tokenizer = TextTokenizer.from_file(tokenizer_json, text["max_tokens"], text["pad_token_id"])
        self.max_patches: int = family["music"]["max_patches"]
        self.profile = PROFILES[profile] if profile else profile_of(family)

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        return text_embeddings(self.model, self.tokenizer, texts, self.device)

    def embed_patches(self, patches: Sequence[np.ndarray]) -> np.ndarray:
        return music_embeddings(self.model, patches, self.device)


def evaluate(
    checkpoint: str | Path = "models/default",
    device: str = "auto",
    corpus_root: Path | None = None,
    collections: Sequence[str] | None = None,
    model_dir: str | Path | None = None,
    precision: str = "auto",
    cache_dir: Path | None = DEFAULT_CACHE,
    held_out_collections: Sequence[str] = TrainConfig.held_out_collections,
    profile: str | None = None,
) -> dict:
    """All metrics, as a dict: of a PyTorch checkpoint (dir or model name), or, when `model_dir` is given,
    of that exported ONNX model dir at `precision` (what the runtime serves). `profile`: patch the music
    another way than the checkpoint's family does (e.g. v1 fed the canonical spelling)."""
    if model_dir is not None:
        embedder = Encoder.open(model_dir, provider="cpu", precision=precision)
        source = {"checkpoint": str(model_dir), "precision": embedder.precisions}
    else:
        embedder = TorchEmbedder(checkpoint, device, profile)
        source = {"checkpoint": str(checkpoint), "precision": "pytorch fp32"}
        if profile:
            source["profile"] = profile
    tunes = load_corpus(corpus_root, collections)
    eval_tunes = [t for t in tunes if t.split == "eval" and t.collection not in held_out_collections]
    train_facts = [describe(t) for t in tunes if t.split == "train"]
    encoded: dict[bytes, np.ndarray] = {}  # by patches: variants that patch like a tune reuse its vector
    music = _music(embedder, [t.abc for t in eval_tunes], encoded)
    results: dict = {
        **source,
        "eval_tunes": len(eval_tunes),
        **_text_metrics(embedder, eval_tunes, music, train_facts),
    }
    round_trips = read_cache(cache_file(cache_dir)) if cache_dir else {}
    results["invariance"] = invariance(embedder, eval_tunes, music, round_trips, encoded)
    if collections is None:
        results["classical"] = classical_metrics(embedder, tunes, cache_dir)
    results["held_out_collections"] = {}
    for name in held_out_collections:
        unseen = [t for t in tunes if t.collection == name]
        if unseen:
            metrics = _text_metrics(embedder, unseen, _music(embedder, [t.abc for t in unseen]), train_facts)
            results["held_out_collections"][name] = {"tunes": len(unseen), **metrics}
    return results


# The classical facts' label names -> the labelsets (runtime/search/labelsets.json) whose prompts they use.
CLASSICAL_LABELSETS = {"composer": "composer", "genre": "form", "era": "era"}


def classical_metrics(embedder, folk: Sequence[CorpusTune], cache_dir: Path | None) -> dict:
    """Held-out classical works (split by work): retrieval among them and zero-shot composer, genre, era
    over the labels that at least two held-out works carry."""
    pieces = load_classical(
        folk_keys={t.body_key for t in folk}, **({"cache_dir": cache_dir} if cache_dir else {})
    )
    held = [p for p in pieces if p.split == "eval"]
    if not held:
        return {}
    music = _music(embedder, [p.abc for p in held])
    ranks = true_match_ranks(
        embedder.embed_texts([classical_canonical_text(p.facts) for p in held]) @ music.T
    )
    found: dict = {
        "pieces": len(held),
        "works": len({p.work.key for p in held}),
        "retrieval": {"mrr": mean_reciprocal_rank(ranks), "random_mrr": random_mrr(len(ranks))},
        "zero_shot": {},
    }
    templates = load_labelsets()
    for name, labels in classical_label_sets(pieces).items():
        if name not in CLASSICAL_LABELSETS or len(labels) < 2:
            continue
        truth = [(i, p.facts.labels().get(name)) for i, p in enumerate(held)]
        truth = [(i, label) for i, label in truth if label in labels]
        template = templates[CLASSICAL_LABELSETS[name]]["template"]
        prompts = embedder.embed_texts([template.format(label) for label in labels])
        rows = [i for i, _ in truth]
        y_true = [label for _, label in truth]
        y_pred = [labels[j] for j in np.argmax(music[rows] @ prompts.T, axis=1)]
        found["zero_shot"][name] = {
            "n": len(rows),
            "labels": len(labels),
            "accuracy": accuracy(y_true, y_pred),
            "macro_f1": macro_f1(y_true, y_pred),
            "chance": 1 / len(labels),
        }
    return found


def _music(embedder, abcs: Sequence[str], cache: dict[bytes, np.ndarray] | None = None) -> np.ndarray:
    """Music embeddings of ABC tunes, patched as the embedder's family patches them. Tunes whose patches
    are already in `cache` (a variant that patches like its original) are not encoded again."""
    cache = {} if cache is None else cache
    patches = [embedder.profile.abc_patches(abc, embedder.max_patches) for abc in abcs]
    keys = [p.tobytes() + str(p.shape).encode() for p in patches]
    new = list({key: p for key, p in zip(keys, patches, strict=True) if key not in cache}.items())
    if new:
        cache.update(zip((k for k, _ in new), embedder.embed_patches([p for _, p in new]), strict=True))
    return np.stack([cache[key] for key in keys])


def _text_metrics(
    embedder, tunes: Sequence[CorpusTune], music: np.ndarray, train_facts: list[TuneFacts]
) -> dict:
    """Text->music retrieval among `tunes` and zero-shot classification of them."""
    facts = [describe(t) for t in tunes]
    ranks = true_match_ranks(embedder.embed_texts([canonical_text(f) for f in facts]) @ music.T)
    found: dict = {
        "retrieval": {
            "mrr": mean_reciprocal_rank(ranks),
            "random_mrr": random_mrr(len(ranks)),
            **{f"hit@{k}": hit_rate(ranks, k) for k in (1, 10, 100)},
            **{f"random_hit@{k}": min(k, len(ranks)) / len(ranks) for k in (1, 10, 100)},
        },
        "zero_shot": {},
    }
    for name, task in classification_tasks(load_labelsets()).items():
        prompts = [task["template"].format(label) for label in task["labels"]]
        row = zero_shot_row(task, music, embedder.embed_texts(prompts), facts, train_facts)
        if row:
            found["zero_shot"][name] = row
    return found


def invariance(
    embedder,
    tunes: Sequence[CorpusTune],
    music: np.ndarray,
    round_trips: dict[str, dict[str, str | None]],
    encoded: dict[bytes, np.ndarray],
) -> dict[str, dict]:
    """Per variant: tunes, mean cosine to the tune as written, rank-1 rate among all `tunes` as written.

    `encoded`: the vectors `_music` made of `tunes` (music), by patches; variants that patch like one of
    them (under the canonical profile most do) are not encoded again."""
    rows: dict[str, list[int]] = {name: [] for name in [*TEXTUAL, *ROUND_TRIPS]}
    texts: dict[str, list[str]] = {name: [] for name in rows}
    for row, tune in enumerate(tunes):
        for name, text in variants_of(tune.abc, round_trips.get(tune.id)).items():
            rows[name].append(row)
            texts[name].append(text)
    table = {}
    for name, variant_rows in rows.items():
        if not variant_rows:
            continue
        variants = _music(embedder, texts[name], encoded)
        similarity = variants @ music.T
        own = similarity[np.arange(len(variant_rows)), variant_rows]
        table[name] = {
            "tunes": len(variant_rows),
            "pool": len(tunes),
            "mean_cosine": float(own.mean()),
            "rank1": float((similarity.argmax(axis=1) == np.asarray(variant_rows)).mean()),
        }
    return table


def markdown_table(results: dict | Sequence[dict]) -> str:
    """The metrics as Markdown tables, one column per evaluated model (side by side when several)."""
    runs = [results] if isinstance(results, dict) else list(results)
    names = [Path(r["checkpoint"]).name or r["checkpoint"] for r in runs]
    head = "| " + " | ".join(names) + " |"
    rule = "|---" * len(runs) + "|"
    first = runs[0]
    lines = [
        f"Held-out split: {first['eval_tunes']} tunes. "
        "Text->music retrieval (each tune's canonical text against all eval tunes):",
        "",
        f"| metric {head} random |",
        f"|---{rule}---|",
        _row(
            "MRR",
            runs,
            lambda r: (
                f"{r['retrieval']['mrr']:.4f} ({r['retrieval']['mrr'] / r['retrieval']['random_mrr']:.1f}x)"
            ),
            f"{first['retrieval']['random_mrr']:.4f}",
        ),
        *[
            _row(
                f"Hit@{k}",
                runs,
                lambda r, k=k: f"{r['retrieval'][f'hit@{k}']:.3f}",
                f"{first['retrieval'][f'random_hit@{k}']:.3f}",
            )
            for k in (1, 10, 100)
        ],
        "",
        "Zero-shot classification: accuracy (x chance), macro-F1 (runtime/search/labelsets.json):",
        "",
        f"| task | n | labels {head} chance | majority acc. (label) |",
        f"|---|---|---{rule}---|---|",
    ]
    for task, z in first["zero_shot"].items():
        lines.append(
            f"| {task} | {z['n']} | {z['labels']} | "
            + " | ".join(_zero_shot_cell(r["zero_shot"].get(task)) for r in runs)
            + f" | {z['chance']:.3f} | {z['majority_accuracy']:.3f} ({z['majority_label']}) |"
        )
    variants = list(dict.fromkeys(v for r in runs for v in r.get("invariance", {})))
    if variants:
        pool = next(iter(first["invariance"].values()))["pool"] if first.get("invariance") else "?"
        lines += [
            "",
            f"Invariance: the same held-out tune written differently; mean cosine to the tune as written, "
            "and "
            f"how often the variant finds its original first among the {pool} held-out tunes:",
            "",
            f"| variant | tunes {head}",
            f"|---|---{rule}",
        ]
        for variant in variants:
            cells = [r.get("invariance", {}).get(variant) for r in runs]
            tunes = next(c["tunes"] for c in cells if c)
            lines.append(
                f"| {variant} | {tunes} | "
                + " | ".join(f"{c['mean_cosine']:.3f} / {c['rank1']:.1%}" if c else "-" for c in cells)
                + " |"
            )
    if c := first.get("classical"):
        title = f"Held-out classical works ({c['pieces']} scores of {c['works']} works, split by work):"
        lines += _section(
            title, runs, head, rule, lambda r: r.get("classical"), "{task} (n={n}, {labels} labels)"
        )
    for collection, held in first.get("held_out_collections", {}).items():
        title = (
            f"Held-out collection {collection} ({held['tunes']} tunes, left out of training whole"
            " where the model's training.json says so):"
        )
        pick = lambda r, c=collection: r.get("held_out_collections", {}).get(c)  # noqa: E731
        lines += _section(title, runs, head, rule, pick, "{task} (n={n})")
    return "\n".join(lines) + "\n"


def _row(label: str, runs: Sequence[dict], cell, last: str) -> str:
    return f"| {label} | " + " | ".join(cell(r) for r in runs) + f" | {last} |"


def _section(title: str, runs: Sequence[dict], head: str, rule: str, pick, task_label: str) -> list[str]:
    """A table of one held-out set (`pick` finds it in a run): its retrieval MRR and zero-shot rows."""
    first = pick(runs[0])

    def cell(run: dict, show) -> str:
        found = pick(run)
        return show(found) if found else "-"

    lines = [
        "",
        title,
        "",
        f"| metric {head} chance |",
        f"|---{rule}---|",
        _row(
            "text->music MRR",
            runs,
            lambda r: cell(r, lambda h: f"{h['retrieval']['mrr']:.4f}"),
            f"{first['retrieval']['random_mrr']:.4f}",
        ),
    ]
    for task, z in first["zero_shot"].items():
        label = "zero-shot " + task_label.format(task=task, n=z["n"], labels=z["labels"])
        show = lambda h, t=task: _zero_shot_cell(h["zero_shot"].get(t))  # noqa: E731
        lines.append(_row(label, runs, lambda r, s=show: cell(r, s), f"{z['chance']:.3f}"))
    return lines


def _zero_shot_cell(z: dict | None) -> str:
    if not z:
        return "-"
    return f"{z['accuracy']:.3f} ({z['accuracy'] / z['chance']:.1f}x), F1 {z['macro_f1']:.3f}"


def write_into_card(card: Path, table: str) -> None:
    """Replace the metrics block of a model card (between the metrics markers) with the table."""
    text = card.read_text()
    block = f"{CARD_START}\n{table}{CARD_END}"
    pattern = re.compile(re.escape(CARD_START) + ".*?" + re.escape(CARD_END), re.DOTALL)
    if not pattern.search(text):
        raise ValueError(f"{card} has no {CARD_START} ... {CARD_END} block to put the metrics in")
    card.write_text(pattern.sub(lambda _: block, text))
