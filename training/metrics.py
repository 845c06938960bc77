"""Evaluation metrics as CLaMP 2/3 compute them (spec §5.1): ranks, MRR, Hit@k, accuracy, macro-F1."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def true_match_ranks(similarity: np.ndarray) -> np.ndarray:
    """Rank of query i's true match (column i) among all references; ties count in its favour."""
    similarity = np.asarray(similarity)
    true = np.diagonal(similarity)[:, None]
    return 1 + (similarity > true).sum(axis=1)


def mean_reciprocal_rank(ranks: np.ndarray) -> float:
    return float(np.mean(1.0 / np.asarray(ranks)))


def hit_rate(ranks: np.ndarray, k: int) -> float:
    """Share of queries whose true match is in the top k."""
    return float(np.mean(np.asarray(ranks) <= k))


def random_mrr(n: int) -> float:
    """Expected MRR when the true match's rank is uniform over 1..n: what a random model scores."""
    return float(np.mean(1.0 / np.arange(1, n + 1)))


def accuracy(y_true: Sequence[str], y_pred: Sequence[str]) -> float:
    return float(np.mean([t == p for t, p in zip(y_true, y_pred, strict=True)]))


def macro_f1(y_true: Sequence[str], y_pred: Sequence[str]) -> float:
    """Unweighted mean of per-class F1 over the classes in y_true (predicting another class is an error)."""
    pairs = list(zip(y_true, y_pred, strict=True))
    scores = []
    for label in sorted(set(y_true)):
        tp = sum(t == label and p == label for t, p in pairs)
        fp = sum(t != label and p == label for t, p in pairs)
        fn = sum(t == label and p != label for t, p in pairs)
        scores.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores))
