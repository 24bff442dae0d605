"""Entry files: typed entries, schema, atomic writing, loading."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from benchmark.entries import (ENTRY_SCHEMA, FOLD_COLUMNS, Entry, Score, core_sensitivity,
                               dataset_provenance, load_entries, load_entry, make_entry, schema_problems, slugify,
                               validate_entry, write_entry)
from benchmark.core.errors import EntryError
from benchmark.metrics import score


@pytest.fixture(scope="module")
def metrics(fake_dataset):
    cat = fake_dataset.catalog
    rng = np.random.default_rng(0)
    pred = pd.DataFrame({"image_id": cat["image_id"],
                         "log10_m500c_pred": cat["log10_m500c"] + rng.normal(0, 0.1, len(cat))})
    return score(pred, cat, fake_dataset.splits, n_boot=50)


@pytest.fixture
def entry(metrics, fake_dataset):
    return make_entry("Reference CNN", "baseline", metrics, fake_dataset,
                      metadata={"authors": ["Ntampaka et al."], "n_parameters": 12345,
                                "hardware": "2-core CPU", "code_url": None},
                      diagnostics={"core_sensitivity": 0.4})


def test_make_entry_valid(entry, fake_dataset):
    import benchmark

    assert isinstance(entry, Entry) and isinstance(entry.score, Score)
    assert entry.slug == "reference-cnn" and entry.trusted is True
    assert entry.dataset["version"] == fake_dataset.version
    assert entry.dataset["splits_sha256"] == fake_dataset.card["splits_sha256"]
    assert entry.predictions_file == "reference-cnn.predictions.csv"
    assert entry.created.endswith("Z") and entry.harness_version == benchmark.HARNESS_VERSION
    assert [f["fold"] for f in entry.folds] == list(range(10))
    assert set(entry.folds[0]) == set(FOLD_COLUMNS)
    assert entry.metadata["seeds"] == [0]
    assert entry.core_sensitivity == 0.4
    json.dumps(entry.to_json(), allow_nan=False)
    assert schema_problems(entry.to_json(), ENTRY_SCHEMA) == []


def test_score_fields_are_the_headline(entry, metrics):
    score = entry.score
    assert score.scatter_frac == metrics["headline"]["scatter_frac"]
    assert score.bias_dex == metrics["headline"]["bias_dex"]
    assert list(score.scatter_frac_ci68) == metrics["headline"]["scatter_frac_ci68"]
    gauss = metrics["fold_summary"]["scatter_gauss_frac"]
    assert score.best_fold == (gauss["best_fold"], gauss["best"])
    assert score.worst_fold == (gauss["worst_fold"], gauss["worst"])
    assert score.n_images == metrics["n_images"] and score.seeds == (0,)
    assert score.to_json() == metrics and score.section("pdf") == metrics["pdf"]
    assert score.section("no such part") == {}


def test_entry_json_is_what_was_validated(entry):
    d = entry.to_json()
    assert list(d) == ENTRY_SCHEMA["required"]  # the schema's key order, as written before
    assert validate_entry(d) == entry
    d["metadata"]["authors"].append("someone else")  # a copy: the entry does not change
    assert entry.metadata["authors"] == ["Ntampaka et al."]


def test_write_and_load_roundtrip(entry, tmp_path):
    path = write_entry(tmp_path / "entries" / "reference-cnn.json", entry)
    assert load_entry(path) == entry and load_entry(path).source == path
    assert path.read_text() == json.dumps(entry.to_json(), indent=1) + "\n"
    assert [p.name for p in path.parent.iterdir()] == ["reference-cnn.json"]  # no temp left
    (path.parent / "reference-cnn.predictions.csv").write_text("image_id\n")
    assert load_entries(path.parent) == [entry]


@pytest.mark.parametrize("mutate, needle", [
    (lambda d: d.pop("metrics"), "missing 'metrics'"),
    (lambda d: d.update(kind="cheat"), "not one of"),
    (lambda d: d.update(slug="Has Spaces"), "does not match"),
    (lambda d: d.update(trusted="yes"), "expected boolean"),
    (lambda d: d.update(created="yesterday"), "ISO 8601"),
    (lambda d: d.update(extra=1), "unexpected key"),
    (lambda d: d["metrics"]["pooled"].update(sigma_gauss_dex=float("nan")), "number"),
    (lambda d: d["metrics"]["pooled"].update(sigma_gauss_dex="small"), "number"),
    (lambda d: d["dataset"].update(splits_sha256="abc"), "does not match"),
    (lambda d: d["metadata"].update(seeds=[0, 1]), "differ from the scored"),
    (lambda d: d["metadata"].update(code_url="javascript:x"), "does not match"),
    (lambda d: d.update(folds=d["folds"][:3]), "does not match $.metrics.folds"),
    (lambda d: d.update(predictions_file="../../etc/passwd"), "does not match"),
    (lambda d: d.update(diagnostics=[1]), "expected object or null"),
    (lambda d: d.update(schema_version=99), "not one of"),
])
def test_schema_violations(entry, mutate, needle):
    bad = entry.to_json()
    mutate(bad)
    with pytest.raises(EntryError) as info:
        validate_entry(bad)
    assert needle in str(info.value)


def test_not_a_dict():
    with pytest.raises(EntryError):
        validate_entry([1, 2])


def test_load_entries_reports_bad_files(entry, tmp_path):
    write_entry(tmp_path / "good.json", entry)
    (tmp_path / "broken.json").write_text("{not json")
    other = entry.to_json()
    other["kind"] = "x"
    (tmp_path / "wrong.json").write_text(json.dumps(other))
    with pytest.raises(EntryError) as info:
        load_entries(tmp_path)
    assert "broken.json" in str(info.value) and "wrong.json" in str(info.value)
    assert len(load_entries(tmp_path, strict=False)) == 1
    with pytest.raises(EntryError, match="does not exist"):
        load_entries(tmp_path / "nope")


def test_write_entry_refuses_invalid_and_keeps_old(entry, tmp_path):
    path = write_entry(tmp_path / "e.json", entry)
    before = path.read_bytes()
    bad = entry.to_json()
    bad["name"] = ""
    with pytest.raises(EntryError):
        write_entry(path, bad)
    assert path.read_bytes() == before


def test_slugify():
    assert slugify("Reference CNN (3 blocks)") == "reference-cnn-3-blocks"
    with pytest.raises(EntryError):
        slugify("!!!")


def test_provenance_reads_datalad_id(fake_dataset_copy):
    from benchmark.dataset.loader import ClusterMassDataset

    (fake_dataset_copy / ".datalad").mkdir()
    (fake_dataset_copy / ".datalad" / "config").write_text(
        '[datalad "dataset"]\n\tid = 1234abcd-0000-4000-8000-000000000000\n')
    prov = dataset_provenance(ClusterMassDataset(fake_dataset_copy))
    assert prov["id"] == "1234abcd-0000-4000-8000-000000000000"
    assert prov["commit"] is None and prov["tag"] is None  # not a git repository


def test_kind_and_trust_from_metadata(metrics, fake_dataset):
    # The training harness passes kind/trusted inside the metadata.
    code = make_entry(name="my-code", metrics=metrics, dataset=fake_dataset.card,
                      metadata={"kind": "code", "trusted": True, "seeds": [0]})
    assert code.kind == "submission" and code.trusted is True
    base = make_entry(name="cnn", metrics=metrics, dataset=fake_dataset,
                      metadata={"kind": "baseline"})
    assert base.kind == "baseline" and base.trusted is True
    with pytest.raises(EntryError, match="needs the metrics"):
        make_entry("x", "baseline")


def test_load_entries_of_several_folders_may_share_slugs(entry, tmp_path):
    write_entry(tmp_path / "a" / "reference-cnn.json", entry)
    write_entry(tmp_path / "b" / "reference-cnn.json", entry)
    write_entry(tmp_path / "b" / "copy.json", entry)  # one folder, one slug twice: refused
    with pytest.raises(EntryError, match="share the slug"):
        load_entries([tmp_path / "a", tmp_path / "b"])
    (tmp_path / "b" / "copy.json").unlink()
    both = load_entries([tmp_path / "a", tmp_path / "b"])
    assert [e.source.parent.name for e in both] == ["a", "b"] and both[0] == both[1]
    assert load_entries(tmp_path / "a" / "reference-cnn.json") == [entry]  # a single file


@pytest.mark.parametrize("diagnostics, expected", [
    ({"core_sensitivity": 0.4, "core_sensitivity_gradient": 0.9}, 0.4),
    ({"core_sensitivity_ratio": 0.3, "core_sensitivity_method": "occlusion"}, 0.3),
    ({"core_sensitivity_occlusion": 0.2, "core_sensitivity_gradient": 0.9}, 0.2),
    ({"core_sensitivity": None, "core_sensitivity_ratio": None}, None),
    ({"core_sensitivity_gradient": 0.9}, None),
    (None, None),
])
def test_core_sensitivity_reads_the_one_key_and_the_legacy_ones(diagnostics, expected):
    # Files written before core_sensitivity was the one key kept it under _ratio/_occlusion.
    assert core_sensitivity(diagnostics) == expected
