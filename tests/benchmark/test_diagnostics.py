"""Interpretation diagnostics on tiny real Keras models and on harness-trained entries."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from lb_helpers import (KerasPredictor, diagnostics_dataset, masked_log_counts_model,
                        masked_predictors, radius_pix, tiny_cnn)
from benchmark.diagnostics import (
    DiagnosticsError, deepdream_step, diagnose_predictor, entry_summary, occlude_core, radius_r500c,
    run_diagnostics)
from benchmark.entries import LEGACY_CORE_SENSITIVITY_KEYS


def _run(ds, predictor, tmp_path, **kw):
    kw.setdefault("n_clusters_per_fold", 2)
    kw.setdefault("write", False)  # plots cost seconds on 2 shared cores: one test checks them
    kw.setdefault("controls", ())  # the controls have their own tests (test_diagnostics_controls.py)
    return run_diagnostics(tmp_path / "run", ds, load_predictor=lambda out_dir, k: predictor,
                           plot_dir=tmp_path / "plots", **kw)


@pytest.fixture(scope="module")
def fake_dataset(tmp_path_factory):
    return diagnostics_dataset(tmp_path_factory)


@pytest.fixture(scope="module")
def predictors():
    return masked_predictors()


def test_fake_dataset_cores_are_resolved(fake_dataset):
    # The masks of the test models (2 and 12 pixels) sit inside / outside 0.15-0.2 R500c.
    r500c_pix = fake_dataset.catalog["r500c_arcmin"] * 60 / fake_dataset.card["image"]["pixel_arcsec"]
    assert (0.15 * r500c_pix).min() > 2 and (0.2 * r500c_pix).max() < 16


def test_model_ignoring_the_core_scores_zero(fake_dataset, predictors, tmp_path):
    s = _run(fake_dataset, predictors["outer"], tmp_path, write=True)
    assert s["core_sensitivity_method"] == "occlusion"  # the ranked figure, for every model
    assert s["core_sensitivity"] == pytest.approx(0.0, abs=1e-6)
    assert s["core_sensitivity_gradient"] == pytest.approx(0.0, abs=1e-6)
    assert s["core_sensitivity_detail"]["0.15"]["occlusion"] == pytest.approx(0.0, abs=1e-6)
    assert s["occlusion_delta_log10m"]["annulus_0.15"]["mean"] == pytest.approx(0.0, abs=1e-9)
    dd = s["deepdream"]["iter1"]
    edges = np.array(s["r_edges_r500c"])
    inside = edges[1:] <= 0.15
    assert np.allclose(np.array(dd["mean"])[inside], 0.0, atol=1e-9)  # no photon added in the core
    outside = np.array(dd["mean"])[(edges[:-1] >= 0.5) & (edges[1:] <= 1.0)]
    assert np.all(outside > 0)  # photons added in the outskirts raise the mass
    assert np.all(np.array(s["deepdream"]["iter2"]["mean"])[(edges[:-1] >= 0.5) & (edges[1:] <= 1.0)] > outside)
    assert s["deepdream_delta_log10m"]["iter2"] > s["deepdream_delta_log10m"]["iter1"] > 0
    assert s["n_images"] == 20 and s["folds"] == list(range(10))
    json.dumps(s, allow_nan=False)
    on_disk = json.loads((tmp_path / "plots" / "diagnostics.json").read_text())
    assert on_disk["core_sensitivity"] == s["core_sensitivity"]
    # One number under one key: the legacy aliases are gone (readers still accept them).
    assert not set(LEGACY_CORE_SENSITIVITY_KEYS) & (set(on_disk) | set(entry_summary(s)))
    for name in ("deepdream_profile", "saliency_profile", "sensitivity_share", "occlusion"):
        assert (tmp_path / "plots" / s["plots"][name]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_core_only_model_scores_large(fake_dataset, predictors, tmp_path):
    s = _run(fake_dataset, predictors["core"], tmp_path)
    photon = s["core_sensitivity_detail"]["0.15"]["photon_share_median"]
    assert s["core_sensitivity"] > 2.0
    # Every bit of sensitivity is in the core: the ratio is 1 / photon share.
    assert s["core_sensitivity"] == pytest.approx(1 / photon, rel=0.2)
    assert s["occlusion_delta_log10m"]["annulus_0.15"]["mean"] < -0.1


def test_photon_counting_model_scores_one(fake_dataset, predictors, tmp_path):
    # log of the total counts weighs every photon alike: ratio 1 by both methods.
    s = _run(fake_dataset, predictors["total"], tmp_path)
    assert s["core_sensitivity_detail"]["0.15"]["gradient"] == pytest.approx(1.0, abs=1e-3)
    assert s["core_sensitivity_detail"]["0.15"]["occlusion"] == pytest.approx(1.0, abs=0.05)


@pytest.mark.parametrize("name,low,high", [("outer", -1e-6, 1e-6), ("core", 2.0, 10.0)])
def test_occlusion_method_without_gradients(fake_dataset, name, low, high, tmp_path):
    mask = radius_pix() >= 12 if name == "outer" else radius_pix() < 2
    s = _run(fake_dataset, KerasPredictor(masked_log_counts_model(mask), with_gradient=False), tmp_path)
    assert s["core_sensitivity_method"] == "occlusion"
    assert low <= s["core_sensitivity"] <= high
    assert "deepdream" not in s and s["outliers"] == []
    if name == "core":
        plots = _run(fake_dataset, KerasPredictor(masked_log_counts_model(mask), with_gradient=False), tmp_path,
                     folds=[0], write=True)["plots"]
        assert "sensitivity_share" in plots and "deepdream_profile" not in plots


class NumpyMeanPredictor:
    """Not a Keras model at all and no gradient method: mean count in an annulus."""

    def predict(self, counts, aux):
        r = radius_pix()
        ring = (r > 20) & (r < 40)
        return 13.0 + np.log10(1 + counts[:, ring].mean(axis=1))


def test_any_predict_only_object_works(fake_dataset, tmp_path):
    s = _run(fake_dataset, NumpyMeanPredictor(), tmp_path, folds=[0, 3], n_clusters_per_fold=3)
    assert s["core_sensitivity_method"] == "occlusion"
    assert s["core_sensitivity"] == pytest.approx(0.0, abs=1e-9)
    assert s["n_images"] == 4 and s["folds"] == [0, 3]  # two test clusters per fold here


def test_each_fold_model_sees_its_own_test_fold(fake_dataset, predictors, tmp_path):
    seen = []

    def loader(out_dir, k):
        seen.append(k)
        return predictors["total"]

    s = run_diagnostics(tmp_path, fake_dataset, 3, folds=[1, 4], load_predictor=loader, write=False)
    assert seen == [1, 4] and "plots" not in s
    cat = fake_dataset.catalog.set_index("image_id")
    for image_id, fold in zip(s["images"]["image_id"], s["images"]["fold"]):
        assert cat.loc[image_id, "fold"] == fold


def test_deepdream_step_size_and_non_negative():
    rng = np.random.default_rng(1)
    x = rng.poisson(5.0, (2, 16, 16)).astype(float) + 1.0
    g = rng.normal(0, 1, x.shape)
    step = deepdream_step(x, g, 0.1)
    # Without clipping, the mean absolute change is step_size x the mean count per pixel.
    assert np.mean(np.abs(step - x), axis=(1, 2)) == pytest.approx(0.1 * x.mean(axis=(1, 2)))
    big = deepdream_step(x, -np.ones_like(x), 10.0)
    assert big.min() == 0.0
    assert np.array_equal(deepdream_step(x, np.zeros_like(x)), x)


def test_occlusion_flattens_only_the_core():
    x = np.ones((1, 32, 32))
    x[0, 14:18, 14:18] = 50.0
    r = radius_r500c(32, np.array([20.0]))
    out = occlude_core(x, r, 0.15, "annulus")
    assert out[0, 15, 15] == pytest.approx(1.0) and np.array_equal(out[r >= 0.15], x[r >= 0.15])
    with pytest.raises(DiagnosticsError):
        occlude_core(x, r, 0.15, "blur")


def test_bad_input_is_one_clear_error(predictors):
    aux = pd.DataFrame({"image_id": ["a"], "redshift": [0.1], "pixel_arcsec": [7.9]})
    with pytest.raises(DiagnosticsError, match="non-negative"):
        diagnose_predictor(predictors["total"], -np.ones((1, 128, 128)), aux, np.array([30.0]))
    with pytest.raises(DiagnosticsError, match="R500c"):
        diagnose_predictor(predictors["total"], np.ones((1, 128, 128)), aux, np.array([0.0]))


def test_trained_cnn_gradients(fake_dataset):
    """A small conv net trained for a few steps: every diagnostic is finite, ascent works."""
    import keras

    ds = fake_dataset
    x = ds.images().astype("float32")[..., None]
    y = ds.catalog["log10_m500c"].to_numpy("float32")
    model = tiny_cnn()
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="mse")
    model.fit(x, y - y.mean(), epochs=3, batch_size=32, verbose=0)
    idx = ds.fold_indices(0)["test"][:6]
    r500c_pix = ds.catalog["r500c_arcmin"].to_numpy()[idx] * 60 / ds.card["image"]["pixel_arcsec"]
    res = diagnose_predictor(KerasPredictor(model), x[idx, ..., 0], ds.aux(idx), r500c_pix)
    assert res["has_gradient"]
    assert np.all(np.isfinite(res["gradient_share_core"]["0.15"]))
    assert np.all(res["deepdream_log10m"][1] >= res["log10m_pred"] - 1e-6)
    assert np.nanmax(np.abs(res["deepdream_dn_over_n"])) > 0


def test_harness_entry_end_to_end(fake_dataset, tmp_path):
    """A harness-trained entry: diagnostics (default fold loader), attached to its entry file,
    shown on the rendered page."""
    from benchmark import training

    from benchmark.entries import load_entry, make_entry, write_entry, write_predictions
    from benchmark.metrics import score
    from benchmark.diagnostics import diagnose_entry
    from leaderboard.render import render_site

    run = tmp_path / "runs" / "total-counts"
    pred = training.run_entry("total_counts", fake_dataset, run, progress=False)  # cheap: every fold
    entries = tmp_path / "entries"
    entry = make_entry("Total counts", "baseline", score(pred, fake_dataset.catalog, fake_dataset.splits, n_boot=20),
                       fake_dataset, slug="total-counts")
    write_predictions(entries / entry.predictions_file, pred)
    write_entry(entries / "total-counts.json", entry)

    s = diagnose_entry(run, fake_dataset, entries / "total-counts.json", n_clusters_per_fold=2, folds=[0, 1])
    assert s["n_images"] == 4
    # A power law in the total counts weighs every photon alike.
    assert s["core_sensitivity"] == pytest.approx(1.0, abs=0.1)
    stored = load_entry(entries / "total-counts.json").diagnostics
    assert stored["core_sensitivity"] == s["core_sensitivity"]
    assert (entries / "total-counts.diagnostics" / "sensitivity_share.png").is_file()
    site = render_site(entries, fake_dataset, tmp_path / "site")
    page = (site.parent / "entries" / "total-counts.html").read_text()
    assert 'src="total-counts/sensitivity_share.png"' in page and "Core sensitivity ratio" in page


@pytest.mark.slow
def test_reference_cnn_end_to_end(fake_dataset, tmp_path):
    """The study's CNN trained by the harness (one fold, one epoch): gradient diagnostics."""
    from benchmark import training

    run = tmp_path / "reference"
    training.run_entry("reference", fake_dataset, run, folds=[0], progress=False,
                       config={"max_epochs": 1, "patience": 1, "lr_patience": 1})
    s = run_diagnostics(run, fake_dataset, n_clusters_per_fold=2, folds=[0], plot_dir=tmp_path / "plots")
    assert s["has_gradient"] and s["core_sensitivity_gradient"] >= 0
    assert s["core_sensitivity"] is not None and s["core_sensitivity"] >= 0
    assert set(s["deepdream"]) == {"iter1", "iter2"}
    # The study's network steps in its own standardised log10(1 + N); all three controls run.
    assert s["deepdream_space"] == "standardised_log10"
    assert set(s["controls"]) == {"null", "random_weights", "lx"} and s["controls"]["random_weights"]["has_gradient"]
    assert s["core_use_vs_null"]["answer"] in ("yes", "no", "undetermined")
    assert (tmp_path / "plots" / "deepdream_profile.png").is_file()
