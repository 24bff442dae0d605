"""The project's APEC-format emission table: physics, format, SOXS/pyXSIM agreement."""

from __future__ import annotations

import hashlib
import os

import numpy as np
import pytest
import pyxsim
import soxs

from benchmark.core.cosmology import KEV_TO_ERG
from benchmark.core.errors import ClusterMassError
from pipeline import emission

# A few temperatures are enough to exercise the format; the full table is built once
# (cached under $CLUSTERMASS_BUILD/emission) by the tests that compare with SOXS/pyXSIM.
SMALL_KT = [0.8, 1.0, 2.0, 4.0, 6.0, 8.0]


@pytest.fixture(scope="module")
def small_table(tmp_path_factory):
    out = tmp_path_factory.mktemp("apec_small")
    return emission.write_apec_tables(out, version="cmtest", kt_kev=SMALL_KT)


def _sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_gaunt_factor_limits_and_continuity():
    e = np.array([0.3, 1.0, 3.0, 7.0])
    # Hot hydrogen: the Born limit (sqrt 3/pi) e^{u/2} K0(u/2) is approached from above.
    born = emission._gaunt_born(e / 50.0)
    g_hot = emission.gaunt_ff(e, 50.0, 1.0)
    assert np.all(g_hot >= born) and np.all(g_hot / born < 1.03)
    # Continuous across the edge of Hummer's (1988) domain gamma^2 = 1e-3 (H at 13.6 keV).
    kt_edge = emission._RYD_KEV / 1e-3
    lo = emission.gaunt_ff(e, kt_edge * 0.999, 1.0)
    hi = emission.gaunt_ff(e, kt_edge * 1.001, 1.0)
    assert np.allclose(lo, hi, rtol=2e-3)
    # Coulomb (gamma^2) effects raise g for highly charged ions at low temperature.
    assert np.all(emission.gaunt_ff(e, 1.0, 26.0) > emission.gaunt_ff(e, 1.0, 1.0) * 0.9)
    assert np.all(np.isfinite(emission.gaunt_ff(np.array([1e-6, 1e3]), 1.0, 8.0)))


def test_hydrogen_bremsstrahlung_matches_textbook_power():
    # Frequency-integrated free-free power of H: 1.42e-27 sqrt(T) g_B erg cm^3 s^-1 with
    # g_B ~ 1.1-1.5 (Rybicki & Lightman 1979, eq. 5.15b) -> check to ~15%.
    eb = np.logspace(-3, 2.3, 20001)
    em = np.sqrt(eb[1:] * eb[:-1])
    for kt in (2.0, 8.0):
        ff = emission.gaunt_ff(em, kt, 1.0) * emission._ff_kernel(em, kt)
        power = np.sum(ff * np.diff(eb) * em * KEV_TO_ERG)
        expected = 1.42e-27 * np.sqrt(kt * emission._K_PER_KEV) * 1.2
        assert 0.85 < power / expected < 1.3
        # free-bound adds a little for hydrogen at X-ray temperatures, never negative
        total = np.sum(emission._element_continuum(1, em, kt) * np.diff(eb) * em * KEV_TO_ERG)
        assert 1.0 <= total / power < 1.1


def test_metallicity_split_and_fe_k_line():
    eb = np.linspace(0.3, 10.0, 971)
    c, m = emission.spectrum_components(5.0, eb)
    assert np.allclose(emission.spectrum(5.0, 0.0, eb), c)
    assert np.allclose(emission.spectrum(5.0, 1.0, eb) - emission.spectrum(5.0, 0.5, eb), 0.5 * m)
    # Fe XXV K alpha 6.70 keV: equivalent width at solar Fe of the order of 0.5-1.5 keV
    # (e.g. Rothenflug & Arnaud 1985); checked on the summed metal line flux near 6.7 keV.
    emid = 0.5 * (eb[1:] + eb[:-1])
    de = np.diff(eb)
    win = (emid > 6.55) & (emid < 6.85)
    side = ((emid > 6.0) & (emid < 6.5)) | ((emid > 7.1) & (emid < 7.5))
    cont_per_kev = np.mean(((c + m) / de)[side])
    line = np.sum((c + m)[win]) - cont_per_kev * np.sum(de[win])
    assert 0.4 < line / cont_per_kev < 1.6
    # Vectorised call broadcasts temperatures and metallicities.
    out = emission.spectrum([1.0, 5.0], [0.3, 0.3], eb)
    assert out.shape == (2, eb.size - 1) and np.all(out >= 0)


def test_bad_inputs_raise_clear_errors(tmp_path):
    with pytest.raises(ClusterMassError, match="ebins_kev"):
        emission.spectrum(1.0, 0.3, [1.0, 0.5])
    with pytest.raises(ClusterMassError, match="kt_kev"):
        emission.spectrum(-1.0, 0.3, [0.5, 1.0])
    with pytest.raises(ClusterMassError, match="collide"):
        emission.write_apec_tables(tmp_path, version="3.0.9")


def test_tables_are_deterministic_and_reused(small_table, tmp_path):
    again = emission.write_apec_tables(tmp_path, version="cmtest", kt_kev=SMALL_KT)
    assert again["sha256"] == small_table["sha256"]
    for key in ("coco", "line"):
        assert _sha(again["paths"][key]) == again["sha256"][key]
    # A second call reuses the files (no rewrite); a damaged file is rebuilt.
    mtime = os.stat(again["paths"]["coco"]).st_mtime_ns
    assert emission.write_apec_tables(tmp_path, version="cmtest", kt_kev=SMALL_KT) == again
    assert os.stat(again["paths"]["coco"]).st_mtime_ns == mtime
    with open(again["paths"]["line"], "r+b") as fh:
        fh.seek(5000)
        fh.write(b"\0garbage\0")
    fixed = emission.write_apec_tables(tmp_path, version="cmtest", kt_kev=SMALL_KT)
    assert fixed["sha256"] == small_table["sha256"]
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]  # no temp files left


def test_resolve_apec_user_dir(small_table, tmp_path, monkeypatch):
    found = emission.resolve_apec(small_table["root"])
    assert found.version == "cmtest" and found.source == "user"
    assert found.sha256 == small_table["sha256"]
    monkeypatch.setenv("CLUSTERMASS_APEC_DIR", str(tmp_path))
    with pytest.raises(ClusterMassError, match=r"apec_v<VERSION>_coco\.fits.*CLUSTERMASS_APEC_DIR"):
        emission.resolve_apec()


def test_soxs_apec_generator_reads_table_and_agrees(small_table):
    gen = soxs.ApecGenerator(0.3, 9.0, 4350, apec_root=small_table["root"], apec_vers="cmtest")
    for kt, z_met, redshift in ((1.0, 0.3, 0.0), (4.0, 1.0, 0.0), (6.0, 0.3, 0.2), (3.0, 0.5, 0.0)):
        # norm 1e-14 -> EM / (4 pi D_A^2 (1+z)^2) = 1: flux = emissivity / (1+z) per bin
        sp = gen.get_spectrum(kt, z_met, redshift, 1e-14)
        eb = sp.ebins.value
        soxs_bins = sp.flux.value * np.diff(eb)
        mine = emission.spectrum(kt, z_met, eb * (1 + redshift)) / (1 + redshift)
        band = (sp.emid.value > 0.5) & (sp.emid.value < 7.0)
        assert mine[band].sum() == pytest.approx(soxs_bins[band].sum(), rel=0.01)
        coarse = lambda a: a[:4300].reshape(-1, 100).sum(axis=1)  # noqa: E731  0.2 keV bins
        ok = coarse(soxs_bins) > 1e-3 * coarse(soxs_bins).max()
        assert np.allclose(coarse(mine)[ok], coarse(soxs_bins)[ok], rtol=0.02)


def test_soxs_options_nolines_and_var_elem(small_table):
    kw = dict(apec_root=small_table["root"], apec_vers="cmtest")
    plain = soxs.ApecGenerator(0.5, 7.0, 650, **kw).get_spectrum(4.0, 0.3, 0.0, 1e-14)
    eb = plain.ebins.value
    # nolines: continuum only, as spectrum(nolines=True)
    cont = soxs.ApecGenerator(0.5, 7.0, 650, nolines=True, **kw).get_spectrum(4.0, 0.3, 0.0, 1e-14)
    mine = emission.spectrum(4.0, 0.3, eb, nolines=True)
    assert np.allclose(cont.flux.value * np.diff(eb), mine, rtol=1e-3, atol=1e-8 * mine.max())
    assert plain.flux.value.sum() > cont.flux.value.sum()
    # var_elem: Fe as a free element at the same abundance reproduces the plain spectrum
    fe = soxs.ApecGenerator(0.5, 7.0, 650, var_elem=["Fe"], **kw).get_spectrum(
        4.0, 0.3, 0.0, 1e-14, elem_abund={"Fe": 0.3})
    assert np.allclose(fe.flux.value, plain.flux.value, rtol=1e-6)


def test_pyxsim_cie_source_model_loads_table(small_table):
    model = pyxsim.CIESourceModel("apec", 0.5, 7.0, 650, 0.3, model_root=small_table["root"],
                                  model_vers="cmtest", kT_min=0.8, kT_max=8.0)
    sm = model.spectral_model
    sm.prepare_spectrum(0.0)
    eb = sm.ebins
    for kt in (1.0, 2.0, 3.0, 6.0):  # nodes and between nodes (linear interpolation in kT)
        cosmic, metal, _ = sm.si(np.array([kt]))
        px = cosmic[0] + 0.3 * metal[0]
        mine = emission.spectrum(kt, 0.3, eb)
        tol = 1e-3 if kt in SMALL_KT else 0.03  # this test table is coarse in kT
        assert px.sum() == pytest.approx(mine.sum(), rel=tol)


def test_full_table_agrees_with_spectrum_between_nodes():
    # The default table (kT 0.08-64 keV, 201 log steps) keeps SOXS' linear-in-kT
    # interpolation within 1% of the direct evaluation anywhere.
    tables = emission.resolve_apec()
    assert tables.source == "clustermass-approx" and tables.version == emission.TABLE_VERSION
    gen = soxs.ApecGenerator(0.5, 7.0, 1300, apec_root=tables.root, apec_vers=tables.version)
    for kt in (0.93, 2.71, 7.77):
        sp = gen.get_spectrum(kt, 0.3, 0.0, 1e-14)
        soxs_bins = sp.flux.value * np.diff(sp.ebins.value)
        mine = emission.spectrum(kt, 0.3, sp.ebins.value)
        assert mine.sum() == pytest.approx(soxs_bins.sum(), rel=0.01)


def test_band_emissivity_is_the_integrated_spectrum():
    kt = float(emission.kt_grid_kev()[120])  # a table node (~4.6 keV)
    eb = np.linspace(0.5, 2.0, 3001)
    direct = np.sum(emission.spectrum(kt, 0.3, eb) * 0.5 * (eb[1:] + eb[:-1])) * KEV_TO_ERG
    assert emission.band_emissivity(kt, 0.3) == pytest.approx(direct, rel=2e-3)
    lam = emission.band_emissivity(np.array([0.01, 1.0, 1e3]), 0.3)
    assert lam[0] == 0.0 and lam[2] == 0.0 and lam[1] > 0
