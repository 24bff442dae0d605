"""Prediction submissions: loading, validation, and the expected format.

A prediction submission is a predictions table plus a metadata file. Nothing is scored
until both pass validation; every problem found is reported together, by image id
(long lists truncated), in one :class:`benchmark.core.errors.SubmissionError`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.core.errors import SubmissionError, format_problems

__all__ = [
    "EXPECTED_FORMAT",
    "PRED_COLUMNS",
    "SIGMA_COLUMN",
    "QUANTILE_COLUMNS",
    "UNCERTAINTY_COLUMNS",
    "METADATA_FIELDS",
    "LOG10_M_RANGE",
    "load_submission",
    "read_predictions",
    "read_metadata",
    "validate_predictions",
    "validate_metadata",
    "validate_submission",
    "format_help",
]

PRED_COLUMNS = ("image_id", "log10_m500c_pred")
# The uncertainty track's columns (dex), defined here once: benchmark.metrics, training and
# entries import them (metrics is a non-independent sibling in the layers contract).
#: A Gaussian sigma of the predictive law of log10 M500c, or its 16th, 50th, 84th percentiles.
SIGMA_COLUMN = "log10_m500c_sigma"
QUANTILE_COLUMNS = ("log10_m500c_q16", "log10_m500c_q50", "log10_m500c_q84")
UNCERTAINTY_COLUMNS = (SIGMA_COLUMN,) + QUANTILE_COLUMNS
OPTIONAL_COLUMNS = ("seed",) + UNCERTAINTY_COLUMNS
#: Plausible range of predicted log10 M500c / Msun (the dataset spans ~13.5-15.3).
LOG10_M_RANGE = (12.0, 16.5)
#: Largest accepted sigma (dex): the width of :data:`LOG10_M_RANGE`, beyond which a
#: "prediction" says nothing about the mass.
MAX_SIGMA_DEX = LOG10_M_RANGE[1] - LOG10_M_RANGE[0]
MAX_PREDICTIONS_BYTES = 64 * 2**20
MAX_METADATA_BYTES = 256 * 2**10
MAX_ROWS = 1_000_000
MAX_SEEDS = 20
N_SHOWN = 10

_PRED_SUFFIXES = (".csv", ".parquet", ".pq")
_META_SUFFIXES = (".json", ".yaml", ".yml")
SLUG_PATTERN = r"^[a-z0-9][a-z0-9-]{0,63}$"

#: Metadata fields: name -> (required, description).
METADATA_FIELDS = {
    "name": (True, "entry name shown on the leaderboard (1-100 characters)"),
    "authors": (True, "list of author names (or one string)"),
    "code_url": (True, "http(s) link to the code, or null"),
    "n_parameters": (True, "number of trainable parameters (integer >= 0), or null"),
    "hardware": (True, "hardware used for training, e.g. '1x A100' or '2-core CPU'"),
    "seeds": (True, "list of the integer seeds present in the predictions"),
    "external_data": (True, "true if any data beyond this dataset was used (bool)"),
    "dataset_version": (True, "the dataset card's 'version'"),
    "splits_sha256": (True, "the dataset card's 'splits_sha256' (the splits you used)"),
    "slug": (False, "file-name id, lowercase letters/digits/dashes (default: from name)"),
    "description": (False, "short description (<= 2000 characters)"),
    "contact": (False, "e-mail or handle"),
    "paper_url": (False, "http(s) link to a paper"),
    "notes": (False, "free text (<= 2000 characters)"),
}

EXPECTED_FORMAT = f"""\
clustermass prediction submission
=================================
A directory (or two files) with:

1. predictions: predictions.csv or predictions.parquet (<= {MAX_PREDICTIONS_BYTES // 2**20} MiB)
   columns:
     image_id          string, as in the dataset's catalog.csv (e.g. c0012_e3_y)
     log10_m500c_pred  float, predicted log10(M500c / Msun), finite, in
                       [{LOG10_M_RANGE[0]}, {LOG10_M_RANGE[1]}]
     seed              integer >= 0 (optional; omit for a single seed, read as 0)
   optional uncertainty (the uncertainty track), either
     log10_m500c_sigma float, sigma of a Gaussian predictive law around
                       log10_m500c_pred (dex), finite, > 0 and <= {MAX_SIGMA_DEX}
   or all three quantiles of the predictive law (scored as the Gaussian of the same
   median and 16-84 width)
     log10_m500c_q16, log10_m500c_q50, log10_m500c_q84
                       floats, finite, q16 < q50 < q84, in the range above
   rows: every image of the catalog exactly once per seed (7,896 per seed for the
   full dataset), predicted OUT OF FOLD with the shipped splits (splits.json): the
   prediction for an image of fold k comes from a model that never saw fold k, and
   that was early-stopped/tuned only on fold (k+1) mod 10.
   example:
     image_id,log10_m500c_pred,seed
     c0001_e0_x,14.62,0
     c0001_e0_y,14.58,0

2. metadata: metadata.json or metadata.yaml (<= {MAX_METADATA_BYTES // 2**10} KiB), an object with
""" + "\n".join(f"     {k:<16} {'required' if req else 'optional'}: {desc}"
                for k, (req, desc) in METADATA_FIELDS.items()) + """
   example:
     {"name": "My CNN", "authors": ["A. Author"], "code_url": "https://example.org/code",
      "n_parameters": 120000, "hardware": "1x GPU", "seeds": [0, 1, 2],
      "external_data": false, "dataset_version": "<card version>",
      "splits_sha256": "<card splits_sha256>"}

Validation reports every problem at once (by image id); nothing is half-scored.
Metrics are computed by the harness (benchmark.metrics), never taken from the submitter.
"""


def format_help() -> str:
    """The text printed by ``clustermass format``."""
    return EXPECTED_FORMAT


def _head(items, n: int = N_SHOWN) -> str:
    items = list(items)
    s = ", ".join(str(i) for i in items[:n])
    return s + (f", ... and {len(items) - n} more" if len(items) > n else "")


def _raise(problems: list[str], what: str = "submission") -> None:
    if problems:
        raise SubmissionError(format_problems(
            f"{what} rejected: {len(problems)} problem(s)", problems,
            "Nothing was scored. Run `clustermass format` for the expected format."))


# ---------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------

def _check_file(path: Path, max_bytes: int, suffixes: tuple, what: str) -> None:
    if not path.exists():
        raise SubmissionError(f"{what} file {path} does not exist")
    if not path.is_file():
        raise SubmissionError(f"{what} path {path} is not a regular file")
    if path.suffix.lower() not in suffixes:
        raise SubmissionError(f"{what} file {path.name} must end in one of {list(suffixes)}")
    size = path.stat().st_size
    if size > max_bytes:
        raise SubmissionError(f"{what} file {path.name} is {size} bytes, more than the "
                              f"{max_bytes} allowed; a full submission is a few MB")
    if size == 0:
        raise SubmissionError(f"{what} file {path.name} is empty")


def read_predictions(path) -> pd.DataFrame:
    """Read a predictions CSV or Parquet file (size-guarded), values unconverted."""
    path = Path(path)
    _check_file(path, MAX_PREDICTIONS_BYTES, _PRED_SUFFIXES, "predictions")
    try:
        if path.suffix.lower() == ".csv":
            df = pd.read_csv(path, dtype=str, keep_default_na=False, nrows=MAX_ROWS + 1,
                             encoding="utf-8", on_bad_lines="error")
        else:
            try:
                import pyarrow  # noqa: F401
            except ImportError:
                raise SubmissionError("reading Parquet needs pyarrow (pip install pyarrow); "
                                      "or submit CSV") from None
            df = pd.read_parquet(path)
    except SubmissionError:
        raise
    except Exception as exc:  # any parser failure of a foreign file is a bad submission
        raise SubmissionError(f"predictions file {path.name} cannot be read as "
                              f"{path.suffix.lstrip('.').upper()}: {type(exc).__name__}: "
                              f"{str(exc)[:300]}") from None
    if len(df) > MAX_ROWS:
        raise SubmissionError(f"predictions file {path.name} has more than {MAX_ROWS} rows")
    return df


def read_metadata(path) -> dict:
    """Read a metadata JSON or YAML file (size-guarded, safe YAML loader)."""
    path = Path(path)
    _check_file(path, MAX_METADATA_BYTES, _META_SUFFIXES, "metadata")
    try:
        text = path.read_text(encoding="utf-8")
        if path.suffix.lower() == ".json":
            meta = json.loads(text)
        else:
            import yaml

            meta = yaml.safe_load(text)
    except Exception as exc:  # JSON/YAML/encoding errors of a foreign file
        raise SubmissionError(f"metadata file {path.name} cannot be parsed: "
                              f"{type(exc).__name__}: {str(exc)[:300]}") from None
    if not isinstance(meta, dict):
        raise SubmissionError(f"metadata file {path.name} must hold an object (key: value), "
                              f"not {type(meta).__name__}")
    return meta


def _find_one(directory: Path, names: tuple, suffixes: tuple, what: str) -> Path:
    for name in names:
        if (directory / name).is_file():
            return directory / name
    cands = sorted(p for p in directory.iterdir()
                   if p.is_file() and p.suffix.lower() in suffixes)
    if len(cands) == 1:
        return cands[0]
    if not cands:
        raise SubmissionError(f"no {what} file in {directory} (expected one of {list(names)})")
    raise SubmissionError(f"several candidate {what} files in {directory}: "
                          f"{[p.name for p in cands]}; name it {names[0]}")


def load_submission(path, metadata=None) -> tuple[pd.DataFrame, dict]:
    """Load a prediction submission.

    Parameters
    ----------
    path : path-like
        A directory holding ``predictions.{csv,parquet}`` and ``metadata.{json,yaml}``,
        or the predictions file itself.
    metadata : path-like, optional
        Metadata file; default: ``metadata.{json,yaml,yml}`` beside the predictions, or
        ``<stem>.meta.json``.

    Returns
    -------
    (DataFrame, dict)
        Raw predictions (strings, unvalidated) and the raw metadata.
    """
    path = Path(path)
    if path.is_dir():
        pred_path = _find_one(path, ("predictions.csv", "predictions.parquet"),
                              _PRED_SUFFIXES, "predictions")
        folder = path
    else:
        pred_path, folder = path, path.parent
    if metadata is None:
        stem = pred_path.name.split(".")[0]
        names = ("metadata.json", "metadata.yaml", "metadata.yml", f"{stem}.meta.json",
                 f"{stem}.meta.yaml")
        found = [folder / n for n in names if (folder / n).is_file()]
        if not found:
            raise SubmissionError(f"no metadata file beside {pred_path.name} (expected "
                                  f"metadata.json or metadata.yaml in {folder})")
        meta_path = found[0]
    else:
        meta_path = Path(metadata)
    return read_predictions(pred_path), read_metadata(meta_path)


# ---------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------

def _prediction_problems(df, catalog: pd.DataFrame, card: dict | None):
    """(problems, cleaned DataFrame or None)."""
    if not isinstance(df, pd.DataFrame):
        return [f"predictions must be a table (DataFrame), got {type(df).__name__}"], None
    problems = []
    cols = [str(c) for c in df.columns]
    if len(set(cols)) != len(cols):
        problems.append(f"duplicate column names: {sorted({c for c in cols if cols.count(c) > 1})}")
    missing = [c for c in PRED_COLUMNS if c not in cols]
    if missing:
        problems.append(f"missing column(s) {missing}; got {cols[:20]}")
    extra = [c for c in cols if c not in PRED_COLUMNS + OPTIONAL_COLUMNS]
    if extra:
        problems.append(f"unexpected column(s) {_head(extra)}; allowed: "
                        f"{list(PRED_COLUMNS + OPTIONAL_COLUMNS)}")
    if missing or problems:
        return problems, None
    if len(df) == 0:
        return ["the predictions table has no rows"], None
    if len(df) > MAX_ROWS:
        return [f"more than {MAX_ROWS} rows"], None
    df = df.reset_index(drop=True)
    df.columns = cols

    ids_raw = df["image_id"]
    null_id = ids_raw.isna().to_numpy() | (ids_raw.astype(str).str.strip() == "").to_numpy()
    if null_id.any():
        problems.append(f"{int(null_id.sum())} row(s) without an image_id (rows "
                        f"{_head(np.flatnonzero(null_id) + 1)})")
    ids = ids_raw.astype(str).str.strip().to_numpy(dtype=object)
    labels = np.where(null_id, [f"row {i + 1}" for i in range(len(df))], ids) \
        if null_id.any() else ids

    # Seeds.
    if "seed" in df.columns:
        raw = df["seed"]
        if pd.api.types.is_bool_dtype(raw) or pd.api.types.is_complex_dtype(raw):
            seeds = np.full(len(df), np.nan)
        else:
            seeds = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float)
        bad = ~np.isfinite(seeds) | (seeds < 0) | (seeds != np.round(seeds)) | (seeds > 2**31)
        if bad.any():
            problems.append(f"{int(bad.sum())} row(s) whose seed is not an integer >= 0: "
                            + _head(f"{labels[i]} ({raw.iloc[i]!r})" for i in np.flatnonzero(bad)))
        seeds = np.where(bad, -1, seeds).astype(np.int64)
    else:
        seeds, bad = np.zeros(len(df), dtype=np.int64), np.zeros(len(df), bool)
    uniq_seeds = sorted(set(seeds[~bad].tolist()))
    if len(uniq_seeds) > MAX_SEEDS:
        problems.append(f"{len(uniq_seeds)} seeds; at most {MAX_SEEDS} are accepted")

    # Values.
    raw = df["log10_m500c_pred"]
    vals, nonnum = _numbers(raw)
    if nonnum.any():
        problems.append(f"{int(nonnum.sum())} prediction(s) not a number: "
                        + _head(f"{labels[i]} ({str(raw.iloc[i])[:20]!r})"
                                for i in np.flatnonzero(nonnum)))
    nonfinite = ~np.isfinite(vals) & ~nonnum
    if nonfinite.any():
        problems.append(f"{int(nonfinite.sum())} prediction(s) missing or not finite "
                        f"(NaN/inf): {_head(labels[nonfinite])}")
    lo, hi = LOG10_M_RANGE
    with np.errstate(invalid="ignore"):
        out_range = np.isfinite(vals) & ((vals < lo) | (vals > hi))
    if out_range.any():
        problems.append(f"{int(out_range.sum())} prediction(s) outside the plausible range "
                        f"[{lo}, {hi}] of log10(M500c/Msun) (mass in Msun, log10?): "
                        + _head(f"{labels[i]} ({vals[i]:.4g})" for i in np.flatnonzero(out_range)))

    unc_problems, unc_values = _uncertainty_problems(df, labels)
    problems += unc_problems

    # Coverage per seed.
    cat_ids = catalog["image_id"].astype(str).to_numpy()
    cat_index = pd.Index(cat_ids)
    known = cat_index.get_indexer(ids) >= 0
    unknown = ~known & ~null_id
    if unknown.any():
        problems.append(f"{int(unknown.sum())} row(s) with an image_id not in the catalog "
                        f"of this dataset: {_head(pd.unique(ids[unknown]))}")
    for s in uniq_seeds[:MAX_SEEDS]:
        sel = (seeds == s) & ~bad
        sid = pd.Series(ids[sel & known])
        dup = sid[sid.duplicated()].unique()
        if len(dup):
            problems.append(f"seed {s}: {len(dup)} image(s) predicted more than once: "
                            f"{_head(dup)}")
        present = cat_index.isin(sid)
        if not present.all():
            problems.append(f"seed {s}: {int((~present).sum())} of {len(cat_ids)} catalog "
                            f"images without a prediction: {_head(cat_ids[~present])}")
    if card is not None and card.get("n_images") not in (None, len(cat_ids)):
        problems.append(f"the catalog has {len(cat_ids)} images but the dataset card says "
                        f"{card.get('n_images')}: the dataset is inconsistent (`make data`)")
    if problems:
        return problems, None
    clean = pd.DataFrame({"image_id": ids.astype(str), "seed": seeds,
                          "log10_m500c_pred": vals, **unc_values})
    order = np.lexsort((cat_index.get_indexer(clean["image_id"]), clean["seed"].to_numpy()))
    return [], clean.iloc[order].reset_index(drop=True)


def _numbers(raw: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(values as floats, NaN where not a number; mask of text that is not a number)."""
    if pd.api.types.is_bool_dtype(raw) or pd.api.types.is_complex_dtype(raw):
        return np.full(len(raw), np.nan), np.ones(len(raw), bool)
    vals = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float)
    rs = raw.astype(str).str.strip().str.lower()
    # to_numeric gives NaN for text; an explicit nan/inf is "non-finite", not "text".
    nonnum = (np.isnan(vals) & ~raw.isna().to_numpy()
              & ~rs.isin(["nan", "inf", "-inf", "+inf", "infinity", "-infinity", "none",
                          "null", "", "<na>"]).to_numpy())
    return vals, nonnum


def _uncertainty_kind_problems(cols) -> list[str]:
    quant = [c for c in QUANTILE_COLUMNS if c in cols]
    if SIGMA_COLUMN in cols and quant:
        return [f"both {SIGMA_COLUMN} and quantile columns {quant}: give either a Gaussian "
                "sigma or the three quantiles, not both"]
    if quant and len(quant) < len(QUANTILE_COLUMNS):
        return [f"quantile column(s) {[c for c in QUANTILE_COLUMNS if c not in cols]} "
                f"missing: give all of {list(QUANTILE_COLUMNS)}"]
    return []


def _sigma_problems(sigma: np.ndarray, labels) -> list[str]:
    with np.errstate(invalid="ignore"):
        bad = np.isfinite(sigma) & ((sigma <= 0) | (sigma > MAX_SIGMA_DEX))
    if not bad.any():
        return []
    return [f"{int(bad.sum())} {SIGMA_COLUMN} value(s) not in (0, {MAX_SIGMA_DEX}] dex (the "
            "width of the predictive Gaussian must be positive): "
            + _head(f"{labels[i]} ({sigma[i]:.4g})" for i in np.flatnonzero(bad))]


def _quantile_problems(q: np.ndarray, labels) -> list[str]:
    problems = []
    finite = np.isfinite(q).all(axis=0)
    cross = finite & ~((q[0] < q[1]) & (q[1] < q[2]))
    if cross.any():
        problems.append(f"{int(cross.sum())} image(s) whose quantiles cross (need q16 < q50 "
                        "< q84): " + _head(f"{labels[i]} ({q[0, i]:.4g}, {q[1, i]:.4g}, "
                                           f"{q[2, i]:.4g})" for i in np.flatnonzero(cross)))
    lo, hi = LOG10_M_RANGE
    outside = finite & ((q < lo) | (q > hi)).any(axis=0)
    if outside.any():
        problems.append(f"{int(outside.sum())} image(s) with a quantile outside the plausible "
                        f"range [{lo}, {hi}] of log10(M500c/Msun): {_head(labels[outside])}")
    return problems


def _uncertainty_problems(df: pd.DataFrame, labels) -> tuple[list[str], dict]:
    """Problems of the optional uncertainty columns (by image id), and their float values."""
    cols = [c for c in UNCERTAINTY_COLUMNS if c in df.columns]
    problems = _uncertainty_kind_problems(cols)
    if not cols or problems:
        return problems, {}
    values = {}
    for col in cols:
        vals, _ = _numbers(df[col])
        bad = ~np.isfinite(vals)
        if bad.any():
            problems.append(f"{int(bad.sum())} {col} value(s) missing, not a number or not "
                            f"finite: {_head(labels[bad])}")
        values[col] = vals
    if SIGMA_COLUMN in values:
        problems += _sigma_problems(values[SIGMA_COLUMN], labels)
    else:
        problems += _quantile_problems(np.stack([values[c] for c in QUANTILE_COLUMNS]), labels)
    return problems, values


def validate_predictions(df, catalog: pd.DataFrame, card: dict | None = None) -> pd.DataFrame:
    """Validate a predictions table against the catalog; return it cleaned.

    Checks: required columns only (``image_id``, ``log10_m500c_pred``, optional ``seed``
    and uncertainty columns); every catalog image exactly once per seed; ids known; values
    numeric, finite and in :data:`LOG10_M_RANGE`; seeds integers >= 0; uncertainties, if
    any, either a finite ``log10_m500c_sigma`` in (0, :data:`MAX_SIGMA_DEX`] or all three
    quantiles, finite, in range and ordered q16 < q50 < q84.

    Returns
    -------
    DataFrame
        ``image_id`` (str), ``seed`` (int64), ``log10_m500c_pred`` (float64) and the
        uncertainty columns given (float64), sorted by seed then catalog order.

    Raises
    ------
    SubmissionError
        One error listing every problem, with image ids.
    """
    problems, clean = _prediction_problems(df, catalog, card)
    _raise(problems, "predictions")
    return clean


def _is_url(v) -> bool:
    return isinstance(v, str) and re.match(r"^https?://[^\s<>\"']+$", v) is not None


def _metadata_problems(meta, card: dict) -> tuple[list[str], dict | None]:
    if not isinstance(meta, dict):
        return [f"metadata must be an object (key: value), got {type(meta).__name__}"], None
    problems = []
    unknown = [str(k) for k in meta if k not in METADATA_FIELDS]
    if unknown:
        problems.append(f"unknown metadata field(s) {_head(unknown)}; allowed: "
                        f"{list(METADATA_FIELDS)}")
    missing = [k for k, (req, _) in METADATA_FIELDS.items() if req and k not in meta]
    if missing:
        problems.append(f"missing metadata field(s) {missing}")
    out = {}

    def text(key, max_len, allow_empty=False):
        v = meta.get(key)
        if not isinstance(v, str) or (not allow_empty and not v.strip()) or len(v) > max_len:
            problems.append(f"'{key}' must be a {'' if allow_empty else 'non-empty '}string of "
                            f"at most {max_len} characters, got {str(v)[:40]!r}")
        else:
            out[key] = v.strip()

    if "name" in meta:
        text("name", 100)
    if "authors" in meta:
        a = meta["authors"]
        a = [a] if isinstance(a, str) else a
        if (not isinstance(a, list) or not a or len(a) > 100
                or not all(isinstance(x, str) and 0 < len(x.strip()) <= 200 for x in a)):
            problems.append("'authors' must be a non-empty list of names (strings)")
        else:
            out["authors"] = [x.strip() for x in a]
    for key in ("code_url", "paper_url"):
        if key in meta:
            v = meta[key]
            if v is None or v == "":
                out[key] = None
            elif not _is_url(v) or len(v) > 500:
                problems.append(f"'{key}' must be an http(s) URL or null, got {str(v)[:60]!r}")
            else:
                out[key] = v
    if "n_parameters" in meta:
        v = meta["n_parameters"]
        if v is None:
            out["n_parameters"] = None
        elif isinstance(v, bool) or not isinstance(v, int) or v < 0:
            problems.append(f"'n_parameters' must be an integer >= 0 or null, got {v!r}")
        else:
            out["n_parameters"] = int(v)
    if "hardware" in meta:
        text("hardware", 200, allow_empty=True)
    if "seeds" in meta:
        v = meta["seeds"]
        if (not isinstance(v, list) or not v or len(v) > MAX_SEEDS
                or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in v)
                or len(set(v)) != len(v)):
            problems.append(f"'seeds' must be a non-empty list of distinct integers >= 0 "
                            f"(at most {MAX_SEEDS}), got {str(v)[:60]}")
        else:
            out["seeds"] = sorted(v)
    if "external_data" in meta:
        if not isinstance(meta["external_data"], bool):
            problems.append(f"'external_data' must be true or false, got "
                            f"{meta['external_data']!r}")
        else:
            out["external_data"] = meta["external_data"]
    if "dataset_version" in meta:
        v = meta["dataset_version"]
        if str(v) != str(card.get("version")):
            problems.append(f"'dataset_version' is {str(v)[:40]!r} but this dataset is version "
                            f"{card.get('version')!r}: predictions made on another dataset "
                            "version cannot be scored")
        else:
            out["dataset_version"] = str(v)
    if "splits_sha256" in meta:
        v = meta["splits_sha256"]
        if v != card.get("splits_sha256"):
            problems.append(f"'splits_sha256' is {str(v)[:70]!r} but the dataset's splits have "
                            f"{card.get('splits_sha256')}: use the shipped splits.json")
        else:
            out["splits_sha256"] = v
    if "slug" in meta:
        v = meta["slug"]
        if not isinstance(v, str) or not re.match(SLUG_PATTERN, v):
            problems.append(f"'slug' must match {SLUG_PATTERN}, got {str(v)[:40]!r}")
        else:
            out["slug"] = v
    for key in ("description", "notes", "contact"):
        if key in meta:
            text(key, 2000 if key != "contact" else 200, allow_empty=True)
    return problems, (None if problems else out)


def validate_metadata(meta, card: dict) -> dict:
    """Validate submission metadata against the dataset card; return it normalised.

    Raises
    ------
    SubmissionError
        One error listing every problem.
    """
    problems, clean = _metadata_problems(meta, card)
    _raise(problems, "metadata")
    return clean


def validate_submission(df, meta, catalog: pd.DataFrame, card: dict):
    """Validate predictions and metadata together (one error for all problems).

    Also checks that the metadata ``seeds`` are exactly the seeds in the predictions.

    Returns
    -------
    (DataFrame, dict)
    """
    p_pred, clean = _prediction_problems(df, catalog, card)
    p_meta, meta_clean = _metadata_problems(meta, card)
    problems = [f"predictions: {p}" for p in p_pred] + [f"metadata: {p}" for p in p_meta]
    if clean is not None and meta_clean is not None:
        got = sorted(set(clean["seed"].tolist()))
        if got != meta_clean["seeds"]:
            problems.append(f"metadata 'seeds' {meta_clean['seeds']} differ from the seeds in "
                            f"the predictions {got}")
    _raise(problems)
    return clean, meta_clean
