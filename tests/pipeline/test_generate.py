"""Generation: byte-identical whatever the workers, resumable, atomic, checked."""
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import psutil
import pytest

from benchmark.dataset.loader import ClusterMassDataset
from benchmark.core.errors import ClusterMassError
from benchmark.dataset.checker import check_dataset
from pipeline.config import load_preset
from benchmark.core.simd import numpy_simd_level
from benchmark.dataset.release import rendering_simd_level
from pipeline.generate import cluster_path, generate, simd_levels_note

SMALL = {"population": {"n_clusters": 10, "n_epochs": 1}}  # the size of conftest's serial_dataset
SMALL_ARGS = ["--set", "population.n_clusters=10", "--set", "population.n_epochs=1"]


def digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*")) if p.is_file() and not p.name.startswith(".")
    }


def test_dataset_passes_its_checker_and_loads(serial_dataset):
    assert "10 files pass" in check_dataset(serial_dataset)
    ds = ClusterMassDataset(serial_dataset)
    images = ds.images()
    assert images.shape == (30, 128, 128) and images.dtype == np.int32
    catalog = ds.catalog
    # Every image is a real observation: counts above the background, brighter for heavier clusters.
    assert (catalog["counts"] > catalog["background_counts"]).all()
    rho = catalog[["log10_m500c", "counts"]].corr(method="spearman").iloc[0, 1]
    assert rho > 0.5
    # The cluster sits at the image centre.
    stacked = images.sum(axis=0).astype(float)
    yy, xx = np.indices(stacked.shape)
    centre = ((stacked * xx).sum() / stacked.sum(), (stacked * yy).sum() / stacked.sum())
    assert np.allclose(centre, (63.5, 63.5), atol=4.0)


def test_same_seed_gives_identical_bytes_and_other_seed_does_not(serial_dataset, tmp_path):
    generate(load_preset("ci", **SMALL), tmp_path / "again", workers=1, progress=False)
    assert digests(tmp_path / "again") == digests(serial_dataset)
    other = load_preset("ci", population=SMALL["population"], dataset={"master_seed": 7})
    generate(other, tmp_path / "other", workers=1, progress=False)
    differ = digests(tmp_path / "other")
    assert differ["images/cluster_0000.h5"] != digests(serial_dataset)["images/cluster_0000.h5"]


def test_interrupted_run_resumes_to_the_same_bytes(serial_dataset, tmp_path):
    out = tmp_path / "resumed"
    config = load_preset("ci", **SMALL)
    generate(config, out, workers=1, progress=False)
    # Simulate a kill: two cluster files gone, one half-written temporary file left behind.
    cluster_path(out, 3).unlink()
    cluster_path(out, 7).unlink()
    (out / "images" / ".cluster_0003.h5.999.tmp").write_bytes(b"half")
    (out / "catalog.csv").unlink()
    before = os.path.getmtime(cluster_path(out, 0))
    log = tmp_path / "logs" / "timings.jsonl"
    generate(config, out, workers=1, progress=False, timings_log=log)
    assert os.path.getmtime(cluster_path(out, 0)) == before  # finished clusters are not redone
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert sorted(line["cluster_id"] for line in lines) == [3, 7]  # only the redone clusters
    assert all(line["n_views"] == 3 and line["timings"]["gas"] > 0 for line in lines)
    got = digests(out)
    assert got == digests(serial_dataset)


def test_a_file_from_another_configuration_is_remade(tmp_path):
    out = tmp_path / "ds"
    generate(load_preset("ci", **SMALL), out, workers=1, progress=False)
    other = load_preset("ci", population=SMALL["population"], observation={"exposure_ks": 50.0})
    generate(other, out, workers=1, progress=False)
    with h5py.File(cluster_path(out, 0)) as h5:
        assert h5.attrs["exposure_ks"] == 50.0


def test_bad_configuration_fails_before_any_work(tmp_path):
    with pytest.raises(ClusterMassError, match="exposure"):
        generate(load_preset("ci", observation={"exposure_ks": -5.0}), tmp_path / "bad", progress=False)
    assert not (tmp_path / "bad" / "images").exists() or not any((tmp_path / "bad" / "images").iterdir())


def _worker_processes(parent: psutil.Process) -> list[psutil.Process]:
    """Dask worker processes started (by the nannies, with multiprocessing spawn) below ``parent``."""
    workers = []
    for child in parent.children(recursive=True):
        try:
            if "spawn_main" in " ".join(child.cmdline()):
                workers.append(child)
        except psutil.Error:
            pass
    return workers


def test_dask_two_workers_with_a_killed_worker_give_identical_bytes(serial_dataset, tmp_path):
    out = tmp_path / "dask"
    env = dict(os.environ)
    command = [sys.executable, "-m", "clustermass.cli", "generate", "--preset", "ci", "--out", str(out),
               "--workers", "2", *SMALL_ARGS]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    parent = psutil.Process(proc.pid)
    killed = False
    deadline = time.time() + 300
    while proc.poll() is None and time.time() < deadline and not killed:
        workers = _worker_processes(parent)
        if len(workers) >= 2 and (out / "images").exists() and any((out / "images").glob("cluster_*.h5")):
            workers[0].send_signal(signal.SIGKILL)
            killed = True
        time.sleep(0.2)
    output, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, output
    assert killed, "no worker was killed: the run finished before the test could act"
    assert digests(out) == digests(serial_dataset)
    assert len(pd.read_csv(out / "catalog.csv")) == 30


def test_a_view_with_a_nan_is_refused_and_leaves_no_file(tmp_path):
    from pipeline.generate import write_cluster_file

    path = tmp_path / "cluster_0003.h5"
    with pytest.raises(ClusterMassError, match="views of cluster_0003.h5 .*lx_cex_erg_s"):
        write_cluster_file(path, np.zeros((1, 8, 8), np.int32),
                           [{"image_id": "c0003_e0_x", "lx_cex_erg_s": float("nan")}], {}, h5py)
    assert list(tmp_path.iterdir()) == []


def test_the_card_records_the_numpy_kernels_that_rendered_it(serial_dataset):
    card = json.loads((serial_dataset / "dataset_card.json").read_text())
    assert card["numpy_simd"] == {"process": numpy_simd_level(), "workers": [numpy_simd_level()]}
    assert rendering_simd_level(card) == numpy_simd_level()  # what a release records


def test_the_card_cites_what_its_population_version_adds(serial_dataset):
    from pipeline.population import REFERENCES_V2, REFERENCES_V4

    card = json.loads((serial_dataset / "dataset_card.json").read_text())
    assert card["version"] == "0.4.0" and card["config"]["population"]["icm_sigma_hold_frac"] == 2.0
    assert set(REFERENCES_V2 + REFERENCES_V4) <= set(card["references"])
    assert not set(REFERENCES_V4) & set(REFERENCES_V2)  # version 3's cards keep their list


def test_workers_of_two_cpu_families_are_named_and_recorded_as_such():
    assert simd_levels_note(["X86_V3"]) is None
    note = simd_levels_note(["AVX512_SPR", "X86_V3"])
    assert "AVX512_SPR" in note and "X86_V3" in note and "NPY_DISABLE_CPU_FEATURES" in note
    mixed = {"numpy_simd": {"workers": ["AVX512_SPR", "X86_V3"]}}
    assert rendering_simd_level(mixed) == "AVX512_SPR+X86_V3"
    assert rendering_simd_level({}) == numpy_simd_level()  # a card from before the record
