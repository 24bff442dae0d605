"""The layout checker accepts a valid dataset and names each kind of damage."""
from __future__ import annotations

import json
import re

import h5py
import pandas as pd
import pytest

from benchmark.core.errors import ClusterMassError, DatasetError
from benchmark.dataset.checker import check_dataset
from benchmark.dataset.layout import CATALOG_COLUMNS


def test_accepts_the_fake_dataset(fake_dataset_root):
    assert check_dataset(fake_dataset_root).endswith("180 images in 30 files pass the layout check")


def _catalog(root):
    return pd.read_csv(root / "catalog.csv")


def _write_catalog(root, cat):
    cat.to_csv(root / "catalog.csv", index=False)


def _edit_card(root, **changes):
    card = json.loads((root / "dataset_card.json").read_text())
    card.update(changes)
    (root / "dataset_card.json").write_text(json.dumps(card))


def _remove_catalog(root):
    (root / "catalog.csv").unlink()


def _drop_card_field(root):
    card = json.loads((root / "dataset_card.json").read_text())
    del card["n_images"]
    (root / "dataset_card.json").write_text(json.dumps(card))


def _swap_columns(root):
    cat = _catalog(root)
    _write_catalog(root, cat[[CATALOG_COLUMNS[1], CATALOG_COLUMNS[0], *CATALOG_COLUMNS[2:]]])


def _drop_column(root):
    _write_catalog(root, _catalog(root).drop(columns=["t500_kev"]))


def _change_splits(root):
    with open(root / "splits.json", "a") as fh:
        fh.write(" ")


def _duplicate_id(root):
    cat = _catalog(root)
    cat.loc[1, "image_id"] = cat.loc[0, "image_id"]
    _write_catalog(root, cat)


def _wrong_fold(root):
    cat = _catalog(root)
    cat.loc[3, "fold"] = (cat.loc[3, "fold"] + 1) % 10
    _write_catalog(root, cat)


def _wrong_counts(root):
    cat = _catalog(root)
    cat.loc[4, "counts"] += 1
    _write_catalog(root, cat)


def _remove_image(root):
    (root / "images" / "cluster_0002.h5").unlink()


def _incomplete_image(root):
    with h5py.File(root / "images" / "cluster_0003.h5", "a") as fh:
        fh.attrs["complete"] = 0


def _missing_attribute(root):
    with h5py.File(root / "images" / "cluster_0004.h5", "a") as fh:
        del fh.attrs["fingerprint"]


def _negative_counts(root):
    with h5py.File(root / "images" / "cluster_0005.h5", "a") as fh:
        fh["counts"][0, 0, 0] = -1


def _float_counts(root):
    with h5py.File(root / "images" / "cluster_0006.h5", "a") as fh:
        data = fh["counts"][:]
        del fh["counts"]
        fh.create_dataset("counts", data=data.astype("float32")).attrs["units"] = "count"


def _add_sources(root, **changes):
    """A valid /sources table in cluster_0007 (two views), then ``changes`` to its fields."""
    from benchmark.dataset.sources import sources_array

    rows = sources_array([
        {"view_index": 0, "kind": "point", "x_pix": 10.2, "y_pix": 90.7, "expected_counts": 25.0,
         "flux_cgs": 1.2e-15, "redshift": float("nan")},
        {"view_index": 1, "kind": "halo", "x_pix": 100.0, "y_pix": 3.5, "expected_counts": 80.0,
         "flux_cgs": 4e-15, "redshift": 0.7},
    ])
    for name, value in changes.items():
        rows[name][-1] = value
    with h5py.File(root / "images" / "cluster_0007.h5", "a") as fh:
        fh.create_dataset("sources", data=rows)


def _sources_without_field(root):
    import numpy as np

    with h5py.File(root / "images" / "cluster_0008.h5", "a") as fh:
        fh.create_dataset("sources", data=np.zeros(2, dtype=[("view_index", "<i4"), ("kind", "u1")]))


DAMAGE = {
    "source view": (lambda root: _add_sources(root, view_index=9), "cluster_0007.h5: /sources names views outside"),
    "source kind": (lambda root: _add_sources(root, kind=7), "/sources has kinds other than [1, 2]"),
    "source position": (lambda root: _add_sources(root, y_pix=-3.0), "/sources y_pix outside the image"),
    "source counts": (lambda root: _add_sources(root, expected_counts=-1.0), "/sources expected_counts negative"),
    "halo redshift": (lambda root: _add_sources(root, redshift=float("nan")), "halo without a positive redshift"),
    "source fields": (_sources_without_field, "cluster_0008.h5: /sources lacks fields ['x_pix'"),
    "missing catalog": (_remove_catalog, "catalog.csv is missing"),
    "card field": (_drop_card_field, "field n_images is missing"),
    "card count": (lambda root: _edit_card(root, n_images=7), "card says n_images=7 but catalog has 180 rows"),
    "column order": (_swap_columns, "columns are not in the documented order"),
    "missing column": (_drop_column, "catalog.csv lacks columns ['t500_kev']"),
    "splits changed": (_change_splits, "splits.json does not match splits_sha256"),
    "duplicate id": (_duplicate_id, "duplicate image_id in catalog.csv"),
    "fold": (_wrong_fold, "1 catalog rows disagree with splits.json on the fold"),
    "counts sum": (_wrong_counts, "catalog counts differ from the image sum"),
    "missing image": (_remove_image, "images/cluster_0002.h5 is missing"),
    "incomplete image": (_incomplete_image, "images/cluster_0003.h5: wrong layout_version or not complete"),
    "attribute": (_missing_attribute, "images/cluster_0004.h5: missing attributes ['fingerprint']"),
    "negative": (_negative_counts, "images/cluster_0005.h5: negative counts"),
    "dtype": (_float_counts, "images/cluster_0006.h5: counts has float32"),
}


@pytest.mark.parametrize("kind", DAMAGE)
def test_refuses_each_kind_of_damage(fake_dataset_copy, kind):
    damage, message = DAMAGE[kind]
    damage(fake_dataset_copy)
    with pytest.raises(ClusterMassError, match=re.escape(message)):
        check_dataset(fake_dataset_copy)


def test_a_broken_card_is_a_dataset_error(fake_dataset_copy):
    _drop_card_field(fake_dataset_copy)
    with pytest.raises(DatasetError, match=r"(?s)not a complete dataset card.*make data"):
        check_dataset(fake_dataset_copy)


def test_accepts_a_valid_source_list_and_reads_it(fake_dataset_copy):
    from benchmark.dataset.sources import read_sources

    assert read_sources(fake_dataset_copy).empty  # no sky: an empty table with the columns
    _add_sources(fake_dataset_copy)
    check_dataset(fake_dataset_copy)
    table = read_sources(fake_dataset_copy)
    assert list(table["kind"]) == ["point", "halo"]
    assert list(table["image_id"]) == [f"c0007_e{e}_{p}" for e, p in ((0, "x"), (0, "y"))]
    assert table["redshift"].isna().tolist() == [True, False]
