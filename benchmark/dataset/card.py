"""The dataset card (``dataset_card.json``): its required fields, read and written in one place.

The generator writes the card through :func:`write_card`; the loader, the checker and the
DataLad release code read it through :func:`read_card`, which refuses a card that lacks a
field they use with one :class:`~benchmark.core.errors.DatasetError` naming every missing
field and the fix. Fields beyond the required ones (descriptions, package versions,
references, units) are kept as they are and reached like a mapping: ``card["packages"]``.
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Iterator

from benchmark.core.errors import DatasetError, format_problems
from benchmark.core.io import write_json
from benchmark.dataset.layout import CARD_NAME

__all__ = ["DatasetCard", "ImageSpec", "REQUIRED_FIELDS", "IMAGE_FIELDS", "read_card",
           "write_card"]

#: Top-level fields every card has, with the JSON type each must have.
REQUIRED_FIELDS = {
    "name": str, "version": str, "source": str, "renderer": str, "preset": str,
    "image": dict, "splits_sha256": str, "checksums": dict, "master_seed": int,
    "n_clusters": int, "n_images": int, "config": dict,
}
#: Fields of the card's ``image`` object.
IMAGE_FIELDS = {
    "npix": int, "fov_arcmin": (int, float), "pixel_arcsec": (int, float),
    "band_kev": list, "exposure_ks": (int, float),
}
_FIX = "Regenerate or re-fetch the dataset (`make data`)."


@dataclasses.dataclass(frozen=True)
class ImageSpec:
    """What one image is: ``npix`` x ``npix`` pixels over ``fov_arcmin``, band, exposure."""

    npix: int
    fov_arcmin: float
    pixel_arcsec: float
    band_kev: tuple[float, float]
    exposure_ks: float


@dataclasses.dataclass(frozen=True, eq=False)
class DatasetCard(Mapping):
    """A validated dataset card: typed required fields, and every field by key.

    It is a read-only mapping of the card's JSON object, so ``card["image"]["npix"]`` and
    ``card.get("packages")`` read the file's values; the attributes are the required fields,
    typed.
    """

    name: str
    version: str
    source: str
    renderer: str
    preset: str
    image: ImageSpec
    splits_sha256: str
    checksums: Mapping[str, str]
    master_seed: int
    n_clusters: int
    n_images: int
    config: Mapping[str, Any]
    data: Mapping[str, Any] = dataclasses.field(repr=False)

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = CARD_NAME) -> "DatasetCard":
        """Validate a card's JSON object; ``where`` names it in the error.

        Raises
        ------
        DatasetError
            Naming every missing or mistyped field, and the fix.
        """
        problems = _problems(data, REQUIRED_FIELDS, "")
        if isinstance(data.get("image"), dict):
            problems += _problems(data["image"], IMAGE_FIELDS, "image.")
        if problems:
            raise DatasetError(format_problems(f"{where} is not a complete dataset card",
                                               problems, _FIX))
        image = data["image"]
        return cls(
            image=ImageSpec(npix=image["npix"], fov_arcmin=float(image["fov_arcmin"]),
                            pixel_arcsec=float(image["pixel_arcsec"]),
                            band_kev=tuple(float(b) for b in image["band_kev"]),
                            exposure_ks=float(image["exposure_ks"])),
            data=data,
            **{k: data[k] for k in REQUIRED_FIELDS if k != "image"},
        )


def _problems(data: Mapping[str, Any], fields: dict, prefix: str) -> list[str]:
    problems = []
    for key, kind in fields.items():
        if key not in data:
            problems.append(f"field {prefix}{key} is missing")
        elif isinstance(data[key], bool) or not isinstance(data[key], kind):
            names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            problems.append(f"field {prefix}{key} is {type(data[key]).__name__}, not {names}")
    return problems


def read_card(root) -> DatasetCard:
    """Read and validate ``<root>/dataset_card.json``.

    Parameters
    ----------
    root : path-like
        The dataset folder.

    Returns
    -------
    DatasetCard

    Raises
    ------
    DatasetError
        The card is missing, not JSON, not an object, or lacks a required field.
    """
    path = Path(root) / CARD_NAME
    if not path.is_file():
        raise DatasetError(f"{path}: missing. Not a clustermass dataset, or not fetched: "
                           "run `make data`")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{path} is not valid JSON ({exc}); re-fetch the dataset "
                           "(`make data`)") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{path} must hold a JSON object; re-fetch the dataset (`make data`)")
    return DatasetCard.from_dict(data, str(path))


def write_card(root, card: Mapping[str, Any]) -> Path:
    """Validate ``card`` and write it to ``<root>/dataset_card.json`` atomically.

    The text is strict JSON with sorted keys and two-space indents, newline-terminated.

    Returns
    -------
    Path
        The card file.
    """
    DatasetCard.from_dict(card, "the card to write")
    return write_json(Path(root) / CARD_NAME, dict(card))
