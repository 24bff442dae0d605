"""Check a dataset folder against benchmark/dataset/HDF5_SPEC.md (run by the tests on every dataset)."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.core.errors import ClusterMassError
from benchmark.dataset.layout import CATALOG_COLUMNS, FILE_ATTRS, LAYOUT_VERSION


def sha256_file(path: Path) -> str:
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
    import h5py

    root = Path(root)
    problems: list[str] = []
    for name in ("dataset_card.json", "catalog.csv", "splits.json"):
        if not (root / name).is_file():
            problems.append(f"{name} is missing")
    if problems:
        raise ClusterMassError(f"{root} is not a clustermass dataset: " + "; ".join(problems))

    card = json.loads((root / "dataset_card.json").read_text())
    catalog = pd.read_csv(root / "catalog.csv")
    missing_cols = [c for c in CATALOG_COLUMNS if c not in catalog.columns]
    if missing_cols:
        problems.append(f"catalog.csv lacks columns {missing_cols}")
    elif list(catalog.columns[: len(CATALOG_COLUMNS)]) != list(CATALOG_COLUMNS):
        problems.append("catalog.csv columns are not in the documented order")
    if sha256_file(root / "splits.json") != card.get("splits_sha256"):
        problems.append("splits.json does not match splits_sha256 in the card")
    if catalog["image_id"].duplicated().any():
        problems.append("duplicate image_id in catalog.csv")
    if card.get("n_images") != len(catalog):
        problems.append(f"card says n_images={card.get('n_images')} but catalog has {len(catalog)} rows")

    splits = json.loads((root / "splits.json").read_text())
    folds = {int(k): v for k, v in splits["folds"].items()}
    wrong_fold = catalog[catalog["cluster_id"].map(folds) != catalog["fold"]]
    if len(wrong_fold):
        problems.append(f"{len(wrong_fold)} catalog rows disagree with splits.json on the fold")

    npix = card["image"]["npix"]
    for file, rows in catalog.groupby("file", sort=True):
        path = root / file
        if not path.exists():
            problems.append(f"{file} is missing (not fetched? run `datalad get {file}`)")
            continue
        with h5py.File(path, "r") as h5:
            missing_attrs = [a for a in FILE_ATTRS if a not in h5.attrs]
            if missing_attrs:
                problems.append(f"{file}: missing attributes {missing_attrs}")
                continue
            if int(h5.attrs["layout_version"]) != LAYOUT_VERSION or int(h5.attrs["complete"]) != 1:
                problems.append(f"{file}: wrong layout_version or not complete")
            counts = h5["counts"]
            if counts.dtype != np.int32 or counts.shape[1:] != (npix, npix):
                problems.append(f"{file}: counts has {counts.dtype} {counts.shape}, want int32 (n,{npix},{npix})")
                continue
            if counts.attrs.get("units") != "count":
                problems.append(f"{file}: counts lacks units='count'")
            ids = [s.decode() if isinstance(s, bytes) else s for s in h5["image_id"][:]]
            data = counts[:]
            if (data < 0).any():
                problems.append(f"{file}: negative counts")
            for _, row in rows.iterrows():
                index = int(row["index"])
                if index >= len(ids) or ids[index] != row["image_id"]:
                    problems.append(f"{file}: row {index} is not {row['image_id']}")
                elif int(data[index].sum()) != int(row["counts"]):
                    problems.append(f"{row['image_id']}: catalog counts differ from the image sum")
    if problems:
        shown = problems[:20] + ([f"... and {len(problems) - 20} more"] if len(problems) > 20 else [])
        raise ClusterMassError(f"dataset {root} fails its layout check:\n  " + "\n  ".join(shown))
    return f"{root}: {len(catalog)} images in {catalog['file'].nunique()} files pass the layout check"
