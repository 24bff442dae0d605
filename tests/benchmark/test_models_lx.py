"""Core-excised L_X baselines on synthetic beta-model images (no TensorFlow)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from benchmark.core.cosmology import luminosity_distance_cm
from benchmark.core.errors import ClusterMassError
from benchmark.models import lx
from benchmark.models.lx import LXModel, RadialProfiles
from benchmark.training import FoldData

NPIX = 128
PIXEL_ARCSEC = 16.9 * 60 / NPIX
Z = 0.2


def beta_image(r500_pix: float, rc_frac: float = 0.15, truncate_r500: float = 3.0) -> np.ndarray:
    """Projected beta = 2/3 model centred at (63.5, 63.5), unit total, cut at truncate_r500."""
    yy, xx = np.indices((NPIX, NPIX), dtype=float)
    r = np.hypot(yy - 63.5, xx - 63.5)
    img = (1 + (r / (rc_frac * r500_pix)) ** 2) ** -1.5
    img[r > truncate_r500 * r500_pix] = 0.0
    return img / img.sum()


def synthetic_sample(n=60, slope=1.5, seed=0, poisson=True, bkg_per_pix=0.05):
    """Images whose 0.15-1 R500c source counts are exactly 3000 (M / 10^14.5)^slope."""
    rng = np.random.default_rng(seed)
    log_m = rng.uniform(14.0, 15.1, n)
    r500_pix = LXModel.r500c_pixels(log_m, np.full(n, Z), np.full(n, PIXEL_ARCSEC))
    images = np.empty((n, NPIX, NPIX))
    for i in range(n):
        shape = beta_image(r500_pix[i], rc_frac=rng.uniform(0.1, 0.2))
        prof = RadialProfiles(shape[None])
        ann = prof.counts_within([r500_pix[i]]) - prof.counts_within([0.15 * r500_pix[i]])
        images[i] = shape * 3000.0 * 10 ** (slope * (log_m[i] - 14.5)) / ann[0] + bkg_per_pix
    if poisson:
        images = rng.poisson(images).astype(np.float32)
    aux = pd.DataFrame({"image_id": [f"i{i}" for i in range(n)], "redshift": Z,
                        "pixel_arcsec": PIXEL_ARCSEC,
                        "r500c_arcmin": r500_pix * PIXEL_ARCSEC / 60.0})
    return FoldData(images.astype(np.float32), aux, log_m)


def test_radial_profiles_are_continuous_and_complete():
    img = np.random.default_rng(1).poisson(3.0, (2, NPIX, NPIX)).astype(float)
    prof = RadialProfiles(img)
    big = prof.counts_within([200.0, 200.0])
    np.testing.assert_allclose(big, img.reshape(2, -1).sum(axis=1))
    radii = np.linspace(0.0, 80.0, 4001)
    inside = np.array([prof.counts_within(np.full(2, r))[0] for r in radii])
    assert np.all(np.diff(inside) >= 0)  # monotone
    assert np.max(np.diff(inside)) < 0.02 * inside[-1]  # no jumps of a whole ring
    assert prof.area_within(np.array([200.0]))[0] == NPIX * NPIX


@pytest.mark.parametrize("variant", ["truth", "iterative"])
def test_power_law_recovers_known_slope(variant):
    """L in the annulus ~ M^1.5 by construction, so log M = a + b log L has b = 1/1.5."""
    train = synthetic_sample(80, slope=1.5, seed=2)
    model = lx.make_model({"r500c_source": variant}).fit(train)
    assert model.params["b"] == pytest.approx(1 / 1.5, abs=0.02)
    test = synthetic_sample(30, slope=1.5, seed=3)
    pred = model.predict(FoldData(test.images, test.aux, None))
    assert np.std(pred - test.y) < 0.03
    assert abs(np.mean(pred - test.y)) < 0.02


def test_iterative_r500c_converges_to_the_fixed_point():
    train = synthetic_sample(80, seed=4)
    model = lx.make_model({"r500c_source": "iterative"}).fit(train)
    test = synthetic_sample(20, seed=5)
    z = np.full(20, Z)
    pix = np.full(20, PIXEL_ARCSEC)
    log_m = model.iterate(RadialProfiles(test.images), z, pix)
    assert model.converged.all()
    assert model.last_iterations.max() < 20  # the map contracts fast (factor ~0.1)
    # A fixed point: the mass reproduces itself through R500c(M) -> L -> M.
    again = model.params["a"] + model.params["b"] * np.log10(
        model.luminosity(RadialProfiles(test.images), LXModel.r500c_pixels(log_m, z, pix), z))
    np.testing.assert_allclose(again, log_m, atol=1e-4)
    # The starting guess (training mean) is far from most clusters; the result is not.
    assert np.std(log_m - test.y) < 0.03


def test_outer_background_is_subtracted():
    """A flat background added to a compact source leaves L unchanged (expected counts)."""
    r500 = 30.0
    src = beta_image(r500, truncate_r500=1.2)[None] * 5000.0
    model = LXModel({"r500c_source": "iterative"})
    z = np.array([Z])
    l_clean = model.luminosity(RadialProfiles(src), [r500], z)
    l_bkg = model.luminosity(RadialProfiles(src + 2.0), [r500], z)
    assert l_bkg[0] == pytest.approx(l_clean[0], rel=1e-9)
    no_sub = LXModel({"background": "none"}).luminosity(RadialProfiles(src + 2.0), [r500], z)
    assert no_sub[0] > 1.5 * l_clean[0]


def test_counts_to_luminosity_uses_distance_and_band_factor():
    ecf, source = lx.band_conversion_factor([0.1, 0.4])
    assert source.startswith("arf:") or source == "fallback"
    assert np.all(ecf > 0)
    src = beta_image(30.0)[None] * 1000.0
    model = LXModel({})
    lum = [model.luminosity(RadialProfiles(src), [30.0], np.array([z]))[0] for z in (0.1, 0.4)]
    # L ~ D_L^2 * ECF: a distant cluster with the same counts is far more luminous.
    d_ratio = (luminosity_distance_cm(0.4) / luminosity_distance_cm(0.1)) ** 2
    assert lum[1] / lum[0] == pytest.approx(d_ratio * ecf[1] / ecf[0], rel=1e-6)


def test_band_factor_falls_back_without_arf(monkeypatch, tmp_path):
    monkeypatch.setenv("CLUSTERMASS_RESPONSES", str(tmp_path))
    ecf, source = lx.band_conversion_factor([0.2])
    assert source == "fallback" and ecf[0] == lx.FALLBACK_ECF


def test_truth_variant_declares_and_needs_its_column():
    assert LXModel({"r500c_source": "truth"}).truth_columns == ("r500c_arcmin",)
    assert LXModel({"r500c_source": "iterative"}).truth_columns == ()
    data = synthetic_sample(12, seed=6, poisson=False)
    model = lx.make_model({"r500c_source": "truth"}).fit(data)
    with pytest.raises(ClusterMassError, match="r500c_arcmin"):
        model.predict(FoldData(data.images, data.aux.drop(columns="r500c_arcmin"), None))
    with pytest.raises(ClusterMassError):
        LXModel({"r500c_source": "guess"})


def test_lx_save_and_load_round_trip(tmp_path):
    data = synthetic_sample(20, seed=7)
    model = lx.make_model({"r500c_source": "iterative"}).fit(data)
    model.save(tmp_path)
    again = lx.load_model(tmp_path)
    np.testing.assert_allclose(again.predict(data), model.predict(data))
    assert again.params["cosmology"]["H0"] == pytest.approx(67.74)
