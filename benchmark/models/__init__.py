"""Baseline entries of the benchmark, each a module following the harness's model protocol.

``make_model(config) -> model`` with ``fit(train, val)`` and ``predict(data)``, plus
``load_model(directory)``. :data:`BASELINES` maps entry names to (module, config); the
harness (:mod:`benchmark.training`) resolves names through it.

* ``reference``   -- the study's CNN (:mod:`benchmark.models.cnn`), image only;
* ``reference_z`` -- the same with the redshift as an extra input;
* ``lx_iterative`` -- core-excised L_X, R500c found from its own mass estimate;
* ``lx_truth``    -- core-excised L_X, R500c from the truth (an optimistic bound);
* ``mean``        -- the training-fold mean;
* ``total_counts`` -- a power law in the total counts.
"""
import json
from pathlib import Path

from benchmark.core.io import write_text

#: entry name -> (module path, entry config). Modules are imported only when used.
BASELINES: dict[str, tuple[str, dict]] = {
    "reference": ("benchmark.models.cnn", {"use_redshift": False}),
    "reference_z": ("benchmark.models.cnn", {"use_redshift": True}),
    "lx_iterative": ("benchmark.models.lx", {"r500c_source": "iterative"}),
    "lx_truth": ("benchmark.models.lx", {"r500c_source": "truth"}),
    "mean": ("benchmark.models.trivial", {"kind": "mean"}),
    "total_counts": ("benchmark.models.trivial", {"kind": "total_counts"}),
}

#: Display names on the leaderboard.
DISPLAY_NAMES: dict[str, str] = {
    "reference": "Reference CNN (Ntampaka+19)",
    "reference_z": "Reference CNN + redshift",
    "lx_iterative": "Core-excised L_X (iterative R500c)",
    "lx_truth": "Core-excised L_X (true R500c)",
    "mean": "Training mean",
    "total_counts": "Total counts power law",
}

#: Human-readable descriptions for entry metadata.
DESCRIPTIONS: dict[str, str] = {
    "reference": "Reference CNN of Ntampaka et al. 2019 (3 conv+pool blocks 16/32/64, "
                 "dense 200/100/20), log10(1+N) inputs, flips/90-degree rotations",
    "reference_z": "Reference CNN with the redshift as an extra input to the dense head",
    "lx_iterative": "Core-excised (0.15-1 R500c) L_X power law, R500c iterated from the "
                    "L_X mass estimate",
    "lx_truth": "Core-excised (0.15-1 R500c) L_X power law, R500c from the truth "
                "(optimistic bound)",
    "mean": "Training-fold mean of log10 M500c",
    "total_counts": "Power law in the total counts of the image",
}

__all__ = ["BASELINES", "DESCRIPTIONS", "DISPLAY_NAMES", "write_params"]


def write_params(directory, filename: str, params: dict) -> Path:
    """Write a fitted model's parameters as JSON, atomically (a fold is never half-saved)."""
    # json.dumps, not core.io.write_json: the files keep their bytes (no final newline).
    return write_text(Path(directory) / filename, json.dumps(params, indent=2, sort_keys=True))
