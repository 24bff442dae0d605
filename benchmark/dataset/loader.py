"""Loader of a clustermass dataset directory (``data/<preset>/``), torchvision style.

Opening a dataset verifies it before anything is read for training or scoring:

- ``dataset_card.json`` is present, parses and has every required field
  (:func:`benchmark.dataset.card.read_card`);
- ``splits.json`` is present and its sha256 equals ``card["splits_sha256"]``;
- ``catalog.csv`` is present with every contract column, unique image ids, and folds
  that agree with ``splits.json``;
- every image file named by the catalog is present *with content*: DataLad keeps file
  content in git-annex, and a clone that has not fetched it holds only a symlink into
  ``.git/annex/objects`` whose target is missing (or, for unlocked files, a small pointer
  file). Those are reported as "content not fetched: run ``datalad get`` / ``make data``".

Images are read lazily, one HDF5 file at a time, only for the ids asked for.

"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.core.errors import ClusterMassError, DatasetError, format_problems
from benchmark.dataset.card import DatasetCard, read_card
from benchmark.dataset.checker import sha256_file
from benchmark.dataset.layout import CATALOG_COLUMNS, CATALOG_NAME, INT_COLUMNS, NPIX, SPLITS_NAME
from benchmark.dataset.splits import Splits, check_splits, load_splits

__all__ = ["ClusterMassDataset", "as_dataset"]

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_NOT_FETCHED = ("content not fetched: run `datalad get {path}` in the dataset, "
                "or `make data`")


def _content_problem(path: Path) -> str | None:
    """Why ``path`` has no usable content, or None when it has."""
    if path.is_symlink() and not path.exists():
        # git-annex keeps content behind a symlink; a missing target = not fetched.
        target = os.readlink(path)
        if ".git/annex/objects" in target.replace(os.sep, "/"):
            return _NOT_FETCHED.format(path=path.name)
        return f"broken symlink to {target}"
    if not path.exists():
        return "missing"
    if not path.is_file():
        return "not a regular file"
    if path.stat().st_size == 0:
        return "empty file"
    return None


def _is_annex_pointer(path: Path) -> bool:
    # An unlocked, unfetched annex file is a small text file naming the annex key.
    if path.stat().st_size > 1024:
        return False
    with open(path, "rb") as fh:
        return b"/annex/objects/" in fh.read(1024)


class ClusterMassDataset:
    """A verified clustermass dataset directory.

    Parameters
    ----------
    root : path-like
        Directory holding ``dataset_card.json``, ``catalog.csv``, ``splits.json`` and
        ``images/``.
    verify_files : bool
        Check that every image file has content (reads 8 bytes per file). Leave on;
        turning it off is for tools that only read the catalog.

    Attributes
    ----------
    root : Path
    card : DatasetCard
        The validated card; a read-only mapping of its JSON object.
    catalog : DataFrame
        One row per image, columns :data:`CATALOG_COLUMNS`, in file order.
    splits : Splits

    Raises
    ------
    DatasetError, SplitsError
        Naming what is wrong and how to fix it.
    """

    def __init__(self, root, verify_files: bool = True):
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise DatasetError(f"dataset directory {self.root} does not exist; "
                               "run `make data` (or `clustermass data`) to fetch or build it")
        self.card: DatasetCard = read_card(self.root)
        self.splits: Splits = load_splits(self.root / SPLITS_NAME, self.card.splits_sha256)
        self.catalog = self._read_catalog()
        check_splits(self.splits, self.catalog)
        if verify_files:
            self._verify_files()
        self._row_of_id = pd.Series(np.arange(len(self.catalog)),
                                    index=self.catalog["image_id"].to_numpy())

    # -- opening ---------------------------------------------------------------------
    def _read_catalog(self) -> pd.DataFrame:
        path = self.root / CATALOG_NAME
        problem = _content_problem(path)
        if problem:
            raise DatasetError(f"{path}: {problem}")
        expect = self.card.checksums.get("catalog_csv")
        if expect:
            got = sha256_file(path)
            if got != expect:
                raise DatasetError(f"{path} has sha256 {got}, the card records {expect}: the "
                                   "catalog was modified; restore it or re-fetch (`make data`)")
        try:
            cat = pd.read_csv(path, dtype={"image_id": str, "projection": str, "file": str},
                              keep_default_na=False, na_values=[""])
        except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
            raise DatasetError(f"{path} cannot be parsed ({exc}); re-fetch (`make data`)") \
                from None
        missing = [c for c in CATALOG_COLUMNS if c not in cat.columns]
        if missing:
            raise DatasetError(f"{path} lacks columns {missing}; it was written by another "
                               "format version: regenerate the dataset (`make data`)")
        problems = []
        dup = cat["image_id"][cat["image_id"].duplicated()].tolist()
        if dup:
            problems.append(f"duplicate image_id: {dup[:10]}")
        for col in INT_COLUMNS:
            if not pd.api.types.is_integer_dtype(cat[col]):
                problems.append(f"column {col} is not integer")
        if problems:
            raise DatasetError(format_problems(f"{path} is inconsistent", problems,
                                               "Regenerate the dataset (`make data`)."))
        return cat

    def _verify_files(self) -> None:
        problems = []
        for rel in pd.unique(self.catalog["file"]):
            path = self.root / rel
            problem = _content_problem(path)
            if problem is None:
                if _is_annex_pointer(path):
                    problem = _NOT_FETCHED.format(path=rel)
                else:
                    with open(path, "rb") as fh:
                        if fh.read(8) != _HDF5_MAGIC:
                            problem = "not an HDF5 file"
            if problem:
                problems.append(f"{rel}: {problem}")
        if problems:
            fix = ("Fetch the content with `datalad get .` inside the dataset, or run "
                   "`make data`." if any("not fetched" in p for p in problems)
                   else "Re-fetch or regenerate the dataset (`make data`).")
            raise DatasetError(format_problems(
                f"{len(problems)} image file(s) of {self.root} unusable", problems[:20]
                + ([f"... and {len(problems) - 20} more"] if len(problems) > 20 else []), fix))

    # -- access ------------------------------------------------------------------------
    @property
    def version(self) -> str:
        """Dataset version from the card."""
        return self.card.version

    @property
    def n_folds(self) -> int:
        return self.splits.n_folds

    def __len__(self) -> int:
        return len(self.catalog)

    def __getitem__(self, i: int):
        """``(counts (128,128) int32, catalog row as a dict)`` of catalog row ``i``."""
        row = self.catalog.iloc[int(i)]
        return self.images([row["image_id"]])[0], row.to_dict()

    def __repr__(self) -> str:
        return (f"ClusterMassDataset({str(self.root)!r}, version={self.version!r}, "
                f"n_images={len(self)}, n_clusters={self.catalog['cluster_id'].nunique()})")

    def rows(self, image_ids) -> np.ndarray:
        """Positional catalog indices of ``image_ids``; unknown ids raise."""
        ids = pd.Index(np.asarray(image_ids, dtype=object))
        pos = self._row_of_id.reindex(ids)
        bad = ids[pos.isna().to_numpy()]
        if len(bad):
            raise DatasetError(f"{len(bad)} unknown image id(s): {list(bad[:10])}")
        return pos.to_numpy(dtype=np.int64)

    def images(self, image_ids=None, indices=None) -> np.ndarray:
        """Counts images, int32 ``(N, 128, 128)``, in the order of the ids given.

        Parameters
        ----------
        image_ids : sequence of str, optional
            Default: every image, in catalog order.
        indices : array of int, optional
            Positional catalog rows instead of ids (e.g. from :meth:`fold_indices`).
        """
        import h5py  # lazy: catalog-only users never import it

        if indices is not None:
            pos = np.asarray(indices, dtype=np.int64)
        elif image_ids is None:
            pos = np.arange(len(self.catalog))
        else:
            pos = self.rows(image_ids)
        out = np.empty((len(pos), NPIX, NPIX), dtype=np.int32)
        if len(pos) == 0:
            return out
        sub = self.catalog.iloc[pos]
        files = sub["file"].to_numpy()
        rows_in_file = sub["index"].to_numpy()
        ids = sub["image_id"].to_numpy()
        for rel in pd.unique(files):
            sel = np.flatnonzero(files == rel)
            r = rows_in_file[sel]
            order = np.argsort(r, kind="stable")
            uniq, inverse = np.unique(r[order], return_inverse=True)
            path = self.root / rel
            try:
                with h5py.File(path, "r") as fh:
                    # h5py wants increasing, unique indices for fancy selection; a
                    # contiguous run is read as a (much faster) slice.
                    sel_h5 = (slice(int(uniq[0]), int(uniq[-1]) + 1)
                              if uniq[-1] - uniq[0] + 1 == len(uniq) else uniq.tolist())
                    block = fh["counts"][sel_h5]
                    file_ids = fh["image_id"][sel_h5]
            except (OSError, KeyError) as exc:
                problem = _content_problem(path) or f"unreadable ({exc})"
                raise DatasetError(f"{rel}: {problem}; re-fetch the dataset (`make data`)") \
                    from None
            file_ids = np.array([s.decode() if isinstance(s, bytes) else str(s)
                                 for s in file_ids])
            if not np.array_equal(file_ids[inverse], ids[sel][order]):
                raise DatasetError(f"{rel}: image ids in the file do not match catalog.csv; "
                                   "the dataset is inconsistent: regenerate it (`make data`)")
            out[sel[order]] = block[inverse]
        return out

    def fold_indices(self, k: int) -> dict:
        """Positional catalog indices of fold ``k``: ``dict(train=, val=, test=)``.

        ``test`` is fold ``k``, ``val`` is fold ``splits.validation_fold(k)``, ``train``
        is every other fold. Arrays are sorted int64.
        """
        fold = self.catalog["fold"].to_numpy()
        test = self.splits._check_k(k)
        val = self.splits.validation_fold(k)
        return {
            "train": np.flatnonzero((fold != test) & (fold != val)),
            "val": np.flatnonzero(fold == val),
            "test": np.flatnonzero(fold == test),
        }

    def aux(self, indices=None) -> pd.DataFrame:
        """Auxiliary inputs a model may use: ``image_id, redshift, pixel_arcsec``."""
        sub = self.catalog if indices is None else self.catalog.iloc[np.asarray(indices)]
        pix = self.card.image.pixel_arcsec
        return pd.DataFrame({
            "image_id": sub["image_id"].to_numpy(),
            "redshift": sub["redshift"].to_numpy(dtype=float),
            "pixel_arcsec": np.full(len(sub), pix),
        })


#: What the harness, the loaders and the diagnostics read of a dataset object.
DATASET_ATTRIBUTES = ("root", "catalog", "card", "images", "fold_indices")


def as_dataset(dataset) -> "ClusterMassDataset":
    """``dataset`` itself, or the :class:`ClusterMassDataset` in the folder it names.

    Anything else must offer the dataset's interface (:data:`DATASET_ATTRIBUTES`), so that a
    wrong argument fails here, with one message, rather than deep inside a caller.
    """
    if isinstance(dataset, (str, os.PathLike)):
        return ClusterMassDataset(dataset)
    missing = [a for a in DATASET_ATTRIBUTES if not hasattr(dataset, a)]
    if missing:
        raise ClusterMassError(
            f"expected a ClusterMassDataset or a dataset folder, got {type(dataset).__name__} "
            f"(it lacks {', '.join(missing)}): pass ClusterMassDataset('data/<preset>') or the "
            "folder's path.")
    return dataset
