"""Croissant metadata validates with mlcroissant and reads the catalog back."""

from __future__ import annotations

import json

import mlcroissant as mlc
import pandas as pd
import pytest

from benchmark.core.errors import DatasetError
from benchmark.dataset.croissant import (CROISSANT_NAME, DATA_LICENSE, validate_croissant,
                                         write_croissant)
from benchmark.dataset.layout import CATALOG_COLUMNS
from fakes import write_fake_dataset


@pytest.fixture(scope="module")
def dataset_with_croissant(tmp_path_factory):
    root = write_fake_dataset(tmp_path_factory.mktemp("cr") / "data", n_clusters=10, n_epochs=1,
                              seed=2)
    card = json.loads((root / "dataset_card.json").read_text())
    return root, write_croissant(root, card)


def test_written_file_validates(dataset_with_croissant):
    root, path = dataset_with_croissant
    assert path == root / CROISSANT_NAME
    assert validate_croissant(path) == []
    doc = json.loads(path.read_text())
    assert doc["@type"] == "sc:Dataset" and doc["license"] == DATA_LICENSE
    names = {d["name"] for d in doc["distribution"]}
    assert {"catalog.csv", "splits.json", "dataset_card.json", "image-files"} <= names
    assert sum(n.startswith("cluster_") for n in names) == 10


def test_checksums_are_the_files(dataset_with_croissant):
    import hashlib

    root, path = dataset_with_croissant
    for d in json.loads(path.read_text())["distribution"]:
        if "sha256" in d:
            assert d["sha256"] == hashlib.sha256((root / d["contentUrl"]).read_bytes()).hexdigest()


def test_catalog_records_equal_the_catalog(dataset_with_croissant):
    root, path = dataset_with_croissant
    records = list(mlc.Dataset(jsonld=str(path)).records("catalog"))
    catalog = pd.read_csv(root / "catalog.csv")
    assert len(records) == len(catalog)
    first = {k.split("/")[-1]: v for k, v in records[0].items()}
    assert set(first) == set(CATALOG_COLUMNS)
    assert first["image_id"].decode() == catalog["image_id"].iloc[0]
    assert first["log10_m500c"] == pytest.approx(catalog["log10_m500c"].iloc[0])


def test_a_broken_file_is_reported(dataset_with_croissant, tmp_path):
    _, path = dataset_with_croissant
    doc = json.loads(path.read_text())
    doc["recordSet"][0]["field"][0]["source"]["fileObject"] = {"@id": "nope.csv"}
    bad = path.with_name("broken.json")
    bad.write_text(json.dumps(doc))
    (problem,) = validate_croissant(bad)
    assert "nope.csv" in problem and "doesn't exist" in problem
    doc.pop("@type")
    bad.write_text(json.dumps(doc))
    assert any("schema.org/Dataset" in p for p in validate_croissant(bad))
    bad.unlink()


def test_an_incomplete_dataset_is_refused(tmp_path):
    root = write_fake_dataset(tmp_path / "data", n_clusters=10, n_epochs=1, seed=2)
    for p in (root / "images").glob("*.h5"):
        p.unlink()
    with pytest.raises(DatasetError, match="no image files"):
        write_croissant(root, json.loads((root / "dataset_card.json").read_text()))
    assert not (root / CROISSANT_NAME).exists()
