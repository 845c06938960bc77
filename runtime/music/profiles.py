"""Preprocessing profiles: how a family turns a score into the patch ids its music encoder reads.

A family's config names its profile (`"preprocessing": "m3-clamp3"`; CLaMP 1 families predate the key
and are `clamp1`); callers ask the profile and never branch on a family name.

- `clamp1`: CLaMP 1 bar patches (CLaMP's ABC filter, ids 0..97, one EOS patch, head truncation).
- `clamp1-canonical`: the same patches of the tune in one spelling (runtime/music/canonical.py): our default
  model, which must embed a MusicXML or MIDI upload like the ABC it came from.
- `m3-clamp2`, `m3-clamp3`: M3 patches of interleaved ABC, or of MTF for MIDI read natively (ids 0..127,
  per-patch BOS/EOS, BOS and EOS frame patches, never truncated: long pieces are windowed and averaged).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from runtime.music import m3, patching
from runtime.music.canonical import canonical_abc
from runtime.music.interleave import interleave_abc
from runtime.music.mtf import MTF_DROPPED, midi_to_mtf


@dataclass(frozen=True)
class Profile:
    """One preprocessing profile: ABC (and, where read natively, MIDI) -> what the encoder sees."""

    name: str
    n_classes: int
    xml2abc: str  # runtime.music.formats.XML2ABC_FLAVOURS: CLaMP 1's `-m 2 -c 6 -x` or CLaMP 2/3's `-d 8 -x`
    model_text: Callable[[str], str]  # ABC as given -> the text that is patched (filtered / interleaved)
    patchilize: Callable[[str, int | None], np.ndarray]  # that text -> ids [P, 64]
    decode: Callable[[np.ndarray], list[str]]
    frame_label: Callable[[np.ndarray], str | None]  # a frame patch's name, shown instead of its empty text
    midi_text: Callable[[bytes], str] | None = None  # MIDI bytes -> patched text; None: MIDI goes via ABC
    windowed: bool = False  # long pieces: segment-and-average (True) or head truncation (False)
    frame_patches: int = 1  # patches every piece has (EOS; M3: BOS and EOS): no more means no music

    def has_music(self, patches: np.ndarray) -> bool:
        """Whether any header line or bar survived, beyond the frame patches."""
        return len(patches) > self.frame_patches

    def abc_patches(self, abc: str, max_patches: int | None) -> np.ndarray:
        """ABC -> patch ids; a windowed profile ignores `max_patches` here (see `windows`)."""
        return self.patchilize(self.model_text(abc), max_patches)

    def midi_patches(self, midi: bytes) -> np.ndarray:
        """MIDI read natively -> patch ids (only for profiles with `midi_text`)."""
        if self.midi_text is None:
            raise ValueError(f"preprocessing {self.name} reads MIDI through ABC, not natively")
        return self.patchilize(self.midi_text(midi), None)

    def windows(self, patches: np.ndarray, max_patches: int) -> tuple[list[np.ndarray], np.ndarray]:
        """The encoder's windows over a piece and their weights in the average (one window when it fits)."""
        if not self.windowed:
            return [patches[:max_patches]], np.ones(1)
        return patching.segments(patches, max_patches)


def _m3_text(text: str) -> str:
    """MTF (MIDI read natively) as it is; ABC interleaved."""
    return text if m3.is_mtf(m3.split_lines(text[:64])) else interleave_abc(text)


def _m3(name: str, profile: m3.M3Profile, mtf_dropped: frozenset[str]) -> Profile:
    return Profile(
        name=name,
        n_classes=m3.N_CLASSES,
        xml2abc="m3",
        model_text=_m3_text,
        patchilize=lambda text, _max: m3.m3_patchilize(text, profile),
        decode=m3.decode_m3_patches,
        frame_label=m3.frame_label,
        midi_text=lambda data: midi_to_mtf(data, mtf_dropped),
        windowed=True,
        frame_patches=2,
    )


PROFILES: dict[str, Profile] = {
    "clamp1": Profile(
        name="clamp1",
        n_classes=patching.N_CLASSES,
        xml2abc="clamp1",
        model_text=patching.clean_abc,
        patchilize=patching.patchilize,
        decode=patching.decode_patches,
        frame_label=patching.frame_label,
    ),
    "clamp1-canonical": Profile(
        name="clamp1-canonical",
        n_classes=patching.N_CLASSES,
        xml2abc="clamp1",
        model_text=lambda abc: canonical_abc(patching.clean_abc(abc)),
        patchilize=patching.patchilize,
        decode=patching.decode_patches,
        frame_label=patching.frame_label,
    ),
    "m3-clamp2": _m3("m3-clamp2", m3.CLAMP2, MTF_DROPPED["clamp2"]),
    "m3-clamp3": _m3("m3-clamp3", m3.CLAMP3, MTF_DROPPED["clamp3"]),
}


def profile_of(family: dict) -> Profile:
    """The preprocessing profile a family config names (CLaMP 1 families, which name none: clamp1)."""
    name = family.get("preprocessing", "clamp1")
    if name not in PROFILES:
        known = ", ".join(PROFILES)
        raise ValueError(f"family {family.get('name')!r} names an unknown preprocessing {name!r} ({known})")
    return PROFILES[name]
