"""``clustermass evaluate``: score a submission, predictions or code, into an entry file.

- predictions (a ``.csv``/``.parquet`` file, or a folder holding ``predictions.*`` and
  ``metadata.*``): validated and scored by :func:`evaluate_predictions` (an untrusted
  entry);
- code (a ``.py`` module with ``make_model(config)``, or a folder holding one such module
  and an optional ``metadata.json``): trained fold by fold inside the sandbox by
  :func:`benchmark.training.evaluate_code_submission` (a trusted entry; see
  :mod:`benchmark.sandbox`).
"""

from __future__ import annotations

from pathlib import Path

from benchmark.core.errors import EntryError, SubmissionError
from benchmark.dataset.loader import ClusterMassDataset
from benchmark.entries import Entry, make_entry, slugify, write_entry, write_predictions
from benchmark.metrics import score
from benchmark.submission import load_submission, validate_submission
from benchmark.testsets_scoring import find_testsets, not_scored_testsets

__all__ = ["evaluate_submission", "evaluate_predictions", "submission_kind", "code_module",
           "code_metadata"]

_PRED_SUFFIXES = (".csv", ".parquet", ".pq")
#: Why a prediction entry has no score on the extra test sets (shift track, hidden set).
NOT_SCORED_PREDICTIONS = ("a prediction-only entry: the harness scores the extra test sets "
                          "with the fold models it trains itself (baselines, code entries)")


def submission_kind(path) -> str:
    """``"predictions"`` or ``"code"`` for a submission path; raise when neither."""
    path = Path(path)
    if path.is_file():
        if path.suffix.lower() in _PRED_SUFFIXES:
            return "predictions"
        if path.suffix == ".py":
            return "code"
    elif path.is_dir():
        if any(path.glob("predictions.*")) or any(
                p.suffix.lower() in _PRED_SUFFIXES for p in path.iterdir()):
            return "predictions"
        if len(list(path.glob("*.py"))) == 1:
            return "code"
    elif not path.exists():
        raise SubmissionError(f"submission {path} does not exist")
    raise SubmissionError(
        f"{path} is neither a predictions submission (predictions.csv/.parquet + "
        "metadata.json/.yaml, see `clustermass format`) nor a code submission (one .py "
        "module defining make_model(config), alone or in a folder with metadata.json)")


def code_module(path) -> Path:
    """The module of a code submission: the ``.py`` file, or the one inside its folder."""
    path = Path(path)
    return path if path.is_file() else next(path.glob("*.py"))


#: Descriptive keys a code submission's metadata.json may carry (the harness sets the rest).
CODE_METADATA_KEYS = ("name", "authors", "code_url", "description", "paper_url")


def code_metadata(path) -> dict:
    """The descriptive metadata of a code submission folder (empty for a bare module)."""
    from benchmark.submission import read_metadata

    path = Path(path)
    found = sorted(path.glob("metadata.*")) if path.is_dir() else []
    if not found:
        return {}
    meta = read_metadata(found[0])
    unknown = sorted(set(meta) - set(CODE_METADATA_KEYS))
    if unknown:
        raise SubmissionError(f"{found[0].name}: unknown key(s) {unknown}; a code submission's "
                              f"metadata may hold {', '.join(CODE_METADATA_KEYS)} (the harness "
                              "chooses seeds and records everything else)")
    if "name" in meta and not (isinstance(meta["name"], str) and meta["name"].strip()):
        raise SubmissionError(f"{found[0].name}: 'name' must be a non-empty string")
    return meta


def evaluate_submission(path, dataset_dir, results_dir, seeds=None, preset=None,
                        n_boot: int = 1000, overwrite: bool = False,
                        unsandboxed: bool = False, jobs: int = 1) -> Path:
    """Evaluate a submission and write ``results_dir/entries/<slug>.json``.

    Parameters
    ----------
    path : path-like
        Predictions file/folder or code module/folder (see :func:`submission_kind`).
    dataset_dir : path-like
        The dataset (``data/<preset>``).
    results_dir : path-like
        ``results/<preset>``; the entry goes to its ``entries/`` folder.
    seeds : tuple of int, optional
        Training seeds of a code submission; default the harness's
        (:data:`benchmark.training.CODE_SEEDS`). Predictions carry their own.
    preset : str, optional
        Passed to the training harness for code submissions.
    n_boot : int
        Cluster bootstrap resamples for the intervals.
    overwrite : bool
        Replace an existing prediction entry of the same slug.
    unsandboxed : bool
        Train a code submission without the sandbox (its entry is then not trusted).
    jobs : int
        Folds of a code submission trained at once, one Dask task each (a LocalCluster, or
        the scheduler of the setting ``DASK_SCHEDULER``); 1: one after the other.

    Returns
    -------
    Path
        The entry file written.
    """
    kind = submission_kind(path)
    entries_dir = Path(results_dir) / "entries"
    if kind == "code":
        from benchmark.diagnostics import diagnose_in_sandbox
        from benchmark.training import CODE_SEEDS, evaluate_code_submission

        # The model never leaves the sandbox: its diagnostics are asked while it runs there.
        return Path(evaluate_code_submission(
            code_module(path), dataset_dir, results_dir,
            seeds=tuple(seeds) if seeds else CODE_SEEDS, preset=preset,
            unsandboxed=unsandboxed, metadata=code_metadata(path),
            folder=Path(path) if Path(path).is_dir() else None, overwrite=overwrite,
            diagnose=diagnose_in_sandbox, jobs=jobs, n_boot=n_boot))
    entry = evaluate_predictions(path, None, dataset_dir, entries_dir, n_boot=n_boot,
                                 overwrite=overwrite)
    return entries_dir / f"{entry.slug}.json"


def evaluate_predictions(pred_path, meta_path, dataset, out_dir, n_boot: int = 1000,
                         rng_seed: int = 0, overwrite: bool = False) -> Entry:
    """Validate, score and record a prediction submission.

    Parameters
    ----------
    pred_path : path-like
        Predictions file, or a directory holding predictions and metadata.
    meta_path : path-like or None
        Metadata file (None: found beside the predictions).
    dataset : ClusterMassDataset or path-like
    out_dir : path-like
        Entries directory; writes ``<slug>.json`` and ``<slug>.predictions.csv``.
    n_boot, rng_seed : int
        Bootstrap settings of :func:`benchmark.metrics.score`.
    overwrite : bool
        Replace an existing entry of the same slug.

    Returns
    -------
    Entry
        The entry written.

    Raises
    ------
    ClusterMassError
        Any problem with the dataset, the submission (all listed at once) or the entry.
    """
    ds = dataset if isinstance(dataset, ClusterMassDataset) else ClusterMassDataset(dataset)
    raw, raw_meta = load_submission(pred_path, meta_path)
    pred, meta = validate_submission(raw, raw_meta, ds.catalog, ds.card)
    slug = meta.get("slug") or slugify(meta["name"])
    out_dir = Path(out_dir)
    entry_path = out_dir / f"{slug}.json"
    if entry_path.exists() and not overwrite:
        raise EntryError(f"an entry {entry_path} already exists; choose another 'slug' in "
                         "the metadata or pass overwrite=True (--force)")
    metrics = score(pred, ds.catalog, ds.splits, n_boot=n_boot, rng_seed=rng_seed)
    testsets = find_testsets(ds)
    if testsets:
        # Uploaded predictions come without the fold models that predict the extra sets.
        metrics["testsets"] = not_scored_testsets(testsets, NOT_SCORED_PREDICTIONS)
    meta_entry = {k: v for k, v in meta.items() if k not in ("slug", "dataset_version",
                                                             "splits_sha256")}
    entry = make_entry(meta["name"], "submission", metrics, ds, metadata=meta_entry, slug=slug,
                       trusted=False)
    write_predictions(out_dir / entry.predictions_file, pred)
    write_entry(entry_path, entry)
    return entry
