"""DataLad procedure ``cfg_clustermass``: lay out a new dataset as a clustermass mock dataset.

Run it on a freshly created dataset, before any data is added::

    datalad -c datalad.locations.extra-procedures=$PWD/datalad/procedures \\
        create -c clustermass data/ci
    # or, on an existing empty dataset:
    datalad -c datalad.locations.extra-procedures=$PWD/datalad/procedures \\
        run-procedure -d data/ci cfg_clustermass

What it configures (in ``.gitattributes``, so every clone inherits it):

- annex backend ``SHA256E``: an annex key *is* the SHA-256 of the file, so keys double as
  content checksums (``benchmark.dataset.release.content_fingerprint`` relies on it) and
  ``git annex fsck`` checks files against a cryptographic hash;
- ``images/**`` (the per-cluster HDF5 files) go to git-annex;
- everything else (``catalog.csv``, ``splits.json``, ``dataset_card.json``, ``report/``,
  ``README.md``) stays in git, so a clone can read its metadata without fetching content.

It also writes the dataset's ``README.md`` from ``datalad/dataset_README.md`` and saves
both files in one commit.

DataLad runs a ``.py`` procedure with its own interpreter (``sys.executable``), the project's
virtualenv, so the template is found through the project's settings.
"""
from __future__ import annotations

import sys

from datalad.distribution.dataset import require_dataset

from benchmark.core import settings

RULES = """\
# clustermass dataset layout (written by the cfg_clustermass procedure)
* annex.backend=SHA256E
* annex.largefiles=nothing
images/** annex.largefiles=anything
**/.git* annex.largefiles=nothing
"""


def configure(ds) -> None:
    """Write .gitattributes and README.md of ``ds`` and save them."""
    attrs = ds.pathobj / ".gitattributes"
    existing = attrs.read_text() if attrs.exists() else ""
    # Drop the backend DataLad's create wrote (MD5E by default); later lines would win
    # anyway, but one rule per attribute keeps the file unambiguous.
    kept = [line for line in existing.splitlines()
            if line.strip() and "annex.backend" not in line and "annex.largefiles" not in line
            and not line.startswith("# clustermass")]
    attrs.write_text(RULES + "".join(line + "\n" for line in kept))
    readme = ds.pathobj / "README.md"
    template = settings.current().datalad_dir / "dataset_README.md"
    if not readme.exists() and template.exists():
        readme.write_text(template.read_text())
    ds.save(path=[str(attrs), str(readme)],
            message="[clustermass] Configure dataset: SHA256E keys, images/ annexed, metadata in git",
            result_renderer="disabled")


if __name__ == "__main__":
    configure(require_dataset(sys.argv[1], check_installed=True, purpose="clustermass configuration"))
