"""The PyTorch example submission (benchmark/examples/torch_reference.py) runs in the harness.

Needs PyTorch (the optional extra: ``pip install -r requirements-torch.lock``); skipped, saying
so, without it.
"""
from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip(
    "torch",
    reason="PyTorch is not installed (optional extra: pip install -r requirements-torch.lock)")

from benchmark.dataset.frameworks import fold_normalisation  # noqa: E402
from benchmark.training import fold_dir, load_code_submission, run_entry  # noqa: E402

EXAMPLE = Path(__file__).resolve().parents[2] / "benchmark" / "examples" / "torch_reference.py"
FOLD = 2


def test_the_network_is_the_reference_network():
    # Same layers and sizes as the Keras reference: the same number of weights (~3.3 million).
    from benchmark.models.cnn import build_reference_cnn

    module = load_code_submission(EXAMPLE)
    net = module.build_network()
    n_torch = sum(p.numel() for p in net.parameters())
    assert n_torch == build_reference_cnn().count_params()
    out = net(torch.zeros(3, 1, 128, 128))
    assert out.shape == (3,)


def test_the_harness_trains_and_scores_one_fold(fake_dataset, tmp_path):
    preds = run_entry(str(EXAMPLE), fake_dataset, tmp_path, folds=[FOLD], progress=False,
                      config={"max_epochs": 1})
    test_rows = fake_dataset.fold_indices(FOLD)["test"]
    assert len(preds) == len(test_rows)
    assert set(preds["image_id"]) == set(fake_dataset.catalog["image_id"].iloc[test_rows])
    pred = preds["log10_m500c_pred"].to_numpy()
    assert np.all(np.isfinite(pred)) and np.ptp(pred) > 0  # one value per image, not a constant
    # The fitted model was kept: one epoch, and the dataset layer's training-fold statistics
    # (the example re-implements them because the sandbox hides this repository).
    with open(fold_dir(tmp_path, FOLD) / "model.pkl", "rb") as fh:
        model = pickle.load(fh)
    assert len(model.history["loss"]) == 1
    stats = fold_normalisation(fake_dataset, FOLD)
    for key in ("image_log_mean", "image_log_std", "y_mean", "y_std"):
        assert model.stats[key] == pytest.approx(stats[key], rel=1e-12), key
    again = model.predict(type("Data", (), {"images": fake_dataset.images(indices=test_rows)})())
    order = pd.Series(again, index=fake_dataset.catalog["image_id"].iloc[test_rows])
    np.testing.assert_allclose(order[preds["image_id"]].to_numpy(), pred, rtol=1e-6)


def test_the_example_is_self_contained():
    # The sandbox shows the Python environment but not this repository: no project imports.
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import torch_reference; "
            "assert not [m for m in sys.modules if m.split('.')[0] in "
            "('benchmark', 'pipeline', 'leaderboard', 'clustermass')], 'imports the project'")
    subprocess.run([sys.executable, "-c", code, str(EXAMPLE.parent)], check=True,
                   cwd="/", timeout=300)
