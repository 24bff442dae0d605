"""Folders and environment read in one place (benchmark.core.settings)."""

from __future__ import annotations

from pathlib import Path

from benchmark.core.settings import Settings, current, source_dir


def test_defaults_sit_beside_the_source_tree(tmp_path):
    s = Settings.from_env({"CLUSTERMASS_SOURCE": str(tmp_path / "repo")})
    assert s.source_dir == tmp_path / "repo"
    assert s.responses_dir == tmp_path / "shared" / "data" / "chandra"
    assert s.build_dir == tmp_path / "repo" / "build"
    assert s.datalad_dir == tmp_path / "repo" / "datalad"
    assert s.expected_version_file == tmp_path / "repo" / "datalad" / "expected_version.json"
    assert s.data_dir("quick") == Path("data") / "quick"
    assert s.results_dir("quick") == Path("results") / "quick"
    assert (s.apec_dir, s.code_version, s.get_jobs, s.resume_dir, s.dask_scheduler) == (None,) * 5
    assert s.timing is False and dict(s.make) == {}


def test_every_variable_is_read(tmp_path):
    env = {
        "CLUSTERMASS_SOURCE": str(tmp_path), "CLUSTERMASS_RESPONSES": "/r",
        "CLUSTERMASS_BUILD": "/b", "CLUSTERMASS_DATA": "/d", "CLUSTERMASS_RESULTS": "/res",
        "CLUSTERMASS_APEC_DIR": "/apec", "CLUSTERMASS_EXPECTED_VERSION": "/e.json",
        "CLUSTERMASS_CODE_VERSION": "abc123", "CLUSTERMASS_GET_JOBS": "4",
        "CLUSTERMASS_RESUME_DIR": "/resume", "CLUSTERMASS_TIMING": "1",
        "DASK_SCHEDULER": "tcp://h:8786", "PRESET": "fast", "WORKERS": "3", "UNRELATED": "x",
    }
    s = Settings.from_env(env)
    assert (s.responses_dir, s.build_dir, s.data_root, s.results_root) == (
        Path("/r"), Path("/b"), Path("/d"), Path("/res"))
    assert (s.apec_dir, s.expected_version_file, s.resume_dir) == (
        Path("/apec"), Path("/e.json"), Path("/resume"))
    assert (s.code_version, s.get_jobs, s.timing, s.dask_scheduler) == ("abc123", 4, True,
                                                                       "tcp://h:8786")
    assert dict(s.make) == {"PRESET": "fast", "WORKERS": "3"}


def test_current_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("CLUSTERMASS_BUILD", str(tmp_path / "b1"))
    assert current().build_dir == tmp_path / "b1"
    monkeypatch.setenv("CLUSTERMASS_BUILD", str(tmp_path / "b2"))
    assert current().build_dir == tmp_path / "b2"


def test_source_dir_of_this_checkout_holds_the_project(monkeypatch):
    monkeypatch.delenv("CLUSTERMASS_SOURCE", raising=False)
    assert (source_dir() / "pyproject.toml").is_file()
    assert (source_dir() / "datalad").is_dir()
