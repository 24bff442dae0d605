"""The extra test sets: finding them, their files in a fold folder, scoring them.

Every fold model also predicts each extra test set found beside the dataset: the public
shift sets in ``<dataset>/testsets/<name>/`` (issue #17) and the maintainer's hidden set
in ``<hidden_root>/<preset>/`` (issue #15; ``CLUSTERMASS_HIDDEN``). A fold writes
``testset_<name>.csv`` (its predictions) and ``testset_<name>.json`` (which set: name,
version, fingerprint, catalog checksum) beside its own predictions
(:mod:`benchmark.training` predicts them); the entry scores them (:func:`score_testsets`).
"""
from __future__ import annotations

import dataclasses
import functools
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.core.errors import ClusterMassError
from benchmark.core.io import json_safe
from benchmark.dataset.loader import ClusterMassDataset, as_dataset
from benchmark.runs import fold_dir, write_record, write_table

__all__ = ["TESTSETS_DIR", "TESTSET_PREFIX", "ExtraTestSet", "find_testsets", "testset_paths",
           "has_testset", "write_testset", "not_scored_testsets", "score_testsets"]

logger = logging.getLogger(__name__)

#: Folder of the public test sets inside a dataset (as pipeline.testsets writes them).
TESTSETS_DIR = "testsets"
#: Prefix of the test-set image ids inside a sandboxed fold (never shown to the child,
#: which sees opaque tokens only); dataset image ids never start with it.
TESTSET_PREFIX = "testset:"
#: Resamples and seed of the bootstrap over clusters of the sets' intervals.
N_BOOT = 1000
RNG_SEED = 0


@dataclasses.dataclass
class ExtraTestSet:
    """A test set that every fold model predicts (images read once, when first needed).

    Attributes
    ----------
    name : str
        ``physics``, ``cool_core_0``, ..., or ``hidden``.
    hidden : bool
        The maintainer's hidden set.
    change : str
        What differs from the parent dataset (one line).
    dataset : ClusterMassDataset
    """

    name: str
    hidden: bool
    change: str
    dataset: object
    _images: np.ndarray | None = dataclasses.field(default=None, repr=False)

    @property
    def identity(self) -> dict:
        """What a fold records of the set: predictions made on another version are redone."""
        card = self.dataset.card
        return {"name": self.name, "hidden": self.hidden, "version": card.version,
                "fingerprint": card.get("fingerprint"),
                "catalog_sha256": card.checksums.get("catalog_csv"),
                "n_images": len(self.dataset)}

    def images(self) -> np.ndarray:
        if self._images is None:
            self._images = self.dataset.images()
        return self._images

def _parent_matches(card, parent: dict) -> bool:
    return all(parent.get(key) == card.get(key)
               for key in ("version", "fingerprint", "splits_sha256"))


def _open_testset(root: Path, ds, hidden: bool) -> ExtraTestSet | None:
    try:
        tds = ClusterMassDataset(root)
    except ClusterMassError as exc:
        logger.warning("test set %s is unusable and not scored: %s", root.name, exc)
        return None
    block = tds.card.get("testset") or {}
    name = "hidden" if hidden else block.get("name", root.name)
    if not _parent_matches(ds.card, block.get("parent") or {}):
        logger.warning("test set %s was made for another dataset (version or fingerprint "
                       "differ from %s): regenerate it (`make testsets`); not scored", name,
                       ds.card.version)
        return None
    return ExtraTestSet(name=name, hidden=hidden, change=str(block.get("change", "")),
                        dataset=tds)


def find_testsets(dataset, hidden_root=None) -> list[ExtraTestSet]:
    """The extra test sets of a dataset: ``<root>/testsets/*`` and the hidden set.

    Parameters
    ----------
    dataset : ClusterMassDataset or path
    hidden_root : path, optional
        The maintainer's folder (default: the setting ``CLUSTERMASS_HIDDEN``); its
        ``<preset>/`` is used when it holds a set made for this dataset.

    Returns
    -------
    list of ExtraTestSet
        Public sets by name, then the hidden set. A set made for another version of the
        dataset is left out with a warning.
    """
    from benchmark.core.settings import current
    from benchmark.dataset.layout import CARD_NAME

    ds = as_dataset(dataset)
    found = []
    for root in sorted((Path(ds.root) / TESTSETS_DIR).glob(f"*/{CARD_NAME}")):
        found.append(_open_testset(root.parent, ds, hidden=False))
    hidden_root = current().hidden_root if hidden_root is None else Path(hidden_root)
    preset = ds.card.get("preset")
    if hidden_root and preset and (Path(hidden_root) / str(preset) / CARD_NAME).is_file():
        found.append(_open_testset(Path(hidden_root) / str(preset), ds, hidden=True))
    return [t for t in found if t is not None]


def testset_paths(directory: Path, name: str) -> tuple[Path, Path]:
    return directory / f"testset_{name}.csv", directory / f"testset_{name}.json"


def has_testset(directory: Path, ts: ExtraTestSet) -> bool:
    csv_path, id_path = testset_paths(directory, ts.name)
    if not (csv_path.is_file() and id_path.is_file()):
        return False
    try:
        return json.loads(id_path.read_text()) == json_safe(ts.identity, default=str)
    except json.JSONDecodeError:
        return False


def write_testset(directory: Path, ts: ExtraTestSet, pred: np.ndarray, ids, seed, k) -> None:
    """One fold model's predictions of one test set (predictions first, identity last)."""
    pred = np.asarray(pred, dtype=np.float64).reshape(-1)
    if pred.shape != (len(ts.dataset),) or not np.all(np.isfinite(pred)):
        raise ClusterMassError(
            f"seed {seed} fold {k}: the model returned {pred.shape} predictions for the test "
            f"set {ts.name!r} ({np.sum(~np.isfinite(pred))} not finite); predict() must return "
            f"one finite log10 M500c per image ({len(ts.dataset)}).")
    csv_path, id_path = testset_paths(directory, ts.name)
    write_table(csv_path, pd.DataFrame({"image_id": np.asarray(ids), "log10_m500c_pred": pred,
                                       "seed": seed, "fold": k}))
    write_record(id_path, ts.identity)


# ----------------------------------------------------------------------------- scoring

def _scatter_bias(eps: np.ndarray) -> tuple[float | None, float | None]:
    """The headline's statistics (benchmark.metrics): Gaussian-fit scatter, mean bias."""
    from benchmark.metrics import summarize

    stats = summarize(eps)
    scatter, bias = stats["scatter_gauss_frac"], stats["bias_mean_dex"]
    return (float(scatter) if np.isfinite(scatter) else None,
            float(bias) if np.isfinite(bias) else None)


def _mean_std(values) -> tuple[float | None, float | None]:
    vals = np.array([v for v in values if v is not None], dtype=float)
    if not len(vals):
        return None, None
    return float(vals.mean()), float(vals.std(ddof=1)) if len(vals) > 1 else 0.0


def _in_domain_residuals(predictions: pd.DataFrame, ds, seed: int,
                         k: int) -> tuple[np.ndarray, np.ndarray] | None:
    """eps of fold model (seed, k) on its own test fold and the images' catalog positions;
    None when the run lacks some of its predictions."""
    from benchmark.metrics import residuals

    test_idx = ds.fold_indices(k)["test"]
    test_ids = ds.catalog["image_id"].to_numpy()[test_idx]
    sel = predictions[(predictions["seed"].astype(int) == seed)
                      & predictions["image_id"].isin(test_ids)]
    if len(sel) != len(test_ids):
        return None
    return residuals(sel, ds.catalog, image_ids=test_ids)[seed], test_idx


class _InDomain:
    """The fold models' in-domain scatter on their own test folds: the mean over models and,
    computed once when a set first needs it, its bootstrap over the parent's clusters."""

    def __init__(self, predictions: pd.DataFrame, ds, models, n_boot: int,
                 seed: np.random.SeedSequence):
        self._ds, self._n_boot, self._seed = ds, n_boot, seed
        self._fits, scatters = [], []
        for s, k in models:
            fit = _in_domain_residuals(predictions, ds, s, k)
            scatter = None if fit is None else _scatter_bias(fit[0])[0]
            scatters.append(scatter)
            if scatter is not None:
                self._fits.append(fit)
        self.mean = _mean_std(scatters)[0]

    @functools.cached_property
    def boot(self) -> np.ndarray | None:
        """(n_boot,) mean in-domain scatter per resample, or None without a bootstrap."""
        from benchmark.metrics import bootstrap_scatter, cluster_groups, cluster_multiplicities

        if not self._n_boot or self.mean is None:
            return None
        cat = self._ds.catalog
        cpos, fold_of_cluster = cluster_groups(cat["cluster_id"], cat["fold"])
        # Within folds, as benchmark.metrics.score's fold_mean_ci: each model's test fold
        # keeps its clusters' number, and every seed's model of a fold sees the same draws.
        mult = cluster_multiplicities(fold_of_cluster, self._n_boot,
                                      np.random.default_rng(self._seed))
        return np.mean([bootstrap_scatter(eps, cpos[idx], mult) for eps, idx in self._fits],
                       axis=0)


def _interval(samples) -> list[float] | None:
    """The 68% bootstrap interval, or None when no resample is finite."""
    from benchmark.metrics import ci68

    lo, hi = ci68(samples)
    return [lo, hi] if np.isfinite([lo, hi]).all() else None


def _set_intervals(ts: ExtraTestSet, eps_by_model: list[np.ndarray], in_domain: _InDomain,
                   n_boot: int, seed: np.random.SeedSequence) -> dict:
    """68% intervals of a set's mean scatter and of its ratio, from a bootstrap over the
    set's clusters (one group) independent of the parent's."""
    from benchmark.metrics import bootstrap_scatter, cluster_groups, cluster_multiplicities

    if not n_boot or not eps_by_model:
        return {"scatter_frac_ci68": None, "ratio_ci68": None}
    cpos, one_group = cluster_groups(ts.dataset.catalog["cluster_id"])
    # A fresh generator per set: a set's interval depends on that set alone, not on which
    # other sets were found before it. The same draws for every model, as for every seed of
    # an entry in benchmark.metrics.score.
    mult = cluster_multiplicities(one_group, n_boot, np.random.default_rng(seed))
    shifted = np.mean([bootstrap_scatter(eps, cpos, mult) for eps in eps_by_model], axis=0)
    parent = in_domain.boot
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = None if parent is None else shifted / parent
    return {"scatter_frac_ci68": _interval(shifted),
            "ratio_ci68": None if ratio is None else _interval(ratio)}


def not_scored_testsets(testsets, reason: str) -> dict:
    """The ``testsets`` metrics of an entry that no fold model predicted (e.g. uploaded
    predictions): every set present, marked "not scored" with the reason."""
    return {ts.name: _set_document(ts, [], None, "not scored", reason) for ts in testsets}


def _set_document(ts: ExtraTestSet, rows: list[dict], in_domain: float | None, status: str,
                  reason: str | None, intervals: dict | None = None) -> dict:
    scatter_mean, scatter_std = _mean_std(r["scatter_frac"] for r in rows)
    bias_mean, bias_std = _mean_std(r["bias_dex"] for r in rows)
    ratio = (scatter_mean / in_domain if scatter_mean is not None and in_domain else None)
    identity = ts.identity
    return {"name": ts.name, "kind": "hidden" if ts.hidden else "shift", "change": ts.change,
            "status": status, "reason": reason, "n_images": identity["n_images"],
            "version": identity["version"], "fingerprint": identity["fingerprint"],
            "n_models": len(rows), "per_model": rows,
            "scatter_frac_mean": scatter_mean, "scatter_frac_std": scatter_std,
            "bias_dex_mean": bias_mean, "bias_dex_std": bias_std,
            "in_domain_scatter_frac_mean": in_domain, "ratio": ratio,
            "scatter_frac_ci68": None, "ratio_ci68": None, **(intervals or {})}


def score_testsets(run_dir, dataset, predictions: pd.DataFrame, testsets=None,
                   n_boot: int = N_BOOT, rng_seed: int = RNG_SEED) -> dict:
    """Score every fold model of a run on every extra test set.

    Per set: scatter (ln 10 x sigma of the best-fit Gaussian, as the headline) and mean bias
    (dex) of each fold model (seed, fold) on all the set's images; their mean and standard
    deviation over the fold models; and the ratio of the mean shifted scatter to the mean
    in-domain scatter of the same fold models on their own test folds.

    A set has ~40 clusters, so its scatter is itself uncertain: 68% intervals (16th-84th
    percentiles) of the mean shifted scatter and of the ratio come from a bootstrap over
    clusters that resamples the set's clusters (the same draws for every fold model,
    averaged over models per resample) and, independently, the parent's clusters within
    folds (as :func:`benchmark.metrics.score` does for its fold mean) for the denominator.
    Deterministic for a given ``rng_seed``; a set's interval depends on that set and the
    parent alone.

    Parameters
    ----------
    run_dir : path
        The run (``seed_S/fold_K/testset_<name>.csv``).
    dataset : ClusterMassDataset or path
    predictions : DataFrame
        The run's out-of-fold predictions (``image_id, log10_m500c_pred, seed``).
    testsets : list of ExtraTestSet, optional
        Default :func:`find_testsets`.
    n_boot : int
        Bootstrap resamples (0: no intervals).
    rng_seed : int
        Seed of the bootstrap.

    Returns
    -------
    dict
        name -> set document (``status`` "scored", or "not scored" with a ``reason`` when a
        fold model lacks the set's predictions); ``scatter_frac_ci68`` and ``ratio_ci68``
        are ``[lo, hi]``, or None without a bootstrap or where undefined.
    """
    ds = as_dataset(dataset)
    testsets = find_testsets(ds) if testsets is None else testsets
    seeds = sorted({int(s) for s in predictions["seed"]}) if "seed" in predictions else [0]
    models = [(s, k) for s in seeds for k in range(ds.splits.n_folds)]
    parent_seed, set_seed = np.random.SeedSequence(rng_seed).spawn(2)
    in_domain = _InDomain(predictions, ds, models, int(n_boot or 0), parent_seed)
    out = {}
    for ts in testsets:
        eps_by_model, missing = _set_residuals(run_dir, ts, models)
        if missing:
            out[ts.name] = _set_document(
                ts, [], None, "not scored",
                f"{len(missing)} of {len(models)} fold models lack predictions of this set "
                f"({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''}): the set was "
                "made after they were trained; retrain the entry")
            continue
        rows = []
        for (seed, k), eps in eps_by_model.items():
            scatter, bias = _scatter_bias(eps)
            rows.append({"seed": seed, "fold": k, "scatter_frac": scatter, "bias_dex": bias})
        # Models without a scatter are left out of the mean, so of its resamples too.
        fitted = [eps for eps, r in zip(eps_by_model.values(), rows)
                  if r["scatter_frac"] is not None]
        intervals = _set_intervals(ts, fitted, in_domain, int(n_boot or 0), set_seed)
        out[ts.name] = _set_document(ts, rows, in_domain.mean, "scored", None, intervals)
    return out


def _set_residuals(run_dir, ts: ExtraTestSet, models) -> tuple[dict, list[str]]:
    """eps of every fold model on the set (in the set's catalog order), and the models that
    lack the set's predictions."""
    from benchmark.metrics import residuals

    eps_by_model, missing = {}, []
    for seed, k in models:
        directory = fold_dir(run_dir, k, seed)
        if not has_testset(directory, ts):
            missing.append(f"seed {seed} fold {k}")
            continue
        pred = pd.read_csv(testset_paths(directory, ts.name)[0], dtype={"image_id": str})
        eps_by_model[(seed, k)] = residuals(pred.assign(seed=seed), ts.dataset.catalog)[seed]
    return eps_by_model, missing
