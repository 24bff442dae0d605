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


def test_the_level_is_one_of_numpys_targets_and_its_family_is_known():
    level = numpy_simd_level()
    assert level == "baseline" or any(level in targets for targets in FAMILIES.values())
    assert simd_family() in (*FAMILIES, "baseline")


@pytest.mark.skipif(platform.machine() != "x86_64", reason="NumPy's x86 targets only")
def test_numpys_switch_lowers_the_level_the_process_reports():
    # Disabling every dispatch target leaves the baseline kernels, on any x86 machine.
    assert _level_with("X86_V3 X86_V4 AVX512_ICL AVX512_SPR") == "baseline"
    assert simd_family("baseline") == "baseline"


def test_families_group_numpys_targets():
    assert simd_family("AVX512_ICL") == simd_family("X86_V4") == "AVX-512"
    assert simd_family("X86_V3") == "AVX2"
