"""Texts for a classical score, from its facts: the phrasings and text dropout of training/texts.py, so that
folk tunes and classical scores can be mixed in one training run."""

from __future__ import annotations

import random

from training.classical.facts import PieceFacts
from training.texts import FIELD_SEPARATOR, SENTENCE_SHARE, meter_words, text_dropout, with_article


def _composer(facts: PieceFacts, rng: random.Random | None = None) -> str | None:
    """The composer as texts name them: full or short name at random (short for the canonical text)."""
    short = facts.short_composer
    if short is None:
        return None
    return facts.composer if rng is not None and rng.random() < 0.5 else short


def _part(facts: PieceFacts) -> str | None:
    """Where the score sits in its work: "Kyrie of Missa Brevis", "second movement of String Quartet..."."""
    if facts.movement and facts.title and facts.movement != facts.title:
        return f"{facts.movement} of {facts.title}"
    return facts.movement or facts.title


def _ensemble(facts: PieceFacts) -> str | None:
    """The forces, unless the genre already names them (a string quartet is for string quartet)."""
    return facts.ensemble if facts.ensemble and facts.ensemble != facts.genre else None


def fields(facts: PieceFacts, rng: random.Random | None = None) -> list[str]:
    """Every short fact about the score as a text fragment: the candidates of text dropout."""
    composer = _composer(facts, rng)
    out = [facts.genre, *([facts.form] if facts.form else [])]
    if composer:
        out.append(f"by {composer}")
    if facts.era:
        out.append(f"{facts.era} music")
    if ensemble := _ensemble(facts):
        out.append(f"for {ensemble}")
    if facts.key:
        out += [facts.key.name, f"{facts.key.mode} mode" if facts.key.mode not in ("major", "minor") else
                f"{facts.key.mode} key"]  # fmt: skip
    if facts.meter:
        out.append(meter_words(facts.meter))
    out += [word for word in (facts.tempo_mark, facts.tempo) if word]
    out += [part for part in (facts.title, facts.movement) if part]
    if facts.collection:
        out.append(f"from {facts.collection}")
    return out


def canonical_text(facts: PieceFacts) -> str:
    """The one fixed description of a score: the query for it in retrieval evaluation."""
    head = " ".join(word for word in (facts.era, facts.genre) if word)
    parts = [with_article(head)]
    if composer := _composer(facts):
        parts[0] += f" by {composer}"
    if ensemble := _ensemble(facts):
        parts.append(f"for {ensemble}")
    if facts.key:
        parts.append(f"in {facts.key.name}")
    if facts.meter:
        parts.append(f"in {meter_words(facts.meter)}")
    if part := _part(facts):
        parts.append(f'"{part}"')
    text = FIELD_SEPARATOR.join(parts)
    return text[0].upper() + text[1:]


def sentence(facts: PieceFacts, rng: random.Random) -> str:
    """One natural description of the score with a random subset of its facts, in a random phrasing."""
    pick = rng.random
    adjectives = [word for word, p in ((facts.tempo, 0.3), (facts.era, 0.6)) if word and pick() < p]
    head = with_article(" ".join([*adjectives, facts.genre]))
    if facts.form and pick() < 0.6:
        head = f"{with_article(facts.form)} from {head}"
    tails = []
    if (composer := _composer(facts, rng)) and pick() < 0.8:
        tails.append(f"by {composer}")
    if (ensemble := _ensemble(facts)) and pick() < 0.6:
        tails.append(f"for {ensemble}")
    if facts.key and pick() < 0.6:
        tails.append(f"in a {facts.key.mode} key" if pick() < 0.3 else f"in {facts.key.name}")
    if facts.meter and pick() < 0.4:
        tails.append(f"in {meter_words(facts.meter)}")
    if facts.tempo_mark and pick() < 0.5:
        tails.append(f"marked {facts.tempo_mark}")
    if facts.collection and pick() < 0.4:
        tails.append(f"from {facts.collection}")
    rng.shuffle(tails)
    text = " ".join([head, *tails[:1]]) + "".join(FIELD_SEPARATOR + tail for tail in tails[1:])
    part = _part(facts)
    if part and pick() < 0.6:
        text = rng.choice([f'{text}: "{part}"', f"{part}, {text}", f"{text}, {part}"])
    return rng.choice(["", "", "this is ", "here is "]) + text


def training_text(facts: PieceFacts, rng: random.Random) -> str:
    """One training text: a natural sentence or the dropped-out field list, as for folk tunes."""
    return sentence(facts, rng) if rng.random() < SENTENCE_SHARE else text_dropout(fields(facts, rng), rng)


def text_variants(facts: PieceFacts, count: int, seed: int, piece_id: str) -> list[str]:
    """`count` training texts for one score, reproducible from (seed, piece id) alone."""
    rng = random.Random(f"{seed}:{piece_id}")
    return [training_text(facts, rng) for _ in range(count)]
