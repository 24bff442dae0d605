"""pyXSIM's source model of the gas, cached per process."""
from __future__ import annotations

from typing import Mapping

import numpy as np

from benchmark.core.cosmology import H, OMEGA_M
from pipeline.chain.libraries import load_pyxsim
from pipeline.chain.settings import ChainSettings
from pipeline.chain.tables import emission_table

__all__ = ["make_source_model", "yt_cosmology"]


_SOURCE_MODELS: dict = {}


_GRID_SOURCE_FIELDS = {
    "temperature_field": ("gas", "temperature"),
    "emission_measure_field": ("gas", "emission_measure"),
    "Zmet": ("gas", "metallicity"),
}


def make_source_model(settings: ChainSettings, seed: int, fields: Mapping | None = None):
    """pyXSIM CIE source model reading the project's APEC-format table.

    Models are cached per process and settings, and their redshifted spectral
    table per redshift: reading and folding the APEC-format FITS table costs
    ~1-2 s, more than the rest of an epoch's photon generation for most
    clusters. Only the random state differs between epochs.
    """
    pyxsim = load_pyxsim()

    root, vers = emission_table(settings)
    fields = dict(fields or _GRID_SOURCE_FIELDS)
    key = (
        tuple(sorted(fields.items())), root, vers, settings.emin_kev, settings.emax_kev,
        settings.n_energy_bins, settings.binscale, settings.thermal_broad,
        settings.kt_min_kev, settings.kt_max_kev,
    )
    model = _SOURCE_MODELS.get(key)
    if model is None:
        model = pyxsim.CIESourceModel(
            "apec",
            settings.emin_kev,
            settings.emax_kev,
            settings.n_energy_bins,
            fields["Zmet"],
            temperature_field=fields["temperature_field"],
            emission_measure_field=fields["emission_measure_field"],
            binscale=settings.binscale,
            kT_min=settings.kt_min_kev,
            kT_max=settings.kt_max_kev,
            thermal_broad=settings.thermal_broad,
            model_root=root,
            model_vers=vers,
        )
        _memoise_prepare_spectrum(model.spectral_model)
        _memoise_table_reads(model.spectral_model.cgen)
        _SOURCE_MODELS[key] = model
    model.prng = np.random.RandomState(int(seed) % 2**32)
    return model


def _memoise_table_reads(cgen):
    """Keep the APEC table rows in memory: astropy parses each temperature's HDU in
    ~30 ms, i.e. seconds per redshift for a 200-temperature table; with the rows cached
    a new redshift (survey-like observations) only re-bins them."""
    original = cgen._preload_data
    rows: dict = {}

    def preload(index):
        if index not in rows:
            line, coco = original(index)
            rows[index] = (
                {k: np.array(v) for k, v in line.items()},
                {k: np.array(v) for k, v in coco.items()},
            )
        return rows[index]

    cgen._preload_data = preload


def _memoise_prepare_spectrum(spectral_model):
    original = spectral_model.prepare_spectrum
    tables: dict = {}
    names = ("cosmic_spec", "metal_spec", "var_spec", "si")

    def prepare_spectrum(zobs):
        key = round(float(zobs), 12)
        if key not in tables:
            original(zobs)
            tables[key] = {n: getattr(spectral_model, n) for n in names}
        for n, v in tables[key].items():
            setattr(spectral_model, n, v)

    spectral_model.prepare_spectrum = prepare_spectrum


def yt_cosmology(settings: ChainSettings):
    """pyXSIM's cosmology: the project's unless the settings override a parameter."""
    from yt.utilities.cosmology import Cosmology

    h, om, ol = H, OMEGA_M, 1.0 - OMEGA_M
    return Cosmology(
        hubble_constant=settings.hubble_constant if settings.hubble_constant is not None else h,
        omega_matter=settings.omega_matter if settings.omega_matter is not None else om,
        omega_lambda=settings.omega_lambda if settings.omega_lambda is not None else ol,
        omega_radiation=0.0,
    )
