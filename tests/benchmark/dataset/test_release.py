"""benchmark.dataset.release: regenerate, verify, release, fetch, pin, refuse (real DataLad)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmark.core.errors import ClusterMassError
from benchmark.dataset.release import (
    check_expected_version,
    content_fingerprint,
    create_dataset,
    ensure_dataset,
    record_expected_version,
    verify_dataset,
)

from datalad_fixtures import FAKE_CMD, PRESET


def git(path, *args) -> str:
    return subprocess.run(["git", "-C", str(path), *args], capture_output=True, text=True,
                          check=True).stdout.strip()


def head(path) -> str:
    return git(path, "rev-parse", "HEAD")


def corrupt(link: Path) -> None:
    """Flip one byte of an annexed file's object (what a bad disk does)."""
    target = link.resolve()
    os.chmod(target.parent, 0o755)
    os.chmod(target, 0o644)
    data = bytearray(target.read_bytes())
    data[-100] ^= 0xFF
    target.write_bytes(bytes(data))


# -- regenerate ---------------------------------------------------------------------------------

def test_regenerated_dataset_layout_and_provenance(generated):
    attrs = (generated / ".gitattributes").read_text()
    assert "* annex.backend=SHA256E" in attrs and "MD5E" not in attrs
    # the creation-time overrides do not stay in the dataset's own config
    assert "extra-procedures" not in (generated / ".git" / "config").read_text()
    # images annexed under SHA-256 keys, metadata in git
    image = generated / "images" / "cluster_0001.h5"
    assert image.is_symlink() and "SHA256E-s" in os.readlink(image)
    for name in ("catalog.csv", "splits.json", "dataset_card.json", "README.md"):
        assert not (generated / name).is_symlink(), name
    # the generation step is a datalad run record carrying the exact command
    message = git(generated, "log", "-1", "--format=%B")
    assert message.startswith("[DATALAD RUNCMD] Generate the clustermass dataset (preset ci, clustermass code ")
    record = json.loads(message.split("=== Do not change lines below ===")[1].split("^^^ Do not change")[0])
    assert record["cmd"] == FAKE_CMD and record["exit"] == 0
    assert "images/cluster_*.h5" in record["outputs"] and "catalog.csv" in record["outputs"]
    assert git(generated, "status", "--porcelain") == ""


def test_second_run_only_verifies(generated, release_log):
    before = head(generated)
    ensure_dataset(PRESET, generated, generate_cmd="false")  # would fail if it ran anything
    out = release_log.text
    assert "verifying only" in out and "is ready" in out and "fsck" in out
    assert head(generated) == before


def test_interrupted_generation_resumes(tmp_path, release_log):
    root = tmp_path / "ci"
    create_dataset(root)
    # what a killed run leaves: some complete cluster files and a half-written temporary one
    subprocess.run(FAKE_CMD.replace(" . ", f" {root} "), shell=True, check=True, capture_output=True)
    for name in ("catalog.csv", "splits.json", "dataset_card.json", "images/cluster_0009.h5"):
        (root / name).unlink()
    (root / "images" / ".cluster_0010.h5.123.tmp").write_bytes(b"half")
    ensure_dataset(PRESET, root, generate_cmd=FAKE_CMD, expected_path=tmp_path / "none.json")
    assert git(root, "status", "--porcelain") == ""
    assert not (root / "images" / ".cluster_0010.h5.123.tmp").exists()
    assert git(root, "log", "-1", "--format=%s").startswith("[DATALAD RUNCMD]")

    # a corrupt image of a dataset with no other copy: named, then re-rendered by make data
    before = head(root)
    corrupt(root / "images" / "cluster_0004.h5")
    with pytest.raises(ClusterMassError, match=r"cluster_0004.h5.*No other copy.*run `make data` again"):
        verify_dataset(root, PRESET, expected_path=tmp_path / "none.json")
    ensure_dataset(PRESET, root, generate_cmd=FAKE_CMD, expected_path=tmp_path / "none.json")
    assert "re-rendering them" in release_log.text
    assert head(root) == before  # same bytes, same keys: nothing new to record
    assert (root / "images" / "cluster_0004.h5").is_symlink()  # still locked
    assert (root / "images" / "cluster_0005.h5").is_symlink()  # others untouched


def test_existing_plain_folder_is_refused_and_left_alone(tmp_path):
    root = tmp_path / "ci"
    root.mkdir()
    (root / "notes.txt").write_text("mine")
    with pytest.raises(ClusterMassError, match="not a DataLad dataset.*make clean-data PRESET=ci"):
        ensure_dataset(PRESET, root, generate_cmd=FAKE_CMD)
    assert [p.name for p in root.iterdir()] == ["notes.txt"]


# -- release, fetch, pin ---------------------------------------------------------------------------

def test_release_pushes_tag_and_records_expected_version(generated, released, store):
    assert released == f"ria+file://{store}#~clustermass-fake@v1.0"
    tag_commit = git(generated, "rev-parse", "v1.0^{commit}")
    assert tag_commit == head(generated)
    # the tag reached the store (datalad push alone does not push tags)
    assert git(store / "alias" / "clustermass-fake", "rev-parse", "v1.0^{commit}") == tag_commit
    entry = json.loads(Path(os.environ["CLUSTERMASS_EXPECTED_VERSION"]).read_text())["presets"][PRESET]
    assert entry["release"]["tag"] == "v1.0" and entry["release"]["commit"] == tag_commit
    assert entry["release"]["url"] == released
    assert entry["fingerprint"] == content_fingerprint(generated)


def test_fetch_from_store_then_verify_only(fetched, generated, released, release_log):
    assert head(fetched) == head(generated)
    assert git(fetched, "annex", "find", "--not", "--in=here") == ""
    assert not list(fetched.parent.glob(".ci.incoming-*"))
    assert "is release v1.0" in check_expected_version(fetched, PRESET)
    ensure_dataset(PRESET, fetched, source=released)
    out = release_log.text
    assert "already holds" in out and "fsck" in out and "is release v1.0" in out
    assert head(fetched) == head(generated)


def test_pinning_in_another_analysis(released, generated, tmp_path):
    import datalad.api as dl

    from benchmark.dataset.loader import ClusterMassDataset

    analysis = dl.create(str(tmp_path / "analysis"), result_renderer="disabled")
    dl.clone(source=released, path=str(tmp_path / "analysis" / "inputs" / "mocks"), dataset=analysis,
             result_renderer="disabled")
    mocks = tmp_path / "analysis" / "inputs" / "mocks"
    dl.get(path=str(mocks), dataset=str(mocks), result_renderer="disabled")
    data = ClusterMassDataset(mocks)
    images = data.images(data.catalog["image_id"][:4])
    assert images.shape == (4, 128, 128) and images.dtype.name == "int32"
    # the superdataset records exactly the released commit
    pinned = git(tmp_path / "analysis", "ls-tree", "HEAD", "inputs/mocks").split()[2]
    assert pinned == git(generated, "rev-parse", "v1.0^{commit}")
    assert "is release v1.0" in check_expected_version(mocks, PRESET)


def test_unfetched_corrupt_and_modified_content(released, tmp_path, release_log):
    """Content not fetched, a corrupt annexed file, an unsaved change: each named, each fixable."""
    import datalad.api as dl

    from benchmark.dataset.loader import ClusterMassDataset

    root = tmp_path / "ci"
    dl.clone(source=released, path=str(root), result_renderer="disabled")
    with pytest.raises(ClusterMassError, match=r"not fetched.*datalad get -d .*ci \."):
        verify_dataset(root, PRESET)
    with pytest.raises(ClusterMassError, match="not fetched"):
        ClusterMassDataset(root)
    ensure_dataset(PRESET, root)  # make data on such a clone fetches what is missing
    assert "fetching 10 file(s)" in release_log.text

    corrupt(root / "images" / "cluster_0003.h5")
    with pytest.raises(ClusterMassError, match=r"failed their SHA-256 check.*cluster_0003.h5.*datalad get"):
        verify_dataset(root, PRESET)
    assert list((root / ".git" / "annex" / "bad").iterdir())  # fsck kept the bad copy aside
    dl.get(path=str(root / "images" / "cluster_0003.h5"), dataset=str(root), result_renderer="disabled")
    assert "fsck" in verify_dataset(root, PRESET)

    with open(root / "catalog.csv", "a") as handle:
        handle.write("\n")
    with pytest.raises(ClusterMassError, match=r"unsaved changes.*catalog.csv \(modified\)"):
        verify_dataset(root, PRESET)


# -- versions --------------------------------------------------------------------------------------

def test_wrong_version_present_is_refused_and_left_intact(released, regenerated_copy):
    other = regenerated_copy  # same content, but another dataset (id, commits)
    before = head(other)
    with pytest.raises(ClusterMassError, match=r"(?s)another version.*present: .*requested: ria\+file.*make clean-data"):
        ensure_dataset(PRESET, other, source=released)
    assert head(other) == before and git(other, "status", "--porcelain") == ""


def test_regenerated_identical_content_passes(released, generated, regenerated_copy):
    copy = regenerated_copy
    assert content_fingerprint(copy) == content_fingerprint(generated)
    assert git(copy, "config", "-f", ".datalad/config", "datalad.dataset.id") != \
        git(generated, "config", "-f", ".datalad/config", "datalad.dataset.id")
    message = check_expected_version(copy, PRESET)
    assert "identical to the expected release v1.0" in message


def test_other_content_is_refused_naming_both(released, tmp_path):
    other = tmp_path / "other"
    subprocess.run(FAKE_CMD.replace(" . 10", f" {other} 10 1"), shell=True, check=True, capture_output=True)
    with pytest.raises(ClusterMassError) as err:
        check_expected_version(other, PRESET)
    text = str(err.value)
    assert "found:" in text and "expected:" in text and "tag v1.0" in text
    assert f"DATASET_SOURCE='{released}'" in text


def test_no_expectation_accepts_and_says_so(generated, tmp_path):
    message = check_expected_version(generated, "quick", expected_path=tmp_path / "absent.json")
    assert "no expected version recorded" in message


def test_record_expected_version_without_release(generated, tmp_path):
    path = tmp_path / "expected.json"
    entry = record_expected_version(generated, PRESET, expected_path=path)
    assert "release" not in entry
    assert "version 0.0.0-fake" in check_expected_version(generated, PRESET, expected_path=path)


# -- bad sources -----------------------------------------------------------------------------------

def test_unreachable_source(tmp_path):
    root = tmp_path / "ci"
    with pytest.raises(ClusterMassError, match="cannot reach the DataLad source.*Nothing was changed"):
        ensure_dataset(PRESET, root, source=f"ria+file://{tmp_path}/no-store#~clustermass-ci@v1.0")
    assert not root.exists()


def test_missing_tag(released, tmp_path):
    root = tmp_path / "ci"
    with pytest.raises(ClusterMassError, match=r"no version 'v9.9' \(tags there: v1.0\)"):
        ensure_dataset(PRESET, root, source=released.replace("@v1.0", "@v9.9"))
    assert not root.exists()


def test_release_again_with_same_tag_is_idempotent(generated, released, store):
    from benchmark.dataset.release import release

    assert release(generated, store, "v1.0", preset=PRESET) == released


@pytest.mark.parametrize("left_in", ["dataset", "stash"])
def test_finished_clusters_of_a_killed_make_data_are_reused(tmp_path, datalad_env, left_in):
    """`datalad run` deletes untracked outputs: a killed run's finished clusters must survive,
    also when an earlier attempt failed after setting them aside (``left_in == "stash"``)."""
    from pipeline.config import load_preset
    from pipeline.generate import generate

    sizes = ["--set", "population.n_clusters=10", "--set", "population.n_epochs=1"]
    cmd = " ".join([sys.executable, "-m", "clustermass.cli", "generate", "--preset", "ci", "--out", ".", *sizes])
    reference = generate(load_preset("ci", population={"n_clusters": 10, "n_epochs": 1}),
                         tmp_path / "reference", progress=False)
    root = tmp_path / "ci"
    create_dataset(root)
    stash = Path(datalad_env["CLUSTERMASS_BUILD"]) / "resume" / "ci"
    where = (root if left_in == "dataset" else stash) / "images"
    where.mkdir(parents=True)
    for cid in (0, 1, 2):  # what a killed run leaves behind: finished, unsaved cluster files
        (where / f"cluster_{cid:04d}.h5").write_bytes((reference / "images" / f"cluster_{cid:04d}.h5").read_bytes())
    log = Path(datalad_env["CLUSTERMASS_BUILD"]) / "logs" / "generate-clustermass-ci.jsonl"
    log.unlink(missing_ok=True)

    ensure_dataset(PRESET, root, generate_cmd=cmd, expected_path=tmp_path / "none.json")

    rendered = sorted(json.loads(line)["cluster_id"] for line in log.read_text().splitlines())
    assert rendered == list(range(3, 10))  # the three finished ones were taken back, not redone
    for cid in range(10):
        name = f"images/cluster_{cid:04d}.h5"
        assert (root / name).read_bytes() == (reference / name).read_bytes(), name
    assert git(root, "status", "--porcelain") == ""
    assert not stash.exists()



def test_a_release_hashes_no_image_and_fingerprints_once(generated, tmp_path, monkeypatch):
    import shutil

    from benchmark.dataset import archive, release as release_module

    # A dataset of its own: a first release of a new tag, away from the session's store.
    own = tmp_path / "data" / PRESET
    ensure_dataset(PRESET, own, generate_cmd=FAKE_CMD)
    reads = []
    for module in (release_module, archive):
        def counted(path, _original=module.sha256_file, _module=module.__name__):
            reads.append((_module, Path(path).name))
            return _original(path)
        monkeypatch.setattr(module, "sha256_file", counted)
    release_module.release(own, tmp_path / "store", "v2.0", preset=PRESET,
                           expected_path=tmp_path / "expected.json", archive_dir=tmp_path / "a")
    assert [name for _, name in reads if name.endswith(".h5")] == []  # digests from the keys
    # One fingerprint per run (tag message and record): catalog.csv hashed once for it.
    assert reads.count(("benchmark.dataset.release", "catalog.csv")) == 1
    monkeypatch.undo()
    recorded = json.loads((tmp_path / "expected.json").read_text())["presets"][PRESET]
    assert recorded["fingerprint"][:16] in git(own, "tag", "-n1", "v2.0")
    # Nothing lost: the manifest from the keys is the one hashing every file gives ...
    name = "clustermass-fake-v2.0.tar.gz"
    hashed = archive.write_archive(own, tmp_path / "b" / name)
    assert (tmp_path / "a" / name).read_bytes() == hashed.read_bytes()
    # ... and the fingerprint is the one of a plain copy, every image hashed.
    plain = tmp_path / "plain"
    shutil.copytree(own, plain, ignore=shutil.ignore_patterns(".git*", ".datalad"))
    assert recorded["fingerprint"] == content_fingerprint(plain) == content_fingerprint(generated)
