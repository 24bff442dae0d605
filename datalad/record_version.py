#!/usr/bin/env python3
"""Record a dataset as the version the project expects for a preset.

    python datalad/record_version.py data/ci --preset ci [--tag v1.0 --url 'ria+file:///...#~alias@v1.0']

Writes the preset's entry of datalad/expected_version.json (or $CLUSTERMASS_EXPECTED_VERSION):
card version, content fingerprint and, with --tag, the release (dataset id, tag, commit, url).
`clustermass release` does this itself; use this script to pin content that is not released
(e.g. the ci preset, which every checkout regenerates) or to accept a newer version.
Commit the changed file afterwards.
"""
import argparse
import json
import subprocess
import sys

from benchmark.core.errors import ClusterMassError
from benchmark.dataset.release import expected_version_path, record_expected_version


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", help="dataset folder, e.g. data/ci")
    parser.add_argument("--preset", required=True)
    parser.add_argument("--tag", help="release tag (records dataset id, commit and url too)")
    parser.add_argument("--url", help="clone URL of the release, e.g. ria+file:///store#~alias@tag")
    args = parser.parse_args(argv)
    info = None
    if args.tag:
        def git(*cmd):
            return subprocess.run(["git", "-C", args.dataset, *cmd], capture_output=True, text=True,
                                  check=True).stdout.strip()
        info = {
            "dataset_id": git("config", "-f", ".datalad/config", "datalad.dataset.id"),
            "tag": args.tag,
            "commit": git("rev-parse", f"refs/tags/{args.tag}^{{commit}}"),
            "url": args.url or "",
        }
    try:
        entry = record_expected_version(args.dataset, args.preset, info)
    except ClusterMassError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"recorded in {expected_version_path()}:\n{json.dumps({args.preset: entry}, indent=2)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
