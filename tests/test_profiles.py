"""Preprocessing chosen by the family config: CLaMP 1 bar patches or M3 patches (interleaved ABC, MTF)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from test_interleave import MORNING_AIR_STANDARD
from test_mtf import spec_midi

from runtime.cli import main
from runtime.model.families import family_names, load_family
from runtime.music.m3 import BOS_ID, EOS_ID
from runtime.music.profiles import PROFILES, profile_of

FOLK = "X:1\nT:Sleepy Reel\nM:4/4\nL:1/8\nR:reel\nK:D\n|:d2fd AdFA|d2fd e2ge:|\n"


def test_every_family_names_a_known_profile():
    names = {name: profile_of(load_family(name)).name for name in family_names()}
    assert names == {
        "clamp-s-512": "clamp1",
        "clamp-s-1024": "clamp1",
        "default": "clamp1-canonical",  # ours (v2): canonical spelling first
        "clamp2": "m3-clamp2",
        "clamp3-c2": "m3-clamp3",
        "clamp3-saas": "m3-clamp3",
    }
    with pytest.raises(ValueError, match="unknown preprocessing"):
        profile_of({"name": "x", "preprocessing": "m4"})


def test_m3_windows_and_weights_follow_the_spec():
    profile = PROFILES["m3-clamp3"]
    patches = np.arange(1100, dtype=np.int64)[:, None].repeat(64, axis=1)
    windows, weights = profile.windows(patches, 512)
    assert [int(w[0, 0]) for w in windows] == [0, 512, 588] and [len(w) for w in windows] == [512] * 3
    assert weights.tolist() == [512, 512, 76]  # the overlapping last window weighs only its new patches
    one, weight = PROFILES["clamp1"].windows(patches, 512)  # CLaMP 1 truncates to the head
    assert len(one) == 1 and len(one[0]) == 512 and weight.tolist() == [1.0]


def run_patch(tmp_path, name: str, data: bytes | str, *args: str) -> list[dict]:
    path = tmp_path / name
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    result = CliRunner().invoke(main, ["patch", str(path), *args, "--json"])
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.output.splitlines()]


def test_clamp_patch_m3_on_folk_abc_interleaves_and_frames(tmp_path):
    (record,) = run_patch(tmp_path, "reel.abc", FOLK, "--family", "clamp3-c2", "--ids")
    assert set(record) == {"tune_index", "title", "n_patches", "filtered_abc", "patches"}
    assert record["title"] == "Sleepy Reel" and record["filtered_abc"].endswith("[V:1]d2fd e2ge:|\n")
    ids = np.array(record["patches"])
    assert ids.shape == (record["n_patches"], 64) and ids.max() < 128
    assert (ids[0] == BOS_ID).all() and (ids[-1][1:] == EOS_ID).all()
    (clamp1,) = run_patch(tmp_path, "reel.abc", FOLK, "--family", "clamp-s-512", "--ids")
    assert set(clamp1) == set(record) and max(max(row) for row in clamp1["patches"]) <= 97


def test_clamp_patch_m3_reads_midi_natively_as_mtf(tmp_path):
    (record,) = run_patch(tmp_path, "spec.mid", spec_midi(), "--family", "clamp3-c2")
    assert record["filtered_abc"].startswith("ticks_per_beat 480\n") and record["n_patches"] == 12
    assert record["patches"][7] == "note_on 0 0 67 80\t0 0 71 80\t0 0 74 80\n"
    (clamp2,) = run_patch(tmp_path, "spec.mid", spec_midi(), "--family", "clamp2")
    assert clamp2["n_patches"] == 11  # CLaMP 2's converter drops the sysex


def test_clamp_patch_m3_on_a_score_shaped_abc_matches_the_spec(tmp_path):
    (record,) = run_patch(tmp_path, "air.abc", MORNING_AIR_STANDARD, "--family", "clamp3-saas")
    assert record["n_patches"] == 10
    (record,) = run_patch(tmp_path, "air.abc", MORNING_AIR_STANDARD, "--family", "clamp2")
    assert record["n_patches"] == 11


def test_clamp_patch_refuses_what_the_family_cannot_read_in_one_line(tmp_path):
    uneven = "L:1/8\nM:2/4\nK:C\nV:1\nV:2\nV:1\nC4 | D4 | E4 |]\nV:2\nC,4 | C,4 |]\n"
    path = tmp_path / "uneven.abc"
    path.write_text(uneven)
    result = CliRunner().invoke(main, ["patch", str(path), "--family", "clamp3-c2"])
    assert result.exit_code == 1 and "different numbers of bars" in result.output
    assert "Traceback" not in result.output


def test_clamp_patch_m3_on_musicxml_interleaves_xml2abc_s_d8_output(tmp_path):
    import music21

    score = (Path(music21.__file__).parent / "corpus" / "bach" / "bwv1.6.mxl").read_bytes()
    (record,) = run_patch(tmp_path, "chorale.mxl", score, "--family", "clamp3-c2")
    text = record["filtered_abc"]
    assert "%%MIDI" not in text and "L:1/8\n" in text  # xml2abc -d 8 -x (CLaMP 1's -m 2 writes %%MIDI)
    assert "L:1/8\n" not in record["patches"]  # CLaMP 3 drops it when patching
    assert all(f"[V:{v}]" in text.splitlines()[-1] for v in (1, 2, 3, 4))  # a bar of each voice a line
    (clamp2,) = run_patch(tmp_path, "chorale.mxl", score, "--family", "clamp2")
    assert "L:1/8\n" in clamp2["patches"]  # CLaMP 2 keeps it as a header patch
