"""Entry files: schema, atomic writing, loading, and the prediction-submission glue."""

from __future__ import annotations

import copy
import json

import numpy as np
import pandas as pd
import pytest

from benchmark.entries import (ENTRY_SCHEMA, FOLD_COLUMNS, dataset_provenance,
                               evaluate_predictions, load_entries, load_entry, make_entry,
                               schema_problems, slugify, validate_entry, write_entry)
from benchmark.core.errors import ClusterMassError, EntryError
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
    assert entry["slug"] == "reference-cnn" and entry["trusted"] is True
    assert entry["dataset"]["version"] == fake_dataset.version
    assert entry["dataset"]["splits_sha256"] == fake_dataset.card["splits_sha256"]
    assert entry["predictions_file"] == "reference-cnn.predictions.csv"
    assert entry["created"].endswith("Z") and entry["harness_version"]
    assert [f["fold"] for f in entry["folds"]] == list(range(10))
    assert set(entry["folds"][0]) == set(FOLD_COLUMNS)
    assert entry["metadata"]["seeds"] == [0]
    json.dumps(entry, allow_nan=False)
    assert schema_problems(entry, ENTRY_SCHEMA) == []


def test_write_and_load_roundtrip(entry, tmp_path):
    path = write_entry(tmp_path / "entries" / "reference-cnn.json", entry)
    assert load_entry(path) == entry
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
    bad = copy.deepcopy(entry)
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
    other = copy.deepcopy(entry)
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
    bad = copy.deepcopy(entry)
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


def _write_submission(folder, ds, seeds=(0,), **meta_changes):
    folder.mkdir(parents=True, exist_ok=True)
    cat = ds.catalog
    rng = np.random.default_rng(1)
    pd.concat([pd.DataFrame({"image_id": cat["image_id"], "seed": s,
                             "log10_m500c_pred": cat["log10_m500c"]
                             + rng.normal(0.01, 0.08, len(cat))}) for s in seeds]
              ).to_csv(folder / "predictions.csv", index=False)
    meta = {"name": "<script>alert(1)</script> net", "authors": ["Me"], "code_url": None,
            "n_parameters": None, "hardware": "laptop", "seeds": list(seeds),
            "external_data": False, "dataset_version": ds.version,
            "splits_sha256": ds.card["splits_sha256"]}
    meta.update(meta_changes)
    (folder / "metadata.json").write_text(json.dumps(meta))
    return folder


def test_evaluate_predictions_end_to_end(fake_dataset, tmp_path):
    sub = _write_submission(tmp_path / "sub", fake_dataset, seeds=(0, 1))
    out = tmp_path / "entries"
    entry = evaluate_predictions(sub, None, fake_dataset, out, n_boot=50)
    assert entry["kind"] == "submission" and entry["trusted"] is False
    assert entry["slug"] == "script-alert-1-script-net"
    assert entry["metrics"]["seeds"] == [0, 1]
    assert load_entries(out) == [entry]
    written = pd.read_csv(out / entry["predictions_file"])
    assert len(written) == 2 * len(fake_dataset)
    # Re-submitting under the same slug is refused unless overwriting.
    with pytest.raises(EntryError, match="already exists"):
        evaluate_predictions(sub, None, fake_dataset, out, n_boot=10)
    evaluate_predictions(sub, None, fake_dataset.root, out, n_boot=10, overwrite=True)


def test_evaluate_predictions_wrong_version_nothing_written(fake_dataset, tmp_path):
    sub = _write_submission(tmp_path / "sub", fake_dataset, dataset_version="0.9")
    out = tmp_path / "entries"
    with pytest.raises(ClusterMassError, match="another dataset version"):
        evaluate_predictions(sub / "predictions.csv", sub / "metadata.json", fake_dataset, out)
    assert not out.exists() or not any(out.iterdir())


def test_kind_and_trust_from_metadata(metrics, fake_dataset):
    # The training harness passes kind/trusted inside the metadata.
    code = make_entry(name="my-code", metrics=metrics, dataset=fake_dataset.card,
                      metadata={"kind": "code", "trusted": True, "seeds": [0]})
    assert code["kind"] == "submission" and code["trusted"] is True
    base = make_entry(name="cnn", metrics=metrics, dataset=fake_dataset,
                      metadata={"kind": "baseline"})
    assert base["kind"] == "baseline" and base["trusted"] is True
    with pytest.raises(EntryError, match="needs the metrics"):
        make_entry("x", "baseline")


def test_evaluate_submission_dispatch(fake_dataset, tmp_path):
    from benchmark.evaluate import evaluate_submission, submission_kind

    sub = _write_submission(tmp_path / "sub", fake_dataset)
    assert submission_kind(sub) == "predictions"
    assert submission_kind(sub / "predictions.csv") == "predictions"
    (tmp_path / "model.py").write_text("def make_model(config):\n    pass\n")
    assert submission_kind(tmp_path / "model.py") == "code"
    with pytest.raises(ClusterMassError, match="does not exist"):
        submission_kind(tmp_path / "nothing")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ClusterMassError, match="neither"):
        submission_kind(tmp_path / "notes.txt")
    path = evaluate_submission(sub, fake_dataset.root, tmp_path / "results", n_boot=10)
    assert path == tmp_path / "results" / "entries" / "script-alert-1-script-net.json"
    assert load_entry(path)["kind"] == "submission"
