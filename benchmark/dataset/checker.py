"""Check a dataset folder against ``HDF5_SPEC.md`` beside this module (run on every dataset made)."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.core.errors import ClusterMassError
from benchmark.dataset.card import read_card
from benchmark.dataset.layout import (CARD_NAME, CATALOG_COLUMNS, CATALOG_NAME, FILE_ATTRS,
                                      LAYOUT_VERSION, SOURCE_FIELDS, SOURCE_KINDS, SOURCES_DATASET,
                                      SPLITS_NAME)

__all__ = ["check_dataset", "sha256_file"]


def sha256_file(path: Path) -> str:
    """SHA-256 of a file's bytes, as 64 hex digits (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_dataset(root: Path) -> str:
    """Verify every rule of the layout spec; raise one error listing all problems.

    Returns
    -------
    str
        A one-line summary of what was checked.
    """
    root = Path(root)
    missing = [name for name in (CARD_NAME, CATALOG_NAME, SPLITS_NAME) if not (root / name).is_file()]
    if missing:
        raise ClusterMassError(f"{root} is not a clustermass dataset: "
                               + "; ".join(f"{name} is missing" for name in missing))
    card = read_card(root)
    catalog = pd.read_csv(root / CATALOG_NAME)
    problems = _catalog_problems(root, card, catalog)
    for file, rows in catalog.groupby("file", sort=True):
        problems += _file_problems(root / file, file, rows, card.image.npix)
    if problems:
        shown = problems[:20] + ([f"... and {len(problems) - 20} more"] if len(problems) > 20 else [])
        raise ClusterMassError(f"dataset {root} fails its layout check:\n  " + "\n  ".join(shown))
    return f"{root}: {len(catalog)} images in {catalog['file'].nunique()} files pass the layout check"


def _catalog_problems(root: Path, card, catalog: pd.DataFrame) -> list[str]:
    """The catalog against the contract's columns, the card and ``splits.json``."""
    problems = []
    missing_cols = [c for c in CATALOG_COLUMNS if c not in catalog.columns]
    if missing_cols:
        problems.append(f"catalog.csv lacks columns {missing_cols}")
    elif list(catalog.columns[: len(CATALOG_COLUMNS)]) != list(CATALOG_COLUMNS):
        problems.append("catalog.csv columns are not in the documented order")
    if sha256_file(root / SPLITS_NAME) != card.splits_sha256:
        problems.append("splits.json does not match splits_sha256 in the card")
    if catalog["image_id"].duplicated().any():
        problems.append("duplicate image_id in catalog.csv")
    if card.n_images != len(catalog):
        problems.append(f"card says n_images={card.n_images} but catalog has {len(catalog)} rows")
    splits = json.loads((root / SPLITS_NAME).read_text())
    folds = {int(k): v for k, v in splits["folds"].items()}
    wrong_fold = catalog[catalog["cluster_id"].map(folds) != catalog["fold"]]
    if len(wrong_fold):
        problems.append(f"{len(wrong_fold)} catalog rows disagree with splits.json on the fold")
    return problems


def _file_problems(path: Path, file: str, rows: pd.DataFrame, npix: int) -> list[str]:
    """One cluster file against its attributes, its counts and the catalog ``rows`` naming it."""
    import h5py

    if not path.exists():
        return [f"{file} is missing (not fetched? run `datalad get {file}`)"]
    problems = []
    with h5py.File(path, "r") as h5:
        missing_attrs = [a for a in FILE_ATTRS if a not in h5.attrs]
        if missing_attrs:
            return [f"{file}: missing attributes {missing_attrs}"]
        if int(h5.attrs["layout_version"]) != LAYOUT_VERSION or int(h5.attrs["complete"]) != 1:
            problems.append(f"{file}: wrong layout_version or not complete")
        counts = h5["counts"]
        if counts.dtype != np.int32 or counts.shape[1:] != (npix, npix):
            return problems + [f"{file}: counts has {counts.dtype} {counts.shape}, want int32 (n,{npix},{npix})"]
        if counts.attrs.get("units") != "count":
            problems.append(f"{file}: counts lacks units='count'")
        ids = [s.decode() if isinstance(s, bytes) else s for s in h5["image_id"][:]]
        data = counts[:]
        if SOURCES_DATASET in h5:
            problems += _sources_problems(h5[SOURCES_DATASET][()], file, len(ids), npix)
    if (data < 0).any():
        problems.append(f"{file}: negative counts")
    for _, row in rows.iterrows():
        index = int(row["index"])
        if index >= len(ids) or ids[index] != row["image_id"]:
            problems.append(f"{file}: row {index} is not {row['image_id']}")
        elif int(data[index].sum()) != int(row["counts"]):
            problems.append(f"{row['image_id']}: catalog counts differ from the image sum")
    return problems


def _sources_problems(rows: np.ndarray, file: str, n_views: int, npix: int) -> list[str]:
    """The ``/sources`` table of one file against HDF5_SPEC.md (fields, views, kinds, values)."""
    names = rows.dtype.names or ()
    missing = [name for name, _ in SOURCE_FIELDS if name not in names]
    if missing:
        return [f"{file}: /{SOURCES_DATASET} lacks fields {missing}"]
    if rows.ndim != 1:
        return [f"{file}: /{SOURCES_DATASET} must be one-dimensional, has shape {rows.shape}"]
    problems = []
    view = rows["view_index"].astype(np.int64)
    if ((view < 0) | (view >= n_views)).any():
        problems.append(f"{file}: /{SOURCES_DATASET} names views outside 0-{n_views - 1}")
    if (np.diff(view) < 0).any():
        problems.append(f"{file}: /{SOURCES_DATASET} is not sorted by view_index")
    if not np.isin(rows["kind"], list(SOURCE_KINDS)).all():
        problems.append(f"{file}: /{SOURCES_DATASET} has kinds other than {sorted(SOURCE_KINDS)}")
    for axis in ("x_pix", "y_pix"):
        value = rows[axis]
        if not (np.isfinite(value) & (value >= -0.5) & (value < npix - 0.5)).all():
            problems.append(f"{file}: /{SOURCES_DATASET} {axis} outside the image or not finite")
    for name in ("expected_counts", "flux_cgs"):
        if not (np.isfinite(rows[name]) & (rows[name] >= 0)).all():
            problems.append(f"{file}: /{SOURCES_DATASET} {name} negative or not finite")
    halo = rows["kind"] == 2
    if not (np.isfinite(rows["redshift"][halo]) & (rows["redshift"][halo] > 0)).all():
        problems.append(f"{file}: /{SOURCES_DATASET} has a halo without a positive redshift")
    return problems
