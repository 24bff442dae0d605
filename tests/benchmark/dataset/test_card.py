"""The dataset card: one reader that names every missing field, one writer with fixed bytes."""
from __future__ import annotations

import json

import pytest

from benchmark.core.errors import DatasetError
from benchmark.dataset.card import ImageSpec, read_card, write_card


def _raw(root) -> dict:
    return json.loads((root / "dataset_card.json").read_text())


def test_read_card_types_the_required_fields(fake_dataset_root):
    card = read_card(fake_dataset_root)
    raw = _raw(fake_dataset_root)
    assert (card.name, card.version, card.preset, card.n_clusters, card.n_images) == (
        "clustermass-fake", "0.0.0-fake", "fake", 30, 180)
    assert card.image == ImageSpec(npix=128, fov_arcmin=16.9, pixel_arcsec=16.9 * 60 / 128,
                                   band_kev=(0.5, 7.0), exposure_ks=100.0)
    assert card.splits_sha256 == raw["splits_sha256"] and card.config == raw["config"]
    # every field, required or not, by key
    assert dict(card) == raw and card["packages"] == raw["packages"]


def test_missing_and_mistyped_fields_are_named_with_the_fix(fake_dataset_copy):
    raw = _raw(fake_dataset_copy)
    del raw["master_seed"], raw["image"]["npix"]
    raw["n_images"] = "180"
    (fake_dataset_copy / "dataset_card.json").write_text(json.dumps(raw))
    with pytest.raises(DatasetError) as info:
        read_card(fake_dataset_copy)
    text = str(info.value)
    assert "field master_seed is missing" in text and "field image.npix is missing" in text
    assert "field n_images is str, not int" in text and "`make data`" in text
    assert "splits_sha256" not in text  # only what is wrong


@pytest.mark.parametrize("content, message", [
    (None, "missing"), ("{not json", "not valid JSON"), ("[1, 2]", "must hold a JSON object")])
def test_unreadable_card(tmp_path, content, message):
    if content is not None:
        (tmp_path / "dataset_card.json").write_text(content)
    with pytest.raises(DatasetError, match=message):
        read_card(tmp_path)


def test_write_card_writes_sorted_indented_json_and_reads_back(fake_dataset_root, tmp_path):
    raw = _raw(fake_dataset_root)
    path = write_card(tmp_path, raw)
    # the bytes the generator has always written
    assert path.read_bytes() == (json.dumps(raw, indent=2, sort_keys=True) + "\n").encode()
    assert dict(read_card(tmp_path)) == raw
    assert [p.name for p in tmp_path.iterdir()] == ["dataset_card.json"]  # no temporary left


def test_write_card_refuses_an_incomplete_card(fake_dataset_root, tmp_path):
    raw = _raw(fake_dataset_root)
    del raw["splits_sha256"]
    with pytest.raises(DatasetError, match="field splits_sha256 is missing"):
        write_card(tmp_path, raw)
    assert not (tmp_path / "dataset_card.json").exists()
