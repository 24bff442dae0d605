"""Presets: TOML files that override the defaults of the pipeline's parameter dataclasses.

A preset names a size and a renderer, nothing else: every physical parameter keeps the
default documented beside its dataclass unless the preset overrides it.  A preset is parsed
once, by :func:`load_preset`, into one immutable :class:`Config` that carries the typed
settings of every stage; it serialises to the dataset card, so a dataset records exactly
what made it.
"""
from __future__ import annotations

import dataclasses
import tomllib
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from benchmark.core.errors import ClusterMassError
from benchmark.core.io import json_safe
from pipeline.chain import ChainSettings
from pipeline.gas import GridSpec
from pipeline.observation import Observation
from pipeline.population import DATASET_VERSIONS, PopulationParams

SECTIONS = ("dataset", "population", "observation", "grid", "chain", "splits")
PRESET_NAMES = ("ci", "quick", "fast", "full")


@dataclasses.dataclass(frozen=True)
class DatasetSettings:
    """What a dataset is called, where its clusters come from and how they are rendered."""

    name: str = "clustermass"
    version: str = ""  # "" = the population version's (population.DATASET_VERSIONS)
    source: str = "synthetic"  # "synthetic" | "tng"
    renderer: str = "chain"  # "chain" (pyXSIM + SOXS) | "analytic" (fast renderer)
    master_seed: int = 20190521
    tng_dir: str = ""  # folder of TNG cutouts when source == "tng"

    def __post_init__(self):
        if self.source not in ("synthetic", "tng"):
            raise ClusterMassError(
                f"dataset.source = {self.source!r} is unknown: use 'synthetic' or 'tng'."
            )
        if self.renderer not in ("chain", "analytic"):
            raise ClusterMassError(
                f"dataset.renderer = {self.renderer!r} is unknown: use 'chain' or 'analytic'."
            )
        if self.source == "tng" and not self.tng_dir:
            raise ClusterMassError(
                "dataset.source = 'tng' needs dataset.tng_dir: the folder of TNG cutout files."
            )


@dataclasses.dataclass(frozen=True)
class SplitSettings:
    """The fixed ten-fold cross-validation of the benchmark."""

    n_folds: int = 10
    seed: int = 0

    def __post_init__(self):
        if self.n_folds < 3:
            raise ClusterMassError(f"splits.n_folds = {self.n_folds}: need at least 3 folds.")


@dataclasses.dataclass(frozen=True)
class Config:
    """A loaded preset, parsed once: the typed settings of every stage.

    Attributes
    ----------
    preset, path : str
        The preset's name and the TOML file it came from.
    sections : Mapping
        The overrides the preset and the caller gave, per section (what the card records
        under ``config.preset``).
    dataset, splits, observation, population, grid :
        The parameter dataclasses of each stage, defaults included.
    chain : ChainSettings or None
        The real chain's settings; ``None`` with the analytic renderer, which has none.
    """

    preset: str
    path: str
    sections: Mapping[str, Mapping[str, Any]]
    dataset: DatasetSettings
    splits: SplitSettings
    observation: Observation
    population: PopulationParams
    grid: GridSpec
    chain: ChainSettings | None

    def to_dict(self) -> dict:
        """The preset's overrides as plain dicts, with the preset's name."""
        return {"preset": self.preset, **{k: dict(v) for k, v in self.sections.items()}}

    def resolved_parameters(self) -> dict:
        """Every parameter of every stage, defaults included (what the card records)."""
        return {
            "dataset": json_safe(dataclasses.asdict(self.dataset)),
            "observation": json_safe(dataclasses.asdict(self.observation)),
            "population": json_safe(self.population.recorded()),
            "grid": json_safe(dataclasses.asdict(self.grid)),
            "chain": json_safe(dataclasses.asdict(self.chain)) if self.chain is not None else None,
            "splits": json_safe(dataclasses.asdict(self.splits)),
        }


def build(cls, overrides: Mapping[str, Any], section: str):
    """Build parameter dataclass ``cls`` from a preset section, naming any unknown key."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ClusterMassError(
            f"Unknown key(s) {unknown} in preset section [{section}]. "
            f"Valid keys: {sorted(known)}."
        )
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
    return cls(**values)


def preset_path(name_or_path: str | Path) -> Path:
    """Resolve a preset name (``ci``, ``quick``, ``fast``, ``full``) or a TOML file path."""
    candidate = Path(name_or_path)
    if candidate.suffix == ".toml":
        if not candidate.is_file():
            raise ClusterMassError(f"Preset file {candidate} does not exist.")
        return candidate
    name = str(name_or_path)
    if name not in PRESET_NAMES:
        raise ClusterMassError(
            f"Unknown preset {name!r}: choose one of {', '.join(PRESET_NAMES)} "
            "or give the path of a .toml preset file."
        )
    return Path(str(resources.files("pipeline.presets") / f"{name}.toml"))


def load_preset(name_or_path: str | Path, **overrides: Mapping[str, Any]) -> Config:
    """Load a preset and apply per-section overrides, e.g. ``population={"n_clusters": 5}``."""
    path = preset_path(name_or_path)
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise ClusterMassError(f"Preset {path} is not valid TOML: {err}") from None
    unknown = sorted(set(raw) - set(SECTIONS))
    if unknown:
        raise ClusterMassError(
            f"Unknown section(s) {unknown} in preset {path}; valid sections: {list(SECTIONS)}."
        )
    sections = {name: dict(raw.get(name, {})) for name in SECTIONS}
    for name, values in overrides.items():
        if name not in SECTIONS:
            raise ClusterMassError(f"Unknown section {name!r}; valid: {list(SECTIONS)}.")
        sections[name].update(values)
    return parse(path.stem, str(path), sections)


def parse(preset: str, path: str, sections: Mapping[str, Mapping[str, Any]]) -> Config:
    """Build every stage's settings from the sections (bad input fails before any work)."""
    dataset = build(DatasetSettings, sections.get("dataset", {}), "dataset")
    population = build(PopulationParams, sections.get("population", {}), "population")
    if not dataset.version:
        # population version 1 makes the 0.1.0 datasets, version 2 the 0.2.0 ones
        dataset = dataclasses.replace(dataset, version=DATASET_VERSIONS[population.version])
    chain = None
    if dataset.renderer == "chain":
        chain = build(ChainSettings, sections.get("chain", {}), "chain")
    return Config(
        preset=preset,
        path=path,
        sections=MappingProxyType({k: MappingProxyType(dict(v)) for k, v in sections.items()}),
        dataset=dataset,
        splits=build(SplitSettings, sections.get("splits", {}), "splits"),
        observation=build(Observation, sections.get("observation", {}), "observation"),
        population=population,
        grid=build(GridSpec, sections.get("grid", {}), "grid"),
        chain=chain,
    )
