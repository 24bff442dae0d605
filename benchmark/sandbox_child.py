"""The child side of a sandboxed fold: runs a code submission on what the fold allows.

Usage: ``child.py MODULE SCRATCH``. This file runs *inside* the sandbox
(:mod:`benchmark.sandbox`) as a plain script: it imports nothing of the project (the project
is not visible there), only NumPy, pandas and the submission. It reads
``SCRATCH/in/{train,val,test}.npz`` and ``SCRATCH/in/config.json``, calls
``make_model(config)``, ``fit(train, val)`` and ``predict(test)``, and writes
``SCRATCH/out/predictions.npy``: one float per test image, in the order of ``test.npz``.

An exception in the submission ends the child with exit status 3 and the traceback on
standard error, which the parent quotes.
"""
import dataclasses
import importlib.util
import json
import sys
import traceback
from pathlib import Path

import numpy as np
import pandas as pd

EXIT_SUBMISSION_FAILED = 3


@dataclasses.dataclass
class FoldData:
    """One part of a fold as the submission sees it (the same fields as the harness's)."""

    images: np.ndarray
    aux: pd.DataFrame
    y: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.images)


def load_part(scratch: Path, name: str) -> FoldData:
    with np.load(scratch / "in" / f"{name}.npz", allow_pickle=False) as npz:
        aux = pd.DataFrame({k[len("aux_"):]: npz[k] for k in npz.files if k.startswith("aux_")})
        y = npz["y"] if "y" in npz.files else None
        return FoldData(images=npz["images"], aux=aux, y=y)


def load_submission(path: Path):
    spec = importlib.util.spec_from_file_location("submission", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["submission"] = module
    spec.loader.exec_module(module)
    if not callable(getattr(module, "make_model", None)):
        raise TypeError(f"{path.name} defines no make_model(config)")
    return module


def main(module_path: str, scratch: str) -> int:
    scratch = Path(scratch)
    config = json.loads((scratch / "in" / "config.json").read_text())
    try:
        module = load_submission(Path(module_path))
        model = module.make_model(config)
        model.fit(load_part(scratch, "train"), load_part(scratch, "val"))
        predictions = np.asarray(model.predict(load_part(scratch, "test")), dtype=np.float64)
    except Exception:  # noqa: BLE001 - any failure of the submission is reported, not raised
        traceback.print_exc()
        return EXIT_SUBMISSION_FAILED
    (scratch / "out").mkdir(exist_ok=True)
    np.save(scratch / "out" / "predictions.npy", predictions, allow_pickle=False)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
