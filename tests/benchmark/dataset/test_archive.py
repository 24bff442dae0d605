"""The plain archive of a release: deterministic, verified on fetch, registered as the same version."""
from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path

import pytest

from benchmark.core.errors import DatasetError
from benchmark.dataset.archive import (MANIFEST_NAME, default_archive_dir, extract_verified,
                                       is_archive_source, write_archive)
from benchmark.dataset.release import check_expected_version, content_fingerprint, ensure_dataset

from datalad_fixtures import PRESET
from fakes import write_fake_dataset

TOP = "clustermass-fake-v1.0"


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    """A plain dataset folder (no DataLad) and its archive."""
    root = write_fake_dataset(tmp_path_factory.mktemp("plain") / "ci", n_clusters=10, n_epochs=1)
    return root, write_archive(root, tmp_path_factory.mktemp("a") / f"{TOP}.tar.gz")


def dataset_bytes(root: Path) -> dict[str, bytes]:
    files = sorted(p for p in root.rglob("*") if p.is_file() and ".git" not in p.parts
                   and ".datalad" not in p.parts and p.name not in ("README.md", ".gitattributes"))
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in files}


def repack(archive: Path, out: Path, edit) -> Path:
    """Rewrite ``archive`` as ``out``, each member passed through ``edit(info, data)``.

    ``edit`` returns a list of ``(info, data)`` (empty: drop the member); no sidecar is written.
    """
    with tarfile.open(archive, "r:gz") as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar]
    with tarfile.open(out, "w:gz") as tar:
        for info, data in members:
            for new_info, new_data in edit(info, data):
                new_info.size = len(new_data)
                tar.addfile(new_info, io.BytesIO(new_data))
    return out


# -- writing ------------------------------------------------------------------------------------

def test_archive_is_deterministic_plain_and_checkable(plain, tmp_path):
    root, archive = plain
    again = write_archive(root, tmp_path / archive.name)
    assert again.read_bytes() == archive.read_bytes()
    head = archive.read_bytes()[:10]
    assert head[3] == 0 and head[4:8] == b"\0\0\0\0"  # gzip: no file name, mtime 0
    with tarfile.open(archive, "r:gz") as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names == sorted(names) and names[0] == f"{TOP}/{MANIFEST_NAME}"
    assert {n.split("/", 1)[1] for n in names} == set(dataset_bytes(root)) | {MANIFEST_NAME}
    assert all(m.isfile() and (m.mtime, m.uid, m.gid, m.mode, m.uname, m.gname) == (0, 0, 0, 0o644, "", "")
               for m in members)
    # the two checksum files are the sha256sum tool's own format
    subprocess.run(["sha256sum", "-c", "--quiet", archive.name + ".sha256"], cwd=archive.parent, check=True)
    with tarfile.open(archive, "r:gz") as tar:
        tar.extractall(tmp_path / "x", filter="data")
    subprocess.run(["sha256sum", "-c", "--quiet", MANIFEST_NAME], cwd=tmp_path / "x" / TOP, check=True)


def test_archive_sources_and_default_folder(tmp_path):
    assert is_archive_source("data/archives/a-v1.tar.gz") and is_archive_source("https://x.org/a.tgz?dl=1")
    assert not is_archive_source("ria+file:///store#~clustermass-ci@v1.0")
    assert default_archive_dir(tmp_path / "ria-store") == tmp_path / "archives"
    assert default_archive_dir(f"ria+file://{tmp_path}/ria-store") == tmp_path / "archives"


def test_release_archives_dereferenced_content(generated, archived):
    assert archived.is_file() and Path(f"{archived}.sha256").is_file()
    with tarfile.open(archived, "r:gz") as tar:
        content = {m.name.split("/", 1)[1]: tar.extractfile(m).read() for m in tar}
    assert content.pop(MANIFEST_NAME)
    # images are annex links in the dataset; the archive holds their bytes
    assert (generated / "images" / "cluster_0001.h5").is_symlink()
    assert content == dataset_bytes(generated)


# -- fetching -----------------------------------------------------------------------------------

@pytest.mark.parametrize("as_url", [False, True])
def test_round_trip_registers_the_same_version(archived, generated, tmp_path, release_log, as_url):
    root = tmp_path / "data" / PRESET
    source = archived.as_uri() if as_url else str(archived)
    ensure_dataset(PRESET, root, source=source)
    assert dataset_bytes(root) == dataset_bytes(generated)
    assert content_fingerprint(root) == content_fingerprint(generated)
    assert "identical to the expected release v1.0" in check_expected_version(root, PRESET)
    assert (root / ".datalad" / "config").is_file() and "SHA256E-s" in str((root / "images" / "cluster_0002.h5").readlink())
    assert subprocess.run(["git", "-C", str(root), "status", "--porcelain"], capture_output=True,
                          text=True, check=True).stdout == ""
    assert sorted(p.name for p in root.parent.iterdir()) == [PRESET]  # no temporary folders left
    ensure_dataset(PRESET, root, source=source)  # a second make data only verifies
    assert "already holds the content" in release_log.text


def test_other_content_present_is_refused_and_left_alone(archived, tmp_path):
    root = tmp_path / "data" / PRESET
    root.mkdir(parents=True)
    (root / "notes.txt").write_text("mine")
    with pytest.raises(DatasetError, match=r"(?s)holds something else.*make clean-data PRESET=ci"):
        ensure_dataset(PRESET, root, source=str(archived))
    assert [p.name for p in root.iterdir()] == ["notes.txt"]
    assert sorted(p.name for p in root.parent.iterdir()) == [PRESET]


def flip(info, data):
    if info.name.endswith("cluster_0003.h5"):
        data = bytearray(data)
        data[-100] ^= 0xFF
    return [(info, bytes(data))]


def drop(info, data):
    return [] if info.name.endswith("cluster_0005.h5") else [(info, data)]


def extra(info, data):
    out = [(info, data)]
    if info.name.endswith(MANIFEST_NAME):
        added = tarfile.TarInfo(f"{TOP}/images/cluster_0099.h5")
        out.append((added, b"not a cluster"))
    return out


def symlink(info, data):
    link = tarfile.TarInfo(f"{TOP}/images/evil")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    return [(info, data)] + ([(link, b"")] if info.name.endswith(MANIFEST_NAME) else [])


def climb(info, data):
    if info.name.endswith("catalog.csv"):
        info.name = f"{TOP}/../catalog.csv"
    return [(info, data)]


@pytest.mark.parametrize("edit, match", [
    (flip, r"(?s)does not match its manifest.*images/cluster_0003.h5: SHA-256 differs.*download it again"),
    (drop, r"(?s)does not match its manifest.*images/cluster_0005.h5: listed in MANIFEST.sha256 but missing"),
    (extra, r"(?s)does not match its manifest.*images/cluster_0099.h5: present but not listed"),
    (symlink, r"damaged \(member .*images/evil' is a link or device.*Download it again"),
    (climb, r"damaged \(unsafe member .*\.\./catalog.csv"),
], ids=["flipped-byte", "missing-member", "extra-member", "link", "dotdot"])
def test_corrupt_archive_is_refused_and_nothing_is_left(archived, tmp_path, edit, match):
    (tmp_path / "src").mkdir()
    bad = repack(archived, tmp_path / "src" / archived.name, edit)
    root = tmp_path / "data" / PRESET
    with pytest.raises(DatasetError, match=match):
        ensure_dataset(PRESET, root, source=str(bad))
    assert not list((tmp_path / "data").iterdir())  # no dataset, no temporary folder


def test_truncated_archive_is_refused(plain, tmp_path):
    _, archive = plain
    cut = tmp_path / archive.name
    cut.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(DatasetError, match=r"damaged \(truncated or not a gzip-compressed tar"):
        extract_verified(cut, tmp_path / "x")
    root = tmp_path / "data" / PRESET
    with pytest.raises(DatasetError, match="truncated"):
        ensure_dataset(PRESET, root, source=str(cut))
    assert not list((tmp_path / "data").iterdir())


def test_archive_not_matching_its_checksum_file(plain, tmp_path):
    _, archive = plain
    bad = tmp_path / archive.name
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0x01
    bad.write_bytes(bytes(data))
    Path(f"{bad}.sha256").write_bytes(Path(f"{archive}.sha256").read_bytes())
    root = tmp_path / "data" / PRESET
    with pytest.raises(DatasetError, match=r"does not match its checksum file .*\.sha256.*Download it again"):
        ensure_dataset(PRESET, root, source=str(bad))
    assert not list((tmp_path / "data").iterdir())


def test_missing_archive_changes_nothing(tmp_path):
    with pytest.raises(DatasetError, match="does not exist: check DATASET_SOURCE"):
        ensure_dataset(PRESET, tmp_path / "data" / PRESET, source=str(tmp_path / "nope.tar.gz"))
    assert not list((tmp_path / "data").iterdir())
