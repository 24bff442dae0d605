"""Fixtures of the tests of the ``datalad/`` folder: real datalad + git-annex from the venv."""
from datalad_fixtures import datalad_env  # noqa: F401 (a fixture)
