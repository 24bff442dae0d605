"""The folder of a training run: where each fold's files go and how they are written.

``out_dir/seed_S/fold_K/`` holds one fold model's files (:func:`fold_dir`): its record
(:data:`RECORD_FILE`, written last: it marks the fold complete), its out-of-fold
predictions (:data:`PREDICTIONS_FILE`) and those of every extra test set; ``out_dir`` holds
the run's assembled predictions and summary (:data:`RUN_FILE`). :mod:`benchmark.training`
writes them; the test-set scoring and the diagnostics read them.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from benchmark.core.io import write_json, write_text

__all__ = ["RECORD_FILE", "PREDICTIONS_FILE", "RUN_FILE", "fold_dir", "write_record",
           "write_table"]

RECORD_FILE = "fold.json"
PREDICTIONS_FILE = "predictions.csv"
RUN_FILE = "run.json"


def fold_dir(out_dir, k: int, seed: int = 0) -> Path:
    """``out_dir/seed_S/fold_K``."""
    return Path(out_dir) / f"seed_{int(seed)}" / f"fold_{int(k)}"


def write_record(path: Path, obj) -> None:
    """Write a run's JSON record atomically (fold record, run summary, test-set identity)."""
    # Strict JSON (NaN -> null: a model's undefined validation loss), foreign values as str().
    write_json(path, obj, default=str)


def write_table(path: Path, df: pd.DataFrame) -> None:
    """Write a run's predictions table atomically (8 decimals, LF line ends)."""
    write_text(path, df.to_csv(index=False, float_format="%.8f", lineterminator="\n"))
