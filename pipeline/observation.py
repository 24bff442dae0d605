"""Cosmology and the observation set-up shared by every mock image.

Cosmology: flat LambdaCDM with the Planck 2015 parameters that IllustrisTNG uses
(h = 0.6774, Omega_m = 0.3089, Omega_b = 0.0486; Planck Collaboration 2016, A&A 594, A13;
Nelson et al. 2019, Comput. Astrophys. Cosmol. 6, 2). Radiation is neglected (Tcmb0 = 0),
which changes distances at z < 0.5 by < 0.01%.

Units: lengths in kpc (physical, not comoving), masses in Msun, densities in Msun/kpc^3 or
g/cm^3 as the name says, angles in arcsec / arcmin as the name says.

Why z_obs = 0.2 by default
--------------------------
The image covers the ACIS-I field (16.9 arcmin square).  The most massive cluster the
population allows (log10 M500c = 15.2) has R500c = 1693 kpc at z = 0.2, while the half-width
of the field there is 1726 kpc (3.405 kpc/arcsec): R500c fits inside the inscribed circle
(R500c / half-width = 0.98).  At z = 0.15 the ratio is 1.26 (R500c would leave the field),
at z = 0.25 it is 0.81 (clusters would be smaller on the detector than needed).  Measured
with ``python -c "from pipeline.observation import *; print(r500c_kpc(10**15.2, 0.2),
Observation().half_field_kpc(0.2))"``.
"""
from __future__ import annotations

import dataclasses
from functools import lru_cache

import numpy as np

from benchmark.core.errors import ClusterMassError

__all__ = [
    "H", "OMEGA_M", "OMEGA_B", "cosmology", "efunc", "rho_crit_msun_kpc3", "r500c_kpc",
    "m500c_from_r500c", "angular_diameter_distance_kpc", "kpc_per_arcsec", "Observation",
]

H = 0.6774  # Planck 2015 / IllustrisTNG (Nelson et al. 2019)
OMEGA_M = 0.3089
OMEGA_B = 0.0486
OMEGA_L = 1.0 - OMEGA_M

#: critical density today for h = 1, Msun/kpc^3 (3 H0^2 / 8 pi G with H0 = 100 km/s/Mpc).
RHO_CRIT0_H2_MSUN_KPC3 = 277.536627


@lru_cache(maxsize=1)
def cosmology():
    """The astropy cosmology object (``FlatLambdaCDM``) used everywhere in the pipeline."""
    from astropy.cosmology import FlatLambdaCDM

    return FlatLambdaCDM(H0=100.0 * H, Om0=OMEGA_M, Ob0=OMEGA_B, name="Planck15-TNG")


def efunc(z):
    """Dimensionless Hubble rate E(z) = H(z)/H0 of flat LCDM (no radiation).

    Parameters
    ----------
    z : float or array
        Redshift.
    """
    z = np.asarray(z, dtype=float)
    return np.sqrt(OMEGA_M * (1.0 + z) ** 3 + OMEGA_L)


def rho_crit_msun_kpc3(z):
    """Critical density of the Universe at redshift ``z`` in Msun / kpc^3 (physical)."""
    return RHO_CRIT0_H2_MSUN_KPC3 * H**2 * efunc(z) ** 2


def r500c_kpc(m500c_msun, z):
    """R500c in physical kpc of a halo of mass ``m500c_msun`` (Msun) at redshift ``z``."""
    m = np.asarray(m500c_msun, dtype=float)
    return (3.0 * m / (4.0 * np.pi * 500.0 * rho_crit_msun_kpc3(z))) ** (1.0 / 3.0)


def m500c_from_r500c(r500c_kpc_, z):
    """Inverse of :func:`r500c_kpc`: M500c in Msun."""
    r = np.asarray(r500c_kpc_, dtype=float)
    return 4.0 / 3.0 * np.pi * 500.0 * rho_crit_msun_kpc3(z) * r**3


def angular_diameter_distance_kpc(z):
    """Angular-diameter distance in physical kpc (astropy, exact quadrature)."""
    import astropy.units as u

    return np.asarray(cosmology().angular_diameter_distance(z).to(u.kpc).value)


def luminosity_distance_cm(z):
    """Luminosity distance in cm."""
    import astropy.units as u

    return np.asarray(cosmology().luminosity_distance(z).to(u.cm).value)


def kpc_per_arcsec(z):
    """Physical kpc subtended by one arcsec at redshift ``z``."""
    return angular_diameter_distance_kpc(z) * np.pi / (180.0 * 3600.0)


@dataclasses.dataclass(frozen=True)
class Observation:
    """How every view is observed (the defaults reproduce the study's set-up).

    Attributes
    ----------
    z_obs : float
        Redshift at which every view is observed unless the population uses survey
        redshifts (see module docstring for why 0.2).
    exposure_ks : float
        Exposure time in ks (100 ks, as in Ntampaka et al. 2019).
    fov_arcmin : float
        Side of the square field in arcmin (ACIS-I: 2048 pixels of 0.492 arcsec).
    npix : int
        Image pixels per side (2048 ACIS pixels binned 16 x 16 -> 128).
    band_kev : tuple of float
        Observed-frame energy band of the image, keV.
    nH_1e22 : float
        Galactic hydrogen column (``wabs``) in 1e22 cm^-2.
    """

    z_obs: float = 0.2
    exposure_ks: float = 100.0
    fov_arcmin: float = 16.9
    npix: int = 128
    band_kev: tuple = (0.5, 7.0)
    nH_1e22: float = 0.02

    def __post_init__(self):
        problems = []
        if not 0.0 < self.z_obs < 5.0:
            problems.append(f"z_obs = {self.z_obs} must be in (0, 5)")
        if self.exposure_ks <= 0:
            problems.append(f"exposure_ks = {self.exposure_ks} must be positive")
        if self.fov_arcmin <= 0:
            problems.append(f"fov_arcmin = {self.fov_arcmin} must be positive")
        if int(self.npix) != self.npix or self.npix < 8:
            problems.append(f"npix = {self.npix} must be an integer >= 8")
        band = tuple(self.band_kev)
        if len(band) != 2 or not 0 < band[0] < band[1]:
            problems.append(f"band_kev = {self.band_kev} must be (low, high) with 0 < low < high")
        if self.nH_1e22 < 0:
            problems.append(f"nH_1e22 = {self.nH_1e22} must be >= 0")
        if problems:
            raise ClusterMassError("Invalid observation settings: " + "; ".join(problems) + ".")
        object.__setattr__(self, "band_kev", tuple(float(b) for b in band))

    @property
    def pixel_arcsec(self) -> float:
        """Side of one image pixel in arcsec (7.921875 arcsec by default)."""
        return self.fov_arcmin * 60.0 / self.npix

    def pixel_kpc(self, z=None) -> float:
        """Side of one image pixel in physical kpc at redshift ``z`` (default ``z_obs``)."""
        z = self.z_obs if z is None else z
        return float(self.pixel_arcsec * kpc_per_arcsec(z))

    def fov_kpc(self, z=None) -> float:
        """Side of the field in physical kpc at redshift ``z`` (default ``z_obs``)."""
        return self.pixel_kpc(z) * self.npix

    def half_field_kpc(self, z=None) -> float:
        """Half the side of the field in kpc: the largest radius fully inside the image."""
        return 0.5 * self.fov_kpc(z)
