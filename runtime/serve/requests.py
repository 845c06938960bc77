"""The JSON bodies of the query routes, with the limits every numeric and text field is checked against."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from runtime.search.keys import DEFAULT_TEMPLATE
from runtime.search.limits import ABC_CHARS, NAME_CHARS, TEXT_CHARS, TUNE, K
from runtime.serve.batching import Search
from runtime.serve.errors import QueryText, limited

MAX_INPUTS = 256  # texts or tunes of one /v1/embeddings request, labels of one /classify request

ResultCount = limited(K)
TuneIndex = limited(TUNE)


class QueryOptions(BaseModel):
    k: ResultCount = Field(10, description="Number of results.")
    filter: str | None = Field(
        None, description="Metadata filter, e.g. (meter = 6/8 or meter = 9/8) and key in (Em, Am)."
    )
    exact: bool = Field(False, description="Score every item instead of walking the HNSW graph.")
    with_abc: bool = Field(False, description="Include each result's ABC.")

    def search_options(self) -> dict[str, Any]:
        return {"filter": self.filter, "exact": self.exact, "with_abc": self.with_abc}

    def search(self, exclude_abc: str | None = None, text: str | None = None, mode: str = "vector") -> Search:
        return Search(self.k, self.search_options(), exclude_abc, text, mode)


class SearchRequest(QueryOptions):
    text: QueryText = Field(max_length=TEXT_CHARS, description="What the music is like.")
    mode: Literal["hybrid", "vector", "keyword"] | None = Field(
        None,
        description="vector: the model; keyword: bm25 over titles, composers, places, genres; hybrid: both "
        "[default: hybrid where the index has its keyword table, else vector].",
    )


class SimilarRequest(QueryOptions):
    abc: str | None = Field(None, max_length=ABC_CHARS, description="ABC text of the query tune(s).")
    tune: TuneIndex = Field(0, description="Which tune of a multi-tune ABC text.")
    id: str | None = Field(None, max_length=NAME_CHARS, description="Or: the id of an indexed tune.")
    exclude_self: bool = Field(True, description="Leave out the query tune itself (its id, or its ABC).")


class ClassifyRequest(BaseModel):
    abc: str | None = Field(None, min_length=1, max_length=ABC_CHARS, description="ABC of the tune.")
    id: str | None = Field(None, max_length=NAME_CHARS, description="Or: the id of an indexed tune.")
    tune: TuneIndex = Field(0, description="Which tune of a multi-tune ABC text.")
    labels: list[Annotated[str, Field(max_length=NAME_CHARS)]] | None = Field(
        None, max_length=MAX_INPUTS, description="Candidate labels."
    )
    label_set: str | None = Field(
        None, max_length=NAME_CHARS, description="Or: a built-in label set, e.g. tune-type."
    )
    template: str | None = Field(
        None,
        max_length=NAME_CHARS,
        description=f'Prompt with {{}} for the label [default: "{DEFAULT_TEMPLATE}"].',
    )


class EmbeddingsRequest(BaseModel):
    input: str | list[str] = Field(description="One text/ABC or a list of them.")
    modality: Literal["text", "abc"] = "text"
    model: str | None = Field(None, description="Ignored: the served model answers.")
