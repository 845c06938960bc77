"""bench/bench_gpu.py: the prepared GPU benchmark runs end to end in its CPU smoke mode."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from helpers import real_tunes

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

from bench_gpu import RUNTIME_EXTRAS, main  # noqa: E402


def test_smoke_mode_measures_both_models_with_parity(tmp_path, capsys):
    tunes = tmp_path / "tunes.abc"
    tunes.write_text("\n\n".join(real_tunes()) + "\n")
    rows = main(
        ["run", "--smoke", "--tunes-file", str(tunes), "--tunes", "120", "--workers", "1", "--budget", "512"]
        + ["--window", "50", "--parity-tunes", "30", "--json", str(tmp_path / "rows.json")]
    )
    assert [r["model"] for r in rows] == ["clamp-s-512 shape (random), smoke size", "default (trained)"]
    for row in rows:
        assert row["provider"] == "cpu fp16" and row["tunes"] == 120
        assert row["min_cosine"] >= 0.999
        assert min(row["patching"], row["inference"], row["end_to_end"]) > 0
    assert json.loads((tmp_path / "rows.json").read_text()) == rows
    assert "| default (trained) | cpu fp16 | 120 " in capsys.readouterr().out


def test_prepare_writes_the_tunes_and_the_missing_runtime_packages(tmp_path):
    main(["prepare", "--out", str(tmp_path / "gpu")])
    assert (tmp_path / "gpu" / "tunes.abc").read_text().count("\nX:") > 10_000
    assert all((tmp_path / "gpu" / "site" / name / "__init__.py").is_file() for name in RUNTIME_EXTRAS)
