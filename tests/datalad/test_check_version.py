"""Content fingerprints recorded per preset, and `clustermass check-version` on a regeneration.

A real generation of the ``ci`` preset (analytic renderer), made twice by the test: the
second run stands for another machine regenerating the preset. The expected-version file is
the session's own (``datalad_env``), never the project's.
"""
from __future__ import annotations

import json
import shutil

import pytest

from benchmark.core.errors import DatasetError
from benchmark.dataset.release import (FINGERPRINT_FORMAT, check_fingerprint, content_fingerprint,
                                       record_expected_version)
from clustermass.cli import main

#: The ci preset, smaller: 10 clusters (one per fold) x 1 epoch x 3 projections.
OVERRIDES = {"population": {"n_clusters": 10, "n_epochs": 1}}


def _generate(out):
    from pipeline.config import load_preset
    from pipeline.generate import generate

    return generate(load_preset("ci", **OVERRIDES), out, workers=1, progress=False)


@pytest.fixture(scope="module")
def two_generations(tmp_path_factory):
    base = tmp_path_factory.mktemp("regen")
    return _generate(base / "first"), _generate(base / "second")


@pytest.fixture
def expected(tmp_path, monkeypatch):
    path = tmp_path / "expected_version.json"
    monkeypatch.setenv("CLUSTERMASS_EXPECTED_VERSION", str(path))
    return path


def test_regeneration_is_byte_identical_to_the_recorded_fingerprint(two_generations, expected):
    first, second = two_generations
    entry = record_expected_version(first, "ci")
    assert entry["fingerprint"] == content_fingerprint(first)
    assert entry["fingerprint_format"] == FINGERPRINT_FORMAT
    assert json.loads(expected.read_text())["presets"]["ci"] == entry
    message = check_fingerprint(second, "ci")
    assert "byte-identical" in message and entry["fingerprint"] in message


def test_fingerprint_is_of_content_not_of_place_or_time(two_generations, tmp_path):
    first, _ = two_generations
    moved = tmp_path / "elsewhere" / "ci"
    shutil.copytree(first, moved)  # another folder, new modification times
    for path in moved.rglob("*"):
        path.touch()
    assert content_fingerprint(moved) == content_fingerprint(first)
    catalog = moved / "catalog.csv"
    catalog.write_bytes(catalog.read_bytes().replace(b"\n", b"\r\n", 1))  # one byte more
    assert content_fingerprint(moved) != content_fingerprint(first)


def test_a_changed_image_is_refused_naming_the_preset_and_both_fingerprints(
        two_generations, expected, tmp_path):
    first, _ = two_generations
    recorded = record_expected_version(first, "ci")["fingerprint"]
    changed = tmp_path / "ci"
    shutil.copytree(first, changed)
    image = sorted((changed / "images").glob("*.h5"))[0]
    data = bytearray(image.read_bytes())
    data[-1] ^= 0xFF
    image.write_bytes(bytes(data))
    with pytest.raises(DatasetError) as err:
        check_fingerprint(changed, "ci")
    text = str(err.value)
    assert "preset 'ci'" in text and recorded in text and content_fingerprint(changed) in text


def test_no_recorded_fingerprint_is_an_error_that_says_how_to_record(two_generations, expected):
    with pytest.raises(DatasetError, match="no content fingerprint is recorded for preset 'ci'"):
        check_fingerprint(two_generations[0], "ci")


def test_check_version_command(two_generations, expected, tmp_path, capsys):
    first, second = two_generations
    record_expected_version(first, "ci")
    assert main(["check-version", "--preset", "ci", "--dataset", str(second)]) == 0
    assert "byte-identical" in capsys.readouterr().out
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"schema": 1, "presets": {"ci": {"fingerprint": "0" * 64}}}))
    expected.write_text(other.read_text())
    assert main(["check-version", "--preset", "ci", "--dataset", str(second)]) == 2
    err = capsys.readouterr().err
    assert "0" * 64 in err and content_fingerprint(second) in err


def test_the_record_names_numpys_kernel_level_and_a_mismatch_across_families_says_so(
        two_generations, expected, tmp_path):
    from benchmark.core.simd import numpy_simd_level, simd_family

    first, _ = two_generations
    entry = record_expected_version(first, "ci")
    assert entry["numpy_simd"] == numpy_simd_level()
    other_level = "AVX512_ICL" if simd_family() != "AVX-512" else "X86_V3"
    data = json.loads(expected.read_text())
    data["presets"]["ci"].update(fingerprint="0" * 64, numpy_simd=other_level)
    expected.write_text(json.dumps(data))
    with pytest.raises(DatasetError, match=f"recorded with NumPy's {simd_family(other_level)} "
                                           f"kernels \\({other_level}\\); this machine runs its "
                                           f"{simd_family()} kernels"):
        check_fingerprint(first, "ci")
    data["presets"]["ci"]["numpy_simd"] = numpy_simd_level()  # same family: no such line
    expected.write_text(json.dumps(data))
    with pytest.raises(DatasetError) as err:
        check_fingerprint(first, "ci")
    assert "kernels" not in str(err.value)
