"""The lock files agree with each other: the GPU locks change the accelerator, nothing else."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PIN = re.compile(r"^([A-Za-z0-9_.-]+)==([^\s;#]+)$")


def pins(name: str) -> dict[str, str]:
    out = {}
    for line in (ROOT / name).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = PIN.match(line)
        assert match, f"{name}: {line!r} is not an exact pin"
        key = re.sub(r"[-_.]+", "-", match.group(1)).lower()
        assert key not in out, f"{name} pins {key} twice"
        out[key] = match.group(2)
    return out


def test_gpu_tensorflow_is_the_cpu_lock_s_version():
    assert pins("requirements-gpu.lock")["tensorflow"] == pins("requirements.lock")["tensorflow-cpu"]


@pytest.mark.parametrize("extra", ["requirements-gpu.lock", "requirements-torch-gpu.lock",
                                   "requirements-torch.lock"])
def test_extra_locks_never_contradict_the_main_lock(extra):
    main = pins("requirements.lock")
    # torch needs a newer setuptools than the main lock's (stated in both torch locks)
    clashes = {k: (v, main[k]) for k, v in pins(extra).items()
               if k in main and main[k] != v and k != "setuptools"}
    assert not clashes, f"{extra} pins other versions than requirements.lock: {clashes}"


def test_torch_gpu_lock_is_the_cpu_extra_s_torch():
    cpu = pins("requirements-torch.lock")["torch"].split("+")[0]
    assert pins("requirements-torch-gpu.lock")["torch"] == cpu


def test_gpu_and_torch_gpu_locks_share_no_package_at_other_versions():
    tf, torch = pins("requirements-gpu.lock"), pins("requirements-torch-gpu.lock")
    assert not {k for k in tf.keys() & torch.keys() if tf[k] != torch[k]}


def test_make_accepts_gpu_and_refuses_an_unknown_accelerator():
    if (ROOT / ".venv-gpu" / ".installed").exists():
        pytest.skip("a GPU virtualenv exists here: make has nothing to do for it")
    gpu = subprocess.run(["make", "-n", "venv", "ACCEL=gpu"], cwd=ROOT, capture_output=True, text=True)
    assert ".venv-gpu" in gpu.stdout and "-r requirements-gpu.lock" in gpu.stdout
    assert "grep -v '^tensorflow_cpu=='" in gpu.stdout
    bad = subprocess.run(["make", "-n", "venv", "ACCEL=tpu"], cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode != 0 and "ACCEL=tpu is unknown" in bad.stderr
