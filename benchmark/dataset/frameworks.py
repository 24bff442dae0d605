"""Fold-aware loaders for PyTorch, TensorFlow (``tf.data``) and framework-free NumPy batches.

They sit beside the NumPy API (:class:`benchmark.dataset.loader.ClusterMassDataset`) and
give the same images and targets for a fold: ``train``, ``val`` and ``test`` of fold ``k``
are the rows :meth:`ClusterMassDataset.fold_indices` gives (test = fold k, val = the
validation fold of k, train = every other fold), in catalog order unless shuffled. With
``normalise=True`` (the default) images, targets and redshifts are standardised with the
statistics of the *training* part of fold ``k`` through :mod:`benchmark.dataset.normalisation`,
the very functions the reference CNN trains with; ``normalise=False`` gives the raw photon
counts and log10 M500c [Msun].

::

    from benchmark.dataset import ClusterMassDataset
    from benchmark.dataset.frameworks import FoldSplit, iterate_batches, tf_dataset, torch_dataset

    ds = ClusterMassDataset("data/quick")
    # NumPy (feed JAX with it): dicts of arrays
    for batch in iterate_batches(ds, k=0, part="train", batch_size=32, shuffle=True, seed=1):
        batch["image"], batch["target"]          # (32, 128, 128, 1), (32,) float32
    # TensorFlow / Keras: (image, target) batches
    train = tf_dataset(ds, 0, "train", batch_size=32, shuffle=True)
    # PyTorch: a map-style torch.utils.data.Dataset of ((1, 128, 128), ()) tensors
    loader = torch.utils.data.DataLoader(torch_dataset(ds, 0, "train"), batch_size=32)

Predictions in standardised units go back to log10 M500c [Msun] with
:func:`benchmark.dataset.normalisation.target_from_standardised` and the split's
``normalisation``. A part is read into memory once (int32 counts, 64 KiB an image); the
training images of the fold are read once more to fit the statistics unless ``normalisation``
is passed (e.g. ``val = FoldSplit(ds, k, "val", normalisation=train.normalisation)``).
PyTorch is optional (``pip install -e '.[torch]'``) and imported only by :func:`torch_dataset`.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from benchmark.core.errors import ClusterMassError
from benchmark.dataset.loader import as_dataset
from benchmark.dataset.normalisation import (
    fit_normalisation,
    standardise_images,
    standardise_redshift,
    standardise_target,
)

__all__ = ["PARTS", "FoldSplit", "fold_normalisation", "iterate_batches", "square_symmetry",
           "tf_dataset", "torch_dataset"]

#: The parts of a fold, as :meth:`ClusterMassDataset.fold_indices` names them.
PARTS = ("train", "val", "test")




def _check_part(part: str) -> str:
    if part not in PARTS:
        raise ClusterMassError(f"unknown fold part {part!r}: choose one of {', '.join(PARTS)}.")
    return part


def fold_normalisation(dataset, k: int) -> dict:
    """Statistics of the training part of fold ``k`` (images, log10 M500c and redshift).

    The image and target entries equal those of the reference CNN's ``normalisation.json``
    for the same fold; the redshift entries are always included here.

    Parameters
    ----------
    dataset : ClusterMassDataset or path
    k : int
        Test fold.

    Returns
    -------
    dict
        See :func:`benchmark.dataset.normalisation.fit_normalisation`.
    """
    ds = as_dataset(dataset)
    train = ds.fold_indices(k)["train"]
    sub = ds.catalog.iloc[train]
    return fit_normalisation(ds.images(indices=train), sub["log10_m500c"].to_numpy(),
                             sub["redshift"].to_numpy())


def square_symmetry(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One random symmetry of the square per image of a (B, H, W[, C]) batch.

    A random horizontal flip, then a random multiple of 90 degrees: the 8 maps the reference
    CNN augments with. They keep the image centre (where the cluster sits) fixed and move
    whole pixels, so counts are never interpolated.
    """
    images = np.asarray(images)
    flip = rng.integers(0, 2, len(images)).astype(bool)
    quarter_turns = rng.integers(0, 4, len(images))
    out = np.where(flip.reshape((-1,) + (1,) * (images.ndim - 1)), images[:, :, ::-1], images)
    for turns in (1, 2, 3):
        sel = quarter_turns == turns
        out[sel] = np.rot90(out[sel], turns, axes=(1, 2))
    return out


class FoldSplit:
    """One part (train, val or test) of fold ``k`` in memory, ready for any framework.

    Parameters
    ----------
    dataset : ClusterMassDataset or path
    k : int
        Test fold (0 .. n_folds - 1).
    part : {"train", "val", "test"}
    normalise : bool
        Standardise with training-fold statistics (default) or give raw counts and
        log10 M500c [Msun].
    normalisation : dict, optional
        Statistics of :func:`fold_normalisation` for the same fold, to avoid reading the
        training images again.

    Attributes
    ----------
    k, part : int, str
    indices : ndarray int64
        Positional catalog rows, as ``dataset.fold_indices(k)[part]``.
    image_ids : ndarray of str
    counts : ndarray int32 (N, 128, 128)
        Photon counts, as ``dataset.images(indices=indices)``.
    log10_m500c_msun, redshift : ndarray float64 (N,)
    normalisation : dict or None
        Training-fold statistics (None when ``normalise`` is False).
    """

    def __init__(self, dataset, k: int, part: str, *, normalise: bool = True,
                 normalisation: dict | None = None):
        ds = as_dataset(dataset)
        self.k = int(k)
        self.part = _check_part(part)
        self.indices = ds.fold_indices(self.k)[part]
        sub = ds.catalog.iloc[self.indices]
        self.image_ids = sub["image_id"].to_numpy(dtype=str)
        self.counts = ds.images(indices=self.indices)
        self.log10_m500c_msun = sub["log10_m500c"].to_numpy(dtype=np.float64)
        self.redshift = sub["redshift"].to_numpy(dtype=np.float64)
        self.normalisation = None
        if normalise:
            self.normalisation = self._fit(ds) if normalisation is None else normalisation

    def _fit(self, ds) -> dict:
        if self.part == "train":  # the images are in memory already
            return fit_normalisation(self.counts, self.log10_m500c_msun, self.redshift)
        return fold_normalisation(ds, self.k)

    def __len__(self) -> int:
        return len(self.indices)

    def __repr__(self) -> str:
        return (f"FoldSplit(k={self.k}, part={self.part!r}, n_images={len(self)}, "
                f"normalised={self.normalisation is not None})")

    def _rows(self, rows) -> np.ndarray:
        return np.arange(len(self)) if rows is None else np.asarray(rows, dtype=np.int64)

    def images(self, rows=None) -> np.ndarray:
        """Model inputs, float32 (B, 128, 128, 1): standardised log counts, or raw counts."""
        counts = self.counts[self._rows(rows)]
        if self.normalisation is None:
            return counts.astype(np.float32)[..., None]
        return standardise_images(counts, self.normalisation)

    def targets(self, rows=None) -> np.ndarray:
        """float32 (B,): standardised log10 M500c, or log10 M500c [Msun]."""
        y = self.log10_m500c_msun[self._rows(rows)]
        if self.normalisation is None:
            return y.astype(np.float32)
        return standardise_target(y, self.normalisation)

    def redshifts(self, rows=None) -> np.ndarray:
        """float32 (B, 1): standardised redshift, or the redshift."""
        z = self.redshift[self._rows(rows)]
        if self.normalisation is None:
            return z.astype(np.float32)[:, None]
        return standardise_redshift({"redshift": z}, self.normalisation)

    def batch(self, rows) -> dict:
        """One batch as a dict of NumPy arrays (a JAX pytree).

        Keys ``image_id, image, target, redshift`` (see :meth:`images`, :meth:`targets`,
        :meth:`redshifts`).
        """
        rows = self._rows(rows)
        return {"image_id": self.image_ids[rows], "image": self.images(rows),
                "target": self.targets(rows), "redshift": self.redshifts(rows)}


def _split(dataset, k, part, normalise, normalisation, split) -> FoldSplit:
    # "is None", not "or": an empty part is a valid split whose truth value is False.
    if split is None:
        return FoldSplit(dataset, k, part, normalise=normalise, normalisation=normalisation)
    return split


def _batch_rows(n: int, batch_size: int, shuffle: bool, rng, drop_last: bool):
    if int(batch_size) < 1:
        raise ClusterMassError(f"batch_size is {batch_size}: it must be a positive integer.")
    order = rng.permutation(n) if shuffle else np.arange(n)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        yield order[start:start + batch_size]


def iterate_batches(dataset, k: int, part: str, batch_size: int = 32, *, shuffle: bool = False,
                    seed=0, augment: bool = False, drop_last: bool = False,
                    normalise: bool = True, normalisation: dict | None = None,
                    split: FoldSplit | None = None) -> Iterator[dict]:
    """Framework-free batches of one part of fold ``k``: one pass (an epoch) over it.

    Parameters
    ----------
    dataset : ClusterMassDataset or path
        Ignored when ``split`` is given.
    k : int
    part : {"train", "val", "test"}
    batch_size : int
    shuffle : bool
        Random order (``seed``); catalog order otherwise.
    seed : int or numpy.random.Generator
        Pass one Generator over epochs to get a new order each epoch.
    augment : bool
        Apply :func:`square_symmetry` to the images (training only, as the reference does).
    drop_last : bool
        Drop a last, smaller batch (fixed shapes avoid a JAX recompilation).
    normalise, normalisation
        As :class:`FoldSplit`.
    split : FoldSplit, optional
        A part already in memory (re-iterate epochs without reading the files again).

    Yields
    ------
    dict
        ``image_id`` (B,) str, ``image`` (B, 128, 128, 1) float32, ``target`` (B,) float32,
        ``redshift`` (B, 1) float32; see :meth:`FoldSplit.batch`.
    """
    split = _split(dataset, k, part, normalise, normalisation, split)
    rng = np.random.default_rng(seed)
    for rows in _batch_rows(len(split), int(batch_size), shuffle, rng, drop_last):
        batch = split.batch(rows)
        if augment:
            batch["image"] = square_symmetry(batch["image"], rng)
        yield batch


def tf_dataset(dataset, k: int, part: str, batch_size: int = 32, *, shuffle: bool = False,
               seed: int = 0, with_redshift: bool = False, normalise: bool = True,
               normalisation: dict | None = None, split: FoldSplit | None = None):
    """A batched ``tf.data.Dataset`` of one part of fold ``k``, ready for ``keras.Model.fit``.

    Parameters
    ----------
    dataset, k, part, batch_size, normalise, normalisation, split
        As :func:`iterate_batches`.
    shuffle : bool
        Reshuffled each epoch from ``seed``.
    seed : int
    with_redshift : bool
        Inputs ``(image, redshift)`` instead of ``image`` (the reference's redshift variant).

    Returns
    -------
    tf.data.Dataset
        Elements ``(image (B, 128, 128, 1), target (B,))`` float32, or
        ``((image, redshift (B, 1)), target)``.
    """
    import tensorflow as tf  # deferred: seconds to import, and only this loader needs it

    split = _split(dataset, k, part, normalise, normalisation, split)
    # Eager tensors are captured by reference by the map function: no copy in the graph,
    # and no shuffle buffer of whole images (indices are shuffled, then gathered).
    images = tf.constant(split.images())
    targets = tf.constant(split.targets())
    redshifts = tf.constant(split.redshifts())
    ds = tf.data.Dataset.range(len(split))
    if shuffle:
        ds = ds.shuffle(max(len(split), 1), seed=int(seed), reshuffle_each_iteration=True)
    ds = ds.batch(int(batch_size))

    def gather(rows):
        x = tf.gather(images, rows)
        inputs = (x, tf.gather(redshifts, rows)) if with_redshift else x
        return inputs, tf.gather(targets, rows)

    ds = ds.map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE)


def torch_dataset(dataset, k: int, part: str, *, with_redshift: bool = False,
                  augment: bool = False, normalise: bool = True,
                  normalisation: dict | None = None, split: FoldSplit | None = None):
    """A map-style ``torch.utils.data.Dataset`` of one part of fold ``k``.

    Parameters
    ----------
    dataset, k, part, normalise, normalisation, split
        As :func:`iterate_batches`.
    with_redshift : bool
        Items ``((image, redshift), target)`` instead of ``(image, target)``.
    augment : bool
        A random symmetry of the square per item (torch's generator, so that
        ``DataLoader`` workers and ``torch.manual_seed`` control it).

    Returns
    -------
    torch.utils.data.Dataset
        Items ``(image (1, 128, 128), target ())`` float32 tensors, channels first as
        torch's convolutions expect.

    Raises
    ------
    ClusterMassError
        When PyTorch is not installed.
    """
    try:
        from benchmark.dataset.torch_dataset import FoldTorchDataset
    except ImportError as exc:
        if exc.name != "torch":
            raise
        raise ClusterMassError("PyTorch is not installed: install the optional extra with "
                               "`pip install -e '.[torch]'` (or `pip install torch`).") from None
    split = _split(dataset, k, part, normalise, normalisation, split)
    return FoldTorchDataset(split, with_redshift=with_redshift, augment=augment)
