"""The reference CNN after Ntampaka et al. (2019, arXiv:1810.07703) and its training recipe.

What the study fixes and what this project chose. The study's text fixes only the layout:
one image of photon counts in, "three convolution + pooling blocks, then three fully
connected layers", one output (log10 M500c). The filter counts (16/32/64), kernel size,
dense widths (200/100/20), the input transform (log10(1 + N), standardised), the
augmentation and the schedule below are *this project's choices*, made to fit that layout
on 2 CPU cores; they are not the study's (which does not publish them). This module holds

* :func:`build_reference_cnn` -- the network (Keras 3 functional model, float32);
* :class:`KerasRegressor` -- the *reference recipe* that trains any Keras image model under
  the benchmark's rules (it is also what the harness wraps a submitted
  ``build_keras_model(input_shape)`` with);
* :func:`make_model` / :func:`load_model` -- the model protocol of the harness
  (``benchmark.training``), entries ``reference`` (image only) and ``reference_z``
  (redshift as an extra input);
* :class:`GaussianRegressor` -- entry ``reference_gauss``: the same network and schedule
  with a Gaussian head (mean and log sigma) trained on the negative log-likelihood
  (:func:`gaussian_nll`), so every prediction carries a sigma (``predict_sigma``, dex);
* :class:`DeepEnsemble` -- entry ``reference_ensemble``: M (default 5) Gaussian CNNs over
  seeds, combined as an equal-weight mixture (:func:`mixture_moments`;
  Lakshminarayanan, Pritzel & Blundell 2017, arXiv:1612.01474); training costs M times.

Exact sizes (and why)
---------------------
==========================  ==============================  ========================================
layer                       output                          reason
==========================  ==============================  ========================================
input                       128 x 128 x 1                   the study's image: counts in 0.5-7 keV
Conv2D 3x3, 16, ReLU, same  128 x 128 x 16                  study: three conv+pool blocks; ours:
MaxPool 2x2                 64 x 64 x 16                    3x3 kernels, 16 filters
Conv2D 3x3, 32, ReLU, same  64 x 64 x 32                    ours: filters double as resolution halves
MaxPool 2x2                 32 x 32 x 32
Conv2D 3x3, 64, ReLU, same  32 x 32 x 64
MaxPool 2x2                 16 x 16 x 64
Flatten                     16384                           keeps *where* photons are (no global
                                                            pooling: radius matters for mass)
Dense 200, ReLU             200                             study: three fully connected layers;
(+ redshift, variant)       201                             ours: the widths; z joins after the
Dense 100, ReLU             100                             first dense layer so that one scalar
Dense 20, ReLU              20                              is not 1 of 16,384 equal inputs
Dense 1, linear             1                               standardised log10 M500c
==========================  ==============================  ========================================

About 3.3 million weights (almost all in the first dense layer) and ~87 MFLOP per image
forward; 16/32/64 filters is the size measured at ~350-575 img/s training and
1,000-1,500 img/s inference on the 2-core machine (32/64/128 filters costs 4x).

Inputs and targets
------------------
Implemented once in :mod:`benchmark.dataset.normalisation`, which the framework loaders
(:mod:`benchmark.dataset.frameworks`: PyTorch, tf.data, NumPy batches) share.

* images: ``x = log10(1 + N)`` (counts span ~4 decades from the core to the background;
  the log keeps the outskirts visible and the +1 keeps empty pixels finite), then
  standardised with one scalar mean and standard deviation over all pixels of the
  *training* images only (a per-pixel mean would not be invariant under the rotations we
  augment with; statistics from validation or test images would leak).
* target: log10 M500c standardised with the training mean and std (unit-scale output
  suits Adam's default step and the MSE loss).
* redshift (variant ``reference_z``): standardised with training statistics; a constant
  redshift (the default single-z dataset) gets std 1 so it is harmless.

Schedule (and why)
------------------
* Adam, learning rate 1e-3 (Keras default; targets are unit scale), MSE loss on the
  standardised target (the benchmark scores squared-error-like scatter in dex).
* batch 32 (measured: 32 vs 128 runs at the same speed, smaller batches give more updates
  per epoch on ~6,000 training images).
* at most 100 epochs, early stopping on the validation loss (the harness's validation
  fold, never the test fold) with patience 12 and the best weights restored;
  ReduceLROnPlateau halves the rate after 5 epochs without improvement (floor 1e-5) so
  that the last epochs refine instead of oscillating.
* augmentation: each training image gets one of the 8 symmetries of the square (random
  horizontal flip then a random multiple of 90 degrees) every epoch. The cluster sits at
  the image centre (63.5, 63.5), which these maps keep fixed, and they do not resample
  pixels (counts stay integers, no interpolation); arbitrary-angle rotation would.
* input pipeline: tf.data over index batches read from images held in memory as
  non-trainable variables (no second copy of the images, not even by a shuffle buffer),
  ``prefetch(AUTOTUNE)``. Under op determinism the map runs serially and without prefetch
  (variable reads are stateful), so it sits on every training step's path: one gather of
  single pixels reads a batch and applies each image's symmetry at once (a table of the
  8 pixel permutations). The former ``tf.reverse``/``tf.image.rot90``/``tf.where`` over
  whole batches (same draws, same bits) cost ~3x the CPU; measured side by side on the idle
  2 cores, a harness epoch went from 0.80 to 0.98 of a plain Keras ``fit``'s speed (CPU per
  epoch 0.84 to 0.99; ``make bench``).
* float32, TensorFlow defaults: measured XLA 3-5x slower and mixed precision no
  faster here.

Reproducibility
---------------
``deterministic`` (default True) trains under TensorFlow op determinism
(``tf.config.experimental.enable_op_determinism``, switched back after ``fit``) with every
seed set from the harness's ``random_seed`` (``keras.utils.set_random_seed``: Python, NumPy,
TensorFlow; weights, shuffling) and a *stateless* augmentation: each batch's symmetries are
drawn from a seed pair of ``tf.data.Dataset.random(random_seed)``, so they do not depend on
which thread of the parallel input map runs first. Same data, config, seed and thread
counts then give bit-identical weights and predictions (tested; measured on the 2-core
machine: two trainings of a tiny fold agree bit for bit with 1 and with 2 threads).
What stays outside: the *number* of threads. oneDNN/Eigen split sums by thread count,
so a fold trained single-threaded (``FOLD_JOBS=2`` runs one-thread children) and one trained
on all cores differ at float32 rounding, which training then amplifies; the training summary
records the flag and the thread counts (``reproducibility``) so a figure can be reproduced
with the same ones. ``deterministic=False`` restores TensorFlow's defaults. The speed cost
is measured in the README.

Presets (``TRAINING_PRESETS``) shorten the schedule: ``ci`` (2 epochs, a smoke test),
``quick`` (20), ``fast`` (20 epochs, patience 5: the full-size science check; 145 epochs over
ten folds, 39-60 s an epoch on the 2-core development machine depending on the day, about
1.5-2 h), ``full`` (the schedule above: up to 100 epochs, patience 12; not run on 2 cores,
expect 3-5 h). ``SCHEDULE``/``--schedule`` picks a schedule apart from the dataset: the
published ``full`` check used the ``fast`` schedule (147 epochs, ~1 h 50 min).
"""
from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path

import numpy as np

from benchmark.core.errors import ClusterMassError
# The normalisation helpers live in the dataset layer so that the framework loaders
# (benchmark.dataset.frameworks) give users exactly the numbers this recipe trains on.
from benchmark.dataset.normalisation import (  # noqa: F401  (log_counts: re-exported)
    fit_normalisation,
    log_counts,
    standardise_images,
    standardise_redshift,
    standardise_target,
    target_from_standardised,
)
from benchmark.models import write_params

__all__ = [
    "DEFAULT_CONFIG",
    "TRAINING_PRESETS",
    "build_reference_cnn",
    "build_keras_model",
    "KerasRegressor",
    "GaussianRegressor",
    "DeepEnsemble",
    "gaussian_nll",
    "mixture_moments",
    "make_model",
    "load_model",
    "check_schedule",
    "training_config",
    "training_schedule",
]

#: The reference recipe; every key can be overridden through ``config``.
DEFAULT_CONFIG: dict = {
    "filters": [16, 32, 64],
    "dense_units": [200, 100, 20],
    "dropout": 0.0,  # our choice (the study names none); early stopping + augmentation regularise
    "use_redshift": False,
    "batch_size": 32,
    "learning_rate": 1e-3,
    "max_epochs": 100,
    "patience": 12,
    "lr_patience": 5,
    "lr_factor": 0.5,
    "min_learning_rate": 1e-5,
    "augment": True,
    "predict_batch_size": 256,
    # TensorFlow op determinism and stateless augmentation (see "Reproducibility" above):
    # same data, config, seed and thread count give bit-identical weights and predictions.
    "deterministic": True,
}

#: Shorter schedules for the dataset presets (same network, same rules).
TRAINING_PRESETS: dict[str, dict] = {
    "ci": {"max_epochs": 2, "patience": 1, "lr_patience": 1},
    "quick": {"max_epochs": 20, "patience": 5, "lr_patience": 3},
    "fast": {"max_epochs": 20, "patience": 5, "lr_patience": 3},
    "full": {},
}


def training_schedule(name: str | None) -> dict:
    """The overrides of the schedule named after a preset (:data:`TRAINING_PRESETS`), and
    the recipe's ``deterministic`` flag.

    ``None``, ``full`` and names of presets given as TOML files (which name their own size)
    give the full recipe: no schedule overrides. The flag is included so that the harness,
    which adds these keys to the run's config, records it in every entry's
    ``training_config`` (and in the fold fingerprints: a fold trained otherwise is not mixed in).
    """
    return {"deterministic": DEFAULT_CONFIG["deterministic"],
            **TRAINING_PRESETS.get(name or "full", {})}


def check_schedule(name: str) -> str:
    """``name`` if it is a training schedule, else one clear error listing the choices."""
    if name not in TRAINING_PRESETS:
        raise ClusterMassError(f"unknown training schedule {name!r}: choose from "
                               f"{', '.join(TRAINING_PRESETS)} (SCHEDULE=... / --schedule).")
    return name


MODEL_FILE = "model.keras"
NORMALISATION_FILE = "normalisation.json"
RECIPE_FILE = "recipe.json"


def training_config(preset: str | None = None, overrides: dict | None = None) -> dict:
    """The reference recipe for a dataset preset, with overrides.

    Parameters
    ----------
    preset : str, optional
        ``ci``, ``quick``, ``fast`` or ``full`` (None: ``full``). Unknown names fall back
        to ``full`` because presets given as TOML files name their own size.
    overrides : dict, optional
        Any key of :data:`DEFAULT_CONFIG` (other keys are kept and ignored).

    Returns
    -------
    dict
    """
    config = dict(DEFAULT_CONFIG)
    config.update(training_schedule(preset))
    config.update(overrides or {})
    return config


@contextlib.contextmanager
def op_determinism(enabled: bool):
    """TensorFlow op determinism on (``enabled``) or off inside the block, restored after.

    The switch is process-wide; restoring it keeps one model's choice from leaking into
    the next model trained in the same process (tests, the deep ensemble's members, the
    diagnostics). The public API can only switch it on, hence the private module for the
    state and the way back.
    """
    import tensorflow as tf
    from tensorflow.python.framework import config as tf_config

    before = tf_config.is_op_determinism_enabled()
    if enabled:
        tf.config.experimental.enable_op_determinism()
    else:
        tf_config.disable_op_determinism()
    try:
        yield
    finally:
        if before:
            tf.config.experimental.enable_op_determinism()
        else:
            tf_config.disable_op_determinism()


def reproducibility(deterministic: bool) -> dict:
    """What a fold's bits depend on: the determinism switch and TensorFlow's thread pools.

    Recorded in the training summary (``fold.json``): two runs agree bit for bit only with
    the same ``deterministic`` flag *and* the same thread counts (0 means "all cores").
    """
    import os

    import tensorflow as tf

    return {
        "deterministic": bool(deterministic),
        # Set through the API (0: TensorFlow's default, all cores) or, as the harness's fold
        # processes do, through the environment before TensorFlow starts.
        "intra_op_threads": int(tf.config.threading.get_intra_op_parallelism_threads()),
        "inter_op_threads": int(tf.config.threading.get_inter_op_parallelism_threads()),
        "thread_environment": {k: os.environ.get(k) for k in
                               ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS",
                                "OMP_NUM_THREADS")},
        "cpu_count": os.cpu_count(),
        "tensorflow": tf.__version__,
    }


def _keras():
    # Deferred: importing TensorFlow costs seconds and the L_X/trivial entries never need it.
    import keras

    return keras


def build_reference_cnn(input_shape=(128, 128, 1), n_aux: int = 0, filters=(16, 32, 64),
                        dense_units=(200, 100, 20), dropout: float = 0.0,
                        gaussian: bool = False):
    """Build the reference network: the study's layout, this project's sizes (module docstring).

    Parameters
    ----------
    input_shape : tuple
        (height, width, channels) of the preprocessed image.
    n_aux : int
        Number of scalar auxiliary inputs (1 for the redshift variant); they join the dense
        head after its first layer.
    filters, dense_units : sequence of int
        Convolution filters per block and widths of the fully connected layers.
    dropout : float
        Dropout rate after each hidden dense layer (0: none, the reference).
    gaussian : bool
        Add a second linear output beside the mean: the log of the Gaussian sigma in
        standardised target units (the ``reference_gauss`` head; see :class:`GaussianRegressor`).

    Returns
    -------
    keras.Model
        Inputs ``image`` (and ``aux`` when n_aux > 0); output (N, 1), standardised log10 M,
        or (N, 2) (mean, log sigma) with ``gaussian``.
    """
    keras = _keras()
    layers = keras.layers
    image = keras.Input(shape=tuple(input_shape), name="image", dtype="float32")
    x = image
    for i, n_filters in enumerate(filters):
        x = layers.Conv2D(int(n_filters), 3, padding="same", activation="relu", name=f"conv{i + 1}")(x)
        x = layers.MaxPooling2D(2, name=f"pool{i + 1}")(x)
    x = layers.Flatten(name="flatten")(x)
    inputs = [image]
    aux = None
    if n_aux:
        aux = keras.Input(shape=(int(n_aux),), name="aux", dtype="float32")
        inputs.append(aux)
    for i, units in enumerate(dense_units):
        x = layers.Dense(int(units), activation="relu", name=f"dense{i + 1}")(x)
        if dropout:
            x = layers.Dropout(float(dropout), name=f"dropout{i + 1}")(x)
        if i == 0 and aux is not None:
            x = layers.Concatenate(name="with_aux")([x, aux])
    out = layers.Dense(1, activation="linear", name="log10_m500c_std")(x)
    name = "reference_cnn"
    if gaussian:
        # Both heads read the same last hidden layer (Nix & Weigend 1994; Lakshminarayanan+
        # 2017); a zero-initialised log sigma starts every image at sigma = 1 target std.
        log_sigma = layers.Dense(1, activation="linear", kernel_initializer="zeros",
                                 name="log_sigma_std")(x)
        out = layers.Concatenate(name="mean_and_log_sigma")([out, log_sigma])
        name = "reference_cnn_gaussian"
    return keras.Model(inputs if aux is not None else image, out, name=name)


def build_keras_model(input_shape=(128, 128, 1)):
    """The reference network in the ``build_keras_model(input_shape)`` form of the protocol."""
    return build_reference_cnn(input_shape)


# ----------------------------------------------------------------------------- tf.data

#: Index of the 8 symmetries of the square: ``4 * flip + k`` (a horizontal flip, then k
#: counter-clockwise quarter turns).
N_SYMMETRIES = 8


def _symmetry_table(height: int, width: int) -> np.ndarray:
    """Where each output pixel of each symmetry comes from: int32 (8, height * width).

    Row ``4 * flip + k`` holds, for every pixel of the flattened output image, the flattened
    index of its source pixel, so one gather applies the symmetry. Why a gather: it moves each
    pixel once, where ``tf.reverse``/``tf.image.rot90`` on whole batches then ``tf.where`` moved
    every pixel of the batch ~8 times (measured: the augmentation took 3x the CPU time of the
    gather, ~10% of a training epoch, and it runs inside the serial input map).
    """
    if height != width:
        raise ClusterMassError(f"augmentation by the symmetries of the square needs square images; "
                               f"got {height} x {width} (set augment=False).")
    pixels = np.arange(height * width, dtype=np.int32).reshape(height, width)
    return np.stack([np.rot90(pixels[:, ::-1] if flip else pixels, k).ravel()
                     for flip in (0, 1) for k in range(4)])


def _symmetry_draws(n, seed):
    """One symmetry index (0..7, see :data:`N_SYMMETRIES`) per image of a batch of ``n``.

    ``seed`` is a shape-(2,) integer tensor: the draws are stateless functions of it, so a
    batch's symmetries do not depend on which thread of a parallel map ran it first (stateful
    random ops there would, or would force the map to run serially under op determinism).
    The flip and the quarter turns are drawn as two streams, as the recipe always drew them,
    so a seed gives the same symmetries (and the same trained weights) as before the gather.
    """
    import tensorflow as tf

    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=2)
    flip = tf.random.stateless_uniform([n], seeds[0], 0, 2, dtype=tf.int32)
    k = tf.random.stateless_uniform([n], seeds[1], 0, 4, dtype=tf.int32)
    return 4 * flip + k


def _augment_batch(images, seed):
    """Apply one random symmetry of the square to each image of a (B, H, W, C) batch.

    ``seed`` is a shape-(2,) integer tensor (see :func:`_symmetry_draws`). The pipeline of
    :func:`_make_dataset` fuses the same gather with the one that reads the batch.
    """
    import tensorflow as tf

    images = tf.convert_to_tensor(images)
    b, h, w, c = (tf.shape(images)[i] for i in range(4))
    table = tf.constant(_symmetry_table(int(images.shape[1]), int(images.shape[2])))
    sources = tf.gather(table, _symmetry_draws(b, seed))
    flat = tf.reshape(images, [b, h * w, c])
    return tf.reshape(tf.gather(flat, sources, axis=1, batch_dims=1), [b, h, w, c])


def _make_dataset(x, y, aux=None, batch_size=32, shuffle=False, augment=False, seed=0):
    """tf.data pipeline over in-memory arrays: index batches -> gather (+ symmetries) -> prefetch."""
    import tensorflow as tf

    n = int(x.shape[0])
    # Variables are captured by reference: neither the graph nor a shuffle buffer copies images.
    # (Captured tensors would avoid the stateful variable reads below but cost one more copy
    # of the images: +270 MB per 4,000 images, measured.)
    y_var = tf.Variable(np.asarray(y, np.float32).reshape(-1, 1), trainable=False, name="targets")
    a_var = None if aux is None else tf.Variable(aux, trainable=False, name="aux")
    read_images = (_augmented_reader(x, seed) if augment else _plain_reader(x))

    ds = tf.data.Dataset.range(n)
    if shuffle:
        ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    # One stateless seed pair per batch, a new sequence each epoch, all from ``seed``: the
    # augmentation is then a pure function of (seed, epoch, batch), whatever the threading.
    batch_seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
    ds = tf.data.Dataset.zip((ds, batch_seeds))

    def gather(idx, batch_seed):
        images = read_images(idx, batch_seed)
        inputs = images if a_var is None else (images, tf.gather(a_var, idx))
        return inputs, tf.gather(y_var, idx)

    # Under op determinism the variable reads make tf.data run every map serially and switch
    # prefetching off (enable_op_determinism, "Determinism and tf.data" (4)); asking for the
    # serial map directly spares its error line. The map is then on the training step's path:
    # keep it to one gather per tensor (measured: the map costs ~1% of an epoch).
    from tensorflow.python.framework import config as tf_config

    if tf_config.is_op_determinism_enabled():
        ds = ds.map(gather)
    else:
        ds = ds.map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.prefetch(tf.data.AUTOTUNE)
    ds._clustermass_vars = (read_images, y_var, a_var)  # keep the variables alive with the dataset
    return ds


def _plain_reader(x):
    """``read(idx, seed)``: the images ``x[idx]`` from one variable holding ``x``."""
    import tensorflow as tf

    x_var = tf.Variable(x, trainable=False, name="images")

    def read(idx, _seed):
        return tf.gather(x_var, idx)

    read.variable = x_var
    return read


def _augmented_reader(x, seed):
    """``read(idx, seed)``: the images ``x[idx]``, each under the symmetry that ``seed`` draws
    for it (:func:`_augment_batch`), read by one gather of single pixels.

    The images are held flattened to (N * H * W, C): the source of output pixel ``p`` of image
    ``i`` under symmetry ``s`` is then row ``i * H * W + table[s, p]``.
    """
    import tensorflow as tf

    n, h, w, c = x.shape
    x_var = tf.Variable(np.reshape(x, (n * h * w, c)), trainable=False, name="images")
    table = tf.constant(_symmetry_table(h, w).astype(np.int64))

    def read(idx, batch_seed):
        sources = tf.gather(table, _symmetry_draws(tf.shape(idx)[0], batch_seed))
        rows = idx[:, None] * (h * w) + sources
        return tf.reshape(tf.gather(x_var, rows), [-1, h, w, c])

    read.variable = x_var
    return read


# ----------------------------------------------------------------------------- progress

def _progress_callback(max_epochs: int, steps_per_epoch: int, desc: str):
    """A tqdm bar over the epochs of one fold: loss, val loss, best, ETA."""
    keras = _keras()
    from tqdm.auto import tqdm

    class TqdmFold(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.bar = tqdm(total=max_epochs * steps_per_epoch, desc=desc, unit="batch",
                            leave=True, dynamic_ncols=True,
                            bar_format="{l_bar}{bar}| [{elapsed}<{remaining}{postfix}]")
            self.epoch = 0
            self.best = math.inf
            self.val = float("nan")

        def _postfix(self, loss):
            text = f"epoch {self.epoch + 1}/{max_epochs} loss {loss:.4f}"
            if math.isfinite(self.best):
                text += f" val {self.val:.4f} best {self.best:.4f}"
            return text

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch
            self.bar.n = epoch * steps_per_epoch
            self.bar.refresh()

        def on_train_batch_end(self, batch, logs=None):
            self.bar.update(1)
            if batch % 20 == 0 and logs:
                self.bar.set_postfix_str(self._postfix(float(logs.get("loss", float("nan")))), refresh=False)

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            self.val = float(logs.get("val_loss", float("nan")))
            self.best = min(self.best, self.val)
            self.bar.set_postfix_str(self._postfix(float(logs.get("loss", float("nan")))))

        def on_train_end(self, logs=None):
            # Early stopping ends before max_epochs: close the bar at what was done.
            self.bar.total = self.bar.n
            self.bar.refresh()
            self.bar.close()

    return TqdmFold()


def _epoch_clock():
    """A callback timing each epoch: ``seconds`` (wall) and ``cpu_seconds`` (CPU time of the
    whole process: what the epoch cost, whatever else loads the machine). An epoch is its
    training steps, its validation pass and the callbacks before this one in the list; the
    first epoch also traces the graphs."""
    import time

    keras = _keras()

    class EpochClock(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds: list[float] = []
            self.cpu_seconds: list[float] = []
            self.start = (0.0, 0.0)

        def on_epoch_begin(self, epoch, logs=None):
            self.start = (time.perf_counter(), time.process_time())

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self.start[0])
            self.cpu_seconds.append(time.process_time() - self.start[1])

    return EpochClock()


# ----------------------------------------------------------------------------- the recipe

class KerasRegressor:
    """Train a Keras image model with the benchmark's reference recipe.

    Parameters
    ----------
    config : dict, optional
        Overrides of :data:`DEFAULT_CONFIG`; the harness adds ``random_seed``,
        ``progress`` and ``progress_desc``.
    builder : callable, optional
        ``builder(input_shape)`` (or ``builder(input_shape, n_aux=1)`` with
        ``use_redshift``) returning an uncompiled ``keras.Model`` with one linear output.
        Default: :func:`build_reference_cnn` with the configured sizes.

    Attributes
    ----------
    keras_model : keras.Model
        The trained network (after :meth:`fit` or :func:`load_model`).
    normalisation : dict
        Training-fold statistics (see :func:`fit_normalisation`).
    training_summary : dict
        Epochs run, best epoch, monitored quantity, per-epoch history.
    """

    def __init__(self, config: dict | None = None, builder=None):
        self.config = training_config(None, config)
        self.builder = builder
        self.keras_model = None
        self.normalisation: dict | None = None
        self.training_summary: dict = {}

    # -- protocol ------------------------------------------------------------------------
    def fit(self, train, val) -> "KerasRegressor":
        """Fit on ``train``; early-stop on ``val`` (FoldData with images, aux, y)."""
        keras = _keras()
        cfg = self.config
        if train.y is None or val.y is None:
            raise ClusterMassError("fit needs targets (y) for the training and validation folds.")
        with op_determinism(bool(cfg["deterministic"])):
            keras.utils.set_random_seed(int(cfg.get("random_seed", 0)))
            self._fit(train, val)
        return self

    def _fit(self, train, val) -> None:
        keras = _keras()
        cfg = self.config
        use_z = bool(cfg["use_redshift"])
        self.normalisation = fit_normalisation(
            train.images, train.y, train.aux["redshift"] if use_z else None
        )
        self.normalisation["use_redshift"] = use_z
        x_train, a_train, y_train = self._prepare(train)
        x_val, a_val, y_val = self._prepare(val)

        self.keras_model = self._build(x_train.shape[1:], use_z)
        self.keras_model.compile(
            optimizer=keras.optimizers.Adam(learning_rate=float(cfg["learning_rate"])),
            loss=self._loss(),
        )
        batch = int(cfg["batch_size"])
        seed = int(cfg.get("random_seed", 0))
        train_ds = _make_dataset(x_train, y_train, a_train, batch, shuffle=True,
                                 augment=bool(cfg["augment"]), seed=seed)
        val_ds = _make_dataset(x_val, y_val, a_val, int(cfg["predict_batch_size"]))
        n_train = len(x_train)
        del x_train, x_val  # the datasets hold their own copies (tf.Variable): free ours
        monitor = "val_loss"  # the validation fold; the test fold never reaches fit()
        callbacks = [
            keras.callbacks.EarlyStopping(monitor=monitor, patience=int(cfg["patience"]),
                                          restore_best_weights=True),
            keras.callbacks.ReduceLROnPlateau(monitor=monitor, factor=float(cfg["lr_factor"]),
                                              patience=int(cfg["lr_patience"]),
                                              min_lr=float(cfg["min_learning_rate"])),
        ]
        if cfg.get("progress"):
            steps = math.ceil(n_train / batch)
            callbacks.append(_progress_callback(int(cfg["max_epochs"]), steps,
                                                cfg.get("progress_desc", "training")))
        clock = _epoch_clock()  # last, so an epoch's time includes the other callbacks' work
        callbacks.append(clock)
        history = self.keras_model.fit(train_ds, validation_data=val_ds,
                                       epochs=int(cfg["max_epochs"]), callbacks=callbacks,
                                       shuffle=False, verbose=0)  # tf.data shuffles
        hist = {k: [float(v) for v in vals] for k, vals in history.history.items()}
        best = int(np.argmin(hist[monitor])) if hist.get(monitor) else -1
        self.training_summary = {
            "monitor": monitor,
            "epochs_run": len(hist.get("loss", [])),
            "best_epoch": best + 1,
            "best_val_loss": hist[monitor][best] if best >= 0 else None,
            "stopped_early": len(hist.get("loss", [])) < int(cfg["max_epochs"]),
            "history": hist,
            "n_params": int(self.keras_model.count_params()),
            "epoch_seconds": [round(t, 3) for t in clock.seconds],
            "epoch_cpu_seconds": [round(t, 3) for t in clock.cpu_seconds],
            "reproducibility": reproducibility(bool(cfg["deterministic"])),
        }

    def predict(self, data) -> np.ndarray:
        """log10 M500c for a FoldData (y ignored)."""
        self._require_trained()
        x, a, _ = self._prepare(data, with_y=False)
        inputs = x if a is None else [x, a]
        out = self.keras_model.predict(inputs, batch_size=int(self.config["predict_batch_size"]),
                                       verbose=0)
        return target_from_standardised(out[:, 0], self.normalisation)

    def predict_tensor(self, counts, aux):
        """Differentiable log10 M500c from a counts tensor (N, H, W) (for gradients)."""
        import tensorflow as tf

        self._require_trained()
        st = self.normalisation
        x = tf.math.log(1.0 + tf.cast(counts, tf.float32)) / math.log(10.0)
        x = (x[..., None] - st["image_log_mean"]) / st["image_log_std"]
        inputs = x
        if st.get("use_redshift"):
            inputs = [x, tf.constant(standardise_redshift(aux, st))]
        out = self.keras_model(inputs, training=False)[:, 0]
        return out * st["y_std"] + st["y_mean"]

    def preprocess(self, images, aux):
        """Model inputs (standardised log counts, and redshift for the variant)."""
        x, a, _ = self._prepare(_Data(images, aux, None), with_y=False)
        return x if a is None else [x, a]

    def save(self, directory) -> None:
        """Write model.keras, normalisation.json and recipe.json into ``directory``."""
        self._require_trained()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.keras_model.save(directory / MODEL_FILE)
        write_params(directory, NORMALISATION_FILE, self.normalisation)
        # The recipe keeps what a JSON file can hold (a submitted builder function cannot).
        recipe = {k: v for k, v in self.config.items() if _is_json_serialisable(v)}
        write_params(directory, RECIPE_FILE, recipe)

    # -- helpers -------------------------------------------------------------------------
    def _loss(self):
        """The training loss on the standardised target (the reference: squared error)."""
        return "mse"

    def _build(self, input_shape, use_z):
        cfg = self.config
        if self.builder is None:
            return build_reference_cnn(input_shape, n_aux=1 if use_z else 0,
                                       filters=cfg["filters"], dense_units=cfg["dense_units"],
                                       dropout=float(cfg["dropout"]))
        model = self.builder(tuple(input_shape), n_aux=1) if use_z else self.builder(tuple(input_shape))
        keras = _keras()
        if not isinstance(model, keras.Model):
            raise ClusterMassError(
                f"build_keras_model returned {type(model).__name__}: it must return a keras.Model "
                "with one linear output (log10 M500c, standardised by the harness)."
            )
        return model

    def _prepare(self, data, with_y=True):
        st = self.normalisation
        x = standardise_images(data.images, st)
        a = standardise_redshift(data.aux, st) if st.get("use_redshift") else None
        y = None
        if with_y and data.y is not None:
            y = standardise_target(data.y, st)
        return x, a, y

    def _require_trained(self):
        if self.keras_model is None or self.normalisation is None:
            raise ClusterMassError("the model is not trained: call fit() or load_model(dir) first.")


# ----------------------------------------------------------------------------- uncertainty

#: log sigma (standardised units) is clipped to this range in the loss and in prediction:
#: exp(-7) ~ 1e-3 target std is far below any scatter the images allow, exp(3) ~ 20 std far
#: above the whole mass range, so the clip only guards the first steps against overflow.
LOG_SIGMA_RANGE = (-7.0, 3.0)
#: Seed offset between ensemble members: harness seeds are 1000 * seed + fold < 10**6, so
#: member seeds never repeat another fold's; member 0 has the seed of the fold's
#: ``reference_gauss``.
MEMBER_SEED_STRIDE = 1_000_000
GAUSSIAN_DEFAULTS = {"head": "gaussian"}
ENSEMBLE_DEFAULTS = {"head": "gaussian", "ensemble": True, "ensemble_members": 5}
ENSEMBLE_FILE = "ensemble.json"


def gaussian_nll(y_true, y_pred):
    """Mean Gaussian negative log-likelihood of (N, 1) targets under (N, 2) (mean, log sigma).

    Per image ``0.5 ((y - mu) / sigma)**2 + log sigma + 0.5 log(2 pi)`` in standardised target
    units (Nix & Weigend 1994; Lakshminarayanan, Pritzel & Blundell 2017, eq. 1); the
    constant makes the validation loss the actual NLL per image.
    """
    ops = _keras().ops
    mu = y_pred[:, 0:1]
    log_sigma = ops.clip(y_pred[:, 1:2], *LOG_SIGMA_RANGE)
    z = (ops.cast(y_true, y_pred.dtype) - mu) * ops.exp(-log_sigma)
    return ops.mean(0.5 * ops.square(z) + log_sigma + 0.5 * math.log(2.0 * math.pi), axis=-1)


class GaussianRegressor(KerasRegressor):
    """The reference CNN with a Gaussian head, trained on the negative log-likelihood.

    Same trunk, preprocessing, augmentation and schedule as :class:`KerasRegressor` (entry
    ``reference_gauss``); the network outputs the mean and log sigma of log10 M500c in
    standardised units, :meth:`predict` gives the mean and :meth:`predict_sigma` the sigma in
    dex (the standardised sigma times the training target std). Early stopping monitors the
    validation NLL.
    """

    def __init__(self, config: dict | None = None):
        super().__init__(dict(GAUSSIAN_DEFAULTS, **(config or {})))

    def predict(self, data) -> np.ndarray:
        """Mean log10 M500c for a FoldData (y ignored)."""
        return self.predict_mean_and_sigma(data)[0]

    def predict_sigma(self, data) -> np.ndarray:
        """Gaussian sigma of each prediction (dex), > 0 and finite."""
        return self.predict_mean_and_sigma(data)[1]

    def predict_mean_and_sigma(self, data) -> tuple[np.ndarray, np.ndarray]:
        """(mean log10 M500c, sigma in dex) for a FoldData, from one forward pass."""
        self._require_trained()
        x, a, _ = self._prepare(data, with_y=False)
        out = self.keras_model.predict(x if a is None else [x, a], verbose=0,
                                       batch_size=int(self.config["predict_batch_size"]))
        out = np.asarray(out, dtype=np.float64)
        mean = target_from_standardised(out[:, 0], self.normalisation)
        log_sigma = np.clip(out[:, 1], *LOG_SIGMA_RANGE)
        return mean, np.exp(log_sigma) * float(self.normalisation["y_std"])

    def _loss(self):
        return gaussian_nll

    def _build(self, input_shape, use_z):
        cfg = self.config
        return build_reference_cnn(input_shape, n_aux=1 if use_z else 0,
                                   filters=cfg["filters"], dense_units=cfg["dense_units"],
                                   dropout=float(cfg["dropout"]), gaussian=True)


def mixture_moments(means, sigmas) -> tuple[np.ndarray, np.ndarray]:
    """Mean and sigma of an equal-weight Gaussian mixture, member by member.

    Parameters
    ----------
    means, sigmas : array (M, N)
        Each member's mean and sigma (same units, e.g. dex) for N images.

    Returns
    -------
    mean, sigma : array (N,)
        ``mean = <mu_m>``, ``sigma**2 = <sigma_m**2> + <mu_m**2> - mean**2``: the mean of the
        variances plus the (1/M) variance of the means (Lakshminarayanan+ 2017, sec. 2.4).
    """
    means = np.asarray(means, dtype=np.float64)
    sigmas = np.asarray(sigmas, dtype=np.float64)
    if means.ndim != 2 or means.shape != sigmas.shape or means.shape[0] < 1:
        raise ClusterMassError(f"mixture_moments needs (members, images) arrays of one shape; got "
                               f"{means.shape} and {sigmas.shape}.")
    mean = means.mean(axis=0)
    variance = np.mean(sigmas ** 2, axis=0) + np.var(means, axis=0)
    return mean, np.sqrt(variance)


class DeepEnsemble:
    """A deep ensemble over seeds (Lakshminarayanan, Pritzel & Blundell 2017) of Gaussian CNNs.

    ``ensemble_members`` (default 5) copies of :class:`GaussianRegressor` trained on the same
    folds with seeds ``random_seed + m * MEMBER_SEED_STRIDE`` (different initial weights,
    batch order and augmentation); the prediction is the mixture's mean and sigma
    (:func:`mixture_moments`). Training costs M times one member.
    """

    def __init__(self, config: dict | None = None):
        self.config = training_config(None, dict(ENSEMBLE_DEFAULTS, **(config or {})))
        n = self.config["ensemble_members"]
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ClusterMassError(f"ensemble_members is {n!r}: give a whole number >= 1 "
                                   "(members of the deep ensemble, default 5).")
        self.members: list[GaussianRegressor] = []
        self.training_summary: dict = {}

    @property
    def normalisation(self) -> dict | None:
        """The training-fold statistics (every member shares the same training fold)."""
        return self.members[0].normalisation if self.members else None

    def fit(self, train, val) -> "DeepEnsemble":
        """Train every member on ``train``, each early-stopped on ``val``."""
        n = int(self.config["ensemble_members"])
        seed = int(self.config.get("random_seed", 0))
        desc = self.config.get("progress_desc", "training")
        members = []
        # Members are plain Gaussian CNNs: their saved recipes must not load as ensembles.
        base = {k: v for k, v in self.config.items() if k not in ("ensemble", "ensemble_members")}
        for m in range(n):
            cfg = dict(base, random_seed=seed + m * MEMBER_SEED_STRIDE,
                       progress_desc=f"{desc} member {m + 1}/{n}")
            members.append(GaussianRegressor(cfg).fit(train, val))
        self.members = members
        summaries = [m.training_summary for m in members]
        self.training_summary = {
            "members": summaries,
            "n_members": n,
            "epochs_run_total": sum(s["epochs_run"] for s in summaries),
            "n_params": sum(s["n_params"] for s in summaries),
        }
        return self

    def predict(self, data) -> np.ndarray:
        """Mixture mean of log10 M500c for a FoldData (y ignored)."""
        return self.predict_mean_and_sigma(data)[0]

    def predict_sigma(self, data) -> np.ndarray:
        """Mixture sigma (dex): mean member variance plus the variance of member means."""
        return self.predict_mean_and_sigma(data)[1]

    def predict_mean_and_sigma(self, data) -> tuple[np.ndarray, np.ndarray]:
        """(mixture mean, mixture sigma in dex) for a FoldData."""
        if not self.members:
            raise ClusterMassError("the ensemble is not trained: call fit() or load_model(dir) "
                                   "first.")
        parts = [m.predict_mean_and_sigma(data) for m in self.members]
        return mixture_moments([p[0] for p in parts], [p[1] for p in parts])

    def predict_tensor(self, counts, aux):
        """Differentiable mixture mean from a counts tensor (N, H, W) (for gradients)."""
        if not self.members:
            raise ClusterMassError("the ensemble is not trained: call fit() or load_model(dir) "
                                   "first.")
        total = self.members[0].predict_tensor(counts, aux)
        for member in self.members[1:]:
            total = total + member.predict_tensor(counts, aux)
        return total / len(self.members)

    def save(self, directory) -> None:
        """Write each member into ``member_M/`` and the ensemble's recipe into ensemble.json."""
        if not self.members:
            raise ClusterMassError("the ensemble is not trained: nothing to save.")
        directory = Path(directory)
        names = [f"member_{m}" for m in range(len(self.members))]
        for name, member in zip(names, self.members):
            member.save(directory / name)
        recipe = {k: v for k, v in self.config.items() if _is_json_serialisable(v)}
        write_params(directory, ENSEMBLE_FILE, {"members": names, "recipe": recipe})

    @classmethod
    def load(cls, directory) -> "DeepEnsemble":
        """The ensemble written by :meth:`save` into ``directory``."""
        directory = Path(directory)
        info = json.loads((directory / ENSEMBLE_FILE).read_text())
        model = cls(info.get("recipe", {}))
        model.members = [load_model(directory / name) for name in info["members"]]
        return model


class _Data:
    def __init__(self, images, aux, y):
        self.images, self.aux, self.y = images, aux, y


def _is_json_serialisable(value) -> bool:
    try:
        json.dumps(value)
    except TypeError:
        return False
    return True


# ----------------------------------------------------------------------------- protocol

HEADS = ("point", "gaussian")


def make_model(config: dict | None = None):
    """The reference CNN entries.

    ``use_redshift=True``: the redshift variant; ``head="gaussian"``: the Gaussian head
    (:class:`GaussianRegressor`, entry ``reference_gauss``); ``ensemble=True`` with
    ``ensemble_members``: the deep ensemble (:class:`DeepEnsemble`, ``reference_ensemble``).
    """
    config = dict(config or {})
    head = config.get("head", "point")
    if head not in HEADS:
        raise ClusterMassError(f"unknown head {head!r}: choose from {', '.join(HEADS)}.")
    if config.get("ensemble"):
        return DeepEnsemble(config)
    if head == "gaussian":
        return GaussianRegressor(config)
    return KerasRegressor(config)


def load_model(directory):
    """Load a model written by :meth:`KerasRegressor.save` (any Keras entry, not just ours),
    :meth:`GaussianRegressor.save` or :meth:`DeepEnsemble.save`."""
    keras = _keras()
    directory = Path(directory)
    if (directory / ENSEMBLE_FILE).is_file():
        return DeepEnsemble.load(directory)
    missing = [n for n in (MODEL_FILE, NORMALISATION_FILE) if not (directory / n).is_file()]
    if missing:
        raise ClusterMassError(
            f"{directory} lacks {', '.join(missing)}: it is not a trained fold; re-run training."
        )
    recipe = {}
    if (directory / RECIPE_FILE).is_file():
        recipe = json.loads((directory / RECIPE_FILE).read_text())
    cls = GaussianRegressor if recipe.get("head") == "gaussian" else KerasRegressor
    model = cls(recipe)
    model.normalisation = json.loads((directory / NORMALISATION_FILE).read_text())
    model.keras_model = keras.models.load_model(directory / MODEL_FILE, compile=False)
    return model
