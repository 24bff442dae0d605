"""The one cosmology of the project and the physical constants, both from astropy.

Flat LambdaCDM with the Planck 2015 parameters that IllustrisTNG uses (h = 0.6774,
Omega_m = 0.3089, Omega_b = 0.0486; Planck Collaboration 2016, A&A 594, A13; Nelson et al.
2019, Comput. Astrophys. Cosmol. 6, 2). Radiation is neglected (Tcmb0 = 0), which changes
distances at z < 0.5 by < 0.01%.

Units are explicit at the boundary: lengths in physical kpc, masses in Msun, densities in
Msun/kpc^3, as each name says. Plain floats and arrays go in and out because these functions
sit in the inner loops of mock generation; :data:`COSMOLOGY` is the astropy object for
anything that wants quantities.
"""
from __future__ import annotations

import astropy.constants as const
import astropy.units as u
import numpy as np
from astropy.cosmology import FlatLambdaCDM

__all__ = [
    "COSMOLOGY", "H", "OMEGA_M", "OMEGA_B", "KEV_TO_ERG", "KEV_PER_K", "HC_KEV_ANGSTROM",
    "H_KEV_S", "CM_PER_MPC", "ARCSEC_PER_RAD", "efunc", "rho_crit_msun_kpc3", "r500c_kpc",
    "m500c_from_r500c", "angular_diameter_distance_kpc", "luminosity_distance_cm",
    "kpc_per_arcsec", "cosmology_record",
]

H = 0.6774
OMEGA_M = 0.3089
OMEGA_B = 0.0486

#: The cosmology of every mock, baseline and diagnostic.
COSMOLOGY = FlatLambdaCDM(H0=100.0 * H, Om0=OMEGA_M, Ob0=OMEGA_B, name="Planck15-TNG")

KEV_TO_ERG = float((1.0 * u.keV).to_value(u.erg))
KEV_PER_K = float((const.k_B / u.keV).to_value(1 / u.K))
H_KEV_S = float(const.h.to_value(u.keV * u.s))
HC_KEV_ANGSTROM = float((const.h * const.c).to_value(u.keV * u.AA))
CM_PER_MPC = float((1.0 * u.Mpc).to_value(u.cm))
ARCSEC_PER_RAD = float((1.0 * u.rad).to_value(u.arcsec))

# Cached once: astropy's per-call unit machinery costs ~50 us, and r500c is evaluated per view.
_RHO_CRIT0_MSUN_KPC3 = float(COSMOLOGY.critical_density0.to_value(u.Msun / u.kpc**3))


def efunc(z):
    """Dimensionless Hubble rate E(z) = H(z)/H0 (array in, array out)."""
    z = np.asarray(z, dtype=float)
    return np.sqrt(OMEGA_M * (1.0 + z) ** 3 + (1.0 - OMEGA_M))


def rho_crit_msun_kpc3(z):
    """Critical density at redshift ``z`` in Msun / kpc^3 (physical)."""
    return _RHO_CRIT0_MSUN_KPC3 * efunc(z) ** 2


def r500c_kpc(m500c_msun, z):
    """R500c in physical kpc of a halo of mass ``m500c_msun`` (Msun) at redshift ``z``."""
    m = np.asarray(m500c_msun, dtype=float)
    return (3.0 * m / (4.0 * np.pi * 500.0 * rho_crit_msun_kpc3(z))) ** (1.0 / 3.0)


def m500c_from_r500c(r500c_kpc_, z):
    """Inverse of :func:`r500c_kpc`: M500c in Msun."""
    r = np.asarray(r500c_kpc_, dtype=float)
    return 4.0 / 3.0 * np.pi * 500.0 * rho_crit_msun_kpc3(z) * r**3


def angular_diameter_distance_kpc(z):
    """Angular-diameter distance in physical kpc."""
    return np.asarray(COSMOLOGY.angular_diameter_distance(z).to_value(u.kpc))


def luminosity_distance_cm(z):
    """Luminosity distance in cm."""
    return np.asarray(COSMOLOGY.luminosity_distance(z).to_value(u.cm))


def kpc_per_arcsec(z):
    """Physical kpc subtended by one arcsec at redshift ``z``."""
    return angular_diameter_distance_kpc(z) / ARCSEC_PER_RAD


def cosmology_record() -> dict:
    """The cosmology as plain values, for cards and entries."""
    return {"name": COSMOLOGY.name, "H0": float(COSMOLOGY.H0.value), "Om0": float(COSMOLOGY.Om0),
            "Ob0": float(COSMOLOGY.Ob0)}
