"""Baseline entries of the benchmark, each a module following the harness's model protocol.

``make_model(config) -> model`` with ``fit(train, val)`` and ``predict(data)``, plus
``load_model(directory)``. Optional: ``for_dataset(root) -> model``, for a fitted model that
reads files of the dataset it predicts (``lx_truth``'s true source lists): the harness calls
it before predicting an extra test set (shift sets, the hidden set), whose images reuse the
parent's image ids but not its files; a model without it predicts every set as it is. :data:`BASELINES` maps entry names to (module, config); the
harness (:mod:`benchmark.training`) resolves names through it.

* ``reference``   -- the reference CNN (:mod:`benchmark.models.cnn`: the study's layer
  pattern, this project's widths and schedule), image only;
* ``reference_z`` -- the same with the redshift as an extra input;
* ``reference_gauss`` -- the same network with a Gaussian head (mean, sigma) trained on the
  negative log-likelihood;
* ``reference_ensemble`` -- a deep ensemble over seeds of ``reference_gauss`` (5 members);
* ``lx_iterative`` -- core-excised L_X, R500c found from its own mass estimate;
* ``lx_truth``    -- core-excised L_X, R500c and point-source positions from the truth (an
  optimistic bound);
* ``mean``        -- the training-fold mean;
* ``total_counts`` -- a power law in the total counts;
* ``oracle_mgas``, ``oracle_yx``, ``oracle_lx_t`` -- the physical floor
  (:mod:`benchmark.models.oracle`): power laws of truth proxies (gas mass, Y_X, L_X,cex
  with T), marked "oracle, not observable" (:data:`ORACLES`).
"""
import json
from pathlib import Path

from benchmark.core.errors import ClusterMassError
from benchmark.core.io import refuse_nonfinite, write_text

#: entry name -> (module path, entry config). Modules are imported only when used.
BASELINES: dict[str, tuple[str, dict]] = {
    "reference": ("benchmark.models.cnn", {"use_redshift": False}),
    "reference_z": ("benchmark.models.cnn", {"use_redshift": True}),
    "reference_gauss": ("benchmark.models.cnn", {"use_redshift": False, "head": "gaussian"}),
    "reference_ensemble": ("benchmark.models.cnn", {"use_redshift": False, "head": "gaussian",
                                                    "ensemble": True, "ensemble_members": 5}),
    "lx_iterative": ("benchmark.models.lx", {"r500c_source": "iterative"}),
    "lx_truth": ("benchmark.models.lx", {"r500c_source": "truth", "point_sources": "truth"}),
    "mean": ("benchmark.models.trivial", {"kind": "mean"}),
    "total_counts": ("benchmark.models.trivial", {"kind": "total_counts"}),
    "oracle_mgas": ("benchmark.models.oracle", {"kind": "mgas"}),
    "oracle_yx": ("benchmark.models.oracle", {"kind": "yx"}),
    "oracle_lx_t": ("benchmark.models.oracle", {"kind": "lx_t"}),
}

#: Entries computed from simulation truth that no observation gives: the physical floor,
#: shown beside every ranking and never ranked (``metadata.oracle`` of their entries).
ORACLES = frozenset({"oracle_mgas", "oracle_yx", "oracle_lx_t"})

#: Display names on the leaderboard.
DISPLAY_NAMES: dict[str, str] = {
    "reference": "Reference CNN (Ntampaka+19)",
    "reference_z": "Reference CNN + redshift",
    "reference_gauss": "Reference CNN, Gaussian head",
    "reference_ensemble": "Deep ensemble of 5 Gaussian CNNs",
    "lx_iterative": "Core-excised L_X (iterative R500c)",
    "lx_truth": "Core-excised L_X (true R500c)",
    "mean": "Training mean",
    "total_counts": "Total counts power law",
    "oracle_mgas": "Oracle: gas mass in R500c",
    "oracle_yx": "Oracle: Y_X = M_gas T",
    "oracle_lx_t": "Oracle: core-excised L_X with T",
}

#: Human-readable descriptions for entry metadata.
DESCRIPTIONS: dict[str, str] = {
    "reference": "Reference CNN after Ntampaka et al. 2019: the study's three conv+pool "
                 "blocks then three dense layers; the filter counts (16/32/64), dense widths "
                 "(200/100/20), log10(1+N) inputs, flips/90-degree rotations and schedule are "
                 "this project's choices",
    "reference_z": "Reference CNN with the redshift as an extra input to the dense head",
    "reference_gauss": "Reference CNN with a Gaussian head (mean and log sigma) trained on "
                       "the negative log-likelihood (Nix & Weigend 1994); same trunk, inputs "
                       "and schedule",
    "reference_ensemble": "Deep ensemble (Lakshminarayanan+ 2017) of 5 Gaussian-head reference "
                          "CNNs over seeds; mixture mean and variance (mean of variances + "
                          "variance of means); 5x the training cost",
    "lx_iterative": "Core-excised (0.15-1 R500c) L_X power law, R500c iterated from the "
                    "L_X mass estimate; point sources detected on the image and masked, "
                    "background from an outer annulus",
    "lx_truth": "Core-excised (0.15-1 R500c) L_X power law, R500c and the point-source "
                "positions from the truth (optimistic bound)",
    "mean": "Training-fold mean of log10 M500c",
    "total_counts": "Power law in the total counts of the image",
    "oracle_mgas": "Oracle, not observable: power law in the true gas mass in R500c "
                   "(gas_fraction x M500c from the catalog, so its only scatter is the "
                   "gas-fraction scatter)",
    "oracle_yx": "Oracle, not observable: power law in the true Y_X = M_gas x T500 "
                 "(gas_fraction x M500c x t500_kev from the catalog)",
    "oracle_lx_t": "Oracle, not observable: power law in the true core-excised L_X and "
                   "T500 (lx_cex_erg_s, t500_kev from the catalog)",
}

__all__ = ["BASELINES", "DESCRIPTIONS", "DISPLAY_NAMES", "ORACLES", "write_params", "read_params"]


def write_params(directory, filename: str, params: dict) -> Path:
    """Write a fitted model's parameters as strict JSON, atomically (a fold is never
    half-saved); a NaN or infinite parameter is a failed fit and raises ClusterMassError."""
    path = Path(directory) / filename
    refuse_nonfinite(params, f"the fitted parameters {path}")
    # json.dumps, not core.io.write_json: the files keep their bytes (no final newline).
    return write_text(path, json.dumps(params, indent=2, sort_keys=True, allow_nan=False))


def read_params(directory, filename: str, what: str) -> dict:
    """The parameters :func:`write_params` wrote, or one clear error naming ``what`` fold is
    missing."""
    path = Path(directory) / filename
    if not path.is_file():
        raise ClusterMassError(f"{path} is missing: {directory} is not a fitted {what} fold; "
                               "re-run it.")
    return json.loads(path.read_text())
