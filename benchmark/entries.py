"""Leaderboard entry files: schema, typed entries, construction, validation, writing, loading.

One entry per file, ``results/<preset>/entries/<slug>.json``, with its out-of-fold
predictions beside it as ``<slug>.predictions.csv``. The schema (:data:`ENTRY_SCHEMA`)
is a JSON-Schema-like dict checked by a small validator of our own
(:func:`validate_entry`; no extra dependency), supporting ``type`` (incl. "null"),
``properties``, ``required``, ``additionalProperties``, ``items``, ``enum``, ``pattern``,
``minimum``, ``maximum``, ``minLength``, ``maxLength``, ``minItems``, ``maxItems``
(``additionalProperties`` may be a schema for the other keys' values) and ``format:
date-time`` (ISO 8601 UTC ``YYYY-MM-DDTHH:MM:SSZ``).

A valid entry is an :class:`Entry` with its harness scores as a :class:`Score`: the
validator returns one, the writer writes one, the leaderboard renders them. The JSON on
disk is the schema's; :meth:`Entry.to_json` gives back exactly what was read.

Entries are made where runs are scored: :mod:`benchmark.training` (baselines, code
submissions) and :mod:`benchmark.evaluate` (prediction submissions). This module reads
no dataset, so that the renderer may import it.
"""

from __future__ import annotations

import configparser
import copy
import dataclasses
import datetime as _dt
import json
import math
import os
import re
import subprocess
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from benchmark import HARNESS_VERSION
from benchmark.core.errors import EntryError, format_problems
from benchmark.core.io import write_json, write_text
from benchmark.submission import SLUG_PATTERN, UNCERTAINTY_COLUMNS

__all__ = [
    "Entry",
    "Score",
    "TestSetScore",
    "ENTRY_SCHEMA",
    "SCHEMA_VERSION",
    "FOLD_COLUMNS",
    "make_entry",
    "validate_entry",
    "schema_problems",
    "write_entry",
    "write_predictions",
    "load_entry",
    "load_entries",
    "core_sensitivity",
    "LEGACY_CORE_SENSITIVITY_KEYS",
    "slugify",
    "dataset_provenance",
    "harness_version",
    "utc_now",
]

SCHEMA_VERSION = 1
SHA256_PATTERN = r"^[0-9a-f]{64}$"
MAX_ENTRY_BYTES = 8 * 2**20

_NUM_OR_NULL = {"type": ["number", "null"]}
#: Statistics of the uncertainty track (benchmark.metrics.UNC_KEYS).
_UNC_STATS = {
    "type": "object",
    "required": ["n_images", "crps_dex", "log_score", "coverage_68", "coverage_95"],
    "properties": {"n_images": {"type": "integer", "minimum": 0},
                   **{k: _NUM_OR_NULL for k in ("crps_dex", "log_score", "coverage_68",
                                                "coverage_95", "sigma_mean_dex", "z_std")}},
}
#: The ``uncertainty`` of the metrics: null for point predictions (and absent in entries
#: written before the uncertainty track).
_UNCERTAINTY = {
    "type": ["object", "null"],
    "required": ["kind", "pooled", "pit_hist", "reliability", "folds", "mass_bins"],
    "properties": {
        "kind": {"type": "string", "enum": ["gaussian", "quantiles"]},
        "pooled": _UNC_STATS,
        "pit_hist": {"type": "array", "minItems": 1, "items": _NUM_OR_NULL},
        "reliability": {"type": "object", "required": ["levels", "observed"],
                        "properties": {"levels": {"type": "array", "items": {"type": "number"}},
                                       "observed": {"type": "array", "items": _NUM_OR_NULL}}},
        "folds": {"type": "array", "items": _UNC_STATS},
        "mass_bins": {"type": "array", "items": _UNC_STATS},
        # 68% bootstrap intervals over clusters of the pooled statistics (null without one)
        "pooled_ci68": {"type": ["object", "null"],
                        "properties": {k: {"type": ["array", "null"], "minItems": 2, "maxItems": 2,
                                           "items": _NUM_OR_NULL}
                                       for k in ("crps_dex", "log_score", "coverage_68",
                                                 "coverage_95")}},
    },
}
#: One extra test set's scores (``metrics.testsets.<name>``; benchmark.testsets_scoring.score_testsets):
#: absent in entries written before the shift track and the hidden set.
_TESTSET = {
    "type": "object",
    "required": ["name", "kind", "status", "n_images", "n_models", "scatter_frac_mean",
                 "bias_dex_mean", "ratio"],
    "properties": {
        "name": {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"},
        "kind": {"type": "string", "enum": ["shift", "hidden"]},
        "change": {"type": ["string", "null"], "maxLength": 1000},
        "status": {"type": "string", "enum": ["scored", "not scored"]},
        "reason": {"type": ["string", "null"], "maxLength": 1000},
        "n_images": {"type": "integer", "minimum": 0},
        "n_models": {"type": "integer", "minimum": 0},
        "version": {"type": ["string", "null"]},
        # which generation of the set (a hidden set made from a rotated secret differs)
        "fingerprint": {"type": ["string", "null"], "maxLength": 64},
        "per_model": {"type": "array", "items": {
            "type": "object", "required": ["seed", "fold", "scatter_frac", "bias_dex"],
            "properties": {"seed": {"type": "integer"}, "fold": {"type": "integer"},
                           "scatter_frac": _NUM_OR_NULL, "bias_dex": _NUM_OR_NULL}}},
        **{k: _NUM_OR_NULL for k in ("scatter_frac_mean", "scatter_frac_std", "bias_dex_mean",
                                     "bias_dex_std", "in_domain_scatter_frac_mean", "ratio")},
        # 68% bootstrap intervals over clusters (absent in entries written before them)
        **{k: {"type": ["array", "null"], "minItems": 2, "maxItems": 2, "items": _NUM_OR_NULL}
           for k in ("scatter_frac_ci68", "ratio_ci68")},
    },
}
_STATS = {
    "type": "object",
    "required": ["n_images", "bias_mean_dex", "bias_median_dex", "sigma_gauss_dex",
                 "sigma_std_dex", "sigma_robust_dex", "scatter_gauss_frac",
                 "scatter_std_frac", "scatter_robust_frac", "outlier_frac"],
    "properties": {"n_images": {"type": "integer", "minimum": 0},
                   **{k: _NUM_OR_NULL for k in (
                       "bias_mean_dex", "bias_median_dex", "gauss_mu_dex", "sigma_gauss_dex",
                       "sigma_std_dex", "sigma_robust_dex", "scatter_gauss_frac",
                       "scatter_std_frac", "scatter_robust_frac", "outlier_frac")}},
}
#: Columns of the per-fold table of an entry.
FOLD_COLUMNS = ("fold", "n_images", "n_clusters", "bias_mean_dex", "bias_median_dex",
                "sigma_gauss_dex", "sigma_std_dex", "sigma_robust_dex", "scatter_gauss_frac",
                "scatter_std_frac", "scatter_robust_frac", "outlier_frac")

ENTRY_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["schema_version", "name", "slug", "kind", "trusted", "metadata", "dataset",
                 "harness_version", "created", "metrics", "folds", "diagnostics",
                 "predictions_file"],
    "properties": {
        "schema_version": {"type": "integer", "enum": [SCHEMA_VERSION]},
        "name": {"type": "string", "minLength": 1, "maxLength": 100},
        "slug": {"type": "string", "pattern": SLUG_PATTERN},
        "kind": {"type": "string", "enum": ["baseline", "submission"]},
        "trusted": {"type": "boolean"},
        "metadata": {
            "type": "object",
            "additionalProperties": True,
            "required": ["authors", "seeds", "external_data"],
            "properties": {
                "name": {"type": "string", "maxLength": 100},
                "authors": {"type": "array", "items": {"type": "string", "maxLength": 200}},
                "code_url": {"type": ["string", "null"], "pattern": r"^https?://",
                             "maxLength": 500},
                "paper_url": {"type": ["string", "null"], "pattern": r"^https?://",
                              "maxLength": 500},
                "n_parameters": {"type": ["integer", "null"], "minimum": 0},
                "hardware": {"type": ["string", "null"], "maxLength": 200},
                "seeds": {"type": "array", "minItems": 1,
                          "items": {"type": "integer", "minimum": 0}},
                "external_data": {"type": "boolean"},
                "description": {"type": ["string", "null"], "maxLength": 2000},
                "notes": {"type": ["string", "null"], "maxLength": 2000},
                "contact": {"type": ["string", "null"], "maxLength": 200},
                "oracle": {"type": "boolean"},
            },
        },
        "dataset": {
            "type": "object",
            "additionalProperties": True,
            "required": ["id", "version", "tag", "commit", "splits_sha256"],
            "properties": {
                "id": {"type": ["string", "null"]},
                "version": {"type": "string", "minLength": 1},
                "tag": {"type": ["string", "null"]},
                "commit": {"type": ["string", "null"], "pattern": r"^[0-9a-f]{7,64}$"},
                "splits_sha256": {"type": "string", "pattern": SHA256_PATTERN},
                "name": {"type": ["string", "null"]},
                "source": {"type": ["string", "null"]},
                "renderer": {"type": ["string", "null"]},
                "preset": {"type": ["string", "null"]},
            },
        },
        "harness_version": {"type": "string", "minLength": 1},
        "created": {"type": "string", "format": "date-time"},
        "metrics": {
            "type": "object",
            "additionalProperties": True,
            "required": ["metrics_version", "n_images", "n_clusters", "complete", "seeds",
                         "pooled", "pooled_ci68", "folds", "fold_summary", "seed_summary",
                         "mass_bins", "redshift_bins", "by_cool_core", "by_merger", "headline"],
            "properties": {
                "metrics_version": {"type": "string"},
                "n_images": {"type": "integer", "minimum": 1},
                "n_clusters": {"type": "integer", "minimum": 1},
                "complete": {"type": "boolean"},
                "seeds": {"type": "array", "minItems": 1, "items": {"type": "integer"}},
                "pooled": _STATS,
                "pooled_ci68": {"type": "object"},
                "folds": {"type": "array", "items": _STATS},
                "fold_summary": {"type": "object"},
                "seed_summary": {"type": "object"},
                "mass_bins": {"type": "object"},
                "redshift_bins": {"type": "object"},
                "by_cool_core": {"type": "object"},
                "by_merger": {"type": "object"},
                "uncertainty": _UNCERTAINTY,
                "testsets": {"type": "object", "additionalProperties": _TESTSET},
                "headline": {
                    "type": "object",
                    "required": ["scatter_frac", "bias_dex"],
                    "properties": {"scatter_frac": _NUM_OR_NULL, "bias_dex": _NUM_OR_NULL},
                },
            },
        },
        "folds": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": list(FOLD_COLUMNS),
                "properties": {"fold": {"type": "integer", "minimum": 0},
                               "n_images": {"type": "integer", "minimum": 0},
                               "n_clusters": {"type": "integer", "minimum": 0},
                               **{k: _NUM_OR_NULL for k in FOLD_COLUMNS[3:]}},
            },
        },
        "diagnostics": {
            "type": ["object", "null"],
            "additionalProperties": True,
            "properties": {"core_sensitivity": _NUM_OR_NULL},
        },
        "predictions_file": {"type": ["string", "null"],
                             "pattern": r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"},
    },
}

_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
    and v == v and v not in (float("inf"), float("-inf")),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}
_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")


def schema_problems(value, schema: dict = ENTRY_SCHEMA, path: str = "$") -> list[str]:
    """Every way ``value`` violates ``schema`` (JSON-Schema subset), as path: message."""
    problems = []
    types = schema.get("type")
    if types is not None:
        types = [types] if isinstance(types, str) else types
        if not any(_TYPES[t](value) for t in types):
            return [f"{path}: expected {' or '.join(types)}, got {type(value).__name__}"
                    + (f" {value!r}" if isinstance(value, float) else "")]
    if value is None:
        return problems
    if "enum" in schema and value not in schema["enum"]:
        problems.append(f"{path}: {value!r} is not one of {schema['enum']}")
    if isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            problems.append(f"{path}: shorter than {schema['minLength']} characters")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            problems.append(f"{path}: longer than {schema['maxLength']} characters")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            problems.append(f"{path}: {value[:60]!r} does not match {schema['pattern']}")
        if schema.get("format") == "date-time" and not _DATE_TIME.match(value):
            problems.append(f"{path}: {value[:40]!r} is not an ISO 8601 UTC time "
                            "(YYYY-MM-DDTHH:MM:SSZ)")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            problems.append(f"{path}: {value} < {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            problems.append(f"{path}: {value} > {schema['maximum']}")
    if isinstance(value, list):
        if "minItems" in schema and len(value) < schema["minItems"]:
            problems.append(f"{path}: fewer than {schema['minItems']} items")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            problems.append(f"{path}: more than {schema['maxItems']} items")
        if "items" in schema:
            for i, item in enumerate(value):
                problems += schema_problems(item, schema["items"], f"{path}[{i}]")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for key in schema.get("required", []):
            if key not in value:
                problems.append(f"{path}: missing '{key}'")
        extra_schema = schema.get("additionalProperties", True)
        if extra_schema is False:
            extra = sorted(str(k) for k in value if k not in props)
            if extra:
                problems.append(f"{path}: unexpected key(s) {extra}")
        elif isinstance(extra_schema, dict):  # every other key's value follows this schema
            for key in (k for k in value if k not in props):
                problems += schema_problems(value[key], extra_schema, f"{path}.{key}")
        for key, sub in props.items():
            if key in value:
                problems += schema_problems(value[key], sub, f"{path}.{key}")
    return problems



# ---------------------------------------------------------------------------------------
# Typed entries
# ---------------------------------------------------------------------------------------

def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


# Where diagnostics written before ``core_sensitivity`` was the one key kept the same number.
LEGACY_CORE_SENSITIVITY_KEYS = ("core_sensitivity_ratio", "core_sensitivity_occlusion")


def core_sensitivity(diagnostics: Mapping | None) -> float | None:
    """The one core-sensitivity number of a diagnostics summary, old or new.

    Parameters
    ----------
    diagnostics
        A summary of :mod:`benchmark.diagnostics` (an entry's ``diagnostics`` or a
        ``diagnostics.json``), or None.

    Returns
    -------
    float or None
        ``core_sensitivity``; for files that lack it, the first of
        :data:`LEGACY_CORE_SENSITIVITY_KEYS` present; None when absent or not finite.
    """
    diag = diagnostics or {}
    for key in ("core_sensitivity", *LEGACY_CORE_SENSITIVITY_KEYS):
        if diag.get(key) is not None:
            return _number(diag[key])
    return None


def _section(document: Mapping, key: str) -> Mapping[str, Any]:
    # Optional objects of the open parts of the schema (metrics, diagnostics): {} when absent.
    value = document.get(key)
    return value if isinstance(value, dict) else {}


def _interval(value) -> tuple[float, float] | None:
    if isinstance(value, list) and len(value) == 2 and None not in map(_number, value):
        return float(value[0]), float(value[1])
    return None


def _fold_extreme(summary: Mapping, which: str) -> tuple[int, float] | None:
    value, fold = _number(summary.get(which)), summary.get(f"{which}_fold")
    return None if value is None or not isinstance(fold, int) else (fold, value)


@dataclasses.dataclass(frozen=True)
class TestSetScore:
    """An entry's score on one extra test set (``metrics.testsets.<name>``).

    ``scatter_frac`` and ``bias_dex`` are the mean over the fold models (every seed and fold)
    of each model's scatter (ln 10 x Gaussian sigma, as the headline) and mean bias (dex) on
    all the set's images, ``*_std`` their spread; ``ratio`` is ``scatter_frac`` over the
    same models' mean in-domain scatter. ``scatter_frac_ci68`` and ``ratio_ci68`` are their
    68% intervals from a bootstrap over the set's and the parent's clusters (None in entries
    written before them, or without a bootstrap). ``scored`` is False for an entry that no
    fold model of the harness predicted (uploaded predictions), with the ``reason``.
    """

    __test__ = False  # not a pytest class

    name: str
    hidden: bool
    change: str | None
    scored: bool
    reason: str | None
    n_images: int
    n_models: int
    scatter_frac: float | None
    scatter_frac_std: float | None
    bias_dex: float | None
    bias_dex_std: float | None
    in_domain_scatter_frac: float | None
    ratio: float | None
    scatter_frac_ci68: tuple[float, float] | None = None
    ratio_ci68: tuple[float, float] | None = None

    @classmethod
    def from_json(cls, d: Mapping) -> "TestSetScore":
        """The score of a ``metrics.testsets`` member that follows the schema."""
        return cls(name=d["name"], hidden=d["kind"] == "hidden", change=d.get("change"),
                   scored=d["status"] == "scored", reason=d.get("reason"),
                   n_images=d["n_images"], n_models=d["n_models"],
                   scatter_frac=_number(d.get("scatter_frac_mean")),
                   scatter_frac_std=_number(d.get("scatter_frac_std")),
                   bias_dex=_number(d.get("bias_dex_mean")),
                   bias_dex_std=_number(d.get("bias_dex_std")),
                   in_domain_scatter_frac=_number(d.get("in_domain_scatter_frac_mean")),
                   ratio=_number(d.get("ratio")),
                   scatter_frac_ci68=_interval(d.get("scatter_frac_ci68")),
                   ratio_ci68=_interval(d.get("ratio_ci68")))


@dataclasses.dataclass(frozen=True)
class Score:
    """The harness's scores of one entry: its ``metrics`` (:func:`benchmark.metrics.score`).

    The headline numbers are typed fields; every other part (pooled statistics, per-fold
    rows, mass bins, the error PDF, ...) stays in :attr:`document`, the ``metrics`` object
    exactly as written, read through :meth:`section`.
    """

    n_images: int
    n_clusters: int
    complete: bool
    seeds: tuple[int, ...]
    scatter_frac: float | None
    scatter_frac_ci68: tuple[float, float] | None
    bias_dex: float | None
    fold_mean_frac: float | None
    fold_std_frac: float | None
    best_fold: tuple[int, float] | None
    worst_fold: tuple[int, float] | None
    document: Mapping[str, Any] = dataclasses.field(repr=False)

    @classmethod
    def from_json(cls, metrics: Mapping) -> "Score":
        """The score of a ``metrics`` object that follows the schema."""
        head = metrics["headline"]
        gauss = _section(_section(metrics, "fold_summary"), "scatter_gauss_frac")
        return cls(n_images=metrics["n_images"], n_clusters=metrics["n_clusters"],
                   complete=metrics["complete"], seeds=tuple(metrics["seeds"]),
                   scatter_frac=_number(head.get("scatter_frac")),
                   scatter_frac_ci68=_interval(head.get("scatter_frac_ci68")),
                   bias_dex=_number(head.get("bias_dex")),
                   fold_mean_frac=_number(head.get("scatter_frac_fold_mean")),
                   fold_std_frac=_number(head.get("scatter_frac_fold_std")),
                   best_fold=_fold_extreme(gauss, "best"), worst_fold=_fold_extreme(gauss, "worst"),
                   document=copy.deepcopy(dict(metrics)))

    def section(self, key: str) -> Mapping[str, Any]:
        """One object of the metrics (``pooled``, ``pdf``, ``mass_bins``, ...); {} if absent."""
        return _section(self.document, key)

    @property
    def uncertainty(self) -> Mapping[str, Any]:
        """The uncertainty track's scores (:func:`benchmark.metrics.score_uncertainty`);
        {} for point predictions and for entries written before the track."""
        return self.section("uncertainty")

    @property
    def testsets(self) -> tuple["TestSetScore", ...]:
        """Scores on the extra test sets (shift track, hidden set), public sets by name, then
        the hidden one; () for entries written before them or with no set beside the data."""
        found = [TestSetScore.from_json(d) for d in _section(self.document, "testsets").values()
                 if isinstance(d, dict)]
        return tuple(sorted(found, key=lambda t: (t.hidden, t.name)))

    def testset(self, name: str) -> "TestSetScore | None":
        """The score on one test set by name (``hidden`` for the hidden set), or None."""
        return next((t for t in self.testsets if t.name == name), None)

    @property
    def hidden(self) -> "TestSetScore | None":
        """The score on the maintainer's hidden set, or None when it was not run."""
        return next((t for t in self.testsets if t.hidden), None)

    def uncertainty_stat(self, key: str) -> float | None:
        """One pooled statistic of the uncertainty track (``crps_dex``, ``log_score``,
        ``coverage_68``, ``coverage_95``, ...), or None."""
        return _number(_section(self.uncertainty, "pooled").get(key))

    def uncertainty_ci68(self, key: str) -> tuple[float, float] | None:
        """The 68% bootstrap interval over clusters of one pooled uncertainty statistic, or
        None (no bootstrap, or an entry written before the intervals)."""
        return _interval(_section(self.uncertainty, "pooled_ci68").get(key))

    @property
    def fold_rows(self) -> list[Mapping[str, Any]]:
        """The per-fold statistics of the metrics, one object per test fold."""
        return [r for r in self.document.get("folds", []) if isinstance(r, dict) and "fold" in r]

    def to_json(self) -> dict:
        """The ``metrics`` object as written."""
        return copy.deepcopy(dict(self.document))


@dataclasses.dataclass(frozen=True)
class Entry:
    """One leaderboard entry; its JSON form is :data:`ENTRY_SCHEMA`'s (``score`` is ``metrics``).

    Build one with :func:`make_entry` or :func:`validate_entry`; never edit the JSON by hand.
    ``source`` is the file it was read from (None for an entry not read from disk).
    """

    name: str
    slug: str
    kind: str
    trusted: bool
    metadata: Mapping[str, Any]
    dataset: Mapping[str, Any]
    harness_version: str
    created: str
    score: Score
    folds: tuple[Mapping[str, Any], ...]
    diagnostics: Mapping[str, Any] | None
    predictions_file: str | None
    schema_version: int = SCHEMA_VERSION
    source: Path | None = dataclasses.field(default=None, compare=False)

    @classmethod
    def from_json(cls, d: Mapping, source: Path | None = None) -> "Entry":
        """The entry of a JSON object that follows the schema (see :func:`validate_entry`)."""
        d = copy.deepcopy(dict(d))
        return cls(name=d["name"], slug=d["slug"], kind=d["kind"], trusted=d["trusted"],
                   metadata=d["metadata"], dataset=d["dataset"],
                   harness_version=d["harness_version"], created=d["created"],
                   score=Score.from_json(d["metrics"]), folds=tuple(d["folds"]),
                   diagnostics=d["diagnostics"], predictions_file=d["predictions_file"],
                   schema_version=d["schema_version"], source=source)

    def to_json(self) -> dict:
        """The JSON object of the entry file (keys in the schema's order)."""
        return copy.deepcopy({
            "schema_version": self.schema_version, "name": self.name, "slug": self.slug,
            "kind": self.kind, "trusted": self.trusted, "metadata": dict(self.metadata),
            "dataset": dict(self.dataset), "harness_version": self.harness_version,
            "created": self.created, "metrics": self.score.to_json(),
            "folds": [dict(f) for f in self.folds],
            "diagnostics": None if self.diagnostics is None else dict(self.diagnostics),
            "predictions_file": self.predictions_file,
        })

    @property
    def oracle(self) -> bool:
        """True for the physical floor: an entry computed from simulation truth that no
        observation gives (``metadata.oracle``); shown beside every ranking, never ranked."""
        return self.metadata.get("oracle") is True

    @property
    def core_sensitivity(self) -> float | None:
        """The diagnostics' core sensitivity (see :func:`core_sensitivity`)."""
        return core_sensitivity(self.diagnostics)


def validate_entry(d) -> Entry:
    """Check an entry against :data:`ENTRY_SCHEMA` and internal consistency.

    Parameters
    ----------
    d : Entry or dict
        An entry, or the JSON object of an entry file.

    Returns
    -------
    Entry

    Raises
    ------
    EntryError
        Listing every problem.
    """
    if isinstance(d, Entry):
        d = d.to_json()
    problems = schema_problems(d)
    if not problems:
        problems = _consistency_problems(d)
    try:
        json.dumps(d, allow_nan=False)
    except (TypeError, ValueError) as exc:
        problems.append(f"not JSON-serialisable: {exc}")
    if problems:
        name = d.get("slug", "?") if isinstance(d, dict) else "?"
        raise EntryError(format_problems(
            f"entry {name!r} does not follow the entry schema (schema_version "
            f"{SCHEMA_VERSION})", problems[:30] + ([f"... and {len(problems) - 30} more"]
                                                    if len(problems) > 30 else []),
            "Entries are written by the harness (`clustermass evaluate`/`train`); "
            "regenerate it rather than editing by hand."))
    return Entry.from_json(d)


def _consistency_problems(d: dict) -> list[str]:
    problems = []
    if d["dataset"]["splits_sha256"] != d["metrics"].get("splits_sha256",
                                                         d["dataset"]["splits_sha256"]):
        problems.append("$.metrics.splits_sha256 differs from $.dataset.splits_sha256")
    if sorted(d["metadata"]["seeds"]) != sorted(d["metrics"]["seeds"]):
        problems.append(f"$.metadata.seeds {d['metadata']['seeds']} differ from the scored "
                        f"seeds {d['metrics']['seeds']}")
    if [f["fold"] for f in d["folds"]] != [f.get("fold") for f in d["metrics"]["folds"]]:
        problems.append("$.folds does not match $.metrics.folds")
    return problems


# ---------------------------------------------------------------------------------------
# Construction
# ---------------------------------------------------------------------------------------

def utc_now() -> str:
    """Current time, ISO 8601 UTC with seconds (``2026-01-31T12:00:00Z``)."""
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def slugify(name: str) -> str:
    """A file-name id from a display name (lowercase, digits, dashes; <= 64 chars)."""
    slug = re.sub(r"[^a-z0-9]+", "-", str(name).lower()).strip("-")[:64].strip("-")
    if not slug:
        raise EntryError(f"cannot make a slug from the name {name!r}; give 'slug' explicitly")
    return slug


def harness_version() -> str:
    """Version of the benchmark harness (:data:`benchmark.HARNESS_VERSION`)."""
    return HARNESS_VERSION


def _git(root: Path, *args) -> str | None:
    # Read-only git queries of the dataset's own repository.
    try:
        res = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                             timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    out = res.stdout.strip()
    return out if res.returncode == 0 and out else None


def _datalad_id(root: Path, default: str | None) -> str | None:
    cfg = root / ".datalad" / "config"
    if not cfg.is_file():
        return default
    parser = configparser.ConfigParser()
    try:
        parser.read(cfg)
    except configparser.Error:
        return default
    return parser.get('datalad "dataset"', "id", fallback=default)


def dataset_provenance(dataset) -> dict:
    """``{id, version, tag, commit, splits_sha256, name, source, renderer, preset}``.

    ``id`` is the DataLad dataset id (``.datalad/config``), ``commit`` and ``tag`` are
    read (read-only) from the dataset's own git repository when it is one; else None.

    Parameters
    ----------
    dataset : object with ``card`` and ``root`` (a ClusterMassDataset), or a card dict
        With a card dict, id/commit/tag are None unless the card has them.
    """
    card = dataset.card if hasattr(dataset, "card") else dict(dataset)
    root = Path(dataset.root) if hasattr(dataset, "root") else None
    ds_id = card.get("dataset_id")
    commit = tag = None
    if root is not None:
        ds_id = _datalad_id(root, ds_id)
        if (root / ".git").exists():  # only the dataset's own repo, never a parent's
            commit = _git(root, "rev-parse", "HEAD")
            tag = _git(root, "describe", "--tags", "--exact-match", "HEAD")
    return {"id": ds_id, "version": str(card.get("version")), "tag": tag, "commit": commit,
            "splits_sha256": card.get("splits_sha256"), "name": card.get("name"),
            "source": card.get("source"), "renderer": card.get("renderer"),
            "preset": card.get("preset")}


def make_entry(name: str, kind: str | None = None, metrics: dict | None = None, dataset=None,
               metadata: dict | None = None,
               slug: str | None = None, trusted: bool | None = None,
               diagnostics: dict | None = None, predictions_file: str | None = "default",
               created: str | None = None) -> Entry:
    """Build (and validate) a leaderboard entry.

    Parameters
    ----------
    name : str
        Display name.
    kind : {"baseline", "submission"}, optional
        Default from ``metadata["kind"]``: "baseline" stays "baseline", anything else
        (e.g. "code") is a "submission".
    metrics : dict
        Output of :func:`benchmark.metrics.score`.
    dataset : ClusterMassDataset or card dict
        Provenance is read from it (:func:`dataset_provenance`).
    metadata : dict, optional
        Submission metadata (authors, code_url, n_parameters, hardware, seeds,
        external_data, ...). ``seeds`` defaults to the scored seeds, ``authors`` to
        ``[]``, ``external_data`` to False.
    slug : str, optional
        Default :func:`slugify` of ``name``.
    trusted : bool, optional
        True when the harness trained the model (baselines, code submissions); default
        ``metadata["trusted"]`` if given, else True for baselines and False for
        submissions (uploaded predictions).
    diagnostics : dict, optional
        Interpretation diagnostics summary (e.g. ``core_sensitivity``), or None.
    predictions_file : str or None
        Default ``<slug>.predictions.csv``.
    created : str, optional
        ISO UTC time; default now.

    Returns
    -------
    Entry
    """
    if metrics is None or dataset is None:
        raise EntryError("make_entry needs the metrics (benchmark.metrics.score) and the "
                         "dataset (ClusterMassDataset or its card)")
    meta = dict(metadata or {})
    if kind is None:
        kind = "baseline" if meta.get("kind") == "baseline" else "submission"
    if trusted is None and isinstance(meta.get("trusted"), bool):
        trusted = meta["trusted"]
    slug = slug or slugify(name)
    meta.setdefault("name", name)
    meta.setdefault("authors", [])
    meta.setdefault("seeds", list(metrics.get("seeds", [0])))
    meta.setdefault("external_data", False)
    folds = [{k: row.get(k) for k in FOLD_COLUMNS} for row in metrics.get("folds", [])]
    return validate_entry({
        "schema_version": SCHEMA_VERSION,
        "name": name,
        "slug": slug,
        "kind": kind,
        "trusted": (kind == "baseline") if trusted is None else bool(trusted),
        "metadata": meta,
        "dataset": dataset_provenance(dataset),
        "harness_version": harness_version(),
        "created": created or utc_now(),
        "metrics": metrics,
        "folds": folds,
        "diagnostics": diagnostics,
        "predictions_file": (f"{slug}.predictions.csv" if predictions_file == "default"
                             else predictions_file),
    })


# ---------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------

def write_entry(path, entry) -> Path:
    """Validate ``entry`` (an :class:`Entry` or its JSON object) and write it atomically."""
    entry = validate_entry(entry)
    return write_json(path, entry.to_json(), indent=1, sort_keys=False)


def write_predictions(path, pred: pd.DataFrame) -> Path:
    """Write out-of-fold predictions (image_id, seed, log10_m500c_pred and the uncertainty
    columns of the uncertainty track, when given) atomically as CSV."""
    cols = [c for c in ("image_id", "seed", "log10_m500c_pred") + UNCERTAINTY_COLUMNS
            if c in pred.columns]
    return write_text(path, pred[cols].to_csv(index=False, float_format="%.6f",
                                              lineterminator="\n"))


def load_entry(path) -> Entry:
    """Read and validate one entry file."""
    path = Path(path)
    if not path.is_file():
        raise EntryError(f"entry file {path} does not exist")
    if path.stat().st_size > MAX_ENTRY_BYTES:
        raise EntryError(f"entry file {path} is larger than {MAX_ENTRY_BYTES} bytes")
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EntryError(f"entry file {path} is not valid JSON: {exc}") from None
    try:
        return dataclasses.replace(validate_entry(d), source=path)
    except EntryError as exc:
        raise EntryError(f"{path}: {exc}") from None


def _entry_files(source: Path) -> list[Path]:
    if source.is_file():
        return [source]
    if not source.is_dir():
        raise EntryError(f"entries directory {source} does not exist")
    # Symbolic links are skipped: an entries folder never points outside itself.
    return sorted(p for p in source.glob("*.json") if ".predictions." not in p.name
                  and p.is_file() and not p.is_symlink())


def _short(exc: EntryError) -> str:
    lines = str(exc).splitlines()
    return lines[0] + (" (" + "; ".join(line.strip(" -") for line in lines[1:4]) + ")")


def _load_folder(source: Path, problems: list[str]) -> list[Entry]:
    entries = []
    for path in _entry_files(source):
        try:
            entries.append(load_entry(path))
        except EntryError as exc:
            problems.append(_short(exc))
    slugs = [e.slug for e in entries]
    dup = sorted({s for s in slugs if slugs.count(s) > 1})
    if dup:
        problems.append(f"several entries in {source} share the slug(s) {dup}")
    return sorted(entries, key=lambda e: e.slug)


def load_entries(sources, strict: bool = True) -> list[Entry]:
    """The entries ``*.json`` of folders (predictions files skipped), each folder by slug.

    Parameters
    ----------
    sources : path or list of paths
        Folders of entry files, or single entry files. Folders of several sources may hold
        entries of the same slug (a board of several result folders).
    strict : bool
        Raise one :class:`EntryError` naming every invalid file (default); otherwise skip
        invalid files.
    """
    sources = [sources] if isinstance(sources, (str, os.PathLike)) else list(sources)
    entries, problems = [], []
    for source in map(Path, sources):
        entries += _load_folder(source, problems)
    if problems and strict:
        where = ", ".join(map(str, sources))
        raise EntryError(format_problems(f"{len(problems)} invalid entry file(s) in {where}",
                                         problems, "fix or remove these files"))
    return entries
