"""yt, pyXSIM and SOXS, imported on first use and kept quiet."""
from __future__ import annotations

import logging
import os

__all__ = ["load_pyxsim", "quiet_libraries"]


def load_pyxsim():
    """pyXSIM with its per-cell progress bars silenced (they would drown the per-view bar)."""
    import functools

    import pyxsim
    import pyxsim.photon_list
    import pyxsim.source_models.sources
    import soxs.spectra.thermal_spectra
    from tqdm.auto import tqdm

    for module in (pyxsim.photon_list, pyxsim.source_models.sources, soxs.spectra.thermal_spectra):
        module.tqdm = functools.partial(tqdm, disable=True)
    return pyxsim


def quiet_libraries():
    """yt/pyXSIM/SOXS log every step at INFO and draw tqdm bars: keep workers quiet."""
    os.environ.setdefault("TQDM_DISABLE", "1")
    import yt

    yt.set_log_level(40)
    for name in ("pyxsim", "soxs", "yt"):
        logging.getLogger(name).setLevel(logging.WARNING)
    load_pyxsim()
