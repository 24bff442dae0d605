"""Stand-in for ``clustermass generate`` in the DataLad tests: a tiny real dataset, fast.

Usage: ``python fake_generate.py OUT N_CLUSTERS [SEED]``. Writes the dataset of
:func:`fakes.write_fake_dataset` (deterministic bytes for a given seed) into OUT
the way ``clustermass generate`` does: cluster files already present are kept (a resumed
run), missing ones and the metadata files are moved in atomically.
"""
import os
import sys
import tempfile
from pathlib import Path

# Run as a script, this folder is sys.path[0]: fakes.py beside it imports as in pytest.
from fakes import write_fake_dataset


def main(out: str, n_clusters: str, seed: str = "0") -> None:
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out / "images", prefix=".fake-") as tmp:
        root = write_fake_dataset(Path(tmp), n_clusters=int(n_clusters), n_epochs=1, seed=int(seed))
        for path in sorted((root / "images").glob("cluster_*.h5")):
            target = out / "images" / path.name
            if not target.exists():  # a dangling annex link (content lost) counts as missing
                os.replace(path, target)
        for name in ("catalog.csv", "splits.json", "dataset_card.json"):
            os.replace(root / name, out / name)
    print(f"fake dataset: {n_clusters} clusters in {out}")


if __name__ == "__main__":
    main(*sys.argv[1:])
