"""FITS export: astropy reads back the counts, the WCS and the truth (benchmark.dataset.fits)."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS
from astropy.wcs.utils import proj_plane_pixel_scales

from benchmark.core.errors import DatasetError
from benchmark.dataset.fits import NOMINAL_POINTING_DEG, export_fits


def test_round_trip_keeps_counts_wcs_and_truth(fake_dataset, tmp_path):
    image_id = fake_dataset.catalog["image_id"].iloc[4]
    (path,) = export_fits(fake_dataset, tmp_path, image_ids=[image_id])
    assert path.name == f"{image_id}.fits"
    with fits.open(path) as hdul:
        data, header = hdul[0].data, hdul[0].header
    np.testing.assert_array_equal(data, fake_dataset.images([image_id])[0])
    assert data.dtype.kind == "i"
    wcs = WCS(header)
    scale_arcsec = proj_plane_pixel_scales(wcs) * 3600
    np.testing.assert_allclose(scale_arcsec, fake_dataset.card["image"]["pixel_arcsec"], rtol=1e-9)
    centre = wcs.pixel_to_world((128 - 1) / 2, (128 - 1) / 2)  # 0-based centre of the image
    assert centre.ra.deg == pytest.approx(NOMINAL_POINTING_DEG[0])
    assert centre.dec.deg == pytest.approx(NOMINAL_POINTING_DEG[1])
    # East is left: one pixel to the right lowers RA.
    assert wcs.pixel_to_world(64.5, 63.5).ra.deg < centre.ra.deg
    row = fake_dataset.catalog.set_index("image_id").loc[image_id]
    assert header["LM500C"] == pytest.approx(row["log10_m500c"])
    assert header["R500AMIN"] == pytest.approx(row["r500c_arcmin"])
    assert header["COOLCORE"] == row["cool_core"]
    assert header["EXPOSURE"] == pytest.approx(1e3 * fake_dataset.card["image"]["exposure_ks"])
    assert (header["BUNIT"], header["TELESCOP"], header["INSTRUME"]) == ("count", "CHANDRA", "ACIS")
    assert (header["E_MIN"], header["E_MAX"]) == (0.5, 7.0)
    assert header["OBJECT"] == image_id


def test_a_cluster_exports_every_view_and_bytes_repeat(fake_dataset, tmp_path):
    paths = export_fits(fake_dataset, tmp_path / "a", cluster_id=3)
    expected = fake_dataset.catalog.loc[fake_dataset.catalog["cluster_id"] == 3, "image_id"]
    assert sorted(p.stem for p in paths) == sorted(expected)
    again = export_fits(fake_dataset, tmp_path / "b", cluster_id=3)
    assert [p.read_bytes() for p in paths] == [p.read_bytes() for p in again]


@pytest.mark.parametrize("kwargs, match", [
    ({}, "either image ids or a cluster id"),
    ({"image_ids": ["c0001_e0_x"], "cluster_id": 1}, "either image ids or a cluster id"),
    ({"image_ids": ["nope"]}, "unknown image id"),
    ({"cluster_id": 9999}, "no cluster 9999"),
])
def test_bad_selection_is_one_clear_error_and_writes_nothing(fake_dataset, tmp_path, kwargs, match):
    with pytest.raises(DatasetError, match=match):
        export_fits(fake_dataset, tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()
