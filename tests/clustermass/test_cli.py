"""The CLI: its subcommands, its defaults from the settings, and one clear message per bad call."""
import argparse
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

from clustermass.cli import build_parser, data_dir, main, parse_overrides, results_dir


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


SUBCOMMANDS = ("generate", "check", "data", "train", "evaluate", "leaderboard", "diagnostics",
               "release", "report", "format")


def test_parser_has_every_subcommand():
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert tuple(sub.choices) == SUBCOMMANDS


def test_console_script_help_lists_subcommands():
    out = subprocess.run([sys.executable, "-m", "clustermass.cli", "--help"], capture_output=True, text=True, check=True).stdout
    usage = " ".join(out.split("\n\n")[0].split())  # "usage: clustermass [-h] {generate,check,...} ..."
    assert "{" + ",".join(SUBCOMMANDS) + "}" in usage


def test_make_variables_are_the_defaults(monkeypatch):
    for name, value in {"PRESET": "ci", "WORKERS": "3", "FOLD_JOBS": "2", "DIAG_CLUSTERS": "0",
                        "SCHEDULE": "fast", "STORE": "/tmp/store"}.items():
        monkeypatch.setenv(name, value)
    parser = build_parser()
    data = parser.parse_args(["data"])
    assert (data.preset, data.workers) == ("ci", 3)
    train = parser.parse_args(["train", "--entry", "mean"])
    assert (train.jobs, train.diagnostics_clusters, train.schedule) == (2, 0, "fast")
    assert parser.parse_args(["release", "--tag", "v1"]).store == "/tmp/store"


def test_data_and_results_folders_follow_the_settings(monkeypatch, tmp_path):
    monkeypatch.setenv("CLUSTERMASS_DATA", str(tmp_path / "d"))
    monkeypatch.setenv("CLUSTERMASS_RESULTS", str(tmp_path / "r"))
    args = build_parser().parse_args(["train", "--preset", "quick", "--entry", "mean"])
    assert data_dir(args) == tmp_path / "d" / "quick" and results_dir(args) == tmp_path / "r" / "quick"
    args = build_parser().parse_args(["train", "--preset", "quick", "--entry", "mean", "--dataset", "x"])
    assert data_dir(args) == Path("x")


def test_library_log_records_reach_stderr(capsys, tmp_path):
    code = main(["data", "--preset", "ci", "--dataset", str(tmp_path / "ci"),
                 "--source", f"ria+file://{tmp_path}/nowhere#~clustermass-ci@v1.0"])
    err = capsys.readouterr().err
    assert code == 2 and "clustermass data: error: cannot reach the DataLad source" in err
    logging.getLogger("benchmark.dataset.release").info("a library record")
    assert capsys.readouterr().err == "a library record\n"


def test_data_with_unknown_preset_creates_nothing(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("CLUSTERMASS_DATA", str(tmp_path))
    assert main(["data", "--preset", "bogus"]) == 2
    assert "Unknown preset 'bogus'" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_fold_groups_deal_folds_round_robin():
    from clustermass.cli import fold_groups

    assert fold_groups(list(range(10)), 2) == [[0, 2, 4, 6, 8], [1, 3, 5, 7, 9]]
    assert fold_groups([3, 7], 4) == [[3], [7]]
    assert sum(fold_groups(list(range(10)), 3), []) == [0, 3, 6, 9, 1, 4, 7, 2, 5, 8]


def test_train_with_two_fold_processes_matches_one(tmp_path, monkeypatch):
    """--jobs 2 trains the folds in two child processes and writes the same entry as --jobs 1."""
    import pandas as pd

    from fakes import write_fake_dataset

    root = write_fake_dataset(tmp_path / "data", n_clusters=20, n_epochs=1, seed=5)
    preds = {}
    for jobs in (1, 2):
        monkeypatch.setenv("CLUSTERMASS_RESULTS", str(tmp_path / f"jobs{jobs}"))
        assert main(["train", "--preset", "ci", "--dataset", str(root), "--entry", "lx_truth",
                     "--jobs", str(jobs), "--diagnostics-clusters", "0"]) == 0
        out = tmp_path / f"jobs{jobs}" / "ci"
        records = [json.loads(p.read_text()) for p in (out / "runs" / "lx-truth" / "seed_0").glob("fold_*/fold.json")]
        assert len(records) == 10
        pids = {r["process"]["pid"] for r in records}
        assert pids == {os.getpid()} if jobs == 1 else (len(pids) == 2 and os.getpid() not in pids)
        preds[jobs] = pd.read_csv(out / "entries" / "lx-truth.predictions.csv")
    pd.testing.assert_frame_equal(preds[1], preds[2])


def test_train_refuses_zero_jobs(capsys, tmp_path):
    assert main(["train", "--preset", "ci", "--dataset", str(tmp_path), "--entry", "mean", "--jobs", "0"]) == 2
    assert "--jobs 0" in capsys.readouterr().err


def test_train_refuses_an_unknown_schedule_before_touching_anything(capsys, tmp_path):
    assert main(["train", "--preset", "ci", "--dataset", str(tmp_path / "none"), "--entry", "reference",
                 "--schedule", "slow"]) == 2
    err = capsys.readouterr().err
    assert "unknown training schedule 'slow'" in err and "ci, quick, fast, full" in err
