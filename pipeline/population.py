"""The synthetic cluster population: masses, histories, dynamical states and gas-model knobs.

``make_population(params, master_seed)`` returns one row per (cluster_id, epoch).  Epoch 0 is
the latest (most massive) state of a cluster; epoch e is the cluster as it was ``e *
epoch_dz`` earlier in redshift along its mass-accretion history, *observed* at the
observing redshift (``Observation.z_obs``) unless ``survey_redshifts`` is set.  Everything a
later stage needs to build the 3D gas (:mod:`pipeline.gas`) is a column of that table, so
the table (with ``master_seed``) fully specifies the dataset's physics.

Randomness: every random draw comes from a ``numpy.random.SeedSequence(master_seed,
spawn_key=(stream, ...))`` keyed by what it is for (mass sample, one cluster, one
cluster-epoch's gas, one view), so a cluster's properties, its gas and its photons never
depend on the order in which things are generated or on how many workers run.

Versions: ``PopulationParams.version`` 1 is the population of the 0.1.0 datasets (byte for
byte: version 2's draws come from their own seed stream and its fields are left out of what
version 1 records); 2 adds the ingredients of :data:`REFERENCES_V2`, each behind its own
switch (dataset version 0.2.0, :data:`DATASET_VERSIONS`); 3 is version 2 with the cool
cores recalibrated on observed L_X scatter (:data:`CC_RC2_FRAC`; dataset 0.3.0); 4, the
default, is version 3 with the ICM fluctuations' width held constant beyond 2 R500c
(:data:`ICM_SIGMA_HOLD_FRAC`; dataset 0.4.0).

Units: masses Msun, lengths physical kpc, temperatures keV, metallicities in solar units
(Anders & Grevesse 1989 abundance table, as APEC uses by default), densities cm^-3.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from benchmark.core.errors import ClusterMassError
from benchmark.core.cosmology import (H, angular_diameter_distance_kpc, efunc, kpc_per_arcsec,
                                      r500c_kpc)
from pipeline.observation import Observation

__all__ = [
    "PopulationParams", "make_population", "REFERENCES", "VIEWS", "derive_seed", "gas_seed",
    "view_seed", "fgas_mean", "fgas_scatter_ln", "t500_mean_kev", "rotation_matrix",
    "POPULATION_VERSIONS", "DATASET_VERSIONS", "REFERENCES_V2", "REFERENCES_V4", "CC_RC2_FRAC",
    "ICM_SIGMA_HOLD_FRAC",
]

#: population versions: 1 is the population of the published 0.1.0 datasets (reproduced byte
#: for byte), 2 adds the ingredients listed in :data:`REFERENCES_V2` (dataset version 0.2.0),
#: 3 is version 2 with the cool cores' compact component widened (:data:`CC_RC2_FRAC`), 4 is
#: version 3 with the fluctuations' width bounded in the outskirts (:data:`ICM_SIGMA_HOLD_FRAC`).
POPULATION_VERSIONS = (1, 2, 3, 4)
#: the dataset version each population version makes (the dataset card's ``version``).
DATASET_VERSIONS = {1: "0.1.0", 2: "0.2.0", 3: "0.3.0", 4: "0.4.0"}
#: Default radius of the cool core's compact density component (R500c, at a contrast of
#: 1 dex) per population version.  At 0.04 the entropy and cooling-time floors of version 2
#: left cool cores too faint: the total L_X scatter at fixed mass came out at 0.33 (ln), below
#: REXCESS (Pratt et al. 2009: ~0.4 against L-Y_X, dominated by cool cores, and core excision
#: "reduces the scatter by more than a factor of two"), and core excision gained 4 points of
#: mass scatter.  0.06 (~50-85 kpc at a contrast of 1 dex, inside the cooling radii, where
#: t_cool < 7.7 Gyr, of strong cool cores: ~0.1-0.2 R500c, Hudson et al. 2010) brings both into range without moving any floor-bounded core observable
#: (``python -m pipeline.report --npix 64``; chosen on the observables of
#: :data:`pipeline.report.TARGETS` only, never on a model's score).
CC_RC2_FRAC = {1: 0.04, 2: 0.04, 3: 0.06, 4: 0.06}
#: Radius (R500c) beyond which the ICM fluctuations' log-normal width is held at its value
#: there, per population version (absent: the width rises without bound).  Versions 2 and 3
#: let s(r) = sqrt(s_core^2 + (s_500 r/R500c)^2) grow to s ~ 1.9 at 5 R500c (median; up to
#: 5.1): a clumping factor exp(s^2) of ~33, cells at 1e-16 of the mean density (float32
#: rounds some to 0) and, through the temperature response, at 26-12,600 keV.  Simulated
#: clumping rises to ~1.5-3 around R200c-R200m, ~1.5-2.5 R500c (Nagai & Lau 2011; Vazza et
#: al. 2013; Roncarelli et al. 2013), Eckert et al. (2015) measure sqrt(C) ~ 1.25 at R200c,
#: and X-COP's temperature profiles fall smoothly to ~0.5 T500 there (Ghirardini et al.
#: 2019): holding s at 2 R500c keeps the clumping at its ~1.8-2 there all the way out.
ICM_SIGMA_HOLD_FRAC = {4: 2.0}

#: projections of each epoch (image axes are the other two grid axes).
VIEWS = ("x", "y", "z")

# Namespaces of the seed streams: spawn_key = (stream, ...).
_STREAM_MASSES = 0
_STREAM_CLUSTER = 1
_STREAM_GAS = 2
_STREAM_VIEW = 3
_STREAM_SURVEY_Z = 4
_STREAM_V2 = 5  # extra draws of version 2 (version 1's streams stay untouched)

#: Published relations this population is built from (for the dataset card).
REFERENCES = [
    "Planck Collaboration 2016, A&A 594, A13 (cosmological parameters, as used by IllustrisTNG)",
    "Nelson D. et al. 2019, Comput. Astrophys. Cosmol. 6, 2 (IllustrisTNG public data release)",
    "Tinker J. et al. 2008, ApJ 688, 709 (halo mass function; low-mass slope and cutoff shape)",
    "Wechsler R. et al. 2002, ApJ 568, 52 (exponential mass-accretion history, formation epoch)",
    "McBride J., Fakhouri O., Ma C.-P. 2009, MNRAS 398, 1858 (accretion-rate diversity and mass trend)",
    "Vikhlinin A. et al. 2006, ApJ 640, 691 (gas density and temperature profiles)",
    "Vikhlinin A. et al. 2009, ApJ 692, 1033 (M500-T_X relation)",
    "Arnaud M., Pointecouteau E., Pratt G. 2005, A&A 441, 893 (M-T relation, scatter)",
    "Pratt G. et al. 2009, A&A 498, 361 (REXCESS L_X-M relations; core excision 0.15-1 R500)",
    "Mantz A. et al. 2016, MNRAS 463, 3582 (L_X-M slope and scatter, soft band)",
    "Lovisari L., Reiprich T., Schellenberger G. 2015, A&A 573, A118 (gas fraction vs mass)",
    "Mantz A. et al. 2016b, MNRAS 456, 4020 (gas-fraction intrinsic scatter ~7%)",
    "Hudson D. et al. 2010, A&A 513, A37 (cool-core fraction ~44%, central densities)",
    "Cavagnolo K. et al. 2009, ApJS 182, 12 (central entropy / density spread of cool cores)",
    "Sanderson A., Ponman T., Finoguenov A., Lloyd-Davies E., Markevitch M. 2003, MNRAS 340, 989 (flatter gas profiles in groups)",
    "Sun M. et al. 2009, ApJ 693, 1142 (group gas fractions and profiles)",
    "Poole G. et al. 2006, MNRAS 373, 881 (mergers disturb and displace cores)",
    "Fakhouri O., Ma C.-P., Boylan-Kolchin M. 2010, MNRAS 406, 2267 (merger rates)",
    "Giocoli C., Tormen G., Sheth R., van den Bosch F. 2010, MNRAS 404, 502 (subhalo mass function)",
    "Lau E., Nagai D., Kravtsov A. et al. 2011, ApJ 734, 93 (ICM shape: rounder than dark matter)",
    "Jing Y., Suto Y. 2002, ApJ 574, 538 (triaxial halo axis ratios)",
    "De Grandi S., Molendi S. 2001, ApJ 551, 153 (metallicity profiles, central rise in cool cores)",
    "Leccardi A., Molendi S. 2008, A&A 487, 461 (metallicity ~0.3 solar outside the core)",
    "Rybicki G., Lightman A. 1979, Radiative Processes in Astrophysics (bremsstrahlung emissivity)",
    "Smith R. et al. 2001, ApJ 556, L91; Foster A. et al. 2012, ApJ 756, 128 (APEC line emission)",
]

#: What population version 2 adds (the dataset card lists these when version = 2).
REFERENCES_V2 = [
    "Cavagnolo K. et al. 2009, ApJS 182, 12 (central entropy floor K0 ~ 10 keV cm^2 of cool cores)",
    "Hogan M. et al. 2017, ApJ 851, 66 (cooling-time profiles; min t_cool/t_ff ~ 10-20: t_cool floor)",
    "Voit G. M. et al. 2015, Nature 519, 203 (t_cool/t_ff >~ 10 floor of cool cores)",
    "Tozzi P., Norman C. 2001, ApJ 546, 63 (cooling function fit, Z = 0.3 solar)",
    "Rossetti M. et al. 2017, MNRAS 468, 1917 (cool cores are rare in disturbed clusters)",
    "Pillepich A. et al. 2018, MNRAS 475, 648 (TNG gas fractions: lower and more scattered in groups)",
    "Barnes D. et al. 2018, MNRAS 481, 1809 (C-EAGLE/BAHAMAS gas-fraction and L_X scaling relations)",
    "Farahi A. et al. 2018, MNRAS 478, 2618 (BAHAMAS+MACSIS: mass-dependent gas-mass scatter and covariance)",
    "Davies J. et al. 2019, MNRAS 485, 3783 (EAGLE: earlier-forming haloes hold less hot gas)",
    "Barnes D. et al. 2021, MNRAS 506, 2533 (hydrostatic mass bias b ~ 0.1-0.2 in simulated clusters)",
    "Knollmann S., Knebe A. 2009, ApJS 182, 608 (AHF); Behroozi P. et al. 2013, ApJ 762, 109 "
    "(spherical-overdensity masses count all particles inside R500c)",
    # ICM structure (pipeline.icm)
    "Gaspari M., Churazov E. 2013, A&A 559, A78 (density fluctuations from turbulence; Kolmogorov spectrum, injection scale)",
    "Zhuravleva I. et al. 2013, MNRAS 428, 3274 (log-normal ICM inhomogeneities in simulated clusters)",
    "Zhuravleva I. et al. 2014, Nature 515, 85 (density-fluctuation amplitude spectra in Perseus and Virgo)",
    "Gaspari M. et al. 2014, A&A 569, A67 (density vs temperature fluctuations; isobaric-adiabatic mix)",
    "Nagai D., Lau E. 2011, ApJ 731, L10 (clumping factor of simulated clusters, rising with radius)",
    "Eckert D. et al. 2015, MNRAS 447, 2198 (measured gas clumping in cluster outskirts)",
    "ZuHone J., Markevitch M., Johnson R. 2010, ApJ 717, 908 (sloshing cold fronts: spiral in cool cores)",
    "Ghizzardi S., Rossetti M., Molendi S. 2010, A&A 516, A32 (cold fronts in most cool cores)",
    "Markevitch M., Vikhlinin A. 2007, Phys. Rep. 443, 1 (cold fronts: density jump, pressure continuous)",
    "Diemer B., Kravtsov A. 2014, ApJ 789, 1 (faster accretion: steeper outer profiles, smaller splashback radius)",
    "Lau E., Nagai D., Avestruz C., Nelson K., Vikhlinin A. 2015, ApJ 806, 68 (accretion rate and outer gas profiles)",
    # the sky of each view (pipeline.sky)
    "Lehmer B. et al. 2012, ApJ 752, 46 (CDF-S 4 Ms log N - log S of AGN and galaxies; SOXS's point-source generator)",
    "Hickox R., Markevitch M. 2006, ApJ 645, 95 (CXB: unresolved intensity, AGN photon indices; ACIS quiescent background)",
    "ZuHone J. et al., SOXS 5.3 (soxs/files: halo_catalog.h5 light cone, hm_cxb_bkgnd.h5 Galactic foreground)",
    "Cavaliere A., Fusco-Femiano R. 1976, A&A 49, 137 (beta model of line-of-sight haloes)",
    "Morrison R., McCammon D. 1983, ApJ 270, 119 (wabs Galactic absorption of the sky's sources)",
    "Vikhlinin A. et al. 2009b, ApJ 692, 1060 (L_X(0.5-2 keV)-M relation, eq. 22: luminosities of line-of-sight haloes)",
    "Kim M. et al. 2007, ApJ 659, 29 (ChaMP + CDF log N - log S: point-source density check)",
    "Markevitch M. et al. 2003, ApJ 583, 70; ACIS background pages (quiescent front-illuminated chip ~0.3 cts/s, 0.3-10 keV)",
]

#: What population version 4 adds (cards of versions 2 and 3 keep their own list, byte for byte).
REFERENCES_V4 = [
    "Vazza F. et al. 2013, MNRAS 429, 799; Roncarelli M. et al. 2013, MNRAS 432, 3030 (simulated "
    "clumping ~1.5-3 near R200: the fluctuations' width held beyond 2 R500c)",
    "Ghirardini V. et al. 2019, A&A 621, A41 (X-COP: temperature falling smoothly to ~0.5 T500 near R200)",
]


@dataclasses.dataclass(frozen=True)
class PopulationParams:
    """Every knob of the synthetic population, with its default and where it comes from.

    Fractions (``*_frac``) are in units of the cluster's R500c; scatters called ``*_ln`` are
    the standard deviation of the natural log, ``*_dex`` of log10.
    """

    # --- size ---
    n_clusters: int = 329  # as in the study (Ntampaka et al. 2019)
    n_epochs: int = 8  # 8 epochs x 3 projections = 24 views per cluster (the study)

    # --- mass function at epoch 0 (Tinker et al. 2008 shape at z ~ 0 for M500c:
    #     dn/dlnM ~ M^slope exp(-M/M_cut); slope -0.9 at group scale, exponential cutoff) ---
    log10_m500c_min: float = 13.75
    log10_m500c_max: float = 15.2
    mf_slope: float = -0.9
    mf_cutoff_msun: float = 1.0e15  # of 329: ~3 above 1e15, ~36 above 3e14, half above 1e14

    # --- mass-accretion history: M(z_e) = M0 exp(-alpha z_e) (Wechsler et al. 2002), with the
    #     accretion rate alpha = 2 a_c lognormally diverse and rising with mass (McBride et al.
    #     2009: massive haloes accrete faster); z_e = epoch * epoch_dz along the history ---
    epoch_dz: float = 0.05
    mah_alpha_median: float = 0.9  # at 1e14 Msun (a_c ~ 0.45 for cluster haloes)
    mah_alpha_mass_slope: float = 0.1  # d ln(alpha) / d ln(M)
    mah_alpha_scatter_dex: float = 0.2  # formation-time diversity
    mah_jitter_dex: float = 0.01  # per-step stochasticity of the accreted mass

    # --- M-T: M500 = M5 (T/5 keV)^mt_slope E(z)^-1 (Vikhlinin et al. 2009, M5 = 3.02e14/h) ---
    mt_m5_msun: float = 3.02e14 / H
    mt_slope: float = 1.53
    t_scatter_ln: float = 0.10  # ~10% at fixed mass (Arnaud et al. 2005; Vikhlinin et al. 2009)

    # --- gas fraction within R500c: f = f0 (M/3e14)^slope (Lovisari et al. 2015 mass trend),
    #     lognormal scatter ~5-6% (Mantz et al. 2016b: 7.4% including measurement) ---
    fgas_pivot: float = 0.11
    fgas_pivot_msun: float = 3.0e14
    fgas_mass_slope: float = 0.2
    fgas_max: float = 0.15  # below the cosmic baryon fraction 0.157 (Planck 2015)
    fgas_scatter_ln: float = 0.06

    # --- smooth density profile (Vikhlinin et al. 2006, eq. 3): core radius rc, slope beta,
    #     steepening at rs with strength eps (gamma = 3) ---
    rc_frac_median: float = 0.15  # V06 fits: rc ~ 0.05-0.3 R500
    rc_mass_slope: float = -0.05  # groups have flatter, more extended cores (Sun et al. 2009)
    rc_scatter_dex: float = 0.1
    beta_mean: float = 0.67  # at 3e14 Msun
    beta_mass_slope: float = 0.15  # flatter profiles in groups: beta ~ T^0.26 (Sanderson et al. 2003)
    beta_scatter: float = 0.05
    rs_frac: float = 0.9
    rs_scatter_dex: float = 0.1  # diversity of the outer steepening (V06: rs ~ 0.5-1.5 R500)
    eps_mean: float = 3.0
    eps_scatter: float = 0.5

    # --- cool cores (Hudson et al. 2010: ~44% strong cool cores; Cavagnolo et al. 2009:
    #     central densities spread over ~1 dex).  Two-state Markov chain over epochs with
    #     stationary probability cc_fraction and lag-1 autocorrelation cc_persistence ---
    cc_fraction: float = 0.40
    cc_persistence: float = 0.8
    # compact second component of V06 eq. 3: central n_e = contrast x the smooth core's,
    # contrast uniform in dex over cc_contrast_dex_range (1 dex: n_e0 ~ 2e-2 - 2e-1 cm^-3);
    # denser cores are more compact, rc2 = cc_rc2_frac (contrast / 10)^cc_rc2_contrast_slope
    # x (rc / rc_frac_median),
    # so the core's gas mass varies little and its luminosity ~ contrast (spread 1 dex);
    # None: the population version's default (CC_RC2_FRAC)
    cc_rc2_frac: float | None = None
    cc_rc2_contrast_slope: float = -1.0 / 3.0
    cc_contrast_dex_range: tuple = (0.9, 1.9)
    cc_tmin_range: tuple = (0.35, 0.55)  # T_min/T_0 of V06's cool-core dip
    ncc_tmin_range: tuple = (0.85, 1.0)
    tcool_rcool_frac: float = 0.045  # V06 universal profile: r_cool = 0.045 R500, a_cool = 1.9

    # --- mergers (Fakhouri et al. 2010 rates; Poole et al. 2006 disturbed cores): two-state
    #     Markov chain, stationary probability merger_fraction, lag-1 autocorrelation
    #     merger_persistence; a companion of mass ratio 1:2-1:6 at 0.3-1.5 R500c that falls
    #     in over consecutive merger epochs; the main core displaced and puffed up ---
    merger_fraction: float = 0.25
    merger_persistence: float = 0.4
    merger_ratio_range: tuple = (2.0, 6.0)  # M_main / M_companion, log-uniform
    merger_sep_range: tuple = (0.3, 1.5)  # companion distance in R500c of the main cluster
    merger_core_offset_range: tuple = (0.01, 0.05)  # main gas-core displacement, R500c
    merger_rc_boost_range: tuple = (1.1, 1.5)  # core radius puffed up by this factor

    # --- triaxial shape (ICM rounder than DM: Lau et al. 2011; DM: Jing & Suto 2002) ---
    axis_q1_mean: float = 0.85  # b/a
    axis_q2_mean: float = 0.90  # c/b
    axis_scatter: float = 0.06
    axis_min: float = 0.55

    # --- substructure: N(> mu) from dN/dmu = A mu^-slope over mu = m/M500 in [mu_min, mu_max]
    #     (Giocoli et al. 2010 subhalo mass function), times the fraction still holding gas ---
    shmf_norm: float = 0.035  # ~4 gas-rich clumps above 0.5% of M500 at 1e14 Msun
    shmf_slope: float = 1.9
    shmf_mu_range: tuple = (0.005, 0.05)
    subclump_gas_retained: float = 0.4  # gas kept by a subhalo (ram-pressure stripping)
    subclump_mass_trend: float = 0.1  # richer substructure in more massive (younger) haloes

    # --- metallicity, solar units (Leccardi & Molendi 2008; De Grandi & Molendi 2001) ---
    z_outer_mean: float = 0.30
    z_outer_scatter: float = 0.05
    z_center_cc_range: tuple = (0.6, 0.9)
    z_center_ncc_range: tuple = (0.3, 0.4)
    z_core_frac: float = 0.1  # radius of the central metallicity rise, R500c

    # --- version 2 and on (population.version = 4, the default, is 2 with recalibrated cool
    #     cores (3) and bounded outskirt fluctuations (4); 1 reproduces the 0.1.0 datasets and
    #     ignores everything in this block).  Each ingredient has its own switch. ---
    version: int = 4
    # relations calibrated on hydrostatic masses (Vikhlinin et al. 2009 M-T, Lovisari et al.
    # 2015 gas fractions) applied to true masses M = M_HSE / (1 - b) (Barnes et al. 2021:
    # b ~ 0.1-0.2); 0 turns it off
    hydrostatic_bias: float = 0.15
    # gas-fraction scatter sigma_ln(M) = fgas_scatter_ln (M / fgas_pivot_msun)^slope, larger in
    # groups (Pillepich et al. 2018; Farahi et al. 2018), a share fgas_formation_corr^2 of it
    # tied to the accretion rate: earlier-forming (lower alpha) haloes hold less gas
    # (Davies et al. 2019; Farahi et al. 2018)
    fgas_structured: bool = True
    fgas_scatter_mass_slope: float = -0.25  # 0.079 at 1e14, 0.044 at 1e15 Msun
    fgas_formation_corr: float = 0.5
    # cool cores bounded by an entropy floor (Cavagnolo et al. 2009: K0 >~ 10 keV cm^2) and a
    # cooling-time floor at 20 kpc (Hogan et al. 2017; Voit et al. 2015: t_cool >~ 10 t_ff,
    # t_ff(20 kpc) ~ 0.05 Gyr): the compact core's contrast is lowered until both hold
    cc_floor: bool = True
    cc_entropy_floor_kev_cm2: float = 10.0
    cc_tcool20_floor_gyr: float = 0.5
    # each cool core's entropy floor is the above times 10^|N(0, scatter)|: no pile-up at one
    # value, the cool-core K0 peak of Cavagnolo et al. 2009 lies at ~10-20 keV cm^2; the
    # cooling-time floor is a hard one (thermal instability removes gas below it)
    cc_floor_scatter_dex: float = 0.2
    # cool cores are rare in disturbed clusters (Rossetti et al. 2017): a merger at this or
    # the previous epoch destroys a cool core with this probability; the Markov chain's own
    # fraction is raised so that the overall cool-core fraction stays cc_fraction
    cc_merger_anticorrelation: bool = True
    cc_merger_disruption: float = 0.8
    # M500c as a spherical-overdensity halo finder measures it (AHF, Rockstar): a merger
    # companion whose centre lies inside R500c counts; the main halo's own mass and radius
    # stay in log10_m500c_main / r500c_kpc_main for the gas model
    halo_finder_m500c: bool = True
    # the sky of each view (pipeline.sky): cosmic X-ray background point sources (SOXS's
    # generator: Lehmer et al. 2012 log N - log S), the unresolved CXB and Galactic foreground
    # (Hickox & Markevitch 2006; SOXS's hm_cxb_bkgnd.h5) as a uniform background, and
    # line-of-sight groups and clusters from SOXS's halo light cone
    sky_point_sources: bool = True
    sky_diffuse: bool = True
    sky_los_haloes: bool = True
    # the line-of-sight haloes' L_X(0.5-2 keV) as a multiple of Vikhlinin et al. (2009b, eq. 22)
    # at their true mass: the one free number of the light cone, fitted
    # (pipeline.sky.fit_halo_lx_scale) to the observed extended-source counts (Finoguenov+ 2007;
    # Collins+ 1997) and the clusters' share of the soft CXB (Soltan+ 2002); 1 over-predicts all three 2-3x
    sky_halo_lx_scale: float = 0.34
    # ICM fluctuations (pipeline.icm): log-normal density field with a Kolmogorov spectrum
    # below icm_injection_kpc (Gaspari & Churazov 2013; Zhuravleva et al. 2013), width
    # sqrt(core^2 + (sigma500 (r/R500c)^slope)^2), sigma500 x icm_merger_boost in mergers and
    # x exp(icm_accretion_slope x accretion-rate deviate), calibrated on the clumping factor at
    # R500c ~ 1.1-1.5 (Nagai & Lau 2011; Eckert et al. 2015); kT x exp(icm_t_response s g)
    icm_fluctuations: bool = True
    icm_sigma500_ln: float = 0.35
    icm_sigma_core_ln: float = 0.08  # ~5-10% in cores (Zhuravleva et al. 2014)
    icm_radial_slope: float = 1.0
    icm_merger_boost: float = 1.4
    icm_accretion_slope: float = 0.15
    icm_sigma_scatter_ln: float = 0.15
    icm_injection_kpc: float = 400.0
    icm_t_response: float = -0.5  # isobaric -1, adiabatic +2/3 (Gaspari et al. 2014)
    # the width is held at its value at this radius (R500c) further out (version 4 and on;
    # None: the version's default, ICM_SIGMA_HOLD_FRAC)
    icm_sigma_hold_frac: float | None = None
    # sloshing cold fronts in a share of cool cores (ZuHone et al. 2010; Ghizzardi et al. 2010)
    sloshing_fronts: bool = True
    sloshing_fraction: float = 0.6
    sloshing_radius_range: tuple = (0.05, 0.3)  # R500c
    sloshing_jump_range: tuple = (1.5, 2.0)  # density ratio across the front
    # outer slope (eps, r_s) correlated with the accretion rate (Diemer & Kravtsov 2014;
    # Lau et al. 2015): faster accretion, larger eps and smaller r_s
    outer_slope_accretion: bool = True
    eps_accretion_corr: float = 0.5
    rs_accretion_corr: float = 0.3

    # --- redshifts: every epoch at Observation.z_obs unless survey_redshifts ---
    survey_redshifts: bool = False
    survey_z_range: tuple = (0.10, 0.45)

    def __post_init__(self):
        problems = []
        if self.cc_rc2_frac is None:
            object.__setattr__(self, "cc_rc2_frac", CC_RC2_FRAC.get(self.version, CC_RC2_FRAC[3]))
        elif not self.cc_rc2_frac > 0:
            problems.append(f"cc_rc2_frac = {self.cc_rc2_frac} must be > 0 (R500c)")
        problems.extend(self._sigma_hold_problems())
        for name in (
            "cc_contrast_dex_range", "cc_tmin_range", "ncc_tmin_range", "merger_ratio_range",
            "merger_sep_range", "merger_core_offset_range", "merger_rc_boost_range",
            "shmf_mu_range", "z_center_cc_range", "z_center_ncc_range", "survey_z_range",
        ):
            value = tuple(float(v) for v in getattr(self, name))
            if len(value) != 2 or value[0] > value[1]:
                problems.append(f"{name} = {getattr(self, name)} must be (low, high) with low <= high")
            object.__setattr__(self, name, value)
        if int(self.n_clusters) != self.n_clusters or self.n_clusters < 1:
            problems.append(f"n_clusters = {self.n_clusters} must be a positive integer")
        if int(self.n_epochs) != self.n_epochs or not 1 <= self.n_epochs <= 50:
            problems.append(f"n_epochs = {self.n_epochs} must be an integer in 1..50")
        if not self.log10_m500c_min < self.log10_m500c_max:
            problems.append("log10_m500c_min must be below log10_m500c_max")
        for name in ("cc_fraction", "merger_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                problems.append(f"{name} = {getattr(self, name)} must be in [0, 1]")
        for name in ("cc_persistence", "merger_persistence"):
            if not 0.0 <= getattr(self, name) < 1.0:
                problems.append(f"{name} = {getattr(self, name)} must be in [0, 1)")
        if self.shmf_slope <= 1.0:
            problems.append(f"shmf_slope = {self.shmf_slope} must be > 1 (dN/dmu ~ mu^-slope)")
        if self.shmf_mu_range[0] <= 0:
            problems.append("shmf_mu_range must be positive")
        if self.merger_ratio_range[0] < 1.0:
            problems.append("merger_ratio_range must be >= 1 (M_main / M_companion)")
        if self.survey_z_range[0] <= 0:
            problems.append("survey_z_range must be positive")
        problems.extend(self._version2_problems())
        if problems:
            raise ClusterMassError("Invalid population parameters: " + "; ".join(problems) + ".")


    def _version2_problems(self) -> list[str]:
        problems = []
        if self.version not in POPULATION_VERSIONS:
            problems.append(f"version = {self.version!r} is unknown: use 1, 2, 3 or 4 (datasets "
                            "0.1.0, 0.2.0, 0.3.0, 0.4.0)")
        for name in ("fgas_structured", "cc_floor", "cc_merger_anticorrelation", "halo_finder_m500c",
                     "sky_point_sources", "sky_diffuse", "sky_los_haloes"):
            if not isinstance(getattr(self, name), bool):
                problems.append(f"{name} = {getattr(self, name)!r} must be true or false")
        if not 0.0 < self.sky_halo_lx_scale <= 10.0:
            problems.append(f"sky_halo_lx_scale = {self.sky_halo_lx_scale} must be in (0, 10] (a multiple of "
                            "the Vikhlinin+ 2009 L_X-M relation)")
        if not 0.0 <= self.hydrostatic_bias < 0.5:
            problems.append(f"hydrostatic_bias = {self.hydrostatic_bias} must be in [0, 0.5) (b in M_HSE = (1 - b) M)")
        for name in ("fgas_formation_corr", "cc_merger_disruption"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                problems.append(f"{name} = {getattr(self, name)} must be in [0, 1]")
        for name in ("cc_entropy_floor_kev_cm2", "cc_tcool20_floor_gyr", "cc_floor_scatter_dex"):
            if getattr(self, name) < 0:
                problems.append(f"{name} = {getattr(self, name)} must be >= 0 (0 turns the floor off)")
        problems.extend(self._icm_problems())
        return problems

    def _sigma_hold_problems(self) -> list[str]:
        """Checks of an explicit icm_sigma_hold_frac (a field versions < 4 do not have)."""
        if self.icm_sigma_hold_frac is None or self.version not in POPULATION_VERSIONS:
            return []
        if self.version < 4:
            return [f"icm_sigma_hold_frac = {self.icm_sigma_hold_frac} needs population version 4 "
                    f"(version {self.version} lets the width rise without bound): set version = 4 or "
                    "leave it out"]
        if not self.icm_sigma_hold_frac >= 1.0:
            return [f"icm_sigma_hold_frac = {self.icm_sigma_hold_frac} must be >= 1 (R500c; the width "
                    "is calibrated on the clumping at R500c)"]
        return []

    @property
    def sigma_hold_frac(self) -> float | None:
        """The radius (R500c) beyond which the fluctuations' width is held: the explicit value,
        else the version's (:data:`ICM_SIGMA_HOLD_FRAC`); None, unbounded, before version 4.
        Left unresolved in the field so that ``dataclasses.replace(params, version=3)`` works."""
        if self.icm_sigma_hold_frac is not None:
            return float(self.icm_sigma_hold_frac)
        return ICM_SIGMA_HOLD_FRAC.get(self.version)

    def _icm_problems(self) -> list[str]:
        """Checks of the ICM-structure fields (:mod:`pipeline.icm`)."""
        problems = []
        for name in ("icm_fluctuations", "sloshing_fronts", "outer_slope_accretion"):
            if not isinstance(getattr(self, name), bool):
                problems.append(f"{name} = {getattr(self, name)!r} must be true or false")
        for name in ("icm_sigma500_ln", "icm_sigma_core_ln", "icm_sigma_scatter_ln"):
            if not 0.0 <= getattr(self, name) <= 1.5:
                problems.append(f"{name} = {getattr(self, name)} must be in [0, 1.5] (a log-normal width)")
        if not self.icm_merger_boost >= 1.0:
            problems.append(f"icm_merger_boost = {self.icm_merger_boost} must be >= 1 (mergers are not calmer)")
        if not self.icm_injection_kpc > 0:
            problems.append(f"icm_injection_kpc = {self.icm_injection_kpc} must be positive (kpc)")
        for name in ("sloshing_fraction", "eps_accretion_corr", "rs_accretion_corr"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                problems.append(f"{name} = {getattr(self, name)} must be in [0, 1]")
        for name, floor in (("sloshing_radius_range", 0.0), ("sloshing_jump_range", 1.0)):
            value = tuple(float(v) for v in getattr(self, name))
            if len(value) != 2 or not floor < value[0] <= value[1]:
                problems.append(f"{name} = {getattr(self, name)} must be (low, high) with {floor:g} < low <= high")
            else:
                object.__setattr__(self, name, value)
        return problems

    def recorded(self) -> dict:
        """The parameters as the dataset card and the configuration fingerprint record them.

        At version 1 the version-2 fields (:data:`V2_FIELDS`) are left out, so a version-1
        dataset records exactly what the 0.1.0 datasets did: same fingerprint, same cluster
        files, byte for byte.  A card without ``version`` therefore means version 1.  Versions
        1-3 likewise leave out the version-4 fields (:data:`V4_FIELDS`).
        """
        values = dataclasses.asdict(self)
        if not self.v2:
            for name in V2_FIELDS:
                values.pop(name)
        if self.version < 4:
            for name in V4_FIELDS:
                values.pop(name)
        else:
            values["icm_sigma_hold_frac"] = self.sigma_hold_frac
        return values

    @property
    def v2(self) -> bool:
        """Whether the version-2 ingredients apply."""
        return self.version >= 2


#: fields that exist from population version 2 on (left out of version 1's records)
V2_FIELDS = (
    "version", "hydrostatic_bias", "fgas_structured", "fgas_scatter_mass_slope", "fgas_formation_corr",
    "cc_floor", "cc_entropy_floor_kev_cm2", "cc_tcool20_floor_gyr", "cc_floor_scatter_dex",
    "cc_merger_anticorrelation", "cc_merger_disruption", "halo_finder_m500c",
    "sky_point_sources", "sky_diffuse", "sky_los_haloes", "sky_halo_lx_scale",
    "icm_fluctuations", "icm_sigma500_ln", "icm_sigma_core_ln", "icm_radial_slope", "icm_merger_boost",
    "icm_accretion_slope", "icm_sigma_scatter_ln", "icm_injection_kpc", "icm_t_response",
    "sloshing_fronts", "sloshing_fraction", "sloshing_radius_range", "sloshing_jump_range",
    "outer_slope_accretion", "eps_accretion_corr", "rs_accretion_corr",
)
#: fields that exist from population version 4 on (left out of the records of versions 1-3,
#: whose datasets stay byte for byte what they were)
V4_FIELDS = ("icm_sigma_hold_frac",)


# ---------------------------------------------------------------------------------------
# seeds


def derive_seed(master_seed: int, *key: int) -> int:
    """A 52-bit integer seed for the stream ``key`` of ``master_seed`` (order-independent).

    ``SeedSequence(master_seed, spawn_key=key)`` hashes the master seed together with the
    key, so the seed of (cluster 12, epoch 3, view 1) is the same whatever else is generated.
    52 bits so the seed survives a float64 round trip (a pandas row of mixed dtypes, JSON).
    """
    if int(master_seed) < 0:
        raise ClusterMassError(f"master_seed = {master_seed} must be a non-negative integer.")
    ss = np.random.SeedSequence(int(master_seed), spawn_key=tuple(int(k) for k in key))
    lo, hi = ss.generate_state(2, dtype=np.uint32)
    return int((int(hi) << 32 | int(lo)) & ((1 << 52) - 1))


def gas_seed(master_seed: int, cluster_id: int, epoch: int) -> int:
    """Seed of the 3D gas realisation (subclumps) of one cluster epoch."""
    return derive_seed(master_seed, _STREAM_GAS, cluster_id, epoch)


def view_seed(master_seed: int, cluster_id: int, epoch: int, view: int | str) -> int:
    """Seed of one view (photon / Poisson sampling); ``view`` is 0, 1, 2 or 'x', 'y', 'z'."""
    index = VIEWS.index(view) if isinstance(view, str) else int(view)
    return derive_seed(master_seed, _STREAM_VIEW, cluster_id, epoch, index)


def _rng(master_seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(int(master_seed), spawn_key=key))


# ---------------------------------------------------------------------------------------
# scaling relations


def _hse_factor(params: PopulationParams) -> float:
    """1 - b: the hydrostatic mass of a halo of true mass M is (1 - b) M (version 2 only)."""
    return 1.0 - params.hydrostatic_bias if params.v2 else 1.0


def fgas_mean(m500c_msun, params: PopulationParams):
    """Mean gas fraction within R500c at true mass ``m500c_msun`` (Lovisari et al. 2015 trend).

    The relation is measured against hydrostatic masses: at version 2 the true-mass gas
    fraction is f_HSE((1 - b) M) (1 - b), since M_gas = f_HSE M_HSE (Barnes et al. 2021).
    """
    m = np.asarray(m500c_msun, dtype=float) * _hse_factor(params)
    f = params.fgas_pivot * (m / params.fgas_pivot_msun) ** params.fgas_mass_slope
    return np.minimum(f * _hse_factor(params), params.fgas_max)


def fgas_scatter_ln(m500c_msun, params: PopulationParams):
    """Log-normal gas-fraction scatter at mass ``m500c_msun``: constant at version 1,
    larger in groups at version 2 (Pillepich et al. 2018; Farahi et al. 2018)."""
    m = np.asarray(m500c_msun, dtype=float)
    if not (params.v2 and params.fgas_structured):
        return params.fgas_scatter_ln + 0.0 * m
    return params.fgas_scatter_ln * (m / params.fgas_pivot_msun) ** params.fgas_scatter_mass_slope


def t500_mean_kev(m500c_msun, z, params: PopulationParams):
    """Mean T_X (keV) at true mass ``m500c_msun`` and redshift ``z``: Vikhlinin et al. 2009,
    M500 = M5 (T/5 keV)^a E(z)^-1, i.e. T = 5 keV (E(z) M / M5)^(1/a), with M the hydrostatic
    mass (1 - b) M_true at version 2 (their masses are hydrostatic)."""
    m = np.asarray(m500c_msun, dtype=float) * _hse_factor(params)
    return 5.0 * (efunc(z) * m / params.mt_m5_msun) ** (1.0 / params.mt_slope)


def cc_chain_fraction(params: PopulationParams) -> float:
    """Stationary fraction of the cool-core chain before mergers destroy cool cores.

    At version 2 a cool core at an epoch with a merger at that epoch or the previous one
    is destroyed with probability ``cc_merger_disruption``; the share of such epochs in the
    stationary merger chain is 1 - (1 - f)(1 - on), so the chain's fraction is raised to keep
    the overall cool-core fraction at ``cc_fraction``.
    """
    if not (params.v2 and params.cc_merger_anticorrelation):
        return params.cc_fraction
    on, _ = _markov_rates(params.merger_fraction, params.merger_persistence)
    recent = 1.0 - (1.0 - params.merger_fraction) * (1.0 - on)
    return float(min(0.99, params.cc_fraction / (1.0 - params.cc_merger_disruption * recent)))


def _markov_rates(fraction: float, persistence: float) -> tuple[float, float]:
    """Switch-on / switch-off probabilities of a two-state chain with stationary probability
    ``fraction`` and lag-1 autocorrelation ``persistence`` (= 1 - on - off)."""
    total = 1.0 - persistence
    return fraction * total, (1.0 - fraction) * total


def _markov_chain(rng, n: int, fraction: float, persistence: float) -> np.ndarray:
    on, off = _markov_rates(fraction, persistence)
    state = np.empty(n, dtype=bool)
    state[0] = rng.random() < fraction
    for i in range(1, n):
        u = rng.random()
        state[i] = (u >= off) if state[i - 1] else (u < on)
    return state


def _outer_deviate(white: float, alpha_dev: float, corr: float, params: PopulationParams) -> float:
    """The standard-normal deviate of an outer-slope parameter: ``white`` at version 1, at
    version 2 correlated by ``corr`` with the accretion-rate deviate (Diemer & Kravtsov 2014;
    Lau et al. 2015; :func:`pipeline.icm.outer_slope_deviate`)."""
    if not (params.v2 and params.outer_slope_accretion):
        return white
    from pipeline.icm import outer_slope_deviate

    return outer_slope_deviate(white, alpha_dev, corr)


def _disrupt_cool_cores(cc: np.ndarray, mg: np.ndarray, params: PopulationParams, rng) -> np.ndarray:
    """Cool cores destroyed by a merger at this or the previous (next-older) epoch
    (Rossetti et al. 2017), with probability ``cc_merger_disruption``; epoch 0 latest."""
    recent = mg.copy()
    recent[:-1] |= mg[1:]
    hit = rng.random(len(cc)) < params.cc_merger_disruption
    return cc & ~(recent & hit)


def _sample_masses(params: PopulationParams, master_seed: int) -> np.ndarray:
    """Epoch-0 log10 M500c of every cluster, most massive first.

    Stratified inverse-CDF sampling of dN/dlog10M ~ M^slope exp(-M/M_cut) between the
    limits: one draw in each of ``n_clusters`` equal-probability bins, so even a small preset
    spans the whole mass range.
    """
    rng = _rng(master_seed, _STREAM_MASSES)
    grid = np.linspace(params.log10_m500c_min, params.log10_m500c_max, 4001)
    m = 10.0**grid
    pdf = m**params.mf_slope * np.exp(-m / params.mf_cutoff_msun)
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (pdf[1:] + pdf[:-1]) * np.diff(grid))])
    cdf /= cdf[-1]
    n = int(params.n_clusters)
    u = (np.arange(n) + rng.random(n)) / n
    return np.sort(np.interp(u, cdf, grid))[::-1]


def rotation_matrix(quaternion) -> np.ndarray:
    """3x3 rotation matrix of a unit quaternion (w, x, y, z): columns are the cluster's
    principal axes expressed in grid coordinates."""
    w, x, y, z = np.asarray(quaternion, dtype=float) / np.linalg.norm(quaternion)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])


def _unit_vector(rng) -> np.ndarray:
    v = rng.normal(size=3)
    return v / np.linalg.norm(v)


# ---------------------------------------------------------------------------------------
# the population


def _cluster_rows(cid: int, log10_m0: float, params: PopulationParams, master_seed: int,
                  z_obs: float) -> list[dict]:
    """All epochs of one cluster, from its own random stream.

    The order of the steps is the order of the stream's draws, which the published datasets
    depend on: history, states, per-cluster traits, companions, then epoch by epoch.
    """
    rng = _rng(master_seed, _STREAM_CLUSTER, cid)
    n_ep = int(params.n_epochs)
    alpha, alpha_dev, z_ep, log10_m = _accretion_history(rng, log10_m0, n_ep, params)
    cc, mg = _dynamical_states(rng, n_ep, params, master_seed, cid)
    traits = _cluster_traits(rng, params)
    companions = _merger_companions(rng, mg, params)
    rows = []
    for ep in range(n_ep):
        m = 10.0 ** log10_m[ep]
        is_cc, is_mg = bool(cc[ep]), bool(mg[ep])
        fgas_dev, fgas, t_dev, t500 = _gas_and_temperature(rng, m, alpha_dev, traits, params, z_obs)
        row = dict(
            cluster_id=cid, epoch=ep, z_epoch=float(z_ep[ep]), redshift=float(z_obs),
            log10_m500c=float(log10_m[ep]), r500c_kpc=float(r500c_kpc(m, z_obs)),
            t500_kev=t500, gas_fraction=fgas, cool_core=int(is_cc), merger=int(is_mg),
            mah_alpha=float(alpha),
            **({"mah_alpha_dev": float(alpha_dev)} if params.v2 else {}),  # standard normal
            **_density_profile(rng, m, is_cc, alpha_dev, traits, params),
            **_temperature_metals_shape(rng, is_cc, traits, params),
        )
        row.update(_merger_columns(rng, companions[ep] if is_mg else None, m, t_dev, fgas_dev,
                                   params, z_obs))
        row.update(_subclump_columns(rng, m, params))
        rows.append(row)
    return rows


def _accretion_history(rng, log10_m0: float, n_ep: int,
                       params: PopulationParams) -> tuple[float, float, np.ndarray, np.ndarray]:
    """Mass-accretion history (Wechsler et al. 2002), epoch 0 latest: the accretion rate
    ``alpha``, its standard-normal deviate, the redshift offset of each epoch and log10 M500c
    at each epoch."""
    m0 = 10.0**log10_m0
    alpha = params.mah_alpha_median * (m0 / 1e14) ** params.mah_alpha_mass_slope
    alpha_dev = rng.normal()  # formation-time diversity, standard normal
    alpha *= 10.0 ** (params.mah_alpha_scatter_dex * alpha_dev)
    z_ep = np.arange(n_ep) * params.epoch_dz
    jitter = np.concatenate([[0.0], np.cumsum(rng.normal(0, params.mah_jitter_dex, n_ep - 1))])
    log10_m = log10_m0 - alpha * z_ep / np.log(10.0) + jitter
    log10_m = np.minimum.accumulate(log10_m)  # accretion: never heavier in the past
    return alpha, alpha_dev, z_ep, log10_m


def _dynamical_states(rng, n_ep: int, params: PopulationParams, master_seed: int,
                      cid: int) -> tuple[np.ndarray, np.ndarray]:
    """Cool-core and merger state of each epoch (epoch 0 latest)."""
    # Markov chains run in chronological order (earliest epoch first)
    cc = _markov_chain(rng, n_ep, cc_chain_fraction(params), params.cc_persistence)[::-1]
    mg = _markov_chain(rng, n_ep, params.merger_fraction, params.merger_persistence)[::-1]
    if params.v2 and params.cc_merger_anticorrelation:
        # from a stream of its own: the cluster stream's later draws stay those of version 1
        cc = _disrupt_cool_cores(cc, mg, params, _rng(master_seed, _STREAM_V2, cid))
    return cc, mg


def _cluster_traits(rng, params: PopulationParams) -> dict:
    """Per-cluster shape and orientation, and the persistent parts of the core-radius,
    metallicity, gas-fraction and temperature scatters (kept over the epochs, each epoch
    adding its own small part)."""
    quat = rng.normal(size=4)
    quat /= np.linalg.norm(quat)  # uniform on SO(3)
    q1_c = params.axis_q1_mean + params.axis_scatter * rng.normal()
    q2_c = params.axis_q2_mean + params.axis_scatter * rng.normal()
    rc_c = params.rc_scatter_dex * rng.normal()
    z_out_c = params.z_outer_mean + params.z_outer_scatter * rng.normal()
    fgas_c = rng.normal()
    t_c = rng.normal()
    return dict(quat=quat, q1=q1_c, q2=q2_c, rc=rc_c, z_outer=z_out_c, fgas=fgas_c, t=t_c)


def _merger_companions(rng, mg: np.ndarray, params: PopulationParams) -> dict:
    """epoch -> (mass ratio, separation, direction) of the companion: one per run of
    consecutive merger epochs, falling in with time."""
    comp = {}
    e = len(mg) - 1
    while e >= 0:
        if mg[e]:
            run = [e]
            while e - 1 >= 0 and mg[e - 1]:
                e -= 1
                run.append(e)
            ratio = np.exp(rng.uniform(*np.log(params.merger_ratio_range)))
            direction = _unit_vector(rng)
            s_lo, s_hi = params.merger_sep_range
            seps = np.sort(rng.uniform(s_lo, s_hi, len(run)))[::-1]  # earliest farthest
            for ep, sep in zip(run, seps):
                comp[ep] = (ratio, sep, direction)
        e -= 1
    return comp


def _gas_and_temperature(rng, m, alpha_dev: float, traits: dict, params: PopulationParams,
                         z_obs: float) -> tuple[float, float, float, float]:
    """(gas-fraction deviate, gas fraction, ln T deviate, T500 in keV) of one epoch; the
    deviates also set the companion's."""
    # 70% of the scatter persistent per cluster, 30% fresh per epoch
    fgas_dev = np.sqrt(0.7) * traits["fgas"] + np.sqrt(0.3) * rng.normal()
    if params.v2 and params.fgas_structured:
        rho = params.fgas_formation_corr
        fgas_dev = rho * alpha_dev + np.sqrt(1.0 - rho**2) * fgas_dev
    fgas_dev = fgas_scatter_ln(m, params) * fgas_dev
    fgas = float(fgas_mean(m, params) * np.exp(fgas_dev))
    t_dev = params.t_scatter_ln * (np.sqrt(0.7) * traits["t"] + np.sqrt(0.3) * rng.normal())
    t500 = float(t500_mean_kev(m, z_obs, params) * np.exp(t_dev))
    return fgas_dev, fgas, t_dev, t500


def _density_profile(rng, m, is_cc: bool, alpha_dev: float, traits: dict,
                     params: PopulationParams) -> dict:
    """Density-profile columns of one epoch: core radius, slopes and the compact core."""
    rc_dev = np.sqrt(0.5) * traits["rc"] + np.sqrt(0.5) * params.rc_scatter_dex * rng.normal()
    rc_frac = params.rc_frac_median * (m / 3e14) ** params.rc_mass_slope * 10.0**rc_dev
    # drawn cool core or not, so that the later draws do not depend on the state
    cc_dex = rng.uniform(*params.cc_contrast_dex_range)
    return dict(
        rc_frac=float(rc_frac),
        beta=float(params.beta_mean * (m / 3e14) ** params.beta_mass_slope
                   + params.beta_scatter * rng.normal()),
        rs_frac=float(params.rs_frac * 10.0 ** (params.rs_scatter_dex * _outer_deviate(
            rng.normal(), -alpha_dev, params.rs_accretion_corr, params))),
        eps=float(max(0.5, params.eps_mean + params.eps_scatter * _outer_deviate(
            rng.normal(), alpha_dev, params.eps_accretion_corr, params))),
        cc_contrast_dex=float(cc_dex) if is_cc else 0.0,
        # the compact core scales with the smooth core: its luminosity boost depends on the
        # contrast, not on the core-radius scatter (else a 1-dex tail of total L_X)
        cc_rc2_frac=float(params.cc_rc2_frac * 10.0 ** (params.cc_rc2_contrast_slope * (cc_dex - 1.0))
                          * rc_frac / params.rc_frac_median),
    )


def _temperature_metals_shape(rng, is_cc: bool, traits: dict, params: PopulationParams) -> dict:
    """Temperature-dip, metallicity, axis-ratio and orientation columns of one epoch."""
    quat = traits["quat"]
    return dict(
        t_min_frac=float(rng.uniform(*(params.cc_tmin_range if is_cc else params.ncc_tmin_range))),
        t_rcool_frac=float(params.tcool_rcool_frac),
        z_outer=float(np.clip(traits["z_outer"] + 0.02 * rng.normal(), 0.1, 0.6)),
        z_center=float(rng.uniform(*(params.z_center_cc_range if is_cc else params.z_center_ncc_range))),
        z_core_frac=float(params.z_core_frac),
        axis_q1=float(np.clip(traits["q1"] + 0.02 * rng.normal(), params.axis_min, 1.0)),
        axis_q2=float(np.clip(traits["q2"] + 0.02 * rng.normal(), params.axis_min, 1.0)),
        quat_w=float(quat[0]), quat_x=float(quat[1]), quat_y=float(quat[2]), quat_z=float(quat[3]),
    )


def _merger_columns(rng, companion: tuple | None, m, t_dev: float, fgas_dev: float,
                    params: PopulationParams, z_obs: float) -> dict:
    """Companion and disturbed-core columns of one epoch; ``companion`` is
    :func:`_merger_companions`' entry, None outside mergers (zeros, no core boost)."""
    if companion is None:
        return dict(
            merger_ratio=0.0, merger_sep_frac=0.0, merger_t500_kev=0.0,
            merger_gas_fraction=0.0, merger_dir_x=0.0, merger_dir_y=0.0,
            merger_dir_z=0.0, core_offset_frac=0.0, core_offset_dir_x=0.0,
            core_offset_dir_y=0.0, core_offset_dir_z=0.0, rc_boost=1.0,
        )
    ratio, sep, direction = companion
    off_dir = _unit_vector(rng)
    m_comp = m / ratio
    return dict(
        merger_ratio=float(ratio), merger_sep_frac=float(sep),
        merger_t500_kev=float(t500_mean_kev(m_comp, z_obs, params) * np.exp(t_dev)),
        merger_gas_fraction=float(fgas_mean(m_comp, params) * np.exp(fgas_dev)),
        merger_dir_x=float(direction[0]), merger_dir_y=float(direction[1]),
        merger_dir_z=float(direction[2]),
        core_offset_frac=float(rng.uniform(*params.merger_core_offset_range)),
        core_offset_dir_x=float(off_dir[0]), core_offset_dir_y=float(off_dir[1]),
        core_offset_dir_z=float(off_dir[2]),
        rc_boost=float(rng.uniform(*params.merger_rc_boost_range)),
    )


def _subclump_columns(rng, m, params: PopulationParams) -> dict:
    """Subclump count, Poisson from the integrated subhalo mass function, and the clump mass
    function the gas model draws their masses from."""
    mu_lo, mu_hi = params.shmf_mu_range
    s = params.shmf_slope
    n_mean = params.shmf_norm * (mu_lo ** (1 - s) - mu_hi ** (1 - s)) / (s - 1)
    n_mean *= (m / 1e14) ** params.subclump_mass_trend
    return dict(n_subclumps=int(rng.poisson(n_mean)), subclump_slope=float(s),
                subclump_mu_min=float(mu_lo), subclump_mu_max=float(mu_hi),
                subclump_retained=float(params.subclump_gas_retained))


def _core_floor_contrast(row: dict, params: PopulationParams, boost: float = 1.0) -> float:
    """The largest compact-core contrast (dex) up to the drawn one that keeps the central
    entropy above ``cc_entropy_floor_kev_cm2`` (Cavagnolo et al. 2009) and the cooling time
    at 20 kpc above ``cc_tcool20_floor_gyr`` (Hogan et al. 2017), the entropy floor raised by
    this core's ``boost``, by bisection (the central density rises monotonically with the
    contrast)."""
    from pipeline.gas import core_state

    drawn = float(row["cc_contrast_dex"])

    def ok(dex: float) -> bool:
        state = core_state(_with_contrast(row, dex, params))
        return (state["k0_kev_cm2"] >= params.cc_entropy_floor_kev_cm2 * boost
                and state["tcool20_gyr"] >= params.cc_tcool20_floor_gyr)

    if ok(drawn):
        return drawn
    lo, hi = 0.0, drawn
    if not ok(lo):
        return 0.0
    for _ in range(14):  # 1 dex / 2^14: far below anything visible
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if ok(mid) else (lo, mid)
    return lo


def _with_contrast(row: dict, dex: float, params: PopulationParams) -> dict:
    """``row`` with the compact core's contrast ``dex`` and its matching radius (denser
    cores are more compact, as when drawn: see ``cc_rc2_contrast_slope``)."""
    out = dict(row)
    scale = 10.0 ** (params.cc_rc2_contrast_slope * (dex - float(row["cc_contrast_dex"])))
    out["cc_contrast_dex"] = float(dex)
    out["cc_rc2_frac"] = float(row["cc_rc2_frac"]) * scale
    return out


def _version2_structure(pop: pd.DataFrame, params: PopulationParams, master_seed: int) -> pd.DataFrame:
    """Version-2 ingredients that need a whole row: the cool-core floor, then M500c as a halo
    finder measures it, then the ICM structure of :func:`pipeline.icm.icm_columns`.  Adds
    ``cc_contrast_dex_drawn`` (before the floor) and the main halo's ``log10_m500c_main``,
    ``r500c_kpc_main`` (what the gas model is built from)."""
    pop = pop.copy()
    pop["cc_contrast_dex_drawn"] = pop["cc_contrast_dex"]
    if params.cc_floor:
        for i in np.flatnonzero(pop["cool_core"].to_numpy() == 1):
            row = pop.iloc[i].to_dict()
            rng = _rng(master_seed, _STREAM_V2, int(row["cluster_id"]), int(row["epoch"]))
            boost = 10.0 ** abs(params.cc_floor_scatter_dex * rng.normal())
            dex = _core_floor_contrast(row, params, boost)
            if dex != row["cc_contrast_dex"]:
                fixed = _with_contrast(row, dex, params)
                pop.iloc[i, pop.columns.get_loc("cc_contrast_dex")] = fixed["cc_contrast_dex"]
                pop.iloc[i, pop.columns.get_loc("cc_rc2_frac")] = fixed["cc_rc2_frac"]
    pop["log10_m500c_main"] = pop["log10_m500c"]
    pop["r500c_kpc_main"] = pop["r500c_kpc"]
    if params.halo_finder_m500c:
        # a spherical-overdensity finder counts every particle inside R500c: a companion whose
        # centre is inside counts whole (its bound mass lies mostly within its own, smaller,
        # radius); R500c grows as M^(1/3) at fixed overdensity
        inside = (pop["merger"].to_numpy() == 1) & (pop["merger_sep_frac"].to_numpy() < 1.0)
        ratio = np.where(inside, pop["merger_ratio"].to_numpy(), np.inf)
        gain = 1.0 + 1.0 / ratio
        pop["log10_m500c"] = pop["log10_m500c_main"] + np.log10(gain)
        pop["r500c_kpc"] = pop["r500c_kpc_main"] * gain ** (1.0 / 3.0)
    from pipeline.icm import icm_columns  # fluctuations and sloshing fronts of each epoch

    pop = icm_columns(pop, params, master_seed)
    pop["population_version"] = int(params.version)  # the gas model's truth follows it (pipeline.gas)
    return pop


def make_population(params: PopulationParams | None = None, master_seed: int = 0,
                    observation: Observation | None = None) -> pd.DataFrame:
    """Draw the cluster population: one row per (cluster_id, epoch).

    Parameters
    ----------
    params : PopulationParams, optional
        Population knobs (defaults: the documented 329 x 8 population).
    master_seed : int
        The one seed of the dataset; every draw derives from it order-independently.
    observation : Observation, optional
        Supplies ``z_obs`` (default ``Observation()``, z = 0.2) and the field for
        ``r500c_arcmin``.

    Returns
    -------
    pandas.DataFrame
        Sorted by ``cluster_id``, ``epoch``.  Catalog columns: ``cluster_id``, ``epoch``,
        ``redshift``, ``log10_m500c`` [log10 Msun], ``r500c_kpc`` [kpc], ``r500c_arcmin``,
        ``t500_kev`` [keV], ``gas_fraction``, ``cool_core`` (0/1), ``merger`` (0/1); seeds:
        ``seed`` (3D gas of this cluster epoch) and ``seed_x``, ``seed_y``, ``seed_z`` (one
        per projection); gas-model columns read by :func:`pipeline.gas.build_gas_grid`
        (``rc_frac``, ``beta``, ``rs_frac``, ``eps``, ``cc_contrast_dex``, ``cc_rc2_frac``,
        ``t_min_frac``, ``t_rcool_frac``, ``z_outer``, ``z_center``, ``z_core_frac``,
        ``axis_q1``, ``axis_q2``, ``quat_*`` (orientation), ``merger_ratio``,
        ``merger_sep_frac``, ``merger_dir_*``, ``merger_t500_kev``, ``merger_gas_fraction``
        (the companion; zeros when ``merger`` is 0), ``core_offset_frac``,
        ``core_offset_dir_*``, ``rc_boost``, ``n_subclumps`` and the clump mass function
        ``subclump_slope``, ``subclump_mu_min``, ``subclump_mu_max``, ``subclump_retained``),
        plus ``z_epoch`` (redshift
        offset of the epoch along the history) and ``mah_alpha`` (accretion rate); at version
        2 also ``mah_alpha_dev`` (its standard-normal deviate) and the ICM-structure columns
        of :func:`pipeline.icm.icm_columns` (fluctuation seed and width, sloshing front).
    """
    params = PopulationParams() if params is None else params
    observation = Observation() if observation is None else observation
    if int(master_seed) != master_seed or master_seed < 0:
        raise ClusterMassError(f"master_seed = {master_seed!r} must be a non-negative integer.")
    master_seed = int(master_seed)
    log10_m0 = _sample_masses(params, master_seed)
    rows = []
    for cid, lm in enumerate(log10_m0):
        rows.extend(_cluster_rows(cid, float(lm), params, master_seed, observation.z_obs))
    pop = pd.DataFrame(rows)

    if params.survey_redshifts:
        # each epoch its own redshift, uniform in comoving volume between the limits
        z_lo, z_hi = params.survey_z_range
        zz = np.linspace(z_lo, z_hi, 2001)
        dc = angular_diameter_distance_kpc(zz) * (1 + zz)
        vol = dc**3
        zs = []
        for cid, ep in zip(pop["cluster_id"], pop["epoch"]):
            u = _rng(master_seed, _STREAM_SURVEY_Z, cid, ep).random()
            zs.append(float(np.interp(vol[0] + u * (vol[-1] - vol[0]), vol, zz)))
        pop["redshift"] = zs
        # R500c and T scale with E(z) at the redshift the view is observed at
        m = 10.0 ** pop["log10_m500c"].to_numpy()
        t_ratio = (efunc(pop["redshift"].to_numpy()) / efunc(observation.z_obs)) ** (1.0 / params.mt_slope)
        pop["t500_kev"] = pop["t500_kev"] * t_ratio
        pop["merger_t500_kev"] = pop["merger_t500_kev"] * t_ratio
        pop["r500c_kpc"] = r500c_kpc(m, pop["redshift"].to_numpy())

    if params.v2:
        pop = _version2_structure(pop, params, master_seed)
    pop["r500c_arcmin"] = pop["r500c_kpc"] / kpc_per_arcsec(pop["redshift"].to_numpy()) / 60.0
    pop["seed"] = [gas_seed(master_seed, c, e) for c, e in zip(pop["cluster_id"], pop["epoch"])]
    for view in VIEWS:
        pop[f"seed_{view}"] = [
            view_seed(master_seed, c, e, view) for c, e in zip(pop["cluster_id"], pop["epoch"])
        ]
    front = ["cluster_id", "epoch", "redshift", "log10_m500c", "r500c_kpc", "r500c_arcmin",
             "t500_kev", "gas_fraction", "cool_core", "merger", "seed", "seed_x", "seed_y", "seed_z"]
    pop = pop[front + [c for c in pop.columns if c not in front]]
    return pop.sort_values(["cluster_id", "epoch"], kind="stable").reset_index(drop=True)
