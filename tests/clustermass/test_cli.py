"""The CLI: its subcommands, its defaults from the settings, and one clear message per bad call."""
import argparse
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

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
               "release", "check-version", "report", "science", "export-fits", "testsets",
               "format")


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


def test_data_refuses_a_dataset_made_from_another_configuration(capsys, tmp_path, monkeypatch):
    # e.g. data/ci of population version 3 after the default moved to 4: named, not kept
    from pipeline.config import load_preset
    from pipeline.generate import config_fingerprint

    monkeypatch.setenv("CLUSTERMASS_DATA", str(tmp_path))
    old = load_preset("ci", population={"version": 3})
    card = tmp_path / "ci" / "dataset_card.json"
    card.parent.mkdir()
    card.write_text(json.dumps({"name": "clustermass-ci", "version": "0.3.0",
                                "fingerprint": config_fingerprint(old)}))
    assert main(["data", "--preset", "ci"]) == 2
    err = capsys.readouterr().err
    assert "holds clustermass-ci version 0.3.0, made from another configuration" in err
    assert "(dataset version 0.4.0)" in err and "make clean-data PRESET=ci" in err
    assert sorted(p.name for p in card.parent.iterdir()) == ["dataset_card.json"]  # untouched

    # the preset's own configuration passes the check (and meets the next one: not DataLad)
    card.write_text(json.dumps({"fingerprint": config_fingerprint(load_preset("ci"))}))
    assert main(["data", "--preset", "ci"]) == 2
    assert "is not a DataLad dataset" in capsys.readouterr().err


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
    # Whatever versions this machine (or another test) recorded for 'ci' are not this one's.
    monkeypatch.setenv("CLUSTERMASS_EXPECTED_VERSION", str(tmp_path / "no-expectations.json"))
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


# -- export-fits -----------------------------------------------------------------------------------

def fits_env(monkeypatch, tmp_path, n_clusters=10, seed=0) -> Path:
    """A fake dataset, an expectation file of the test's own and a build folder; the dataset."""
    from fakes import write_fake_dataset

    monkeypatch.setenv("CLUSTERMASS_EXPECTED_VERSION", str(tmp_path / "expected.json"))
    monkeypatch.setenv("CLUSTERMASS_BUILD", str(tmp_path / "build"))
    return write_fake_dataset(tmp_path / "ci", n_clusters=n_clusters, n_epochs=1, seed=seed)


def test_export_fits_writes_a_cluster_to_the_build_folder(capsys, tmp_path, monkeypatch):
    from astropy.io import fits

    from benchmark.dataset.loader import ClusterMassDataset

    root = fits_env(monkeypatch, tmp_path)
    assert main(["export-fits", "--preset", "ci", "--dataset", str(root), "--cluster", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "no expected version recorded" in lines[0]  # the harness's version check ran
    paths = [Path(line) for line in lines[1:]]
    assert [p.name for p in paths] == ["c0003_e0_x.fits", "c0003_e0_y.fits", "c0003_e0_z.fits"]
    assert all(p.parent == tmp_path / "build" / "fits" / "ci" for p in paths)
    with fits.open(paths[1]) as hdul:
        counts = hdul[0].data
    assert (counts == ClusterMassDataset(root).images(["c0003_e0_y"])[0]).all()


def test_export_fits_by_id_into_a_chosen_folder(capsys, tmp_path, monkeypatch):
    root = fits_env(monkeypatch, tmp_path)
    out = tmp_path / "out"
    assert main(["export-fits", "--preset", "ci", "--dataset", str(root), "--id", "c0001_e0_x", "c0002_e0_z",
                 "--out", str(out)]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == [str(out / "c0001_e0_x.fits"), str(out / "c0002_e0_z.fits")]


@pytest.mark.parametrize("selection", [[], ["--id", "c0001_e0_x", "--cluster", "1"]], ids=["none", "both"])
def test_export_fits_needs_one_selection(capsys, tmp_path, monkeypatch, selection):
    root = fits_env(monkeypatch, tmp_path)
    assert main(["export-fits", "--preset", "ci", "--dataset", str(root), *selection]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "either --id ID ... or --cluster N" in err[0]
    assert not (tmp_path / "build" / "fits").exists()


def test_export_fits_refuses_another_dataset_version(capsys, tmp_path, monkeypatch):
    from benchmark.dataset.release import record_expected_version
    from fakes import write_fake_dataset

    root = fits_env(monkeypatch, tmp_path)
    record_expected_version(write_fake_dataset(tmp_path / "other", n_clusters=10, n_epochs=1, seed=1), "ci")
    assert main(["export-fits", "--preset", "ci", "--dataset", str(root), "--cluster", "1"]) == 2
    assert "is not the dataset version the project expects" in capsys.readouterr().err
    assert not (tmp_path / "build" / "fits").exists()


def make(tmp_path, *args) -> subprocess.CompletedProcess:
    """``make`` in the project with a fresh venv stamp: recipes run, the venv is left alone."""
    stamp = tmp_path / "stamp"
    stamp.touch()
    return subprocess.run(["make", "-s", "-C", str(Path(__file__).parents[2]), f"STAMP={stamp}", "PRESET=ci",
                           *args], capture_output=True, text=True)


def test_make_fits_needs_id_or_cluster(tmp_path):
    result = make(tmp_path, "fits")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines()[0] == ("error: neither ID nor CLUSTER is set: make fits ID=c0001_e0_x "
                                             "(image ids, see catalog.csv) or make fits CLUSTER=1")
    dry = make(tmp_path, "-n", "fits", "ID=c0001_e0_x c0001_e0_y").stdout.splitlines()[-1].split()
    assert dry[1:] == ["export-fits", "--preset", "ci", "--id", "c0001_e0_x", "c0001_e0_y"]
    dry = make(tmp_path, "-n", "fits", "CLUSTER=4").stdout.splitlines()[-1].split()
    assert dry[1:] == ["export-fits", "--preset", "ci", "--cluster", "4"]


def test_release_archives_by_default_unless_told_not_to():
    parser = build_parser()
    args = parser.parse_args(["release", "--tag", "v1", "--store", "/srv/data/ria-store"])
    assert (args.archive_dir, args.no_archive) == (None, False)  # cmd_release: default_archive_dir(store)
    args = parser.parse_args(["release", "--tag", "v1", "--archive-dir", "out", "--no-archive"])
    assert (args.archive_dir, args.no_archive) == ("out", True)


def test_science_writes_the_check_beside_the_entries(monkeypatch, tmp_path, capsys):
    from lb_helpers import CatalogOnlyDataset, write_entries

    monkeypatch.setenv("CLUSTERMASS_RESULTS", str(tmp_path / "r"))
    monkeypatch.setenv("CLUSTERMASS_DATA", str(tmp_path / "d"))
    write_entries(tmp_path / "r" / "ci" / "entries", CatalogOnlyDataset(n_clusters=40, n_epochs=4),
                  [("reference", "CNN", 0.05, {"kind": "baseline"}),
                   ("lx-iterative", "L_X", 0.07, {"kind": "baseline"})])
    assert main(["science", "--preset", "ci"]) == 0
    page = tmp_path / "r" / "ci" / "science.md"
    assert capsys.readouterr().out.strip() == str(page)
    assert "| CNN, pooled |" in page.read_text()
    assert main(["science", "--preset", "quick"]) == 2  # no entries there: one clear error
    assert "make reference" in capsys.readouterr().err
