"""From projected events to a counts image: the fast detector step and SOXS's."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmark.core.cosmology import KEV_TO_ERG
from pipeline.chain.responses import Responses
from pipeline.chain.settings import ChainObservation

__all__ = ["fast_detector", "soxs_detector", "fast_detect_photons", "pixel_to_sky"]


def _sky_to_pixel(ra_deg, dec_deg, obs: ChainObservation):
    """Gnomonic (TAN) projection about the field centre, to 0-based pixel coordinates."""
    ra0, dec0 = np.deg2rad(obs.sky_center_deg[0]), np.deg2rad(obs.sky_center_deg[1])
    ra, dec = np.deg2rad(ra_deg), np.deg2rad(dec_deg)
    cosc = np.sin(dec0) * np.sin(dec) + np.cos(dec0) * np.cos(dec) * np.cos(ra - ra0)
    xi = np.cos(dec) * np.sin(ra - ra0) / cosc
    eta = (np.cos(dec0) * np.sin(dec) - np.sin(dec0) * np.cos(dec) * np.cos(ra - ra0)) / cosc
    scale = np.rad2deg(1.0) * 3600.0 / obs.pixel_arcsec  # pixels per radian
    c = 0.5 * (obs.npix - 1)
    # RA increases to the left (east), as in a sky image.
    return c - xi * scale, c + eta * scale


def pixel_to_sky(x_pix, y_pix, obs: ChainObservation):
    """Inverse of the gnomonic projection of :func:`_sky_to_pixel`: pixels -> (RA, Dec) deg."""
    ra0, dec0 = np.deg2rad(obs.sky_center_deg[0]), np.deg2rad(obs.sky_center_deg[1])
    scale = np.rad2deg(1.0) * 3600.0 / obs.pixel_arcsec
    c = 0.5 * (obs.npix - 1)
    xi = (c - np.asarray(x_pix, dtype=float)) / scale
    eta = (np.asarray(y_pix, dtype=float) - c) / scale
    rho = np.hypot(xi, eta)
    cc = np.arctan(rho)
    with np.errstate(invalid="ignore", divide="ignore"):
        dec = np.arcsin(np.cos(cc) * np.sin(dec0) + np.where(rho > 0, eta * np.sin(cc) * np.cos(dec0) / rho, 0.0))
    ra = ra0 + np.arctan2(xi * np.sin(cc), rho * np.cos(dec0) * np.cos(cc) - eta * np.sin(dec0) * np.sin(cc))
    return np.rad2deg(ra), np.rad2deg(dec)


def fast_detect_photons(x_pix, y_pix, energy_kev, obs: ChainObservation, resp: Responses, area_cm2, prng):
    """The fast detector step for photons already placed on the image (pixel coordinates):
    SOXS's ARF thinning and RMF band probability, the Gaussian PSF, binning (no background)."""
    u = prng.uniform(size=energy_kev.size)
    keep = u < resp.band_probability(energy_kev) * (resp.max_area / area_cm2)
    x, y = np.array(x_pix[keep], dtype=float), np.array(y_pix[keep], dtype=float)
    sigma_pix = resp.psf_fwhm_arcsec / 2.3548 / obs.pixel_arcsec
    if sigma_pix > 0:
        x += prng.normal(scale=sigma_pix, size=x.size)
        y += prng.normal(scale=sigma_pix, size=y.size)
    return _bin_image(x, y, obs.npix)


def _bin_image(x, y, npix):
    """Counts per pixel; pixel i spans [i-0.5, i+0.5) in 0-based pixel coordinates."""
    ix = np.floor(x + 0.5).astype(np.int64)
    iy = np.floor(y + 0.5).astype(np.int64)
    ok = (ix >= 0) & (ix < npix) & (iy >= 0) & (iy < npix)
    return np.bincount(iy[ok] * npix + ix[ok], minlength=npix * npix).reshape(npix, npix).astype(np.int32)


def fast_detector(events, obs: ChainObservation, resp: Responses, area_cm2, prng):
    """ARF thinning, RMF band redistribution, Gaussian PSF, binning; then background."""
    energy = events["eobs"]
    # SOXS keeps a photon with probability ARF(E)/A_max after drawing N ~ Poisson(sum ARF/area):
    # the same in distribution as keeping each with ARF(E)/area (Poisson thinning).
    u = prng.uniform(size=energy.size)
    keep = u < resp.band_probability(energy) * (resp.max_area / area_cm2)
    x, y = _sky_to_pixel(events["xsky"][keep], events["ysky"][keep], obs)
    sigma_pix = resp.psf_fwhm_arcsec / 2.3548 / obs.pixel_arcsec
    if sigma_pix > 0:
        x += prng.normal(scale=sigma_pix, size=x.size)
        y += prng.normal(scale=sigma_pix, size=y.size)
    src = _bin_image(x, y, obs.npix)
    bkg_expected = resp.bkg_rate_per_arcmin2 * obs.exposure_ks * 1e3 * obs.fov_arcmin**2
    bkg = prng.poisson(bkg_expected / obs.npix**2, size=(obs.npix, obs.npix)).astype(np.int32)
    return src + bkg, int(src.sum()), float(bkg_expected)


def soxs_detector(events, obs: ChainObservation, instrument: str, resp: Responses, area_cm2, seed, workdir,
                  sky_events=None):
    """SOXS instrument_simulator (reference path); returns the 0.5-7 keV image.

    ``sky_events`` (``xsky``, ``ysky``, ``eobs`` like ``events``): the view's sky photons
    (:mod:`pipeline.sky`), a second SOXS source through the same simulator."""
    import soxs
    from astropy.io import fits

    def flux(ev):
        return float(np.sum(ev["eobs"]) * KEV_TO_ERG / (obs.exposure_ks * 1e3) / area_cm2)

    parts = [("cluster", events)] + ([("sky", sky_events)] if sky_events is not None and sky_events["eobs"].size else [])
    src = {
        "ra": [ev["xsky"] for _, ev in parts],
        "dec": [ev["ysky"] for _, ev in parts],
        "energy": [ev["eobs"] for _, ev in parts],
        "flux": [flux(ev) for _, ev in parts],
        "src_names": [name for name, _ in parts],
    }
    out = Path(workdir) / f"soxs_evt_{seed}.fits"
    soxs.instrument_simulator(
        src,
        str(out),
        (obs.exposure_ks, "ks"),
        instrument,
        list(obs.sky_center_deg),
        overwrite=True,
        instr_bkgnd=True,
        foreground=False,
        ptsrc_bkgnd=False,
        prng=int(seed),
    )
    with fits.open(out) as f:
        d = f["EVENTS"].data
        e_kev = np.asarray(d["ENERGY"], dtype=float) / 1000.0
        ra, dec = _pix_to_world(f["EVENTS"].header, d["X"], d["Y"])
    out.unlink()
    lo, hi = obs.band_kev
    sel = (e_kev >= lo) & (e_kev < hi)
    x, y = _sky_to_pixel(ra[sel], dec[sel], obs)
    img = _bin_image(x, y, obs.npix)
    bkg_expected = resp.bkg_rate_per_arcmin2 * obs.exposure_ks * 1e3 * obs.fov_arcmin**2
    return img, int(img.sum() - bkg_expected), float(bkg_expected)


def _pix_to_world(header, x, y):
    from astropy import wcs

    w = wcs.WCS(naxis=2)
    w.wcs.crval = [header["TCRVL2"], header["TCRVL3"]]
    w.wcs.crpix = [header["TCRPX2"], header["TCRPX3"]]
    w.wcs.cdelt = [header["TCDLT2"], header["TCDLT3"]]
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    return w.wcs_pix2world(np.asarray(x), np.asarray(y), 1)
