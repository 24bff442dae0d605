"""The shift track's test sets and the hidden set: deterministic, new clusters, secret kept.

Populations are compared without rendering; two sets are rendered at the ``ci`` size
(5 clusters each, the analytic renderer) beside a ``ci`` parent.
"""
from __future__ import annotations

import json
import os

import pytest

from benchmark.core.errors import ClusterMassError
from benchmark.dataset.loader import ClusterMassDataset
from pipeline.config import load_preset
from pipeline.generate import generate
from pipeline.population import make_population
from pipeline import testsets as ts
from pipeline.testsets import TESTSETS, generate_hidden, generate_testsets, hidden_master_seed


def testset_config(*args, **kwargs):  # the module's, called through it: pytest would
    return ts.testset_config(*args, **kwargs)  # collect an imported name test*


testset_config.__test__ = False

BY_NAME = {t.name: t for t in TESTSETS}


def population(config):
    return make_population(config.population, config.dataset.master_seed, config.observation)


@pytest.fixture(scope="module")
def ci():
    return load_preset("ci")


@pytest.fixture(scope="module")
def parent_dir(ci, tmp_path_factory):
    return generate(ci, tmp_path_factory.mktemp("ci") / "ci", progress=False)


def test_sizes_follow_the_parent(ci):
    assert ts.testset_n_clusters(ci) == 5  # 120 images / 4 = 30 = 5 clusters x 2 epochs x 3
    assert ts.testset_n_clusters(load_preset("fast")) == 42  # 1,008 images of 24 per cluster
    assert ts.testset_n_clusters(load_preset("quick")) == 10  # 480 / 4 = 120 images


def test_each_set_changes_one_thing_and_draws_new_clusters(ci):
    parent = population(ci)
    seeds = {ci.dataset.master_seed}
    for testset in (t for t in TESTSETS if not t.skipped):
        config = testset_config(ci, testset)
        pop = population(config)
        seeds.add(config.dataset.master_seed)
        # New clusters: no mass, orientation or seed of the parent recurs.
        assert not set(pop["log10_m500c"]) & set(parent["log10_m500c"]), testset.name
        assert not set(pop["quat_w"]) & set(parent["quat_w"]), testset.name
        assert not set(pop["seed_x"]) & set(parent["seed_x"]), testset.name
        assert config.dataset.version == ci.dataset.version
    assert len(seeds) == len([t for t in TESTSETS if not t.skipped]) + 1  # all distinct
    z01 = testset_config(ci, BY_NAME["z_0.1"])
    # redshift is all that changes: the population's parameters are the exposure set's
    assert z01.observation.z_obs == 0.1
    assert z01.population == testset_config(ci, BY_NAME["exposure_30ks"]).population
    assert testset_config(ci, BY_NAME["exposure_30ks"]).observation.exposure_ks == 30.0


def test_sets_are_deterministic(ci):
    for name in ("physics", "cool_core_80"):
        a = population(testset_config(ci, BY_NAME[name]))
        b = population(testset_config(ci, BY_NAME[name]))
        assert a.equals(b)
    assert ts.testset_master_seed(1, "physics") == ts.testset_master_seed(1, "physics")
    assert ts.testset_master_seed(1, "physics") != ts.testset_master_seed(2, "physics")


def test_cool_core_shares_reach_their_targets():
    # a population large enough to measure the share (no rendering)
    fast = load_preset("fast")
    for name, share in (("cool_core_0", 0.0), ("cool_core_80", 0.8)):
        config = testset_config(fast, BY_NAME[name], n_clusters=300)
        got = population(config)["cool_core"].mean()
        assert abs(got - share) < 0.05, (name, got)


def test_physics_lowers_group_gas_fractions(ci):
    base = testset_config(ci, BY_NAME["exposure_30ks"], n_clusters=400)  # parent's physics
    phys = testset_config(ci, BY_NAME["physics"], n_clusters=400)
    a, b = population(base), population(phys)
    groups_a = a.loc[a["log10_m500c"] < 14.0, "gas_fraction"].median()
    groups_b = b.loc[b["log10_m500c"] < 14.0, "gas_fraction"].median()
    assert groups_b < 0.85 * groups_a


def test_generated_sets_are_valid_and_record_their_parent(ci, parent_dir):
    made = generate_testsets(ci, parent_dir, names=["cool_core_0", "second_response"],
                             progress=False)
    assert [p.name for p in made] == ["cool_core_0"]
    ds = ClusterMassDataset(made[0])
    block = ds.card["testset"]
    parent = ClusterMassDataset(parent_dir).card
    assert block["parent"]["version"] == parent.version == ds.card.version
    assert block["parent"]["fingerprint"] == parent["fingerprint"]
    assert ds.catalog["cool_core"].sum() == 0 and len(ds) == 30
    skipped = json.loads((parent_dir / "testsets" / "skipped.json").read_text())
    assert "offline" in skipped["second_response"]
    # Re-running resumes: the same bytes.
    before = (made[0] / "catalog.csv").read_bytes()
    generate_testsets(ci, parent_dir, names=["cool_core_0"], progress=False)
    assert (made[0] / "catalog.csv").read_bytes() == before


def test_the_hidden_secret_never_appears_in_a_written_file(ci, parent_dir, tmp_path,
                                                           monkeypatch):
    secret_file = tmp_path / "keys" / "hidden_secret"
    secret_file.parent.mkdir()
    secret = "f00dfeed" * 8
    secret_file.write_text(secret + "\n")
    hidden_root = tmp_path / "maintainer"
    with pytest.raises(ClusterMassError, match="readable by other users"):
        os.chmod(secret_file, 0o644)
        generate_hidden(ci, parent_dir, hidden_root, secret_file, progress=False)
    os.chmod(secret_file, 0o600)
    with pytest.raises(ClusterMassError, match="inside"):
        generate_hidden(ci, parent_dir, parent_dir / "hidden", secret_file, progress=False)
    out = generate_hidden(ci, parent_dir, hidden_root, secret_file, progress=False)
    assert out == hidden_root / "ci"
    seed = str(hidden_master_seed(secret.encode(), "ci"))
    for path in [p for p in out.rglob("*") if p.is_file()]:
        data = path.read_bytes()
        assert secret.encode() not in data and seed.encode() not in data, path
    card = ClusterMassDataset(out).card
    assert card.master_seed == 0 and card["testset"]["master_seed"] == "withheld"
    import hashlib

    assert card["testset"]["secret_sha256"] == hashlib.sha256(secret.encode()).hexdigest()
    parent = population(ci)
    hidden = ClusterMassDataset(out).catalog
    assert not set(hidden["log10_m500c"].round(6)) & set(parent["log10_m500c"].round(6))
    parent_seeds = set(parent["seed_x"]) | set(parent["seed_y"]) | set(parent["seed_z"])
    assert not set(hidden["seed"]) & parent_seeds  # new view seeds
