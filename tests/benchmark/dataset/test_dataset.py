"""Loader tests, torchvision style: fake data written in tmp_path, loader checked from outside."""

from __future__ import annotations

import json
import os

import h5py
import numpy as np
import pandas as pd
import pytest

from benchmark.dataset.layout import CATALOG_COLUMNS
from benchmark.dataset.loader import ClusterMassDataset
from fakes import write_fake_dataset
from benchmark.core.errors import ClusterMassError, DatasetError, SplitsError
from benchmark.dataset.splits import check_no_leak, sha256_bytes


def test_layout_on_disk(fake_dataset_root):
    root = fake_dataset_root
    card = json.loads((root / "dataset_card.json").read_text())
    for key in ("name", "version", "source", "renderer", "preset", "config", "master_seed",
                "n_clusters", "n_images", "image", "checksums", "splits_sha256", "packages",
                "references"):
        assert key in card
    assert card["splits_sha256"] == sha256_bytes((root / "splits.json").read_bytes())
    cat = pd.read_csv(root / "catalog.csv")
    assert tuple(cat.columns) == CATALOG_COLUMNS
    assert len(cat) == card["n_images"] == 30 * 2 * 3
    with h5py.File(root / "images" / "cluster_0001.h5", "r") as fh:
        ds = fh["counts"]
        assert ds.dtype == np.int32 and ds.shape == (6, 128, 128)
        assert ds.chunks == (1, 128, 128) and ds.compression == "gzip" and ds.shuffle
        assert ds.attrs["units"] == "count"
        assert [s.decode() for s in fh["image_id"][:]] == [
            "c0001_e0_x", "c0001_e0_y", "c0001_e0_z", "c0001_e1_x", "c0001_e1_y", "c0001_e1_z"]
        for attr in ("cluster_id", "pixel_arcsec", "band_kev", "exposure_ks", "renderer",
                     "source"):
            assert attr in fh.attrs


def test_open_and_read(fake_dataset):
    ds = fake_dataset
    assert len(ds) == 180 and ds.version == "0.0.0-fake"
    ids = ["c0007_e1_z", "c0002_e0_x", "c0007_e0_y"]
    imgs = ds.images(ids)
    assert imgs.shape == (3, 128, 128) and imgs.dtype == np.int32
    cat = ds.catalog.set_index("image_id")
    assert imgs.sum(axis=(1, 2)).tolist() == cat.loc[ids, "counts"].tolist()
    # Same image read alone or in a batch.
    np.testing.assert_array_equal(ds.images(["c0002_e0_x"])[0], imgs[1])
    img, row = ds[5]
    assert row["image_id"] == ds.catalog["image_id"].iloc[5] and img.sum() == row["counts"]
    with pytest.raises(ClusterMassError, match="unknown image id"):
        ds.images(["nope"])


def test_counts_scale_with_mass(fake_dataset):
    cat = fake_dataset.catalog
    src = np.log10(cat["counts"] - cat["background_counts"])
    slope = np.polyfit(cat["log10_m500c"], src, 1)[0]
    assert 1.2 < slope < 1.8


def test_fold_indices_grouped(fake_dataset):
    ds = fake_dataset
    all_test = []
    for k in range(10):
        parts = ds.fold_indices(k)
        check_no_leak(ds.catalog, parts)
        assert sum(len(v) for v in parts.values()) == len(ds)
        assert (ds.catalog["fold"].to_numpy()[parts["test"]] == k).all()
        assert (ds.catalog["fold"].to_numpy()[parts["val"]] == (k + 1) % 10).all()
        all_test.append(parts["test"])
    assert sorted(np.concatenate(all_test).tolist()) == list(range(len(ds)))
    aux = ds.aux(ds.fold_indices(0)["test"])
    assert list(aux.columns) == ["image_id", "redshift", "pixel_arcsec"]


def test_deterministic(tmp_path):
    a = write_fake_dataset(tmp_path / "a", n_clusters=10, n_epochs=1, seed=3)
    b = write_fake_dataset(tmp_path / "b", n_clusters=10, n_epochs=1, seed=3)
    assert (a / "catalog.csv").read_bytes() == (b / "catalog.csv").read_bytes()
    assert (a / "splits.json").read_bytes() == (b / "splits.json").read_bytes()


def test_missing_directory_and_card(tmp_path):
    with pytest.raises(DatasetError, match="make data"):
        ClusterMassDataset(tmp_path / "absent")
    with pytest.raises(DatasetError, match="dataset_card.json"):
        ClusterMassDataset(tmp_path)


def test_splits_checksum_mismatch(fake_dataset_copy):
    path = fake_dataset_copy / "splits.json"
    path.write_bytes(path.read_bytes().replace(b'"seed": 0', b'"seed": 1'))
    with pytest.raises(SplitsError, match="sha256"):
        ClusterMassDataset(fake_dataset_copy)


def test_annex_content_not_fetched(fake_dataset_copy):
    # What a DataLad clone looks like before `datalad get`: a dangling symlink into the annex.
    f = fake_dataset_copy / "images" / "cluster_0003.h5"
    f.unlink()
    os.symlink("../.git/annex/objects/Xx/Yy/SHA256E-s1--abc.h5/SHA256E-s1--abc.h5", f)
    with pytest.raises(DatasetError, match=r"content not fetched.*datalad get") as info:
        ClusterMassDataset(fake_dataset_copy)
    assert "cluster_0003.h5" in str(info.value)


def test_unlocked_annex_pointer(fake_dataset_copy):
    f = fake_dataset_copy / "images" / "cluster_0004.h5"
    f.write_text("/annex/objects/SHA256E-s123--abcdef.h5\n")
    with pytest.raises(DatasetError, match="content not fetched"):
        ClusterMassDataset(fake_dataset_copy)


def test_missing_and_corrupt_files_listed_together(fake_dataset_copy):
    (fake_dataset_copy / "images" / "cluster_0001.h5").unlink()
    (fake_dataset_copy / "images" / "cluster_0002.h5").write_bytes(b"garbage" * 10)
    with pytest.raises(DatasetError) as info:
        ClusterMassDataset(fake_dataset_copy)
    msg = str(info.value)
    assert "cluster_0001.h5: missing" in msg and "cluster_0002.h5: not an HDF5 file" in msg


def test_catalog_problems(fake_dataset_copy):
    root = fake_dataset_copy
    card = json.loads((root / "dataset_card.json").read_text())
    card["checksums"].pop("catalog_csv")
    (root / "dataset_card.json").write_text(json.dumps(card))
    cat = pd.read_csv(root / "catalog.csv")
    cat.drop(columns=["t500_kev"]).to_csv(root / "catalog.csv", index=False)
    with pytest.raises(DatasetError, match="t500_kev"):
        ClusterMassDataset(root)
    cat.loc[2, "fold"] = (cat.loc[2, "fold"] + 1) % 10
    cat.to_csv(root / "catalog.csv", index=False)
    with pytest.raises(ClusterMassError, match="disagrees"):
        ClusterMassDataset(root)


def test_catalog_checksum(fake_dataset_copy):
    with open(fake_dataset_copy / "catalog.csv", "a") as fh:
        fh.write("\n")
    with pytest.raises(DatasetError, match="modified"):
        ClusterMassDataset(fake_dataset_copy)


def test_images_any_order_and_repeats(fake_dataset):
    ds = fake_dataset
    every = ds.images()
    assert every.shape == (len(ds), 128, 128)
    ids = ["c0003_e1_z", "c0003_e0_x", "c0010_e0_y", "c0003_e1_z"]
    got = ds.images(ids)
    rows = ds.rows(ids)
    np.testing.assert_array_equal(got, every[rows])
    np.testing.assert_array_equal(ds.images(indices=rows[::-1]), every[rows[::-1]])
    assert ds.images([]).shape == (0, 128, 128)


def test_as_dataset_names_what_a_wrong_argument_lacks():
    from benchmark.core.errors import ClusterMassError
    from benchmark.dataset.loader import as_dataset

    with pytest.raises(ClusterMassError, match="got dict .*lacks root, catalog, card, images"):
        as_dataset({"catalog": None})
