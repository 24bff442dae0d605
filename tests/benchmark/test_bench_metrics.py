"""Speed of scoring a full submission (7,896 rows, 1,000 cluster bootstraps): `make bench`."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from benchmark.metrics import score


@pytest.mark.bench
def test_bench_score_full_submission(benchmark, make_catalog):
    cat, splits = make_catalog()  # 329 clusters x 24 views = 7,896 images
    assert len(cat) == 7896
    rng = np.random.default_rng(0)
    pred = pd.DataFrame({"image_id": cat["image_id"],
                         "log10_m500c_pred": cat["log10_m500c"] + rng.normal(-0.02, 0.052,
                                                                             len(cat))})
    score(pred, cat, splits, n_boot=10)  # imports (scipy) outside the timing
    result = benchmark.pedantic(score, args=(pred, cat, splits),
                                kwargs={"n_boot": 1000, "rng_seed": 0}, rounds=5, iterations=1)
    assert result["n_boot"] == 1000 and result["pooled_ci68"]["sigma_gauss_dex"][0] is not None


@pytest.mark.bench
def test_bench_score_three_seeds(benchmark, make_catalog):
    cat, splits = make_catalog()
    rng = np.random.default_rng(1)
    pred = pd.concat([pd.DataFrame({"image_id": cat["image_id"], "seed": s,
                                    "log10_m500c_pred": cat["log10_m500c"]
                                    + rng.normal(0, 0.05, len(cat))}) for s in range(3)])
    score(pred, cat, splits, n_boot=10)
    benchmark.pedantic(score, args=(pred, cat, splits), kwargs={"n_boot": 1000},
                       rounds=3, iterations=1)


@pytest.mark.bench
def test_bench_score_with_uncertainties_and_bootstrap(benchmark, make_catalog):
    """#17's figure: 7,896 rows with sigmas, 1,000 cluster bootstraps of the point and the
    uncertainty scores (CRPS, log score, 68%/95% coverage); README: under 2 s."""
    cat, splits = make_catalog()
    rng = np.random.default_rng(2)
    pred = pd.DataFrame({"image_id": cat["image_id"],
                         "log10_m500c_pred": cat["log10_m500c"] + rng.normal(0, 0.05, len(cat)),
                         "log10_m500c_sigma": rng.uniform(0.03, 0.08, len(cat))})
    score(pred, cat, splits, n_boot=10)  # imports (scipy, scoringrules) outside the timing
    result = benchmark.pedantic(score, args=(pred, cat, splits),
                                kwargs={"n_boot": 1000, "rng_seed": 0}, rounds=5, iterations=1)
    ci = result["uncertainty"]["pooled_ci68"]
    assert len(cat) == 7896 and all(ci[k][0] < ci[k][1] for k in ci)
