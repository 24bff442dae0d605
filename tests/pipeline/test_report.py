"""The science report: checks measured on a tiny real dataset, plots, montage, strict JSON."""
import json
import logging
import shutil

import numpy as np
import pandas as pd
import pytest

from benchmark.core.errors import ClusterMassError
from benchmark.dataset.loader import ClusterMassDataset
from pipeline import report
from pipeline.population import PopulationParams, make_population


@pytest.fixture(scope="module")
def reported(serial_dataset, tmp_path_factory):
    root = tmp_path_factory.mktemp("report") / "ci"
    shutil.copytree(serial_dataset, root)
    path = report.write_dataset_report(root)
    return root, path


def test_report_is_written_next_to_the_dataset_with_its_plots(reported):
    root, path = reported
    assert path == root / "report" / "report.json"
    figures = json.loads(path.read_text())
    assert {"montage.png", "lx_m.png", "t_m.png"} <= set(figures["plots"])
    assert all((root / "report" / name).stat().st_size > 1000 for name in figures["plots"])
    assert path.read_text().endswith("}\n") and "NaN" not in path.read_text()


def test_report_writes_the_observables_table(reported):
    root, path = reported
    table = {row["key"]: row for row in json.loads(path.read_text())["observables"]}
    catalog = ClusterMassDataset(root).catalog
    # L_X rows from the catalog's true luminosities, core rows from the population the card
    # describes (drawn again), each with its published range and source
    assert table["lx_cex_slope"]["measured"] == pytest.approx(
        np.polyfit(catalog["log10_m500c"] - 14.5, np.log10(catalog["lx_cex_erg_s"]), 1)[0], rel=1e-9)
    assert table["cool_core_fraction"]["measured"] == pytest.approx(catalog["cool_core"].mean())
    assert table["cc_k0_median_kev_cm2"]["measured"] >= 10.0  # version 2's entropy floor
    assert all(row["within"] in (True, False) for row in table.values() if row["measured"] is not None)
    text = (root / "report" / "observables.md").read_text()
    assert text.startswith("| observable | target | source | measured | in range |")
    assert text.count("\n") == len(report.OBSERVABLES) + 2


def test_report_figures_are_the_catalog_s(reported):
    root, path = reported
    figures = json.loads(path.read_text())
    catalog = ClusterMassDataset(root).catalog
    assert figures["n_views"] == len(catalog) == 30
    assert figures["n_clusters"] == 10
    assert figures["cool_core_fraction"] == pytest.approx(catalog["cool_core"].mean())
    # the mass scatter at fixed L_X: ln(10) x the residual std of log M regressed on log L
    # (whether core excision wins on 10 clusters is noise; the full population is in the
    # report's calibration figures)
    for kind in ("cex", "total"):
        log_l = np.log10(catalog[f"lx_{kind}_erg_s"]) - 44.0
        fit = np.polyfit(log_l, catalog["log10_m500c"], 1)
        resid = catalog["log10_m500c"] - np.polyval(fit, log_l)
        assert figures[f"lx_{kind}_mass_scatter"] == pytest.approx(np.log(10) * resid.to_numpy().std(), rel=1e-6)
    slope = np.polyfit(catalog["log10_m500c"] - 14.5, np.log10(catalog["lx_cex_erg_s"]), 1)[0]
    assert figures["lx_cex_slope"] == pytest.approx(slope, rel=1e-9)
    assert set(figures["targets_met"]) == {"lx_cex_mass_scatter", "lx_total_clearly_worse",
                                           "lx_cex_slope", "cool_core_fraction", "merger_fraction"}
    assert figures["targets_met"]["lx_total_clearly_worse"] == bool(
        figures["lx_total_mass_scatter"] - figures["lx_cex_mass_scatter"] >= 0.05)


def test_truth_table_gives_three_views_per_epoch_and_feeds_the_checks():
    pop = make_population(PopulationParams(n_clusters=4, n_epochs=2), 3)
    truths = report.truth_table(pop, npix=16)
    assert len(truths) == 3 * len(pop)
    assert (truths["lx_total_erg_s"] > truths["lx_cex_erg_s"]).all()
    checks = report.population_checks(pop, truths)
    assert checks["n_cluster_epochs"] == 8 and "cool_core_lag1_autocorr" in checks


def test_a_truth_table_without_luminosities_is_named():
    pop = make_population(PopulationParams(n_clusters=4, n_epochs=1), 3)
    with pytest.raises(ClusterMassError, match="lx_cex_erg_s"):
        report.population_checks(pop, pd.DataFrame({"cluster_id": [0], "epoch": [0]}))


def test_calibration_run_logs_and_writes_its_figures(tmp_path, caplog):
    out = tmp_path / "calibration"
    with caplog.at_level(logging.INFO, logger="pipeline.report"):
        checks = report.main(["--n-clusters", "6", "--n-epochs", "2", "--npix", "16", "--quiet",
                              "--out", str(out)])
    assert "lx_cex_slope=" in caplog.text
    assert json.loads((out / "checks.json").read_text())["n_views"] == checks["n_views"] == 36
    assert len(pd.read_csv(out / "truths.csv")) == 36
