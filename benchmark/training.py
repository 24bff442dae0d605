"""The fold-by-fold training runner: baselines and code submissions under one set of rules.

For every seed and every fold k of the shipped splits the runner

1. takes fold k as the test fold, fold (k+1) % n_folds as the validation fold (early
   stopping, never the test fold) and every other fold as training data;
2. builds :class:`FoldData` for each part: images as float32 counts (N, 128, 128), an aux
   table with *only* the allowed columns (``image_id``, ``redshift``, ``pixel_arcsec``)
   plus the truth columns a model declares (``model.truth_columns`` or the module's
   ``TRUTH_COLUMNS``; recorded in the fold record and the entry metadata), and the target
   log10 M500c for training and validation only;
3. makes a fresh model (``make_model(config)``, or the reference recipe around
   ``build_keras_model(input_shape)``), fits it, predicts the test fold;
4. writes ``out_dir/seed_S/fold_K/`` atomically (built in a temporary sibling folder and
   renamed): the model (``model.keras`` + ``normalisation.json`` for Keras models, the
   model's own files otherwise), ``predictions.csv`` and ``fold.json`` (the record).

A fold whose folder holds a complete record is skipped on the next run (resume after a
kill); a record made with another model, config or dataset refuses to mix (one clear
error). The out-of-fold predictions of all folds form the entry.

Model protocol (``clustermass format``; ARCHITECTURE.md): a module with ``make_model(config) -> model``
where ``model.fit(train, val)`` and ``model.predict(data) -> log10 M500c``; optional
``model.save(dir)`` + module ``load_model(dir)``; optional ``model.predict_sigma(data) ->
sigma (dex)``, a Gaussian uncertainty per image (column ``log10_m500c_sigma`` of the
predictions; the uncertainty track); optional ``model.predict_tensor(counts,
aux)`` or ``model.keras_model`` + ``model.preprocess(images, aux)`` for gradients. A module
may instead expose ``build_keras_model(input_shape) -> keras.Model``.

Config keys the runner adds for the model: ``random_seed`` (1000 * seed + fold),
``progress`` (bool), ``progress_desc`` (the bar's label), ``image`` (the dataset card's
image block: npix, pixel_arcsec, exposure_ks, band_kev), ``preset``.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import importlib
import importlib.util
import json
import logging
import os
import pickle
import shutil
import sys
import time
import types
import uuid
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.core.errors import ClusterMassError, SubmissionError
from benchmark.dataset.loader import as_dataset
from benchmark.entries import harness_version, make_entry, slugify, write_entry, write_predictions
from benchmark.runs import PREDICTIONS_FILE, RECORD_FILE, RUN_FILE, fold_dir, write_record, write_table
from benchmark.submission import SIGMA_COLUMN
from benchmark.testsets_scoring import (TESTSET_PREFIX, ExtraTestSet, find_testsets, has_testset,
                                        score_testsets, write_testset)

__all__ = [
    "FoldData",
    "Predictor",
    "ALLOWED_AUX_COLUMNS",
    "run_entry",
    "load_fold_predictor",
    "load_code_submission",
    "resolve_model",
    "train_baselines",
    "evaluate_code_submission",
    "write_baseline_entry",
    "fold_dir",
    "run_dir_of",
]

#: Columns every model may see besides the images.
ALLOWED_AUX_COLUMNS = ("image_id", "redshift", "pixel_arcsec")
#: Catalog columns no model may declare as an input (the target and the bookkeeping).
FORBIDDEN_COLUMNS = ("log10_m500c", "fold", "file", "index", "seed", "cluster_id")
_RUNNER_KEYS = ("progress", "progress_desc")  # do not change what a fold computes
#: Seeds of a code entry, chosen by the harness: only an entry trained on these is ranked
#: (three, as OGB and WILDS require), and the leaderboard shows their mean and spread.
CODE_SEEDS = (0, 1, 2)

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class FoldData:
    """One part (train, val or test) of a fold, as a model sees it.

    Attributes
    ----------
    images : ndarray float32 (N, 128, 128)
        Photon counts.
    aux : DataFrame
        ``image_id, redshift, pixel_arcsec`` (+ declared truth columns).
    y : ndarray (N,) or None
        True log10 M500c (Msun); None for the test fold.
    """

    images: np.ndarray
    aux: pd.DataFrame
    y: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.images)


# ----------------------------------------------------------------------------- models

@dataclasses.dataclass
class ModelSpec:
    """A resolved model: its module, default config and how to find it again."""

    name: str
    module: types.ModuleType
    config: dict
    ref: dict


def load_code_submission(path) -> types.ModuleType:
    """Import a user's Python module file as a model of the protocol.

    Parameters
    ----------
    path : path-like
        A ``.py`` file exposing ``make_model(config)`` or ``build_keras_model(input_shape)``.

    Returns
    -------
    module

    Raises
    ------
    ClusterMassError
        The file is missing, fails to import, or exposes neither function.
    """
    path = Path(path).expanduser().resolve()
    if not path.is_file() or path.suffix != ".py":
        raise ClusterMassError(
            f"code submission {path} is not a .py file: pass the Python module that defines "
            "make_model(config) or build_keras_model(input_shape)."
        )
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    # A stable name per file content, so that pickled models of this module load again.
    name = f"clustermass_submission_{path.stem}_{digest[:12]}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # the user's code: report any failure as bad input
        del sys.modules[name]
        raise ClusterMassError(
            f"code submission {path} failed to import: {type(exc).__name__}: {exc}. "
            "Fix the module so that `python {path}` imports cleanly."
        ) from exc
    _check_protocol(module, str(path))
    module.__clustermass_sha256__ = digest
    return module


def _check_protocol(module, where: str) -> None:
    if not (callable(getattr(module, "make_model", None))
            or callable(getattr(module, "build_keras_model", None))):
        raise ClusterMassError(
            f"{where} defines neither make_model(config) nor build_keras_model(input_shape): "
            "add one of them (see `clustermass format`)."
        )


def resolve_model(model_name_or_module) -> ModelSpec:
    """Resolve a baseline name, a ``.py`` path, a dotted module name or a module object."""
    from benchmark.models import BASELINES

    obj = model_name_or_module
    if isinstance(obj, ModelSpec):
        return obj
    if isinstance(obj, types.ModuleType):
        _check_protocol(obj, obj.__name__)
        if getattr(obj, "__clustermass_sha256__", None):
            ref = {"kind": "file", "path": str(Path(obj.__file__).resolve()),
                   "sha256": obj.__clustermass_sha256__}
        else:
            ref = {"kind": "module", "name": obj.__name__}
        return ModelSpec(obj.__name__.rsplit(".", 1)[-1], obj, {}, ref)
    if isinstance(obj, str) and obj in BASELINES:
        module_name, config = BASELINES[obj]
        return ModelSpec(obj, importlib.import_module(module_name), dict(config),
                         {"kind": "baseline", "name": obj})
    if isinstance(obj, (str, os.PathLike)) and (str(obj).endswith(".py") or Path(obj).is_file()):
        module = load_code_submission(obj)
        return ModelSpec(Path(obj).stem, module, {},
                         {"kind": "file", "path": str(Path(obj).expanduser().resolve()),
                          "sha256": module.__clustermass_sha256__})
    if isinstance(obj, str):
        try:
            module = importlib.import_module(obj)
        except ImportError:
            raise ClusterMassError(
                f"model {obj!r} is neither a baseline ({', '.join(BASELINES)}), a .py file nor "
                "an importable module."
            ) from None
        return resolve_model(module)
    raise ClusterMassError(f"cannot use {type(obj).__name__} as a model: pass a baseline name, "
                           "a .py path or a module.")


def _spec_from_ref(ref: dict) -> ModelSpec:
    if ref["kind"] == "code":
        raise ClusterMassError("this fold was trained in the sandbox and not diagnosed there: "
                               "the model stayed in the sandbox, so it cannot be loaded; "
                               "diagnostics of a code entry run while it trains (seed 0; "
                               "`clustermass evaluate` does it)")
    if ref["kind"] == "baseline":
        return resolve_model(ref["name"])
    if ref["kind"] == "file":
        path = Path(ref["path"])
        if not path.is_file():
            raise ClusterMassError(f"the code submission {path} this fold was trained with is gone;"
                                   " restore it to load the fold.")
        return resolve_model(path)
    return resolve_model(ref["name"])


def _instantiate(spec: ModelSpec, config: dict):
    if callable(getattr(spec.module, "make_model", None)):
        return spec.module.make_model(dict(config))
    from benchmark.models.cnn import KerasRegressor

    return KerasRegressor(config, builder=spec.module.build_keras_model)


def _is_keras_recipe(spec: ModelSpec) -> bool:
    return (spec.module.__name__ == "benchmark.models.cnn"
            or not callable(getattr(spec.module, "make_model", None)))


def _truth_columns(model, spec: ModelSpec, catalog: pd.DataFrame) -> tuple[str, ...]:
    """Truth columns the model declares (``model.truth_columns``, else the module's)."""
    cols = getattr(model, "truth_columns", None) if model is not None else None
    if cols is None:
        cols = getattr(spec.module, "TRUTH_COLUMNS", ())
    cols = tuple(str(c) for c in cols)
    bad = [c for c in cols if c in FORBIDDEN_COLUMNS or c not in catalog.columns]
    if bad:
        raise ClusterMassError(
            f"model {spec.name!r} declares truth columns {bad} that no model may read (the "
            f"target and bookkeeping: {', '.join(FORBIDDEN_COLUMNS)}) or that the catalog lacks."
        )
    return tuple(c for c in cols if c not in ALLOWED_AUX_COLUMNS)


# ----------------------------------------------------------------------------- data

def _aux(ds, indices, truth_cols) -> pd.DataFrame:
    indices = np.asarray(indices, dtype=np.int64)
    aux = ds.aux(indices).reset_index(drop=True)
    aux = aux[list(ALLOWED_AUX_COLUMNS)]
    for col in truth_cols:
        aux[col] = ds.catalog[col].to_numpy()[indices]
    return aux


def _fold_data(ds, images, indices, truth_cols, with_y) -> FoldData:
    y = ds.catalog["log10_m500c"].to_numpy(dtype=np.float64)[indices] if with_y else None
    return FoldData(images[indices].astype(np.float32), _aux(ds, indices, truth_cols), y)


# ----------------------------------------------------------------------------- files

def _json_default(value):
    # Only for the fingerprint's hash: changing it would orphan every trained fold.
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def _read_record(directory: Path) -> dict | None:
    """The fold record when the fold is complete (record + every file it lists), else None."""
    path = directory / RECORD_FILE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    if record.get("status") != "complete":
        return None
    if not all((directory / f).exists() for f in record.get("files", [])):
        return None
    return record


def _fingerprint(ref: dict, config: dict, ds) -> str:
    stable = {k: v for k, v in config.items() if k not in _RUNNER_KEYS}
    blob = json.dumps({"model": ref, "config": stable, "dataset": _dataset_identity(ds)},
                      sort_keys=True, default=_json_default)
    return hashlib.sha256(blob.encode()).hexdigest()


def _dataset_identity(ds) -> dict:
    card = ds.card
    return {"name": card.get("name"), "version": card.get("version"),
            "splits_sha256": card.get("splits_sha256")}


def _save_model(model, spec: ModelSpec, directory: Path) -> str:
    """Save into ``directory``; return the loader name recorded for load_fold_predictor."""
    from benchmark.models.cnn import KerasRegressor

    if isinstance(model, KerasRegressor):
        model.save(directory)
        return "keras_recipe"
    if callable(getattr(model, "save", None)) and callable(getattr(spec.module, "load_model", None)):
        model.save(directory)
        return "module"
    try:
        with open(directory / "model.pkl", "wb") as fh:
            pickle.dump(model, fh)
        return "pickle"
    except Exception:  # noqa: BLE001  (an unpicklable user model: predictions still count)
        (directory / "model.pkl").unlink(missing_ok=True)
        return "none"


# ----------------------------------------------------------------------------- running

def _progress_bar(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="fold", disable=not enabled, dynamic_ncols=True)


def run_entry(model_name_or_module, dataset, out_dir, seeds=(0,), folds=range(10),
              config: dict | None = None, progress: bool = True, preset: str | None = None,
              schedule: str | None = None):
    """Train a model fold by fold and return its out-of-fold predictions.

    Parameters
    ----------
    model_name_or_module : str, path or module
        A baseline name (``reference``, ``reference_z``, ``lx_iterative``, ``lx_truth``,
        ``mean``, ``total_counts``), a ``.py`` code submission, a dotted module name or a
        module object following the model protocol.
    dataset : ClusterMassDataset or path
        The verified dataset (a path is opened with :class:`ClusterMassDataset`).
    out_dir : path
        Where ``seed_S/fold_K/`` folders, ``predictions.csv`` and ``run.json`` go.
    seeds : sequence of int
        Training seeds (each runs every fold).
    folds : iterable of int
        Test folds to run (default all ten).
    config : dict, optional
        Overrides of the model's config (e.g. ``{"max_epochs": 5}``).
    progress : bool
        Show progress bars (per fold: loss, val loss, ETA for Keras models).
    preset : str, optional
        Dataset preset (``ci``, ``quick``, ``fast``, ``full``): picks the shortened training
        schedule of the reference recipe (:data:`benchmark.models.cnn.TRAINING_PRESETS`).
    schedule : str, optional
        A training schedule of another preset, chosen independently of the dataset (e.g. the
        ``fast`` schedule on the ``full`` dataset); default: the dataset preset's own.

    Returns
    -------
    DataFrame
        ``image_id, log10_m500c_pred, seed`` for every image of the folds run, catalog
        order, one block per seed.
    """
    spec = resolve_model(model_name_or_module)
    ds = as_dataset(dataset)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    folds = _checked_folds(ds, folds)
    base = dict(spec.config)
    if _is_keras_recipe(spec):
        from benchmark.models.cnn import check_schedule, training_schedule

        base.update(training_schedule(check_schedule(schedule) if schedule else preset))
    base.update(config or {})
    base["image"] = dict(ds.card.get("image", {}))
    base["preset"] = preset
    if base.get("point_sources") == "truth":
        # a truth variant masks the true point sources, read from the dataset's cluster files
        base["sources_dataset_dir"] = str(ds.root)

    _truth_columns(None, spec, ds.catalog)  # a bad module-level declaration fails before training
    testsets = find_testsets(ds)

    def run_fold(images, k, seed, cfg, directory, fingerprint):
        return _run_fold(spec, ds, images, k, seed, cfg, directory, fingerprint, testsets)

    return _train_folds(spec, ds, out_dir, seeds, folds, base, run_fold, progress, testsets)


def _train_folds(spec, ds, out_dir: Path, seeds, folds, base: dict, run_fold, progress: bool,
                 testsets=(), run_many=None):
    """Run (or resume) every seed and fold with ``run_fold``; write the run's predictions.

    ``run_fold(images, k, seed, cfg, directory, fingerprint)`` gets every image of the
    dataset, read once and only when a fold has to run. A finished fold that lacks a test
    set made after it was trained predicts it now when its model was kept. ``run_many``,
    when given, runs the folds to do instead (``[(k, seed, cfg, directory, fingerprint)]``,
    e.g. one Dask task each); each writes its own folder, so the run is the same either way.
    """
    parts, records, pending = {}, {}, []
    tasks = [(int(s), k) for s in seeds for k in folds]
    with _progress_bar(len(tasks), spec.name, progress) as bar:
        for seed, k in tasks:
            cfg = dict(base, random_seed=1000 * seed + k, progress=progress,
                       progress_desc=f"{spec.name} seed {seed} fold {k}")
            directory = fold_dir(out_dir, k, seed)
            fingerprint = _fingerprint(spec.ref, cfg, ds)
            record = _read_record(directory)
            if record is None:
                pending.append((k, int(seed), cfg, directory, fingerprint))
                continue
            if record.get("fingerprint") != fingerprint:
                raise ClusterMassError(
                    f"{directory} holds a fold trained with another model, config or dataset "
                    f"(entry {record.get('entry')!r}): use a fresh out_dir or delete it to "
                    "retrain."
                )
            _cleanup_stale(directory)
            _resume_testsets(directory, record, testsets, out_dir)
            if progress:
                bar.write(f"{spec.name} seed {seed} fold {k}: complete, skipped")
            records[seed, k] = record
            bar.update(1)
        done = run_many(pending) if run_many is not None and pending else None
        images = None
        for task in pending:
            k, seed, cfg, directory, fingerprint = task
            if done is not None:
                record = done[seed, k]
            else:
                if images is None:
                    images = ds.images()
                record = run_fold(images, k, seed, cfg, directory, fingerprint)
            if progress:
                bar.write(_summary_line(record))
            records[seed, k] = record
            bar.update(1)
    for seed, k in tasks:
        directory = fold_dir(out_dir, k, seed)
        parts[seed, k] = pd.read_csv(directory / PREDICTIONS_FILE, dtype={"image_id": str})

    predictions = _assemble(ds, [parts[t] for t in tasks], seeds)
    write_table(out_dir / PREDICTIONS_FILE, predictions)
    write_record(out_dir / RUN_FILE, _run_summary(spec, base, ds, seeds, folds,
                                                 [records[t] for t in tasks]))
    return predictions


def _run_fold(spec, ds, images, k, seed, cfg, directory, fingerprint, testsets=()) -> dict:
    from benchmark.dataset.splits import check_no_leak

    idx = ds.fold_indices(k)
    check_no_leak(ds.catalog, idx)
    np.random.seed(cfg["random_seed"])  # for models that draw from the global generator
    model = _instantiate(spec, cfg)
    truth = _truth_columns(model, spec, ds.catalog)
    train = _fold_data(ds, images, idx["train"], truth, with_y=True)
    val = _fold_data(ds, images, idx["val"], truth, with_y=True)
    test = _fold_data(ds, images, idx["test"], truth, with_y=False)

    t0 = time.perf_counter()
    model.fit(train, val)
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    pred, sigma = _predict(model, test)
    predict_s = time.perf_counter() - t0
    if pred.shape != (len(test),) or not np.all(np.isfinite(pred)):
        raise ClusterMassError(
            f"model {spec.name!r} returned {pred.shape} predictions for fold {k} "
            f"({np.sum(~np.isfinite(pred))} not finite); predict() must return one finite "
            f"log10 M500c per image ({len(test)})."
        )

    sigma = _checked_sigma(sigma, spec, test, k)

    def write_files(tmp: Path) -> str:
        loader = _save_model(model, spec, tmp)
        preds = pd.DataFrame({"image_id": test.aux["image_id"].to_numpy(),
                              "log10_m500c_pred": pred, "seed": seed, "fold": k})
        if sigma is not None:
            preds[SIGMA_COLUMN] = sigma
        write_table(tmp / PREDICTIONS_FILE, preds)
        _predict_testsets(tmp, testsets, model, truth, seed, k)
        return loader

    record = {
        "entry": spec.name, "model_ref": spec.ref, "fingerprint": fingerprint,
        "seed": seed, "fold": k, "validation_fold": int(ds.splits.validation_fold(k)),
        "n_train": len(train), "n_val": len(val), "n_test": len(test),
        "aux_columns": list(ALLOWED_AUX_COLUMNS), "truth_columns": list(truth),
        "config": {kk: v for kk, v in cfg.items() if kk not in _RUNNER_KEYS},
        "fit_seconds": round(fit_s, 3), "predict_seconds": round(predict_s, 3),
        "process": {"pid": os.getpid(), "omp_threads": os.environ.get("OMP_NUM_THREADS")},
        "training": getattr(model, "training_summary", None) or {},
        "testsets": [ts.name for ts in testsets],
    }
    return _write_fold(directory, record, write_files, ds)


def _predict(model, test) -> tuple[np.ndarray, np.ndarray | None]:
    """Predictions and, for a model with ``predict_sigma``, its sigmas (dex), in one pass when
    the model offers ``predict_mean_and_sigma``."""
    if callable(getattr(model, "predict_mean_and_sigma", None)):
        mean, sigma = model.predict_mean_and_sigma(test)
    else:
        mean = model.predict(test)
        sigma = model.predict_sigma(test) if callable(getattr(model, "predict_sigma", None)) else None
    mean = np.asarray(mean, dtype=np.float64).reshape(-1)
    return mean, None if sigma is None else np.asarray(sigma, dtype=np.float64).reshape(-1)


def _checked_sigma(sigma, spec, test, k) -> np.ndarray | None:
    """Refuse sigmas that are not one finite, positive value (dex) per test image."""
    if sigma is None:
        return None
    if sigma.shape != (len(test),) or not np.all(np.isfinite(sigma) & (sigma > 0)):
        raise ClusterMassError(
            f"model {spec.name!r} returned {sigma.shape} sigmas for fold {k}; predict_sigma() "
            f"must return one finite sigma > 0 (dex) per image ({len(test)}).")
    return sigma


def _write_fold(directory: Path, record: dict, write_files, ds) -> dict:
    """Write a fold folder atomically: files first, the record last (it marks completion)."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = directory.parent / f".{directory.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        loader = write_files(tmp)
        record = {"status": "complete", **record, "loader": loader,
                  "files": sorted(p.name for p in tmp.iterdir()) + [RECORD_FILE],
                  "dataset": _dataset_identity(ds), "harness_version": harness_version(),
                  "finished_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(
                      timespec="seconds")}
        write_record(tmp / RECORD_FILE, record)
        if directory.exists():  # an incomplete fold from a killed run
            shutil.rmtree(directory)
        os.replace(tmp, directory)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    _cleanup_stale(directory)
    return record


# ----------------------------------------------------------------------------- sandboxed code

def _code_spec(path: Path) -> ModelSpec:
    """What the harness knows of a sandboxed submission without importing it."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return ModelSpec(name=path.stem, module=None, config={},
                     ref={"kind": "code", "file": path.name, "sha256": digest})


def run_code_entry(path, dataset, out_dir, seeds=CODE_SEEDS, folds=range(10),
                   config: dict | None = None, progress: bool = True, limits=None,
                   unsandboxed: bool = False, folder=None, diagnose=None, jobs: int = 1,
                   scheduler: str | None = None, schedule: str | None = None) -> pd.DataFrame:
    """Train a code submission fold by fold, each fold and seed in its own sandboxed child.

    The harness never imports the submission: every fold's child (see
    :mod:`benchmark.sandbox`) gets the fold's training and validation images and targets and
    the test images under opaque tokens, shuffled; its predictions (and sigmas, when the
    model has ``predict_sigma``) come back through files. The model never leaves the
    sandbox: with ``diagnose``, the child of seed 0 stays up after predicting and answers the
    diagnostics' predict and gradient requests; the answers are kept in the fold folder
    (:data:`SANDBOX_ANSWERS_FILE`) for :func:`load_fold_predictor` to replay.

    Parameters
    ----------
    path : path-like
        The submission's ``.py`` module (its folder is shown read-only to the child).
    dataset, out_dir, seeds, folds, config, progress
        As in :func:`run_entry`; seeds default to :data:`CODE_SEEDS`.
    limits : benchmark.sandbox.Limits, optional
    unsandboxed : bool
        Run the children without bubblewrap (a local user whose machine cannot start it);
        the run records it and the entry is not trusted.
    folder : path-like, optional
        The submission folder, copied whole into each child's sandbox; by default only the
        module is.
    diagnose : callable, optional
        ``diagnose(predictor, dataset, k)``, a module-level function (it may travel to a
        Dask worker), run on seed 0's folds while the child serves
        (``benchmark.diagnostics.diagnose_in_sandbox``).
    jobs : int
        Folds run at once: above 1, each fold and seed is one Dask task on a LocalCluster
        of ``jobs`` processes. The run is the same as the serial one.
    scheduler : str, optional
        Address of a running Dask scheduler to send the fold tasks to instead (default: the
        setting ``DASK_SCHEDULER``, as generation; empty: none).
    schedule : str, optional
        The training schedule (:data:`benchmark.models.cnn.TRAINING_PRESETS`) the reference
        recipe follows for a module that defines only ``build_keras_model`` (sent to every
        child as ``config["keras_recipe"]``); default: that of the dataset's preset.

    Returns
    -------
    DataFrame
        ``image_id, log10_m500c_pred, seed`` as :func:`run_entry`.
    """
    from benchmark import sandbox
    from benchmark.models.cnn import check_schedule, training_schedule
    from benchmark.core.settings import current

    path = Path(path).expanduser().resolve()
    if not path.is_file() or path.suffix != ".py":
        raise ClusterMassError(f"code submission {path} is not a .py file: pass the Python "
                               "module that defines make_model(config)")
    if not unsandboxed and (reason := sandbox.probe()):
        raise sandbox.SandboxUnavailable(f"cannot sandbox {path.name}: {reason}. A local run "
                                         "may pass --unsandboxed; its entry is then not trusted")
    spec = _code_spec(path)
    spec.ref["sandbox"] = "none (--unsandboxed)" if unsandboxed else "bubblewrap"
    ds = as_dataset(dataset)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    folds = _checked_folds(ds, folds)
    # The dataset's own preset, not the command line's: they differ with --dataset.
    recipe = training_schedule(check_schedule(schedule) if schedule else ds.card.get("preset"))
    base = {**(config or {}), "image": dict(ds.card.get("image", {})), "keras_recipe": recipe}
    limits = limits or sandbox.Limits()
    testsets = find_testsets(ds)
    job = {"spec": spec, "path": path, "limits": limits, "unsandboxed": unsandboxed,
           "folder": folder, "diagnose": diagnose}

    def run_fold(images, k, seed, cfg, directory, fingerprint):
        return _run_sandboxed_fold(spec, path, ds, images, k, seed, cfg, directory,
                                   fingerprint, limits, unsandboxed, folder, testsets,
                                   diagnose if seed == 0 else None)

    from benchmark.core.distributed import map_on_dask

    scheduler = scheduler or current().dask_scheduler
    run_many = None
    if jobs > 1 or scheduler:
        def run_many(pending):
            hidden = [ts.dataset.root for ts in testsets if ts.hidden]
            args = [({**job, "dataset": Path(ds.root), "hidden": hidden[0] if hidden else None,
                      "task": task},) for task in pending]
            keys = [f"{spec.name}-seed{t[1]}-fold{t[0]}-{uuid.uuid4().hex[:8]}" for t in pending]
            return {(r["seed"], r["fold"]): r
                    for r in map_on_dask(_sandboxed_task, args, keys, workers=jobs,
                                         scheduler=scheduler, retries=sandbox.TASK_RETRIES)}

    return _train_folds(spec, ds, out_dir, seeds, folds, base, run_fold, progress, testsets,
                        run_many)


def _sandboxed_task(job: dict) -> dict:
    """One fold and seed of a code entry, as a Dask task: opens the dataset itself (the
    worker shares the file system) and writes the fold folder; returns its record."""
    from benchmark.dataset.loader import ClusterMassDataset

    ds = ClusterMassDataset(job["dataset"])
    # The parent's hidden set, found again by its folder; else the worker's own setting
    # (the same environment for a LocalCluster).
    testsets = find_testsets(ds, hidden_root=Path(job["hidden"]).parent if job["hidden"]
                             else None)
    k, seed, cfg, directory, fingerprint = job["task"]
    return _run_sandboxed_fold(job["spec"], job["path"], ds, ds.images(), k, seed, cfg,
                               directory, fingerprint, job["limits"], job["unsandboxed"],
                               job["folder"], testsets,
                               job["diagnose"] if seed == 0 else None)


def _sandbox_scratch_root() -> Path:
    """``build/sandbox``, cleared of the scratch folders of killed runs (they hold targets)."""
    from benchmark.core.settings import current

    root = current().build_dir / "sandbox"
    root.mkdir(parents=True, exist_ok=True)
    _remove_dead(root.glob("*-pid*-*"), lambda name: name.rsplit("-pid", 1)[1].split("-")[0])
    return root


#: The diagnostics' requests to a sandboxed fold model and its answers, kept for replay.
SANDBOX_ANSWERS_FILE = "sandbox_answers.npz"


def _run_sandboxed_fold(spec, path, ds, images, k, seed, cfg, directory, fingerprint, limits,
                        unsandboxed, folder=None, testsets=(), diagnose=None) -> dict:
    import tempfile

    from benchmark import sandbox
    from benchmark.dataset.splits import check_no_leak

    idx = ds.fold_indices(k)
    check_no_leak(ds.catalog, idx)
    parts = {name: _fold_data(ds, images, idx[name], (), with_y=name != "test")
             for name in ("train", "val", "test")}
    child_cfg = {kk: v for kk, v in cfg.items() if kk not in _RUNNER_KEYS}
    answers = None
    with tempfile.TemporaryDirectory(dir=_sandbox_scratch_root(),
                                     prefix=f"{spec.name}-pid{os.getpid()}-") as scratch:
        scratch = Path(scratch)
        # The test sets' images join the test fold's under the same shuffled opaque tokens:
        # the child cannot tell which images are scored for what.
        tokens = sandbox.write_fold_inputs(scratch, parts["train"], parts["val"],
                                           _with_testsets(parts["test"], testsets),
                                           child_cfg, cfg["random_seed"])
        t0 = time.perf_counter()
        with sandbox.FoldSession(path, scratch, limits, unsandboxed=unsandboxed, folder=folder,
                                 serve=diagnose is not None) as session:
            session.wait_predictions()
            seconds = time.perf_counter() - t0
            # Read before the first diagnostic request: what the requests show (the
            # occluded cores reveal R500c) can no longer change the predictions.
            pred = sandbox.read_fold_predictions(scratch, tokens)
            if diagnose is not None:
                remote = SandboxPredictor(session, sandbox.read_model_info(scratch))
                try:
                    diagnose(remote, ds, k)
                except ClusterMassError as exc:
                    raise SubmissionError(f"seed {seed} fold {k}: the submission failed while it "
                                          f"answered the interpretation diagnostics, after it "
                                          f"predicted; nothing is scored: {exc}") from exc
                answers = remote.answers
        log = session.log
    is_set = pred["image_id"].astype(str).str.startswith(TESTSET_PREFIX).to_numpy()
    set_pred, pred = pred[is_set], pred[~is_set].reset_index(drop=True)
    if SIGMA_COLUMN in pred:
        pred[SIGMA_COLUMN] = _checked_code_sigma(pred[SIGMA_COLUMN].to_numpy(), seed, k)
    pred = pred.assign(seed=seed, fold=k)
    record = {
        "entry": spec.name, "model_ref": spec.ref, "fingerprint": fingerprint,
        "seed": seed, "fold": k, "validation_fold": int(ds.splits.validation_fold(k)),
        "n_train": len(parts["train"]), "n_val": len(parts["val"]),
        "n_test": len(parts["test"]), "aux_columns": list(sandbox.SANDBOX_AUX_COLUMNS),
        "truth_columns": [], "config": child_cfg, "fit_seconds": round(seconds, 3),
        "predict_seconds": 0.0, "sandbox": spec.ref["sandbox"],
        "limits": dataclasses.asdict(limits), "training": {},
        "testsets": [ts.name for ts in testsets], "process": {"pid": os.getpid()},
        "diagnostics": None if answers is None else {
            "ran": "in the sandbox, by the fold's own child after it predicted",
            **{key: answers[key] for key in ("has_gradient", "normalisation", "n_requests")}},
    }
    if log.strip():
        logger.info("%s seed %d fold %d printed:\n%s", spec.name, seed, k, log.strip()[-2000:])

    def write_files(tmp: Path) -> str:
        write_table(tmp / PREDICTIONS_FILE, pred)
        _split_testsets(set_pred[["image_id", "log10_m500c_pred"]], tmp, testsets, seed, k)
        if answers is not None:
            np.savez_compressed(tmp / SANDBOX_ANSWERS_FILE, **answers["arrays"])
        return "none"

    return _write_fold(directory, record, write_files, ds)


def _checked_code_sigma(sigma: np.ndarray, seed: int, k: int) -> np.ndarray:
    """A code entry's sigmas, refused like a prediction submission's uncertainty column."""
    from benchmark.submission import MAX_SIGMA_DEX

    bad = ~(np.isfinite(sigma) & (sigma > 0) & (sigma <= MAX_SIGMA_DEX))
    if bad.any():
        raise ClusterMassError(
            f"seed {seed} fold {k}: predict_sigma() returned {int(bad.sum())} sigma(s) not "
            f"finite and in (0, {MAX_SIGMA_DEX}] dex (e.g. {sigma[bad][:3].tolist()}); return "
            "one finite sigma > 0 (dex) per test image, or no predict_sigma at all")
    return sigma


def _checked_folds(ds, folds) -> list[int]:
    n_folds = ds.splits.n_folds
    folds = [int(k) for k in folds]
    bad = [k for k in folds if not 0 <= k < n_folds]
    if bad:
        raise ClusterMassError(f"folds {bad} do not exist: the dataset has folds 0-{n_folds - 1}.")
    return folds


def _cleanup_stale(directory: Path) -> None:
    """Remove temporary folders of this fold left by killed runs (dead process ids only)."""
    _remove_dead(directory.parent.glob(f".{directory.name}.tmp-*"),
                 lambda name: name.rsplit(".tmp-", 1)[1].split("-")[0])


def _remove_dead(folders, pid_in_name) -> None:
    """Remove the folders whose writer (the process id in the name) has died."""
    for stale in folders:
        try:
            pid = int(pid_in_name(stale.name))
        except (IndexError, ValueError):
            continue
        if pid != os.getpid() and _pid_alive(pid):
            continue  # another worker is writing there right now
        shutil.rmtree(stale, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def _summary_line(record: dict) -> str:
    line = (f"{record['entry']} seed {record['seed']} fold {record['fold']}: "
            f"fit {record['fit_seconds']:.1f} s, n_train {record['n_train']}, "
            f"n_test {record['n_test']}")
    tr = record.get("training") or {}
    if tr.get("epochs_run"):
        line += (f", {tr['epochs_run']} epochs (best {tr['best_epoch']}, "
                 f"val loss {tr['best_val_loss']:.4f})")
    return line


def _assemble(ds, parts, seeds) -> pd.DataFrame:
    cols = ["image_id", "log10_m500c_pred", "seed"]
    if not parts:
        return pd.DataFrame(columns=cols)
    allp = pd.concat(parts, ignore_index=True)
    if all(SIGMA_COLUMN in p.columns for p in parts):
        cols.append(SIGMA_COLUMN)
    order = pd.Series(np.arange(len(ds.catalog)), index=ds.catalog["image_id"].to_numpy())
    allp["_row"] = order.reindex(allp["image_id"].to_numpy()).to_numpy()
    allp["_seed_rank"] = allp["seed"].map({int(s): i for i, s in enumerate(seeds)})
    allp = allp.sort_values(["_seed_rank", "_row"], kind="stable")
    return allp[cols].reset_index(drop=True)


def _run_summary(spec, base, ds, seeds, folds, records) -> dict:
    truth = sorted({c for r in records for c in r.get("truth_columns", [])})
    return {
        "entry": spec.name,
        "model_ref": spec.ref,
        "config": base,
        "seeds": [int(s) for s in seeds],
        "folds": folds,
        "truth_columns": truth,
        "uses_truth": bool(truth),
        "aux_columns": list(ALLOWED_AUX_COLUMNS),
        "dataset": _dataset_identity(ds),
        "n_params": next((r["training"].get("n_params") for r in records
                          if (r.get("training") or {}).get("n_params")), None),
        "fit_seconds_total": round(sum(r.get("fit_seconds", 0.0) for r in records), 1),
        "harness_version": harness_version(),
    }


# ----------------------------------------------------------------------------- predictors

class Predictor:
    """A trained fold model behind one interface (used by the diagnostics).

    Attributes
    ----------
    model : object
        The fold's model (protocol object).
    record : dict
        The fold record (``fold.json``).
    truth_columns : list of str
        Truth columns the model needs in ``aux``.
    """

    def __init__(self, model, record: dict):
        self.model = model
        self.record = record
        self.truth_columns = list(record.get("truth_columns", []))

    def _aux(self, aux, n: int) -> pd.DataFrame:
        if aux is None:
            raise ClusterMassError("aux is required: a table with redshift and pixel_arcsec "
                                   "(ClusterMassDataset.aux(indices)).")
        aux = pd.DataFrame(aux).reset_index(drop=True)
        need = ["redshift", "pixel_arcsec"] + self.truth_columns
        missing = [c for c in need if c not in aux.columns]
        if missing or len(aux) != n:
            raise ClusterMassError(
                f"aux must have {n} rows and columns {need}; missing {missing}, {len(aux)} rows."
            )
        if "image_id" not in aux.columns:
            aux["image_id"] = [f"image_{i}" for i in range(n)]
        return aux

    @staticmethod
    def _counts(counts) -> np.ndarray:
        counts = np.asarray(counts, dtype=np.float32)
        if counts.ndim == 2:
            counts = counts[None]
        if counts.ndim != 3:
            raise ClusterMassError(f"counts have shape {counts.shape}: expected (N, 128, 128).")
        return counts

    def predict(self, counts, aux) -> np.ndarray:
        """log10 M500c of each image (counts (N, 128, 128), aux table)."""
        counts = self._counts(counts)
        data = FoldData(counts, self._aux(aux, len(counts)), None)
        return np.asarray(self.model.predict(data), dtype=np.float64).reshape(-1)

    @property
    def has_gradient(self) -> bool:
        """Whether :meth:`gradient` can return d log10M / d counts."""
        return callable(getattr(self.model, "gradient", None)) or callable(
            getattr(self.model, "predict_tensor", None)) or (
            getattr(self.model, "keras_model", None) is not None
            and callable(getattr(self.model, "preprocess", None)))

    def gradient(self, counts, aux, batch_size: int = 64):
        """d log10 M500c / d counts, float32 (N, 128, 128); None without gradients."""
        if not self.has_gradient:
            return None
        counts = self._counts(counts)
        aux = self._aux(aux, len(counts))
        if callable(getattr(self.model, "gradient", None)):  # the model's own, FoldData in
            grad = self.model.gradient(FoldData(counts, aux, None))
            return np.asarray(grad, dtype=np.float32).reshape(counts.shape)
        import tensorflow as tf

        out = np.empty_like(counts)
        for start in range(0, len(counts), batch_size):
            sl = slice(start, start + batch_size)
            c = tf.convert_to_tensor(counts[sl])
            a = aux.iloc[sl].reset_index(drop=True)
            with tf.GradientTape() as tape:
                tape.watch(c)
                if callable(getattr(self.model, "predict_tensor", None)):
                    y = self.model.predict_tensor(c, a)
                else:
                    y = self.model.keras_model(self.model.preprocess(c, a), training=False)
                # Each output depends on its own image only: the sum's gradient is per image.
                total = tf.reduce_sum(y)
            grad = tape.gradient(total, c)
            if grad is None:
                return None
            out[sl] = grad.numpy()
        return out


def _request_key(op: str, counts: np.ndarray, aux: pd.DataFrame) -> str:
    """Name of one diagnostics request: what the model is asked, not the ids it is shown."""
    h = hashlib.sha256(op.encode())
    h.update(np.ascontiguousarray(counts, dtype=np.float32).tobytes())
    for column in ("redshift", "pixel_arcsec"):
        if column in aux:
            h.update(aux[column].to_numpy(dtype=np.float64).tobytes())
    return f"{op}_{h.hexdigest()[:32]}"


class _ModelFacts:
    """What the diagnostics may know of a model that stayed in the sandbox."""

    def __init__(self, normalisation):
        self.normalisation = normalisation


class SandboxPredictor(Predictor):
    """A fold model that stays in its sandbox: predict and gradient are requests to the
    still-running child (:class:`benchmark.sandbox.FoldSession`); every answer is kept
    (``answers``) so that :class:`ReplayPredictor` gives the same ones later."""

    sandboxed = True

    def __init__(self, session, info: dict):
        super().__init__(_ModelFacts(info.get("normalisation")), {"truth_columns": []})
        self._session = session
        self._has_gradient = bool(info.get("has_gradient"))
        self.answers = {"has_gradient": self._has_gradient,
                        "normalisation": info.get("normalisation"), "n_requests": 0,
                        "arrays": {}}

    @property
    def has_gradient(self) -> bool:
        return self._has_gradient

    def _ask(self, op: str, counts, aux) -> np.ndarray:
        counts = self._counts(counts)
        aux = self._aux(aux, len(counts))
        values = self._session.request(op, counts, aux)
        if not np.all(np.isfinite(values)):
            raise ClusterMassError(f"the submission's {op} returned non-finite values for the "
                                   "diagnostic images; it must return finite floats")
        self.answers["arrays"][_request_key(op, counts, aux)] = values
        self.answers["n_requests"] += 1
        return values

    def predict(self, counts, aux) -> np.ndarray:
        return self._ask("predict", counts, aux)

    def gradient(self, counts, aux, batch_size: int = 64):
        return self._ask("gradient", counts, aux) if self._has_gradient else None


class ReplayPredictor(SandboxPredictor):
    """A sandboxed fold model's recorded answers (:data:`SANDBOX_ANSWERS_FILE`): the
    diagnostics run again with the settings they ran with in the sandbox get the same
    answers; any other request is refused."""

    def __init__(self, directory: Path, record: dict):
        facts = record["diagnostics"]
        super().__init__(None, facts)
        self.record = record
        with np.load(directory / SANDBOX_ANSWERS_FILE, allow_pickle=False) as npz:
            self._arrays = {key: npz[key] for key in npz.files}

    def _ask(self, op: str, counts, aux) -> np.ndarray:
        counts = self._counts(counts)
        key = _request_key(op, counts, self._aux(aux, len(counts)))
        if key not in self._arrays:
            raise ClusterMassError(
                f"fold {self.record.get('fold')} of code entry {self.record.get('entry')!r} "
                "was diagnosed in its sandbox with the default diagnostics settings (8 clusters "
                "per fold, seed 0, default steps); other settings would need the model, which "
                "stayed in the sandbox: run the diagnostics with the defaults")
        return self._arrays[key]


def load_fold_predictor(out_dir, k: int, seed: int = 0) -> Predictor:
    """Load the trained model of fold ``k`` (and seed) written by :func:`run_entry`."""
    directory = fold_dir(out_dir, k, seed)
    record = _read_record(directory)
    if record is None:
        raise ClusterMassError(f"{directory} holds no complete fold: run training for fold {k} "
                               f"(seed {seed}) first.")
    loader = record.get("loader")
    if loader == "keras_recipe":
        from benchmark.models.cnn import load_model

        model = load_model(directory)
    elif loader == "module":
        model = _spec_from_ref(record["model_ref"]).module.load_model(directory)
    elif loader == "pickle":
        _spec_from_ref(record["model_ref"])  # imports the module the pickle refers to
        with open(directory / "model.pkl", "rb") as fh:
            model = pickle.load(fh)
    elif record.get("sandbox") and record.get("diagnostics") and (
            directory / SANDBOX_ANSWERS_FILE).is_file():
        return ReplayPredictor(directory, record)
    elif record.get("sandbox"):
        _spec_from_ref(record["model_ref"])  # says why a sandboxed fold has no model
    else:
        raise ClusterMassError(
            f"the model of {directory} was not saved (no save()/load_model() and not picklable):"
            " add save(dir) and a module-level load_model(dir) to the submission and retrain."
        )
    return Predictor(model, record)


# ----------------------------------------------------------------------------- CLI glue

def run_dir_of(results_dir, name: str) -> Path:
    """``results_dir/runs/<slug>``: the training folder of the entry ``<slug>.json``."""
    return Path(results_dir) / "runs" / slugify(name)


def train_baselines(dataset_dir, results_dir, entries, seeds=(0,), folds=None, preset=None,
                    progress: bool = True, schedule: str | None = None) -> list[Path]:
    """Train (resumably) and score baseline entries: the body of ``clustermass train``.

    Parameters
    ----------
    dataset_dir : path
        ``data/<preset>``.
    results_dir : path
        ``results/<preset>``; runs go to ``results_dir/runs/<slug>/``, entries to
        ``results_dir/entries/<slug>.json`` (+ ``.predictions.csv``), where ``<slug>`` is
        the entry name with dashes (``lx_iterative`` -> ``lx-iterative``).
    entries : list of str
        Baseline names (see :data:`benchmark.models.BASELINES`).
    seeds, folds, preset, schedule
        As in :func:`run_entry` (folds None: all).

    Returns
    -------
    list of Path
        Entry files written (empty for a subset of folds: an entry needs every image).
    """
    from benchmark.models import BASELINES

    unknown = [e for e in entries if e not in BASELINES]
    if unknown:
        raise ClusterMassError(f"unknown entries {unknown}: choose from {', '.join(BASELINES)}.")
    ds = as_dataset(dataset_dir)
    folds = list(range(ds.splits.n_folds)) if folds is None else list(folds)
    written = []
    for name in entries:
        run_dir = run_dir_of(results_dir, name)
        preds = run_entry(name, ds, run_dir, seeds=seeds, folds=folds, progress=progress,
                          preset=preset, schedule=schedule)
        if len(folds) == ds.splits.n_folds:
            written.append(write_baseline_entry(name, preds, ds, run_dir,
                                                Path(results_dir) / "entries"))
        else:
            logger.info("%s: folds %s trained; run all folds to write its entry", name, folds)
    return written


def evaluate_code_submission(path, dataset_dir, results_dir, seeds=CODE_SEEDS, preset=None,
                             config: dict | None = None, progress: bool = True, limits=None,
                             unsandboxed: bool = False, metadata: dict | None = None,
                             folder=None, overwrite: bool = False, diagnose=None,
                             jobs: int = 1, n_boot: int = 1000) -> Path:
    """Train a code submission fold by fold in the sandbox and write its entry.

    The entry is named after ``metadata["name"]``, else the submission folder, else the
    module. It is trusted only when every fold ran in the sandbox, and ranked only when it
    was trained on the harness's seeds (:data:`CODE_SEEDS`). ``diagnose`` and ``jobs`` as
    :func:`run_code_entry`; ``n_boot`` as :func:`write_baseline_entry`.
    """
    from benchmark.models import BASELINES

    path = Path(path)
    ds = as_dataset(dataset_dir)
    name = (metadata or {}).get("name") or (Path(folder).name if folder else path.stem)
    slug = slugify(name)
    if slug in {slugify(b) for b in BASELINES}:
        raise ClusterMassError(f"the submission's name {name!r} is a baseline's: give it another "
                               "name (metadata.json 'name', or rename the folder or module)")
    entry_file = Path(results_dir) / "entries" / f"{slug}.json"
    if entry_file.exists() and not overwrite:
        raise ClusterMassError(f"an entry {entry_file} exists already: choose another name or "
                               "pass --force to replace it")
    run_dir = run_dir_of(results_dir, name)
    if overwrite and run_dir.exists():
        shutil.rmtree(run_dir)  # a replaced submission retrains from scratch
    preds = run_code_entry(path, ds, run_dir, seeds=seeds, folds=range(ds.splits.n_folds),
                           config=config, progress=progress, limits=limits,
                           unsandboxed=unsandboxed, folder=folder, diagnose=diagnose,
                           jobs=jobs)
    ranked = tuple(sorted(set(int(s) for s in seeds))) == CODE_SEEDS
    notes = [] if ranked else [f"not ranked: trained on seeds {sorted(set(seeds))}; a ranked "
                               f"code entry is trained on the harness's seeds {list(CODE_SEEDS)}"]
    if unsandboxed:
        notes.append("not trusted: trained without the sandbox (--unsandboxed)")
    metadata = {**(metadata or {}), "name": name, "kind": "code", "code": path.name,
                "trusted": not unsandboxed, "ranked": ranked, "notes": "; ".join(notes) or None,
                "sandbox": "none (--unsandboxed)" if unsandboxed else "bubblewrap"}
    return write_baseline_entry(name, preds, ds, run_dir, Path(results_dir) / "entries",
                                metadata=metadata, n_boot=n_boot)


def write_baseline_entry(name: str, predictions: pd.DataFrame, dataset, run_dir,
                         entries_dir, metadata: dict | None = None, n_boot: int = 1000) -> Path:
    """Score out-of-fold predictions and write the entry and its predictions.

    Parameters
    ----------
    name : str
        Entry name (a baseline name, or the stem of a code submission); the slug is
        :func:`benchmark.entries.slugify` of it.
    predictions : DataFrame
        ``image_id, log10_m500c_pred, seed`` of every image (from :func:`run_entry`).
    dataset : ClusterMassDataset or path
    run_dir : path
        The ``out_dir`` of :func:`run_entry` (its ``run.json`` supplies the metadata).
    entries_dir : path
        ``results/<preset>/entries``: writes ``<slug>.json`` and ``<slug>.predictions.csv``.
    metadata : dict, optional
        Extra metadata (e.g. ``kind="code"``, ``code``, ``authors``).
    n_boot : int
        Bootstrap resamples of :func:`benchmark.metrics.score` and of the test sets'
        intervals (:func:`benchmark.testsets_scoring.score_testsets`).

    Returns
    -------
    Path
        The entry file.
    """
    from benchmark.metrics import score

    ds = as_dataset(dataset)
    run = json.loads((Path(run_dir) / RUN_FILE).read_text())
    metrics = score(predictions, ds.catalog, ds.splits, n_boot=n_boot)
    testsets = find_testsets(ds)
    if testsets:
        metrics["testsets"] = score_testsets(run_dir, ds, predictions, testsets,
                                             n_boot=n_boot)
    meta = _entry_metadata(name, run)
    meta.update(metadata or {})
    baseline = meta.get("kind") == "baseline"
    slug = slugify(name)
    trusted = meta.get("trusted", True)
    display_name = meta.pop("name", None) or meta.pop("display_name")
    meta.pop("display_name", None)
    entry = make_entry(display_name, "baseline" if baseline else "submission",
                       metrics, ds, metadata=meta, slug=slug, trusted=trusted)
    entries_dir = Path(entries_dir)
    write_predictions(entries_dir / entry.predictions_file, predictions)
    return write_entry(entries_dir / f"{slug}.json", entry)


def _entry_metadata(name: str, run: dict) -> dict:
    from benchmark.models import DESCRIPTIONS, DISPLAY_NAMES, ORACLES

    baseline = run["model_ref"].get("kind") == "baseline"
    oracle = baseline and name in ORACLES  # the physical floor: truth, not observable
    truth = run["truth_columns"]
    bound = "oracle, not observable" if oracle else "optimistic bound"
    notes = ("uses truth columns " + ", ".join(truth) + f" ({bound})") if truth else None
    meta = {
        "display_name": DISPLAY_NAMES.get(name, name) if baseline else name,
        "kind": "baseline" if baseline else "code",
        "description": DESCRIPTIONS.get(name) if baseline else None,
        "notes": notes,
        "authors": ["clustermass baselines"] if baseline else [],
        "trusted": True,  # trained by the harness under the benchmark's rules
        "seeds": run["seeds"],
        "n_parameters": run.get("n_params"),
        "hardware": _hardware(),
        "external_data": False,
        "uses_truth": bool(truth),
        "truth_columns": truth,
        "aux_columns": run["aux_columns"],
        "training_config": run["config"],
        "training_seconds": run["fit_seconds_total"],
        "model_ref": run["model_ref"],
    }
    if oracle:
        meta["oracle"] = True
    return meta


def _hardware() -> str:
    """What trained the entry: the CPU, and the GPUs TensorFlow sees (``make ... ACCEL=gpu``)."""
    import platform

    cpu = f"{platform.machine()} CPU x{os.cpu_count()} ({platform.system()})"
    gpus = _tensorflow_gpus()
    return f"{cpu}; GPU: {', '.join(gpus)}" if gpus else cpu


def _tensorflow_gpus() -> list[str]:
    # Only where TensorFlow is already loaded (a Keras entry): importing it costs seconds,
    # and an entry that never touched it ran on the CPU.
    import sys

    tf = sys.modules.get("tensorflow")
    if tf is None:
        return []
    names = []
    for device in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(device)
        names.append(str(details.get("device_name", device.name)))
    return names


# ----------------------------------------------------------------------------- test sets in a fold
#
# Each fold model predicts the extra test sets (benchmark.testsets_scoring) beside its own
# test fold: in process, or inside the sandbox with the fold's test images.

def _testset_fold_data(ts: ExtraTestSet, truth_cols=()) -> FoldData:
    """Every image of the set as a model sees it: no targets."""
    idx = np.arange(len(ts.dataset))
    return _fold_data(ts.dataset, ts.images(), idx, truth_cols, with_y=False)


def _predict_testsets(directory: Path, testsets, model, truth_cols, seed: int, k: int) -> None:
    """Predict every test set the fold lacks with an in-process model."""
    for ts in testsets:
        if has_testset(directory, ts):
            continue
        data = _testset_fold_data(ts, truth_cols)
        # a model reading files of the dataset it predicts (lx_truth's source lists) reads the set's
        bound = model.for_dataset(ts.dataset.root) if hasattr(model, "for_dataset") else model
        pred, _ = _predict(bound, data)
        write_testset(directory, ts, pred, data.aux["image_id"].to_numpy(), seed, k)


def _resume_testsets(directory: Path, record: dict, testsets, out_dir: Path) -> None:
    """Predict the sets a finished fold lacks (sets made after it was trained), when its
    model was kept; a sandboxed fold's model stayed in the sandbox, so those sets stay
    unscored for it (retrain the entry to score them)."""
    missing = [ts for ts in testsets if not has_testset(directory, ts)]
    if not missing:
        return
    if record.get("sandbox") or record.get("loader") in (None, "none"):
        logger.warning("%s seed %s fold %s: no kept model to predict the test set(s) %s made "
                       "after it was trained; retrain the entry to score them",
                       record.get("entry"), record.get("seed"), record.get("fold"),
                       ", ".join(t.name for t in missing))
        return
    predictor = load_fold_predictor(out_dir, record["fold"], record["seed"])
    _predict_testsets(directory, missing, predictor.model, record.get("truth_columns", ()),
                      record["seed"], record["fold"])


def _with_testsets(test: FoldData, testsets) -> FoldData:
    """The fold's test part followed by every test set, ids of the sets prefixed (the
    sandboxed child sees all of them under one shuffled run of opaque tokens)."""
    images, aux = [test.images], [test.aux]
    for ts in testsets:
        data = _testset_fold_data(ts)
        data.aux["image_id"] = TESTSET_PREFIX + ts.name + "/" + data.aux["image_id"]
        images.append(data.images)
        aux.append(data.aux)
    return FoldData(np.concatenate(images), pd.concat(aux, ignore_index=True), None)


def _split_testsets(pred: pd.DataFrame, directory: Path, testsets, seed: int, k: int):
    """Write the sets' predictions of a sandboxed fold; return the fold's own."""
    ids = pred["image_id"].astype(str)
    is_set = ids.str.startswith(TESTSET_PREFIX).to_numpy()
    for ts in testsets:
        prefix = TESTSET_PREFIX + ts.name + "/"
        mine = pred[ids.str.startswith(prefix).to_numpy()]
        order = pd.Index(mine["image_id"].str[len(prefix):]).get_indexer(
            ts.dataset.catalog["image_id"])
        write_testset(directory, ts, mine["log10_m500c_pred"].to_numpy()[order],
                       ts.dataset.catalog["image_id"].to_numpy(), seed, k)
    return pred[~is_set].reset_index(drop=True)
