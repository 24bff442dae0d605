"""Leaderboard entry files: schema, construction, validation, atomic writing, loading.

One entry per file, ``results/<preset>/entries/<slug>.json``, with its out-of-fold
predictions beside it as ``<slug>.predictions.csv``. The schema (:data:`ENTRY_SCHEMA`)
is a JSON-Schema-like dict checked by a small validator of our own
(:func:`validate_entry`; no extra dependency), supporting ``type`` (incl. "null"),
``properties``, ``required``, ``additionalProperties``, ``items``, ``enum``, ``pattern``,
``minimum``, ``maximum``, ``minLength``, ``maxLength``, ``minItems`` and ``format:
date-time`` (ISO 8601 UTC ``YYYY-MM-DDTHH:MM:SSZ``).

:func:`evaluate_predictions` is the glue for prediction submissions: load, validate
(all problems in one error), score with :func:`benchmark.metrics.score`, write the entry
and the predictions. Code submissions and baselines are trained by
``benchmark.training`` and then call :func:`benchmark.metrics.score` and
:func:`make_entry` / :func:`write_entry` themselves.
"""

from __future__ import annotations

import configparser
import datetime as _dt
import json
import os
import re
import subprocess
import tempfile
from pathlib import Path

import pandas as pd

from benchmark.core.errors import EntryError, format_problems

__all__ = [
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
    "evaluate_predictions",
    "slugify",
    "dataset_provenance",
    "harness_version",
    "utc_now",
]

SCHEMA_VERSION = 1
SLUG_PATTERN = r"^[a-z0-9][a-z0-9-]{0,63}$"
SHA256_PATTERN = r"^[0-9a-f]{64}$"
MAX_ENTRY_BYTES = 8 * 2**20

_NUM_OR_NULL = {"type": ["number", "null"]}
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
        if "items" in schema:
            for i, item in enumerate(value):
                problems += schema_problems(item, schema["items"], f"{path}[{i}]")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for key in schema.get("required", []):
            if key not in value:
                problems.append(f"{path}: missing '{key}'")
        if schema.get("additionalProperties", True) is False:
            extra = sorted(str(k) for k in value if k not in props)
            if extra:
                problems.append(f"{path}: unexpected key(s) {extra}")
        for key, sub in props.items():
            if key in value:
                problems += schema_problems(value[key], sub, f"{path}.{key}")
    return problems


def validate_entry(d) -> dict:
    """Check an entry against :data:`ENTRY_SCHEMA` and internal consistency.

    Returns
    -------
    dict
        ``d`` unchanged.

    Raises
    ------
    EntryError
        Listing every problem.
    """
    problems = schema_problems(d)
    if not problems:
        if d["dataset"]["splits_sha256"] != d["metrics"].get("splits_sha256",
                                                             d["dataset"]["splits_sha256"]):
            problems.append("$.metrics.splits_sha256 differs from $.dataset.splits_sha256")
        if sorted(d["metadata"]["seeds"]) != sorted(d["metrics"]["seeds"]):
            problems.append(f"$.metadata.seeds {d['metadata']['seeds']} differ from the scored "
                            f"seeds {d['metrics']['seeds']}")
        if [f["fold"] for f in d["folds"]] != [f.get("fold") for f in d["metrics"]["folds"]]:
            problems.append("$.folds does not match $.metrics.folds")
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
    return d


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
    """Version of the benchmark harness (``benchmark.HARNESS_VERSION`` or the package's)."""
    try:
        import benchmark

        v = getattr(benchmark, "HARNESS_VERSION", None) or getattr(benchmark, "__version__", None)
        if v:
            return str(v)
    except ImportError:
        pass
    try:
        from importlib.metadata import version

        return version("clustermass")
    except Exception:  # not installed as a distribution
        return "0+unknown"


def _git(root: Path, *args) -> str | None:
    # Read-only git queries of the dataset's own repository.
    try:
        res = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                             timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    out = res.stdout.strip()
    return out if res.returncode == 0 and out else None


def dataset_provenance(dataset) -> dict:
    """``{id, version, tag, commit, splits_sha256, name, source, renderer, preset}``.

    ``id`` is the DataLad dataset id (``.datalad/config``), ``commit`` and ``tag`` are
    read (read-only) from the dataset's own git repository when it is one; else None.

    Parameters
    ----------
    dataset : ClusterMassDataset or dict
        A dataset, or a card dict (then id/commit/tag are None unless the card has them).
    """
    card = dataset.card if hasattr(dataset, "card") else dict(dataset)
    root = Path(dataset.root) if hasattr(dataset, "root") else None
    ds_id = card.get("dataset_id")
    commit = tag = None
    if root is not None:
        cfg = root / ".datalad" / "config"
        if cfg.is_file():
            parser = configparser.ConfigParser()
            try:
                parser.read(cfg)
                ds_id = parser.get('datalad "dataset"', "id", fallback=ds_id)
            except configparser.Error:
                pass
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
               created: str | None = None) -> dict:
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
    dict
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
    entry = {
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
    }
    return validate_entry(entry)


# ---------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------

def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_entry(path, d: dict) -> Path:
    """Validate ``d`` and write it to ``path`` atomically (temp file + rename)."""
    validate_entry(d)
    path = Path(path)
    _atomic_write(path, (json.dumps(d, indent=1, allow_nan=False) + "\n").encode("utf-8"))
    return path


def write_predictions(path, pred: pd.DataFrame) -> Path:
    """Write out-of-fold predictions (image_id, seed, log10_m500c_pred) atomically as CSV."""
    cols = [c for c in ("image_id", "seed", "log10_m500c_pred") if c in pred.columns]
    text = pred[cols].to_csv(index=False, float_format="%.6f", lineterminator="\n")
    path = Path(path)
    _atomic_write(path, text.encode("utf-8"))
    return path


def load_entry(path) -> dict:
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
        return validate_entry(d)
    except EntryError as exc:
        raise EntryError(f"{path}: {exc}") from None


def load_entries(directory, strict: bool = True) -> list[dict]:
    """All entries ``*.json`` of a directory (predictions files skipped), sorted by slug.

    Parameters
    ----------
    strict : bool
        Raise one :class:`EntryError` naming every invalid file (default); otherwise skip
        invalid files.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise EntryError(f"entries directory {directory} does not exist")
    entries, problems = [], []
    for path in sorted(directory.glob("*.json")):
        if ".predictions." in path.name:
            continue
        try:
            entries.append(load_entry(path))
        except EntryError as exc:
            problems.append(str(exc).splitlines()[0] + (
                " (" + "; ".join(line.strip(" -") for line in str(exc).splitlines()[1:4]) + ")"))
    slugs = [e["slug"] for e in entries]
    dup = sorted({s for s in slugs if slugs.count(s) > 1})
    if dup:
        problems.append(f"several entries share the slug(s) {dup}")
    if problems and strict:
        raise EntryError(format_problems(f"{len(problems)} invalid entry file(s) in {directory}",
                                         problems))
    return sorted(entries, key=lambda e: e["slug"])


def evaluate_predictions(pred_path, meta_path, dataset, out_dir, n_boot: int = 1000,
                         rng_seed: int = 0, overwrite: bool = False) -> dict:
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
    dict
        The entry written.

    Raises
    ------
    ClusterMassError
        Any problem with the dataset, the submission (all listed at once) or the entry.
    """
    from benchmark.dataset.loader import ClusterMassDataset
    from benchmark.metrics import score
    from benchmark.submission import load_submission, validate_submission

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
    meta_entry = {k: v for k, v in meta.items() if k not in ("slug", "dataset_version",
                                                             "splits_sha256")}
    entry = make_entry(meta["name"], "submission", metrics, ds, metadata=meta_entry, slug=slug,
                       trusted=False)
    write_predictions(out_dir / entry["predictions_file"], pred)
    write_entry(entry_path, entry)
    return entry
