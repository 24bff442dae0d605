"""The locally registered SOXS ACIS-I: responses, registration, particle background."""

from __future__ import annotations

import numpy as np
import pytest
import soxs

from benchmark.core.errors import ClusterMassError
from pipeline import instrument



@pytest.fixture(scope="module")
def acisi():
    try:
        instrument.responses_dir()
    except ClusterMassError as exc:  # pragma: no cover - only without the shared data
        pytest.skip(str(exc))
    return instrument.register_acisi()


def _shared_sums():
    sums = {}
    path = instrument.responses_dir() / "SHA256SUMS"
    if path.is_file():
        for line in path.read_text().splitlines():
            digest, name = line.split()
            sums[name] = digest
    return sums


def test_registration_is_idempotent_and_uses_project_names(acisi):
    assert acisi == instrument.INSTRUMENT_NAME
    assert instrument.register_acisi() == acisi  # second call: same spec, no error
    spec = soxs.instrument_registry[acisi]
    assert spec["psf"] == ["gaussian", 0.5]
    assert spec["fov"] == pytest.approx(16.9) and spec["num_pixels"] == 2048
    # Names outside SOXS' download registry, present in its data dir.
    from soxs.utils import finley  # noqa: F401  (SOXS' registry of downloadable files)

    for key in ("arf", "rmf"):
        assert spec[key] not in finley._registry
        assert (instrument.soxs_data_dir() / spec[key]).is_file()
    assert spec["bkgnd"][0] not in finley._registry
    with pytest.raises(ClusterMassError, match="already registered"):
        instrument.register_acisi(psf_fwhm_arcsec=1.0)


def test_checksums_match_shared_data(acisi):
    sums = instrument.checksums()
    shared = _shared_sums()
    assert sums["arf"] == instrument.EXPECTED_SHA256["arf"]
    assert sums["rmf"] == instrument.EXPECTED_SHA256["rmf"]
    if shared:
        assert sums["arf"] == shared["acisi_aimpt_cy0.arf"]
    assert len(sums["particle_bkgnd_h5"]) == 64


def test_arf_and_band_response(acisi):
    e_lo, e_hi, area = instrument.load_arf()
    assert area.max() == pytest.approx(629, rel=0.01)
    assert 1.4 < 0.5 * (e_lo + e_hi)[area.argmax()] < 1.7
    r_lo, r_hi, p = instrument.band_response((0.5, 7.0))
    mid = 0.5 * (r_lo + r_hi)
    assert np.all((p >= 0) & (p <= 1 + 1e-9))
    assert np.all(p[(mid > 1.0) & (mid < 6.0)] > 0.97)
    assert np.all(p[mid > 9.0] < 0.05)


def test_missing_responses_error_names_file_and_fix(tmp_path, monkeypatch):
    (tmp_path / "acisi_aimpt_cy0.rmf").write_bytes(b"")
    with pytest.raises(ClusterMassError) as err:
        instrument.responses_dir(tmp_path)
    msg = str(err.value)
    assert msg.startswith("Chandra ACIS-I response file(s) acisi_aimpt_cy0.arf not found")
    assert "CLUSTERMASS_RESPONSES" in msg and "allow_download" in msg
    monkeypatch.setenv("CLUSTERMASS_RESPONSES", str(tmp_path / "nowhere"))
    with pytest.raises(ClusterMassError, match=r"\$CLUSTERMASS_RESPONSES"):
        instrument.register_acisi(name="cm_missing")


def test_particle_background_matches_soxs(acisi, tmp_path):
    from astropy.io import fits

    exposure_ks = 50.0
    per_pixel = instrument.particle_background_counts(exposure_ks, (0.5, 7.0), 128, 16.9)
    expected = per_pixel * 128**2
    out = tmp_path / "bkg.fits"
    soxs.make_background_file(str(out), (exposure_ks, "ks"), acisi, [30.0, 45.0], foreground=False,
                              ptsrc_bkgnd=False, instr_bkgnd=True, overwrite=True, prng=7)
    with fits.open(out) as f:
        energy_kev = f["EVENTS"].data["ENERGY"] / 1000.0
        x = f["EVENTS"].data["X"]
    n = int(np.sum((energy_kev > 0.5) & (energy_kev < 7.0)))
    assert abs(n - expected) < 4 * np.sqrt(expected)
    # uniform over the field: no dither, one gap-free chip
    h, _ = np.histogram(x, bins=8)
    assert h.min() > 0.95 * h.mean()
