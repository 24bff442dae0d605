"""Submission validation: every malformed input ends in one clear ClusterMassError."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmark.core.errors import ClusterMassError, SubmissionError
from benchmark.submission import (EXPECTED_FORMAT, MAX_PREDICTIONS_BYTES, format_help,
                                  load_submission, validate_metadata, validate_predictions,
                                  validate_submission)


@pytest.fixture(scope="module")
def cat_card(fake_dataset):
    return fake_dataset.catalog, fake_dataset.card


def good_pred(cat, seeds=(None,)):
    parts = []
    for s in seeds:
        df = pd.DataFrame({"image_id": cat["image_id"],
                           "log10_m500c_pred": cat["log10_m500c"] + 0.01})
        if s is not None:
            df["seed"] = s
        parts.append(df)
    return pd.concat(parts, ignore_index=True)


def good_meta(card, **kw):
    meta = {"name": "My CNN", "authors": ["A. Author"], "code_url": "https://example.org/x",
            "n_parameters": 1000, "hardware": "2-core CPU", "seeds": [0],
            "external_data": False, "dataset_version": card["version"],
            "splits_sha256": card["splits_sha256"]}
    meta.update(kw)
    return meta


def test_good_submission_passes(cat_card):
    cat, card = cat_card
    clean = validate_predictions(good_pred(cat, seeds=(1, 0)), cat, card)
    assert list(clean.columns) == ["image_id", "seed", "log10_m500c_pred"]
    assert len(clean) == 2 * len(cat) and clean["seed"].tolist()[:1] == [0]
    assert clean["image_id"].iloc[: len(cat)].tolist() == cat["image_id"].tolist()
    meta = validate_metadata(good_meta(card, seeds=[1, 0]), card)
    assert meta["seeds"] == [0, 1]
    validate_submission(good_pred(cat, seeds=(0, 1)), good_meta(card, seeds=[0, 1]), cat, card)


def test_all_problems_reported_together(cat_card):
    cat, card = cat_card
    df = good_pred(cat).astype({"log10_m500c_pred": object})
    df.loc[0, "log10_m500c_pred"] = "heavy"
    df.loc[1, "log10_m500c_pred"] = np.inf
    df.loc[2, "log10_m500c_pred"] = 3.2e14  # a mass, not its log10
    df.loc[3, "image_id"] = "c9999_e0_x"
    df = pd.concat([df, df.iloc[[10, 11]]], ignore_index=True)
    with pytest.raises(SubmissionError) as info:
        validate_predictions(df, cat, card)
    msg = str(info.value)
    ids = cat["image_id"].tolist()
    for needle in ("not a number", ids[0], "not finite", ids[1], "plausible range", ids[2],
                   "c9999_e0_x", "more than once", ids[10], "without a prediction", ids[3],
                   "clustermass format"):
        assert needle in msg, needle
    assert msg.count("\n  - ") == 6


def test_long_lists_truncated(cat_card):
    cat, card = cat_card
    with pytest.raises(SubmissionError, match=r"and \d+ more") as info:
        validate_predictions(good_pred(cat).iloc[:5], cat, card)
    assert len(str(info.value)) < 2000


@pytest.mark.parametrize("mutate, needle", [
    (lambda d: d.rename(columns={"log10_m500c_pred": "mass"}), "missing column"),
    (lambda d: d.assign(extra=1), "unexpected column"),
    (lambda d: d.iloc[:0], "no rows"),
    (lambda d: d.assign(seed=-1), "seed is not an integer"),
    (lambda d: d.assign(seed=0.5), "seed is not an integer"),
    (lambda d: d.assign(seed="x"), "seed is not an integer"),
    (lambda d: d.assign(seed=True), "seed is not an integer"),
    (lambda d: d.assign(log10_m500c_pred=True), "not a number"),
    (lambda d: d.assign(log10_m500c_pred=np.nan), "not finite"),
    (lambda d: d.assign(log10_m500c_pred=-np.inf), "not finite"),
    (lambda d: d.assign(log10_m500c_pred=11.0), "plausible range"),
    (lambda d: d.assign(image_id=None), "without an image_id"),
    (lambda d: d.assign(image_id=np.arange(len(d))), "not in the catalog"),
    (lambda d: d.iloc[::2], "without a prediction"),
    (lambda d: pd.concat([d, d]), "more than once"),
    (lambda d: d.set_axis(["image_id", "image_id"], axis=1), "duplicate column"),
    (lambda d: d.assign(seed=np.arange(len(d)) % 30), "seeds; at most"),
])
def test_malformed_predictions(cat_card, mutate, needle):
    cat, card = cat_card
    with pytest.raises(SubmissionError, match=needle):
        validate_predictions(mutate(good_pred(cat)), cat, card)


@pytest.mark.parametrize("bad", [None, [], "text", 3, {"a": 1}])
def test_not_a_table(cat_card, bad):
    cat, card = cat_card
    with pytest.raises(ClusterMassError):
        validate_predictions(bad, cat, card)


@pytest.mark.parametrize("change, needle", [
    ({"dataset_version": "9.9"}, "another dataset version"),
    ({"splits_sha256": "0" * 64}, "shipped splits"),
    ({"name": ""}, "'name'"),
    ({"name": "x" * 101}, "'name'"),
    ({"authors": []}, "'authors'"),
    ({"authors": [1]}, "'authors'"),
    ({"code_url": "javascript:alert(1)"}, "'code_url'"),
    ({"n_parameters": -1}, "'n_parameters'"),
    ({"n_parameters": "many"}, "'n_parameters'"),
    ({"seeds": []}, "'seeds'"),
    ({"seeds": [0, 0]}, "'seeds'"),
    ({"seeds": [True]}, "'seeds'"),
    ({"external_data": "no"}, "'external_data'"),
    ({"slug": "Bad Slug"}, "'slug'"),
    ({"surprise": 1}, "unknown metadata"),
])
def test_malformed_metadata(cat_card, change, needle):
    _, card = cat_card
    with pytest.raises(SubmissionError, match=needle):
        validate_metadata(good_meta(card, **change), card)


def test_missing_metadata_fields_and_type(cat_card):
    _, card = cat_card
    with pytest.raises(SubmissionError, match="missing metadata field") as info:
        validate_metadata({"name": "x"}, card)
    assert "dataset_version" in str(info.value)
    with pytest.raises(SubmissionError, match="must be an object"):
        validate_metadata(["x"], card)


def test_seed_mismatch_between_metadata_and_predictions(cat_card):
    cat, card = cat_card
    with pytest.raises(SubmissionError, match="differ from the seeds"):
        validate_submission(good_pred(cat, seeds=(0, 1)), good_meta(card, seeds=[0]), cat, card)
    with pytest.raises(SubmissionError) as info:  # both parts' problems in one error
        validate_submission(good_pred(cat).iloc[1:], good_meta(card, name=""), cat, card)
    assert "predictions:" in str(info.value) and "metadata:" in str(info.value)


# -- files ---------------------------------------------------------------------------------

def write_sub(folder, cat, card, fmt="csv", meta_fmt="json", seeds=(0,)):
    folder.mkdir(parents=True, exist_ok=True)
    df = good_pred(cat, seeds=seeds)
    if fmt == "csv":
        df.to_csv(folder / "predictions.csv", index=False)
    else:
        df.to_parquet(folder / "predictions.parquet")
    meta = good_meta(card, seeds=list(seeds))
    if meta_fmt == "json":
        (folder / "metadata.json").write_text(json.dumps(meta))
    else:
        (folder / "metadata.yaml").write_text(yaml.safe_dump(meta))
    return folder


@pytest.mark.parametrize("fmt, meta_fmt", [("csv", "json"), ("parquet", "yaml")])
def test_load_submission_directory_and_files(tmp_path, cat_card, fmt, meta_fmt):
    pytest.importorskip("pyarrow") if fmt == "parquet" else None
    cat, card = cat_card
    folder = write_sub(tmp_path / "sub", cat, card, fmt, meta_fmt, seeds=(0, 2))
    df, meta = load_submission(folder)
    clean, meta = validate_submission(df, meta, cat, card)
    assert len(clean) == 2 * len(cat) and meta["seeds"] == [0, 2]
    pred_file = next(folder.glob("predictions.*"))
    df2, meta2 = load_submission(pred_file, next(folder.glob("metadata.*")))
    assert len(df2) == len(df) and meta2["name"] == "My CNN"


def test_load_submission_guards(tmp_path, cat_card):
    cat, card = cat_card
    folder = write_sub(tmp_path / "s", cat, card)
    huge = tmp_path / "huge" / "predictions.csv"
    huge.parent.mkdir()
    with open(huge, "wb") as fh:  # sparse: costs no disk
        fh.truncate(MAX_PREDICTIONS_BYTES + 1)
    (huge.parent / "metadata.json").write_text("{}")
    with pytest.raises(SubmissionError, match="more than the"):
        load_submission(huge.parent)
    with pytest.raises(SubmissionError, match="does not exist"):
        load_submission(tmp_path / "none.csv", folder / "metadata.json")
    with pytest.raises(SubmissionError, match="must end in"):
        load_submission(folder / "metadata.json", folder / "metadata.json")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SubmissionError, match="no predictions file"):
        load_submission(empty)
    (empty / "predictions.csv").write_text("image_id,log10_m500c_pred\n")
    with pytest.raises(SubmissionError, match="no metadata"):
        load_submission(empty)
    with pytest.raises(SubmissionError, match="not a regular file"):
        load_submission(folder, metadata=tmp_path)


def test_format_help_mentions_every_column_and_field():
    text = format_help()
    assert text == EXPECTED_FORMAT
    for word in ("image_id", "log10_m500c_pred", "seed", "dataset_version", "splits_sha256",
                 "external_data", "n_parameters", "OUT OF FOLD"):
        assert word in text


# -- fuzzing --------------------------------------------------------------------------------

_cell = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12),
                  st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
                  st.sampled_from(["c0001_e0_x", "c0002_e1_y", "14.5", "nan", "inf", ""]))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cols=st.lists(st.sampled_from(["image_id", "log10_m500c_pred", "seed", "mass", "",
                                      "Image_ID"]), min_size=0, max_size=4),
       n=st.integers(0, 8), data=st.data())
def test_fuzz_predictions_never_crash(cat_card, cols, n, data):
    cat, card = cat_card
    table = {f"{c}": data.draw(st.lists(_cell, min_size=n, max_size=n)) for c in cols}
    df = pd.DataFrame(table) if table else pd.DataFrame()
    try:
        validate_predictions(df, cat, card)
    except ClusterMassError as exc:
        assert str(exc).strip()
    else:  # a handful of random rows can never cover the catalog
        pytest.fail("random predictions were accepted")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(st.tuples(st.sampled_from(["c0001_e0_x", "c0001_e0_y", "x", ""]),
                               _cell, _cell), max_size=6))
def test_fuzz_full_table_mutations(cat_card, rows):
    cat, card = cat_card
    base = good_pred(cat, seeds=(0,)).astype(object)
    extra = pd.DataFrame(rows, columns=["image_id", "log10_m500c_pred", "seed"])
    df = pd.concat([base, extra], ignore_index=True)
    try:
        clean = validate_predictions(df, cat, card)
    except ClusterMassError:
        return
    assert len(clean) == len(set(zip(clean.seed, clean.image_id)))


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(blob=st.binary(max_size=300), suffix=st.sampled_from([".csv", ".parquet"]),
       meta_blob=st.one_of(st.binary(max_size=100),
                           st.text(max_size=100).map(lambda t: t.encode("utf-8"))),
       meta_suffix=st.sampled_from([".json", ".yaml"]))
def test_fuzz_files_never_crash(tmp_path, cat_card, blob, suffix, meta_blob, meta_suffix):
    cat, card = cat_card
    pred = tmp_path / f"predictions{suffix}"
    meta = tmp_path / f"metadata{meta_suffix}"
    pred.write_bytes(blob)
    meta.write_bytes(meta_blob)
    try:
        df, m = load_submission(pred, meta)
        validate_submission(df, m, cat, card)
    except ClusterMassError as exc:
        assert str(exc).strip()
    else:
        pytest.fail("garbage files were accepted")
