"""The harness's own costs, each side by side with what it wraps (pytest-benchmark; `make bench`).

- The sandbox: one fold of a cheap code submission in the harness's process (the model
  protocol, in-process) and the same fold in its bubblewrap child; the difference is the
  sandbox's overhead per fold (inputs written, child started, outputs read), recorded per
  image and scaled to a `fast` fold (7,896 images written) against a `fast` reference-CNN
  fold (10 min 28 s, README's measured times; target: under 5%).
- Training throughput: steady epochs of the reference recipe through the harness
  (augmentation, tf.data, validation pass, callbacks) against a plain Keras ``fit`` of the
  same network on the same in-memory float32 arrays (target: the harness at 85% or more of
  plain fit), in wall time and in CPU time per epoch.

Both pairs are timed alternately in one run: this machine's speed drifts by 15-30% between
runs, and single epochs by 10x when other work loads the 2 cores (then read the CPU-time
ratio, which such load hardly moves). Figures go to ``extra_info`` in build/bench.json;
nothing here asserts a time.
"""
from __future__ import annotations

import os
import time

import numpy as np
import pytest

from benchmark.dataset.loader import ClusterMassDataset
from benchmark.models import cnn
from benchmark.sandbox import probe
from benchmark.training import FoldData, run_code_entry, run_entry
from fakes import write_fake_dataset
from submissions import POWER_LAW

pytestmark = pytest.mark.bench

FAST_FOLD_IMAGES = 7896  # every image of `fast` is written into a sandboxed fold's inputs
FAST_REFERENCE_FOLD_S = 628.0  # reference CNN, fold 0 of `fast` (README, measured times)
ROUNDS = 3
EPOCHS_PER_FIT = 5  # per fit, the first left out: 4 timed epochs a side per round


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = write_fake_dataset(tmp_path_factory.mktemp("bench") / "data", n_clusters=60,
                              n_epochs=8, seed=2)
    return ClusterMassDataset(root)


@pytest.fixture(scope="module")
def submission(tmp_path_factory):
    path = tmp_path_factory.mktemp("submission") / "power_law.py"
    path.write_text(POWER_LAW)
    return path


def _alternate(first, second, rounds: int = ROUNDS) -> tuple[list[float], list[float]]:
    """Wall seconds of ``first`` and ``second``, run alternately ``rounds`` times each."""
    a, b = [], []
    for _ in range(rounds):
        for fn, out in ((first, a), (second, b)):
            start = time.perf_counter()
            fn()
            out.append(time.perf_counter() - start)
    return a, b


def test_bench_sandbox_overhead_per_fold(benchmark, dataset, submission, tmp_path):
    reason = probe()
    if reason:
        pytest.skip(f"the sandbox cannot start here: {reason}")
    runs = iter(range(10**6))

    def in_process():
        run_entry(submission, dataset, tmp_path / f"in{next(runs)}", folds=[0], progress=False)

    def sandboxed():
        run_code_entry(submission, dataset, tmp_path / f"sb{next(runs)}", seeds=(0,), folds=[0],
                       progress=False)

    plain, boxed = _alternate(in_process, sandboxed)
    benchmark.pedantic(sandboxed, rounds=1, iterations=1)
    overhead = float(np.median(boxed) - np.median(plain))
    per_image = overhead / len(dataset)
    benchmark.extra_info.update({
        "images_written_per_fold": len(dataset),
        "in_process_fold_s": plain, "sandboxed_fold_s": boxed,
        "overhead_per_fold_s": overhead,
        "overhead_per_image_ms": 1e3 * per_image,
        "fast_fold_overhead_s": per_image * FAST_FOLD_IMAGES,
        "fast_fold_overhead_fraction_of_reference_fold": (per_image * FAST_FOLD_IMAGES
                                                          / FAST_REFERENCE_FOLD_S),
        "load_average_1min": os.getloadavg()[0],
    })


def _images(n: int, seed: int) -> FoldData:
    import pandas as pd

    rng = np.random.default_rng(seed)
    images = rng.poisson(2.0, (n, 128, 128)).astype(np.float32)
    aux = pd.DataFrame({"image_id": [f"b{i}" for i in range(n)], "redshift": 0.2,
                        "pixel_arcsec": 7.92})
    return FoldData(images, aux, rng.uniform(14, 15, n))


def test_bench_harness_training_against_plain_keras_fit(benchmark):
    """Steady per-epoch throughput, each epoch timed from its start to its end on both sides
    (the recipe's ``epoch_seconds``/``epoch_cpu_seconds``, the same clock as a callback of the
    plain fit). The first epoch of every fit is left out: it traces the graphs, and the harness
    builds a new network for each fold; its validation pass, callbacks and augmentation are in.
    Three ratios: of the median wall epochs (the target's), of the fastest epochs (the least
    disturbed by other load) and of the CPU seconds per epoch (images per CPU-second)."""
    train, val = _images(512, 0), _images(64, 1)
    config = {"patience": 10, "lr_patience": 10, "max_epochs": EPOCHS_PER_FIT}
    import keras

    model = cnn.make_model(config).fit(train, val)
    x, _, y = model._prepare(train)
    plain_net = cnn.build_keras_model()  # the same network, compiled as the recipe does
    plain_net.compile(optimizer=keras.optimizers.Adam(learning_rate=1e-3), loss="mse")
    plain, harness = {"wall": [], "cpu": []}, {"wall": [], "cpu": []}

    def plain_fit():
        clock = cnn._epoch_clock()
        plain_net.fit(x, y, batch_size=32, epochs=EPOCHS_PER_FIT, verbose=0, shuffle=True,
                      callbacks=[clock])
        plain["wall"].extend(clock.seconds[1:])
        plain["cpu"].extend(clock.cpu_seconds[1:])

    def harness_fit():
        summary = cnn.make_model(config).fit(train, val).training_summary
        harness["wall"].extend(summary["epoch_seconds"][1:])
        harness["cpu"].extend(summary["epoch_cpu_seconds"][1:])

    benchmark.pedantic(plain_fit, rounds=1, iterations=1)  # warm-up: traces the plain network
    for side in plain.values():
        side.clear()
    _alternate(plain_fit, harness_fit)
    n = len(train.y)
    plain_rate, harness_rate = n / np.median(plain["wall"]), n / np.median(harness["wall"])
    benchmark.extra_info.update({
        "train_images": n, "validation_images": len(val.y),
        "plain_fit_images_per_s": plain_rate, "harness_images_per_s": harness_rate,
        "harness_over_plain": harness_rate / plain_rate,
        "harness_over_plain_fastest_epochs": min(plain["wall"]) / min(harness["wall"]),
        "harness_over_plain_cpu": np.median(plain["cpu"]) / np.median(harness["cpu"]),
        "plain_epoch_s": plain["wall"], "harness_epoch_s": harness["wall"],
        "plain_epoch_cpu_s": plain["cpu"], "harness_epoch_cpu_s": harness["cpu"],
        "load_average_1min": os.getloadavg()[0],
    })
