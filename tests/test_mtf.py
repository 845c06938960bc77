"""MIDI -> MTF against the spec's worked example (clamp2-3-spec §10.3, §15.3), on a MIDI built with mido."""

from __future__ import annotations

import io

import mido
import pytest
from test_m3_patching import MTF

from runtime.music.m3 import CLAMP3, m3_patchilize
from runtime.music.mtf import MTF_DROPPED, MTFError, midi_to_mtf


def spec_midi() -> bytes:
    """§15.3: type 1, 480 ticks/beat; a tempo track and a piano track with a chord, a lyric and a note."""
    midi = mido.MidiFile(type=1, ticks_per_beat=480)
    tempo = mido.MidiTrack(
        [
            mido.MetaMessage("track_name", name="Tempo", time=0),
            mido.MetaMessage("set_tempo", tempo=500000, time=0),
            mido.MetaMessage("time_signature", numerator=4, denominator=4, time=0),
            mido.MetaMessage("key_signature", key="G", time=0),
        ]
    )
    piano = mido.MidiTrack(
        [
            mido.MetaMessage("track_name", name="Piano", time=0),
            mido.Message("sysex", data=[65, 16, 66, 18, 64, 0, 127, 0, 65], time=0),
            mido.Message("program_change", program=0, time=0),
            *[mido.Message("note_on", note=n, velocity=80, time=0) for n in (67, 71, 74)],
            mido.Message("note_off", note=67, velocity=0, time=480),
            mido.Message("note_off", note=71, velocity=0, time=0),
            mido.Message("note_off", note=74, velocity=0, time=0),
            mido.MetaMessage("lyrics", text="la", time=0),
            mido.Message("note_on", note=69, velocity=72, time=0),
            mido.Message("note_on", note=69, velocity=0, time=240),
            mido.MetaMessage("end_of_track", time=240),
        ]
    )
    midi.tracks += [tempo, piano]
    buffer = io.BytesIO()
    midi.save(file=buffer)
    return buffer.getvalue()


def test_clamp3_mtf_of_the_spec_example(tmp_path):
    assert midi_to_mtf(spec_midi(), MTF_DROPPED["clamp3"]) == MTF
    path = tmp_path / "spec.mid"
    path.write_bytes(spec_midi())
    assert midi_to_mtf(path) == MTF
    assert len(m3_patchilize(midi_to_mtf(path), CLAMP3)) == 12


def test_clamp2_drops_sysex_too():
    mtf = midi_to_mtf(spec_midi(), MTF_DROPPED["clamp2"])
    assert "sysex" not in mtf and mtf == MTF.replace("sysex 0 [65, 16, 66, 18, 64, 0, 127, 0, 65]\n", "")
    assert len(m3_patchilize(mtf, CLAMP3)) == 11


def test_non_ascii_meta_text_is_unicode_escaped():
    midi = mido.MidiFile(ticks_per_beat=96)
    midi.tracks.append(
        mido.MidiTrack(
            [mido.MetaMessage("key_signature", key="C", time=0), mido.MetaMessage("text", text="é", time=0)]
        )
    )
    buffer = io.BytesIO()
    midi.save(file=buffer)
    assert "text" not in midi_to_mtf(buffer.getvalue())
    assert "\\xe9" in midi_to_mtf(buffer.getvalue(), frozenset())


@pytest.mark.parametrize("data", [b"", b"not a midi file at all", b"MThd\x00\x00\x00\x06\x00\x01"])
def test_unreadable_midi_is_a_named_error(data):
    with pytest.raises(MTFError):
        midi_to_mtf(data)
