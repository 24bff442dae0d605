"""Code submissions are trained in the sandbox, truth-blind, over harness-chosen seeds.

The cheat of issue #15 (read the catalog, map test ids back to the truth) is run as a user
would submit it; it gets neither, and its entry scores like the guess it falls back to.
"""
from __future__ import annotations

import json
import textwrap

import numpy as np
import pandas as pd
import pytest

from benchmark.core.errors import ClusterMassError
from benchmark.dataset.loader import ClusterMassDataset
from benchmark.entries import load_entry
from benchmark.evaluate import evaluate_submission
from benchmark.training import CODE_SEEDS, fold_dir
from fakes import write_fake_dataset
from submissions import POWER_LAW

CHEAT = """
import glob
import numpy as np
import pandas as pd

class Cheat:
    def fit(self, train, val):
        paths = glob.glob({root!r} + "/catalog.csv")
        self.truth = (pd.read_csv(paths[0]).set_index("image_id")["log10_m500c"]
                      if paths else pd.Series(dtype=float))
        self.guess = float(np.mean(train.y))
        return self

    def predict(self, data):
        ids = data.aux["image_id"]
        return np.array([self.truth.get(i, self.guess) for i in ids])

def make_model(config):
    return Cheat()
"""


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = write_fake_dataset(tmp_path_factory.mktemp("fake"), n_clusters=20, n_epochs=1, seed=4)
    return ClusterMassDataset(root)


def submit(folder, source, metadata=None):
    folder.mkdir(parents=True)
    (folder / "model.py").write_text(textwrap.dedent(source))
    if metadata:
        (folder / "metadata.json").write_text(json.dumps(metadata))
    return folder


def test_a_code_folder_is_trained_in_the_sandbox_over_three_seeds(dataset, tmp_path):
    sub = submit(tmp_path / "power-law", POWER_LAW, {"name": "power law"})
    entry = load_entry(evaluate_submission(sub, dataset.root, tmp_path / "results"))
    assert entry.kind == "submission" and entry.trusted and entry.name == "power law"
    assert entry.metadata["sandbox"] == "bubblewrap" and entry.metadata["ranked"]
    assert tuple(entry.metadata["seeds"]) == CODE_SEEDS
    run = tmp_path / "results" / "runs" / "power-law"
    record = json.loads((fold_dir(run, 4, seed=2) / "fold.json").read_text())
    assert record["sandbox"] == "bubblewrap" and record["truth_columns"] == []
    assert record["aux_columns"] == ["redshift", "pixel_arcsec"]
    # The predictions came back under the right ids: a counts power law is a fair estimator.
    preds = pd.read_csv(run / "predictions.csv").query("seed == 0").set_index("image_id")
    truth = dataset.catalog.set_index("image_id")["log10_m500c"]
    assert np.corrcoef(preds["log10_m500c_pred"], truth[preds.index])[0, 1] > 0.8


def test_the_cheat_of_issue_15_reads_no_truth(dataset, tmp_path):
    sub = submit(tmp_path / "cheat", CHEAT.format(root=str(dataset.root)))
    entry = load_entry(evaluate_submission(sub, dataset.root, tmp_path / "results",
                                           seeds=(0,)))
    preds = pd.read_csv(tmp_path / "results" / "runs" / "cheat" / "predictions.csv")
    truth = dataset.catalog.set_index("image_id")["log10_m500c"]
    errors = preds["log10_m500c_pred"].to_numpy() - truth[preds["image_id"]].to_numpy()
    assert np.std(errors) > 0.1  # the training-mean guess, not the truth (0.0)
    assert not entry.metadata["ranked"] and "not ranked" in entry.metadata["notes"]
    # The same name again needs --force; a user's own choice of three seeds is not ranked.
    with pytest.raises(ClusterMassError, match="exists already"):
        evaluate_submission(sub, dataset.root, tmp_path / "results", seeds=(0,))
    again = load_entry(evaluate_submission(sub, dataset.root, tmp_path / "results",
                                           seeds=(3, 4, 5), overwrite=True))
    assert not again.metadata["ranked"]


def test_a_submission_may_not_take_a_baseline_name(dataset, tmp_path):
    sub = submit(tmp_path / "lx_truth", POWER_LAW)
    with pytest.raises(ClusterMassError, match="baseline"):
        evaluate_submission(sub, dataset.root, tmp_path / "results")


def test_unsandboxed_entries_say_so_and_are_not_trusted(dataset, tmp_path):
    sub = submit(tmp_path / "local", POWER_LAW)
    entry = load_entry(evaluate_submission(sub / "model.py", dataset.root, tmp_path / "results",
                                           seeds=(0,), unsandboxed=True, n_boot=25))
    assert not entry.trusted
    assert entry.score.document["n_boot"] == 25  # the caller's bootstrap size reaches the scoring
    assert entry.metadata["sandbox"] == "none (--unsandboxed)"
    assert "not trusted" in entry.metadata["notes"]


def test_code_metadata_may_only_describe(dataset, tmp_path):
    from benchmark.core.errors import SubmissionError

    sub = submit(tmp_path / "sneaky", POWER_LAW, {"name": "x", "seeds": [7]})
    with pytest.raises(SubmissionError, match="unknown key.*seeds"):
        evaluate_submission(sub, dataset.root, tmp_path / "results")
    assert not (tmp_path / "results").exists()
