"""Every trained entry's fold models are scored on the extra test sets beside the dataset.

A fake dataset gets one fake test set (new clusters, made for this dataset) in
``testsets/``; the harness's fold models predict it, the entry carries its scatter, bias and
ratio per set, round-trips through the typed entries and renders. Uploaded predictions are
marked "not scored"; a sandboxed code entry sees the set's images only under opaque tokens.
"""
from __future__ import annotations

import json
import re
import shutil
import textwrap

import numpy as np
import pandas as pd
import pytest

from benchmark import sandbox
from benchmark.dataset.layout import CARD_NAME
from benchmark.dataset.loader import ClusterMassDataset
from benchmark.entries import load_entry, validate_entry
from benchmark.evaluate import evaluate_predictions
from benchmark.metrics import summarize
from benchmark.testsets_scoring import find_testsets, score_testsets, write_testset
from benchmark.training import (FoldData, _with_testsets, fold_dir, run_code_entry,
                                train_baselines)
from fakes import write_fake_dataset
from submissions import POWER_LAW


def add_fake_testset(parent, name="shifted", seed=11, hidden_root=None, n_clusters=6):
    """A fake test set made for ``parent``: in ``parent/testsets/<name>`` or, with
    ``hidden_root``, as the hidden set ``hidden_root/<preset>``."""
    card = json.loads((parent / CARD_NAME).read_text())
    root = (hidden_root / card["preset"]) if hidden_root else parent / "testsets" / name
    write_fake_dataset(root, n_clusters=n_clusters, n_epochs=1, seed=seed, n_folds=3)
    tcard = json.loads((root / CARD_NAME).read_text())
    tcard["testset"] = {"name": name, "kind": "hidden" if hidden_root else "shift",
                        "change": "new fake clusters",
                        "parent": {"version": card["version"],
                                   "fingerprint": card.get("fingerprint"),
                                   "splits_sha256": card["splits_sha256"]}}
    (root / CARD_NAME).write_text(json.dumps(tcard))
    return root


@pytest.fixture(scope="module")
def parent(tmp_path_factory):
    # 12 images per test fold: enough for the Gaussian fit of the in-domain scatter
    root = write_fake_dataset(tmp_path_factory.mktemp("fake") / "data", n_clusters=20,
                              n_epochs=2, seed=3)
    add_fake_testset(root)
    return root


@pytest.fixture
def no_hidden(monkeypatch, tmp_path):
    monkeypatch.setenv("CLUSTERMASS_HIDDEN", str(tmp_path / "no-hidden-here"))


def test_find_testsets_keeps_only_sets_made_for_this_dataset(parent, tmp_path, no_hidden):
    other = shutil.copytree(parent, tmp_path / "copy")
    card = json.loads((other / "testsets" / "shifted" / CARD_NAME).read_text())
    card["testset"]["parent"]["version"] = "9.9.9"
    (other / "testsets" / "shifted" / CARD_NAME).write_text(json.dumps(card))
    assert [t.name for t in find_testsets(parent)] == ["shifted"]
    assert find_testsets(other) == []


def test_a_baseline_is_scored_on_the_test_set_and_round_trips(parent, tmp_path, no_hidden):
    results = tmp_path / "results"
    (path,) = train_baselines(parent, results, ["total_counts"], progress=False)
    entry = load_entry(path)
    (ts,) = entry.score.testsets
    assert ts.name == "shifted" and ts.scored and not ts.hidden
    assert ts.n_images == 18 and ts.n_models == 10
    # Independent check: each fold model's scatter from its own predictions file.
    tds = ClusterMassDataset(parent / "testsets" / "shifted")
    truth = tds.catalog.set_index("image_id")["log10_m500c"]
    scatters = []
    for k in range(10):
        pred = pd.read_csv(fold_dir(results / "runs" / "total-counts", k) / "testset_shifted.csv",
                           dtype={"image_id": str})
        eps = pred["log10_m500c_pred"].to_numpy() - truth[pred["image_id"]].to_numpy()
        scatters.append(summarize(eps)["scatter_gauss_frac"])
    assert ts.scatter_frac == pytest.approx(np.mean(scatters))
    assert ts.scatter_frac_std == pytest.approx(np.std(scatters, ddof=1))
    assert ts.ratio == pytest.approx(ts.scatter_frac / ts.in_domain_scatter_frac)
    lo, hi = ts.ratio_ci68
    assert 0 < lo < hi and ts.scatter_frac_ci68[0] < ts.scatter_frac_ci68[1]
    assert validate_entry(entry.to_json()) == entry  # the typed entry round-trips


def test_old_entries_without_test_sets_still_load(parent, tmp_path, no_hidden):
    (path,) = train_baselines(parent, tmp_path / "results", ["mean"], progress=False)
    doc = json.loads(path.read_text())
    del doc["metrics"]["testsets"]
    entry = validate_entry(doc)
    assert entry.score.testsets == () and entry.score.hidden is None


def test_a_set_added_after_training_is_predicted_by_the_kept_models(parent, tmp_path,
                                                                     no_hidden):
    data = shutil.copytree(parent, tmp_path / "data")
    results = tmp_path / "results"
    train_baselines(data, results, ["mean"], progress=False)
    add_fake_testset(data, name="later", seed=12)
    (path,) = train_baselines(data, results, ["mean"], progress=False)  # resumes
    later = load_entry(path).score.testset("later")
    assert later is not None and later.scored and later.n_models == 10


def _flat_prediction_submission(ds, sub):
    """A valid prediction submission (every image at 10^14.5 Msun) for ``ds``."""
    sub.mkdir()
    pd.DataFrame({"image_id": ds.catalog["image_id"], "log10_m500c_pred": 14.5}).to_csv(
        sub / "predictions.csv", index=False)
    (sub / "metadata.json").write_text(json.dumps({
        "name": "flat", "authors": ["me"], "code_url": None, "n_parameters": None,
        "hardware": "laptop", "seeds": [0], "external_data": False,
        "dataset_version": ds.version, "splits_sha256": ds.card["splits_sha256"]}))
    return sub


def test_a_prediction_entry_is_marked_not_scored(parent, tmp_path, no_hidden):
    ds = ClusterMassDataset(parent)
    sub = _flat_prediction_submission(ds, tmp_path / "sub")
    entry = evaluate_predictions(sub, None, ds, tmp_path / "entries")
    (ts,) = entry.score.testsets
    assert not ts.scored and ts.scatter_frac is None and "prediction-only" in ts.reason


def test_the_hidden_set_is_found_and_scored(parent, tmp_path, monkeypatch):
    hidden = tmp_path / "maintainer"
    add_fake_testset(parent, name="hidden", seed=13, hidden_root=hidden)
    monkeypatch.setenv("CLUSTERMASS_HIDDEN", str(hidden))
    (path,) = train_baselines(parent, tmp_path / "results", ["mean"], progress=False)
    score = load_entry(path).score
    assert score.hidden is not None and score.hidden.scored and score.hidden.n_images == 18
    assert [t.name for t in score.testsets] == ["shifted", "hidden"]


def test_the_sandboxed_child_sees_test_set_images_under_opaque_tokens(parent, tmp_path,
                                                                      no_hidden):
    ds = ClusterMassDataset(parent)
    (ts,) = find_testsets(ds)
    idx = ds.fold_indices(0)["test"]
    test = FoldData(ds.images(indices=idx).astype(np.float32), ds.aux(idx))
    empty = FoldData(np.zeros((1, 128, 128), np.float32), ds.aux([0]), np.zeros(1))
    scratch = tmp_path / "scratch"
    tokens = sandbox.write_fold_inputs(scratch, empty, empty, _with_testsets(test, [ts]), {}, 0)
    with np.load(scratch / "in" / "test.npz") as npz:
        seen = [str(t) for t in npz["aux_image_id"]]
        n_seen = len(npz["images"])
        assert set(npz.files) == {"images", "aux_image_id", "aux_redshift", "aux_pixel_arcsec"}
    assert n_seen == len(idx) + len(ts.dataset)
    ids = set(ds.catalog["image_id"]) | set(ts.dataset.catalog["image_id"])
    assert all(re.fullmatch(r"[0-9a-f]{16}", t) for t in seen) and not ids & set(seen)
    # The harness alone maps the tokens back, to the set's own ids.
    set_ids = tokens["image_id"][tokens["image_id"].str.startswith("testset:shifted/")]
    assert sorted(set_ids.str[len("testset:shifted/"):]) == sorted(ts.dataset.catalog["image_id"])


@pytest.mark.skipif(sandbox.probe() is not None, reason="bubblewrap cannot start here")
def test_a_code_entry_is_scored_on_the_test_set_through_the_sandbox(parent, tmp_path,
                                                                    no_hidden):
    module = tmp_path / "sub" / "power_law.py"
    module.parent.mkdir()
    module.write_text(textwrap.dedent(POWER_LAW))
    run = tmp_path / "run"
    run_code_entry(module, parent, run, seeds=(0,), progress=False)
    tds = ClusterMassDataset(parent / "testsets" / "shifted")
    pred = pd.read_csv(fold_dir(run, 3) / "testset_shifted.csv", dtype={"image_id": str})
    assert list(pred["image_id"]) == list(tds.catalog["image_id"])
    truth = tds.catalog["log10_m500c"].to_numpy()
    # A counts power law ranks the new clusters: the predictions came back to the right ids.
    assert np.corrcoef(pred["log10_m500c_pred"], truth)[0, 1] > 0.7


def test_the_leaderboard_shows_hidden_and_shift_columns(parent, tmp_path, monkeypatch):
    from leaderboard.render import render_site

    hidden = tmp_path / "maintainer"
    add_fake_testset(parent, name="hidden", seed=13, hidden_root=hidden)
    monkeypatch.setenv("CLUSTERMASS_HIDDEN", str(hidden))
    results = tmp_path / "results"
    train_baselines(parent, results, ["total_counts"], progress=False)
    ds = ClusterMassDataset(parent)
    sub = _flat_prediction_submission(ds, tmp_path / "sub")
    evaluate_predictions(sub, None, ds, results / "entries")
    site = render_site(results / "entries", ds, tmp_path / "site").parent
    index = (site / "index.html").read_text()
    entry = load_entry(results / "entries" / "total-counts.json")
    assert 'data-key="hidden"' in index and 'data-key="shift"' in index
    assert f"{100 * entry.score.hidden.scatter_frac:.1f}%" in index
    assert "not scored" in index  # the prediction entry's hidden cell
    page = (site / "entries" / "total-counts.html").read_text()
    assert "Shift track and hidden set" in page
    assert f"{entry.score.testset('shifted').ratio:.2f}" in page
    markdown = next(site.glob("*.md")).read_text()
    assert "## Hidden set and shift track" in markdown


# ------------------------------------------------------------- the ratio's interval

@pytest.fixture(scope="module")
def wide(tmp_path_factory):
    """A parent of 60 clusters (36 images per test fold) with a 42-cluster shift set, the
    size of the real sets, so that the intervals are narrow enough to tell 1 from 2."""
    root = write_fake_dataset(tmp_path_factory.mktemp("wide") / "data", n_clusters=60,
                              n_epochs=2, seed=5)
    add_fake_testset(root, name="wide", seed=6, n_clusters=42)
    ds = ClusterMassDataset(root)
    (ts,) = find_testsets(ds, hidden_root=tmp_path_factory.mktemp("no-hidden"))
    return ds, ts


def _gaussian_eps(n, sigma, rng):
    """n residuals that follow N(0, sigma) exactly in their quantiles, in random order: the
    same distribution for every set, without the luck of a random draw."""
    from scipy.stats import norm

    return rng.permutation(sigma * norm.ppf((np.arange(n) + 0.5) / n))


def _fake_run(run, ds, ts, set_sigma, parent_sigma=0.05, seed=0):
    """Out-of-fold predictions of ten fold models with Gaussian errors on the parent, and
    their predictions of the set, written as the harness writes them (no training)."""
    rng = np.random.default_rng(seed)
    cat, tcat = ds.catalog, ts.dataset.catalog
    pred = cat["log10_m500c"].to_numpy().copy()
    for k in range(ds.splits.n_folds):
        test = ds.fold_indices(k)["test"]
        pred[test] += _gaussian_eps(len(test), parent_sigma, rng)
        directory = fold_dir(run, k, 0)
        directory.mkdir(parents=True, exist_ok=True)
        write_testset(directory, ts, tcat["log10_m500c"].to_numpy()
                      + _gaussian_eps(len(tcat), set_sigma, rng), tcat["image_id"], 0, k)
    return pd.DataFrame({"image_id": cat["image_id"], "log10_m500c_pred": pred, "seed": 0})


def test_the_ratio_interval_contains_1_for_the_parent_s_spread_and_not_for_twice_it(
        wide, tmp_path):
    ds, ts = wide
    same = score_testsets(tmp_path / "same", ds, _fake_run(tmp_path / "same", ds, ts, 0.05),
                          [ts])["wide"]
    lo, hi = same["ratio_ci68"]
    assert lo < 1 < hi and hi - lo < 0.4
    s_lo, s_hi = same["scatter_frac_ci68"]
    assert s_lo < same["scatter_frac_mean"] < s_hi
    double = score_testsets(tmp_path / "double", ds,
                            _fake_run(tmp_path / "double", ds, ts, 0.10), [ts])["wide"]
    assert double["ratio"] == pytest.approx(2, rel=0.15)
    assert double["ratio_ci68"][0] > 1.5
    # Without a bootstrap: no intervals, the point figures unchanged.
    plain = score_testsets(tmp_path / "double", ds,
                           _fake_run(tmp_path / "double", ds, ts, 0.10), [ts], n_boot=0)["wide"]
    assert plain["ratio_ci68"] is None and plain["scatter_frac_ci68"] is None
    assert plain["ratio"] == double["ratio"]


def test_the_ratio_interval_is_deterministic(wide, tmp_path):
    ds, ts = wide
    run = tmp_path / "run"
    predictions = _fake_run(run, ds, ts, 0.07)
    first = score_testsets(run, ds, predictions, [ts], n_boot=200)["wide"]
    again = score_testsets(run, ds, predictions, [ts], n_boot=200)["wide"]
    assert first["ratio_ci68"] == again["ratio_ci68"]
    assert first["scatter_frac_ci68"] == again["scatter_frac_ci68"]
    json.dumps(first, allow_nan=False)  # JSON-safe as written into the entry
    other = score_testsets(run, ds, predictions, [ts], n_boot=200, rng_seed=1)["wide"]
    assert other["ratio_ci68"] != first["ratio_ci68"]


class _SourceReadingModel:
    """A fitted model that, like lx_truth, reads files of the dataset it predicts."""

    def __init__(self, root):
        self.root = str(root)

    def for_dataset(self, root):
        return _SourceReadingModel(root)

    def predict(self, data):
        # the answer depends on which dataset's files the model reads
        return np.full(len(data.aux), 14.0 if self.root.endswith("shifted") else 13.0)


def test_a_model_reading_dataset_files_reads_the_test_set_s_own(parent, tmp_path, no_hidden):
    """lx_truth masks true point sources read from the dataset's files; on a test set (same
    image ids as the parent, other sources) it must read the set's files, not the parent's."""
    from benchmark.training import _predict_testsets

    (ts,) = find_testsets(parent)
    _predict_testsets(tmp_path, [ts], _SourceReadingModel(parent), (), 0, 0)
    pred = pd.read_csv(tmp_path / "testset_shifted.csv")
    assert (pred["log10_m500c_pred"] == 14.0).all()


def test_lx_truth_rebinds_its_source_lists_and_keeps_its_fit(tmp_path):
    from benchmark.models.lx import LXModel

    model = LXModel({"r500c_source": "truth", "point_sources": "truth", "sources_dataset_dir": "a"})
    model.params = {"a": 1.0, "b": 2.0}
    bound = model.for_dataset(tmp_path)
    assert bound.config["sources_dataset_dir"] == str(tmp_path) and bound.params is model.params
    assert model.config["sources_dataset_dir"] == "a"  # the fitted model is left as it was
    detect = LXModel({"point_sources": "detect"})
    assert detect.for_dataset(tmp_path) is detect
