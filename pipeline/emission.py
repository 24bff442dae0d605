"""Project-built thermal emission table in AtomDB APEC FITS format.

The real AtomDB APEC tables cannot be downloaded in the build environment, so this
module builds an approximate collisional-ionisation-equilibrium (CIE) plasma model and
writes it in the APEC table format that SOXS (`soxs.ApecGenerator`,
`soxs.spectra.thermal_spectra.CIEGenerator`) and pyXSIM
(`pyxsim.CIESourceModel("apec", ..., model_root=DIR, model_vers=VERS)`) read:

* ``apec_v{VERS}_coco.fits``: HDU 1 ``PARAMETERS`` (column ``kT``), then one
  ``EMISSIVITY`` table per temperature with one row per element: ``Z``, ``rmJ`` (0 = all
  ions), ``N_Cont``, ``E_Cont`` [keV], ``Continuum`` [ph cm^3 s^-1 keV^-1], ``N_Pseudo``,
  ``E_Pseudo``, ``Pseudo`` (zero: no pseudo-continuum).
* ``apec_v{VERS}_line.fits``: HDU 1 ``PARAMETERS`` (``kT``), then one ``EMISSIVITY``
  table per temperature with one row per line: ``Lambda`` [Angstrom], ``Epsilon``
  [ph cm^3 s^-1], ``Element``, ``Ion``.

Emissivities are per unit emission measure n_e n_H V and include each element at its
Anders & Grevesse (1989) ("angr", the SOXS/pyXSIM default) solar abundance, exactly as
in APEC, so SOXS' split into H/He (``cosmic_elem``) and metals (``metal_elem``, scaled by
the metallicity) works unchanged. Only non-equilibrium ("nei") files are not written:
CIE is all the project uses. Trace elements (Na, P, Cl, K, ...) are absent; their
continuum and lines are below 1% of the 0.5-7 keV emission.

Physics and its approximations (each is an approximation; real AtomDB tables can be
used instead with :func:`resolve_apec`):

1. Free-free: Kramers bremsstrahlung times the thermally averaged non-relativistic
   hydrogenic free-free Gaunt factor of Karzas & Latter (1961) as fitted by
   Hummer (1988, ApJ 327, 477; 2D Chebyshev, max error 0.7%) inside its validity
   domain 1e-3 <= gamma^2 <= 1e3, 1e-4 <= u <= 10^1.5; for gamma^2 < 1e-3 (H at
   kT > 13.6 keV) the Born limit g = (sqrt(3)/pi) exp(u/2) K0(u/2) plus the Coulomb
   correction at gamma^2 = 1e-3 scaled as gamma (keeps g continuous).
   Relativistic corrections (Itoh et al. 2000; van Hoof et al. 2014) and
   electron-electron bremsstrahlung, +1-5% at kT ~ 5-15 keV, are neglected.
2. Free-bound: hydrogenic Kramers recombination continua (Gaunt factor 1) onto levels
   n = 1..6 of the recombined ion, j_fb,n / j_ff = (2 chi_n / (n kT)) exp(chi_n/kT)
   times the fraction of vacant states (Gronenschild & Mewe 1978, A&AS 32, 283 form),
   using the real K-shell ionisation potentials. Two-photon continuum neglected.
3. Ionisation balance: four lumped stages per metal (L-shell-or-lower, He-like,
   H-like, bare); each stage ratio has the coronal form
   n_{i+1}/n_i = (T/T_i)^1.2 exp[chi_i/k (1/T_i - 1/T)], with chi_i the ionisation
   potential and T_i the temperature of equal populations read approximately off the
   CIE balance of Mazzotta et al. (1998, A&AS 133, 403). Good to ~0.1-0.2 dex in T.
4. Lines: the strong K-shell complexes (Ly alpha/beta of H-like, He alpha/beta of
   He-like C, N, O, Ne, Mg, Al, Si, S, Ar, Ca, Fe, Ni; Fe K 6.70/6.97 keV) with
   collisional excitation rates 8.63e-6 Omega / (g sqrt(T)) exp(-E/kT) cm^3 s^-1 and
   effective collision strengths with hydrogenic Omega ~ c / Z^2 scaling (calibrated
   so that the Fe K equivalent widths are ~0.7 keV at kT = 5 keV for solar
   abundances), plus the Fe L complex (0.73-1.17 keV, Fe XVII-XXIV) as seven lines
   whose weights move with temperature. Line energies are laboratory values to ~5 eV;
   emissivities are good to a factor ~1.5-2 per complex, not better.

The project's tables use the version string ``"cm1"`` (files ``apec_vcm1_*.fits``),
which cannot collide with AtomDB's numeric versions (e.g. "3.0.9").
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy.special import erf, k0e

from benchmark.core import settings
from benchmark.core.cosmology import H_KEV_S, HC_KEV_ANGSTROM, KEV_PER_K, KEV_TO_ERG
from benchmark.core.errors import ClusterMassError
from benchmark.core.io import write_bytes, write_text
from benchmark.dataset.checker import sha256_file

__all__ = [
    "TABLE_VERSION",
    "ApecTables",
    "write_apec_tables",
    "resolve_apec",
    "spectrum",
    "spectrum_components",
    "band_emissivity",
    "table_band_emissivity",
    "kt_grid_kev",
    "default_table_dir",
]

TABLE_VERSION = "cm1"
# Bump whenever the physics or the file layout below changes (goes into the manifest).
_GENERATOR_REVISION = 1

# CODATA 2018 constants (cgs / keV) that astropy does not name in these units.
_K_PER_KEV = 1.0 / KEV_PER_K
_RYD_KEV = 13.605693122994e-3
_CLIGHT_CM_S = 2.99792458e10
_M_U_G = 1.66053906660e-24
# Kramers free-free constant 2^5 pi e^6 / (3 m_e c^3) sqrt(2 pi / (3 k m_e)):
# j_nu = C_FF Z^2 n_e n_i T^-1/2 exp(-h nu / kT) g_ff  [erg s^-1 cm^-3 Hz^-1], T in K.
_C_FF = 6.8421e-38
# Collisional excitation rate constant (cm^3 s^-1 K^1/2), e.g. Osterbrock & Ferland 2006.
_C_EXC = 8.629e-6

# Anders & Grevesse (1989) number abundances relative to H (soxs "angr" table).
_ANGR = {
    1: 1.0, 2: 9.77e-2, 6: 3.63e-4, 7: 1.12e-4, 8: 8.51e-4, 10: 1.23e-4, 12: 3.80e-5,
    13: 2.95e-6, 14: 3.55e-5, 16: 1.62e-5, 18: 3.63e-6, 20: 2.29e-6, 26: 4.68e-5,
    28: 1.78e-6,
}
_ATOMIC_WEIGHT = {
    1: 1.00794, 2: 4.002602, 6: 12.0107, 7: 14.0067, 8: 15.9994, 10: 20.1797,
    12: 24.305, 13: 26.981538, 14: 28.0855, 16: 32.065, 18: 39.948, 20: 40.078,
    26: 55.845, 28: 58.6934,
}
_METALS = (6, 7, 8, 10, 12, 13, 14, 16, 18, 20, 26, 28)  # soxs.constants.metal_elem


@dataclass(frozen=True)
class _Metal:
    """Lumped ionisation ladder of one metal.

    chi_kev: ionisation potentials of the Li-like, He-like and H-like ions (keV).
    log_t50: log10 T [K] at which successive stages (<=Li-like|He-like, He|H, H|bare)
    have equal populations (approximately Mazzotta et al. 1998).
    """

    z: int
    chi_kev: tuple[float, float, float]
    log_t50: tuple[float, float, float]
    lines_kev: tuple[float, float, float, float]  # He alpha, He beta, Ly alpha, Ly beta


_METAL_DATA = {
    6: _Metal(6, (0.0645, 0.392, 0.490), (5.15, 6.05, 6.25), (0.308, 0.355, 0.368, 0.436)),
    7: _Metal(7, (0.0979, 0.552, 0.667), (5.30, 6.20, 6.40), (0.431, 0.498, 0.500, 0.593)),
    8: _Metal(8, (0.138, 0.739, 0.871), (5.45, 6.35, 6.55), (0.574, 0.666, 0.654, 0.775)),
    10: _Metal(10, (0.239, 1.196, 1.362), (5.75, 6.60, 6.80), (0.922, 1.074, 1.022, 1.211)),
    12: _Metal(12, (0.367, 1.762, 1.963), (6.05, 6.85, 7.05), (1.352, 1.579, 1.472, 1.745)),
    13: _Metal(13, (0.442, 2.086, 2.304), (6.20, 6.95, 7.15), (1.598, 1.869, 1.729, 2.048)),
    14: _Metal(14, (0.523, 2.438, 2.673), (6.30, 7.05, 7.25), (1.865, 2.183, 2.006, 2.377)),
    16: _Metal(16, (0.707, 3.224, 3.494), (6.50, 7.25, 7.45), (2.461, 2.884, 2.623, 3.107)),
    18: _Metal(18, (0.918, 4.121, 4.426), (6.65, 7.40, 7.60), (3.140, 3.684, 3.323, 3.936)),
    20: _Metal(20, (1.157, 5.129, 5.470), (6.80, 7.55, 7.75), (3.902, 4.583, 4.107, 4.864)),
    26: _Metal(26, (2.046, 8.828, 9.278), (7.25, 7.95, 8.25), (6.700, 7.881, 6.966, 8.253)),
    28: _Metal(28, (2.399, 10.289, 10.775), (7.35, 8.05, 8.35), (7.806, 9.183, 8.102, 9.603)),
}
# Effective collision strengths Omega = coeff / Z^2 (lower-level statistical weight g):
# He alpha (w+x+y+z incl. satellites/recombination), He beta, Ly alpha, Ly beta.
_K_LINE_COEFF = (5.0, 0.8, 1.6, 0.3)
_K_LINE_GLOW = (1.0, 1.0, 2.0, 2.0)
_K_LINE_STAGE = (1, 1, 2, 2)  # stage index: 0 L-shell, 1 He-like, 2 H-like, 3 bare
# Fe L complex: (energy keV, log10 T of peak weight); total Omega_eff below.
_FE_L_LINES = ((0.727, 6.55), (0.826, 6.65), (0.873, 6.80), (0.922, 6.90), (1.010, 7.00),
               (1.120, 7.15), (1.168, 7.25))
_FE_L_OMEGA = 0.15
_FE_L_WIDTH_DEX = 0.15
_STAGE_GAMMA = 1.2  # temperature exponent of S/alpha at kT >> chi

# Table grids: temperatures (APEC-like but finer, so linear interpolation in kT by
# SOXS/pyXSIM stays within ~0.5% of the direct evaluation) and continuum energies.
_KT_MIN_KEV, _KT_MAX_KEV, _N_KT = 0.08, 64.0, 201
_E_MIN_KEV, _E_MAX_KEV, _N_E = 0.03, 60.0, 700
_N_FB_LEVELS = 6


def kt_grid_kev() -> np.ndarray:
    """Temperatures (keV) of the project's emission table."""
    return np.logspace(np.log10(_KT_MIN_KEV), np.log10(_KT_MAX_KEV), _N_KT)


def default_table_dir() -> Path:
    """Default directory of the project's tables: ``emission`` in the build folder."""
    return settings.current().build_dir / "emission"


# ----------------------------------------------------------------------------------
# Gaunt factor
# ----------------------------------------------------------------------------------
# Hummer (1988) Chebyshev coefficients d[j, i] (8 in u, 11 in gamma^2).
_HUMMER_D = np.array([
    8.986940175e+00, -4.009515855e+00, 8.808871266e-01, 2.640245111e-02,
    -4.580645915e-02, -3.568055702e-03, 2.827798067e-03, 3.365860195e-04,
    -8.006936989e-01, 9.466021705e-01, 9.043402532e-02, -9.608451450e-02,
    -1.885629865e-02, 1.050313890e-02, 2.800889961e-03, -1.078209202e-03,
    -3.781305103e-01, 1.102726332e-01, -1.543619180e-02, 8.310561114e-03,
    2.179620525e-02, 4.259726289e-03, -4.181588794e-03, -1.770208330e-03,
    1.877213132e-02, -1.004885705e-01, -5.483366378e-02, -4.520154409e-03,
    8.366530426e-03, 3.700273930e-03, 6.889320423e-04, 9.460313195e-05,
    7.300158392e-02, 3.576785497e-03, -4.545307025e-03, -1.017965604e-02,
    -9.530211924e-03, -3.450186162e-03, 1.040482914e-03, 1.407073544e-03,
    -1.744671550e-03, 2.864013856e-02, 1.903394837e-02, 7.091074494e-03,
    -9.668371391e-04, -2.999107465e-03, -1.820642230e-03, -3.874082085e-04,
    -1.707268366e-02, -4.694254776e-03, 1.311691517e-03, 5.316703136e-03,
    5.178193095e-03, 2.451228935e-03, -2.277321615e-05, -8.182359057e-04,
    2.567331664e-04, -9.155339970e-03, -6.997479192e-03, -3.571518641e-03,
    -2.096101038e-04, 1.553822487e-03, 1.509584686e-03, 6.212627837e-04,
    4.098322531e-03, 1.635218463e-03, -5.918883504e-04, -2.333091048e-03,
    -2.484138313e-03, -1.359996060e-03, -5.371426147e-05, 5.553549563e-04,
    3.837562402e-05, 2.938325230e-03, 2.393747064e-03, 1.328839809e-03,
    9.135013312e-05, -7.137252303e-04, -7.656848158e-04, -3.504683798e-04,
    -8.491991820e-04, -3.615327726e-04, 3.148015257e-04, 8.909207650e-04,
    9.869737522e-04, 6.134671184e-04, 1.068883394e-04, -2.046080100e-04,
]).reshape(11, 8).T


def _gaunt_born(u: np.ndarray) -> np.ndarray:
    """Born-approximation thermal Gaunt factor (sqrt(3)/pi) e^{u/2} K0(u/2)."""
    return np.sqrt(3.0) / np.pi * k0e(0.5 * u)


def gaunt_ff(energy_kev: np.ndarray, kt_kev: float, charge: float) -> np.ndarray:
    """Thermally averaged non-relativistic free-free Gaunt factor.

    Hummer (1988) fit inside 1e-3 <= gamma^2 <= 1e3 and 1e-4 <= u <= 10^1.5, Hummer's
    asymptotes at large u; for gamma^2 < 1e-3 the Born limit plus the Coulomb correction
    taken at gamma^2 = 1e-3 and scaled as gamma. gamma^2 = Z^2 Ry / kT, u = E / kT.
    """
    u = np.atleast_1d(np.asarray(energy_kev, dtype=np.float64)) / kt_kev
    gamma2 = charge * charge * _RYD_KEV / kt_kev
    if gamma2 < 1e-3:
        # Below Hummer's domain: Born limit plus the Coulomb correction at gamma^2 = 1e-3
        # scaled as gamma (the leading order of the correction), so g stays continuous.
        born = _gaunt_born(u)
        edge = _gaunt_hummer(u, 1e-3) - born
        return born + edge * np.sqrt(gamma2 / 1e-3)
    return _gaunt_hummer(u, gamma2)


def _gaunt_hummer(u: np.ndarray, gamma2: float) -> np.ndarray:
    """Hummer (1988) fit for 1e-3 <= gamma^2 <= 1e3 (clipped), with its asymptotes."""
    txg = (2.0 / 3.0) * np.log10(min(gamma2, 1e3))
    # Clenshaw recurrence in gamma^2 for each of the 8 u-coefficients.
    b = np.zeros((13, 8))
    for i in range(10, -1, -1):
        b[i] = txg * b[i + 1] - b[i + 2] + _HUMMER_D[:, i]
    c = 0.25 * (b[0] - b[2])
    logu = np.log10(np.maximum(u, 1e-300))
    txu = (2.0 * logu + 2.5) / 2.75
    bu = np.zeros((10,) + u.shape)
    x = np.clip(txu, -2.0, 2.0)
    for j in range(7, -1, -1):
        bu[j] = x * bu[j + 1] - bu[j + 2] + c[j]
    g = bu[0] - bu[2]
    # Outside the fitted box: Hummer's asymptotic forms (large u: E > 31.6 kT; tiny u).
    hi = txu > 2.0
    if np.any(hi):
        uh = u[hi]
        if gamma2 < 1.0:
            slope = (np.sqrt(12 * gamma2 / uh) - np.sqrt(0.9549297 / uh)) / 3.0
            g[hi] = np.sqrt(12 * gamma2 / uh) + slope * np.log10(gamma2)
        else:
            g[hi] = np.minimum(np.sqrt(12.0 * gamma2 / uh), 1.05)
    lo = txu < -2.0
    if np.any(lo):
        ul = np.maximum(u[lo], 1e-300)
        if gamma2 < 0.3:
            g[lo] = 0.551329 * np.log(2.24593 / ul)
        else:
            g[lo] = 0.551329 * np.log(0.944931 / ul / np.sqrt(gamma2))
    return g


# ----------------------------------------------------------------------------------
# Ionisation balance and emission components (rest frame, per n_e n_H)
# ----------------------------------------------------------------------------------
def _stage_fractions(metal: _Metal, kt_kev: float) -> np.ndarray:
    """Fractions of the lumped stages (<=Li-like, He-like, H-like, bare)."""
    logs = [0.0]
    for chi, lt50 in zip(metal.chi_kev, metal.log_t50):
        kt50 = 10.0 ** lt50 / _K_PER_KEV
        log_ratio = _STAGE_GAMMA * np.log(kt_kev / kt50) + chi * (1.0 / kt50 - 1.0 / kt_kev)
        logs.append(logs[-1] + log_ratio)
    logs = np.array(logs)
    w = np.exp(logs - logs.max())
    return w / w.sum()


def _ff_kernel(energy_kev: np.ndarray, kt_kev: float) -> np.ndarray:
    """Kramers photon emissivity for unit charge, g = 1 [ph cm^3 s^-1 keV^-1]."""
    t_k = kt_kev * _K_PER_KEV
    return (_C_FF / np.sqrt(t_k) * np.exp(-energy_kev / kt_kev)
            / (H_KEV_S * energy_kev * KEV_TO_ERG))


def _edges(z: int) -> list[tuple[float, float, int, float, int]]:
    """Recombination edges of element z: (charge, chi_kev, n, vacancy, stage)."""
    out = []
    if z <= 2:
        for n in range(1, _N_FB_LEVELS + 1):
            out.append((float(z), z * z * _RYD_KEV / n ** 2, n, 1.0, 3))
        return out
    m = _METAL_DATA[z]
    for n in range(1, _N_FB_LEVELS + 1):
        # bare -> H-like (all states of level n vacant)
        out.append((float(z), z * z * _RYD_KEV / n ** 2, n, 1.0, 3))
        # H-like -> He-like: ground state half filled; excited levels hydrogenic in Z-1
        chi = m.chi_kev[1] if n == 1 else (z - 1) ** 2 * _RYD_KEV / n ** 2
        out.append((float(z - 1), chi, n, 0.5 if n == 1 else 1.0, 2))
        # He-like -> Li-like: K shell full, recombination onto n >= 2
        if n >= 2:
            chi = m.chi_kev[0] if n == 2 else (z - 2) ** 2 * _RYD_KEV / n ** 2
            out.append((float(z - 2), chi, n, 1.0, 1))
    return out


def _element_continuum(z: int, energy_kev: np.ndarray, kt_kev: float) -> np.ndarray:
    """Continuum of element z at its angr abundance [ph cm^3 s^-1 keV^-1 per n_e n_H]."""
    e = np.asarray(energy_kev, dtype=np.float64)
    if z <= 2:
        fracs = np.array([0.0, 0.0, 0.0, 1.0])  # H, He fully ionised at X-ray temperatures
        charges = (0.0, 0.0, 0.0, float(z))
    else:
        fracs = _stage_fractions(_METAL_DATA[z], kt_kev)
        # mean charge of the lumped L-shell stage ~ Z - 6 (e.g. Fe XX-XXI)
        charges = (float(z - 6), float(z - 2), float(z - 1), float(z))
    kern = _ff_kernel(e, kt_kev)
    gsum = np.zeros_like(e)
    for f, q in zip(fracs, charges):
        if f > 1e-10 and q > 0.0:
            gsum += f * q * q * gaunt_ff(e, kt_kev, q)
    # Free-bound (Kramers, hydrogenic): an edge chi_n of an ion of charge q adds
    # q^2 (2 chi_n / (n kT)) vacancy exp((chi_n - E)/kT) x [Kramers kernel / exp(-E/kT)] above
    # chi_n, i.e. kern(E) times a constant, so the sum over edges is kern(E) times a step
    # function of E.
    chi, coef = _edge_table(z)
    w = coef * fracs[_edge_stage(z)] * np.exp(np.minimum(chi / kt_kev, 700.0)) * (2.0 / kt_kev) * chi
    step = np.concatenate([[0.0], np.cumsum(w)])
    fb = step[np.searchsorted(chi, e, side="right")]
    return _ANGR[z] * kern * (gsum + fb)


@lru_cache(maxsize=None)
def _edge_arrays(z: int):
    edges = sorted(_edges(z), key=lambda t: t[1])
    chi = np.array([t[1] for t in edges])
    # charge^2 * vacancy / n  (the 2 chi / kT factor is applied per temperature)
    coef = np.array([t[0] ** 2 * t[3] / t[2] for t in edges])
    stage = np.array([t[4] for t in edges], dtype=int)
    return chi, coef, stage


def _edge_table(z: int):
    chi, coef, _ = _edge_arrays(z)
    return chi, coef


def _edge_stage(z: int):
    return _edge_arrays(z)[2]


def _element_lines(z: int, kt_kev: float) -> tuple[np.ndarray, np.ndarray]:
    """Lines of element z: (energies keV, emissivities ph cm^3 s^-1 per n_e n_H)."""
    if z <= 2:
        return np.zeros(0), np.zeros(0)
    m = _METAL_DATA[z]
    fracs = _stage_fractions(m, kt_kev)
    sqrt_t = np.sqrt(kt_kev * _K_PER_KEV)
    energies, eps = [], []
    for e0, coeff, glow, stage in zip(m.lines_kev, _K_LINE_COEFF, _K_LINE_GLOW, _K_LINE_STAGE):
        omega = coeff / z ** 2
        rate = _C_EXC * omega / (glow * sqrt_t) * np.exp(-e0 / kt_kev)
        energies.append(e0)
        eps.append(_ANGR[z] * fracs[stage] * rate)
    if z == 26:
        logt = np.log10(kt_kev * _K_PER_KEV)
        w = np.array([np.exp(-0.5 * ((logt - lt) / _FE_L_WIDTH_DEX) ** 2) for _, lt in _FE_L_LINES])
        w /= w.sum()
        for (e0, _), wk in zip(_FE_L_LINES, w):
            rate = _C_EXC * _FE_L_OMEGA / sqrt_t * np.exp(-e0 / kt_kev)
            energies.append(e0)
            eps.append(_ANGR[z] * fracs[0] * wk * rate)
    return np.array(energies), np.array(eps)


def _continuum_energy_grid(z: int) -> np.ndarray:
    """Log grid plus points bracketing each recombination edge (edges stay sharp)."""
    grid = np.logspace(np.log10(_E_MIN_KEV), np.log10(_E_MAX_KEV), _N_E)
    extra = []
    for _, chi, _, _, _ in _edges(z):
        if _E_MIN_KEV < chi < _E_MAX_KEV:
            extra += [chi * (1.0 - 1e-6), chi]
    return np.unique(np.concatenate([grid, np.array(extra)]))


# ----------------------------------------------------------------------------------
# Public spectrum
# ----------------------------------------------------------------------------------
def _thermal_width(e0, kt_kev, z):
    """SOXS' broadening width (the erf argument scale: sqrt(2) sigma)."""
    return e0 * np.sqrt(2.0 * kt_kev * KEV_TO_ERG / (_ATOMIC_WEIGHT[z] * _M_U_G)) / _CLIGHT_CM_S


def _binned_lines(energies, eps, ebins, kt_kev, z, broadening):
    if energies.size == 0:
        return np.zeros(ebins.size - 1)
    if not broadening:
        return np.histogram(energies, ebins, weights=eps)[0]
    s = _thermal_width(energies, kt_kev, z)
    cdf = 0.5 * (1.0 + erf((ebins[None, :] - energies[:, None]) / s[:, None]))
    return (np.diff(cdf, axis=1) * eps[:, None]).sum(axis=0)


def spectrum_components(kt_kev: float, ebins_kev, broadening: bool = True,
                        nsub: int = 1, nolines: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """H+He and metal (at 1 solar) parts of the rest-frame spectrum.

    Parameters
    ----------
    kt_kev : float
        Plasma temperature in keV.
    ebins_kev : array_like
        Energy bin edges in keV (rest frame), increasing.
    broadening : bool
        Thermally broaden lines as SOXS does.
    nsub : int
        Continuum sample points per bin (1 = midpoint rule, as SOXS).
    nolines : bool
        Continuum only (as SOXS/pyXSIM ``nolines=True``).

    Returns
    -------
    cosmic, metal : np.ndarray
        Photon emissivity in each bin, ph cm^3 s^-1 per unit emission measure
        n_e n_H V (not per keV); the spectrum at metallicity Z is cosmic + Z * metal.
    """
    ebins = np.asarray(ebins_kev, dtype=np.float64)
    if ebins.ndim != 1 or ebins.size < 2 or np.any(np.diff(ebins) <= 0) or ebins[0] <= 0:
        raise ClusterMassError("ebins_kev must be a 1D increasing array of positive energies (keV)")
    if not np.isfinite(kt_kev) or kt_kev <= 0:
        raise ClusterMassError(f"kt_kev must be positive and finite, got {kt_kev!r}")
    de = np.diff(ebins)
    frac = (np.arange(nsub) + 0.5) / nsub
    e_sub = ebins[:-1, None] + de[:, None] * frac[None, :]
    cosmic = np.zeros(de.size)
    metal = np.zeros(de.size)
    for z in (1, 2) + _METALS:
        cont = _element_continuum(z, e_sub.ravel(), kt_kev).reshape(e_sub.shape).mean(axis=1) * de
        part = cont
        if not nolines:
            e_l, eps_l = _element_lines(z, kt_kev)
            part = cont + _binned_lines(e_l, eps_l, ebins, kt_kev, z, broadening)
        if z <= 2:
            cosmic += part
        else:
            metal += part
    return cosmic, metal


def spectrum(kt_kev, Z_solar, ebins_kev, broadening: bool = True, nsub: int = 1,
             nolines: bool = False) -> np.ndarray:
    """Rest-frame photon emissivity per unit emission measure in each energy bin.

    Same physics as the written APEC-format table (see module docstring).

    Parameters
    ----------
    kt_kev : float or array_like
        Temperature(s) in keV.
    Z_solar : float or array_like
        Metallicity in (Anders & Grevesse 1989) solar units, broadcast with kt_kev.
    ebins_kev : array_like
        Bin edges in keV.

    Returns
    -------
    np.ndarray
        ph cm^3 s^-1 per bin (per n_e n_H V); shape (nbins,) for scalar inputs,
        else broadcast shape + (nbins,).
    """
    kt, zs = np.broadcast_arrays(np.asarray(kt_kev, dtype=float), np.asarray(Z_solar, dtype=float))
    out = np.empty(kt.shape + (len(ebins_kev) - 1,))
    for idx in np.ndindex(kt.shape):
        c, m = spectrum_components(float(kt[idx]), ebins_kev, broadening=broadening, nsub=nsub,
                                   nolines=nolines)
        out[idx] = c + zs[idx] * m
    return out


@lru_cache(maxsize=8)
def _band_energy_table(e_lo: float, e_hi: float):
    """log10 kT grid and (cosmic, metal) band energy emissivities, erg cm^3 s^-1."""
    kts = kt_grid_kev()
    n = max(int(np.ceil((e_hi - e_lo) / 0.005)), 16)
    eb = np.linspace(e_lo, e_hi, n + 1)
    emid_erg = 0.5 * (eb[1:] + eb[:-1]) * KEV_TO_ERG
    cos, met = [], []
    for t in kts:
        c, m = spectrum_components(float(t), eb)
        cos.append(np.sum(c * emid_erg))
        met.append(np.sum(m * emid_erg))
    return np.log10(kts), np.array(cos), np.array(met)


def band_emissivity(kt_kev, Z_solar, band_kev=(0.5, 2.0)) -> np.ndarray:
    """Rest-frame band energy emissivity Lambda(T, Z) per n_e n_H, erg cm^3 s^-1.

    The same physics as :func:`spectrum` (tabulated on the table's temperature grid,
    interpolated linearly in log kT; zero outside 0.08-64 keV), e.g. for true luminosities
    L = sum n_e n_H V Lambda consistent with the images.
    """
    lt, cos, met = _band_energy_table(float(band_kev[0]), float(band_kev[1]))
    x = np.log10(np.maximum(np.asarray(kt_kev, dtype=np.float64), 1e-6))
    c = np.interp(x, lt, cos, left=0.0, right=0.0)
    m = np.interp(x, lt, met, left=0.0, right=0.0)
    return c + np.asarray(Z_solar, dtype=np.float64) * m


@lru_cache(maxsize=8)
def _fits_band_energy_table(root: str, version: str, e_lo: float, e_hi: float):
    """kT nodes and (cosmic, metal) band energy emissivities of APEC-format FITS tables.

    Read through SOXS (``CIEGenerator``), the reader the real chain and the analytic
    renderer use, on 5-eV bins (the band integral of a line-rich spectrum converges well
    below that).
    """
    from soxs.spectra.thermal_spectra import CIEGenerator

    n = max(int(np.ceil((e_hi - e_lo) / 0.005)), 16)
    gen = CIEGenerator("apec", e_lo, e_hi, n, model_root=root, model_vers=version)
    cosmic, metal, _ = gen._get_table(list(range(gen.Tvals.size)), 0.0, 0.0)
    emid_erg = np.asarray(gen.emid.value if hasattr(gen.emid, "value") else gen.emid) * KEV_TO_ERG
    return (np.asarray(gen.Tvals, float), np.asarray(cosmic) @ emid_erg,
            np.asarray(metal) @ emid_erg)


def table_band_emissivity(kt_kev, Z_solar, band_kev=(0.5, 2.0), apec=None) -> np.ndarray:
    """Rest-frame band energy emissivity of the emission table the images are made with.

    The true luminosities of the catalog (L = sum n_e n_H V Lambda) from the same emission
    model as the photons: with the project's own table (no ``CLUSTERMASS_APEC_DIR``, or
    ``apec.source == "clustermass-approx"``) its physics tabulated on the table's grid
    (:func:`band_emissivity`); with real AtomDB (or any user) tables the FITS files
    themselves, read through SOXS and interpolated linearly in kT between the table's
    temperatures, as SOXS and pyXSIM interpolate; zero outside the table, as the images.

    Parameters
    ----------
    kt_kev, Z_solar : float or array_like
        Temperature (keV) and metallicity (Anders & Grevesse 1989 solar units), broadcast.
    band_kev : (float, float)
        Rest-frame band, keV.
    apec : ApecTables, optional
        The tables; default: those of the settings (``CLUSTERMASS_APEC_DIR``) without
        writing anything.

    Returns
    -------
    np.ndarray
        erg cm^3 s^-1 per n_e n_H.
    """
    if apec is None:
        user_dir = settings.current().apec_dir
        if user_dir is None:
            return band_emissivity(kt_kev, Z_solar, band_kev)
        apec = resolve_apec(user_dir)
    if apec.source == "clustermass-approx":
        return band_emissivity(kt_kev, Z_solar, band_kev)
    tvals, cos, met = _fits_band_energy_table(str(apec.root), str(apec.version),
                                              float(band_kev[0]), float(band_kev[1]))
    kt = np.asarray(kt_kev, dtype=np.float64)
    c = np.interp(kt, tvals, cos, left=0.0, right=0.0)
    m = np.interp(kt, tvals, met, left=0.0, right=0.0)
    return c + np.asarray(Z_solar, dtype=np.float64) * m


# ----------------------------------------------------------------------------------
# FITS writing
# ----------------------------------------------------------------------------------
def _table_hdu(rows: np.ndarray, units: dict, header: dict):
    """Binary table HDU from a big-endian structured array (much faster than Columns)."""
    from astropy.io import fits

    hdu = fits.BinTableHDU(data=rows, name=header.pop("EXTNAME"))
    for i, name in enumerate(rows.dtype.names, start=1):
        if name in units:
            hdu.header[f"TUNIT{i}"] = units[name]
    for key, val in header.items():
        hdu.header[key] = val
    return hdu


def _param_hdu(kts, n_per_t, count_name):
    dt = np.dtype([("kT", ">f4"), ("EDensity", ">f4"), ("Time", ">f4"), ("NElement", ">i4"),
                   (count_name, ">i4")])
    rows = np.zeros(kts.size, dt)
    rows["kT"] = kts
    rows["EDensity"] = 1.0
    rows["NElement"] = len(_METALS) + 2
    rows[count_name] = n_per_t
    return _table_hdu(rows, {"kT": "keV", "EDensity": "cm**-3", "Time": "s"},
                      {"EXTNAME": "PARAMETERS", "HDUCLASS": "ATOMDB",
                       "CMVERS": (TABLE_VERSION, "clustermass approximate table, not AtomDB")})


def _coco_hdu(kt_kev: float):
    elems = (1, 2) + _METALS
    grids = [_continuum_energy_grid(z) for z in elems]
    nmax = max(g.size for g in grids)
    dt = np.dtype([("Z", ">i4"), ("rmJ", ">i4"), ("N_Cont", ">i4"), ("E_Cont", ">f4", (nmax,)),
                   ("Continuum", ">f4", (nmax,)), ("N_Pseudo", ">i4"), ("E_Pseudo", ">f4", (2,)),
                   ("Pseudo", ">f4", (2,))])
    rows = np.zeros(len(elems), dt)
    for k, (z, g) in enumerate(zip(elems, grids)):
        rows["Z"][k] = z
        rows["N_Cont"][k] = g.size
        rows["E_Cont"][k, : g.size] = g
        rows["E_Cont"][k, g.size:] = g[-1]
        rows["Continuum"][k, : g.size] = _element_continuum(z, g, kt_kev)
    rows["N_Pseudo"] = 2
    rows["E_Pseudo"] = (_E_MIN_KEV, _E_MAX_KEV)
    units = {"E_Cont": "keV", "Continuum": "photons cm^3 s^-1 keV^-1", "E_Pseudo": "keV",
             "Pseudo": "photons cm^3 s^-1 keV^-1"}
    return _table_hdu(rows, units, {"EXTNAME": "EMISSIVITY", "TEMP_K": (
        kt_kev * _K_PER_KEV, "electron temperature (K)"), "DENSITY": (1.0, "cm**-3")})


def _line_hdu(kt_kev: float):
    lam, eps, elem, ion = [], [], [], []
    for z in _METALS:
        e_l, eps_l = _element_lines(z, kt_kev)
        lam += list(HC_KEV_ANGSTROM / e_l)
        eps += list(eps_l)
        elem += [z] * e_l.size
        # ion (1 = neutral): He-like = z-1, H-like = z; Fe L lumped as Fe XX (20)
        ion += [z - 1, z - 1, z, z][: min(4, e_l.size)] + [20] * max(0, e_l.size - 4)
    dt = np.dtype([("Lambda", ">f4"), ("Lambda_Err", ">f4"), ("Epsilon", ">f4"),
                   ("Epsilon_Err", ">f4"), ("Element", ">i4"), ("Ion", ">i4"),
                   ("UpperLev", ">i4"), ("LowerLev", ">i4")])
    rows = np.zeros(len(lam), dt)
    rows["Lambda"] = lam
    rows["Epsilon"] = eps
    rows["Element"] = elem
    rows["Ion"] = ion
    rows["LowerLev"] = 1
    units = {"Lambda": "A", "Lambda_Err": "A", "Epsilon": "photons cm^3 s^-1"}
    hdu = _table_hdu(rows, units, {"EXTNAME": "EMISSIVITY", "TEMP_K": (
        kt_kev * _K_PER_KEV, "electron temperature (K)"), "DENSITY": (1.0, "cm**-3")})
    return hdu, len(lam)


def _atomic_write_hdul(hdul, path: Path) -> None:
    buffer = io.BytesIO()
    hdul.writeto(buffer, checksum=False, output_verify="exception")
    write_bytes(path, buffer.getvalue())


def _manifest(version: str, kts: np.ndarray) -> dict:
    return {"generator": "pipeline.emission", "revision": _GENERATOR_REVISION, "version": version,
            "kT_keV": [float(t) for t in kts], "E_keV": [_E_MIN_KEV, _E_MAX_KEV, _N_E]}


def write_apec_tables(out_dir=None, version: str = TABLE_VERSION, kt_kev=None) -> dict:
    """Write the project's APEC-format tables (idempotent, atomic, deterministic bytes).

    Parameters
    ----------
    out_dir : path-like, optional
        Target directory; default :func:`default_table_dir`.
    version : str
        Version string in the file names (``apec_v{version}_coco.fits``); must not look
        like an AtomDB version (digits and dots) so it never shadows real tables.
    kt_kev : array_like, optional
        Table temperatures (keV, increasing); default :func:`kt_grid_kev`. Smaller grids
        are for tests.

    Returns
    -------
    dict
        ``{"root": str, "version": str, "paths": {"coco": str, "line": str},
        "sha256": {"coco": hex, "line": hex}}``. Existing files are reused when the
        manifest (generator revision and checksums) matches.
    """
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_\-]*", version) or re.fullmatch(r"[0-9.]+", version):
        raise ClusterMassError(f"emission table version {version!r} must start with a letter "
                     "(e.g. 'cm1') so it cannot collide with AtomDB's numeric versions")
    out = Path(out_dir) if out_dir is not None else default_table_dir()
    out.mkdir(parents=True, exist_ok=True)
    paths = {"coco": out / f"apec_v{version}_coco.fits", "line": out / f"apec_v{version}_line.fits"}
    man_path = out / f"apec_v{version}_manifest.json"
    kts = kt_grid_kev() if kt_kev is None else np.asarray(kt_kev, dtype=np.float64)
    if kts.ndim != 1 or kts.size < 2 or np.any(np.diff(kts) <= 0) or kts[0] <= 0:
        raise ClusterMassError("kt_kev must be an increasing 1D array of at least two positive temperatures")
    want = _manifest(version, kts)
    if man_path.exists() and all(p.exists() for p in paths.values()):
        try:
            have = json.loads(man_path.read_text())
        except json.JSONDecodeError:
            have = {}
        if {k: have.get(k) for k in want} == want and all(
                have.get("sha256", {}).get(k) == sha256_file(p) for k, p in paths.items()):
            return {"root": str(out), "version": version, "paths": {k: str(p) for k, p in paths.items()},
                    "sha256": have["sha256"]}
    from astropy.io import fits

    coco = [fits.PrimaryHDU(), None] + [_coco_hdu(t) for t in kts]
    coco[1] = _param_hdu(kts, [coco[2].data.shape[0]] * kts.size, "NCont")
    line_hdus = [_line_hdu(t) for t in kts]
    line = [fits.PrimaryHDU(), _param_hdu(kts, [n for _, n in line_hdus], "NLine")]
    line += [h for h, _ in line_hdus]
    for k, hdus in (("coco", coco), ("line", line)):
        _atomic_write_hdul(fits.HDUList(hdus), paths[k])
    sha = {k: sha256_file(p) for k, p in paths.items()}
    write_text(man_path, json.dumps({**want, "sha256": sha}, indent=1, sort_keys=True, allow_nan=False))
    return {"root": str(out), "version": version, "paths": {k: str(p) for k, p in paths.items()},
            "sha256": sha}


# ----------------------------------------------------------------------------------
# Resolving which tables to use
# ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ApecTables:
    """Where the APEC-format tables are: pass ``root``/``version`` to pyXSIM/SOXS as
    ``model_root``/``model_vers`` (``apec_root``/``apec_vers`` for ApecGenerator)."""

    root: str
    version: str
    source: str  # "clustermass-approx" (this module's table) or "user" (e.g. real AtomDB)
    sha256: dict

    @property
    def combined_sha256(self) -> str:
        """One checksum for the table pair (dataset card ``checksums.emission_table``)."""
        text = "".join(f"{k}:{self.sha256[k]}\n" for k in sorted(self.sha256))
        return hashlib.sha256(text.encode()).hexdigest()

    def to_dict(self) -> dict:
        return {"root": self.root, "version": self.version, "source": self.source,
                "sha256": dict(self.sha256), "combined_sha256": self.combined_sha256}


def _version_key(v: str):
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"[.]", v))


def resolve_apec(dir=None, version: str | None = None) -> ApecTables:  # noqa: A002
    """Find the emission tables to use.

    Real AtomDB tables are used when a directory is given (``dir`` or the environment
    variable ``CLUSTERMASS_APEC_DIR``) that holds ``apec_v{V}_coco.fits`` and
    ``apec_v{V}_line.fits``; with several versions, ``version`` picks one, else the
    highest numeric version. Without a directory, the project's own approximate table is
    written (once) to :func:`default_table_dir` and used.

    Raises
    ------
    ClusterMassError
        A directory was given but holds no complete APEC table pair.
    """
    user_dir = dir if dir is not None else settings.current().apec_dir
    if user_dir is None:
        info = write_apec_tables(version=version or TABLE_VERSION)
        return ApecTables(info["root"], info["version"], "clustermass-approx", info["sha256"])
    root = Path(user_dir).expanduser()
    found = {}
    if root.is_dir():
        for p in root.glob("apec_v*_coco.fits"):
            v = p.name[len("apec_v"): -len("_coco.fits")]
            if not v.endswith("_nei") and (root / f"apec_v{v}_line.fits").exists():
                found[v] = p
    if version is not None:
        found = {v: p for v, p in found.items() if v == version}
    if not found:
        want = f"apec_v{version}_coco.fits/_line.fits" if version else "apec_v<VERSION>_coco.fits and apec_v<VERSION>_line.fits"
        raise ClusterMassError(
            f"no APEC emission tables in {str(root)!r}: expected {want} (AtomDB, "
            "http://www.atomdb.org/download.php). Point CLUSTERMASS_APEC_DIR (or dir=) at the "
            "folder holding them, or unset it to use the project's built-in approximate table.")
    v = sorted(found, key=_version_key)[-1]
    sha = {"coco": sha256_file(root / f"apec_v{v}_coco.fits"), "line": sha256_file(root / f"apec_v{v}_line.fits")}
    source = "clustermass-approx" if v == TABLE_VERSION else "user"
    return ApecTables(str(root), v, source, sha)
