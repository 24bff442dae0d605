"""Croissant metadata (MLCommons, https://mlcommons.org/croissant/1.0) of a dataset version.

``croissant.json`` beside the dataset card lets dataset search engines and loaders that speak
Croissant find and read the dataset: its files with SHA-256 checksums, the catalog as a
record set with typed fields, the folds, and the image files. It is built with
``mlcroissant`` (the reference implementation) and validated by it.

Choices: the data are released under CC BY 4.0 (:data:`DATA_LICENSE`; the code is BSD-3-
Clause); content URLs are relative to the dataset folder, as the dataset travels as a whole
(DataLad clone, archive or copy).
"""
from __future__ import annotations

import logging
from pathlib import Path

from benchmark.core.errors import DatasetError
from benchmark.core.io import write_json
from benchmark.dataset.checker import sha256_file
from benchmark.dataset.layout import (CARD_NAME, CATALOG_COLUMNS, CATALOG_NAME, IMAGES_DIR,
                                      INT_COLUMNS, SPLITS_NAME)

__all__ = ["CROISSANT_NAME", "DATA_LICENSE", "croissant_metadata", "write_croissant",
           "validate_croissant"]

logger = logging.getLogger(__name__)

CROISSANT_NAME = "croissant.json"
DATA_LICENSE = "https://creativecommons.org/licenses/by/4.0/"
_TEXT_COLUMNS = ("image_id", "projection", "file")
_CITATION = ("Ntampaka, ZuHone, Eisenstein, Nagai, Vikhlinin et al. 2019, ApJ 876, 82, "
             "A Deep Learning Approach to Galaxy Cluster X-ray Masses (arXiv:1810.07703)")
_COLUMN_DESCRIPTIONS = {
    "image_id": "image id cNNNN_eE_P: cluster, epoch, projection",
    "log10_m500c": "true M500c in log10 Msun (the target)",
    "redshift": "observed redshift (an allowed model input)",
    "fold": "test fold of the image's cluster (ten-fold splits, grouped by cluster)",
    "file": "HDF5 file of the image, relative to the dataset folder",
    "index": "row of the image in the file's /counts array",
}


def _data_type(column: str):
    import mlcroissant as mlc

    if column in INT_COLUMNS:
        return mlc.DataType.INTEGER
    if column in _TEXT_COLUMNS:
        return mlc.DataType.TEXT
    return mlc.DataType.FLOAT


def _catalog_fields(mlc, record_set: str, columns) -> list:
    return [mlc.Field(id=f"{record_set}/{c}", name=c, data_types=[_data_type(c)],
                      description=_COLUMN_DESCRIPTIONS.get(c),
                      source=mlc.Source(file_object=CATALOG_NAME,
                                        extract=mlc.Extract(column=c)))
            for c in columns]


def _distribution(mlc, root: Path) -> list:
    files = [mlc.FileObject(id=name, name=name, content_url=name, encoding_formats=[fmt],
                            sha256=sha256_file(root / name))
             for name, fmt in ((CATALOG_NAME, "text/csv"), (SPLITS_NAME, "application/json"),
                               (CARD_NAME, "application/json"))]
    images = sorted((root / IMAGES_DIR).glob("cluster_*.h5"))
    if not images:
        raise DatasetError(f"no image files in {root / IMAGES_DIR}: write the Croissant "
                           "metadata after the dataset is complete")
    files += [mlc.FileObject(id=f"{IMAGES_DIR}/{p.name}", name=p.name,
                             content_url=f"{IMAGES_DIR}/{p.name}",
                             encoding_formats=["application/x-hdf5"], sha256=sha256_file(p))
              for p in images]
    files.append(mlc.FileSet(id="image-files", name="image-files",
                             encoding_formats=["application/x-hdf5"],
                             includes=[f"{IMAGES_DIR}/cluster_*.h5"],
                             description="one HDF5 file per cluster: /counts (n_views, 128, 128)"
                                         " int32 photon counts, /image_id"))
    return files


def croissant_metadata(root, card: dict):
    """The :class:`mlcroissant.Metadata` of the dataset in ``root`` (complete, on disk).

    Parameters
    ----------
    root : path-like
        The dataset folder.
    card : dict
        Its dataset card (name, version, source, renderer).
    """
    import mlcroissant as mlc

    root = Path(root)
    image = card.get("image", {})
    description = (
        f"Mock Chandra ACIS-I observations of galaxy clusters ({card.get('n_images')} images of "
        f"{card.get('n_clusters')} clusters, {image.get('npix', 128)}x{image.get('npix', 128)} "
        f"photon counts, {image.get('band_kev')} keV, {image.get('exposure_ks')} ks) for "
        f"estimating M500c. Source: {card.get('source')} clusters; renderer: "
        f"{card.get('renderer')}. Ten fixed folds grouped by cluster (splits.json).")
    record_sets = [
        mlc.RecordSet(id="catalog", name="catalog", key=["catalog/image_id"],
                      description="one row per image: truth, allowed inputs and file location",
                      fields=_catalog_fields(mlc, "catalog", CATALOG_COLUMNS)),
        mlc.RecordSet(id="folds", name="folds",
                      description="the fold of each image (fold k tests, k+1 validates)",
                      fields=_catalog_fields(mlc, "folds", ("image_id", "cluster_id", "fold"))),
        mlc.RecordSet(id="images", name="images",
                      description="the image files; read /counts with h5py at the catalog's "
                                  "file and index",
                      fields=[mlc.Field(id="images/path", name="path",
                                        data_types=[mlc.DataType.TEXT],
                                        source=mlc.Source(file_set="image-files",
                                                          extract=mlc.Extract(
                                                              file_property="filename")))]),
    ]
    return mlc.Metadata(
        name=str(card.get("name", "clustermass")), description=description,
        version=_semver(card.get("version")), license=[DATA_LICENSE], cite_as=_CITATION,
        url="https://arxiv.org/abs/1810.07703", conforms_to=["http://mlcommons.org/croissant/1.0"],
        keywords=["galaxy clusters", "X-ray", "Chandra", "mass estimation", "benchmark"],
        distribution=_distribution(mlc, root), record_sets=record_sets)


def _semver(version) -> str:
    # Croissant wants MAJOR.MINOR.PATCH; the card's version may carry a suffix (0.1.0-quick).
    text = str(version or "0.0.0")
    core = text.split("-")[0].split("+")[0]
    parts = (core.split(".") + ["0", "0", "0"])[:3]
    return ".".join(p if p.isdigit() else "0" for p in parts)


def validate_croissant(path) -> list[str]:
    """Problems mlcroissant finds in a Croissant file (empty when it is valid)."""
    import mlcroissant as mlc

    try:
        dataset = mlc.Dataset(jsonld=str(path))
    except mlc.ValidationError as exc:
        return _errors_of_report(str(exc))
    return sorted(dataset.metadata.ctx.issues.errors)


def _errors_of_report(report: str) -> list[str]:
    # mlcroissant's message lists errors, then warnings, each block under a heading line.
    errors, in_errors = [], False
    for line in report.splitlines():
        if "error(s)" in line or "warning(s)" in line:
            in_errors = "error(s)" in line
        elif in_errors and line.strip().startswith("-"):
            errors.append(line.strip()[1:].strip())
    return errors


def write_croissant(root, card: dict) -> Path:
    """Write ``croissant.json`` in ``root`` atomically after mlcroissant validates it."""
    metadata = croissant_metadata(root, card)
    problems = sorted(metadata.ctx.issues.errors)
    if problems:
        raise DatasetError("the Croissant metadata is invalid: " + "; ".join(problems))
    path = Path(root) / CROISSANT_NAME
    write_json(path, metadata.to_json(), default=str)
    logger.info("wrote %s", path)
    return path
