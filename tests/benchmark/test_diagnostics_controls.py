"""Diagnostics that test the claim: the null control's analytic profile, models built to use
only the core or only the outskirts, the random-weights and L_X controls, a model without
gradients."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from benchmark.dataset.loader import ClusterMassDataset
from benchmark.diagnostics import (
    COUNT_SPACE, DiagnosticsError, InputSpace, NullLogPredictor, compare_with_null, deepdream_step_in,
    diagnose_predictor, entry_summary, input_space_of, radial_sum, radius_r500c, random_weights_predictor,
    run_diagnostics)
from fakes import write_fake_dataset
from lb_helpers import KerasPredictor, harness_predictor, masked_log_counts_model, radius_pix

SPACE = InputSpace("standardised_log10", 0.4, 0.5)


@pytest.fixture(scope="module")
def fake_dataset(tmp_path_factory):
    """20 clusters x 2 epochs (seed 3), as in test_diagnostics.py."""
    root = write_fake_dataset(tmp_path_factory.mktemp("fake") / "data", n_clusters=20, n_epochs=2, seed=3)
    return ClusterMassDataset(root)


def _run(ds, predictor, tmp_path, **kw):
    kw.setdefault("n_clusters_per_fold", 2)
    kw.setdefault("write", False)
    kw.setdefault("n_boot", 200)
    return run_diagnostics(tmp_path / "run", ds, load_predictor=lambda out_dir, k: predictor,
                           plot_dir=tmp_path / "plots", **kw)


def _images(n=4, seed=0):
    """Beta-model-like clusters on a flat background: counts fall by ~3 decades outwards."""
    rng = np.random.default_rng(seed)
    r = radius_pix()
    lam = 0.3 + 400.0 / (1.0 + (r / 4.0) ** 2) ** 1.5
    return rng.poisson(lam, (n, 128, 128)).astype(float), np.full(n, 40.0)


def _aux(n):
    return pd.DataFrame({"image_id": [f"i{k}" for k in range(n)], "redshift": 0.1, "pixel_arcsec": 7.9})


# --------------------------------------------------------------------------------------
# the null control: its profile is known in closed form
# --------------------------------------------------------------------------------------
def test_null_profile_equals_its_analytic_expectation():
    counts, r500c_pix = _images()
    step = 0.1
    res = diagnose_predictor(NullLogPredictor(SPACE), counts, _aux(4), r500c_pix, input_space=SPACE,
                             input_step_size=step, step_size=step, n_iter=2)
    r = radius_r500c(128, r500c_pix)
    edges = res["r_edges_r500c"]
    n0, p0 = radial_sum(counts, r, edges), radial_sum(np.ones_like(counts), r, edges)
    # Input space: the null's gradient in x is uniform, so every pixel's log10(1+N) rises by
    # step * log_std per iteration: dN/N = (10**(k step log_std) - 1) (N_bin + P_bin) / N_bin.
    for k in (1, 2):
        expected = (10 ** (k * step * SPACE.log_std) - 1) * (n0 + p0) / n0
        assert np.allclose(res["deepdream_runs"]["input"]["dn_over_n"][k - 1], expected, rtol=1e-9)
    # Counts: dN = step mean(N) w / mean(w), w = 1/(1+N), applied twice.
    x = counts
    for k in (1, 2):
        w = 1.0 / (1.0 + x)
        x = x + step * x.mean(axis=(1, 2), keepdims=True) * w / w.mean(axis=(1, 2), keepdims=True)
        expected = (radial_sum(x, r, edges) - n0) / n0
        assert np.allclose(res["deepdream_runs"]["counts"]["dn_over_n"][k - 1], expected, rtol=1e-9)
    # What the issue found: photons alone make dN/N rise outwards in either space (the
    # count-space step far more: dN ~ 1/(1+N)).
    prof = {v: res["deepdream_runs"][v]["dn_over_n"][0].mean(axis=0) for v in ("input", "counts")}
    assert prof["input"][0] < 0.5 * prof["input"][-1] and prof["counts"][0] < 0.01 * prof["counts"][-1]


def test_model_equal_to_the_null_is_exactly_the_null():
    counts, r500c_pix = _images()
    res = diagnose_predictor(NullLogPredictor(SPACE), counts, _aux(4), r500c_pix, input_space=SPACE)
    per_image = pd.DataFrame({"cluster_id": range(4)})
    out = compare_with_null(per_image, [res], [res], 0.15, n_boot=100)
    assert np.allclose(out["relative_to_null"]["iter1"]["ratio"], 1.0)
    use = out["core_use_vs_null"]
    assert use["value"] == pytest.approx(1.0) and use["ci95"] == pytest.approx([1.0, 1.0])
    assert use["answer"] == "undetermined" and use["answered_by"] == "deepdream_iter1"
    assert use["by"]["ring_dimming"]["value"] == pytest.approx(1.0)


# --------------------------------------------------------------------------------------
# models built to use only the core, or only the outskirts
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("region", ["core", "outskirts"])
def test_each_diagnostic_identifies_core_and_outskirts_models(fake_dataset, region, tmp_path):
    # Masks of 2 and 12 pixels lie inside 0.15 R500c / beyond 0.15 R500c for every cluster
    # of this dataset (test_diagnostics.py::test_fake_dataset_cores_are_resolved).
    mask = radius_pix() < 2 if region == "core" else radius_pix() >= 12
    # g / mean|g| piles the whole step onto the 12 core pixels: a smaller step keeps it modest.
    step = 0.001 if region == "core" else 0.1
    s = _run(fake_dataset, harness_predictor(mask), tmp_path, controls=("null", "random_weights"),
             folds=range(4), input_step_size=step)
    assert s["deepdream_space"] == "standardised_log10"
    assert s["deepdream_variants"]["input"]["space"]["log_std"] == 0.5
    edges = np.array(s["r_edges_r500c"])
    core_bins, outer_bins = edges[1:] <= 0.15, edges[:-1] >= 0.2
    gradient, occlusion = s["core_sensitivity_gradient"], s["core_sensitivity"]
    use = s["core_use_vs_null"]["by"]
    rel = np.array(s["relative_to_null"]["iter1"]["ratio"], dtype=float)
    if region == "core":
        assert gradient > 2 and occlusion > 2
        for variant in ("input", "counts"):
            for it in ("iter1", "iter2"):
                prof = np.array(s["deepdream_variants"][variant]["profile"][it]["mean"])
                assert np.allclose(prof[outer_bins], 0.0) and prof[0] > 0  # the mask: R < 2 pix
        assert np.allclose(rel[outer_bins], 0.0) and rel[0] > 1
        assert use["deepdream_iter1"]["answer"] == "no" and use["ring_dimming"]["answer"] == "no"
        assert s["core_use_vs_null"]["answer"] == "no"
    else:
        assert gradient == pytest.approx(0.0, abs=1e-9) and occlusion == pytest.approx(0.0, abs=1e-9)
        for variant in ("input", "counts"):
            prof = np.array(s["deepdream_variants"][variant]["profile"]["iter1"]["mean"])
            assert np.allclose(prof[core_bins], 0.0) and np.all(prof[outer_bins] > 0)
        assert np.allclose(rel[core_bins], 0.0)
        assert use["deepdream_iter1"]["value"] == pytest.approx(0.0, abs=1e-12)
        assert use["deepdream_iter1"]["answer"] == "yes" and use["ring_dimming"]["answer"] == "yes"
        assert s["core_use_vs_null"]["answer"] == "yes"
    assert s["core_use_vs_null"]["answered_by"] == "deepdream_iter1"
    ctl = s["controls"]
    assert set(ctl) == {"null", "random_weights"} and ctl["random_weights"]["has_gradient"]
    # The null weighs pixels, not photons: log10(1+N) compresses the bright core, so against
    # the photon share it already scores well below one, with no preference for any radius.
    assert 0.05 < ctl["null"]["core_sensitivity_detail"]["0.15"]["occlusion"] < 1
    assert s["notes"] == []
    json.dumps(entry_summary(s), allow_nan=False)


def test_model_without_gradients_gets_occlusion_and_a_note(fake_dataset, tmp_path):
    model = KerasPredictor(masked_log_counts_model(radius_pix() >= 12), with_gradient=False)
    s = _run(fake_dataset, model, tmp_path, controls=("null",), folds=range(5))
    assert not s["has_gradient"] and "deepdream" not in s and "relative_to_null" not in s
    assert s["core_sensitivity_gradient"] is None
    assert s["core_sensitivity_method"] == "occlusion" and s["core_sensitivity"] == pytest.approx(0, abs=1e-9)
    assert any("no gradients" in note for note in s["notes"])
    use = s["core_use_vs_null"]
    assert use["answered_by"] == "ring_dimming" and use["answer"] == "yes"
    assert "notes" in entry_summary(s)


def test_random_weights_control(fake_dataset):
    counts, _ = _images(3)
    aux = _aux(3)
    model = harness_predictor(radius_pix() < 2)
    rand = random_weights_predictor(model, seed=1)
    assert input_space_of(rand) == input_space_of(model) == SPACE
    assert not np.allclose(rand.predict(counts, aux), model.predict(counts, aux))
    assert np.allclose(model.predict(counts, aux) - 13.0,  # the original network is untouched
                       ((np.log10(1 + counts) - 0.4) / 0.5)[:, radius_pix() < 2].mean(axis=1), atol=1e-5)
    assert random_weights_predictor(NullLogPredictor()) is None


def test_random_weights_control_skipped_with_a_note(fake_dataset, tmp_path):
    s = _run(fake_dataset, NullLogPredictor(), tmp_path, controls=("random_weights",), folds=[0])
    assert "random_weights" not in s["controls"]
    assert any("random-weights control skipped" in note for note in s["notes"])


def test_lx_control_ignores_the_core(fake_dataset, tmp_path):
    s = _run(fake_dataset, NullLogPredictor(), tmp_path, controls=("lx",), folds=[0, 1])
    lx = s["controls"]["lx"]
    assert not lx["has_gradient"]
    # Core-excised (0.15-1 R500c, R500c iterated): dimming the core barely moves it.
    assert lx["core_sensitivity_detail"]["0.15"]["occlusion"] < 0.1
    assert any("fitted on" in note for note in s["notes"])


def test_input_space_round_trip_and_non_negative():
    counts, _ = _images(2)
    assert np.allclose(SPACE.to_counts(SPACE.to_input(counts)), counts)
    grad = -np.ones_like(counts)
    out = deepdream_step_in(counts, grad, SPACE, 100.0)
    assert out.min() == 0.0 and np.all(np.isfinite(out))
    assert np.allclose(deepdream_step_in(counts, np.zeros_like(counts), SPACE, 0.1), counts, atol=1e-9)
    assert input_space_of(KerasPredictor(None)) == COUNT_SPACE
    with pytest.raises(DiagnosticsError, match="log_std"):
        InputSpace("standardised_log10", 0.0, 0.0)
    with pytest.raises(DiagnosticsError, match="controls"):
        run_diagnostics("x", write_fake_dataset, controls=("nope",))
