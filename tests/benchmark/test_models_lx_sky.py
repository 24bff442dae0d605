"""Point sources on the L_X baselines' images: detection, masking, outer background.

Synthetic images made here: an elliptical beta-model cluster (optionally with a peaked cool
core) on a flat background of 5 counts per pixel (the ACIS-I particle background of the
mocks at 100 ks in 0.5-7 keV is 4.2 counts per 7.9-arcsec pixel, plus the unresolved sky),
Poisson-sampled, with point sources injected as single-pixel Poisson counts (the mocks' PSF,
0.5 arcsec FWHM, is far below a pixel).

The false-positive and recall figures measured with these generators are in the docstring
of :mod:`benchmark.models.lx_sky`; the tests below assert bounds around them.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage, special

from benchmark.core.errors import ClusterMassError
from benchmark.models import lx, lx_sky
from benchmark.models.lx import LXModel, RadialProfiles
from benchmark.training import FoldData

NPIX = 128
CENTRE = (NPIX - 1) / 2.0
PIXEL_ARCSEC = 16.9 * 60 / NPIX
BKG = 5.0
Z = 0.2


def cluster_expectation(rng, counts=2e4, r500_pix=35.0, ellipticity=None, cool_core=None):
    """Expected counts of an elliptical beta = 2/3 cluster (+ cool-core spike) + background."""
    eps = rng.uniform(0.0, 0.3) if ellipticity is None else ellipticity
    angle = rng.uniform(0, np.pi)
    rc = rng.uniform(0.08, 0.2) * r500_pix
    yy, xx = np.indices((NPIX, NPIX), dtype=float)
    dx, dy = xx - CENTRE, yy - CENTRE
    u = dx * np.cos(angle) + dy * np.sin(angle)
    v = (-dx * np.sin(angle) + dy * np.cos(angle)) / (1.0 - eps)
    shape = (1 + (u**2 + v**2) / rc**2) ** -1.5
    if cool_core if cool_core is not None else rng.random() < 0.4:
        shape = shape + 3.0 * (1 + (u**2 + v**2) / (0.3 * rc) ** 2) ** -1.5
    return shape / shape.sum() * counts + BKG


def inject(rng, n_sources, counts, min_r=8.0, max_r=np.inf):
    """Positions (x, y pixel centres, away from the centre and the edges) and Poisson counts."""
    xs, ys = [], []
    while len(xs) < n_sources:
        x, y = rng.integers(4, NPIX - 4, 2)
        if min_r <= np.hypot(x - CENTRE, y - CENTRE) <= max_r and all(
                np.hypot(x - a, y - b) > 6 for a, b in zip(xs, ys)):
            xs.append(x)
            ys.append(y)
    img = np.zeros((NPIX, NPIX))
    img[ys, xs] = rng.poisson(counts, n_sources)
    return np.array(xs), np.array(ys), img


def masked(found):
    return found[lx_sky.maskable(found)]


def test_no_detections_on_smooth_clusters():
    """Clean beta-model clusters (bright, elliptical, cool cores): nothing is masked."""
    rng = np.random.default_rng(0)
    images = np.stack([rng.poisson(cluster_expectation(rng, counts=10 ** rng.uniform(3.5, 5.3),
                                                       r500_pix=rng.uniform(20, 50)))
                       for _ in range(40)]).astype(float)
    found = lx_sky.detect_point_sources(images)
    # ~1e-6 false-positive probability per cell over 40 x 16k pixels x 2 scales: expect ~0.
    assert len(masked(found)) <= 1


def test_injected_sources_are_found_and_masked():
    rng = np.random.default_rng(1)
    images, truth = [], []
    for i in range(20):
        xs, ys, src = inject(rng, 8, 40.0)
        images.append(rng.poisson(cluster_expectation(rng)) + src)
        truth.append((xs, ys))
    found = masked(lx_sky.detect_point_sources(np.stack(images)))
    hits = 0
    for i, (xs, ys) in enumerate(truth):
        f = found[found["image"] == i]
        for x, y in zip(xs, ys):
            hits += bool(np.any(np.hypot(f["x_pix"] - x, f["y_pix"] - y) <= 1.0))
    assert hits / 160 > 0.9  # 40-count sources on 5 counts/pixel: measured recall 1.00
    radius = lx_sky.mask_radius_pix(PIXEL_ARCSEC)
    masks = lx_sky.masks_from_sources(found, len(images), NPIX, PIXEL_ARCSEC)
    xs, ys = truth[0]
    assert masks[0][ys, xs].mean() > 0.9 and radius == pytest.approx(1.5)


def test_luminosity_with_sources_recovered_after_masking():
    """L_X (0.15-1 R500c and total) of cluster + sources, masked, matches the clean image."""
    rng = np.random.default_rng(2)
    r500 = 35.0
    clean, dirty = [], []
    for _ in range(12):
        expect = cluster_expectation(rng, counts=2e4, r500_pix=r500)
        base = rng.poisson(expect).astype(float)
        # in the aperture, where they add to the cluster's counts (outside it they raise
        # the outer background, which the subtraction mostly absorbs)
        _, _, src = inject(rng, 10, rng.choice([30.0, 100.0, 300.0]), min_r=7.0, max_r=r500)
        clean.append(base)
        dirty.append(base + src)
    z, aux = np.full(12, Z), pd.DataFrame({"pixel_arcsec": np.full(12, PIXEL_ARCSEC)})
    for inner in (0.15, 0.0):
        def lum(images, mode):
            m = LXModel({"point_sources": mode, "inner_fraction": inner})
            return m.luminosity(m.masked_profiles(FoldData(np.stack(images), aux)),
                                np.full(12, r500), z)
        ref = lum(clean, "none")
        naive = lum(dirty, "none")
        fixed = lum(dirty, "detect")
        # Unmasked, the sources inflate L_X by 3-40% (annulus; 2-17% total); masked, within
        # 2% (measured |L/L_clean - 1| <= 0.42% for the annulus, 0.26% total).
        assert np.median(naive / ref) > 1.05
        np.testing.assert_allclose(fixed / ref, 1.0, atol=0.02)


def test_outer_background_unbiased_on_flat_background():
    """A flat Poisson background: the masked outer-annulus estimate keeps its level."""
    rng = np.random.default_rng(3)
    images = rng.poisson(BKG, (30, NPIX, NPIX)).astype(float)
    found = lx_sky.detect_point_sources(images)
    masks = lx_sky.masks_from_sources(found, 30, NPIX, PIXEL_ARCSEC)
    filled = lx_sky.fill_masked(images, masks)
    prof = RadialProfiles(filled)
    r_bkg = 1.5 * 35.0
    rate = (prof.total - prof.counts_within(np.full(30, r_bkg))) / (
        prof.n_pixels - prof.area_within(np.full(30, r_bkg)))
    # the pixels outside 52 pixels: ~7,800, so the Poisson error of the mean is 0.5%
    assert abs(rate.mean() / BKG - 1.0) < 0.003
    # The detection's background (the larger of the frame and ring means) is conservative:
    # the maximum of two noisy estimates sits a little above the level (measured +2.4%),
    # never below it.
    model = lx_sky.background_model(images, np.ones(images.shape, bool))
    assert 0.0 < model.mean() / BKG - 1.0 < 0.05


def test_fill_uses_the_ring_mean():
    img = np.zeros((1, NPIX, NPIX))
    yy, xx = np.indices((NPIX, NPIX))
    img[0] = np.hypot(yy - CENTRE, xx - CENTRE)  # each ring has (nearly) one value
    mask = np.zeros((1, NPIX, NPIX), bool)
    mask[0, 20, 30] = True
    out = lx_sky.fill_masked(img * 1.0 + mask * 1000.0, mask)
    assert out[0, 20, 30] == pytest.approx(img[0, 20, 30], abs=1.0)
    assert np.array_equal(out[~mask], img[~mask])


def test_fill_in_blocks_gives_the_bits_of_one_pass(monkeypatch):
    """Filling block by block (the speed fix) changes no bit against one pass over all images."""
    rng = np.random.default_rng(5)
    images = rng.poisson(3.0, (7, NPIX, NPIX)) * rng.random((7, NPIX, NPIX))
    masks = rng.random((7, NPIX, NPIX)) < 0.02
    masks[2] = True  # every ring empty: each borrows its inner neighbour's mean
    one_pass = np.where(masks, lx_sky._ring_mean(images, ~masks), images)
    monkeypatch.setattr(lx_sky, "FILL_BLOCK", 3)
    assert np.array_equal(lx_sky.fill_masked(images, masks), one_pass)


@pytest.mark.bench
def test_bench_fill_masked_training_fold(benchmark):
    """The masked fill of an L_X fit on one `fast` training fold (6,312 images, 128 px)."""
    rng = np.random.default_rng(0)
    images = rng.poisson(2.0, (6312, 128, 128)).astype(np.float32)
    masks = np.zeros(images.shape, bool)
    for y, x in rng.integers(3, 125, (5, 2)):  # five sources per image, 5x5 pixels each
        masks[:, y - 2:y + 3, x - 2:x + 3] = True
    filled = benchmark.pedantic(lx_sky.fill_masked, args=(images, masks), rounds=3, iterations=1)
    assert filled.shape == images.shape and not np.array_equal(filled, images)


def test_detection_settings_are_checked():
    with pytest.raises(ClusterMassError, match="unknown detection"):
        lx_sky.detect_point_sources(np.zeros((NPIX, NPIX)), {"treshold": 1e-5})
    with pytest.raises(ClusterMassError, match="point_sources"):
        LXModel({"point_sources": "mask-everything"})
    with pytest.raises(ClusterMassError, match="sources_dataset_dir"):
        LXModel({"point_sources": "truth"})


def test_detections_are_cached_per_image():
    rng = np.random.default_rng(4)
    xs, ys, src = inject(rng, 3, 60.0)
    img = (rng.poisson(BKG, (NPIX, NPIX)) + src)[None].astype(np.float32)
    first = lx.detected_sources(img)
    again = lx.detected_sources(np.concatenate([img * 0 + BKG, img]))
    assert len(first) >= 3
    np.testing.assert_allclose(again[again["image"] == 1]["x_pix"], first["x_pix"])


def test_true_sources_lookup_matches_a_merge(monkeypatch):
    """The grouped lookup gives what a merge on image ids gives: duplicates at every
    position, unknown ids and faint or extended sources left out, rows image by image."""
    table = pd.DataFrame({
        "view_index": [0, 0, 1, 2, 2, 2], "image_id": ["b", "b", "a", "c", "c", "c"],
        "kind": ["point", "point", "point", "halo", "point", "point"],
        "x_pix": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], "y_pix": [7.0, 8.0, 9.0, 10.0, 11.0, 12.0],
        "expected_counts": [5.0, 0.5, 5.0, 5.0, 5.0, 5.0], "flux_cgs": 1e-14, "redshift": np.nan})
    monkeypatch.setattr(lx, "true_sources_table", lambda root: table)
    lx._maskable_sources.cache_clear()
    model = LXModel({"point_sources": "truth", "sources_dataset_dir": "lookup-test"})
    got = model._true_sources(pd.DataFrame({"image_id": ["c", "zz", "b", "c"]}))
    assert got["image"].tolist() == [0, 0, 2, 3, 3]
    assert got["x_pix"].tolist() == [5.0, 6.0, 1.0, 5.0, 6.0]
    assert got["y_pix"].tolist() == [11.0, 12.0, 7.0, 11.0, 12.0]
    monkeypatch.setattr(lx, "true_sources_table", lambda root: table.iloc[:0])
    lx._maskable_sources.cache_clear()
    assert model._true_sources(pd.DataFrame({"image_id": ["a"]})).empty
    lx._maskable_sources.cache_clear()


def test_truth_variant_masks_the_true_point_sources(tmp_path):
    """point_sources = 'truth' reads the dataset's /sources and masks the point sources only."""
    import h5py

    from benchmark.dataset.layout import SOURCES_DATASET
    from benchmark.dataset.loader import ClusterMassDataset
    from benchmark.dataset.sources import sources_array
    from fakes import write_fake_dataset

    root = write_fake_dataset(tmp_path / "data", n_clusters=10, n_epochs=1, seed=5)
    path = sorted((root / "images").glob("cluster_*.h5"))[0]
    point = {"view_index": 0, "kind": "point", "x_pix": 90.0, "y_pix": 70.0,
             "expected_counts": 400.0, "flux_cgs": 1e-14, "redshift": np.nan}
    faint = {**point, "x_pix": 40.0, "y_pix": 80.0, "expected_counts": 0.2}
    halo = {**point, "kind": "halo", "x_pix": 30.0, "y_pix": 30.0, "redshift": 0.5}
    with h5py.File(path, "a") as h5:
        h5.create_dataset(SOURCES_DATASET, data=sources_array([point, faint, halo]))
    ds = ClusterMassDataset(root, verify_files=False)
    in_file = ds.catalog["file"].str.endswith(path.name).to_numpy()
    rows = np.nonzero(in_file)[0][np.argsort(ds.catalog["index"].to_numpy()[in_file])]
    clean = ds.images(indices=rows).astype(float)
    dirty = clean.copy()
    dirty[0, 70, 90] += 400.0  # the point source, where the list puts it
    dirty[0, 30, 30] += 400.0  # the "halo": not masked (extended kinds are left alone)
    aux = ds.catalog.iloc[rows][["image_id", "redshift"]].assign(pixel_arcsec=PIXEL_ARCSEC)
    model = LXModel({"point_sources": "truth", "sources_dataset_dir": str(root),
                     "inner_fraction": 0.0})
    filled = model.masked_profiles(FoldData(dirty, aux))
    assert model.last_masked_per_image == pytest.approx(1 / len(rows))  # the bright point only
    plain = RadialProfiles(dirty)
    r = np.hypot(70 - CENTRE, 90 - CENTRE) + 2.0
    within = filled.counts_within(np.full(len(rows), r)) - RadialProfiles(clean).counts_within(
        np.full(len(rows), r))
    assert abs(within[0]) < 40.0  # the 400 counts are gone (the fill adds a ring mean)
    assert plain.total[0] - filled.total[0] > 300.0
    # the halo's 400 counts stay
    big = np.full(len(rows), 200.0)
    assert filled.counts_within(big)[0] - RadialProfiles(clean).counts_within(big)[0] > 350.0
    # the diagnostics repeat an image (occlusion variants): every copy gets its sources masked
    twice = FoldData(np.concatenate([dirty[:1], dirty[:1], dirty[1:]]),
                     pd.concat([aux.iloc[:1], aux]).reset_index(drop=True))
    again = model.masked_profiles(twice)
    assert model.last_masked_per_image == pytest.approx(2 / (len(rows) + 1))
    np.testing.assert_array_equal(again.total[:2], filled.total[:1].repeat(2))


def test_fits_from_before_masking_load_unmasked(tmp_path):
    """An lx_params.json written before point sources were masked predicts as it did."""
    import json

    model = LXModel({"point_sources": "none"})
    model.params = {"a": 1.0, "b": 0.5, "config": {k: v for k, v in model.config.items()
                                                   if k not in ("point_sources", "detection",
                                                                "sources_dataset_dir",
                                                                "truth_min_counts")}}
    (tmp_path / lx.PARAMS_FILE).write_text(json.dumps(model.params))
    assert lx.load_model(tmp_path).config["point_sources"] == "none"
    new = LXModel({})
    new.params = {"a": 1.0, "b": 0.5, "config": new.config}
    new.save(tmp_path)
    assert lx.load_model(tmp_path).config["point_sources"] == "detect"


# ----------------------------------------------------------------------------- fast path
# A straightforward reference: the detection loop, the component-by-component description
# and the per-source masks as first written (one full-image mask per component or source).
# The vectorised module must reproduce them value for value.

def reference_detect(images, cfg=None):
    cfg = {**lx_sky.DETECTION_DEFAULTS, **(cfg or {})}
    images = np.asarray(images, dtype=np.float64)
    hit = np.zeros(images.shape, dtype=bool)
    for _ in range(int(cfg["passes"])):
        background = lx_sky.background_model(images, ~hit, cfg)
        new = reference_significant(images, background, cfg)
        if np.array_equal(new, hit):
            break
        hit = new
    rows = []
    centre = (NPIX - 1) / 2.0
    for i in np.nonzero(hit.reshape(len(hit), -1).any(axis=1))[0]:
        excess = images[i] - background[i]
        labels, _ = ndimage.label(hit[i])
        for lab, region in enumerate(ndimage.find_objects(labels), start=1):
            rows.append((int(i), *reference_describe(images[i], background[i], excess,
                                                     labels == lab, region, cfg, centre)))
    return pd.DataFrame(rows, columns=lx_sky.CATALOGUE_COLUMNS)


def reference_significant(images, background, cfg):
    hit = np.zeros(images.shape, dtype=bool)
    for side in cfg["scales_pix"]:
        counts = np.rint(lx_sky._cell_sum(images, side))
        expected = np.maximum(lx_sky._cell_sum(background, side)
                              * (1.0 + cfg["systematic_fraction"]), 1e-12)
        cells = np.zeros(images.shape, dtype=bool)
        cand = counts > expected + 3.0 * np.sqrt(expected) + 1.0
        cells[cand] = special.pdtrc(counts[cand] - 1.0, expected[cand]) < cfg["threshold"]
        # every pixel of a significant cell (top-left corner at the cell's position)
        origin = (0, side - 1 - side // 2, side - 1 - side // 2)
        hit |= ndimage.correlate(cells.astype(float), np.ones((1, side, side)),
                                 mode="constant", origin=origin) > 0
    return hit


def reference_describe(image, background, excess, sel, region, cfg, centre):
    ys, xs = region
    best, best_yx = -np.inf, (ys.start, xs.start)
    for y in range(max(ys.start - 1, 0), min(ys.stop, NPIX - 1)):
        for x in range(max(xs.start - 1, 0), min(xs.stop, NPIX - 1)):
            if sel[y:y + 2, x:x + 2].any() and excess[y:y + 2, x:x + 2].sum() > best:
                best, best_yx = excess[y:y + 2, x:x + 2].sum(), (y, x)
    y0, x0 = best_yx
    core = np.zeros_like(sel)
    core[y0:y0 + 2, x0:x0 + 2] = True
    box = np.zeros_like(sel)
    box[max(y0 - 1, 0):y0 + 3, max(x0 - 1, 0):x0 + 3] = True
    ring = box & ~core
    core_excess, ring_excess = excess[core].sum(), excess[ring].sum()
    noise = 2.0 * np.sqrt(max(background[ring].sum(), 1.0))
    ratio = (ring_excess / ring.sum()) / max(core_excess / core.sum(), 1e-12)
    point_like = (ring_excess <= float(cfg["extent_ratio"]) * core_excess * ring.sum()
                  / core.sum() + noise)
    w = np.clip(excess[core], 0.0, None)
    w = w if w.sum() > 0 else np.ones_like(w)
    yy, xx = np.nonzero(core)
    x, y = float(np.average(xx, weights=w)), float(np.average(yy, weights=w))
    protected = bool(np.hypot(x - centre, y - centre) <= float(cfg["protect_centre_pix"]))
    return (x, y, float(image[sel].sum()), float(background[sel].sum()), float(ratio),
            int(sel.sum()), bool(point_like), protected)


def reference_masks(sources, n_images, pixel_arcsec):
    masks = np.zeros((n_images, NPIX, NPIX), dtype=bool)
    for i, group in sources[lx_sky.maskable(sources)].groupby("image"):
        radius = lx_sky.mask_radius_pix(pixel_arcsec[int(i)])
        masks[int(i)] = lx_sky.source_mask((NPIX, NPIX), group["x_pix"], group["y_pix"], radius)
    return masks


def awkward_images(seed=7, n=6):
    """Clusters with sources everywhere: on edges and corners, in clumps (components of
    many pixels, summed pairwise by numpy), next to the centre; plus an empty field."""
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(n - 1):
        img = rng.poisson(cluster_expectation(rng)).astype(float)
        for y, x in [(0, 0), (0, 60), (127, 127), (64, 127), (1, 126), (126, 1)]:
            img[y, x] += rng.poisson(60)
        _, _, src = inject(rng, 10, rng.uniform(20, 200))
        clump = rng.integers(10, 110, 2)
        img[clump[0]:clump[0] + 4, clump[1]:clump[1] + 5] += rng.poisson(30, (4, 5))
        images.append(img + src)
    images.append(np.zeros((NPIX, NPIX)))
    return np.stack(images)


def test_vectorised_detection_matches_the_reference():
    images = awkward_images()
    found = lx_sky.detect_point_sources(images)
    expected = reference_detect(images)
    assert len(expected) > 60 and (expected["n_pixels"] >= 8).any()
    assert ((expected["x_pix"] < 1) | (expected["y_pix"] > 126)).any()  # edges covered
    pd.testing.assert_frame_equal(found, expected, check_exact=True)
    # nothing in a batch depends on the other images
    alone = lx_sky.detect_point_sources(images[2:3])
    pd.testing.assert_frame_equal(alone.drop(columns="image"),
                                  expected[expected["image"] == 2].drop(columns="image")
                                  .reset_index(drop=True), check_exact=True)


def test_no_detections_give_the_empty_table():
    found = lx_sky.detect_point_sources(np.zeros((2, NPIX, NPIX)))
    pd.testing.assert_frame_equal(found, reference_detect(np.zeros((2, NPIX, NPIX))))


def test_stamp_masks_match_the_full_image_masks():
    rng = np.random.default_rng(8)
    n = 5
    sources = pd.DataFrame({"image": rng.integers(0, n - 1, 300),  # the last image: none
                            "x_pix": rng.uniform(-3, NPIX + 2, 300),
                            "y_pix": rng.uniform(-3, NPIX + 2, 300),
                            "protected": rng.random(300) < 0.2})
    pixel_arcsec = np.array([PIXEL_ARCSEC, 0.2, 0.5, 2.0, PIXEL_ARCSEC])  # radii 1.5-3.9
    masks = lx_sky.masks_from_sources(sources, n, NPIX, pixel_arcsec)
    expected = reference_masks(sources, n, pixel_arcsec)
    assert expected[:, 0].any() and not expected[-1].any()
    np.testing.assert_array_equal(masks, expected)
    # radii near the image size (whole-image masks instead of stamps)
    pixel_arcsec[2] = 0.004
    np.testing.assert_array_equal(lx_sky.masks_from_sources(sources, n, NPIX, pixel_arcsec),
                                  reference_masks(sources, n, pixel_arcsec))


def test_cached_detections_match_a_fresh_detection():
    images = awkward_images(seed=9, n=4)
    lx._DETECTION_CACHE.clear()
    cold = lx.detected_sources(images[:3])
    warm = lx.detected_sources(images[[3, 2, 1, 0]])
    expected = reference_detect(images)
    expected = expected[list(expected.columns[1:]) + ["image"]]
    pd.testing.assert_frame_equal(cold, expected[expected["image"] < 3].reset_index(drop=True),
                                  check_exact=True)
    reordered = pd.concat([expected[expected["image"] == i].assign(image=j)
                           for j, i in enumerate([3, 2, 1, 0])], ignore_index=True)
    pd.testing.assert_frame_equal(warm, reordered, check_exact=True)
