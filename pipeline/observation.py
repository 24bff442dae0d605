"""The observation set-up shared by every mock image.

The cosmology (distances, R500c) is :mod:`benchmark.core.cosmology`'s. Angles are in
arcsec / arcmin and lengths in physical kpc, as each name says.

Why z_obs = 0.2 by default
--------------------------
The image covers the ACIS-I field (16.9 arcmin square).  The most massive cluster the
population allows (log10 M500c = 15.2) has R500c = 1693 kpc at z = 0.2, while the half-width
of the field there is 1726 kpc (3.405 kpc/arcsec): R500c fits inside the inscribed circle
(R500c / half-width = 0.98).  At z = 0.15 the ratio is 1.26 (R500c would leave the field),
at z = 0.25 it is 0.81 (clusters would be smaller on the detector than needed).
``tests/pipeline/test_observation.py`` checks these numbers.
"""
from __future__ import annotations

import dataclasses

from benchmark.core.cosmology import kpc_per_arcsec
from benchmark.core.errors import ClusterMassError

__all__ = ["Observation"]


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
