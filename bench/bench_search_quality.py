"""Search quality of text queries: P@5, nDCG@10 and MRR of vector, keyword and hybrid search, per category.

Relevance is judged from each item's metadata by the rules in bench/queries.json (not hand-picked ids).
P@5 is capped by the number of relevant items (a query with 2 relevant items scores 1 with both in the
top 5); nDCG@10 is binary. Negatives (nothing relevant) count as right when the search says its best
match is no better than chance, or finds nothing; positives flagged so are reported as false alarms.
The figures are over the queries not marked `split: tune`; `--tune` reports the fusion and threshold
alternatives over the tuning queries only, to choose them without looking at the reported ones.

    python bench/bench_search_quality.py --index build/index
    python bench/bench_search_quality.py --index build/index --tune
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import runtime.search.calibration as calibration  # noqa: E402
import runtime.search.hybrid as hybrid  # noqa: E402
from runtime.search.index import Index  # noqa: E402
from runtime.search.items import FILTER_COLUMNS  # noqa: E402
from runtime.search.keyword import key_words, meter_words, normalize  # noqa: E402

QUERIES_FILE = Path(__file__).with_name("queries.json")
DEPTH = 10


def field_values(metadata: dict[str, Any], field: str) -> str:
    value = metadata.get(field) if field in FILTER_COLUMNS else metadata["meta"].get(field)
    return "" if value is None else str(value)


def clause_test(clause: str) -> Callable[[dict[str, Any]], bool]:
    """One `FIELDS OP VALUES` relevance clause as a test of an item's metadata."""
    fields, op, values = clause.split(" ", 2)
    targets = [normalize(v) for v in values.split("|")]
    read = {"key": key_words, "mode": key_words, "meter": meter_words}.get(op, lambda v: v)

    def holds(metadata: dict[str, Any]) -> bool:
        for field in fields.split("|"):
            text = normalize(
                read(field_values(metadata, field) or None)
                if op in ("key", "mode", "meter")
                else field_values(metadata, field)
            )
            for target in targets:
                if (
                    (op == "contains" and target in text)
                    or (op == "equals" and text.strip() == target)
                    or (op == "key" and (text == target or text.startswith(target + " ")))
                    or (op == "mode" and text.endswith(" " + target))
                    or (op == "meter" and text.split()[:1] == [target])
                ):
                    return True
        return False

    return holds


def relevance(query: dict[str, Any]) -> Callable[[dict[str, Any]], bool]:
    tests = [clause_test(c) for c in query["relevant"]]
    return lambda metadata: all(test(metadata) for test in tests)


def scores(relevant: list[bool], total: int) -> dict[str, float]:
    """P@5 (capped by the relevant count), binary nDCG@10 and MRR of one ranked list."""
    dcg = sum(1 / math.log2(i + 2) for i, r in enumerate(relevant[:DEPTH]) if r)
    ideal = sum(1 / math.log2(i + 2) for i in range(min(DEPTH, total)))
    first = next((i for i, r in enumerate(relevant[:DEPTH]) if r), None)
    return {
        "P@5": sum(relevant[:5]) / min(5, total),
        "nDCG@10": dcg / ideal,
        "MRR": 0.0 if first is None else 1 / (first + 1),
    }


def run(index: Index, queries: list[dict], modes: dict[str, dict], totals: dict[str, int]) -> dict:
    """Per mode: per query, the scores (positives) or whether it said "chance" (all)."""
    results: dict[str, list[dict]] = {name: [] for name in modes}
    vectors = dict(
        zip(
            [q["query"] for q in queries],
            index.encoder.embed_texts([q["query"] for q in queries]),
            strict=True,
        )
    )
    for name, options in modes.items():
        for query in queries:
            vector = None if options["mode"] == "keyword" else vectors[query["query"]]
            hits = index.search_text(query["query"], DEPTH, vector=vector, **options)
            chance = calibration.no_better_than_chance(hits)
            row = {"query": query, "said_chance": chance is True or not hits}
            if query["relevant"]:
                judge = relevance(query)
                row |= scores([judge(h.metadata) for h in hits], totals[query["query"]])
            results[name].append(row)
    return results


def table(results: dict, categories: list[str]) -> str:
    """Markdown: one row per category (and overall over the positives), P@5 / nDCG@10 / MRR per mode."""
    modes = list(results)
    head = "| category | queries | " + " | ".join(f"{m} P@5 | {m} nDCG@10 | {m} MRR" for m in modes) + " |"
    lines = [head, "|" + "---|" * (2 + 3 * len(modes))]
    positive = [c for c in categories if c != "negatives"]
    for category in [*positive, "overall"]:
        cells = []
        for mode in modes:
            rows = [
                r for r in results[mode] if "P@5" in r and category in ("overall", r["query"]["category"])
            ]
            cells += [f"{sum(r[m] for r in rows) / len(rows):.2f}" for m in ("P@5", "nDCG@10", "MRR")]
        name = f"**{category}**" if category == "overall" else category
        lines.append(f"| {name} | {len(rows)} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append('| says "no match better than chance" | ' + " | ".join(modes) + " |")
    lines.append("|" + "---|" * (1 + len(modes)))
    kinds = (
        ("negatives (right)", lambda r: r["query"]["category"] == "negatives"),
        ("positives with P@5 >= 0.6 (false alarm)", lambda r: r.get("P@5", 0) >= 0.6),
        ("positives with P@5 = 0 (right)", lambda r: "P@5" in r and r["P@5"] == 0),
    )
    for label, kind in kinds:
        rates = []
        for m in modes:
            rows = [r for r in results[m] if kind(r)]
            rates.append(
                f"{sum(r['said_chance'] for r in rows) / len(rows):.2f} of {len(rows)}" if rows else "-"
            )
        lines.append(f"| {label} | " + " | ".join(rates) + " |")
    return "\n".join(lines)


def worse_than_vector(results: dict, mode: str = "hybrid") -> list[str]:
    """Queries vector search answers well (P@5 >= 0.8) that `mode` answers worse."""
    return [
        f"{v['query']['query']!r}: vector {v['P@5']:.2f}, {mode} {h['P@5']:.2f}"
        for v, h in zip(results["vector"], results[mode], strict=True)
        if "P@5" in v and v["P@5"] >= 0.8 and h["P@5"] < v["P@5"]
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", default="build/index")
    parser.add_argument("--model", help="model dir [default: the index's]")
    parser.add_argument("--queries", default=str(QUERIES_FILE))
    parser.add_argument(
        "--tune", action="store_true", help="compare fusions and thresholds on the tuning split"
    )
    parser.add_argument("--details", action="store_true", help="also print P@5 per query and mode")
    args = parser.parse_args()
    index = Index.open(args.index, args.model)
    queries = json.loads(Path(args.queries).read_text())["queries"]
    split = "tune" if args.tune else "report"
    queries = [q for q in queries if q.get("split", "report") == split]
    categories = list(dict.fromkeys(q["category"] for q in queries))
    metadata = index.items.items(list(range(len(index))))
    totals = {}
    for q in queries:
        if q["relevant"]:
            judge = relevance(q)
            totals[q["query"]] = sum(judge(m) for _, m, _ in metadata.values())
            assert totals[q["query"]], f"no item of the index is relevant to {q['query']!r}: check its rule"
    modes = {"vector": {"mode": "vector"}, "keyword": {"mode": "keyword"}, "hybrid": {"mode": "hybrid"}}
    if args.tune:
        defaults = hybrid.RRF_K, hybrid.RRF_KEYWORD_WEIGHT
        for rrf_k in (10, 60, 100):
            for weight in (1.0, 1.5, 2.0):
                hybrid.RRF_K, hybrid.RRF_KEYWORD_WEIGHT = rrf_k, weight
                results = run(index, queries, {"hybrid": modes["hybrid"]}, totals)
                print(f"\n### RRF, k = {rrf_k}, keyword weight {weight}\n\n{table(results, categories)}")
        hybrid.RRF_K, hybrid.RRF_KEYWORD_WEIGHT = defaults
        for weight in (0.3, 0.5, 0.7):
            hybrid.MIX_KEYWORD_WEIGHT = weight
            mix = {"hybrid-mix": {"mode": "hybrid", "fusion": "mix"}}
            results = run(index, queries, mix, totals)
            print(f"\n### score mix, keyword weight {weight}\n\n{table(results, categories)}")
        for z in (1.0, 1.5, 2.0, 2.5, 3.0):
            calibration.CHANCE_Z = z
            print(
                f"\n### chance threshold z = {z}\n\n{table(run(index, queries, modes, totals), categories)}"
            )
        return
    results = run(index, queries, modes, totals)
    print(f"{len(queries)} queries ({split} split), {len(index)} items, top {DEPTH}\n")
    print(table(results, categories))
    worse = worse_than_vector(results)
    print("\nQueries vector answers well (P@5 >= 0.8) that hybrid answers worse:", "; ".join(worse) or "none")
    if args.details:
        print("\n| query | category | relevant | " + " | ".join(f"{m} P@5" for m in modes) + " |")
        print("|---|---|---|" + "---|" * len(modes))
        for i, q in enumerate(queries):
            cells = [
                f"{results[m][i].get('P@5', float('nan')):.2f}"
                if q["relevant"]
                else str(results[m][i]["said_chance"])
                for m in modes
            ]
            print(
                f"| {q['query']} | {q['category']} | {totals.get(q['query'], 0)} | "
                + " | ".join(cells)
                + " |"
            )


if __name__ == "__main__":
    main()
