"""Stand-in for ``clustermass generate`` in the DataLad tests: a tiny real dataset, fast.

Usage: ``python fake_generate.py OUT N_CLUSTERS [SEED]``. Writes the dataset of
:func:`benchmark.dataset.write_fake_dataset` (deterministic bytes for a given seed) into OUT
the way ``clustermass generate`` does: cluster files already present are kept (a resumed
run), missing ones and the metadata files are moved in atomically. It completes the
per-file attributes pipeline/HDF5_SPEC.md asks for when the fake writer leaves some out, so
``pipeline.checker.check_dataset`` accepts it.
"""
import os
import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np

from benchmark.dataset import write_fake_dataset

SPEC_ATTRS = ("layout_version", "npix", "fov_arcmin", "fingerprint", "complete")


def complete_attributes(path: Path, seed: str) -> None:
    with h5py.File(path, "a") as h5:
        if all(k in h5.attrs for k in SPEC_ATTRS):
            return
        h5.attrs.update({"layout_version": 1, "npix": h5["counts"].shape[-1], "fov_arcmin": 16.9,
                         "fingerprint": f"fake-seed-{seed}", "complete": 1})
        h5.attrs["band_kev"] = np.asarray(h5.attrs["band_kev"], dtype=np.float64)


def main(out: str, n_clusters: str, seed: str = "0") -> None:
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out / "images", prefix=".fake-") as tmp:
        root = write_fake_dataset(Path(tmp), n_clusters=int(n_clusters), n_epochs=1, seed=int(seed))
        for path in sorted((root / "images").glob("cluster_*.h5")):
            complete_attributes(path, seed)
            target = out / "images" / path.name
            if not target.exists():  # a dangling annex link (content lost) counts as missing
                os.replace(path, target)
        for name in ("catalog.csv", "splits.json", "dataset_card.json"):
            os.replace(root / name, out / name)
    print(f"fake dataset: {n_clusters} clusters in {out}")


if __name__ == "__main__":
    main(*sys.argv[1:])
