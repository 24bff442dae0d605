"""Speed of the reference CNN (pytest-benchmark; `make bench` only).

Figures to compare with the README's measured times (2 cores, no other load): training ~575 img/s steady,
~350 img/s on average with the epoch-start stalls; inference 1,000-1,500 img/s.
The images/s figure is in each benchmark's ``extra_info`` (build/bench.json), with the
CPU seconds the process got per wall second and the 1-minute load average: on a shared
machine, images per CPU-second is the figure that compares across load conditions.
"""
from __future__ import annotations

import os
import time

import numpy as np
import pandas as pd
import pytest

from benchmark.models import cnn
from benchmark.training import FoldData

pytestmark = pytest.mark.bench

N_TRAIN = 512
N_PREDICT = 1024


def _data(n, seed):
    rng = np.random.default_rng(seed)
    images = rng.poisson(2.0, (n, 128, 128)).astype(np.float32)
    aux = pd.DataFrame({"image_id": [f"b{i}" for i in range(n)], "redshift": 0.2,
                        "pixel_arcsec": 7.92})
    return FoldData(images, aux, rng.uniform(14, 15, n))


def _timed(benchmark, fn, n_images):
    """Run ``fn`` under pytest-benchmark and record images/s, CPU share and load."""
    cpu = []

    def run():
        start = time.process_time()
        fn()
        cpu.append(time.process_time() - start)

    load = os.getloadavg()[0]
    benchmark.pedantic(run, rounds=3, iterations=1)
    wall = benchmark.stats.stats.mean
    benchmark.extra_info.update({
        "images_per_round": n_images,
        "images_per_s": n_images / wall,
        "images_per_cpu_s": n_images / float(np.mean(cpu)),
        "cpu_per_wall": float(np.mean(cpu)) / wall,
        "load_average_1min_before": load,
        "cpu_count": os.cpu_count(),
    })


@pytest.fixture(scope="module")
def trained():
    train, val = _data(N_TRAIN, 0), _data(64, 1)
    model = cnn.make_model({"max_epochs": 1}).fit(train, val)  # traces the graphs once
    return model, train, val


@pytest.mark.parametrize("deterministic", [True, False], ids=["deterministic", "tf-defaults"])
def test_bench_reference_cnn_training(benchmark, trained, deterministic):
    """One epoch of the reference recipe (augmentation, tf.data, batch 32) on 512 images,
    with TensorFlow op determinism (the recipe's default) and without: its speed cost."""
    model, train, _ = trained
    x, _, y = model._prepare(train)
    keras_model = model.keras_model
    with cnn.op_determinism(deterministic):  # the pipeline is built as fit() builds it
        ds = cnn._make_dataset(x, y, None, 32, shuffle=True, augment=True)
        keras_model.fit(ds, epochs=1, verbose=0)  # warm-up: first epoch pays the tracing
        _timed(benchmark, lambda: keras_model.fit(ds, epochs=1, verbose=0), N_TRAIN)
    benchmark.extra_info["deterministic"] = deterministic


def test_bench_reference_cnn_inference(benchmark, trained):
    """Prediction (log10 M500c, preprocessing included) of 1,024 images."""
    model, _, _ = trained
    data = _data(N_PREDICT, 2)
    model.predict(data)  # warm-up
    _timed(benchmark, lambda: model.predict(data), N_PREDICT)
