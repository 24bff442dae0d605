"""The reference recipe's input pipeline: the symmetries applied by one gather of pixels."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from benchmark.core.errors import ClusterMassError
from benchmark.models import cnn
from benchmark.training import FoldData

TINY = {"max_epochs": 3, "patience": 5, "lr_patience": 5, "batch_size": 8,
        "dense_units": [8, 4, 4], "filters": [4, 4, 4]}


def _fold(n, seed):
    rng = np.random.default_rng(seed)
    aux = pd.DataFrame({"image_id": [f"t{seed}_{i}" for i in range(n)], "redshift": 0.2,
                        "pixel_arcsec": 7.92})
    return FoldData(rng.poisson(3.0, (n, 16, 16)).astype(np.float32), aux, rng.uniform(14, 15, n))


def _augment_by_rotations(images, seed):
    """The recipe's augmentation as it was written before the gather: flip by tf.reverse,
    quarter turns by tf.image.rot90 over the whole batch, chosen per image by tf.where."""
    n = tf.shape(images)[0]
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=2)
    flip = tf.random.stateless_uniform([n], seeds[0], 0, 2, dtype=tf.int32)
    k = tf.random.stateless_uniform([n], seeds[1], 0, 4, dtype=tf.int32)
    x = tf.where(tf.reshape(flip == 1, [-1, 1, 1, 1]), tf.reverse(images, axis=[2]), images)
    rotations = [x]
    for _ in range(3):
        rotations.append(tf.image.rot90(rotations[-1]))
    out = rotations[3]
    for i in (2, 1, 0):
        out = tf.where(tf.reshape(k == i, [-1, 1, 1, 1]), rotations[i], out)
    return out.numpy()


@pytest.mark.parametrize("seed", [(0, 0), (3, 7), (12345, 99)])
def test_gather_gives_the_symmetries_the_rotations_gave_for_a_seed(seed):
    # Same draws, same pixels: a seed trains the same weights as before the gather.
    images = np.random.default_rng(1).normal(size=(64, 8, 8, 2)).astype(np.float32)
    expect = _augment_by_rotations(images, np.array(seed))
    np.testing.assert_array_equal(cnn._augment_batch(images, np.array(seed)).numpy(), expect)


def test_pipeline_reads_each_batch_under_the_symmetries_of_its_seed_pair():
    # The pipeline fuses the gather of the batch with the symmetries' gather: it must give
    # what _augment_batch gives on the same images with the same seed pair.
    x = np.random.default_rng(2).normal(size=(40, 6, 6, 1)).astype(np.float32)
    y = np.arange(40, dtype=np.float32)
    ds = cnn._make_dataset(x, y, None, 8, shuffle=False, augment=True, seed=4)
    seeds = tf.data.Dataset.random(seed=4, rerandomize_each_iteration=True).batch(2).take(5)
    for b, ((images, targets), pair) in enumerate(zip(ds, seeds)):
        batch = x[8 * b: 8 * (b + 1)]
        np.testing.assert_array_equal(targets.numpy()[:, 0], y[8 * b: 8 * (b + 1)])
        np.testing.assert_array_equal(images.numpy(), cnn._augment_batch(batch, pair).numpy())
    assert b == 4
    plain = np.concatenate([im.numpy() for im, _ in
                            cnn._make_dataset(x, y, None, 8, shuffle=False, augment=False)])
    np.testing.assert_array_equal(plain, x)


def test_augmentation_refuses_images_that_are_not_square():
    x = np.zeros((4, 6, 8, 1), np.float32)
    with pytest.raises(ClusterMassError, match="square"):
        cnn._make_dataset(x, np.zeros(4), None, 2, augment=True)


def test_training_summary_times_every_epoch():
    model = cnn.make_model(TINY).fit(_fold(16, 30), _fold(8, 31))
    summary = model.training_summary
    for key in ("epoch_seconds", "epoch_cpu_seconds"):
        assert len(summary[key]) == summary["epochs_run"] == 3
        assert all(s > 0 for s in summary[key])
