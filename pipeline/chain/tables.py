"""The files the chain reads: the SOXS instrument and the APEC-format emission table."""
from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

from benchmark.core import settings as core_settings
from benchmark.dataset.checker import sha256_file
from pipeline.chain.settings import ChainError, ChainSettings
from pipeline.emission import resolve_apec
from pipeline.instrument import register_acisi

__all__ = ["resolve_instrument", "emission_table", "emission_table_checksums"]


def resolve_instrument(settings: ChainSettings) -> str:
    """The SOXS instrument name to use, registering the project's ACIS-I when needed."""
    if settings.instrument:
        import soxs

        if settings.instrument not in soxs.instrument_registry:
            raise ChainError(
                f"SOXS instrument {settings.instrument!r} is not registered; call "
                "pipeline.instrument.register_acisi() first or leave ChainSettings.instrument=None."
            )
        return settings.instrument
    return str(register_acisi())


def emission_table(settings: ChainSettings) -> tuple[str, str]:
    """(model_root, model_vers) of the APEC-format table the chain reads.

    ``ChainSettings.model_root/model_vers`` when set, else
    :func:`pipeline.emission.resolve_apec` (``$CLUSTERMASS_APEC_DIR`` or the project's
    own table, written once).
    """
    if settings.model_root or settings.model_vers:
        if not (settings.model_root and settings.model_vers):
            raise ChainError("set both ChainSettings.model_root and model_vers, or neither")
        root, vers = str(settings.model_root), str(settings.model_vers)
    else:
        root, vers = _project_table(core_settings.current().apec_dir)
    missing = [
        str(Path(root) / f"apec_v{vers}_{kind}.fits")
        for kind in ("coco", "line")
        if not (Path(root) / f"apec_v{vers}_{kind}.fits").exists()
    ]
    if missing:
        raise ChainError(
            f"APEC-format emission table missing: {missing}; write it with "
            "pipeline.emission.write_apec_tables(DIR) or point model_root at real AtomDB tables."
        )
    return root, vers


@lru_cache(maxsize=4)
def _project_table(apec_dir) -> tuple[str, str]:
    # resolve_apec hashes both table files (tens of MB); a worker renders many cluster epochs
    # with the same table, so it is resolved once per process and table folder.
    tables = resolve_apec(apec_dir)
    return tables.root, tables.version


def emission_table_checksums(settings: ChainSettings | None = None) -> dict:
    """SHA-256 of the emission table files the chain reads (for the dataset card)."""
    root, vers = emission_table(settings or ChainSettings())
    out = {f"emission_table_{kind}": sha256_file(Path(root) / f"apec_v{vers}_{kind}.fits")
           for kind in ("coco", "line")}
    out["emission_table"] = hashlib.sha256(
        (out["emission_table_coco"] + out["emission_table_line"]).encode()
    ).hexdigest()
    return out
