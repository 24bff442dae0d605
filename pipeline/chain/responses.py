"""The ARF, RMF band response and particle background of one SOXS instrument."""
from __future__ import annotations

import numpy as np

__all__ = ["Responses"]


class Responses:
    """ARF, RMF band response and particle background of one SOXS instrument (cached)."""

    _cache: dict = {}

    def __init__(self, instrument: str, band_kev):
        import soxs
        from soxs.background.diffuse import read_instr_spectrum
        from soxs.response import AuxiliaryResponseFile, RedistributionMatrixFile
        from soxs.utils import get_data_file

        spec = soxs.instrument_registry[instrument]
        self.spec = spec
        psf = spec.get("psf")
        self.psf_fwhm_arcsec = float(psf[1]) if psf is not None and psf[0] == "gaussian" else 0.0
        # What the fast detector does not model: say so instead of silently differing from SOXS.
        self.fast_incompatible = []
        if psf is not None and psf[0] != "gaussian":
            self.fast_incompatible.append(f"a {psf[0]!r} PSF (only Gaussian is modelled)")
        if spec.get("dither"):
            self.fast_incompatible.append("dither")
        chips = spec.get("chips")
        if chips is not None and len(chips) != 1:
            self.fast_incompatible.append(f"{len(chips)} chips (one gap-free chip is modelled)")
        self.arf = AuxiliaryResponseFile(get_data_file(spec["arf"]))
        rmf = RedistributionMatrixFile(get_data_file(spec["rmf"]))
        self.max_area = float(self.arf.max_area)
        eb = rmf.ebounds_data
        e_lo = np.asarray(eb["E_MIN"], dtype=float)
        e_hi = np.asarray(eb["E_MAX"], dtype=float)
        channels = np.asarray(eb["CHANNEL"], dtype=int)
        # SOXS assigns an event energy uniformly within its channel; an event is in
        # the band when that energy is: the in-band fraction of each channel.
        lo, hi = band_kev
        frac = np.clip((np.minimum(e_hi, hi) - np.maximum(e_lo, lo)) / (e_hi - e_lo), 0.0, 1.0)
        chan_frac = dict(zip(channels, frac))
        # Band response per RMF energy row: sum of the normalised row over band channels.
        n_rows = len(rmf.elo)
        band = np.zeros(n_rows)
        for k in range(n_rows):
            w = np.nan_to_num(np.asarray(rmf.data["MATRIX"][k], dtype="float64"))
            tot = w.sum()
            if tot <= 0:
                continue
            ch = rmf._make_channels(k)
            if len(ch) == 0:
                continue
            band[k] = np.sum(w * np.array([chan_frac.get(c, 0.0) for c in ch])) / tot
        self.rmf_elo = np.asarray(rmf.elo, dtype=float)
        self.rmf_ehi = np.asarray(rmf.ehi, dtype=float)
        self.band_response = band
        # Particle background: count rate per channel per arcmin^2 (SOXS's convention).
        self.bkg_rate_per_arcmin2 = 0.0
        if spec.get("bkgnd") is not None:
            bfile, barea = spec["bkgnd"][0], spec["bkgnd"][1]
            rate = np.asarray(read_instr_spectrum(bfile, barea), dtype=float)
            n = min(rate.size, frac.size)
            self.bkg_rate_per_arcmin2 = float(np.sum(rate[:n] * frac[:n]))

    @classmethod
    def get(cls, instrument: str, band_kev):
        key = (instrument, tuple(band_kev))
        if key not in cls._cache:
            cls._cache[key] = cls(instrument, band_kev)
        return cls._cache[key]

    def band_probability(self, energy_kev):
        """P(detected in band | photon of energy E arrives) = ARF(E)/A_max x RMF band fraction.

        ARF linearly interpolated at bin centres (as SOXS's ``interpolate_area``), the
        RMF row chosen by ``elo <= E < ehi`` (as SOXS's ``scatter_energies``).
        """
        energy_kev = np.asarray(energy_kev, dtype="float64")
        area = np.interp(energy_kev, self.arf.emid, self.arf.eff_area, left=0.0, right=0.0)
        k = np.searchsorted(self.rmf_elo, energy_kev, side="right") - 1
        kc = np.clip(k, 0, len(self.band_response) - 1)
        band = np.where((k >= 0) & (energy_kev < self.rmf_ehi[kc]), self.band_response[kc], 0.0)
        return area * band / self.max_area
