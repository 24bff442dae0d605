"""The Gaussian-head reference CNN and the deep ensemble, with real Keras on tiny images."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from benchmark.core.errors import ClusterMassError
from benchmark.metrics import SIGMA_COLUMN
from benchmark.models import BASELINES, cnn
from benchmark.training import FoldData, fold_dir, load_fold_predictor, run_entry

TINY = {"max_epochs": 2, "patience": 1, "lr_patience": 1, "batch_size": 8,
        "dense_units": [8, 4], "filters": [2, 4, 4]}


def blob_data(n, seed=0, npix=16):
    """Blobs whose counts grow with mass (the CNN's task in miniature)."""
    rng = np.random.default_rng(seed)
    y = rng.uniform(14.0, 15.0, n)
    yy, xx = np.indices((npix, npix))
    r2 = (yy - (npix - 1) / 2) ** 2 + (xx - (npix - 1) / 2) ** 2
    lam = np.exp(-r2[None] / (2 * (1.5 + 2 * (y[:, None, None] - 14)) ** 2)) * 20
    images = rng.poisson(lam + 0.1).astype(np.float32)
    return FoldData(images, _aux(n, seed), y)


def _aux(n, seed):
    return pd.DataFrame({"image_id": [f"g{seed}_{i}" for i in range(n)],
                         "redshift": np.full(n, 0.2), "pixel_arcsec": 7.92})


def two_noise_groups(n, seed):
    """Faint images with targets scattered by 0.02 dex, bright ones by 0.3 dex.

    The brightness (invariant under the flips and rotations) tells the groups apart, so an
    NLL head that reads its input must give the bright group the larger sigma.
    """
    rng = np.random.default_rng(seed)
    bright = np.arange(n) % 2 == 1
    level = np.where(bright, 30.0, 1.0)[:, None, None]
    images = rng.poisson(np.broadcast_to(level, (n, 16, 16))).astype(np.float32)
    y = np.where(bright, 14.7 + rng.normal(0, 0.3, n), 14.3 + rng.normal(0, 0.02, n))
    return FoldData(images, _aux(n, seed), y), bright


def test_nll_matches_the_gaussian_log_density():
    y = np.array([[0.3], [-1.2], [2.0]], np.float32)
    mu = np.array([0.1, -1.0, 0.5])
    log_sigma = np.array([-0.5, 0.2, 1.0])
    pred = np.stack([mu, log_sigma], axis=1).astype(np.float32)
    nll = np.asarray(cnn.gaussian_nll(y, pred))
    expect = -stats.norm.logpdf(y[:, 0], loc=mu, scale=np.exp(log_sigma))
    np.testing.assert_allclose(nll, expect, rtol=1e-5)


def test_the_head_learns_a_larger_sigma_for_noisier_targets():
    train, _ = two_noise_groups(192, seed=1)
    val, _ = two_noise_groups(64, seed=2)
    test, bright = two_noise_groups(64, seed=3)
    config = dict(TINY, max_epochs=40, patience=40, lr_patience=40, batch_size=16,
                  learning_rate=3e-3, random_seed=0)
    model = cnn.make_model(dict(config, head="gaussian")).fit(train, val)
    mean, sigma = model.predict_mean_and_sigma(test)
    assert np.all(np.isfinite(sigma) & (sigma > 0))
    # The true scatters are 0.3 and 0.02 dex: the learnt sigmas must order and separate them.
    assert np.median(sigma[bright]) > 4 * np.median(sigma[~bright])
    assert np.median(sigma[~bright]) < 0.05 and 0.15 < np.median(sigma[bright]) < 0.45
    np.testing.assert_allclose(model.predict(test), mean)
    np.testing.assert_allclose(model.predict_sigma(test), sigma)


def test_gaussian_save_load_round_trip(tmp_path):
    train, val, test = blob_data(24, seed=4), blob_data(8, seed=5), blob_data(6, seed=6)
    model = cnn.make_model(dict(TINY, head="gaussian")).fit(train, val)
    assert isinstance(model, cnn.GaussianRegressor)
    assert model.training_summary["monitor"] == "val_loss"
    mean, sigma = model.predict_mean_and_sigma(test)
    assert np.all(np.isfinite(sigma) & (sigma > 0)) and np.all(np.isfinite(mean))
    model.save(tmp_path)
    assert json.loads((tmp_path / "recipe.json").read_text())["head"] == "gaussian"
    again = cnn.load_model(tmp_path)
    assert isinstance(again, cnn.GaussianRegressor)
    np.testing.assert_allclose(again.predict(test), mean, rtol=1e-6)
    np.testing.assert_allclose(again.predict_sigma(test), sigma, rtol=1e-6)
    # The differentiable path gives the same mean (diagnostics use it for saliency).
    np.testing.assert_allclose(again.predict_tensor(test.images, test.aux).numpy(), mean,
                               rtol=1e-5)


def test_mixture_moments_match_samples_of_the_mixture():
    rng = np.random.default_rng(0)
    means = np.array([[14.0, 14.5], [14.3, 14.5], [14.9, 14.6]])
    sigmas = np.array([[0.1, 0.05], [0.2, 0.05], [0.1, 0.3]])
    mean, sigma = cnn.mixture_moments(means, sigmas)
    # Independent check: draw from the equal-weight mixture and measure its moments.
    n = 400_000
    member = rng.integers(0, 3, n)
    for j in range(2):
        draws = rng.normal(means[member, j], sigmas[member, j])
        assert mean[j] == pytest.approx(draws.mean(), abs=3e-3)
        assert sigma[j] == pytest.approx(draws.std(), rel=5e-3)
    with pytest.raises(ClusterMassError, match="same shape|one shape"):
        cnn.mixture_moments(means, sigmas[:2])


def test_ensemble_combines_its_members_and_round_trips(tmp_path):
    train, val, test = blob_data(24, seed=7), blob_data(8, seed=8), blob_data(6, seed=9)
    model = cnn.make_model(dict(TINY, head="gaussian", ensemble=True, ensemble_members=3,
                                random_seed=5)).fit(train, val)
    assert isinstance(model, cnn.DeepEnsemble) and len(model.members) == 3
    seeds = [m.config["random_seed"] for m in model.members]
    assert seeds == [5, 5 + cnn.MEMBER_SEED_STRIDE, 5 + 2 * cnn.MEMBER_SEED_STRIDE]
    parts = [m.predict_mean_and_sigma(test) for m in model.members]
    mu = np.array([p[0] for p in parts])
    sd = np.array([p[1] for p in parts])
    assert np.ptp(mu, axis=0).max() > 0  # different seeds, different members
    mean, sigma = model.predict_mean_and_sigma(test)
    np.testing.assert_allclose(mean, mu.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(sigma ** 2, (sd ** 2).mean(axis=0) + mu.var(axis=0), rtol=1e-10)
    assert model.training_summary["n_members"] == 3
    model.save(tmp_path)
    again = cnn.load_model(tmp_path)
    assert isinstance(again, cnn.DeepEnsemble)
    np.testing.assert_allclose(again.predict(test), mean, rtol=1e-6)
    np.testing.assert_allclose(again.predict_sigma(test), sigma, rtol=1e-6)
    # A member's own files load as a plain Gaussian CNN, not as another ensemble.
    assert isinstance(cnn.load_model(tmp_path / "member_0"), cnn.GaussianRegressor)
    np.testing.assert_allclose(again.predict_tensor(test.images, test.aux).numpy(), mean,
                               rtol=1e-5)


def test_bad_heads_and_member_counts_are_one_clear_error():
    with pytest.raises(ClusterMassError, match="unknown head"):
        cnn.make_model({"head": "laplace"})
    for bad in (0, 2.5, True):
        with pytest.raises(ClusterMassError, match="ensemble_members"):
            cnn.make_model({"head": "gaussian", "ensemble": True, "ensemble_members": bad})
    with pytest.raises(ClusterMassError, match="not trained"):
        cnn.make_model({"ensemble": True}).predict(blob_data(2))


def test_the_entries_are_registered_with_the_reference_schedule():
    module, config = BASELINES["reference_gauss"]
    assert module == "benchmark.models.cnn" and config["head"] == "gaussian"
    module, config = BASELINES["reference_ensemble"]
    assert config["ensemble"] and config["ensemble_members"] == 5
    # reference itself stays a point estimate with its old recipe (no new keys saved).
    assert type(cnn.make_model(dict(BASELINES["reference"][1]))) is cnn.KerasRegressor
    assert "head" not in cnn.make_model(dict(BASELINES["reference"][1])).config


def test_the_harness_writes_and_reloads_the_sigma_column(fake_dataset, tmp_path):
    cheap = {"max_epochs": 1, "patience": 1, "lr_patience": 1, "filters": [2, 2, 2],
             "dense_units": [4, 2], "augment": False, "batch_size": 16}
    preds = run_entry("reference_gauss", fake_dataset, tmp_path, folds=[0], progress=False,
                      config=cheap, preset="ci")
    assert SIGMA_COLUMN in preds.columns
    assert np.all(np.isfinite(preds[SIGMA_COLUMN]) & (preds[SIGMA_COLUMN] > 0))
    record = json.loads((fold_dir(tmp_path, 0) / "fold.json").read_text())
    assert record["loader"] == "keras_recipe" and record["config"]["head"] == "gaussian"
    predictor = load_fold_predictor(tmp_path, 0)
    assert isinstance(predictor.model, cnn.GaussianRegressor)
    rows = fake_dataset.fold_indices(0)["test"]
    again = predictor.model.predict_sigma(
        FoldData(fake_dataset.images()[rows].astype(np.float32),
                 fake_dataset.aux(rows).reset_index(drop=True), None))
    np.testing.assert_allclose(np.sort(again), np.sort(preds[SIGMA_COLUMN].to_numpy()),
                               rtol=1e-5)
