"""Presets: files, not code branches; bad input fails before any work with one clear error."""
import pytest

from benchmark.core.errors import ClusterMassError
from pipeline.config import PRESET_NAMES, load_preset


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_every_preset_loads_and_names_itself(name):
    config = load_preset(name)
    assert config.preset == name
    assert config.dataset.renderer in ("chain", "analytic")
    assert config.splits.n_folds == 10


def test_unknown_preset_names_the_choices():
    with pytest.raises(ClusterMassError, match="choose one of ci, quick, fast, full"):
        load_preset("huge")


def test_unknown_key_names_the_valid_keys(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('[dataset]\nrenderr = "chain"\n')
    with pytest.raises(ClusterMassError, match=r"Unknown key\(s\) \['renderr'\].*Valid keys"):
        load_preset(path)


def test_unknown_section_and_bad_toml_are_named(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text("[telescope]\nname = 'xmm'\n")
    with pytest.raises(ClusterMassError, match="Unknown section"):
        load_preset(path)
    path.write_text("[dataset\n")
    with pytest.raises(ClusterMassError, match="not valid TOML"):
        load_preset(path)


def test_bad_source_and_renderer_are_rejected_up_front():
    with pytest.raises(ClusterMassError, match="source"):
        load_preset("ci", dataset={"source": "eagle"})
    with pytest.raises(ClusterMassError, match="renderer"):
        load_preset("ci", dataset={"renderer": "raytrace"})
    with pytest.raises(ClusterMassError, match="tng_dir"):
        load_preset("ci", dataset={"source": "tng"})


def test_overrides_are_recorded_in_the_config():
    config = load_preset("ci", population={"n_clusters": 12})
    assert config.to_dict()["population"]["n_clusters"] == 12
    assert load_preset("ci").to_dict()["population"]["n_clusters"] != 12
