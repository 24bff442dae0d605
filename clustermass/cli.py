"""The one command line of clustermass: ``clustermass <subcommand>``, behind every Make target.

Imports are deferred to the subcommand that needs them, so that ``clustermass --help`` and
input errors answer at once instead of after loading TensorFlow, yt and DataLad.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from benchmark.core import settings
from benchmark.core.errors import ClusterMassError
from benchmark.core.log import setup_logging
from benchmark.dataset.layout import CARD_NAME


def data_dir(args) -> Path:
    """The dataset folder of a preset: ``data/<preset>`` unless ``--dataset`` says otherwise."""
    if getattr(args, "dataset", None):
        return Path(args.dataset)
    return settings.current().data_dir(Path(args.preset).stem)


def results_dir(args) -> Path:
    """Training outputs and entries of a preset: ``results/<preset>``."""
    return settings.current().results_dir(Path(args.preset).stem)


def checked_dataset(args) -> Path:
    """The dataset folder of a harness command, refused unless it is the expected version."""
    from benchmark.dataset.release import check_expected_version

    root = data_dir(args)
    if not (root / CARD_NAME).is_file():
        raise ClusterMassError(
            f"no dataset in {root}: run `make data PRESET={Path(args.preset).stem}` first "
            "(or give --dataset DIR)"
        )
    print(check_expected_version(root, Path(args.preset).stem))
    return root


def parse_overrides(items: list[str]) -> dict:
    """Turn ``--set population.n_clusters=12`` items into per-section override dicts."""
    import tomllib

    overrides: dict[str, dict] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        section, dot, name = key.partition(".")
        if not (sep and dot and section and name):
            raise ClusterMassError(
                f"--set {item!r} is malformed: write --set section.key=value, "
                "e.g. --set population.n_clusters=12"
            )
        try:
            parsed = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            parsed = value  # a bare word is a string
        overrides.setdefault(section, {})[name] = parsed
    return overrides


def cmd_generate(args) -> None:
    from pipeline.config import load_preset
    from pipeline.generate import generate

    config = load_preset(args.preset, **parse_overrides(args.set))
    log = settings.current().build_dir / "logs" / f"generate-{config.dataset.name}.jsonl"
    generate(config, Path(args.out), workers=args.workers, scheduler=args.scheduler, timings_log=log)


def cmd_check(args) -> None:
    from benchmark.dataset.checker import check_dataset

    report = check_dataset(Path(args.path))
    print(report)


def cmd_data(args) -> None:
    from pipeline.config import load_preset
    from benchmark.dataset.release import ensure_dataset

    config = load_preset(args.preset)  # a bad preset fails here, before a dataset folder is created
    source = args.source or settings.current().make.get("DATASET_SOURCE")
    if not source:
        refuse_another_configuration(config, data_dir(args), args.preset)

    ensure_dataset(preset=args.preset, path=data_dir(args), source=source, workers=args.workers)


def refuse_another_configuration(config, root: Path, preset: str) -> None:
    """Stop ``make data`` from keeping, as if it were the preset's, a finished dataset made
    from another configuration (e.g. an earlier population version after the default moved)."""
    import json

    from pipeline.generate import config_fingerprint

    card_path = root / CARD_NAME
    if not card_path.is_file():
        return  # nothing yet, or an interrupted run: the generation resumes or starts it
    card = json.loads(card_path.read_text())
    recorded = card.get("fingerprint")
    if not recorded or recorded == config_fingerprint(config):
        return
    name, version = Path(preset).stem, card.get("version", "?")
    raise ClusterMassError(
        f"{root} holds {card.get('name', 'a dataset')} version {version}, made from another "
        f"configuration than preset {name} now gives (dataset version {config.dataset.version}). "
        f"Move it away (`mv {root} {root}-{version}`) or remove it (`make clean-data PRESET={name}`), "
        f"then run `make data PRESET={name}`; to keep using it, point PRESET at a preset file "
        "with its configuration (its dataset_card.json records it).")


def fold_groups(folds: list[int], jobs: int) -> list[list[int]]:
    """Deal ``folds`` round-robin into at most ``jobs`` non-empty groups."""
    return [g for g in (folds[i::jobs] for i in range(jobs)) if g]


def train_in_parallel(args, folds: list[int]) -> None:
    """Train disjoint fold groups in ``args.jobs`` child processes of one thread each.

    Independent single-threaded processes scale where one TensorFlow process does not use all
    cores (on the 2-core development machine 1.1-1.6x; README, FOLD_JOBS). Each fold is written atomically, so
    the children never touch the same files, and a failed child leaves the others' folds done.
    """
    import subprocess

    env = dict(os.environ, OMP_NUM_THREADS="1", TF_NUM_INTRAOP_THREADS="1", TF_NUM_INTEROP_THREADS="1")
    base = [sys.executable, "-m", "clustermass.cli", "train", "--preset", args.preset,
            "--seeds", *map(str, args.seeds), "--diagnostics-clusters", "0", "--jobs", "1"]
    if args.schedule:
        base += ["--schedule", args.schedule]
    if args.dataset:
        base += ["--dataset", str(args.dataset)]
    for entry in args.entry:
        base += ["--entry", entry]
    groups = fold_groups(folds, args.jobs)
    children = [subprocess.Popen(base + ["--folds", *map(str, group)], env=env) for group in groups]
    failed = [group for child, group in zip(children, groups) if child.wait() != 0]
    if failed:
        raise ClusterMassError(f"training of folds {failed} failed (see above); finished folds are "
                               "kept: run the same command again to resume.")


def cmd_train(args) -> None:
    from benchmark.training import train_baselines

    if args.jobs < 1:
        raise ClusterMassError(f"--jobs {args.jobs}: need at least 1 process.")
    if args.schedule:
        from benchmark.models.cnn import check_schedule

        check_schedule(args.schedule)
    dataset = checked_dataset(args)
    if args.jobs > 1:
        from benchmark.dataset.loader import ClusterMassDataset

        n_folds = ClusterMassDataset(dataset).n_folds
        train_in_parallel(args, list(args.folds) if args.folds else list(range(n_folds)))
    written = train_baselines(
        dataset,
        results_dir(args),
        entries=args.entry,
        seeds=tuple(args.seeds),
        folds=tuple(args.folds) if args.folds else None,
        preset=Path(args.preset).stem,
        schedule=args.schedule,
    )
    if args.diagnostics_clusters > 0:
        for entry_path in written:
            diagnose(args, Path(entry_path))


def diagnose(args, entry_path: Path) -> None:
    """Interpretation diagnostics of a harness-trained entry, attached to its entry file."""
    from benchmark.diagnostics import diagnose_entry

    run_name = entry_path.name[: -len(".json")]
    run_dir = results_dir(args) / "runs" / run_name
    if not run_dir.is_dir():
        raise ClusterMassError(f"no trained models for {run_name} in {run_dir}: train the entry first")
    summary = diagnose_entry(run_dir, data_dir(args), entry_path=entry_path,
                             n_clusters_per_fold=args.diagnostics_clusters)
    ratio = summary.get("core_sensitivity")
    print(f"{run_name}: core sensitivity (occlusion) {ratio if ratio is None else round(ratio, 3)}")


def cmd_evaluate(args) -> None:
    from benchmark.evaluate import evaluate_submission

    entry_path = Path(evaluate_submission(
        Path(args.submission), checked_dataset(args), results_dir(args),
        seeds=tuple(args.seeds) if args.seeds else None, preset=Path(args.preset).stem,
        overwrite=args.force, unsandboxed=args.unsandboxed, jobs=args.jobs,
    ))
    print(f"entry written: {entry_path}")


def cmd_leaderboard(args) -> None:
    from leaderboard.render import render_site
    from benchmark.dataset.loader import ClusterMassDataset

    entries = [results_dir(args) / "entries"] + [Path(p) for p in args.entries]
    site = render_site(entries, ClusterMassDataset(checked_dataset(args)), Path(args.out))
    print(f"leaderboard: {site}")


def cmd_diagnostics(args) -> None:
    entry_path = results_dir(args) / "entries" / f"{args.entry}.json"
    if not entry_path.is_file():
        raise ClusterMassError(f"entry {entry_path} does not exist: train it first (make reference / make baselines)")
    diagnose(args, entry_path)


def cmd_release(args) -> None:
    from benchmark.dataset.archive import default_archive_dir
    from benchmark.dataset.release import release

    archive_dir = None if args.no_archive else Path(args.archive_dir or default_archive_dir(args.store))
    release(data_dir(args), store=args.store, tag=args.tag, alias=args.alias, archive_dir=archive_dir)


def cmd_check_version(args) -> None:
    from benchmark.dataset.release import check_fingerprint

    print(check_fingerprint(data_dir(args), args.preset))


def cmd_export_fits(args) -> None:
    from benchmark.dataset.fits import export_fits
    from benchmark.dataset.loader import ClusterMassDataset

    if (args.id is None) == (args.cluster is None):
        raise ClusterMassError("export-fits needs either --id ID ... or --cluster N (not both)")
    out = Path(args.out) if args.out else settings.current().build_dir / "fits" / Path(args.preset).stem
    dataset = ClusterMassDataset(checked_dataset(args))
    for path in export_fits(dataset, out, image_ids=args.id, cluster_id=args.cluster):
        print(path)


def cmd_report(args) -> None:
    from pipeline.report import write_dataset_report

    print(write_dataset_report(data_dir(args)))


def cmd_science(args) -> None:
    from leaderboard.science import write_science_check

    results = results_dir(args)
    report = data_dir(args) / "report" / "observables.md"
    print(write_science_check(results / "entries", Path(args.out) if args.out else results, report))


def cmd_testsets(args) -> None:
    """The shift track's test sets beside the dataset, or (--hidden) the maintainer's set."""
    from pipeline.config import load_preset
    from pipeline.testsets import generate_hidden, generate_testsets

    config = load_preset(args.preset)
    root = data_dir(args)
    if not (root / CARD_NAME).is_file():
        raise ClusterMassError(f"no dataset in {root}: run `make data PRESET="
                               f"{Path(args.preset).stem}` first")
    here = settings.current()
    if args.hidden:
        out = generate_hidden(config, root, here.hidden_root, here.hidden_secret_file,
                              workers=args.workers, scheduler=args.scheduler)
        print(f"hidden set written to {out} (keep it there; never commit it)")
        return
    for out in generate_testsets(config, root, names=args.only, workers=args.workers,
                                 scheduler=args.scheduler):
        print(f"test set {out}")


def cmd_format(args) -> None:
    from benchmark.sandbox import code_protocol
    from benchmark.submission import EXPECTED_FORMAT

    print(EXPECTED_FORMAT)
    print(code_protocol())


def build_parser() -> argparse.ArgumentParser:
    config = settings.current()
    make = config.make  # the Make variables are the defaults of the command line
    parser = argparse.ArgumentParser(prog="clustermass", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name, func, help_):
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(func=func)
        return p

    def with_preset(p):
        p.add_argument("--preset", default=make.get("PRESET", "quick"),
                       help="ci | quick | fast | full, or a preset .toml file (default: quick)")
        p.add_argument("--dataset", help="dataset folder (default: data/<preset>)")
        return p

    p = add("generate", cmd_generate, "Generate mock images into a folder (the step `datalad run` records).")
    p.add_argument("--preset", required=True)
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--workers", type=int, default=1, help="parallel worker processes (Dask)")
    p.add_argument("--scheduler", default=config.dask_scheduler,
                   help="address of an existing Dask scheduler, e.g. tcp://host:8786")
    p.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE",
                   help="override one preset value (repeatable)")

    p = add("check", cmd_check, "Check a dataset folder against the HDF5 layout spec.")
    p.add_argument("path")

    p = with_preset(add("data", cmd_data, "Fetch (DATASET_SOURCE) or regenerate the dataset, then verify it."))
    p.add_argument("--source", help="DataLad source: RIA URL with #~alias@tag, a path or a clone URL; "
                                    "or an archive of `make release` (.tar.gz path, file:// or https:// URL)")
    p.add_argument("--workers", type=int, default=int(make.get("WORKERS", "1")))

    p = with_preset(add("train", cmd_train, "Train baseline entries fold by fold and score them."))
    p.add_argument("--entry", action="append", required=True,
                   help="reference, reference_z, reference_gauss, reference_ensemble, "
                        "lx_iterative, lx_truth, mean, total_counts, oracle_mgas, oracle_yx, "
                        "oracle_lx_t (repeatable)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--folds", type=int, nargs="+", help="subset of folds (default: all)")
    p.add_argument("--schedule", default=make.get("SCHEDULE"),
                   help="CNN training schedule of another preset (ci, quick, fast, full; "
                        "default: the dataset preset's own)")
    p.add_argument("--jobs", type=int, default=int(make.get("FOLD_JOBS", "1")),
                   help="train folds in this many single-threaded processes (default 1; "
                        "measured 1.1-1.6x with 2 on 2 cores, more where cores are many)")
    p.add_argument("--diagnostics-clusters", type=int, default=int(make.get("DIAG_CLUSTERS", "8")),
                   help="test clusters per fold for the interpretation diagnostics (0: skip)")

    p = with_preset(add("evaluate", cmd_evaluate, "Validate and score a submission (predictions or code)."))
    p.add_argument("submission", help="folder or file of the submission (see `clustermass format`)")
    p.add_argument("--seeds", type=int, nargs="+", default=None,
                   help="training seeds of a code submission (default 0 1 2; a ranked code "
                        "entry needs three)")
    p.add_argument("--force", action="store_true", help="replace an existing entry of the same name")
    p.add_argument("--unsandboxed", action="store_true",
                   help="train a code submission without the bubblewrap sandbox, where it cannot "
                        "start; the entry is then not trusted")
    p.add_argument("--jobs", type=int, default=int(make.get("FOLD_JOBS", "1")),
                   help="sandboxed folds of a code submission run as this many Dask tasks at a "
                        "time (DASK_SCHEDULER=address for a cluster; default 1: in turn)")

    p = with_preset(add("leaderboard", cmd_leaderboard, "Render the static leaderboard site."))
    p.add_argument("--out", default="leaderboard/site")
    p.add_argument("--entries", nargs="*", default=[], help="extra folders of entry files")

    p = with_preset(add("diagnostics", cmd_diagnostics, "Interpretation diagnostics of a trained entry."))
    p.add_argument("--entry", required=True, help="entry slug, e.g. reference")
    p.add_argument("--diagnostics-clusters", type=int, default=8, help="test clusters per fold")

    p = with_preset(add("release", cmd_release, "Tag the dataset and push it to a RIA store."))
    p.add_argument("--store", default=make.get("STORE", "data/ria-store"))
    p.add_argument("--tag", required=True)
    p.add_argument("--alias", default=None)
    p.add_argument("--archive-dir", default=None,
                   help="folder of the plain .tar.gz archive (default: archives/ beside a local store)")
    p.add_argument("--no-archive", action="store_true", help="push to the store only")

    with_preset(add("check-version", cmd_check_version,
                    "Check that the dataset's content is byte-identical to the fingerprint "
                    "recorded for the preset (datalad/expected_version.json)."))

    with_preset(add("report", cmd_report, "Write the dataset's science report (relations, plots)."))

    p = with_preset(add("science", cmd_science,
                        "Compare the reference CNN with the L_X baselines, per fold and pooled, and "
                        "both with the study (writes science.md beside the entries)."))
    p.add_argument("--out", help="output folder (default: results/<preset>)")

    p = with_preset(add("export-fits", cmd_export_fits,
                        "Write images as FITS files with a celestial WCS and the truth as header cards."))
    p.add_argument("--id", nargs="+", help="image ids, e.g. c0001_e0_x")
    p.add_argument("--cluster", type=int, help="instead: every image of this cluster id")
    p.add_argument("--out", help="output folder (default: build/fits/<preset>)")

    p = with_preset(add("testsets", cmd_testsets,
                        "Generate the shift track's test sets in data/<preset>/testsets/ (or, with "
                        "--hidden, the maintainer's hidden set from HIDDEN_SECRET)."))
    p.add_argument("--only", nargs="+", help="sets to make (default: all)")
    p.add_argument("--hidden", action="store_true",
                   help="make the hidden set in CLUSTERMASS_HIDDEN/<preset> instead")
    p.add_argument("--workers", type=int, default=int(make.get("WORKERS", "1")))
    p.add_argument("--scheduler", default=config.dask_scheduler,
                   help="address of an existing Dask scheduler, e.g. tcp://host:8786")

    add("format", cmd_format, "Print the expected submission format.")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging()
    start = time.perf_counter()
    try:
        args.func(args)
    except ClusterMassError as err:
        print(f"clustermass {args.command}: error: {err}", file=sys.stderr)
        return 2
    if settings.current().timing:
        print(f"[{args.command} took {time.perf_counter() - start:.1f} s]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
