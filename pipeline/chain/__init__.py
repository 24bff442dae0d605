"""The real X-ray chain: yt -> pyXSIM -> (fast detector | SOXS) -> 128x128 counts.

One cluster-epoch is handed to yt once, pyXSIM draws its photons ONCE
(``make_photons``, the project's APEC-format table via ``CIESourceModel("apec",
model_root=, model_vers=)``), and every projection (x, y, z) re-uses that photon
list (``project_photons`` with the analytic ``wabs`` absorption, z_obs, 100 ks,
collecting area = ARF peak). The detector step is either SOXS
``instrument_simulator`` with the ACIS-I of :mod:`pipeline.instrument`
(``detector="soxs"``, the reference) or the project's own ``detector="fast"`` step
with the same physics and the same files: SOXS's ARF thinning rule, the RMF's
probability of landing in the 0.5-7 keV band (event energy uniform within the
channel, as SOXS), the instrument's Gaussian PSF and its particle-background
spectrum. Validated against SOXS in ``tests/pipeline/test_chain.py`` (total counts
within 2 %, radial profile within 3 %, same photons in); it refuses instruments
with dither, several chips or a non-Gaussian PSF. Images are oriented like
:mod:`pipeline.analytic` (tested), and expected counts and profiles agree with it.

Where the time goes (cProfile; 2 shared cores, load average 2-6 from other
developers' jobs; 128^3 GasGrid, one cluster-epoch = 3 views)
------------------------------------------------------------------------------
================================  =========  ==========================================
stage                             naive      this module
================================  =========  ==========================================
yt dataset per epoch              ~1.0 s     0.2-0.3 s: one dataset per grid geometry
                                             per process, arrays swapped (yt derives
                                             its field list in ~1-1.5 s per dataset)
APEC table fold per epoch         1-7 s      once per process and redshift (cached)
make_photons, 2.1 M cells         8.4 s      0.5-0.8 s typical, 1.9 s for M ~ 1e15:
                                             nested grid, 98 k cells (pyXSIM's cost is a
                                             Python loop over 100-cell chunks and cells)
project_photons per view          0.05-0.6 s same (scales with photons; 0.4-7.5 keV
                                             keeps 99.95 % of band counts with 15 % fewer)
detector per view (SOXS)          0.6-3.1 s  fast step 0.01-0.35 s (33 k-500 k events);
                                             SOXS's time is its per-channel RMF loop
================================  =========  ==========================================

On H1's gas for an evenly spaced sample of the ``full`` population: 0.9-1.4 s per
typical epoch, 4.9 s for log M = 15.15; mean 1.7 s per epoch (0.56 s per view)
+ 0.26 s gas building, peak RSS 0.6 GiB. Full preset (2,632 epochs): ~85 min on
one worker, ~45 min on 2 workers.

The sky of population version 2 (:mod:`pipeline.sky`) travels as ``render_views(...,
skies=[...])``: per view, photons drawn from the same spectra and positions the analytic
renderer uses (seeded from the view's seed), put through the same detector step as the
cluster's events (the fast step in the image's own pixels; SOXS as a second source of the
same ``instrument_simulator`` call, positions mapped back through the image orientation),
and its uniform expected background added to ``background_counts``. SOXS's own
``foreground=True`` / ``ptsrc_bkgnd=True`` are not used: the first builds its spectrum with
SOXS's APEC tables (a download), the second draws its own sources that the analytic renderer
could not share; the sky model reads the same SOXS files (``hm_cxb_bkgnd.h5``, the
point-source generator) instead. Tested: fast vs SOXS detector with the sky, and the chain
vs the analytic expectation (tests/pipeline/test_chain.py).

Choices
-------
* Nested grid (``grid="nested"``, 3 levels): level l covers the central 1/2**l of
  the box with cells 2**(2-l) fine cells wide; each coarse cell keeps the emission
  measure (density = sqrt(<rho^2>)) and the EM-weighted kT and Z of the cells it
  replaces, so counts per annulus are unchanged (tested against the analytic
  renderer); structure beyond the central half-box is smoothed over 4 pixels where
  counts per pixel are far below one. ``grid="uniform"`` is the exact alternative.
  Population version 2's ICM fluctuations have no structure below 4 fine cells, so its gas
  grids cap the coarsening at 2 (``meta["max_cell_coarsening"]``): the levels become 2x cells
  over the whole box plus full resolution in the central quarter
  (:func:`pipeline.chain.yt_grid.level_plan`), ~0.65-1.3 s of ``make_photons`` per epoch
  instead of 0.2-0.85 s.
* Grid rather than Monte-Carlo cells (``yt.load_particles``): sampled cells add shot
  noise unless there are many more cells than photons, i.e. more cells than the
  nested grid for the same fidelity; TNG cutouts are particle data anyway
  (:mod:`pipeline.tng`).
* 120 log-spaced energy bins over 0.4-7.5 keV (observer frame); 30 bins bias the
  counts by -0.3 %, 120 and 1000 agree to 0.05 %. No thermal broadening, no
  Doppler shifts (irrelevant for a broad-band image).
"""

from pipeline.chain.libraries import quiet_libraries
from pipeline.chain.render import render_views
from pipeline.chain.settings import ChainError, ChainObservation, ChainSettings
from pipeline.chain.source import make_source_model
from pipeline.chain.tables import emission_table, emission_table_checksums, resolve_instrument
from pipeline.chain.yt_grid import gas_to_yt, gas_to_yt_cached

__all__ = [
    "ChainError", "ChainObservation", "ChainSettings", "emission_table", "emission_table_checksums",
    "gas_to_yt", "gas_to_yt_cached", "make_source_model", "quiet_libraries", "render_views",
    "resolve_instrument",
]
