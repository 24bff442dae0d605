"""The names of the dataset contract: file names, catalog columns, file attributes.

``HDF5_SPEC.md`` beside this module describes them in prose; the checker, the loader and the
generator all take them from here.
"""
from __future__ import annotations

__all__ = ["LAYOUT_VERSION", "CARD_NAME", "CATALOG_NAME", "SPLITS_NAME", "IMAGES_DIR", "NPIX",
           "CATALOG_COLUMNS", "INT_COLUMNS", "FILE_ATTRS"]

LAYOUT_VERSION = 1
CARD_NAME = "dataset_card.json"
CATALOG_NAME = "catalog.csv"
SPLITS_NAME = "splits.json"
IMAGES_DIR = "images"
NPIX = 128

#: Catalog columns, in their on-disk order.
CATALOG_COLUMNS = (
    "image_id", "cluster_id", "epoch", "projection", "file", "index", "redshift", "log10_m500c",
    "r500c_kpc", "r500c_arcmin", "t500_kev", "gas_fraction", "cool_core", "merger",
    "lx_total_erg_s", "lx_cex_erg_s", "counts", "background_counts", "seed", "fold",
)
#: Catalog columns stored as integers.
INT_COLUMNS = ("cluster_id", "epoch", "index", "cool_core", "merger", "seed", "fold")
#: Attributes every cluster file carries.
FILE_ATTRS = (
    "layout_version", "cluster_id", "source", "renderer", "npix", "pixel_arcsec", "fov_arcmin",
    "band_kev", "exposure_ks", "fingerprint", "complete",
)
