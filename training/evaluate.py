"""Held-out evaluation of a CLaMP checkpoint: text->music retrieval and zero-shot classification.

Only tunes of the "eval" side of the fixed split (training/corpus.py) are used. Retrieval: each eval
tune's canonical text against all eval tunes' music (spec §5.1). Zero-shot: each labelset of
runtime/search/labelsets.json, next to chance (1 / number of labels) and a majority-class baseline (the label
most frequent among *training* tunes, predicted for every eval tune).
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
from runtime.music.patching import prepare_music
from training.batches import music_embeddings, resolve_device, text_embeddings
from training.corpus import load_corpus
from training.describe import TuneFacts, describe
from training.metrics import accuracy, hit_rate, macro_f1, mean_reciprocal_rank, random_mrr, true_match_ranks
from training.texts import canonical_text

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

    def __init__(self, checkpoint: str | Path, device: str = "auto"):
        self.device = resolve_device(device)
        model, family, tokenizer_json = load_model(checkpoint)
        self.model = model.to(self.device).eval()
        text = family["text"]
        self.tokenizer = TextTokenizer.from_file(tokenizer_json, text["max_tokens"], text["pad_token_id"])
        self.max_patches: int = family["music"]["max_patches"]

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
) -> dict:
    """All metrics on the held-out split, as a dict: of a PyTorch checkpoint (dir or model name), or, when
    `model_dir` is given, of that exported ONNX model dir at `precision` (what the runtime serves)."""
    if model_dir is not None:
        embedder = Encoder.open(model_dir, provider="cpu", precision=precision)
        source = {"checkpoint": str(model_dir), "precision": embedder.precisions}
    else:
        embedder = TorchEmbedder(checkpoint, device)
        source = {"checkpoint": str(checkpoint), "precision": "pytorch fp32"}
    tunes = load_corpus(corpus_root, collections)
    eval_tunes = [t for t in tunes if t.split == "eval"]
    eval_facts = [describe(t) for t in eval_tunes]
    train_facts = [describe(t) for t in tunes if t.split == "train"]
    music = embedder.embed_patches([prepare_music(t.abc, embedder.max_patches) for t in eval_tunes])
    queries = embedder.embed_texts([canonical_text(f) for f in eval_facts])
    ranks = true_match_ranks(queries @ music.T)
    results: dict = {
        **source,
        "eval_tunes": len(eval_tunes),
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
        row = zero_shot_row(task, music, embedder.embed_texts(prompts), eval_facts, train_facts)
        if row:
            results["zero_shot"][name] = row
    return results


def markdown_table(results: dict) -> str:
    """The metrics as Markdown tables (retrieval, then zero-shot classification)."""
    r = results["retrieval"]
    lines = [
        f"Held-out split: {results['eval_tunes']} tunes. "
        "Text->music retrieval (each tune's canonical text against all eval tunes):",
        "",
        "| metric | model | random |",
        "|---|---|---|",
        f"| MRR | {r['mrr']:.4f} | {r['random_mrr']:.4f} ({r['mrr'] / r['random_mrr']:.1f}x) |",
        *[f"| Hit@{k} | {r[f'hit@{k}']:.3f} | {r[f'random_hit@{k}']:.3f} |" for k in (1, 10, 100)],
        "",
        "Zero-shot classification (prompt templates and labels: runtime/search/labelsets.json):",
        "",
        "| task | n | labels | accuracy | macro-F1 | chance | majority acc. | majority F1 | majority label |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, z in results["zero_shot"].items():
        lines.append(
            f"| {name} | {z['n']} | {z['labels']} "
            f"| {z['accuracy']:.3f} ({z['accuracy'] / z['chance']:.1f}x chance) "
            f"| {z['macro_f1']:.3f} | {z['chance']:.3f} | {z['majority_accuracy']:.3f} "
            f"| {z['majority_macro_f1']:.3f} | {z['majority_label']} |"
        )
    return "\n".join(lines) + "\n"


def write_into_card(card: Path, table: str) -> None:
    """Replace the metrics block of a model card (between the metrics markers) with the table."""
    text = card.read_text()
    block = f"{CARD_START}\n{table}{CARD_END}"
    pattern = re.compile(re.escape(CARD_START) + ".*?" + re.escape(CARD_END), re.DOTALL)
    if not pattern.search(text):
        raise ValueError(f"{card} has no {CARD_START} ... {CARD_END} block to put the metrics in")
    card.write_text(pattern.sub(lambda _: block, text))
