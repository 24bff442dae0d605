"""The observation set-up: validation, the field in kpc, and why z_obs = 0.2."""
import dataclasses

import pytest

from benchmark.core.cosmology import kpc_per_arcsec, r500c_kpc
from benchmark.core.errors import ClusterMassError
from pipeline.observation import Observation

#: the most massive cluster the population allows (log10 M500c = 15.2)
M_MAX = 10**15.2


def test_defaults_are_the_study_set_up():
    obs = Observation()
    assert (obs.z_obs, obs.exposure_ks, obs.fov_arcmin, obs.npix) == (0.2, 100.0, 16.9, 128)
    assert obs.band_kev == (0.5, 7.0)
    assert obs.pixel_arcsec == pytest.approx(7.921875)


@pytest.mark.parametrize("z", [0.1, 0.2, 0.5])
def test_pixel_and_field_in_kpc_follow_the_core_cosmology(z):
    obs = Observation()
    assert obs.pixel_kpc(z) == pytest.approx(obs.pixel_arcsec * float(kpc_per_arcsec(z)), rel=1e-12)
    assert obs.fov_kpc(z) == pytest.approx(obs.npix * obs.pixel_kpc(z), rel=1e-12)
    assert obs.half_field_kpc(z) == pytest.approx(0.5 * 16.9 * 60.0 * float(kpc_per_arcsec(z)), rel=1e-12)


def test_default_redshift_is_z_obs():
    obs = Observation(z_obs=0.3)
    assert obs.pixel_kpc() == obs.pixel_kpc(0.3) != obs.pixel_kpc(0.2)


def test_the_z_02_claim_of_the_module_docstring():
    """R500c of the heaviest cluster just fits the field at z = 0.2, not at 0.15; 0.25 wastes it."""
    obs = Observation()
    assert float(r500c_kpc(M_MAX, 0.2)) == pytest.approx(1693, abs=1)
    assert obs.half_field_kpc(0.2) == pytest.approx(1726, abs=1)
    assert float(kpc_per_arcsec(0.2)) == pytest.approx(3.405, abs=1e-3)
    ratios = {z: float(r500c_kpc(M_MAX, z)) / obs.half_field_kpc(z) for z in (0.15, 0.2, 0.25)}
    assert ratios[0.2] == pytest.approx(0.98, abs=0.005) and ratios[0.2] < 1.0
    assert ratios[0.15] == pytest.approx(1.26, abs=0.005)
    assert ratios[0.25] == pytest.approx(0.81, abs=0.005)


@pytest.mark.parametrize("field, value", [
    ("z_obs", 0.0), ("z_obs", 5.0), ("exposure_ks", 0.0), ("fov_arcmin", -1.0), ("npix", 4),
    ("npix", 64.5), ("band_kev", (7.0, 0.5)), ("band_kev", (0.0, 7.0)), ("band_kev", (1.0,)),
    ("nH_1e22", -0.01),
])
def test_bad_settings_are_named(field, value):
    with pytest.raises(ClusterMassError, match=field):
        Observation(**{field: value})


def test_all_problems_are_named_at_once_and_band_becomes_floats():
    with pytest.raises(ClusterMassError, match="exposure_ks.*npix"):
        Observation(exposure_ks=-1.0, npix=2)
    obs = Observation(band_kev=[1, 2])
    assert obs.band_kev == (1.0, 2.0) and all(isinstance(b, float) for b in obs.band_kev)
    with pytest.raises(dataclasses.FrozenInstanceError):
        obs.z_obs = 0.3
