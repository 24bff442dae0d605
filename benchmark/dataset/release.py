"""The dataset as a DataLad data product: fetch or regenerate, verify, pin, release.

Every dataset (``data/<preset>/``) is its own DataLad dataset, laid out by the procedure
``datalad/procedures/cfg_clustermass.py``: images annexed under SHA-256 keys, metadata in git.

- :func:`ensure_dataset` (``make data``) clones a given version from a DataLad source and
  fetches its content, or regenerates it with ``datalad run`` (the command goes into the
  dataset's history, so ``datalad rerun`` repeats it); then verifies it. When the asked-for
  version is already present it only verifies it.
- :func:`verify_dataset`: clean work tree, all content present, ``git annex fsck``, the layout
  checker, and the version the project expects.
- :func:`check_expected_version` (called by the harness) compares a dataset with the version
  recorded in ``datalad/expected_version.json``; :func:`check_fingerprint`
  (``clustermass check-version``) compares content only: a regeneration is byte-identical
  to the recorded fingerprint or refused naming both.
- :func:`release` (``make release``) tags a version and pushes it to a RIA store, and writes
  it as a plain archive with a checksum manifest (:mod:`benchmark.dataset.archive`) for users
  without git-annex; ``make data DATASET_SOURCE=<archive>`` registers such an archive as a
  DataLad dataset of the same version (same content fingerprint).

Dataset ids. A regenerated dataset gets DataLad's default, a random UUID, and is therefore a
*different dataset* from the released one even when its files are identical: a DataLad id
names a history (clones share it), and a regenerated history has other commits. Two
datasets are "the same version" when their *content fingerprint* agrees
(:func:`content_fingerprint`); the released id, tag and commit say in addition that it is
the very release. A deterministic id would make the RIA store (which files datasets by id)
treat an unrelated history as the released one and refuse pushes or, worse, mix them.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmark.core import settings
from benchmark.core.errors import DatasetError
from benchmark.core.io import write_json
from benchmark.core.simd import numpy_simd_level, simd_families, simd_family
from benchmark.dataset.archive import (archive_name, extract_verified, fetch_archive,
                                       is_archive_source, write_archive)
from benchmark.dataset.card import read_card
from benchmark.dataset.checker import sha256_file
from benchmark.dataset.croissant import CROISSANT_NAME
from benchmark.dataset.layout import CARD_NAME, CATALOG_NAME, IMAGES_DIR, SPLITS_NAME

__all__ = [
    "ensure_dataset",
    "verify_dataset",
    "check_expected_version",
    "check_fingerprint",
    "content_fingerprint",
    "rendering_simd_level",
    "annexed_sha256",
    "record_expected_version",
    "release",
    "run_recorded",
    "ria_url",
    "expected_version_path",
    "procedures_dir",
    "GENERATION_OUTPUTS",
]

logger = logging.getLogger(__name__)

#: Outputs of the generation step, declared to ``datalad run`` (only these are saved, so an
#: interrupted run's temporary files never enter the history).
GENERATION_OUTPUTS = (f"{IMAGES_DIR}/cluster_*.h5", CATALOG_NAME, SPLITS_NAME, CARD_NAME,
                      CROISSANT_NAME)
FINGERPRINT_FORMAT = "clustermass-content-fingerprint-1"
DEFAULT_SIBLING = "clustermass-store"
_SHA256_KEY = re.compile(r"^SHA256E?-s(\d+)--([0-9a-f]{64})")


# -- environment ------------------------------------------------------------------------

def procedures_dir() -> Path:
    """The project's DataLad procedures (``datalad/procedures``: ``cfg_clustermass``)."""
    return settings.current().datalad_dir / "procedures"


def _prepare_environment() -> None:
    """git-annex and clustermass on PATH, and a git identity for DataLad's commits.

    Both git-annex and the ``clustermass`` console script live beside the interpreter in the
    virtualenv; a caller that did not activate it (an IDE, a notebook) would otherwise get
    "git-annex not found" half-way through a clone.
    """
    bindir = str(Path(sys.executable).parent)
    if bindir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")
    if shutil.which("git-annex") is None:
        raise DatasetError("git-annex is not installed: run `make venv` (it installs the "
                           "git-annex wheel into .venv) or install git-annex.")
    has_name = subprocess.run(["git", "config", "user.name"], capture_output=True, text=True).stdout.strip()
    if not has_name and not os.environ.get("GIT_AUTHOR_NAME"):
        for role in ("AUTHOR", "COMMITTER"):
            os.environ.setdefault(f"GIT_{role}_NAME", "clustermass")
            os.environ.setdefault(f"GIT_{role}_EMAIL", "clustermass@localhost")


@contextlib.contextmanager
def _datalad_overrides(**items):
    """Temporarily set DataLad configuration overrides (like ``datalad -c key=value``)."""
    from datalad import cfg

    old = {key: cfg.overrides.get(key) for key in items}
    for key, value in items.items():
        cfg.set(key, value, scope="override", force=True)
    try:
        yield
    finally:
        for key, value in old.items():
            if value is None:
                cfg.unset(key, scope="override")
            else:
                cfg.set(key, value, scope="override", force=True)


def _git(path: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(["git", "-C", str(path), *args], capture_output=True, text=True)
    if check and result.returncode:
        raise DatasetError(f"`git {' '.join(args)}` failed in {path}: {result.stderr.strip()}")
    return result


def _annex(path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(path), "annex", *args], capture_output=True, text=True)


def _is_dataset(path: Path) -> bool:
    return (path / ".git").exists() and (path / ".datalad" / "config").is_file()


def _is_empty_dir(path: Path) -> bool:
    return path.is_dir() and not any(path.iterdir())


def _rel(path: Path) -> str:
    """A path as the user would type it (relative to the working directory when inside)."""
    try:
        return os.path.relpath(path) if Path(path).resolve().is_relative_to(Path.cwd()) else str(path)
    except ValueError:
        return str(path)


def _dataset_id(path: Path) -> str | None:
    out = _git(path, "config", "-f", ".datalad/config", "datalad.dataset.id", check=False)
    return out.stdout.strip() or None


def _head(path: Path) -> str | None:
    out = _git(path, "rev-parse", "--verify", "-q", "HEAD^{commit}", check=False)
    return out.stdout.strip() or None


def _tags_at_head(path: Path) -> list[str]:
    return _git(path, "tag", "--points-at", "HEAD", check=False).stdout.split()


def _describe(path: Path) -> str:
    """One line naming a dataset's version: card version, tag, commit, dataset id."""
    parts = []
    with contextlib.suppress(DatasetError, ValueError):
        card = read_card(path)
        parts.append(f"{card.name} version {card.version}")
    if _is_dataset(path):
        tags = _tags_at_head(path)
        if tags:
            parts.append("tag " + ",".join(tags))
        head = _head(path)
        parts.append(f"commit {head[:12] if head else 'none'}")
        parts.append(f"dataset id {_dataset_id(path)}")
    return ", ".join(parts) or "unknown version"


# -- fingerprint and expected version ---------------------------------------------------------

def _annex_keys(path: Path) -> dict[str, str]:
    """``{file: key}`` of every annexed file at HEAD, fetched or not."""
    out = _annex(path, "find", "--include=*", "--format=${key}\t${file}\n")
    if out.returncode:
        return {}
    keys = {}
    for line in out.stdout.splitlines():
        key, _, file = line.partition("\t")
        if file:
            keys[file] = key
    return keys


def _key_sha256(key: str) -> tuple[str, str] | None:
    """``(size, sha256)`` carried by an annex key of backend SHA256(E), else None."""
    match = _SHA256_KEY.match(key)
    return (match.group(1), match.group(2)) if match else None


def annexed_sha256(path) -> dict[str, str]:
    """``{file: sha256}`` of the annexed files of ``path`` whose key is a SHA-256 key.

    The digest is read from the key, not from the file: trust it for a file's bytes only
    after ``git annex fsck`` (as :func:`verify_dataset` runs it) and with no unsaved change.
    Empty for a plain folder.
    """
    path = Path(path)
    keys = _annex_keys(path) if _is_dataset(path) else {}
    return {file: sized[1] for file, key in keys.items() if (sized := _key_sha256(key))}


def content_fingerprint(dataset_root) -> str:
    """SHA-256 naming the content of a dataset, however it is stored.

    It hashes a canonical text of: the card's ``name`` and ``version``; the SHA-256 of
    ``splits.json`` and of ``catalog.csv``; and, for every ``images/*.h5`` file, its path,
    size and SHA-256. For annexed files the SHA-256 is read from the annex key (backend
    SHA256E: the key is the content hash), so images need not be fetched; other files are
    hashed. The card's other fields (package versions, descriptions) are left out on
    purpose: two datasets with the same files are the same data.

    Parameters
    ----------
    dataset_root : path-like

    Returns
    -------
    str
        64 hex digits.
    """
    root = Path(dataset_root)
    card = read_card(root)
    lines = [FINGERPRINT_FORMAT, f"name {card.name}", f"version {card.version}"]
    for name in (SPLITS_NAME, CATALOG_NAME):
        if not (root / name).is_file():
            raise DatasetError(f"{_rel(root)}/{name} is missing: run `make data` to fetch or rebuild the dataset.")
        lines.append(f"{name} {sha256_file(root / name)}")
    keys = _annex_keys(root) if _is_dataset(root) else {}
    files = sorted({f for f in keys if f.startswith("images/") and f.endswith(".h5")}
                   | {str(p.relative_to(root)) for p in (root / "images").glob("*.h5")})
    for file in files:
        sized = _key_sha256(keys.get(file, ""))
        if sized:
            size, digest = sized
        else:
            target = root / file
            if not target.exists():
                raise DatasetError(f"{_rel(root)}/{file} has no content and no SHA-256 annex key: "
                                   f"run `datalad get -d {_rel(root)} {file}`.")
            size, digest = str(target.stat().st_size), sha256_file(target)
        lines.append(f"{file} {size} {digest}")
    return hashlib.sha256(("\n".join(lines) + "\n").encode()).hexdigest()


def expected_version_path() -> Path:
    """``$CLUSTERMASS_EXPECTED_VERSION`` or the project's ``datalad/expected_version.json``."""
    return settings.current().expected_version_file


def _load_expected(expected_path=None) -> dict:
    path = Path(expected_path) if expected_path else expected_version_path()
    if not path.is_file():
        return {"schema": 1, "presets": {}}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise DatasetError(f"{path} is not valid JSON ({err}): restore it with `git checkout {path.name}` "
                           "in the project, or fix it by hand.") from None
    data.setdefault("presets", {})
    return data


def check_expected_version(dataset_root, preset: str, expected_path=None) -> str:
    """Refuse a dataset that is not the version the project expects for ``preset``.

    The expectation (``datalad/expected_version.json``, or ``expected_path``) records per
    preset the card version, the content fingerprint and, for a released version, its
    DataLad dataset id, tag and commit. A dataset passes when it *is* that release (same id
    and commit) or has identical content (same fingerprint: e.g. regenerated locally with
    ``make data``); it is refused otherwise. A preset without an entry accepts any dataset.

    Parameters
    ----------
    dataset_root : path-like
    preset : str
        Preset name (``ci``, ``quick``, ...); a path to a preset file counts by its stem.
    expected_path : path-like, optional
        Another expectation file (tests).

    Returns
    -------
    str
        What matched, for the user.

    Raises
    ------
    DatasetError
        Naming the dataset's version, the expected one and how to get it.
    """
    root = Path(dataset_root)
    preset = Path(str(preset)).stem
    entry = _load_expected(expected_path)["presets"].get(preset)
    if not entry:
        return (f"{_rel(root)}: no expected version recorded for preset {preset!r} "
                f"(datalad/expected_version.json); accepted as {_describe(root)}, "
                f"content fingerprint {content_fingerprint(root)[:16]}")
    released = entry.get("release") or {}
    same_release = (_is_dataset(root) and released.get("commit")
                    and _dataset_id(root) == released.get("dataset_id") and _head(root) == released.get("commit"))
    if same_release:
        return f"{_rel(root)} is release {released.get('tag')} of {released.get('dataset_id')} (commit {released['commit'][:12]})"
    fingerprint = content_fingerprint(root)  # only now: for a plain folder it hashes every image
    if fingerprint == entry.get("fingerprint"):
        what = f"release {released['tag']}" if released.get("tag") else f"version {entry.get('version')}"
        return (f"{_rel(root)} is not the released dataset itself ({_describe(root)}) but its content is "
                f"identical to the expected {what} (content fingerprint {fingerprint[:16]}): accepted")
    raise _version_mismatch(root, preset, entry, fingerprint)


def _version_mismatch(root: Path, preset: str, entry: dict, fingerprint: str) -> DatasetError:
    """The refusal of a dataset that is not the expected version: both versions and the fix."""
    released = entry.get("release") or {}
    expected_text = f"version {entry.get('version')}"
    if released:
        expected_text += (f", tag {released.get('tag')}, commit {str(released.get('commit'))[:12]}, "
                          f"dataset id {released.get('dataset_id')}")
    expected_text += f", content fingerprint {str(entry.get('fingerprint'))[:16]}"
    fix = f"Get the expected version: `make clean-data PRESET={preset} && make data PRESET={preset}"
    fix += f" DATASET_SOURCE='{released['url']}'`" if released.get("url") else "` (regenerate it)"
    fix += (". If this dataset is a new version you mean to use, record it with "
            f"`python datalad/record_version.py {_rel(root)} --preset {preset}` (or release it: `make release`).")
    return DatasetError(
        f"{_rel(root)} is not the dataset version the project expects for preset {preset!r}:\n"
        f"  found:    {_describe(root)}, content fingerprint {fingerprint[:16]}\n"
        f"  expected: {expected_text} (datalad/expected_version.json)\n{fix}"
    )


def check_fingerprint(dataset_root, preset: str, expected_path=None) -> str:
    """Check that a dataset's content is byte-identical to the fingerprint recorded for ``preset``.

    Unlike :func:`check_expected_version`, which also accepts the release itself by its id
    and commit, this compares content only: what any machine runs after regenerating a
    preset (``clustermass check-version``) to show that its bytes are the recorded ones.

    Parameters
    ----------
    dataset_root : path-like
        A dataset folder (DataLad dataset or plain folder).
    preset : str
        Preset whose recorded fingerprint applies (a path to a preset file counts by its stem).
    expected_path : path-like, optional
        Another expectation file (default :func:`expected_version_path`).

    Returns
    -------
    str
        One line naming the preset and the fingerprint.

    Raises
    ------
    DatasetError
        No fingerprint recorded for the preset, or a different one: naming the preset and
        both fingerprints in full.
    """
    root = Path(dataset_root)
    preset = Path(str(preset)).stem
    path = Path(expected_path) if expected_path else expected_version_path()
    entry = _load_expected(path)["presets"].get(preset) or {}
    recorded = entry.get("fingerprint")
    if not recorded:
        raise DatasetError(
            f"no content fingerprint is recorded for preset {preset!r} in {path}: record one "
            f"with `make release PRESET={preset}` or `python datalad/record_version.py "
            f"{_rel(root)} --preset {preset}` on the machine whose bytes are the reference.")
    found = content_fingerprint(root)
    if found != recorded:
        raise DatasetError(
            f"preset {preset!r}: {_rel(root)} is not byte-identical to the recorded dataset "
            f"(version {entry.get('version')}):\n"
            f"  regenerated content fingerprint: {found}\n"
            f"  recorded content fingerprint:    {recorded} ({path.name})\n"
            + _family_note(entry.get("numpy_simd")) +
            "Same code and preset should give the same bytes: compare the catalog.csv and "
            "image checksums with the recorded release (`make data "
            f"DATASET_SOURCE=...` fetches it), or check the package versions in the dataset card.")
    return (f"preset {preset!r}: {_rel(root)} is byte-identical to the recorded version "
            f"{entry.get('version')} (content fingerprint {found})")


def rendering_simd_level(card) -> str:
    """The NumPy kernel level that made a dataset's bytes: its rendering workers' as the card
    records them (``numpy_simd.workers``; several joined by ``+`` when they mixed), else, for
    a card without them, this process's."""
    workers = list((card.get("numpy_simd") or {}).get("workers") or [])
    if not workers:
        return numpy_simd_level()
    if len(simd_families(workers)) == 1:
        return workers[-1]
    return "+".join(workers)


def _family_note(recorded_level: str | None) -> str:
    """A line for a fingerprint mismatch when the recording machine's NumPy kernels were of
    another CPU family than this one's (:mod:`benchmark.core.simd`), else nothing."""
    if not recorded_level or simd_family(recorded_level) == simd_family():
        return ""
    return (f"  recorded with NumPy's {simd_family(recorded_level)} kernels ({recorded_level}); "
            f"this machine runs its {simd_family()} kernels ({numpy_simd_level()}): their "
            "float64 results differ in the last bits, so bytes agree within a CPU family only "
            "(see benchmark/core/simd.py for NumPy's switch).\n")


def record_expected_version(dataset_root, preset: str, release_info: dict | None = None,
                            expected_path=None, fingerprint: str | None = None) -> dict:
    """Record ``dataset_root`` as the version the project expects for ``preset``.

    Parameters
    ----------
    dataset_root : path-like
    preset : str
    release_info : dict, optional
        ``dataset_id``, ``tag``, ``commit``, ``url`` of a released version.
    expected_path : path-like, optional
        File to update (default :func:`expected_version_path`).
    fingerprint : str, optional
        :func:`content_fingerprint` of ``dataset_root`` when the caller computed it in this
        run (a plain folder's costs a read of every image); computed here otherwise.

    Returns
    -------
    dict
        The entry written.
    """
    root = Path(dataset_root)
    path = Path(expected_path) if expected_path else expected_version_path()
    card = read_card(root)
    data = _load_expected(path)
    data.setdefault("schema", 1)
    data.setdefault("about", "Dataset version the project expects per preset; see datalad/README.md. "
                             "Written by `clustermass release` and datalad/record_version.py.")
    entry = {
        "name": card.name,
        "version": card.version,
        "source": card.source,
        "renderer": card.renderer,
        "n_images": card.n_images,
        "fingerprint": fingerprint or content_fingerprint(root),
        "fingerprint_format": FINGERPRINT_FORMAT,
        # bytes agree within a CPU family of NumPy's kernels only (benchmark.core.simd)
        "numpy_simd": rendering_simd_level(card),
    }
    if release_info:
        entry["release"] = dict(release_info)
    data["presets"][Path(str(preset)).stem] = entry
    write_json(path, data)
    return entry


# -- verification -----------------------------------------------------------------------------

def _missing_content(path: Path) -> list[str]:
    out = _annex(path, "find", "--not", "--in=here")
    if out.returncode:
        raise DatasetError(f"git annex find failed in {_rel(path)}: {out.stderr.strip()}")
    return out.stdout.split("\n")[:-1] if out.stdout else []


def _unsaved_changes(path: Path) -> list[str]:
    """Modified or deleted tracked files, and untracked files among the images."""
    out = _git(path, "status", "--porcelain", "--untracked-files=all").stdout.splitlines()
    problems = []
    for line in out:
        state, file = line[:2], line[3:]
        if state == "??" and not file.startswith("images/"):
            continue  # a user's notes beside the data do not make it another version
        problems.append(f"{file} ({'untracked' if state == '??' else 'modified'})")
    return problems


def _fsck(path: Path) -> tuple[int, list[str]]:
    """Files checked, and those whose content fails its SHA-256 key (moved to .git/annex/bad)."""
    out = _annex(path, "fsck", "--json", "--json-error-messages")
    checked, bad = 0, []
    for line in out.stdout.splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            record = json.loads(line)
            checked += 1
            if not record.get("success", True):
                bad.append(record.get("file") or record.get("key") or "?")
    if out.returncode and not bad:
        raise DatasetError(f"git annex fsck failed in {_rel(path)}: {out.stderr.strip()[-500:]}")
    return checked, bad


def _remotes_with_copies(path: Path) -> list[str]:
    remotes = _git(path, "remote", check=False).stdout.split()
    return [r for r in remotes if r != "here"]


def verify_dataset(path, preset: str | None = None, expected: bool = True, expected_path=None) -> str:
    """Verify a dataset: saved, content present, ``git annex fsck``, layout checker, version.

    Parameters
    ----------
    path : path-like
        The dataset (a DataLad dataset).
    preset : str, optional
        Preset whose expected version applies (default: the card's ``preset``).
    expected : bool
        Also :func:`check_expected_version` (``release`` turns it off: a new version differs).
    expected_path : path-like, optional

    Returns
    -------
    str
        Summary lines of what was checked.

    Raises
    ------
    DatasetError
        One message naming the problem and the command that fixes it; the dataset is
        left as it is (except that fsck moves a corrupt copy to ``.git/annex/bad``).
    """
    from benchmark.dataset.checker import check_dataset

    root = Path(path).absolute()
    where = _rel(root)
    if not _is_dataset(root):
        raise DatasetError(f"{where} is not a DataLad dataset: run `make data` to fetch or build it.")
    unsaved = _unsaved_changes(root)
    if unsaved:
        raise DatasetError(
            f"{where} has unsaved changes, so it is no longer the recorded version: "
            + ", ".join(unsaved[:10]) + (f" and {len(unsaved) - 10} more" if len(unsaved) > 10 else "")
            + f". Inspect with `datalad status -d {where}`; undo with `git -C {where} checkout -- .` "
            f"(and `git -C {where} clean -n images/`), or save them as a new version with `datalad save -d {where}`."
        )
    missing = _missing_content(root)
    if missing:
        raise DatasetError(
            f"{len(missing)} file(s) of {where} have no content here (not fetched): "
            + ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
            + f". Run `datalad get -d {where} .` (or `make data`)."
        )
    checked, bad = _fsck(root)
    if bad:
        sources = _remotes_with_copies(root)
        fix = (f"Restore from {sources[0]!r}: `datalad get -d {where} {' '.join(bad[:5])}`"
               if sources else "No other copy is known: run `make data` again, which re-renders "
               "the missing files (same seeds, same bytes)")
        raise DatasetError(
            f"{len(bad)} file(s) of {where} failed their SHA-256 check (git annex fsck moved the bad "
            f"copies to .git/annex/bad): {', '.join(bad[:5])}{' ...' if len(bad) > 5 else ''}. {fix}."
        )
    lines = [f"annex fsck: all {checked} annexed files match their SHA-256 keys", check_dataset(root)]
    if expected:
        lines.append(check_expected_version(root, preset or read_card(root).preset, expected_path))
    return "\n".join(lines)


# -- make data --------------------------------------------------------------------------------

def ensure_dataset(preset: str, path, source: str | None = None, workers: int = 1, *,
                   generate_cmd: str | None = None, expected_path=None) -> Path:
    """Fetch (``source``) or regenerate the dataset of ``preset`` in ``path``, then verify it.

    Parameters
    ----------
    preset : str
        ``ci``, ``quick``, ``fast``, ``full`` or a preset file.
    path : path-like
        Dataset folder (``data/<preset>``).
    source : str, optional
        DataLad source: ``ria+file:///STORE#~alias@tag`` (or any RIA URL), a path or a clone
        URL; or an archive of ``make release`` (path or URL ending in ``.tar.gz``), registered
        as a DataLad dataset; without it the dataset is regenerated with ``datalad run``.
    workers : int
        Worker processes of the generation.
    generate_cmd : str, optional
        Command that writes the dataset into the current directory (default
        ``clustermass generate --preset P --out . --workers N``); tests use a tiny one.
    expected_path : path-like, optional
        Expected-version file (default ``datalad/expected_version.json``).

    Returns
    -------
    Path
        The verified dataset.

    Raises
    ------
    DatasetError
        Unreachable source, missing tag, wrong version present, corrupt or unfetched
        content: one message saying what to run; an existing dataset is left intact.
    """
    _prepare_environment()
    path = Path(path).absolute()
    if source and is_archive_source(source):
        report = _ensure_from_archive(preset, path, source, expected_path)
    elif source:
        report = _ensure_from_source(preset, path, source, expected_path)
    else:
        _ensure_regenerated(preset, path, workers, generate_cmd, expected_path)
        report = None
    logger.info(report or verify_dataset(path, preset, expected_path=expected_path))
    logger.info("%s is ready: %s", _rel(path), _describe(path))
    return path


def _ls_remote(source: str) -> tuple[dict, str | None]:
    """``(refs, version)`` of a DataLad source, without cloning it."""
    from datalad.core.distributed.clone_utils import decode_source_spec

    try:
        spec = decode_source_spec(source)
    except ValueError as err:
        raise DatasetError(f"DATASET_SOURCE={source!r} is not a DataLad source ({err}); give "
                           "ria+file:///STORE#~alias@tag, a dataset path or a clone URL.") from None
    giturl = spec["giturl"]
    out = subprocess.run(["git", "ls-remote", giturl], capture_output=True, text=True,
                         env=dict(os.environ, GIT_TERMINAL_PROMPT="0"))
    if out.returncode:
        reason = out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}"
        raise DatasetError(f"cannot reach the DataLad source {source} ({reason}). Check DATASET_SOURCE "
                           "(store path, alias, network), or unset it to regenerate the data locally "
                           "with `make data`. Nothing was changed.")
    refs = {}
    for line in out.stdout.splitlines():
        sha, _, ref = line.partition("\t")
        refs[ref] = sha
    return refs, spec.get("version")


def _resolve(refs: dict, version: str | None, source: str) -> str:
    if version is None:
        if "HEAD" not in refs:
            raise DatasetError(f"the DataLad source {source} has no HEAD: name a version, e.g. {source}@v1.0.")
        return refs["HEAD"]
    for ref in (f"refs/tags/{version}^{{}}", f"refs/tags/{version}", f"refs/heads/{version}"):
        if ref in refs:
            return refs[ref]
    full = [sha for sha in refs.values() if sha.startswith(version)] if re.fullmatch(r"[0-9a-f]{7,40}", version) else []
    if full:
        return full[0]
    tags = sorted({r[len("refs/tags/"):].removesuffix("^{}") for r in refs if r.startswith("refs/tags/")})
    raise DatasetError(f"the DataLad source {source} has no version {version!r} (tags there: "
                       f"{', '.join(tags) or 'none'}). Set DATASET_SOURCE to an existing tag. Nothing was changed.")


def _ensure_from_source(preset: str, path: Path, source: str, expected_path) -> str | None:
    """Clone and fetch ``source`` into ``path``; the verification report when it verified."""
    refs, version = _ls_remote(source)
    want = _resolve(refs, version, source)
    if path.exists() and not _is_empty_dir(path):
        _check_present_version(preset, path, source, want)
        logger.info("%s already holds %s (commit %s): verifying", _rel(path), source, want[:12])
        _get_content(path)
        return None
    return _clone_verified(preset, path, source, want, expected_path)


def _check_present_version(preset: str, path: Path, source: str, want: str) -> None:
    """Refuse a folder that is not a dataset, or holds another commit than ``want``."""
    name = Path(preset).stem
    if not _is_dataset(path):
        raise DatasetError(
            f"{_rel(path)} exists but is not a DataLad dataset; move it away or remove it "
            f"(`make clean-data PRESET={name}`) and run `make data` again.")
    if _head(path) != want:
        raise DatasetError(
            f"{_rel(path)} holds another version than DATASET_SOURCE asks for:\n"
            f"  present:   {_describe(path)}\n"
            f"  requested: {source} (commit {want[:12]})\n"
            f"It was left as it is. To switch: `make clean-data PRESET={name}` then "
            f"`make data PRESET={name} DATASET_SOURCE='{source}'`.")


def _clone_verified(preset: str, path: Path, source: str, want: str, expected_path) -> str:
    """Clone ``source`` at ``want`` into ``path``, fetched and verified; the verification report.

    The clone is made beside the target and moved into place only once complete and
    verified, so an interrupted or failed fetch never leaves a half dataset under the real name.
    """
    import datalad.api as dl

    incoming = _incoming_dir(path)
    try:
        logger.info("cloning %s into %s", source, _rel(path))
        try:
            dl.clone(source=source, path=str(incoming), result_renderer="disabled")
        except Exception as err:  # noqa: BLE001 - DataLad raises several types; all mean "cannot clone"
            raise DatasetError(f"cannot clone {source}: {_short(err)}. Check DATASET_SOURCE. "
                               "Nothing was changed.") from None
        if _head(incoming) != want:
            raise DatasetError(f"the clone of {source} is at {_head(incoming)}, not {want}: the source "
                               "changed while cloning; run `make data` again.")
        _get_content(incoming)
        return _install_verified(incoming, path, preset, expected_path,
                                 f"the copy fetched from {source}")
    finally:
        if incoming.exists():
            shutil.rmtree(incoming, onerror=_force_remove)


def _install_verified(staged: Path, path: Path, preset: str, expected_path, what: str) -> str:
    """Verify the dataset staged beside ``path``, then move it into place; return the report."""
    try:
        report = verify_dataset(staged, preset, expected_path=expected_path)
    except DatasetError as err:
        raise DatasetError(f"{what} fails verification, so it was not installed "
                           f"({_rel(path)} was not changed):\n{err}") from None
    if path.exists():
        path.rmdir()
    os.rename(staged, path)
    _annex(path, "describe", "here", f"clustermass data {path}")  # its name for its remotes
    return report.replace(str(staged), str(path)).replace(_rel(staged), _rel(path))


def _incoming_dir(path: Path) -> Path:
    """A new empty folder beside ``path`` (same file system: it moves into place by a rename).

    Those of an earlier, killed attempt are removed first.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.incoming-*"):
        shutil.rmtree(stale, onerror=_force_remove)
    return Path(tempfile.mkdtemp(prefix=f".{path.name}.incoming-", dir=path.parent))


def _ensure_from_archive(preset: str, path: Path, source: str, expected_path) -> str | None:
    """Fetch and verify an archive of ``make release``, register it as a dataset in ``path``.

    The files are checked (archive checksum, manifest) and saved as a new DataLad dataset
    beside the target, verified like a clone (its content fingerprint is the released
    version's), and moved into place only then: a bad archive leaves nothing behind. A
    ``path`` that already holds the same content is only verified.
    """
    work = _incoming_dir(path)
    try:
        files = extract_verified(fetch_archive(source, work), work / "extracted")
        if path.exists() and not _is_empty_dir(path):
            _check_present_content(preset, path, source, files)
            logger.info("%s already holds the content of %s: verifying", _rel(path), source)
            return None
        dataset = work / "dataset"
        _register(dataset, files, source)
        return _install_verified(dataset, path, preset, expected_path, f"the dataset in {source}")
    finally:
        shutil.rmtree(work, onerror=_force_remove)


def _check_present_content(preset: str, path: Path, source: str, files: Path) -> None:
    """Refuse a folder that is not a dataset, or holds other content than the archive."""
    name = Path(preset).stem
    requested = content_fingerprint(files)
    if not _is_dataset(path) or content_fingerprint(path) != requested:
        raise DatasetError(
            f"{_rel(path)} holds something else than the archive DATASET_SOURCE names:\n"
            f"  present:   {_describe(path)}\n"
            f"  requested: {source} (content fingerprint {requested[:16]})\n"
            f"It was left as it is. To switch: `make clean-data PRESET={name}` then "
            f"`make data PRESET={name} DATASET_SOURCE='{source}'`.")


def _register(dataset: Path, files: Path, source: str) -> None:
    """Create a clustermass dataset in ``dataset`` and save the verified ``files`` in it."""
    import datalad.api as dl

    create_dataset(dataset)
    for file in sorted(p for p in files.rglob("*") if p.is_file()):
        target = dataset / file.relative_to(files)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(file, target)
    card = read_card(dataset)
    dl.save(dataset=str(dataset), message=f"Register {card.name} version {card.version} from the archive "
            f"{Path(source.split('#')[0]).name}", result_renderer="disabled")


def _force_remove(func, target, _exc):
    # annexed objects are read-only; make their folders writable and retry
    os.chmod(Path(target).parent, 0o755)
    if Path(target).is_dir():
        os.chmod(target, 0o755)
    func(target)


def _short(err: Exception) -> str:
    text = str(err).strip().replace("\n", " ")
    return text[-400:]


def _get_content(path: Path) -> None:
    """``datalad get`` every file without content here; one clear error when it cannot."""
    import datalad.api as dl

    missing = _missing_content(path)
    if not missing:
        return
    logger.info("fetching %d file(s)", len(missing))
    try:
        dl.get(path=str(path), dataset=str(path), jobs=settings.current().get_jobs or 2,
               result_renderer="disabled", on_failure="continue")
    except Exception as err:  # noqa: BLE001
        still = _missing_content(path)
        raise DatasetError(f"could not fetch {len(still)} file(s) of {_rel(path)} ({_short(err)}). "
                           f"Check that its store is reachable (`datalad siblings -d {_rel(path)}`) and "
                           f"run `datalad get -d {_rel(path)} .` or `make data` again.") from None


def _generation_command(preset: str, workers: int) -> str:
    from datalad.utils import quote_cmdlinearg

    spec = Path(preset)
    # A preset file outside the package is recorded by absolute path (rerunnable here only).
    name = str(spec.absolute()) if spec.suffix == ".toml" else preset
    return f"clustermass generate --preset {quote_cmdlinearg(name)} --out . --workers {int(workers)}"


def create_dataset(path: Path) -> None:
    """Create an empty clustermass DataLad dataset (procedure ``cfg_clustermass``)."""
    import datalad.api as dl

    overrides = {"datalad.locations.extra-procedures": str(procedures_dir()), "datalad.repo.backend": "SHA256E"}
    with _datalad_overrides(**overrides):
        dl.create(path=str(path), cfg_proc=["clustermass"], result_renderer="disabled")
    for key in overrides:  # create copies overrides into .git/config; they belong to this checkout only
        _git(path, "config", "--unset-all", key, check=False)


def run_recorded(path, cmd: str, outputs, message: str, inputs=None) -> None:
    """Run ``cmd`` in dataset ``path`` with ``datalad run`` and save only ``outputs``.

    For steps that write into the dataset after generation (``clustermass report`` writing
    ``report/``): the command lands in the history like the generation.
    """
    import datalad.api as dl

    _prepare_environment()
    try:
        # A Dataset instance (not a path) makes DataLad run the command in the dataset's root.
        dl.run(cmd=cmd, dataset=dl.Dataset(str(path)), outputs=list(outputs), inputs=list(inputs or []),
               explicit=True, message=message, result_renderer="disabled")
    except Exception as err:  # noqa: BLE001
        raise DatasetError(f"`{cmd}` failed in {_rel(Path(path))} ({_short(err)}); nothing was saved. "
                           "Files it completed are kept: run the same command (`make data`) again to resume.") from None


def _code_version() -> str:
    """The project's commit (``-dirty`` with local changes): files are reproducible for a given code.

    The container image has no ``.git``; its build passes ``CLUSTERMASS_CODE_VERSION`` instead.
    """
    config = settings.current()
    source = config.source_dir
    if not (source / ".git").exists() and config.code_version:
        return config.code_version
    # Read-only git calls: never take the project's index lock (a commit may be under way).
    commit = _git(source, "rev-parse", "--short=12", "HEAD", check=False).stdout.strip()
    if not commit:
        return config.code_version or "unknown"
    dirty = _git(source, "--no-optional-locks", "status", "--porcelain", "--untracked-files=no",
                 check=False).stdout.strip()
    return commit + ("-dirty" if dirty else "")


def _generated(path: Path) -> bool:
    return bool(_git(path, "ls-files", "--", CARD_NAME).stdout.strip())


def _ensure_regenerated(preset: str, path: Path, workers: int, generate_cmd: str | None, expected_path) -> None:
    name = Path(preset).stem
    if path.exists() and not _is_empty_dir(path) and not _is_dataset(path):
        raise DatasetError(
            f"{_rel(path)} exists but is not a DataLad dataset (made without `make data`?). Move it away "
            f"or remove it (`make clean-data PRESET={name}`), then run `make data PRESET={name}`.")
    if not _is_dataset(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        logger.info("creating DataLad dataset %s", _rel(path))
        create_dataset(path)
    todo = _generation_todo(path)
    if todo is None:
        return
    outputs, what = todo
    for stale in (path / IMAGES_DIR).glob(".*.tmp"):
        stale.unlink()  # half-written files of an interrupted run (complete ones are kept)
    cmd = generate_cmd or _generation_command(preset, workers)
    logger.info("generating %s with `datalad run %s`", _rel(path), cmd)
    _run_generation(path, cmd, outputs,
                    f"{what} the clustermass dataset (preset {name}, clustermass code {_code_version()})")


def _generation_todo(path: Path) -> tuple[list[str], str] | None:
    """``(outputs, verb)`` of the generation a dataset needs; None when it needs none."""
    if not (_generated(path) and not _unsaved_changes(path)):
        return list(GENERATION_OUTPUTS), "Generate"
    missing = _missing_content(path)
    if not missing:
        logger.info("%s is present (%s): verifying only", _rel(path), _describe(path))
        return None
    if _remotes_with_copies(path):
        _get_content(path)
        return None
    # Name only the lost files as outputs: `datalad run` unlocks existing outputs, and
    # unlocking every image would change the tree although no byte changes.
    logger.info("%d file(s) of %s lack content and no other copy is known: re-rendering them",
                len(missing), _rel(path))
    return missing + list(GENERATION_OUTPUTS[1:]), "Re-render lost files of"


def _run_generation(path: Path, cmd: str, outputs: list[str], message: str) -> None:
    """``datalad run`` the generation, handing it the finished clusters of an interrupted run."""
    # Absolute: the command runs in the dataset, and its scratch space must not land there.
    build = settings.current().build_dir.absolute()
    resume = _stash_unsaved_images(path, build / "resume" / path.name)
    child = {"CLUSTERMASS_BUILD": str(build)}
    if resume is not None:
        child["CLUSTERMASS_RESUME_DIR"] = str(resume)
    with _environment(child):
        run_recorded(path, cmd, outputs, message)
    if resume is not None:
        shutil.rmtree(resume, ignore_errors=True)  # what the generator did not take was stale


@contextlib.contextmanager
def _environment(values: dict[str, str]):
    """Set environment variables for the child processes of the block (settings passed down)."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _stash_unsaved_images(path: Path, stash: Path) -> Path | None:
    """Move the finished but unsaved cluster files of an interrupted run out of the dataset.

    ``datalad run`` deletes existing untracked files that match its outputs before it runs the
    command, which would throw away every cluster an interrupted run finished. They wait in
    ``stash`` instead, and the generator takes back those made with the same configuration
    (``CLUSTERMASS_RESUME_DIR``): same bytes, no re-rendering.
    """
    untracked = _git(path, "ls-files", "--others", "--exclude-standard", "--", "images").stdout.split()
    finished = [path / f for f in untracked if re.fullmatch(r"images/cluster_\d+\.h5", f)]
    for file in finished:
        (stash / "images").mkdir(parents=True, exist_ok=True)
        shutil.move(str(file), str(stash / "images" / file.name))  # the dataset's layout
    # A run that failed before taking them back left them here: they still count.
    waiting = sorted((stash / "images").glob("cluster_*.h5"))
    if not waiting:
        return None
    logger.info("%d cluster file(s) of an interrupted run kept aside in %s for reuse", len(waiting), _rel(stash))
    return stash


# -- make release -----------------------------------------------------------------------------

def ria_url(store) -> str:
    """``ria+file:///abs/path`` for a local store path; a ``ria+...`` URL unchanged."""
    store = str(store)
    if store.startswith("ria+"):
        return store.rstrip("/")
    return "ria+file://" + str(Path(store).expanduser().absolute())


def _sibling_for(path: Path, url: str, store_root: Path | None) -> tuple[str, bool]:
    """Name of the sibling that points at this store, and whether it already exists."""
    remotes = _git(path, "remote", check=False).stdout.split()
    for remote in remotes:
        remote_url = _git(path, "config", f"remote.{remote}.url", check=False).stdout.strip()
        local = remote_url[len("file://"):] if remote_url.startswith("file://") else remote_url
        if store_root is not None and local.startswith("/") and \
                Path(local).resolve().is_relative_to(store_root.resolve()):
            return remote, True
    name, n = DEFAULT_SIBLING, 1
    while name in remotes or f"{name}-storage" in remotes:
        n += 1
        name = f"{DEFAULT_SIBLING}-{n}"
    return name, False


def release(path, store, tag: str, alias: str | None = None, *, preset: str | None = None,
            record: bool = True, expected_path=None, archive_dir=None) -> str:
    """Tag the dataset in ``path`` as ``tag`` and push it, with the tag, to a RIA store.

    With ``archive_dir`` it also writes the version as a plain archive,
    ``<archive_dir>/<alias>-<tag>.tar.gz`` and its ``.sha256`` (:mod:`benchmark.dataset.archive`).

    Parameters
    ----------
    path : path-like
        A verified, saved clustermass dataset on a branch.
    store : str or path-like
        Local store folder (created when new) or a ``ria+...`` URL.
    tag : str
        Version tag, e.g. ``v1.0``. An existing tag must point at the current commit.
    alias : str, optional
        Store alias (default: the card's ``name``, e.g. ``clustermass-ci``).
    preset : str, optional
        Preset whose expected version the release becomes (default: the card's ``preset``).
    record : bool
        Record the release as the project's expected version for the preset.
    expected_path : path-like, optional
    archive_dir : path-like, optional
        Folder of the plain archive (``make release``: :func:`~benchmark.dataset.archive.default_archive_dir`).

    Returns
    -------
    str
        Clone URL ``ria+file:///STORE#~alias@tag``.
    """
    _prepare_environment()
    root = Path(path).absolute()
    if not _is_dataset(root):
        raise DatasetError(f"{_rel(root)} is not a DataLad dataset: run `make data` first.")
    card = read_card(root)
    preset = Path(str(preset or card.preset or root.name)).stem
    logger.info(verify_dataset(root, preset, expected=False))
    # Once per run, and only now that fsck has checked every annexed file against its key.
    fingerprint = content_fingerprint(root)
    head = _tag(root, tag, card, fingerprint)
    url = ria_url(store)
    alias = alias or re.sub(r"[^A-Za-z0-9._-]", "-", card.name or f"clustermass-{preset}")
    dsid = _dataset_id(root)
    _push(root, url, alias, tag, dsid)
    clone_url = f"{url}#~{alias}@{tag}"
    if record:
        record_expected_version(root, preset, {
            "dataset_id": dsid, "tag": tag, "commit": head, "url": clone_url,
        }, expected_path, fingerprint)
    message = (f"released {_describe(root)} to {url}\n"
               f"clone it with:  datalad clone '{clone_url}' mocks\n"
               f"pin it with:    datalad clone -d . '{clone_url}' inputs/mocks\n"
               f"or fetch it:    make data PRESET={preset} DATASET_SOURCE='{clone_url}'")
    if archive_dir is not None:
        # The manifest takes the images' digests from their keys (fsck checked them above).
        archive = write_archive(root, Path(archive_dir) / archive_name(alias, tag),
                                known_sha256=annexed_sha256(root))
        message += (f"\nwithout git-annex: make data PRESET={preset} DATASET_SOURCE='{archive}'"
                    f" (archive {_rel(archive)}, checksum {_rel(archive)}.sha256)")
    logger.info(message)
    return clone_url


def _tag(root: Path, tag: str, card, fingerprint: str) -> str:
    """Tag the current commit of ``root`` as ``tag`` (or find it tagged); return the commit.

    ``fingerprint`` (:func:`content_fingerprint` of ``root``) goes into a new tag's message.
    """
    where = _rel(root)
    if _git(root, "symbolic-ref", "-q", "HEAD", check=False).returncode:
        raise DatasetError(f"{where} is not on a branch (a clone sits detached at its tag): release "
                           f"from the maintainer's dataset, or `git -C {where} switch -c <branch>` first.")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", tag):
        raise DatasetError(f"tag {tag!r} is not a plain version tag: use letters, digits, '.', '_', '-' (e.g. v1.0).")
    head = _head(root)
    existing = _git(root, "rev-parse", "-q", "--verify", f"refs/tags/{tag}^{{commit}}", check=False).stdout.strip()
    if existing and existing != head:
        raise DatasetError(f"tag {tag} already names commit {existing[:12]} of {where}, not the current "
                           f"{head[:12]}: choose a new tag for a new version.")
    if not existing:
        _git(root, "tag", "-a", tag, "-m",
             f"{card.name} version {card.version} (content fingerprint {fingerprint[:16]})")
    return head


def _check_alias(root: Path, store_root: Path, alias: str, dsid: str) -> None:
    """Refuse an alias that already names another dataset in a local store."""
    alias_link = store_root / "alias" / alias
    if not alias_link.exists():
        return
    other = alias_link.resolve()
    if other != (store_root / dsid[:3] / dsid[3:]).resolve():
        raise DatasetError(
            f"alias {alias!r} in {store_root} already names another dataset ({other.relative_to(store_root.resolve())}); "
            f"{_rel(root)} has dataset id {dsid}. New versions belong in the same dataset (new commits, "
            "new tags); to publish this one anyway pick another alias (`clustermass release --alias ...`).")


def _push(root: Path, url: str, alias: str, tag: str, dsid: str) -> None:
    """Push ``root``, its annexed content and ``tag`` to the RIA store at ``url``."""
    import datalad.api as dl

    store_root = Path(url[len("ria+file://"):]) if url.startswith("ria+file://") else None
    if store_root is not None:
        _check_alias(root, store_root, alias, dsid)
    sibling, known = _sibling_for(root, url, store_root)
    try:
        if not known:
            dl.create_sibling_ria(url=url, name=sibling, dataset=str(root), alias=alias, new_store_ok=True,
                                  existing="skip", result_renderer="disabled")
        dl.push(dataset=str(root), to=sibling, data="anything", result_renderer="disabled")
    except Exception as err:  # noqa: BLE001
        raise DatasetError(f"could not push {_rel(root)} to {url} ({_short(err)}). Check that the store "
                           "is writable; the tag stays local and the push can be retried.") from None
    # `datalad push` pushes branches and the annex, not tags.
    _git(root, "push", sibling, f"refs/tags/{tag}")
    not_stored = _annex(root, "find", "--not", f"--in={sibling}-storage").stdout.split("\n")[:-1]
    if not_stored:
        raise DatasetError(f"{len(not_stored)} file(s) did not reach the store: {', '.join(not_stored[:5])}. "
                           "Run `make release` again.")
