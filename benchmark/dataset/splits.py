"""Fixed ten-fold splits, grouped by cluster and stratified on cluster mass.

The splits are computed once by :func:`make_splits` and frozen in ``splits.json``
beside the dataset; the dataset card records the sha256 of that file's bytes and the
harness refuses a file whose checksum does not match (:func:`load_splits`).

Why our own routine: library splitters (and even numpy's random streams) have changed
their output between versions. :func:`make_splits` depends on nothing but ``hashlib``:
clusters are sorted by mass and, within each block of ``n_folds`` consecutive clusters,
the folds are assigned in an order given by sha256 hashes of ``(seed, block, fold)``.
Every fold therefore receives one cluster from each mass block (stratified), and all
views of a cluster share its fold (grouped).

Fold ``k`` is the test fold; its validation fold is ``(k + validation_offset) % n_folds``
(``validation_offset`` = 1), so no model ever early-stops or tunes on its test fold; the
training set is every other fold.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from benchmark.core.errors import SplitsError, format_problems, head_list

__all__ = [
    "Splits",
    "make_splits",
    "splits_from_catalog",
    "load_splits",
    "check_no_leak",
    "check_splits",
    "sha256_bytes",
]

#: Largest file accepted as a splits file (a 329-cluster file is ~5 kB).
MAX_SPLITS_BYTES = 10_000_000


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def _hash_rank(seed: int, block: int, fold: int) -> str:
    # A version-independent pseudo-random key: the same bytes in, the same order out.
    return hashlib.sha256(f"clustermass-splits:{seed}:{block}:{fold}".encode()).hexdigest()


@dataclass(frozen=True)
class Splits:
    """Assignment of clusters to folds.

    Attributes
    ----------
    folds : dict of int -> int
        Fold of every cluster id.
    n_folds : int
    seed : int
        Seed of :func:`make_splits` (recorded for provenance).
    validation_offset : int
        Validation fold of test fold ``k`` is ``(k + validation_offset) % n_folds``.
    """

    folds: Mapping[int, int]
    n_folds: int = 10
    seed: int = 0
    validation_offset: int = 1
    _by_fold: dict = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self):
        problems = _check_fields(dict(self.folds), self.n_folds, self.validation_offset)
        if problems:
            raise SplitsError(format_problems("invalid splits", problems))
        folds = {int(c): int(f) for c, f in self.folds.items()}
        object.__setattr__(self, "folds", folds)
        by_fold = {k: [] for k in range(self.n_folds)}
        for cid in sorted(folds):
            by_fold[folds[cid]].append(cid)
        object.__setattr__(
            self, "_by_fold", {k: np.asarray(v, dtype=np.int64) for k, v in by_fold.items()}
        )

    # -- queries -----------------------------------------------------------------
    @property
    def cluster_ids(self) -> np.ndarray:
        """All cluster ids, sorted."""
        return np.asarray(sorted(self.folds), dtype=np.int64)

    def fold_of(self, cluster_id: int) -> int:
        """Fold of one cluster."""
        try:
            return self.folds[int(cluster_id)]
        except KeyError:
            raise SplitsError(
                f"cluster {cluster_id} is not in the splits; the splits file does not belong "
                "to this catalog (regenerate the dataset or fetch the matching splits.json)"
            ) from None

    def folds_of(self, cluster_ids: Iterable[int]) -> np.ndarray:
        """Folds of many clusters (vectorised :meth:`fold_of`)."""
        ids = np.asarray(list(cluster_ids) if not isinstance(cluster_ids, np.ndarray)
                         else cluster_ids, dtype=np.int64)
        missing = sorted({int(c) for c in np.unique(ids)} - set(self.folds))
        if missing:
            raise SplitsError(
                f"{len(missing)} cluster(s) not in the splits: {head_list(missing)}; the splits "
                "file does not belong to this catalog"
            )
        keys = np.fromiter(self.folds.keys(), dtype=np.int64, count=len(self.folds))
        vals = np.fromiter(self.folds.values(), dtype=np.int64, count=len(self.folds))
        order = np.argsort(keys)
        return vals[order][np.searchsorted(keys[order], ids)]

    def _check_k(self, k: int) -> int:
        if not isinstance(k, (int, np.integer)) or not 0 <= int(k) < self.n_folds:
            raise SplitsError(f"fold {k!r} does not exist; folds are 0..{self.n_folds - 1}")
        return int(k)

    def test_clusters(self, k: int) -> np.ndarray:
        """Cluster ids of test fold ``k`` (sorted)."""
        return self._by_fold[self._check_k(k)].copy()

    def validation_fold(self, k: int) -> int:
        """Validation fold of test fold ``k``: ``(k + validation_offset) % n_folds``."""
        return (self._check_k(k) + self.validation_offset) % self.n_folds

    def val_clusters(self, k: int) -> np.ndarray:
        """Cluster ids of the validation fold of test fold ``k``."""
        return self._by_fold[self.validation_fold(k)].copy()

    def train_clusters(self, k: int) -> np.ndarray:
        """Cluster ids used for training when ``k`` is the test fold (not test, not val)."""
        k = self._check_k(k)
        skip = {k, self.validation_fold(k)}
        parts = [self._by_fold[f] for f in range(self.n_folds) if f not in skip]
        return np.sort(np.concatenate(parts)) if parts else np.zeros(0, np.int64)

    # -- serialisation -------------------------------------------------------------
    def to_dict(self) -> dict:
        """Plain dict in the on-disk layout (folds keyed by the cluster id as a string)."""
        return {
            "n_folds": self.n_folds,
            "seed": self.seed,
            "validation_offset": self.validation_offset,
            "folds": {str(c): self.folds[c] for c in sorted(self.folds)},
        }

    def to_json(self) -> bytes:
        """Canonical bytes: fixed key order, clusters in ascending id, one per line, LF."""
        return (json.dumps(self.to_dict(), indent=1, allow_nan=False) + "\n").encode("utf-8")

    def sha256(self) -> str:
        """sha256 of :meth:`to_json` (what the dataset card records)."""
        return sha256_bytes(self.to_json())

    @classmethod
    def from_json(cls, data: bytes | str) -> "Splits":
        """Parse splits bytes; raise :class:`SplitsError` naming every problem."""
        if isinstance(data, str):
            data = data.encode("utf-8")
        if len(data) > MAX_SPLITS_BYTES:
            raise SplitsError(f"splits file too large ({len(data)} bytes); not a splits file")
        try:
            obj = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise SplitsError(f"splits file is not valid JSON ({exc}); re-fetch it "
                              "(`make data`)") from None
        return cls.from_dict(obj)

    @classmethod
    def from_dict(cls, obj) -> "Splits":
        """Build from the on-disk dict layout."""
        if not isinstance(obj, dict):
            raise SplitsError("splits must be a JSON object with keys n_folds, seed, "
                              "validation_offset, folds")
        problems = []
        missing = [k for k in ("n_folds", "seed", "validation_offset", "folds") if k not in obj]
        if missing:
            problems.append(f"missing keys {missing}")
        extra = sorted(set(obj) - {"n_folds", "seed", "validation_offset", "folds"})
        if extra:
            problems.append(f"unknown keys {extra}")
        folds_raw = obj.get("folds", {})
        if not isinstance(folds_raw, dict):
            problems.append("'folds' must be an object {cluster_id: fold}")
            folds_raw = {}
        folds = {}
        bad_keys = []
        for key, val in folds_raw.items():
            try:
                cid = int(key)
                if str(cid) != str(key).strip():
                    raise ValueError
            except (TypeError, ValueError):
                bad_keys.append(key)
                continue
            folds[cid] = val
        if bad_keys:
            problems.append(f"cluster ids must be integers: {head_list(bad_keys)}")
        for name in ("n_folds", "seed", "validation_offset"):
            if name in obj and not _is_int(obj[name]):
                problems.append(f"'{name}' must be an integer, got {obj[name]!r}")
        if problems:
            raise SplitsError(format_problems("invalid splits file", problems,
                                              "Re-fetch or regenerate the dataset (`make data`)."))
        return cls(folds=folds, n_folds=obj["n_folds"], seed=obj["seed"],
                   validation_offset=obj["validation_offset"])


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)




def _check_fields(folds: dict, n_folds, validation_offset) -> list[str]:
    problems = []
    if not _is_int(n_folds) or n_folds < 2:
        problems.append(f"n_folds must be an integer >= 2, got {n_folds!r}")
        return problems
    if not _is_int(validation_offset) or not 1 <= validation_offset < n_folds:
        problems.append(f"validation_offset must be an integer in 1..{n_folds - 1}, "
                        f"got {validation_offset!r}")
    bad = [c for c, f in folds.items() if not _is_int(f) or not 0 <= f < n_folds]
    if bad:
        problems.append(f"folds must be integers in 0..{n_folds - 1}; bad clusters: {head_list(bad)}")
    if not folds:
        problems.append("no clusters in the splits")
    return problems


def make_splits(cluster_ids, log10_masses, n_folds: int = 10, seed: int = 0) -> Splits:
    """Grouped, mass-stratified folds by a frozen, library-independent routine.

    Clusters are sorted by mass (ties broken by id); consecutive blocks of ``n_folds``
    clusters each give one cluster to every fold, in an order set by
    ``sha256(seed, block, fold)``. In the last, partial block the folds that receive a
    cluster are the first ones in that hash order, so fold sizes differ by at most one.

    Parameters
    ----------
    cluster_ids : array-like of int
        One id per cluster (unique).
    log10_masses : array-like of float
        The mass used for stratification, one per cluster (the latest-epoch
        log10 M500c in the datasets).
    n_folds : int
    seed : int

    Returns
    -------
    Splits
    """
    ids = np.asarray(cluster_ids)
    masses = np.asarray(log10_masses, dtype=float)
    if ids.ndim != 1 or masses.shape != ids.shape:
        raise SplitsError("make_splits needs one id and one mass per cluster (equal-length 1-d)")
    if len(np.unique(ids)) != len(ids):
        raise SplitsError("make_splits needs unique cluster ids (one mass per cluster); "
                          "use splits_from_catalog() for a per-image catalog")
    if not np.all(np.isfinite(masses)):
        raise SplitsError("make_splits needs finite masses")
    if not _is_int(n_folds) or n_folds < 2:
        raise SplitsError(f"n_folds must be an integer >= 2, got {n_folds!r}")
    if len(ids) < n_folds:
        raise SplitsError(f"{len(ids)} clusters cannot fill {n_folds} folds")
    ids = ids.astype(np.int64)
    order = np.lexsort((ids, masses))  # mass first, then id
    folds = {}
    for block, start in enumerate(range(0, len(ids), n_folds)):
        members = order[start:start + n_folds]
        fold_order = sorted(range(n_folds), key=lambda f: _hash_rank(seed, block, f))
        for idx, fold in zip(members, fold_order):
            folds[int(ids[idx])] = fold
    return Splits(folds=folds, n_folds=n_folds, seed=int(seed), validation_offset=1)


def splits_from_catalog(catalog, n_folds: int = 10, seed: int = 0) -> Splits:
    """:func:`make_splits` from a per-image catalog, stratifying on the epoch-0 mass.

    Epoch 0 is the latest (most massive) epoch of each cluster; where a cluster has no
    epoch 0, its largest mass is used.
    """
    need = {"cluster_id", "log10_m500c"}
    if not need <= set(catalog.columns):
        raise SplitsError(f"catalog needs columns {sorted(need)} to make splits")
    cat = catalog
    if "epoch" in cat.columns:
        cat = cat.sort_values(["cluster_id", "epoch"])
        per = cat.groupby("cluster_id", sort=True).agg(
            first_epoch=("epoch", "first"), m_first=("log10_m500c", "first"),
            m_max=("log10_m500c", "max"))
        mass = np.where(per["first_epoch"].to_numpy() == 0, per["m_first"], per["m_max"])
    else:
        per = cat.groupby("cluster_id", sort=True)["log10_m500c"].max()
        mass = per.to_numpy()
    return make_splits(per.index.to_numpy(), mass, n_folds=n_folds, seed=seed)


def load_splits(path, expected_sha256: str | None) -> Splits:
    """Read a splits file and refuse it unless its bytes match the recorded checksum.

    Parameters
    ----------
    path : path-like
    expected_sha256 : str or None
        The dataset card's ``splits_sha256``. ``None`` refuses too: a dataset must
        record its checksum.
    """
    path = Path(path)
    if not path.is_file():
        raise SplitsError(f"splits file {path} is missing or its content is not fetched; run "
                          "`datalad get splits.json` in the dataset, or `make data`")
    if path.stat().st_size > MAX_SPLITS_BYTES:
        raise SplitsError(f"{path} is too large to be a splits file")
    data = path.read_bytes()
    got = sha256_bytes(data)
    if not expected_sha256:
        raise SplitsError(f"no splits checksum recorded for {path}: the dataset card needs "
                          "'splits_sha256'; regenerate the dataset (`make data`)")
    if got != expected_sha256:
        raise SplitsError(
            f"splits file {path} has sha256 {got} but the dataset card records "
            f"{expected_sha256}: the splits were changed or belong to another dataset "
            "version. Restore the shipped file (`datalad get`/`git checkout` in the dataset) "
            "or re-fetch the dataset (`make data`); the harness never scores on other splits."
        )
    return Splits.from_json(data)


def check_no_leak(catalog, parts: Mapping[str, np.ndarray]) -> None:
    """Refuse any cluster that appears in more than one part of a fold.

    Parameters
    ----------
    catalog : DataFrame
        With a ``cluster_id`` column.
    parts : mapping of name -> positional indices into ``catalog``
        e.g. ``{"train": ..., "val": ..., "test": ...}`` from
        :meth:`benchmark.dataset.ClusterMassDataset.fold_indices`.

    Raises
    ------
    SplitsError
        Naming the clusters found on several sides.
    """
    cids = catalog["cluster_id"].to_numpy()
    seen: dict[int, str] = {}
    leaks = []
    for name, idx in parts.items():
        for cid in np.unique(cids[np.asarray(idx, dtype=np.int64)]):
            cid = int(cid)
            if cid in seen and seen[cid] != name:
                leaks.append(f"cluster {cid} in {seen[cid]} and {name}")
            seen.setdefault(cid, name)
    if leaks:
        raise SplitsError(format_problems(
            f"{len(leaks)} cluster(s) appear on both sides of a fold", leaks[:20],
            "Folds must be grouped by cluster; use the shipped splits "
            "(ClusterMassDataset.fold_indices)."))


def check_splits(splits: Splits, catalog) -> None:
    """Check a catalog against its splits: every cluster assigned, fold column agrees,
    and no cluster on two sides of any fold.
    """
    problems = []
    cids = catalog["cluster_id"].to_numpy(dtype=np.int64)
    unknown = sorted(set(np.unique(cids).tolist()) - set(splits.folds))
    if unknown:
        problems.append(f"{len(unknown)} catalog cluster(s) missing from the splits: "
                        f"{head_list(unknown)}")
    elif "fold" in catalog.columns:
        fold_col = catalog["fold"].to_numpy()
        expect = splits.folds_of(cids)
        bad = np.flatnonzero(fold_col != expect)
        if len(bad):
            ids = catalog["image_id"].to_numpy()[bad] if "image_id" in catalog.columns else bad
            problems.append(f"{len(bad)} catalog row(s) whose 'fold' disagrees with splits.json: "
                            f"{head_list(ids)}")
    if problems:
        raise SplitsError(format_problems("catalog and splits disagree", problems,
                                          "Re-fetch or regenerate the dataset (`make data`)."))
    fold_of_row = splits.folds_of(cids)
    for k in range(splits.n_folds):
        parts = {
            "test": np.flatnonzero(fold_of_row == k),
            "val": np.flatnonzero(fold_of_row == splits.validation_fold(k)),
            "train": np.flatnonzero(np.isin(fold_of_row, [k, splits.validation_fold(k)],
                                            invert=True)),
        }
        check_no_leak(catalog, parts)
