"""NumPy's kernel level, read from the process (a real NumPy in a fresh interpreter)."""
import os
import platform
import subprocess
import sys

import pytest

from benchmark.core.simd import FAMILIES, numpy_simd_level, simd_family

PROBE = "from benchmark.core.simd import numpy_simd_level as f; print(f())"


def _level_with(disabled: str) -> str:
    env = {**os.environ, "NPY_DISABLE_CPU_FEATURES": disabled}
    return subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True,
                          check=True).stdout.strip()


@pytest.mark.skipif(platform.machine() != "x86_64", reason="NumPy's x86 targets only")
def test_numpys_switch_sets_the_level_and_the_family_the_process_reports():
    # Disabling every dispatch target leaves the baseline kernels, on any x86 machine.
    assert _level_with("X86_V3 X86_V4 AVX512_ICL AVX512_SPR") == "baseline"
    assert _level_with("X86_V4 AVX512_ICL AVX512_SPR") in ("X86_V3", "baseline")
    assert simd_family(_level_with("X86_V4 AVX512_ICL AVX512_SPR")) != "AVX-512"


def test_the_level_here_is_one_numpy_found():
    import numpy as np

    found = np.show_config(mode="dicts")["SIMD Extensions"].get("found", [])
    assert numpy_simd_level() == (found[-1] if found else "baseline")


def test_other_machines_are_families_of_their_own():
    assert simd_family("AVX512_ICL", "x86_64") == simd_family("X86_V4", "x86_64") == "AVX-512"
    assert simd_family("baseline", "x86_64") == "x86 baseline"
    assert simd_family("baseline", "aarch64") == "aarch64:baseline"
    assert simd_family("ASIMDDP", "aarch64") not in FAMILIES
