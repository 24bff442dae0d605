"""The framework loaders give the NumPy API's images and targets for a fold.

Every loader is compared with ``ClusterMassDataset.images(indices=fold_indices(k)[part])``
and the catalog, raw and normalised with the training part's statistics (the reference CNN's
own functions). The PyTorch tests need torch (``pip install -e '.[torch]'``).
"""
from __future__ import annotations

import json
import pickle
import sys

import numpy as np
import pytest

from benchmark.core.errors import ClusterMassError
from benchmark.dataset.frameworks import (
    PARTS,
    FoldSplit,
    fold_normalisation,
    iterate_batches,
    square_symmetry,
    tf_dataset,
    torch_dataset,
)
from benchmark.dataset.normalisation import (
    fit_normalisation,
    standardise_images,
    standardise_redshift,
    standardise_target,
)

FOLD = 3


def _expected(ds, k, part, normalise):
    """What the NumPy API gives for a part of fold k (normalised the reference's way)."""
    idx = ds.fold_indices(k)
    rows = idx[part]
    cat = ds.catalog.iloc[rows]
    counts = ds.images(indices=rows)
    y = cat["log10_m500c"].to_numpy()
    z = cat["redshift"].to_numpy()
    if not normalise:
        return (cat["image_id"].to_numpy(dtype=str), counts.astype(np.float32)[..., None],
                y.astype(np.float32), z.astype(np.float32)[:, None])
    train = ds.catalog.iloc[idx["train"]]
    stats = fit_normalisation(ds.images(indices=idx["train"]), train["log10_m500c"],
                              train["redshift"])
    return (cat["image_id"].to_numpy(dtype=str), standardise_images(counts, stats),
            standardise_target(y, stats), standardise_redshift({"redshift": z}, stats))


def _concat(batches, key):
    return np.concatenate([b[key] for b in batches])


@pytest.mark.parametrize("normalise", [True, False])
@pytest.mark.parametrize("part", PARTS)
def test_numpy_batches_equal_the_numpy_api(fake_dataset, part, normalise):
    ids, images, y, z = _expected(fake_dataset, FOLD, part, normalise)
    batches = list(iterate_batches(fake_dataset, FOLD, part, batch_size=7, normalise=normalise))
    assert [len(b["image"]) for b in batches[:-1]] == [7] * (len(batches) - 1)
    np.testing.assert_array_equal(_concat(batches, "image_id"), ids)
    np.testing.assert_array_equal(_concat(batches, "image"), images)
    np.testing.assert_array_equal(_concat(batches, "target"), y)
    np.testing.assert_array_equal(_concat(batches, "redshift"), z)
    assert _concat(batches, "image").dtype == np.float32


def test_parts_are_the_fold_of_the_splits(fake_dataset):
    parts = {p: FoldSplit(fake_dataset, FOLD, p, normalise=False) for p in PARTS}
    folds = {p: set(fake_dataset.catalog["fold"].iloc[s.indices]) for p, s in parts.items()}
    assert folds["test"] == {FOLD}
    assert folds["val"] == {fake_dataset.splits.validation_fold(FOLD)}
    assert folds["train"].isdisjoint(folds["test"] | folds["val"])
    assert sum(len(s) for s in parts.values()) == len(fake_dataset)


def test_statistics_come_from_the_training_part_only(fake_dataset):
    stats = fold_normalisation(fake_dataset, FOLD)
    train = FoldSplit(fake_dataset, FOLD, "train")
    test = FoldSplit(fake_dataset, FOLD, "test")
    assert train.normalisation == stats == test.normalisation
    assert stats["n_train"] == len(train) < len(fake_dataset)
    # Another fold trains on other images, so its statistics differ.
    assert fold_normalisation(fake_dataset, FOLD + 1)["image_log_mean"] != stats["image_log_mean"]
    # Passing the statistics reuses them as they are.
    again = FoldSplit(fake_dataset, FOLD, "val", normalisation=stats)
    assert again.normalisation is stats


def test_reference_cnn_saves_the_same_statistics(fake_dataset, tmp_path):
    # One implementation: the trained reference fold's normalisation.json holds the loaders'
    # image and target statistics.
    from benchmark.training import fold_dir, run_entry

    run_entry("reference", fake_dataset, tmp_path, folds=[FOLD], progress=False,
              config={"max_epochs": 1, "filters": [2, 2, 2], "dense_units": [4, 4, 4]})
    saved = json.loads((fold_dir(tmp_path, FOLD) / "normalisation.json").read_text())
    ours = fold_normalisation(fake_dataset, FOLD)
    for key in ("transform", "image_log_mean", "image_log_std", "y_mean", "y_std", "n_train",
                "fitted_on"):
        assert saved[key] == ours[key], key


def test_shuffled_batches_are_a_permutation_and_repeat_with_the_seed(fake_dataset):
    split = FoldSplit(fake_dataset, FOLD, "train")
    kwargs = dict(batch_size=16, shuffle=True, split=split)
    first = list(iterate_batches(None, FOLD, "train", seed=5, **kwargs))
    again = list(iterate_batches(None, FOLD, "train", seed=5, **kwargs))
    ids = _concat(first, "image_id")
    assert not np.array_equal(ids, split.image_ids)
    assert sorted(ids) == sorted(split.image_ids)
    np.testing.assert_array_equal(ids, _concat(again, "image_id"))
    order = {i: n for n, i in enumerate(split.image_ids)}
    rows = np.array([order[i] for i in ids])
    np.testing.assert_array_equal(_concat(first, "image"), split.images(rows))
    np.testing.assert_array_equal(_concat(first, "target"), split.targets(rows))
    dropped = list(iterate_batches(None, FOLD, "train", drop_last=True, **kwargs))
    assert {len(b["target"]) for b in dropped} == {16}
    assert len(dropped) == len(split) // 16


def _symmetries(image):
    out = []
    for flipped in (image, image[:, ::-1]):
        out += [np.rot90(flipped, turns) for turns in range(4)]
    return out


def test_augmentation_applies_symmetries_of_the_square(fake_dataset):
    split = FoldSplit(fake_dataset, FOLD, "train", normalise=False)
    batch = next(iterate_batches(None, FOLD, "train", batch_size=64, augment=True, seed=2,
                                 split=split))
    plain = split.images(np.arange(64))
    changed = 0
    for got, image in zip(batch["image"], plain):
        assert any(np.array_equal(got, s) for s in _symmetries(image))
        changed += not np.array_equal(got, image)
    assert changed > 32  # 7 of 8 maps move an off-centre, elliptical image
    np.testing.assert_array_equal(batch["target"], split.targets(np.arange(64)))
    # Whole pixels move: the counts are the same multiset.
    assert np.array_equal(np.sort(batch["image"].ravel()), np.sort(plain.ravel()))
    rng = np.random.default_rng(0)
    assert square_symmetry(plain[:3], rng).shape == plain[:3].shape


@pytest.mark.parametrize("part", ["train", "test"])
def test_tf_dataset_equals_the_numpy_api(fake_dataset, part):
    ids, images, y, z = _expected(fake_dataset, FOLD, part, normalise=True)
    ds = tf_dataset(fake_dataset, FOLD, part, batch_size=16)
    xs, ys = zip(*[(x.numpy(), t.numpy()) for x, t in ds])
    np.testing.assert_array_equal(np.concatenate(xs), images)
    np.testing.assert_array_equal(np.concatenate(ys), y)
    assert xs[0].shape == (16, 128, 128, 1)
    (x, zb), t = next(iter(tf_dataset(fake_dataset, FOLD, part, batch_size=4, with_redshift=True)))
    np.testing.assert_array_equal(zb.numpy(), z[:4])
    shuffled = np.concatenate([t.numpy() for _, t in tf_dataset(fake_dataset, FOLD, part,
                                                                shuffle=True, seed=1)])
    np.testing.assert_array_equal(np.sort(shuffled), np.sort(y))


@pytest.mark.parametrize("normalise", [True, False])
def test_torch_dataset_equals_the_numpy_api(fake_dataset, normalise):
    torch = pytest.importorskip(
        "torch", reason="PyTorch is not installed (optional extra: pip install -e '.[torch]')")
    ids, images, y, z = _expected(fake_dataset, FOLD, "val", normalise)
    data = torch_dataset(fake_dataset, FOLD, "val", normalise=normalise)
    assert isinstance(data, torch.utils.data.Dataset) and len(data) == len(ids)
    loader = torch.utils.data.DataLoader(data, batch_size=5, shuffle=False)
    xs, ys = zip(*[(x.numpy(), t.numpy()) for x, t in loader])
    x = np.concatenate(xs)
    assert x.shape == (len(ids), 1, 128, 128) and x.dtype == np.float32  # channels first
    np.testing.assert_array_equal(x[:, 0], images[..., 0])
    np.testing.assert_array_equal(np.concatenate(ys), y)
    np.testing.assert_array_equal(data.image_ids, ids)
    (image, redshift), target = torch_dataset(None, FOLD, "val", with_redshift=True,
                                              split=data.split)[2]
    np.testing.assert_array_equal(redshift.numpy(), z[2])
    # DataLoader workers receive the dataset pickled.
    clone = pickle.loads(pickle.dumps(data))
    np.testing.assert_array_equal(clone[1][0].numpy(), data[1][0].numpy())


def test_torch_augmentation_is_a_symmetry(fake_dataset):
    torch = pytest.importorskip(
        "torch", reason="PyTorch is not installed (optional extra: pip install -e '.[torch]')")
    split = FoldSplit(fake_dataset, FOLD, "test", normalise=False)
    data = torch_dataset(None, FOLD, "test", augment=True, split=split)
    torch.manual_seed(0)
    changed = 0
    for i in range(len(data)):
        image = split.images([i])[0, ..., 0]
        got = data[i][0].numpy()[0]
        assert any(np.array_equal(got, s) for s in _symmetries(image))
        changed += not np.array_equal(got, image)
    assert changed > 0


def test_torch_missing_gives_one_clear_error(fake_dataset, monkeypatch):
    # Simulate a machine without torch: the import of the torch module fails.
    monkeypatch.setitem(sys.modules, "torch", None)
    monkeypatch.delitem(sys.modules, "benchmark.dataset.torch_dataset", raising=False)
    with pytest.raises(ClusterMassError, match=r"PyTorch is not installed.*\.\[torch\]"):
        torch_dataset(fake_dataset, FOLD, "test")


def test_bad_arguments_are_refused(fake_dataset, fake_dataset_root):
    with pytest.raises(ClusterMassError, match="unknown fold part 'validation'"):
        FoldSplit(fake_dataset, FOLD, "validation")
    with pytest.raises(ClusterMassError, match="batch_size is 0"):
        next(iterate_batches(fake_dataset, FOLD, "test", batch_size=0, normalise=False))
    with pytest.raises(ClusterMassError, match="expected a ClusterMassDataset"):
        FoldSplit(42, FOLD, "test")
    with pytest.raises(ClusterMassError):
        FoldSplit(fake_dataset, 99, "test")
    # A folder path works as well as an opened dataset.
    by_path = FoldSplit(fake_dataset_root, FOLD, "test", normalise=False)
    np.testing.assert_array_equal(by_path.counts, fake_dataset.images(
        indices=fake_dataset.fold_indices(FOLD)["test"]))
