"""Folders and environment variables, read in one place.

Every folder the project reads or writes and every variable it honours is a field of
:class:`Settings`; nothing else in the code reads ``os.environ`` for them or guesses a
folder from ``__file__``. :func:`current` reads the environment each time it is called,
so a test or a parent process that changes a variable is seen at once.

========================= =================================== =====================================
variable                  field                               default
========================= =================================== =====================================
``CLUSTERMASS_SOURCE``    ``source_dir``: the project tree     the editable install's folder, else
                          (``datalad/`` procedures, template,  the current folder
                          expected versions)
``CLUSTERMASS_RESPONSES`` ``responses_dir``: ACIS-I ARF/RMF    ``<source>/../shared/data/chandra``
``CLUSTERMASS_BUILD``     ``build_dir``: caches, emission      ``<source>/build``
                          table, logs, scratch
``CLUSTERMASS_DATA``      ``data_root``: ``<data_root>/<preset>`` ``data``
``CLUSTERMASS_RESULTS``   ``results_root``: runs and entries   ``results``
``CLUSTERMASS_APEC_DIR``  ``apec_dir``: real AtomDB tables     none (the project's own table)
``CLUSTERMASS_EXPECTED_VERSION`` ``expected_version_file``     ``<source>/datalad/expected_version.json``
``CLUSTERMASS_CODE_VERSION`` ``code_version``: code provenance the source's commit (``-dirty`` if changed)
``CLUSTERMASS_GET_JOBS``  ``get_jobs``: parallel annex gets    2
``CLUSTERMASS_RESUME_DIR`` ``resume_dir``: finished clusters   none
                          of an interrupted run
``CLUSTERMASS_TIMING``    ``timing``: print stage times        off
``DASK_SCHEDULER``        ``dask_scheduler``: an external      none (a LocalCluster)
                          scheduler's address
``CLUSTERMASS_HIDDEN``    ``hidden_root``: the maintainer's    ``~/.clustermass/hidden``
                          hidden test sets (``<root>/<preset>``)
``HIDDEN_SECRET``         ``hidden_secret_file``: the secret    ``~/.clustermass/hidden_secret``
                          the hidden sets derive from
========================= =================================== =====================================

The Make variables (``PRESET``, ``WORKERS``, ``SCHEDULE``, ``FOLD_JOBS``, ``DATASET_SOURCE``,
``STORE``, ``SEEDS``, ``DIAG_CLUSTERS``) are the command line's defaults; the CLI reads them
through :attr:`Settings.make`.
"""
from __future__ import annotations

import dataclasses
import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Mapping

__all__ = ["Settings", "current", "source_dir"]

MAKE_VARIABLES = ("PRESET", "WORKERS", "SCHEDULE", "FOLD_JOBS", "DATASET_SOURCE", "STORE",
                  "SEEDS", "DIAG_CLUSTERS")


@lru_cache(maxsize=1)
def _installed_source_dir() -> Path | None:
    # pip records where an editable install points (PEP 610 direct_url.json).
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        text = distribution("clustermass").read_text("direct_url.json")
    except PackageNotFoundError:
        return None
    if not text:
        return None
    info = json.loads(text)
    url = info.get("url", "")
    if info.get("dir_info", {}).get("editable") and url.startswith("file://"):
        return Path(url[len("file://"):])
    return None


def source_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The project tree: ``CLUSTERMASS_SOURCE``, the editable install, or the current folder."""
    environ = os.environ if environ is None else environ
    if environ.get("CLUSTERMASS_SOURCE"):
        return Path(environ["CLUSTERMASS_SOURCE"]).expanduser()
    return _installed_source_dir() or Path.cwd()


def _path(environ, name: str) -> Path | None:
    value = environ.get(name)
    return Path(value).expanduser() if value else None


@dataclasses.dataclass(frozen=True)
class Settings:
    """Where things are and what the environment asks for (see the module's table)."""

    source_dir: Path
    responses_dir: Path
    build_dir: Path
    data_root: Path
    results_root: Path
    apec_dir: Path | None
    expected_version_file: Path
    code_version: str | None
    get_jobs: int | None
    resume_dir: Path | None
    timing: bool
    dask_scheduler: str | None
    make: Mapping[str, str]
    hidden_root: Path = Path("~/.clustermass/hidden").expanduser()
    hidden_secret_file: Path = Path("~/.clustermass/hidden_secret").expanduser()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        """Read the settings from ``environ`` (default: ``os.environ``)."""
        environ = os.environ if environ is None else environ
        source = source_dir(environ)
        jobs = environ.get("CLUSTERMASS_GET_JOBS")
        return cls(
            source_dir=source,
            responses_dir=_path(environ, "CLUSTERMASS_RESPONSES")
            or source.parent / "shared" / "data" / "chandra",
            build_dir=_path(environ, "CLUSTERMASS_BUILD") or source / "build",
            data_root=_path(environ, "CLUSTERMASS_DATA") or Path("data"),
            results_root=_path(environ, "CLUSTERMASS_RESULTS") or Path("results"),
            apec_dir=_path(environ, "CLUSTERMASS_APEC_DIR"),
            expected_version_file=_path(environ, "CLUSTERMASS_EXPECTED_VERSION")
            or source / "datalad" / "expected_version.json",
            code_version=environ.get("CLUSTERMASS_CODE_VERSION") or None,
            get_jobs=int(jobs) if jobs else None,
            resume_dir=_path(environ, "CLUSTERMASS_RESUME_DIR"),
            timing=bool(environ.get("CLUSTERMASS_TIMING")),
            dask_scheduler=environ.get("DASK_SCHEDULER") or None,
            make={k: environ[k] for k in MAKE_VARIABLES if environ.get(k)},
            hidden_root=_path(environ, "CLUSTERMASS_HIDDEN")
            or Path("~/.clustermass/hidden").expanduser(),
            hidden_secret_file=_path(environ, "HIDDEN_SECRET")
            or Path("~/.clustermass/hidden_secret").expanduser(),
        )

    @property
    def datalad_dir(self) -> Path:
        """The project's ``datalad/`` folder (procedures, dataset README template)."""
        return self.source_dir / "datalad"

    def data_dir(self, preset: str) -> Path:
        """The dataset folder of a preset."""
        return self.data_root / preset

    def results_dir(self, preset: str) -> Path:
        """Training runs and entries of a preset."""
        return self.results_root / preset


def current() -> Settings:
    """The settings of the current environment."""
    return Settings.from_env()
