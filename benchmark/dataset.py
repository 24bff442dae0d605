"""Loader of a clustermass dataset directory (``data/<preset>/``), torchvision style.

Opening a dataset verifies it before anything is read for training or scoring:

- ``dataset_card.json`` is present and parses;
- ``splits.json`` is present and its sha256 equals ``card["splits_sha256"]``;
- ``catalog.csv`` is present with every contract column, unique image ids, and folds
  that agree with ``splits.json``;
- every image file named by the catalog is present *with content*: DataLad keeps file
  content in git-annex, and a clone that has not fetched it holds only a symlink into
  ``.git/annex/objects`` whose target is missing (or, for unlocked files, a small pointer
  file). Those are reported as "content not fetched: run ``datalad get`` / ``make data``".

Images are read lazily, one HDF5 file at a time, only for the ids asked for.

:func:`write_fake_dataset` writes a tiny but valid dataset in exactly the on-disk layout
(beta-model clusters whose counts scale with mass, a flat background, Poisson noise) for
tests of the loader, the harness and the models.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.errors import DatasetError, format_problems
from benchmark.splits import Splits, check_splits, load_splits, splits_from_catalog

__all__ = [
    "ClusterMassDataset",
    "write_fake_dataset",
    "CATALOG_COLUMNS",
    "CARD_NAME",
    "CATALOG_NAME",
    "SPLITS_NAME",
    "NPIX",
]

CARD_NAME = "dataset_card.json"
CATALOG_NAME = "catalog.csv"
SPLITS_NAME = "splits.json"
NPIX = 128

#: Catalog columns, in their on-disk order (see the shared contract).
CATALOG_COLUMNS = (
    "image_id", "cluster_id", "epoch", "projection", "file", "index",
    "redshift", "log10_m500c", "r500c_kpc", "r500c_arcmin", "t500_kev", "gas_fraction",
    "cool_core", "merger", "lx_total_erg_s", "lx_cex_erg_s", "counts", "background_counts",
    "seed", "fold",
)
_INT_COLUMNS = ("cluster_id", "epoch", "index", "cool_core", "merger", "seed", "fold")
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_NOT_FETCHED = ("content not fetched: run `datalad get {path}` in the dataset, "
                "or `make data`")


def _content_problem(path: Path) -> str | None:
    """Why ``path`` has no usable content, or None when it has."""
    if path.is_symlink() and not path.exists():
        # git-annex keeps content behind a symlink; a missing target = not fetched.
        target = os.readlink(path)
        if ".git/annex/objects" in target.replace(os.sep, "/"):
            return _NOT_FETCHED.format(path=path.name)
        return f"broken symlink to {target}"
    if not path.exists():
        return "missing"
    if not path.is_file():
        return "not a regular file"
    if path.stat().st_size == 0:
        return "empty file"
    return None


def _is_annex_pointer(path: Path) -> bool:
    # An unlocked, unfetched annex file is a small text file naming the annex key.
    if path.stat().st_size > 1024:
        return False
    with open(path, "rb") as fh:
        return b"/annex/objects/" in fh.read(1024)


class ClusterMassDataset:
    """A verified clustermass dataset directory.

    Parameters
    ----------
    root : path-like
        Directory holding ``dataset_card.json``, ``catalog.csv``, ``splits.json`` and
        ``images/``.
    verify_files : bool
        Check that every image file has content (reads 8 bytes per file). Leave on;
        turning it off is for tools that only read the catalog.

    Attributes
    ----------
    root : Path
    card : dict
    catalog : DataFrame
        One row per image, columns :data:`CATALOG_COLUMNS`, in file order.
    splits : Splits

    Raises
    ------
    DatasetError, SplitsError
        Naming what is wrong and how to fix it.
    """

    def __init__(self, root, verify_files: bool = True):
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise DatasetError(f"dataset directory {self.root} does not exist; "
                               "run `make data` (or `clustermass data`) to fetch or build it")
        self.card = self._read_card()
        self.splits: Splits = load_splits(self.root / SPLITS_NAME, self.card.get("splits_sha256"))
        self.catalog = self._read_catalog()
        check_splits(self.splits, self.catalog)
        if verify_files:
            self._verify_files()
        self._row_of_id = pd.Series(np.arange(len(self.catalog)),
                                    index=self.catalog["image_id"].to_numpy())

    # -- opening ---------------------------------------------------------------------
    def _read_card(self) -> dict:
        path = self.root / CARD_NAME
        problem = _content_problem(path)
        if problem:
            raise DatasetError(f"{path}: {problem}. Not a clustermass dataset, or not "
                               "fetched: run `make data`")
        try:
            card = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DatasetError(f"{path} is not valid JSON ({exc}); re-fetch the dataset "
                               "(`make data`)") from None
        if not isinstance(card, dict):
            raise DatasetError(f"{path} must hold a JSON object")
        missing = [k for k in ("name", "version", "splits_sha256") if k not in card]
        if missing:
            raise DatasetError(f"{path} lacks {missing}; regenerate the dataset (`make data`)")
        return card

    def _read_catalog(self) -> pd.DataFrame:
        path = self.root / CATALOG_NAME
        problem = _content_problem(path)
        if problem:
            raise DatasetError(f"{path}: {problem}")
        expect = self.card.get("checksums", {}).get("catalog_csv")
        if expect:
            got = hashlib.sha256(path.read_bytes()).hexdigest()
            if got != expect:
                raise DatasetError(f"{path} has sha256 {got}, the card records {expect}: the "
                                   "catalog was modified; restore it or re-fetch (`make data`)")
        try:
            cat = pd.read_csv(path, dtype={"image_id": str, "projection": str, "file": str},
                              keep_default_na=False, na_values=[""])
        except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
            raise DatasetError(f"{path} cannot be parsed ({exc}); re-fetch (`make data`)") \
                from None
        missing = [c for c in CATALOG_COLUMNS if c not in cat.columns]
        if missing:
            raise DatasetError(f"{path} lacks columns {missing}; it was written by another "
                               "format version: regenerate the dataset (`make data`)")
        problems = []
        dup = cat["image_id"][cat["image_id"].duplicated()].tolist()
        if dup:
            problems.append(f"duplicate image_id: {dup[:10]}")
        for col in _INT_COLUMNS:
            if not pd.api.types.is_integer_dtype(cat[col]):
                problems.append(f"column {col} is not integer")
        if problems:
            raise DatasetError(format_problems(f"{path} is inconsistent", problems,
                                               "Regenerate the dataset (`make data`)."))
        return cat

    def _verify_files(self) -> None:
        problems = []
        for rel in pd.unique(self.catalog["file"]):
            path = self.root / rel
            problem = _content_problem(path)
            if problem is None:
                if _is_annex_pointer(path):
                    problem = _NOT_FETCHED.format(path=rel)
                else:
                    with open(path, "rb") as fh:
                        if fh.read(8) != _HDF5_MAGIC:
                            problem = "not an HDF5 file"
            if problem:
                problems.append(f"{rel}: {problem}")
        if problems:
            fix = ("Fetch the content with `datalad get .` inside the dataset, or run "
                   "`make data`." if any("not fetched" in p for p in problems)
                   else "Re-fetch or regenerate the dataset (`make data`).")
            raise DatasetError(format_problems(
                f"{len(problems)} image file(s) of {self.root} unusable", problems[:20]
                + ([f"... and {len(problems) - 20} more"] if len(problems) > 20 else []), fix))

    # -- access ------------------------------------------------------------------------
    @property
    def version(self) -> str:
        """Dataset version from the card."""
        return str(self.card["version"])

    @property
    def n_folds(self) -> int:
        return self.splits.n_folds

    def __len__(self) -> int:
        return len(self.catalog)

    def __getitem__(self, i: int):
        """``(counts (128,128) int32, catalog row as a dict)`` of catalog row ``i``."""
        row = self.catalog.iloc[int(i)]
        return self.images([row["image_id"]])[0], row.to_dict()

    def __repr__(self) -> str:
        return (f"ClusterMassDataset({str(self.root)!r}, version={self.version!r}, "
                f"n_images={len(self)}, n_clusters={self.catalog['cluster_id'].nunique()})")

    def rows(self, image_ids) -> np.ndarray:
        """Positional catalog indices of ``image_ids``; unknown ids raise."""
        ids = pd.Index(np.asarray(image_ids, dtype=object))
        pos = self._row_of_id.reindex(ids)
        bad = ids[pos.isna().to_numpy()]
        if len(bad):
            raise DatasetError(f"{len(bad)} unknown image id(s): {list(bad[:10])}")
        return pos.to_numpy(dtype=np.int64)

    def images(self, image_ids=None, indices=None) -> np.ndarray:
        """Counts images, int32 ``(N, 128, 128)``, in the order of the ids given.

        Parameters
        ----------
        image_ids : sequence of str, optional
            Default: every image, in catalog order.
        indices : array of int, optional
            Positional catalog rows instead of ids (e.g. from :meth:`fold_indices`).
        """
        import h5py  # lazy: catalog-only users never import it

        if indices is not None:
            pos = np.asarray(indices, dtype=np.int64)
        elif image_ids is None:
            pos = np.arange(len(self.catalog))
        else:
            pos = self.rows(image_ids)
        out = np.empty((len(pos), NPIX, NPIX), dtype=np.int32)
        if len(pos) == 0:
            return out
        sub = self.catalog.iloc[pos]
        files = sub["file"].to_numpy()
        rows_in_file = sub["index"].to_numpy()
        ids = sub["image_id"].to_numpy()
        for rel in pd.unique(files):
            sel = np.flatnonzero(files == rel)
            r = rows_in_file[sel]
            order = np.argsort(r, kind="stable")
            uniq, inverse = np.unique(r[order], return_inverse=True)
            path = self.root / rel
            try:
                with h5py.File(path, "r") as fh:
                    # h5py wants increasing, unique indices for fancy selection; a
                    # contiguous run is read as a (much faster) slice.
                    sel_h5 = (slice(int(uniq[0]), int(uniq[-1]) + 1)
                              if uniq[-1] - uniq[0] + 1 == len(uniq) else uniq.tolist())
                    block = fh["counts"][sel_h5]
                    file_ids = fh["image_id"][sel_h5]
            except (OSError, KeyError) as exc:
                problem = _content_problem(path) or f"unreadable ({exc})"
                raise DatasetError(f"{rel}: {problem}; re-fetch the dataset (`make data`)") \
                    from None
            file_ids = np.array([s.decode() if isinstance(s, bytes) else str(s)
                                 for s in file_ids])
            if not np.array_equal(file_ids[inverse], ids[sel][order]):
                raise DatasetError(f"{rel}: image ids in the file do not match catalog.csv; "
                                   "the dataset is inconsistent: regenerate it (`make data`)")
            out[sel[order]] = block[inverse]
        return out

    def fold_indices(self, k: int) -> dict:
        """Positional catalog indices of fold ``k``: ``dict(train=, val=, test=)``.

        ``test`` is fold ``k``, ``val`` is fold ``splits.validation_fold(k)``, ``train``
        is every other fold. Arrays are sorted int64.
        """
        fold = self.catalog["fold"].to_numpy()
        test = self.splits._check_k(k)
        val = self.splits.validation_fold(k)
        return {
            "train": np.flatnonzero((fold != test) & (fold != val)),
            "val": np.flatnonzero(fold == val),
            "test": np.flatnonzero(fold == test),
        }

    def aux(self, indices=None) -> pd.DataFrame:
        """Auxiliary inputs a model may use: ``image_id, redshift, pixel_arcsec``."""
        sub = self.catalog if indices is None else self.catalog.iloc[np.asarray(indices)]
        pix = float(self.card.get("image", {}).get("pixel_arcsec", 16.9 * 60 / NPIX))
        return pd.DataFrame({
            "image_id": sub["image_id"].to_numpy(),
            "redshift": sub["redshift"].to_numpy(dtype=float),
            "pixel_arcsec": np.full(len(sub), pix),
        })


# ---------------------------------------------------------------------------------------
# Fake dataset for tests
# ---------------------------------------------------------------------------------------

def _r500c_kpc(m500c_msun: np.ndarray, z: np.ndarray, h: float, om0: float) -> np.ndarray:
    # R500c from M500c = 500 * rho_c(z) * 4/3 pi R^3, rho_c0 = 2.775e11 h^2 Msun/Mpc^3.
    ez2 = om0 * (1 + z) ** 3 + (1 - om0)
    rho_c = 2.775e11 * h ** 2 * ez2
    return (3 * m500c_msun / (4 * np.pi * 500 * rho_c)) ** (1 / 3) * 1e3


def _kpc_per_arcmin(z: float, h: float, om0: float) -> float:
    # Flat LCDM proper distance per arcmin: D_A = c/H0 * int_0^z dz/E(z) / (1+z).
    zz = np.linspace(0.0, z, 2001)
    inv_e = 1 / np.sqrt(om0 * (1 + zz) ** 3 + 1 - om0)
    d_c_kpc = 2.99792458e5 / (100 * h) * np.sum((inv_e[1:] + inv_e[:-1]) / 2 * np.diff(zz)) * 1e3
    return d_c_kpc / (1 + z) * math.pi / (180 * 60)


def _beta_image(n_src: float, rc_pix: float, r500_pix: float, axis_ratio: float,
                angle: float, offset_pix: tuple[float, float], npix: int) -> np.ndarray:
    """Expected counts of a projected elliptical beta model (beta = 2/3), cut at 3 R500."""
    y, x = np.mgrid[0:npix, 0:npix].astype(float)
    cx, cy = (npix - 1) / 2 + offset_pix[0], (npix - 1) / 2 + offset_pix[1]
    dx, dy = x - cx, y - cy
    ca, sa = math.cos(angle), math.sin(angle)
    u, v = ca * dx + sa * dy, (-sa * dx + ca * dy) / axis_ratio
    r2 = (u * u + v * v) / rc_pix ** 2
    surf = (1 + r2) ** (-1.5)  # beta = 2/3: S ~ (1 + r^2/rc^2)^(-3 beta + 1/2)
    surf[(u * u + v * v) > (3 * r500_pix) ** 2] = 0
    return n_src * surf / surf.sum()


def write_fake_dataset(root, n_clusters: int = 30, n_epochs: int = 2, seed: int = 0,
                       n_folds: int = 10) -> Path:
    """Write a tiny but valid dataset in the contract's on-disk layout.

    Each cluster has ``n_epochs`` epochs x 3 projections. Epoch 0 has log10 M500c drawn
    uniformly in 13.8-15.2; each earlier epoch is 0.05-0.15 dex lighter. Images are
    elliptical beta models (core radius 0.1-0.2 R500c, smaller in cool cores) whose
    expected source counts scale as M^1.5, plus a flat background, Poisson-sampled.
    The catalog carries every contract column; splits come from
    :func:`benchmark.splits.make_splits`; the card records ``splits_sha256``.

    Parameters
    ----------
    root : path-like
        Directory to create (may exist; existing dataset files are overwritten).
    n_clusters, n_epochs : int
    seed : int
        Everything is drawn from ``numpy.random.default_rng(seed)``.
    n_folds : int
        Folds of the splits (needs ``n_clusters >= n_folds``).

    Returns
    -------
    Path
        ``root``.
    """
    import h5py

    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    h, om0, z_obs = 0.6774, 0.3089, 0.17
    pixel_arcsec = 16.9 * 60 / NPIX
    band_kev, exposure_ks = [0.5, 7.0], 100.0
    kpc_per_arcmin = _kpc_per_arcmin(z_obs, h, om0)
    bkg_per_pix = 0.05  # expected particle background counts per pixel in 100 ks

    m0 = rng.uniform(13.8, 15.2, n_clusters)
    cool = (rng.random(n_clusters) < 0.4).astype(int)
    rows = []
    for c in range(n_clusters):
        cid = c + 1
        rel = f"images/cluster_{cid:04d}.h5"
        counts, ids = [], []
        logm = m0[c] - np.concatenate([[0.0], np.cumsum(rng.uniform(0.05, 0.15, n_epochs - 1))])
        for e in range(n_epochs):
            m = 10 ** logm[e]
            r500_kpc = float(_r500c_kpc(np.array(m), np.array(z_obs), h, om0))
            r500_arcmin = r500_kpc / kpc_per_arcmin
            ez = math.sqrt(om0 * (1 + z_obs) ** 3 + 1 - om0)
            t500 = 5.0 * (ez * m / 3e14) ** (2 / 3) * rng.lognormal(0, 0.1)
            fgas = 0.11 * (m / 3e14) ** 0.2 * rng.lognormal(0, 0.05)
            merger = int(rng.random() < 0.25)
            lx_cex = 1e44 * (m / 3e14) ** 1.6 * ez ** (7 / 3) * rng.lognormal(0, 0.15)
            lx_tot = lx_cex * (1.8 if cool[c] else 1.3)
            n_src = 4000.0 * (m / 3e14) ** 1.5
            r500_pix = r500_arcmin * 60 / pixel_arcsec
            rc_frac = rng.uniform(0.05, 0.1) if cool[c] else rng.uniform(0.1, 0.2)
            for p, proj in enumerate("xyz"):
                q = rng.uniform(0.7, 1.0)
                off = (rng.normal(0, 2), rng.normal(0, 2)) if merger else (0.0, 0.0)
                lam = _beta_image(n_src, rc_frac * r500_pix, r500_pix, q,
                                  rng.uniform(0, np.pi), off, NPIX) + bkg_per_pix
                img = rng.poisson(lam).astype(np.int32)
                image_id = f"c{cid:04d}_e{e}_{proj}"
                rows.append({
                    "image_id": image_id, "cluster_id": cid, "epoch": e, "projection": proj,
                    "file": rel, "index": len(counts), "redshift": z_obs,
                    "log10_m500c": round(float(logm[e]), 6), "r500c_kpc": r500_kpc,
                    "r500c_arcmin": r500_arcmin, "t500_kev": t500, "gas_fraction": fgas,
                    "cool_core": int(cool[c]), "merger": merger, "lx_total_erg_s": lx_tot,
                    "lx_cex_erg_s": lx_cex, "counts": int(img.sum()),
                    "background_counts": bkg_per_pix * NPIX * NPIX,
                    "seed": int(seed * 1_000_003 + cid * 1000 + e * 10 + p), "fold": -1,
                })
                counts.append(img)
                ids.append(image_id)
        with h5py.File(root / rel, "w") as fh:
            ds = fh.create_dataset("counts", data=np.stack(counts), dtype="int32",
                                   compression="gzip", shuffle=True, chunks=(1, NPIX, NPIX))
            ds.attrs["units"] = "count"
            fh.create_dataset("image_id", data=np.array(ids, dtype=object),
                              dtype=h5py.string_dtype("utf-8"))
            fh.attrs.update({"layout_version": 1, "cluster_id": cid, "pixel_arcsec": pixel_arcsec,
                             "band_kev": np.asarray(band_kev, dtype=np.float64),
                             "exposure_ks": exposure_ks, "npix": NPIX, "fov_arcmin": 16.9,
                             "renderer": "analytic", "source": "synthetic",
                             "fingerprint": f"fake-seed-{seed}", "complete": 1})

    cat = pd.DataFrame(rows, columns=list(CATALOG_COLUMNS))
    splits = splits_from_catalog(cat, n_folds=n_folds, seed=seed)
    cat["fold"] = splits.folds_of(cat["cluster_id"].to_numpy())
    splits_bytes = splits.to_json()
    (root / SPLITS_NAME).write_bytes(splits_bytes)
    cat.to_csv(root / CATALOG_NAME, index=False, float_format="%.10g", lineterminator="\n")
    card = {
        "name": "clustermass-fake",
        "version": "0.0.0-fake",
        "source": "synthetic",
        "renderer": "analytic",
        "preset": "fake",
        "config": {"n_clusters": n_clusters, "n_epochs": n_epochs, "projections": ["x", "y", "z"],
                   "redshift": z_obs, "h": h, "omega_m": om0, "log10_m500c_range": [13.8, 15.2],
                   "source_counts_at_3e14": 4000.0, "counts_mass_slope": 1.5,
                   "background_counts_per_pixel": bkg_per_pix, "beta": 2 / 3,
                   "n_folds": n_folds, "note": "fake test dataset (benchmark.dataset."
                   "write_fake_dataset); not for science"},
        "master_seed": seed,
        "n_clusters": n_clusters,
        "n_images": len(cat),
        "image": {"npix": NPIX, "fov_arcmin": 16.9, "pixel_arcsec": pixel_arcsec,
                  "band_kev": band_kev, "exposure_ks": exposure_ks},
        "checksums": {"catalog_csv": hashlib.sha256((root / CATALOG_NAME).read_bytes())
                      .hexdigest()},
        "splits_sha256": splits.sha256(),
        "packages": {"numpy": np.__version__, "pandas": pd.__version__,
                     "h5py": h5py.__version__},
        "references": ["Ntampaka et al. 2019, ApJ 876, 82 (arXiv:1810.07703)"],
    }
    (root / CARD_NAME).write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    return root
