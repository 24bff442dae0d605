"""Images as FITS files that DS9, astropy and CIAO-style tools open as sky images.

:func:`export_fits` writes one FITS file per image (``<image_id>.fits``): the counts as an
int32 primary array with a celestial WCS (gnomonic ``TAN`` projection, the dataset's pixel
scale, the reference pixel at the cluster centre), the observation (``EXPOSURE``, band,
``TELESCOP``/``INSTRUME``) and the truth columns of the catalog as header cards.

The mocks have no position on the sky, so every image is placed at one nominal pointing
(:data:`NOMINAL_POINTING_DEG`; the header card ``NOMPOINT`` says so).
The files carry no date, so the same dataset gives byte-identical files.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from benchmark.core.errors import DatasetError
from benchmark.core.io import atomic_path

__all__ = ["NOMINAL_POINTING_DEG", "TRUTH_CARDS", "image_hdu", "export_fits"]

logger = logging.getLogger(__name__)

#: (RA, Dec) in degrees (ICRS) of the image centres: arbitrary, far from the Galactic plane.
NOMINAL_POINTING_DEG = (180.0, 30.0)

#: Catalog column -> (FITS keyword, comment). Keywords fit FITS' eight characters.
TRUTH_CARDS = {
    "cluster_id": ("CLUSTER", "cluster id in the dataset"),
    "epoch": ("EPOCH", "epoch (0 = latest, most massive)"),
    "projection": ("PROJECT", "projection axis"),
    "redshift": ("REDSHIFT", "observed redshift"),
    "log10_m500c": ("LM500C", "[log10 Msun] true M500c (the target)"),
    "r500c_kpc": ("R500KPC", "[kpc] true R500c"),
    "r500c_arcmin": ("R500AMIN", "[arcmin] true R500c on the sky"),
    "t500_kev": ("T500KEV", "[keV] temperature"),
    "gas_fraction": ("FGAS", "gas mass fraction within R500c"),
    "cool_core": ("COOLCORE", "1 if a cool core"),
    "merger": ("MERGER", "1 if merging"),
    "lx_total_erg_s": ("LXTOT", "[erg/s] 0.5-2 keV rest frame, total"),
    "lx_cex_erg_s": ("LXCEX", "[erg/s] 0.5-2 keV rest frame, 0.15-1 R500c"),
    "background_counts": ("BKGCNTS", "[count] expected background counts"),
}


def _plain(value):
    # FITS cards take Python scalars, not NumPy ones.
    return value.item() if isinstance(value, np.generic) else value


def image_hdu(counts: np.ndarray, row: dict, card: dict):
    """The primary HDU of one image: counts, celestial WCS, observation and truth cards.

    Parameters
    ----------
    counts : ndarray of int, shape (npix, npix)
        The image, as :meth:`ClusterMassDataset.images` returns it (row = y, column = x).
    row : dict
        Its catalog row.
    card : dict
        The dataset card (its ``image`` section gives the pixel scale, band and exposure).

    Returns
    -------
    astropy.io.fits.PrimaryHDU
    """
    from astropy.io import fits
    from astropy.wcs import WCS

    image = card["image"]
    npix = int(image["npix"])
    if counts.shape != (npix, npix):
        raise DatasetError(f"image {row['image_id']} has shape {counts.shape}, expected "
                           f"({npix}, {npix}) from the dataset card")
    wcs = WCS(naxis=2)
    # FITS pixels are 1-based: the centre of an npix-wide image is (npix + 1) / 2.
    wcs.wcs.crpix = [(npix + 1) / 2.0, (npix + 1) / 2.0]
    scale_deg = float(image["pixel_arcsec"]) / 3600.0
    wcs.wcs.cdelt = [-scale_deg, scale_deg]  # RA grows to the east (left)
    wcs.wcs.crval = list(NOMINAL_POINTING_DEG)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.cunit = ["deg", "deg"]
    wcs.wcs.radesys = "ICRS"
    header = wcs.to_header()
    low, high = (float(b) for b in image["band_kev"])
    header["BUNIT"] = ("count", "photon counts per pixel")
    header["EXPOSURE"] = (float(image["exposure_ks"]) * 1e3, "[s] exposure time")
    header["TELESCOP"] = ("CHANDRA", "mock observation")
    header["INSTRUME"] = ("ACIS", "ACIS-I responses")
    header["E_MIN"] = (low, "[keV] lower edge of the band")
    header["E_MAX"] = (high, "[keV] upper edge of the band")
    header["OBJECT"] = (str(row["image_id"]), "image id in the dataset")
    header["ORIGIN"] = ("clustermass", "mock galaxy-cluster X-ray images")
    header["DATASET"] = (f"{card.get('name', '')} {card.get('version', '')}".strip(),
                         "dataset name and version")
    header["SOURCE"] = (str(card.get("source", "")), "cluster source (synthetic or tng)")
    header["RENDERER"] = (str(card.get("renderer", "")), "image renderer")
    header["NOMPOINT"] = (True, "the sky position is nominal, not the cluster's")
    for column, (key, comment) in TRUTH_CARDS.items():
        if column in row:
            header[key] = (_plain(row[column]), comment)
    return fits.PrimaryHDU(data=np.asarray(counts, dtype=np.int32), header=header)


def _selected_rows(dataset, image_ids, cluster_id) -> np.ndarray:
    if (image_ids is None) == (cluster_id is None):
        raise DatasetError("export-fits needs either image ids or a cluster id (not both): "
                           "e.g. --id c0001_e0_x or --cluster 1")
    if image_ids is not None:
        return dataset.rows(list(image_ids))
    rows = np.flatnonzero(dataset.catalog["cluster_id"].to_numpy() == int(cluster_id))
    if not len(rows):
        raise DatasetError(f"no cluster {cluster_id} in {dataset.root}: the catalog's "
                           "cluster_id column lists the clusters")
    return rows


def export_fits(dataset, out_dir, image_ids=None, cluster_id=None) -> list[Path]:
    """Write the chosen images as ``<out_dir>/<image_id>.fits``; return their paths.

    Parameters
    ----------
    dataset : ClusterMassDataset
    out_dir : path-like
        Created when missing; existing files of the same names are replaced atomically.
    image_ids : sequence of str, optional
        The images to write.
    cluster_id : int, optional
        Instead: every image of this cluster.

    Raises
    ------
    DatasetError
        Neither or both selections given, an unknown id, or an unknown cluster.
    """
    rows = _selected_rows(dataset, image_ids, cluster_id)
    images = dataset.images(indices=rows)
    out_dir = Path(out_dir)
    paths = []
    for counts, pos in zip(images, rows):
        row = dataset.catalog.iloc[int(pos)].to_dict()
        path = out_dir / f"{row['image_id']}.fits"
        with atomic_path(path) as tmp:
            image_hdu(counts, row, dataset.card).writeto(tmp, output_verify="exception")
        paths.append(path)
    logger.info("wrote %d FITS image(s) to %s", len(paths), out_dir)
    return paths
