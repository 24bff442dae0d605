"""A dataset version as one plain archive, for users without git-annex.

``make release`` writes, beside the RIA store (:func:`default_archive_dir`), a gzip-compressed
tar of the dataset files and a checksum of it:

- ``<alias>-<tag>.tar.gz``: one top folder ``<alias>-<tag>/`` holding ``MANIFEST.sha256``
  (``sha256sum`` format: ``cd <alias>-<tag> && sha256sum -c MANIFEST.sha256`` checks it), the
  catalog, the splits, the card, ``croissant.json`` when the dataset has one, and
  ``images/cluster_*.h5``, as real files (annexed content dereferenced); no DataLad or git
  internals.
- ``<alias>-<tag>.tar.gz.sha256``: the archive's own checksum (``sha256sum -c`` format).

The archive is deterministic: members sorted by name, no directory entries, mtime
:data:`ARCHIVE_MTIME`, uid/gid 0 without names, mode 0644, gzip header without name and
with mtime 0. The same files give the same bytes (for a given zlib).

:func:`fetch_archive` and :func:`extract_verified` are the reading side: the archive's
checksum when a sidecar is present, safe extraction (regular files under one top folder
only), and every manifest checksum with the manifest listing exactly the files present.
:func:`benchmark.dataset.release.ensure_dataset` then registers the files as a DataLad
dataset (``make data DATASET_SOURCE=<archive>``).
"""
from __future__ import annotations

import gzip
import io
import logging
import re
import shutil
import tarfile
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

from benchmark.core import settings
from benchmark.core.errors import DatasetError, format_problems
from benchmark.core.io import atomic_path, write_text
from benchmark.dataset.checker import sha256_file
from benchmark.dataset.croissant import CROISSANT_NAME
from benchmark.dataset.layout import CARD_NAME, CATALOG_NAME, IMAGES_DIR, SPLITS_NAME

__all__ = ["ARCHIVE_MTIME", "MANIFEST_NAME", "archive_name", "default_archive_dir",
           "dataset_files", "write_archive", "is_archive_source", "fetch_archive", "extract_verified"]

logger = logging.getLogger(__name__)

MANIFEST_NAME = "MANIFEST.sha256"
#: Modification time of every member (the epoch): the archive's bytes depend on content only.
ARCHIVE_MTIME = 0
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz")
_COMPRESSLEVEL = 6  # the images are mostly empty pixels: level 9 costs time and saves little
_MANIFEST_LINE = re.compile(r"^([0-9a-f]{64}) [ *](.+)$")


# -- writing ----------------------------------------------------------------------------------

def archive_name(alias: str, tag: str) -> str:
    """``<alias>-<tag>.tar.gz``, e.g. ``clustermass-quick-v1.0.tar.gz``."""
    return f"{alias}-{tag}.tar.gz"


def default_archive_dir(store) -> Path:
    """Where ``make release`` puts archives: ``archives/`` beside a local RIA store.

    For ``data/ria-store`` (or ``ria+file:///.../ria-store``) that is ``data/archives``; a
    remote store (``ria+ssh://``, ``ria+http://``) has no local folder, so archives go to
    ``<data_root>/archives``.
    """
    store = str(store)
    if store.startswith("ria+file://"):
        store = store[len("ria+file://"):]
    elif store.startswith("ria+") or "://" in store:
        return settings.current().data_root / "archives"
    return Path(store.split("#")[0]).expanduser().absolute().parent / "archives"


def dataset_files(root) -> list[str]:
    """The files of a dataset an archive holds, relative and sorted."""
    root = Path(root)
    names = [name for name in (CATALOG_NAME, SPLITS_NAME, CARD_NAME, CROISSANT_NAME) if (root / name).is_file()]
    names += [f"{IMAGES_DIR}/{p.name}" for p in (root / IMAGES_DIR).glob("cluster_*.h5")]
    return sorted(names)


def _member(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, ARCHIVE_MTIME, 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def write_archive(root, path, known_sha256: Mapping[str, str] | None = None) -> Path:
    """Write the dataset in ``root`` as the deterministic archive ``path`` and its sidecar.

    Parameters
    ----------
    root : path-like
        A dataset whose content is present (annexed files are read through their links).
    path : path-like
        ``<folder>/<name>.tar.gz``; the top folder inside is ``<name>``.
    known_sha256 : mapping, optional
        ``{file: sha256}`` already verified in this run (annex keys after ``git annex
        fsck``): the manifest takes these instead of reading the files once more.

    Returns
    -------
    Path
        ``path``; ``path.sha256`` lies beside it.
    """
    root, path = Path(root), Path(path)
    top = path.name.removesuffix(".tar.gz").removesuffix(".tgz")
    files = dataset_files(root)
    if CARD_NAME not in files:
        raise DatasetError(f"{root} has no {CARD_NAME}: only a complete dataset can be archived.")
    known = known_sha256 or {}
    manifest = "".join(f"{known.get(f) or sha256_file(root / f)}  {f}\n" for f in files).encode()
    sidecar = path.with_name(path.name + ".sha256")
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as raw, \
                gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=_COMPRESSLEVEL) as gz, \
                tarfile.open(fileobj=gz, mode="w", format=tarfile.USTAR_FORMAT) as tar:
            for name in sorted([MANIFEST_NAME, *files]):
                if name == MANIFEST_NAME:
                    tar.addfile(_member(f"{top}/{name}", len(manifest)), io.BytesIO(manifest))
                    continue
                with open(root / name, "rb") as handle:
                    tar.addfile(_member(f"{top}/{name}", (root / name).stat().st_size), handle)
        digest = sha256_file(tmp)
        sidecar.unlink(missing_ok=True)  # never a new archive beside the old one's checksum
    write_text(sidecar, f"{digest}  {path.name}\n")
    logger.info("wrote the archive %s (%d files, sha256 %s)", path, len(files), digest[:16])
    return path


# -- reading ----------------------------------------------------------------------------------

def _location(source: str) -> str:
    return source.split("#")[0].split("?")[0]


def is_archive_source(source: str) -> bool:
    """Whether ``DATASET_SOURCE`` names an archive (a path or URL ending in .tar.gz/.tgz)."""
    return _location(str(source)).endswith(ARCHIVE_SUFFIXES)


def _local_path(source: str) -> Path | None:
    """The file a path or ``file://`` URL names; None for a remote URL."""
    parsed = urllib.parse.urlparse(source)
    if parsed.scheme == "file":
        return Path(urllib.request.url2pathname(parsed.path))
    if parsed.scheme in ("http", "https"):
        return None
    return Path(source).expanduser()


def _download(url: str, target: Path, required: bool) -> Path | None:
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(target, "wb") as out:
            shutil.copyfileobj(response, out, 1 << 20)
    except urllib.error.HTTPError as err:
        if err.code == 404 and not required:
            return None
        raise DatasetError(f"cannot download {url} ({err}). Check DATASET_SOURCE. Nothing was changed.") from None
    except (urllib.error.URLError, OSError) as err:
        raise DatasetError(f"cannot download {url} ({err}). Check DATASET_SOURCE and the network. "
                           "Nothing was changed.") from None
    return target


def fetch_archive(source: str, workdir) -> Path:
    """The archive of ``source`` as a local file, checked against its sidecar when there is one.

    Parameters
    ----------
    source : str
        A path, ``file://`` URL or ``http(s)://`` URL of ``<name>.tar.gz``; its checksum is
        looked for at the same place plus ``.sha256``.
    workdir : path-like
        Folder for downloads (a remote archive is downloaded there).

    Raises
    ------
    DatasetError
        The archive is missing or unreachable, or does not match its checksum.
    """
    source = _location(str(source))
    local = _local_path(source)
    if local is None:
        archive = _download(source, Path(workdir) / Path(urllib.parse.urlparse(source).path).name, True)
        sidecar = _download(source + ".sha256", Path(workdir) / (archive.name + ".sha256"), False)
    else:
        if not local.is_file():
            raise DatasetError(f"the archive {local} does not exist: check DATASET_SOURCE "
                               "(a .tar.gz written by `make release`). Nothing was changed.")
        archive, sidecar = local, local.with_name(local.name + ".sha256")
    if sidecar is not None and sidecar.is_file():
        _check_sidecar(archive, sidecar, source)
    else:
        logger.info("no checksum file %s.sha256: relying on the manifest inside the archive", source)
    return archive


def _check_sidecar(archive: Path, sidecar: Path, source: str) -> None:
    fields = sidecar.read_text().split()
    if not fields or not re.fullmatch(r"[0-9a-f]{64}", fields[0]):
        raise DatasetError(f"{source}.sha256 is not a sha256sum checksum file: download it again "
                           "(or delete it to rely on the manifest inside the archive). Nothing was changed.")
    digest = sha256_file(archive)
    if digest != fields[0]:
        raise DatasetError(
            f"the archive {source} does not match its checksum file {source}.sha256 (SHA-256 {digest[:16]}..., "
            f"expected {fields[0][:16]}...): it is corrupt or incomplete. Download it again from the "
            "release (or run `make release` again where it was made). Nothing was changed.")
    logger.info("%s matches its checksum file", source)


def _damaged(archive: Path, reason: str) -> DatasetError:
    return DatasetError(f"the archive {archive} is damaged ({reason}). Download it again from the "
                        "release (or run `make release` again where it was made). Nothing was installed.")


def _check_member(archive: Path, member: tarfile.TarInfo, tops: set) -> None:
    """Refuse what a dataset archive never holds: links, devices, absolute or climbing paths."""
    parts = PurePosixPath(member.name).parts
    if member.name.startswith("/") or ".." in parts or not parts:
        raise _damaged(archive, f"unsafe member {member.name!r}: an absolute path or one with '..'")
    if not (member.isfile() or member.isdir()):
        raise _damaged(archive, f"member {member.name!r} is a link or device, not a plain file")
    if len(parts) == 1 and member.isfile():
        raise _damaged(archive, f"member {member.name!r} is not inside the archive's top folder")
    tops.add(parts[0])
    if len(tops) > 1:
        raise _damaged(archive, f"several top folders ({', '.join(sorted(tops))}); an archive of "
                                "`make release` has one")


def extract_verified(archive, dest) -> Path:
    """Extract ``archive`` into the new folder ``dest`` and verify it against its manifest.

    Parameters
    ----------
    archive : path-like
        A ``.tar.gz`` of :func:`write_archive`.
    dest : path-like
        Folder to create; the caller removes it when this raises.

    Returns
    -------
    Path
        The archive's top folder inside ``dest``, holding the dataset files (the manifest removed).

    Raises
    ------
    DatasetError
        Truncated or unreadable archive, an unsafe member, a missing or extra file, or a file
        whose SHA-256 differs from the manifest: naming the files and the fix.
    """
    archive, dest = Path(archive), Path(dest)
    dest.mkdir()
    tops: set[str] = set()
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                _check_member(archive, member, tops)
                tar.extract(member, dest, filter="data")
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as err:
        raise _damaged(archive, f"truncated or not a gzip-compressed tar file: {err}") from None
    if not tops:
        raise _damaged(archive, "it holds no files")
    top = dest / tops.pop()
    _verify_manifest(archive, top)
    (top / MANIFEST_NAME).unlink()
    return top


def _read_manifest(archive: Path, top: Path) -> dict[str, str]:
    path = top / MANIFEST_NAME
    if not path.is_file():
        raise _damaged(archive, f"it has no {MANIFEST_NAME}")
    manifest = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        match = _MANIFEST_LINE.match(line)
        if not match:
            raise _damaged(archive, f"line {number} of {MANIFEST_NAME} is not `<sha256>  <file>`")
        manifest[match.group(2)] = match.group(1)
    return manifest


def _verify_manifest(archive: Path, top: Path) -> None:
    manifest = _read_manifest(archive, top)
    present = {p.relative_to(top).as_posix() for p in top.rglob("*") if p.is_file()} - {MANIFEST_NAME}
    problems = [f"{f}: listed in {MANIFEST_NAME} but missing" for f in sorted(set(manifest) - present)]
    problems += [f"{f}: present but not listed in {MANIFEST_NAME}" for f in sorted(present - set(manifest))]
    problems += [f"{f}: SHA-256 differs from {MANIFEST_NAME}" for f in sorted(present & set(manifest))
                 if sha256_file(top / f) != manifest[f]]
    if problems:
        raise DatasetError(format_problems(
            f"the archive {archive} does not match its manifest ({len(problems)} problem(s))", problems[:10],
            "It is corrupt or was altered: download it again from the release (or run `make release` "
            "again where it was made). Nothing was installed."))
    logger.info("all %d files of %s match %s", len(manifest), archive.name, MANIFEST_NAME)
