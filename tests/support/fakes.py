"""Fakes of the tests: a tiny but valid dataset in the contract's on-disk layout.

Like torchvision's dataset tests, the fake lives with the tests and the loader is checked
from outside: :func:`write_fake_dataset` writes beta-model clusters whose counts scale with
mass, a flat background and Poisson noise, with every contract column, splits and card.
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.core.cosmology import H, OMEGA_M, efunc, kpc_per_arcsec, r500c_kpc
from benchmark.dataset.layout import CARD_NAME, CATALOG_COLUMNS, CATALOG_NAME, NPIX, SPLITS_NAME
from benchmark.dataset.splits import splits_from_catalog


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
    :func:`benchmark.dataset.splits.make_splits`; the card records ``splits_sha256``.

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
    h, om0, z_obs = H, OMEGA_M, 0.17
    pixel_arcsec = 16.9 * 60 / NPIX
    band_kev, exposure_ks = [0.5, 7.0], 100.0
    kpc_per_arcmin = 60.0 * float(kpc_per_arcsec(z_obs))
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
            r500_kpc = float(r500c_kpc(m, z_obs))
            r500_arcmin = r500_kpc / kpc_per_arcmin
            ez = float(efunc(z_obs))
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
                   "n_folds": n_folds,
                   "note": "fake test dataset (tests/support/fakes.py); not for science"},
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


def fold_parts(dataset, k: int = 0, truth_columns=()):
    """The harness's FoldData (train, val, test) of fold ``k``; the test part has no targets.

    ``truth_columns`` are added to the allowed auxiliary columns, as for a model that
    declares them (lx_truth, the oracles).
    """
    from benchmark.training import ALLOWED_AUX_COLUMNS, FoldData

    idx = dataset.fold_indices(k)
    images = dataset.images()

    def part(name, with_y):
        rows = np.asarray(idx[name], dtype=np.int64)
        aux = dataset.aux(rows).reset_index(drop=True)[list(ALLOWED_AUX_COLUMNS)]
        for col in truth_columns:
            aux[col] = dataset.catalog[col].to_numpy()[rows]
        y = dataset.catalog["log10_m500c"].to_numpy()[rows] if with_y else None
        return FoldData(np.asarray(images[rows], dtype=np.float32), aux, y)

    return part("train", True), part("val", True), part("test", False)
