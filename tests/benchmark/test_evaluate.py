"""``clustermass evaluate``: prediction submissions scored into entries, and the dispatch by kind."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from benchmark.core.errors import ClusterMassError, EntryError
from benchmark.entries import load_entries, load_entry
from benchmark.evaluate import evaluate_predictions, evaluate_submission, submission_kind


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
    assert entry.kind == "submission" and entry.trusted is False
    assert entry.slug == "script-alert-1-script-net"
    assert entry.score.seeds == (0, 1)
    assert load_entries(out) == [entry]
    written = pd.read_csv(out / entry.predictions_file)
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


def test_evaluate_submission_dispatch(fake_dataset, tmp_path):
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
    assert load_entry(path).kind == "submission"
