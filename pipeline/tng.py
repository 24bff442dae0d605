"""IllustrisTNG halo cutouts as a source of mock observations.

Input (one folder, ``dataset.tng_dir``)
---------------------------------------
* Cutouts as the TNG API serves them (``/api/TNG300-1/snapshots/99/halos/<id>/cutout.hdf5``):
  Arepo HDF5 with the ``Header`` group (a ``Config`` group is not needed: API cutouts often
  lack it, and yt's documentation adds one by hand only so that ``yt.load`` recognises the
  file; this loader builds yt's Arepo dataset directly) and ``PartType0`` holding
  Coordinates (ckpc/h), Masses (1e10 Msun/h), Density (1e10 Msun/h / (ckpc/h)^3),
  InternalEnergy ((km/s)^2), ElectronAbundance, GFM_Metallicity (mass fraction),
  StarFormationRate (Msun/yr) and Velocities (km sqrt(a)/s).
* A group catalog ``halos.json`` beside them (this project's format, values copied from the
  TNG group catalog fields of the same name, in the same units)::

      {"simulation": "TNG300-1", "snapshot": 99, "redshift": 0.0, "hubble": 0.6774,
       "halos": [{"halo_id": 0, "file": "cutout_0.hdf5", "epoch": 0,
                  "GroupPos": [x, y, z],           # ckpc/h  (halo centre: potential minimum)
                  "Group_M_Crit500": 12345.6,      # 1e10 Msun/h
                  "Group_R_Crit500": 1234.5}]}     # ckpc/h

  ``epoch`` (optional, default 0) lets several snapshots of one halo be used as the
  epochs of one cluster (``halo_id`` is the cluster id).

Friends-of-friends members only
-------------------------------
A TNG API *halo* cutout holds the cells of the halo's friends-of-friends (FoF) group only
(Nelson et al. 2019, ComAC 6, 2, Sec. 3: "halo" cutouts are the FoF group's particles). Gas
outside the FoF group -- beyond roughly R200 in most directions, infalling groups not yet
linked, and anything along the line of sight -- is absent, so the images lack the outskirts
and projected structure that a full simulation volume (or a subbox/spherical cutout) would
show. :func:`tng_population` says so in a log message.

What is rendered
----------------
yt loads a cutout (``arepo_hdf5``, ``bounding_box`` around the cutout's cells,
``default_species_fields="ionized"``); a particle filter keeps the hot, X-ray emitting gas
(T > 3e5 K and no star formation: star-forming cells carry the effective equation-of-state
temperature of the Springel & Hernquist 2003 model, not a physical one). pyXSIM draws
photons from the filtered cells inside a cube of the image field's side around the halo
centre, observed at the observation's redshift (``z_obs``) like the synthetic clusters.
Every check (files readable, groups and fields present, catalog complete) runs before any
rendering; problems raise one :class:`TNGError` naming them.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Sequence

import logging

import numpy as np

from benchmark.core.cosmology import KEV_PER_K, kpc_per_arcsec, r500c_kpc
from benchmark.core.io import write_text
from pipeline.chain import ChainError, ChainSettings, render_views

__all__ = [
    "TNGError",
    "TNGHalo",
    "REQUIRED_GAS_FIELDS",
    "HOT_GAS_T_MIN_K",
    "FOF_ONLY_MESSAGE",
    "read_group_catalog",
    "check_cutout",
    "load_cutout",
    "render_tng_views",
    "halo_from_row",
    "tng_population",
    "write_test_cutout",
    "write_group_catalog",
]

log = logging.getLogger(__name__)

#: What every TNG dataset is told (module docstring, "Friends-of-friends members only").
FOF_ONLY_MESSAGE = (
    "TNG API halo cutouts hold the friends-of-friends members of each halo only: gas outside "
    "the FoF group (outskirts beyond ~R200, unlinked infalling groups, the line of sight) is "
    "absent from these images."
)

REQUIRED_GAS_FIELDS = (
    "Coordinates",
    "Masses",
    "Density",
    "InternalEnergy",
    "ElectronAbundance",
    "GFM_Metallicity",
    "StarFormationRate",
    "Velocities",
)
REQUIRED_HEADER = ("BoxSize", "Redshift", "Time", "HubbleParam", "Omega0", "OmegaLambda", "NumPart_ThisFile")
HOT_GAS_T_MIN_K = 3.0e5
HOT_GAS_FILTER = "hot_gas"
CATALOG_NAME = "halos.json"
_SOURCE_FIELDS = {
    "temperature_field": (HOT_GAS_FILTER, "temperature"),
    "emission_measure_field": (HOT_GAS_FILTER, "emission_measure"),
    "Zmet": (HOT_GAS_FILTER, "metallicity"),
}
_MP_G = 1.67262192e-24
_KB_ERG_K = 1.380649e-16
_X_H = 0.76


class TNGError(ChainError):
    """A TNG cutout or group catalog cannot be used."""


@dataclasses.dataclass(frozen=True)
class TNGHalo:
    """One halo (cluster-epoch) of the group catalog, in physical units.

    Attributes
    ----------
    halo_id, epoch : int
    cutout : Path
    pos_ckpch : tuple of float
        GroupPos, comoving kpc/h.
    m500c_msun, r500c_kpc : float
        M500c (Msun) and R500c (physical kpc) at the snapshot.
    snapshot_redshift, hubble : float
    """

    halo_id: int
    epoch: int
    cutout: Path
    pos_ckpch: tuple
    m500c_msun: float
    r500c_kpc: float
    snapshot_redshift: float
    hubble: float

    @property
    def log10_m500c(self) -> float:
        return float(np.log10(self.m500c_msun))


# ----------------------------------------------------------------------------- catalog


def read_group_catalog(tng_dir) -> list[TNGHalo]:
    """Read ``halos.json`` in ``tng_dir`` and check every cutout it names (no rendering).

    Raises
    ------
    TNGError
        The catalog is missing or malformed, or a cutout is missing/unreadable/incomplete;
        all problems are listed in one message.
    """
    tng_dir = Path(tng_dir)
    path = tng_dir / CATALOG_NAME
    if not path.is_file():
        raise TNGError(
            f"no group catalog {path}: write {CATALOG_NAME} beside the cutouts (format in "
            "pipeline/tng.py: redshift, hubble and per halo file, GroupPos, Group_M_Crit500, "
            "Group_R_Crit500 copied from the TNG group catalog)"
        )
    try:
        cat = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise TNGError(f"group catalog {path} is not valid JSON ({exc}); rewrite it") from exc
    problems = []
    for key in ("redshift", "hubble", "halos"):
        if key not in cat:
            problems.append(f"top-level key {key!r} missing")
    if problems:
        raise TNGError(f"group catalog {path}: " + "; ".join(problems))
    halos, seen = [], set()
    z, h = float(cat["redshift"]), float(cat["hubble"])
    a = 1.0 / (1.0 + z)
    for i, entry in enumerate(cat["halos"]):
        missing = [k for k in ("halo_id", "file", "GroupPos", "Group_M_Crit500", "Group_R_Crit500") if k not in entry]
        if missing:
            problems.append(f"halo #{i}: keys {missing} missing")
            continue
        key = (int(entry["halo_id"]), int(entry.get("epoch", 0)))
        if key in seen:
            problems.append(f"halo #{i}: duplicate halo_id/epoch {key}")
        seen.add(key)
        m500 = float(entry["Group_M_Crit500"]) * 1e10 / h
        r500 = float(entry["Group_R_Crit500"]) * a / h
        if not (m500 > 0 and r500 > 0):
            problems.append(f"halo #{i}: Group_M_Crit500 and Group_R_Crit500 must be positive")
            continue
        cutout = tng_dir / entry["file"]
        try:
            check_cutout(cutout)
        except TNGError as exc:
            problems.append(str(exc))
            continue
        halos.append(
            TNGHalo(key[0], key[1], cutout, tuple(float(v) for v in entry["GroupPos"]), m500, r500, z, h)
        )
    if problems:
        raise TNGError(f"TNG input in {tng_dir} cannot be used:\n  " + "\n  ".join(problems))
    return halos


def check_cutout(path) -> dict:
    """Check that ``path`` is a readable Arepo cutout with every needed field; return its Header.

    Raises
    ------
    TNGError
        Naming the file and what is missing.
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise TNGError(f"cutout {path} does not exist; download it from the TNG API or fix 'file'")
    try:
        with h5py.File(path, "r") as f:
            # No Config group is needed: the TNG API's cutouts often lack it (yt's TNG
            # recipe adds one by hand only for yt.load's format guess; load_cutout builds
            # the Arepo dataset directly).
            missing = [g for g in ("Header", "PartType0") if g not in f]
            if missing:
                raise TNGError(
                    f"cutout {path} lacks the group(s) {missing}: not a TNG API cutout "
                    "(Arepo HDF5 with Header and PartType0)"
                )
            header = {k: f["Header"].attrs[k] for k in f["Header"].attrs}
            miss_h = [k for k in REQUIRED_HEADER if k not in header]
            miss_f = [k for k in REQUIRED_GAS_FIELDS if k not in f["PartType0"]]
            if miss_h or miss_f:
                raise TNGError(
                    f"cutout {path} is incomplete: Header attributes {miss_h} and PartType0 fields "
                    f"{miss_f} missing; request the cutout with gas=all (or these fields) from the TNG API"
                )
            n = f["PartType0"]["Coordinates"].shape[0]
            if n == 0:
                raise TNGError(f"cutout {path} holds no gas cells")
            for k in REQUIRED_GAS_FIELDS:
                if f["PartType0"][k].shape[0] != n:
                    raise TNGError(f"cutout {path}: PartType0/{k} has a different length than Coordinates")
    except OSError as exc:
        raise TNGError(f"cutout {path} is not a readable HDF5 file ({exc}); download it again") from exc
    return header


# ----------------------------------------------------------------------------- loading


def _hot_gas_filter(pfilter, data):
    temp = data[(pfilter.filtered_type, "temperature")].to_value("K")
    sfr = data[(pfilter.filtered_type, "StarFormationRate")].d
    return (temp > HOT_GAS_T_MIN_K) & (sfr <= 0.0)


def _emission_measure(field, data):
    ftype = field.name[0]
    volume = data[ftype, "mass"] / data[ftype, "density"]
    return data[ftype, "El_number_density"] * data[ftype, "H_nuclei_density"] * volume


def load_cutout(halo: TNGHalo, side_kpc: float):
    """Load a cutout with yt and select the hot gas in a cube of ``side_kpc`` around the halo.

    Returns
    -------
    (ds, center, data_source)
        The yt dataset, the halo centre (yt array, physical kpc) and the region of hot gas.
    """
    import yt
    from yt.frontends.arepo.api import ArepoHDF5Dataset

    from pipeline.chain import quiet_libraries

    quiet_libraries()

    path = _unwrapped(halo)
    with _h5(path) as f:
        pos = f["PartType0"]["Coordinates"][()]
        a = float(f["Header"].attrs["Time"])
    # bounding box: the cells and the rendered cube (code units are ckpc/h)
    centre = np.asarray(halo.pos_ckpch, dtype=float)
    half_code = 0.5 * side_kpc / a * halo.hubble * 1.001
    lo = np.minimum(pos.min(axis=0), centre - half_code) - 1.0
    hi = np.maximum(pos.max(axis=0), centre + half_code) + 1.0
    try:
        # constructed directly: yt.load's format guess finds Gadget and Arepo both valid
        ds = ArepoHDF5Dataset(str(path), bounding_box=np.array([lo, hi]).T, default_species_fields="ionized")
    except Exception as exc:  # yt raises many types for unreadable files
        raise TNGError(f"yt cannot load cutout {halo.cutout} as arepo_hdf5 ({exc})") from exc
    if HOT_GAS_FILTER not in yt.data_objects.particle_filters.filter_registry:
        yt.add_particle_filter(
            HOT_GAS_FILTER,
            function=_hot_gas_filter,
            filtered_type="PartType0",
            requires=["temperature", "StarFormationRate"],
        )
    ds.add_particle_filter(HOT_GAS_FILTER)
    # n_e n_H V of each cell (yt defines emission_measure for "gas" only, not per particle type)
    ds.add_field(
        (HOT_GAS_FILTER, "emission_measure"),
        function=_emission_measure,
        sampling_type="particle",
        units="cm**-3",
        force_override=True,
    )
    center = ds.arr(np.asarray(halo.pos_ckpch, dtype=float), "code_length").to("kpc")
    half = ds.quan(0.5 * side_kpc, "kpc")
    region = ds.box(center - half, center + half)
    return ds, center, region


def _unwrapped(halo: TNGHalo) -> Path:
    """The cutout, or a copy beside it with coordinates unwrapped around GroupPos when the
    halo straddles the periodic box edge (yt needs one contiguous bounding box)."""
    import shutil

    with _h5(halo.cutout) as f:
        box = float(f["Header"].attrs["BoxSize"])
        pos = f["PartType0"]["Coordinates"][()]
    d = pos - np.asarray(halo.pos_ckpch)
    if np.all(np.abs(d) <= 0.5 * box):
        return halo.cutout
    out = halo.cutout.with_name(halo.cutout.stem + ".unwrapped.hdf5")
    if not out.exists():
        import h5py

        tmp = out.with_name(out.name + ".tmp")
        shutil.copyfile(halo.cutout, tmp)
        with h5py.File(tmp, "r+") as f:
            f["PartType0"]["Coordinates"][...] = np.asarray(halo.pos_ckpch) + (d + 0.5 * box) % box - 0.5 * box
        tmp.replace(out)
    return out


class _h5:
    def __init__(self, path):
        import h5py

        self.f = h5py.File(path, "r")

    def __enter__(self):
        return self.f

    def __exit__(self, *exc):
        self.f.close()


def halo_from_row(row) -> TNGHalo:
    """The :class:`TNGHalo` of one :func:`tng_population` row (for rendering in a worker)."""
    return TNGHalo(
        int(row["cluster_id"]), int(row["epoch"]), Path(row["cutout"]),
        (float(row["pos_x_ckpch"]), float(row["pos_y_ckpch"]), float(row["pos_z_ckpch"])),
        float(row["m500c_msun"]), float(row["r500c_kpc"]), float(row["snapshot_redshift"]), float(row["hubble"]),
    )


def render_tng_views(
    halo: TNGHalo,
    axes: Sequence[str],
    obs,
    seeds: Sequence[int],
    settings: ChainSettings | None = None,
    workdir=None,
):
    """Render one TNG cluster-epoch with the real chain (see :func:`pipeline.chain.render_views`).

    The cube of gas rendered has the side of the image field at the observed redshift
    (``obs.z_obs``), so the image shows what lies within the field around the halo.
    """
    from pipeline.chain import ChainObservation

    o = ChainObservation.from_any(obs)
    side_kpc = o.fov_arcmin * 60.0 * float(kpc_per_arcsec(o.redshift))
    ds, center, region = load_cutout(halo, side_kpc)
    out = render_views(
        None, axes, obs, seeds, settings, workdir,
        ds=ds, center_kpc=center, data_source=region, source_fields=_SOURCE_FIELDS,
    )
    for _, info in out:
        info["halo_id"] = halo.halo_id
    return out


def tng_population(tng_dir, params=None, observation=None):
    """The catalog rows of a TNG dataset (one per halo and epoch), checked before any work.

    Columns: cluster_id, epoch, redshift (observed), log10_m500c, r500c_kpc, r500c_arcmin,
    t500_kev (the synthetic population's M-T relation itself, :func:`pipeline.population.t500_mean_kev`
    with ``params``, so both sources share one constant: Vikhlinin et al. 2009, with the
    population's hydrostatic-bias correction at version 2; for reference only), gas_fraction (NaN:
    not measured here), cool_core, merger (-1: unknown), cutout (path), snapshot_redshift,
    hubble, m500c_msun, pos_{x,y,z}_ckpch (rebuild the halo with :func:`halo_from_row`).
    """
    import pandas as pd

    from pipeline.observation import Observation
    from pipeline.population import PopulationParams, t500_mean_kev

    params = PopulationParams() if params is None else params
    obs = observation or Observation()
    z_obs = float(getattr(obs, "z_obs", 0.2))
    rows = []
    for h in read_group_catalog(tng_dir):
        m = h.m500c_msun
        rows.append(
            {
                "cluster_id": h.halo_id,
                "epoch": h.epoch,
                "redshift": z_obs,
                "log10_m500c": h.log10_m500c,
                "r500c_kpc": h.r500c_kpc,
                "r500c_arcmin": h.r500c_kpc / float(kpc_per_arcsec(z_obs)) / 60.0,
                # one M-T relation for both sources: the population's (its M5 in the preset's h)
                "t500_kev": float(t500_mean_kev(m, h.snapshot_redshift, params)),
                "gas_fraction": float("nan"),
                "cool_core": -1,
                "merger": -1,
                "cutout": str(h.cutout),
                "snapshot_redshift": h.snapshot_redshift,
                "hubble": h.hubble,
                "m500c_msun": h.m500c_msun,
                "pos_x_ckpch": h.pos_ckpch[0],
                "pos_y_ckpch": h.pos_ckpch[1],
                "pos_z_ckpch": h.pos_ckpch[2],
            }
        )
    if not rows:
        raise TNGError(f"group catalog in {tng_dir} lists no halos")
    log.warning("%s (%d halo epochs from %s)", FOF_ONLY_MESSAGE, len(rows), tng_dir)
    return pd.DataFrame(rows).sort_values(["cluster_id", "epoch"]).reset_index(drop=True)


# ----------------------------------------------------------------------------- test data


def write_test_cutout(
    path,
    n_cells: int = 20000,
    m500c_msun: float = 3e14,
    kt_kev: float = 5.0,
    z_solar: float = 0.3,
    rc_kpc: float = 150.0,
    beta: float = 2.0 / 3.0,
    n_e0_cm3: float = 5e-3,
    r_max_kpc: float = 2000.0,
    redshift: float = 0.0,
    hubble: float = 0.6774,
    box_ckpch: float = 205000.0,
    center_ckpch=(100000.0, 50000.0, 150000.0),
    cold_fraction: float = 0.05,
    seed: int = 0,
    drop_fields: Sequence[str] = (),
    with_config: bool = True,
) -> dict:
    """Write a small valid cutout in the TNG API's format: a beta-model cluster of gas cells.

    Cells are drawn with equal mass from the beta-model gas distribution (like Voronoi cells:
    many where the gas is dense), ``cold_fraction`` of them cold (1e4 K) and half of those
    star forming, to exercise the hot-gas filter. ``with_config=False`` leaves out the
    ``Config`` group, as many real API cutouts do. Returns the group-catalog entry (TNG
    units) for :func:`write_group_catalog`.
    """
    import h5py

    rng = np.random.default_rng(seed)
    a = 1.0 / (1.0 + redshift)
    # gas mass profile of the beta model, physical kpc
    r_grid = np.linspace(0.0, r_max_kpc, 4000)
    ne = n_e0_cm3 * (1.0 + (r_grid / rc_kpc) ** 2) ** (-1.5 * beta)
    rho_g = ne * _MP_G / (_X_H + 0.5 * (1.0 - _X_H))  # g/cm^3
    kpc_cm = 3.0856775814913673e21
    dm = 4.0 * np.pi * r_grid**2 * rho_g * kpc_cm**3 * np.gradient(r_grid)
    cum = np.cumsum(dm)
    cum /= cum[-1]
    r = np.interp(rng.uniform(size=n_cells), cum, r_grid)
    mu = rng.normal(size=(n_cells, 3))
    mu /= np.linalg.norm(mu, axis=1)[:, None]
    x_phys = mu * r[:, None]
    total_mass_g = np.sum(dm)
    msun_g = 1.98847e33
    cell_mass_code = total_mass_g / n_cells / msun_g / 1e10 * hubble
    dens_g = np.interp(r, r_grid, rho_g)
    dens_code = dens_g / (1e10 * msun_g / hubble) * (kpc_cm * a / hubble) ** 3
    temp_k = np.full(n_cells, kt_kev / KEV_PER_K)
    sfr = np.zeros(n_cells)
    cold = rng.uniform(size=n_cells) < cold_fraction
    temp_k[cold] = 1e4
    sfr[cold & (rng.uniform(size=n_cells) < 0.5)] = 0.1
    x_e = np.full(n_cells, 1.0 + 2.0 * (1.0 - _X_H) / (4.0 * _X_H))  # fully ionised H + He
    mu_mol = 4.0 / (1.0 + 3.0 * _X_H + 4.0 * _X_H * x_e)
    u_kms2 = temp_k * _KB_ERG_K / ((5.0 / 3.0 - 1.0) * mu_mol * _MP_G) / 1e10
    coords = np.asarray(center_ckpch) + x_phys / a * hubble
    coords %= box_ckpch
    fields = {
        "Coordinates": coords.astype("float64"),
        "Masses": np.full(n_cells, cell_mass_code, dtype="float32"),
        "Density": dens_code.astype("float32"),
        "InternalEnergy": u_kms2.astype("float32"),
        "ElectronAbundance": x_e.astype("float32"),
        "GFM_Metallicity": np.full(n_cells, z_solar * _solar_metal_mass_fraction(), dtype="float32"),
        "StarFormationRate": sfr.astype("float32"),
        "Velocities": rng.normal(scale=300.0, size=(n_cells, 3)).astype("float32"),
        "ParticleIDs": np.arange(1, n_cells + 1, dtype="uint64"),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    npart = np.array([n_cells, 0, 0, 0, 0, 0], dtype="int32")
    with h5py.File(path, "w") as f:
        hdr = f.create_group("Header")
        for k, v in {
            "BoxSize": box_ckpch, "Redshift": redshift, "Time": a, "HubbleParam": hubble,
            "Omega0": 0.3089, "OmegaLambda": 0.6911, "OmegaBaryon": 0.0486,
            "NumFilesPerSnapshot": 1, "MassTable": np.zeros(6), "NumPart_ThisFile": npart,
            "NumPart_Total": npart.astype("uint32"), "NumPart_Total_HighWord": np.zeros(6, dtype="uint32"),
            "Flag_Cooling": 1, "Flag_Sfr": 1, "Flag_Metals": 10, "Flag_Feedback": 1,
            "Flag_DoublePrecision": 1, "Flag_StellarAge": 1,
            "UnitLength_in_cm": 3.085678e21, "UnitMass_in_g": 1.989e43, "UnitVelocity_in_cm_per_s": 1e5,
        }.items():
            hdr.attrs[k] = v
        if with_config:  # API cutouts often come without it
            cfg = f.create_group("Config")
            cfg.attrs["VORONOI"] = 1
            cfg.attrs["COOLING"] = 1
        f.create_group("Parameters")
        g = f.create_group("PartType0")
        for k, v in fields.items():
            if k not in drop_fields:
                g.create_dataset(k, data=v)
    r500_ckpch = _r500_of_test(m500c_msun, redshift, hubble) / a * hubble
    return {
        "file": path.name,
        "GroupPos": [float(c) for c in center_ckpch],
        "Group_M_Crit500": m500c_msun * hubble / 1e10,
        "Group_R_Crit500": r500_ckpch,
    }


def _solar_metal_mass_fraction():
    """Metal mass fraction that pyXSIM reads as 1 solar (Anders & Grevesse 1989 table, X_H=0.76)."""
    from soxs.constants import abund_tables, atomic_weights, metal_elem

    z_sum = (abund_tables["angr"] * atomic_weights)[metal_elem].sum()
    return _X_H * z_sum / atomic_weights[1]


def _r500_of_test(m500c_msun, z, hubble):
    return float(r500c_kpc(m500c_msun, z))


def write_group_catalog(tng_dir, entries, redshift: float = 0.0, hubble: float = 0.6774,
                        simulation: str = "test", snapshot: int = 99) -> Path:
    """Write ``halos.json`` (see module docstring) from entries returned by write_test_cutout."""
    halos = []
    for i, e in enumerate(entries):
        halos.append({"halo_id": int(e.get("halo_id", i)), "epoch": int(e.get("epoch", 0)), **e})
    path = Path(tng_dir) / CATALOG_NAME
    write_text(path, json.dumps({"simulation": simulation, "snapshot": snapshot,
                                 "redshift": redshift, "hubble": hubble, "halos": halos}, indent=1))
    return path
