"""The runtime stays tiny: importing it (and its CLI) never pulls torch, transformers or pyarrow."""

import subprocess
import sys

HEAVY = ("torch", "transformers", "pyarrow")


def test_runtime_imports_no_heavy_dependencies():
    code = (
        "import sys, runtime, runtime.music.abc, runtime.music.patching, runtime.model.text, runtime.cli\n"
        "import runtime.cli.patch, runtime.music.m3, runtime.music.mtf, runtime.music.profiles\n"
        "import importlib.util\n"
        "for m in ['runtime.model.encoder', 'runtime.search.index', 'runtime.cli.query',\n"
        "          'runtime.serve.server', 'runtime.music.formats', 'runtime.search.keys',\n"
        "          'runtime.serve.web', 'runtime.music.interleave']:\n"
        "    if importlib.util.find_spec(m): importlib.import_module(m)\n"
        "import importlib\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
