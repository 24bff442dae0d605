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

from benchmark.core.errors import SubmissionError, format_problems, head_list

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
    cols = [str(c) for c in df.columns]
    # The rows of a table of the wrong shape would only add noise to its report.
    problems = _column_problems(cols) or _size_problems(df)
    if problems:
        return problems, None
    df = df.reset_index(drop=True)
    df.columns = cols

    ids, null_id = _image_ids(df["image_id"])
    problems += _null_id_problems(null_id)
    labels = _row_labels(ids, null_id)
    seeds, bad_seed = _seed_values(df)
    problems += _bad_seed_problems(df, bad_seed, labels)
    uniq_seeds = sorted(set(seeds[~bad_seed].tolist()))
    problems += _seed_count_problems(uniq_seeds)
    value_problems, vals = _value_problems(df["log10_m500c_pred"], labels)
    problems += value_problems
    unc_problems, unc_values = _uncertainty_problems(df, labels)
    problems += unc_problems

    cat_index = pd.Index(catalog["image_id"].astype(str).to_numpy())
    known = cat_index.get_indexer(ids) >= 0
    problems += _unknown_id_problems(ids, ~known & ~null_id)
    for s in uniq_seeds[:MAX_SEEDS]:
        sid = pd.Series(ids[(seeds == s) & ~bad_seed & known])
        problems += _duplicate_problems(s, sid) + _uncovered_problems(s, sid, cat_index)
    problems += _card_count_problems(card, len(cat_index))
    if problems:
        return problems, None
    return [], _clean_predictions(ids, seeds, vals, unc_values, cat_index)


def _column_problems(cols: list[str]) -> list[str]:
    """Duplicate, missing and unexpected column names."""
    problems = []
    if len(set(cols)) != len(cols):
        dup = sorted({c for c in cols if cols.count(c) > 1})
        problems.append(f"duplicate column names: {dup}")
    missing = [c for c in PRED_COLUMNS if c not in cols]
    if missing:
        problems.append(f"missing column(s) {missing}; got {cols[:20]}")
    extra = [c for c in cols if c not in PRED_COLUMNS + OPTIONAL_COLUMNS]
    if extra:
        problems.append(f"unexpected column(s) {head_list(extra)}; allowed: "
                        f"{list(PRED_COLUMNS + OPTIONAL_COLUMNS)}")
    return problems


def _size_problems(df: pd.DataFrame) -> list[str]:
    if len(df) == 0:
        return ["the predictions table has no rows"]
    if len(df) > MAX_ROWS:
        return [f"more than {MAX_ROWS} rows"]
    return []


def _image_ids(raw: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(ids as stripped text; mask of the rows without one)."""
    null_id = raw.isna().to_numpy() | (raw.astype(str).str.strip() == "").to_numpy()
    return raw.astype(str).str.strip().to_numpy(dtype=object), null_id


def _null_id_problems(null_id: np.ndarray) -> list[str]:
    if not null_id.any():
        return []
    return [f"{int(null_id.sum())} row(s) without an image_id (rows "
            f"{head_list(np.flatnonzero(null_id) + 1)})"]


def _row_labels(ids: np.ndarray, null_id: np.ndarray) -> np.ndarray:
    """How problems name each row: its image id, or its 1-based row number if it has none."""
    if not null_id.any():
        return ids
    return np.where(null_id, [f"row {i + 1}" for i in range(len(ids))], ids)


def _seed_values(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(seeds as int64, -1 where bad; mask of the bad ones). No seed column means seed 0."""
    if "seed" not in df.columns:
        return np.zeros(len(df), dtype=np.int64), np.zeros(len(df), bool)
    seeds = _floats(df["seed"])
    bad = ~np.isfinite(seeds) | (seeds < 0) | (seeds != np.round(seeds)) | (seeds > 2**31)
    return np.where(bad, -1, seeds).astype(np.int64), bad


def _bad_seed_problems(df: pd.DataFrame, bad: np.ndarray, labels) -> list[str]:
    if not bad.any():
        return []
    raw = df["seed"]
    return [f"{int(bad.sum())} row(s) whose seed is not an integer >= 0: "
            + head_list(f"{labels[i]} ({raw.iloc[i]!r})" for i in np.flatnonzero(bad))]


def _seed_count_problems(uniq_seeds: list) -> list[str]:
    if len(uniq_seeds) <= MAX_SEEDS:
        return []
    return [f"{len(uniq_seeds)} seeds; at most {MAX_SEEDS} are accepted"]


def _value_problems(raw: pd.Series, labels) -> tuple[list[str], np.ndarray]:
    """Problems of the predicted values, and the values as floats."""
    vals, nonnum = _numbers(raw)
    return (_not_number_problems(raw, nonnum, labels)
            + _not_finite_problems(vals, nonnum, labels) + _range_problems(vals, labels)), vals


def _not_number_problems(raw: pd.Series, nonnum: np.ndarray, labels) -> list[str]:
    if not nonnum.any():
        return []
    return [f"{int(nonnum.sum())} prediction(s) not a number: "
            + head_list(f"{labels[i]} ({str(raw.iloc[i])[:20]!r})" for i in np.flatnonzero(nonnum))]


def _not_finite_problems(vals: np.ndarray, nonnum: np.ndarray, labels) -> list[str]:
    # Text was reported as such: only blanks and explicit nan/inf are counted here.
    nonfinite = ~np.isfinite(vals) & ~nonnum
    if not nonfinite.any():
        return []
    return [f"{int(nonfinite.sum())} prediction(s) missing or not finite "
            f"(NaN/inf): {head_list(labels[nonfinite])}"]


def _range_problems(vals: np.ndarray, labels) -> list[str]:
    lo, hi = LOG10_M_RANGE
    with np.errstate(invalid="ignore"):
        out_range = np.isfinite(vals) & ((vals < lo) | (vals > hi))
    if not out_range.any():
        return []
    # A mass in Msun instead of its log10 is the usual cause: the message says so.
    return [f"{int(out_range.sum())} prediction(s) outside the plausible range "
            f"[{lo}, {hi}] of log10(M500c/Msun) (mass in Msun, log10?): "
            + head_list(f"{labels[i]} ({vals[i]:.4g})" for i in np.flatnonzero(out_range))]


def _unknown_id_problems(ids: np.ndarray, unknown: np.ndarray) -> list[str]:
    if not unknown.any():
        return []
    return [f"{int(unknown.sum())} row(s) with an image_id not in the catalog "
            f"of this dataset: {head_list(pd.unique(ids[unknown]))}"]


def _duplicate_problems(seed: int, sid: pd.Series) -> list[str]:
    dup = sid[sid.duplicated()].unique()
    if not len(dup):
        return []
    return [f"seed {seed}: {len(dup)} image(s) predicted more than once: {head_list(dup)}"]


def _uncovered_problems(seed: int, sid: pd.Series, cat_index: pd.Index) -> list[str]:
    """Catalog images without a prediction of this seed (scores need every image)."""
    present = cat_index.isin(sid)
    if present.all():
        return []
    return [f"seed {seed}: {int((~present).sum())} of {len(cat_index)} catalog "
            f"images without a prediction: {head_list(cat_index[~present])}"]


def _card_count_problems(card: dict | None, n_images: int) -> list[str]:
    """A catalog that disagrees with its card: the dataset, not the submission, is broken."""
    if card is None or card.get("n_images") in (None, n_images):
        return []
    return [f"the catalog has {n_images} images but the dataset card says "
            f"{card.get('n_images')}: the dataset is inconsistent (`make data`)"]


def _clean_predictions(ids, seeds, vals, unc_values: dict, cat_index: pd.Index) -> pd.DataFrame:
    """The validated table, sorted by seed then catalog order."""
    clean = pd.DataFrame({"image_id": ids.astype(str), "seed": seeds,
                          "log10_m500c_pred": vals, **unc_values})
    order = np.lexsort((cat_index.get_indexer(clean["image_id"]), clean["seed"].to_numpy()))
    return clean.iloc[order].reset_index(drop=True)


def _not_real(raw: pd.Series) -> bool:
    """Booleans and complex numbers: to_numeric would read True as 1 and drop an imaginary part."""
    return pd.api.types.is_bool_dtype(raw) or pd.api.types.is_complex_dtype(raw)


def _floats(raw: pd.Series) -> np.ndarray:
    """The values as floats, NaN where not a real number."""
    if _not_real(raw):
        return np.full(len(raw), np.nan)
    return pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float)


def _numbers(raw: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(values as floats, NaN where not a number; mask of text that is not a number)."""
    vals = _floats(raw)
    if _not_real(raw):
        return vals, np.ones(len(raw), bool)
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
            + head_list(f"{labels[i]} ({sigma[i]:.4g})" for i in np.flatnonzero(bad))]


def _quantile_problems(q: np.ndarray, labels) -> list[str]:
    problems = []
    finite = np.isfinite(q).all(axis=0)
    cross = finite & ~((q[0] < q[1]) & (q[1] < q[2]))
    if cross.any():
        problems.append(f"{int(cross.sum())} image(s) whose quantiles cross (need q16 < q50 "
                        "< q84): " + head_list(f"{labels[i]} ({q[0, i]:.4g}, {q[1, i]:.4g}, "
                                           f"{q[2, i]:.4g})" for i in np.flatnonzero(cross)))
    lo, hi = LOG10_M_RANGE
    outside = finite & ((q < lo) | (q > hi)).any(axis=0)
    if outside.any():
        problems.append(f"{int(outside.sum())} image(s) with a quantile outside the plausible "
                        f"range [{lo}, {hi}] of log10(M500c/Msun): {head_list(labels[outside])}")
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
                            f"finite: {head_list(labels[bad])}")
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
    problems = _unknown_field_problems(meta) + _missing_field_problems(meta)
    out = {}
    for key, check in _field_checks(card).items():
        if key in meta:
            problem, value = check(meta[key])
            if problem is None:
                out[key] = value
            else:
                problems.append(problem)
    return problems, (None if problems else out)


def _unknown_field_problems(meta: dict) -> list[str]:
    unknown = [str(k) for k in meta if k not in METADATA_FIELDS]
    if not unknown:
        return []
    return [f"unknown metadata field(s) {head_list(unknown)}; allowed: {list(METADATA_FIELDS)}"]


def _missing_field_problems(meta: dict) -> list[str]:
    missing = [k for k, (req, _) in METADATA_FIELDS.items() if req and k not in meta]
    return [f"missing metadata field(s) {missing}"] if missing else []


def _field_checks(card: dict) -> dict:
    """Metadata field -> check of its value, giving (problem or None, normalised value).

    In the order the problems are reported and the normalised fields are stored.
    """
    return {
        "name": lambda v: _text_field("name", v, 100),
        "authors": _authors_field,
        "code_url": lambda v: _url_field("code_url", v),
        "paper_url": lambda v: _url_field("paper_url", v),
        "n_parameters": _n_parameters_field,
        "hardware": lambda v: _text_field("hardware", v, 200, allow_empty=True),
        "seeds": _seeds_field,
        "external_data": _external_data_field,
        "dataset_version": lambda v: _dataset_version_field(v, card),
        "splits_sha256": lambda v: _splits_sha256_field(v, card),
        "slug": _slug_field,
        "description": lambda v: _text_field("description", v, 2000, allow_empty=True),
        "notes": lambda v: _text_field("notes", v, 2000, allow_empty=True),
        "contact": lambda v: _text_field("contact", v, 200, allow_empty=True),
    }


def _text_field(key: str, v, max_len: int, allow_empty: bool = False):
    if not isinstance(v, str) or (not allow_empty and not v.strip()) or len(v) > max_len:
        return (f"'{key}' must be a {'' if allow_empty else 'non-empty '}string of "
                f"at most {max_len} characters, got {str(v)[:40]!r}"), None
    return None, v.strip()


def _authors_field(v):
    a = [v] if isinstance(v, str) else v  # one author may be given as a plain string
    if (not isinstance(a, list) or not a or len(a) > 100
            or not all(isinstance(x, str) and 0 < len(x.strip()) <= 200 for x in a)):
        return "'authors' must be a non-empty list of names (strings)", None
    return None, [x.strip() for x in a]


def _url_field(key: str, v):
    if v is None or v == "":
        return None, None
    # Shown as a link on the leaderboard: only plain http(s), no quotes or markup.
    if not _is_url(v) or len(v) > 500:
        return f"'{key}' must be an http(s) URL or null, got {str(v)[:60]!r}", None
    return None, v


def _n_parameters_field(v):
    if v is None:
        return None, None
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:  # bool is an int subclass
        return f"'n_parameters' must be an integer >= 0 or null, got {v!r}", None
    return None, int(v)


def _seeds_field(v):
    if (not isinstance(v, list) or not v or len(v) > MAX_SEEDS
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in v)
            or len(set(v)) != len(v)):
        return (f"'seeds' must be a non-empty list of distinct integers >= 0 "
                f"(at most {MAX_SEEDS}), got {str(v)[:60]}"), None
    return None, sorted(v)


def _external_data_field(v):
    if not isinstance(v, bool):
        return f"'external_data' must be true or false, got {v!r}", None
    return None, v


def _dataset_version_field(v, card: dict):
    if str(v) != str(card.get("version")):
        return (f"'dataset_version' is {str(v)[:40]!r} but this dataset is version "
                f"{card.get('version')!r}: predictions made on another dataset "
                "version cannot be scored"), None
    return None, str(v)


def _splits_sha256_field(v, card: dict):
    # Out-of-fold predictions made with other folds are not comparable.
    if v != card.get("splits_sha256"):
        return (f"'splits_sha256' is {str(v)[:70]!r} but the dataset's splits have "
                f"{card.get('splits_sha256')}: use the shipped splits.json"), None
    return None, v


def _slug_field(v):
    if not isinstance(v, str) or not re.match(SLUG_PATTERN, v):
        return f"'slug' must match {SLUG_PATTERN}, got {str(v)[:40]!r}", None
    return None, v


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
