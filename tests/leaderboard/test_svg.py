"""The small SVG plotting layer of the leaderboard: ticks, coordinates, escaping, valid XML."""
from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pytest

from leaderboard.svg import Axes, nice_ticks

SVG = "{http://www.w3.org/2000/svg}"


@pytest.mark.parametrize("lo, hi, expected", [
    (0.0, 1.0, [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]),
    (13.8, 15.2, [14.0, 14.5, 15.0]),
    (-0.3, 0.3, [-0.2, 0.0, 0.2]),
])
def test_nice_ticks_are_round_and_cover_the_range(lo, hi, expected):
    assert nice_ticks(lo, hi) == pytest.approx(expected)


def test_nice_ticks_of_an_empty_or_undefined_range():
    assert nice_ticks(1.0, 1.0) == [1.0]
    assert nice_ticks(3.0, 1.0) == [3.0]
    assert len(nice_ticks(float("nan"), 1.0)) == 1


def test_data_coordinates_map_onto_the_plot_area():
    ax = Axes((0, 10), (0, 1), width=420, height=300)
    assert float(ax.px(0)) == ax.ml and float(ax.px(10)) == 420 - ax.mr
    assert float(ax.py(0)) == 300 - ax.mb and float(ax.py(1)) == ax.mt  # y grows upwards


def test_equal_limits_are_widened():
    ax = Axes((2, 2), (5, 5))
    assert ax.xlim == (1.0, 3.0) and ax.ylim == (4.0, 6.0)


def test_nan_splits_a_line():
    ax = Axes((0, 4), (0, 4))
    ax.line([0, 1, np.nan, 3, 4], [0, 1, 2, 3, 4])
    svg = ET.fromstring(ax.to_svg())
    assert len(svg.findall(f".//{SVG}polyline")) == 2


def test_text_is_escaped_and_the_figure_is_valid_xml():
    evil = '<script>alert("x")</script> & more'
    ax = Axes((0, 1), (0, 1), title=evil, xlabel=evil, ylabel="y")
    ax.line([0, 1], [0, 1], label=evil)
    ax.note(evil)
    ax.bars([0.5], [0.5], 0.2, labels=[evil])
    ax.errorbar([0.5], [0.5], [0.1])
    ax.density(np.random.default_rng(0).random(200), np.random.default_rng(1).random(200), bins=5)
    text = ax.to_svg()
    assert "<script>" not in text
    svg = ET.fromstring(text)  # raises on anything that is not well-formed
    assert svg.find(f"{SVG}title").text == evil
    assert svg.find(f".//{SVG}rect[@fill-opacity]") is not None  # the density cells


def _clip_id(axes) -> str:
    return ET.fromstring(axes.to_svg()).find(f".//{SVG}clipPath").get("id")


def test_clip_paths_are_named_by_content():
    """Different figures on one page get different ids; the same figure always the same one."""
    def figure(y):
        ax = Axes((0, 1), (0, 1))
        ax.line([0, 1], [0, y])
        return ax

    ids = [_clip_id(figure(y)) for y in (0.2, 0.5, 0.9)]
    assert len(set(ids)) == 3
    assert _clip_id(figure(0.5)) == ids[1]  # independent of what was rendered before
