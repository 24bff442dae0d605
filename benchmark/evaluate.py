"""``clustermass evaluate``: score a submission, predictions or code, into an entry file.

- predictions (a ``.csv``/``.parquet`` file, or a folder holding ``predictions.*`` and
  ``metadata.*``): validated and scored by :func:`benchmark.entries.evaluate_predictions`
  (an untrusted entry);
- code (a ``.py`` module with ``make_model`` or ``build_keras_model``): trained fold by
  fold by :func:`benchmark.training.evaluate_code_submission` (a trusted entry).
"""

from __future__ import annotations

from pathlib import Path

from benchmark.core.errors import SubmissionError

__all__ = ["evaluate_submission", "submission_kind"]

_PRED_SUFFIXES = (".csv", ".parquet", ".pq")


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
        "module defining make_model(config) or build_keras_model(input_shape))")


def evaluate_submission(path, dataset_dir, results_dir, seeds=(0,), preset=None,
                        n_boot: int = 1000, overwrite: bool = False) -> Path:
    """Evaluate a submission and write ``results_dir/entries/<slug>.json``.

    Parameters
    ----------
    path : path-like
        Predictions file/folder or code module (see :func:`submission_kind`).
    dataset_dir : path-like
        The dataset (``data/<preset>``).
    results_dir : path-like
        ``results/<preset>``; the entry goes to its ``entries/`` folder.
    seeds : tuple of int
        Training seeds for code submissions (predictions carry their own).
    preset : str, optional
        Passed to the training harness for code submissions.
    n_boot : int
        Cluster bootstrap resamples for the intervals.
    overwrite : bool
        Replace an existing prediction entry of the same slug.

    Returns
    -------
    Path
        The entry file written.
    """
    kind = submission_kind(path)
    entries_dir = Path(results_dir) / "entries"
    if kind == "code":
        from benchmark.training import evaluate_code_submission

        return Path(evaluate_code_submission(path, dataset_dir, results_dir, seeds=tuple(seeds),
                                             preset=preset))
    from benchmark.entries import evaluate_predictions

    entry = evaluate_predictions(path, None, dataset_dir, entries_dir, n_boot=n_boot,
                                 overwrite=overwrite)
    return entries_dir / f"{entry['slug']}.json"
