"""The one cosmology (benchmark.core.cosmology) against astropy and published numbers."""

from __future__ import annotations

import astropy.units as u
import numpy as np
import pytest

from benchmark.core import cosmology as cosmo


def test_parameters_are_planck2015_as_illustris_tng():
    assert cosmo.COSMOLOGY.H0.value == pytest.approx(67.74)
    assert cosmo.COSMOLOGY.Om0 == pytest.approx(0.3089)
    assert cosmo.COSMOLOGY.Ob0 == pytest.approx(0.0486)
    assert cosmo.COSMOLOGY.Ode0 == pytest.approx(1 - 0.3089)


@pytest.mark.parametrize("z", [0.0, 0.1, 0.2, 0.4, 1.0])
def test_fast_functions_equal_astropy(z):
    assert cosmo.efunc(z) == pytest.approx(cosmo.COSMOLOGY.efunc(z), rel=1e-12)
    rho = cosmo.COSMOLOGY.critical_density(z).to_value(u.Msun / u.kpc**3)
    assert cosmo.rho_crit_msun_kpc3(z) == pytest.approx(rho, rel=1e-10)


def test_critical_density_today_in_h2_units():
    # 2.775e11 h^2 Msun/Mpc^3, the textbook value.
    assert cosmo.rho_crit_msun_kpc3(0.0) / cosmo.H**2 == pytest.approx(277.5366, rel=1e-6)


def test_r500c_round_trip_and_scale():
    m = np.array([1e14, 1e15])
    r = cosmo.r500c_kpc(m, 0.2)
    np.testing.assert_allclose(cosmo.m500c_from_r500c(r, 0.2), m, rtol=1e-12)
    # A 1e15 Msun cluster has R500c ~ 1.45 Mpc at z = 0.2 (h = 0.6774).
    assert 1400 < r[1] < 1500
    np.testing.assert_allclose(r[1] / r[0], 10 ** (1 / 3), rtol=1e-12)


def test_distances_and_angular_scale():
    # 3.405 kpc per arcsec at z = 0.2 (the module docstring of pipeline.observation uses it).
    assert cosmo.kpc_per_arcsec(0.2) == pytest.approx(3.405, abs=1e-3)
    d_l = cosmo.luminosity_distance_cm(0.2)
    d_a = cosmo.angular_diameter_distance_kpc(0.2) * (u.kpc).to(u.cm)
    assert d_l == pytest.approx(d_a * 1.2**2, rel=1e-10)


def test_constants_from_astropy():
    assert cosmo.KEV_TO_ERG == pytest.approx(1.602176634e-9, rel=1e-15)
    assert cosmo.KEV_PER_K == pytest.approx(8.617333262e-8, rel=1e-9)
    assert cosmo.HC_KEV_ANGSTROM == pytest.approx(12.398419843320026, rel=1e-15)
    assert cosmo.CM_PER_MPC == pytest.approx(3.0856775814913673e24, rel=1e-15)
    assert cosmo.ARCSEC_PER_RAD == pytest.approx(206264.80624709636, rel=1e-15)
    assert cosmo.cosmology_record() == {"name": "Planck15-TNG", "H0": 67.74, "Om0": 0.3089,
                                        "Ob0": 0.0486}
