"""The names of the dataset contract: file names, catalog columns, file attributes.

``HDF5_SPEC.md`` beside this module describes them in prose; the checker, the loader and the
generator all take them from here.
"""
from __future__ import annotations

__all__ = ["LAYOUT_VERSION", "CARD_NAME", "CATALOG_NAME", "SPLITS_NAME", "IMAGES_DIR", "NPIX",
           "CATALOG_COLUMNS", "INT_COLUMNS", "FILE_ATTRS", "SOURCES_DATASET", "SOURCE_FIELDS",
           "SOURCE_KINDS", "SOURCE_COLUMNS"]

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

#: Dataset of the true sky sources in a cluster file (population version 2 with a sky switch
#: on; absent from version-1 files, whose bytes it must not change).
SOURCES_DATASET = "sources"
#: Its compound fields, in order, with their NumPy types: the row of ``/counts`` the source
#: lies in, its kind (a :data:`SOURCE_KINDS` code), its position in 0-based pixel coordinates
#: (``x_pix`` the column, ``y_pix`` the row of the stored image), expected counts in the
#: image band, its 0.5-2 keV flux (erg s^-1 cm^-2, observer frame, before Galactic absorption)
#: and redshift (NaN for point sources, whose redshift is not drawn).
SOURCE_FIELDS = (
    ("view_index", "<i4"), ("kind", "u1"), ("x_pix", "<f8"), ("y_pix", "<f8"),
    ("expected_counts", "<f8"), ("flux_cgs", "<f8"), ("redshift", "<f8"),
)
#: Source kinds: the code stored in ``kind`` -> the name :func:`read_sources` returns.
SOURCE_KINDS = {1: "point", 2: "halo"}
#: Columns of the table :func:`benchmark.dataset.sources.read_sources` returns.
SOURCE_COLUMNS = ("view_index", "image_id", "kind", "x_pix", "y_pix", "expected_counts", "flux_cgs",
                  "redshift")
