"""bench/queries.json, the query benchmark of issue 17: its size, categories and relevance rules."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

from bench_search_quality import clause_test, relevance, scores  # noqa: E402

CATEGORIES = {"in-vocabulary", "out-of-vocabulary", "names", "places", "meters", "negatives"}


def metadata(**fields: str) -> dict:
    columns = {c: fields.pop(c, None) for c in ("title", "composer", "origin", "rhythm", "key", "meter")}
    return {**columns, "meta": fields}


def test_at_least_60_reported_queries_in_every_category_and_a_separate_tuning_split():
    queries = json.loads((BENCH / "queries.json").read_text())["queries"]
    reported = [q for q in queries if q.get("split", "report") == "report"]
    assert len(reported) >= 60 and set(Counter(q["category"] for q in reported)) == CATEGORIES
    assert {q["category"] for q in queries if q.get("split") == "tune"} == CATEGORIES
    assert len({q["query"] for q in queries}) == len(queries)
    for query in queries:
        assert bool(query["relevant"]) == (query["category"] != "negatives")
        relevance(query)(metadata(title="x"))  # every clause parses and runs


def test_relevance_rules_read_the_metadata_as_a_librarian_would():
    assert clause_test("title|rhythm contains wiegen|lullaby")(metadata(rhythm="Kinder -, Wiegen - Lied"))
    assert not clause_test("title|rhythm contains wiegen|lullaby")(metadata(title="Wie schön"))
    in_g = clause_test("key key g major")
    assert in_g(metadata(key="G")) and in_g(metadata(key="Gmaj")) and not in_g(metadata(key="Gm"))
    assert clause_test("key mode dorian")(metadata(key="Ador"))
    assert clause_test("meter meter 4/4")(metadata(meter="C")) and not clause_test("meter meter 4/4")(
        metadata(meter="C|")
    )
    assert clause_test("origin contains oesterreich")(metadata(origin="Österreich"))
    assert clause_test("notes contains o'neill")(metadata(notes='"Collected by J. O\'Neill"'))


def test_p_at_5_is_capped_by_the_relevant_count_and_ndcg_and_mrr_are_binary():
    assert scores([False, True, False, False, False], total=1) == {
        "P@5": 1.0,
        "nDCG@10": 1 / 1.584962500721156,
        "MRR": 0.5,
    }
    assert scores([False] * 10, total=3) == {"P@5": 0.0, "nDCG@10": 0.0, "MRR": 0.0}
