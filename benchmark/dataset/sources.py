"""The true sky sources of each view (point sources, line-of-sight haloes), read as a table.

A cluster file of population version 2 keeps, beside its images, the sources the sky model
put in each view (``/sources``, see ``HDF5_SPEC.md``): what a masking step may be compared
with, or (the truth variants of the baselines) use directly.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.core.errors import DatasetError
from benchmark.dataset.layout import (IMAGES_DIR, SOURCE_COLUMNS, SOURCE_FIELDS, SOURCE_KINDS,
                                      SOURCES_DATASET)

__all__ = ["read_sources", "sources_dtype", "sources_array", "empty_sources", "SOURCE_UNITS"]

#: Units of the ``/sources`` fields (its ``units`` attribute, JSON).
SOURCE_UNITS = {"view_index": "", "kind": "1 = point, 2 = halo", "x_pix": "pixel", "y_pix": "pixel",
                "expected_counts": "count", "flux_cgs": "erg s^-1 cm^-2 (0.5-2 keV)", "redshift": ""}


def sources_dtype() -> np.dtype:
    """The compound NumPy type of ``/sources`` (fields and types of ``SOURCE_FIELDS``)."""
    return np.dtype([(name, kind) for name, kind in SOURCE_FIELDS])


def empty_sources() -> pd.DataFrame:
    """An empty source table with the columns and types :func:`read_sources` returns."""
    table = pd.DataFrame({name: pd.Series(dtype="float64") for name in SOURCE_COLUMNS})
    return table.astype({"view_index": "int64", "image_id": "object", "kind": "object"})


def _read_one(path: Path) -> pd.DataFrame:
    import h5py

    try:
        with h5py.File(path, "r") as h5:
            ids = [s.decode() if isinstance(s, bytes) else str(s) for s in h5["image_id"][:]]
            if SOURCES_DATASET not in h5:
                return empty_sources()  # population version 1 (or a sky switched off)
            rows = h5[SOURCES_DATASET][:]
    except (OSError, KeyError) as err:
        raise DatasetError(f"cannot read the source list of {path}: {err}. Is it a clustermass "
                           "cluster file with its content fetched (`datalad get`)?") from err
    missing = [name for name, _ in SOURCE_FIELDS if name not in (rows.dtype.names or ())]
    if missing:
        raise DatasetError(f"{path}: /{SOURCES_DATASET} lacks fields {missing}; regenerate the file "
                           "with this version of the pipeline.")
    view = rows["view_index"].astype(np.int64)
    if view.size and (view.min() < 0 or view.max() >= len(ids)):
        raise DatasetError(f"{path}: /{SOURCES_DATASET} names views outside /counts (0-{len(ids) - 1}).")
    codes = rows["kind"].astype(int)
    unknown = sorted(set(codes.tolist()) - set(SOURCE_KINDS))
    if unknown:
        raise DatasetError(f"{path}: /{SOURCES_DATASET} has unknown kind codes {unknown} "
                           f"(known: {SOURCE_KINDS}).")
    table = pd.DataFrame({
        "view_index": view,
        "image_id": [ids[i] for i in view],
        "kind": [SOURCE_KINDS[c] for c in codes],
        **{name: rows[name].astype(np.float64) for name in ("x_pix", "y_pix", "expected_counts",
                                                             "flux_cgs", "redshift")},
    })
    return table[list(SOURCE_COLUMNS)]


def read_sources(path) -> pd.DataFrame:
    """The true sky sources of a cluster file, or of every cluster file of a dataset.

    Parameters
    ----------
    path : path-like
        One ``images/cluster_NNNN.h5`` file, or a dataset folder (all its cluster files, in
        name order).

    Returns
    -------
    pandas.DataFrame
        One row per source: ``view_index`` (row of the file's ``/counts``; with a dataset
        folder, rows of different files share indices, so use ``image_id``), ``image_id``,
        ``kind`` (``"point"`` or ``"halo"``), ``x_pix`` / ``y_pix`` (0-based pixel coordinates
        of the stored image: column and row; pixel ``i`` spans ``[i - 0.5, i + 0.5)``),
        ``expected_counts`` (in the image band, before Poisson noise), ``flux_cgs``
        (0.5-2 keV, erg s^-1 cm^-2) and ``redshift`` (NaN for point sources). Empty, with
        these columns, for files without a source list (population version 1).

    Raises
    ------
    DatasetError
        The path is neither, or a file's source list is malformed.
    """
    path = Path(path)
    if path.is_dir():
        files = sorted((path / IMAGES_DIR).glob("cluster_*.h5"))
        if not files:
            raise DatasetError(f"{path} holds no {IMAGES_DIR}/cluster_*.h5 files: pass a dataset "
                               "folder or one cluster file.")
        tables = [_read_one(f) for f in files]
        return pd.concat(tables, ignore_index=True) if tables else empty_sources()
    if not path.is_file():
        raise DatasetError(f"{path} does not exist: pass a dataset folder or one cluster file.")
    return _read_one(path)


def sources_array(sources, kind_codes=None) -> np.ndarray:
    """Structured array for ``/sources`` from dicts with the ``SOURCE_FIELDS`` names
    (``kind`` given as its name, ``"point"`` or ``"halo"``), in the given order."""
    codes = kind_codes or {name: code for code, name in SOURCE_KINDS.items()}
    out = np.zeros(len(sources), dtype=sources_dtype())
    for i, src in enumerate(sources):
        for name, _ in SOURCE_FIELDS:
            out[name][i] = codes[src["kind"]] if name == "kind" else src[name]
    return out
