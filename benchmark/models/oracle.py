"""The physical floor: mass proxies computed from the simulation truth (oracle, not observable).

Each oracle is a power law of a truth proxy, fitted fold by fold like every entry (ordinary
least squares on the training folds only, predicted on the test fold), so its scatter is
what a perfect measurement of that proxy would give on these clusters. No observation gives
these numbers: the entries are marked "oracle, not observable" (``metadata.oracle``) and
shown beside every ranking, never ranked.

* ``oracle_mgas`` -- gas mass in R500c, ``M_gas = gas_fraction x M500c`` with both factors
  from the catalog (M500c from its ``r500c_kpc`` and the redshift, the inverse of
  :func:`benchmark.core.cosmology.r500c_kpc`). The truth mass enters M_gas itself, so the
  only scatter left is that of the gas fraction: the floor of a perfect gas-mass
  measurement on these mocks (Kravtsov, Vikhlinin & Nagai 2006, ApJ 650, 128, report
  ~10% scatter of M_gas at fixed mass in their simulations).
* ``oracle_yx`` -- ``Y_X = M_gas x T`` with T the catalog's ``t500_kev`` (the same paper:
  5-8% scatter of M at fixed Y_X).
* ``oracle_lx_t`` -- core-excised luminosity and temperature together:
  ``log10 M = a + b log10 L_X,cex + c log10 T`` (``lx_cex_erg_s``, ``t500_kev``; Maughan
  2007, ApJ 668, 772 for core-excised L_X as a low-scatter proxy).

Every power law also has a free power of E(z) (``log10 E(z)`` as a regressor, the
self-similar evolution of all three relations) when the training images span several
redshifts; at one redshift that column would duplicate the intercept and is left out.

Uncertainty: :meth:`OracleModel.predict_sigma` gives each prediction the standard deviation
of the training residuals (ddof = number of fitted coefficients) as a Gaussian sigma.
"""
from __future__ import annotations


import numpy as np

from benchmark.core.cosmology import efunc, m500c_from_r500c
from benchmark.core.errors import ClusterMassError
from benchmark.models import read_params, write_params

__all__ = ["OracleModel", "make_model", "load_model", "KINDS", "PROXIES"]

PARAMS_FILE = "oracle_params.json"

#: kind -> (truth columns it reads, names of the log10 regressors).
PROXIES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "mgas": (("gas_fraction", "r500c_kpc"), ("log10_mgas_msun",)),
    "yx": (("gas_fraction", "r500c_kpc", "t500_kev"), ("log10_yx_msun_kev",)),
    "lx_t": (("lx_cex_erg_s", "t500_kev"), ("log10_lx_cex_erg_s", "log10_t500_kev")),
}
KINDS = tuple(PROXIES)


def _log10_positive(values, name: str) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(v) & (v > 0)):
        raise ClusterMassError(f"truth column {name!r} has non-finite or non-positive values: "
                               "the oracle needs every image's simulated value.")
    return np.log10(v)


def _gas_mass_log10_msun(aux) -> np.ndarray:
    """log10 M_gas(< R500c) / Msun = log10(gas_fraction x M500c), both from the truth."""
    m500c = m500c_from_r500c(np.asarray(aux["r500c_kpc"], float), np.asarray(aux["redshift"], float))
    return _log10_positive(aux["gas_fraction"], "gas_fraction") + _log10_positive(m500c, "r500c_kpc")


def proxy_features(kind: str, aux) -> np.ndarray:
    """(N, k) log10 regressors of the proxy ``kind`` (see :data:`PROXIES`) from ``aux``."""
    missing = [c for c in PROXIES[kind][0] + ("redshift",) if c not in aux]
    if missing:
        raise ClusterMassError(f"oracle_{kind} needs the truth column(s) {missing} in aux: run "
                               "it through the harness, which passes the truth columns a model "
                               "declares.")
    if kind == "mgas":
        return _gas_mass_log10_msun(aux)[:, None]
    if kind == "yx":
        return (_gas_mass_log10_msun(aux) + _log10_positive(aux["t500_kev"], "t500_kev"))[:, None]
    return np.stack([_log10_positive(aux["lx_cex_erg_s"], "lx_cex_erg_s"),
                     _log10_positive(aux["t500_kev"], "t500_kev")], axis=1)


class OracleModel:
    """A cross-validated power law of a truth proxy (see the module docstring).

    Attributes
    ----------
    truth_columns : tuple of str
        The catalog truth columns the proxy reads (recorded in the entry as ``uses_truth``).
    params : dict or None
        Fitted ``coef`` (intercept first), ``with_ez``, ``scatter_train_dex``, ...
    """

    def __init__(self, config: dict | None = None):
        kind = (config or {}).get("kind", "mgas")
        if kind not in PROXIES:
            raise ClusterMassError(f"oracle kind {kind!r} is unknown: use one of {KINDS}.")
        self.kind = kind
        self.truth_columns = PROXIES[kind][0]
        self.params: dict | None = None

    def _design(self, aux, with_ez: bool) -> np.ndarray:
        x = proxy_features(self.kind, aux)
        cols = [np.ones(len(x)), *x.T]
        if with_ez:
            cols.append(np.log10(efunc(np.asarray(aux["redshift"], float))))
        return np.stack(cols, axis=1)

    def fit(self, train, val=None) -> "OracleModel":
        """Least squares on the training images (``val`` is not used: nothing to tune)."""
        if train.y is None:
            raise ClusterMassError("fit needs the training targets (y).")
        y = np.asarray(train.y, dtype=np.float64)
        with_ez = bool(np.ptp(np.asarray(train.aux["redshift"], float)) > 0)
        design = self._design(train.aux, with_ez)
        coef, *_ = np.linalg.lstsq(design, y, rcond=None)
        resid = y - design @ coef
        dof = max(len(y) - design.shape[1], 1)
        self.params = {
            "kind": self.kind, "coef": [float(c) for c in coef], "with_ez": with_ez,
            "regressors": ["1", *PROXIES[self.kind][1]] + (["log10_ez"] if with_ez else []),
            "scatter_train_dex": float(np.sqrt(resid @ resid / dof)),
            "n_train": int(len(y)), "truth_columns": list(self.truth_columns),
        }
        return self

    def _fitted(self) -> dict:
        if self.params is None:
            raise ClusterMassError("the oracle is not fitted: call fit() or load_model(dir).")
        return self.params

    def predict(self, data) -> np.ndarray:
        """log10 M500c of every image of ``data`` (its aux carries the truth columns)."""
        p = self._fitted()
        return self._design(data.aux, p["with_ez"]) @ np.asarray(p["coef"], float)

    def predict_sigma(self, data) -> np.ndarray:
        """Gaussian sigma (dex) of each prediction: the training residual scatter."""
        return np.full(len(data.aux), float(self._fitted()["scatter_train_dex"]))

    def save(self, directory) -> None:
        """Write oracle_params.json into ``directory``."""
        write_params(directory, PARAMS_FILE, self._fitted())


def make_model(config: dict | None = None) -> OracleModel:
    """An oracle; ``config["kind"]`` is one of :data:`KINDS`."""
    return OracleModel(config)


def load_model(directory) -> OracleModel:
    """Load a model written by :meth:`OracleModel.save`."""
    params = read_params(directory, PARAMS_FILE, "oracle")
    model = OracleModel({"kind": params["kind"]})
    model.params = params
    return model
