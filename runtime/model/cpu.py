"""Whether this CPU runs ONNX Runtime's int8 kernels fast: VNNI or AMX dot products, read from cpuinfo."""

from __future__ import annotations

from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")
# x86 int8 dot-product instructions. With them the clamp-s-512 music tower ran int8 at 3.0x fp32; on
# AVX2 alone (u8s8 through 16-bit pairs) at 1.6-2x (BENCHMARKS.md). Other ISAs are not measured.
FAST_INT8_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


def fast_int8_flags(cpuinfo: Path | None = None) -> list[str]:
    """The fast-int8 flags the CPU reports; empty where cpuinfo is unreadable (not Linux) or has none."""
    try:
        text = (cpuinfo or CPUINFO).read_text(errors="replace")
    except OSError:
        return []
    flags = {flag for line in text.splitlines() if line.startswith("flags") for flag in line.split()}
    return [flag for flag in FAST_INT8_FLAGS if flag in flags]
