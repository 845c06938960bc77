"""Texts for a tune, synthesised from its facts: natural phrasings and CLaMP's text dropout (spec §3.2)."""

from __future__ import annotations

import random
from collections.abc import Sequence

from training.describe import TuneFacts

FIELD_SEPARATOR = ", "
DROPOUT_KEEP = 0.5  # each deduplicated field survives text dropout with this probability (spec §3.2)
SENTENCE_SHARE = 0.5  # share of training texts that are sentences rather than dropped-out field lists


def with_article(words: str) -> str:
    """The words after "a" or "an", as their first letter asks."""
    return f"{'an' if words[:1].lower() in 'aeiou' else 'a'} {words}"


def meter_words(meter: str) -> str:
    return "free meter" if meter == "free" else f"{meter} time"


def fields(facts: TuneFacts) -> list[str]:
    """Every short fact about the tune as a text fragment: the candidates of text dropout."""
    out = [facts.noun, *facts.genres]
    if facts.region:
        out.append(facts.region)
    if facts.key:
        out += [facts.key.name, f"{facts.key.mode} key"]
    if facts.meter:
        out.append(meter_words(facts.meter))
    descriptive = (facts.tempo, facts.range_words, facts.density_words, facts.length_words)
    out += [words for words in descriptive if words]
    if facts.title:
        out.append(facts.title)
    if facts.composer:
        out.append(f"by {facts.composer}")
    out.append(f"from {facts.collection}")
    return out


def text_dropout(candidates: Sequence[str], rng: random.Random, keep: float = DROPOUT_KEEP) -> str:
    """CLaMP's text dropout: dedupe, keep each field with p = keep (all if none survive), shuffle, join."""
    unique = list(dict.fromkeys(c.strip() for c in candidates if c.strip()))
    kept = [c for c in unique if rng.random() < keep] or unique
    rng.shuffle(kept)
    return FIELD_SEPARATOR.join(kept)


def _noun_phrase(facts: TuneFacts, adjectives: Sequence[str | None]) -> str:
    words = " ".join(w for w in (*adjectives, facts.noun) if w)
    return with_article(words)


def canonical_text(facts: TuneFacts) -> str:
    """The one fixed description of a tune: the query for it in retrieval evaluation."""
    parts = [_noun_phrase(facts, (facts.tempo, facts.region))]
    if facts.key:
        parts[0] += f" in {facts.key.name}"
    if facts.meter:
        parts.append(f"in {meter_words(facts.meter)}")
    if facts.title:
        parts.append(f'titled "{facts.title}"')
    if facts.composer:
        parts.append(f"by {facts.composer}")
    text = FIELD_SEPARATOR.join(parts)
    return text[0].upper() + text[1:]


def sentence(facts: TuneFacts, rng: random.Random) -> str:
    """One natural description of the tune with a random subset of its facts, in a random phrasing."""
    pick = rng.random
    head = _noun_phrase(
        facts,
        (
            facts.tempo if pick() < 0.6 else None,
            facts.length_words if pick() < 0.3 else None,
            facts.region if pick() < 0.7 else None,
        ),
    )
    tails = []
    if facts.key and pick() < 0.7:
        key = facts.key
        tails.append(f"in a {key.mode} key" if pick() < 0.3 else f"in {key.name}")
    if facts.meter and pick() < 0.5:
        tails.append(f"in {meter_words(facts.meter)}")
    tails += [f"with {words}" for words in (facts.range_words, facts.density_words) if words and pick() < 0.4]
    if facts.composer and pick() < 0.5:
        tails.append(f"by {facts.composer}")
    if pick() < 0.2:
        tails.append(f"from {facts.collection}")
    rng.shuffle(tails)
    text = " ".join([head, *tails[:1]]) + "".join(FIELD_SEPARATOR + tail for tail in tails[1:])
    title = facts.title
    if title and pick() < 0.5:
        text = rng.choice([f'{text}, titled "{title}"', f"{title}: {text}", f"{title}, {text}"])
    return rng.choice(["", "", "this is ", "here is "]) + text


def training_text(facts: TuneFacts, rng: random.Random) -> str:
    """One training text: a natural sentence or the dropped-out field list, half and half."""
    return sentence(facts, rng) if rng.random() < SENTENCE_SHARE else text_dropout(fields(facts), rng)


def text_variants(facts: TuneFacts, count: int, seed: int, tune_id: str) -> list[str]:
    """`count` training texts for one tune, reproducible from (seed, tune id) alone."""
    rng = random.Random(f"{seed}:{tune_id}")
    return [training_text(facts, rng) for _ in range(count)]
