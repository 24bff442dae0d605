"""The CLI answers bad invocations with one clear message and a non-zero exit."""
import subprocess
import sys

from benchmark.cli import main, parse_overrides


def test_unknown_preset_exits_2_with_one_line(capsys, tmp_path):
    assert main(["generate", "--preset", "huge", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Unknown preset 'huge'" in err[0]
    assert not (tmp_path / "x").exists()


def test_malformed_override_is_explained(capsys, tmp_path):
    assert main(["generate", "--preset", "ci", "--out", str(tmp_path), "--set", "n_clusters=3"]) == 2
    assert "section.key=value" in capsys.readouterr().err


def test_overrides_parse_toml_values():
    assert parse_overrides(["population.n_clusters=3", "dataset.renderer=chain", "observation.band_kev=[0.5, 2.0]"]) == {
        "population": {"n_clusters": 3}, "dataset": {"renderer": "chain"}, "observation": {"band_kev": [0.5, 2.0]},
    }


def test_console_script_help_lists_subcommands():
    out = subprocess.run([sys.executable, "-m", "benchmark.cli", "--help"], capture_output=True, text=True, check=True).stdout
    for command in ("generate", "data", "train", "evaluate", "leaderboard", "release", "format"):
        assert command in out


def test_data_with_unknown_preset_creates_nothing(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("CLUSTERMASS_DATA", str(tmp_path))
    assert main(["data", "--preset", "bogus"]) == 2
    assert "Unknown preset 'bogus'" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
