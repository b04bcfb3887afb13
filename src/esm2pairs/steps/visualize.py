"""visualize: the run's report (`visualizations/index.html`: AUROC, AUPRC and F1 with
bootstrap intervals, the chance baseline, provenance, the figures) and its figures, each PNG
beside the `*_data.csv` it was drawn from: ROC and precision-recall curves and the score
distributions of a split's predictions."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from esm2pairs.config import Config
from esm2pairs.paths import Layout
from esm2pairs.steps.evaluate import curve_points, read_predictions
from pipekit.metrics import auroc, average_precision, pr_curve
from pipekit.plots import save_plot
from pipekit.report import Report, Table, interval, write_report
from pipekit.stats import unit_bootstrap_intervals
from pipekit.uri import open_uri, uri_exists

log = logging.getLogger(__name__)

BOOTSTRAP = 1000


@dataclass(frozen=True)
class VisualizeResult:
    folder: str
    plots: list[str]
    report: str  # index.html: the report, plots inlined


def _embeddings(layout: Layout, split: str) -> str:
    """What made the embeddings, as evaluate read it from the cache."""
    uri = layout.evaluation_metrics(split)
    if not uri_exists(uri):
        return "n/a (no evaluation metrics beside the predictions)"
    with open_uri(uri, "r") as fh:
        e = json.load(fh).get("embeddings")
    if not e:
        return "n/a (evaluated before the cache's record was kept)"
    return f"{e['model_name']} ({e['pooling']} pooling; weights {e['model_signature'][:16]}...)"


def report_of(cfg: Config, layout: Layout, split: str, pred: pd.DataFrame, point: tuple) -> Report:
    """AUROC and AUPRC (`point`) with percentile bootstrap intervals over the split's
    proteins (a protein sits in several pairs: its pairs are resampled together), against
    chance (AUROC 0.5; AUPRC the share of positive pairs)."""
    y, s = pred["label"].to_numpy(), pred["score"].to_numpy()
    lo, hi = unit_bootstrap_intervals(
        lambda yy, ss: np.array([auroc(yy, ss), average_precision(yy, ss)]),
        [pred["brc_a"].astype(str).to_numpy(), pred["brc_b"].astype(str).to_numpy()],
        y,
        s,
        n_boot=BOOTSTRAP,
    )
    cells = [interval(v, a, b) for v, a, b in zip(point, lo, hi, strict=True)]
    return Report(
        title=f"ESM-2 segment pairs: {split} split",
        headline=Table(
            ("pairs", "same-isolate pairs", "AUROC [95% CI]", "AUPRC [95% CI]"),
            [(len(y), int(y.sum()), *cells)],
        ),
        baselines=Table(
            ("scorer", "AUROC", "AUPRC"), [("chance (a random score)", 0.5, float(y.mean()))]
        ),
        provenance={
            "embeddings": _embeddings(layout, split),
            "predictions": layout.predictions(split),
            "intervals": f"percentile bootstrap over the split's proteins, {BOOTSTRAP} "
            "resamples: each protein weighted by a Poisson(1) count, each pair by the product of "
            "its two proteins' counts (Owen & Eckles 2012), so the pairs that share a protein "
            "move together; conservative: a pair's own noise is counted three times, so pairs "
            "sharing no protein would get 1.7x the pairs' own interval; the proteins of one "
            "isolate are taken as independent",
        },
        caveat=cfg.report.caveat,
    )


def run(cfg: Config, split: str = "test") -> VisualizeResult:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layout = Layout.from_config(cfg)
    pred = read_predictions(layout, split)
    folder = layout.visualizations_dir
    y, s = pred["label"].to_numpy(), pred["score"].to_numpy()
    auc, ap = auroc(y, s), average_precision(y, s)
    pts = curve_points(y, s)
    plots = []
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot(np.r_[0, pts["fpr"]], np.r_[0, pts["tpr"]], label=f"model (AUC {auc:.3f})")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8, label="chance (AUC 0.5)")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=f"ROC ({split})")
    ax.legend(loc="lower right")
    plots.append(save_plot(fig, pts, folder, f"roc_curve_{split}"))
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    recall, precision = pr_curve(y, s)
    ax.plot(recall, precision, drawstyle="steps-pre", label=f"model (AP {ap:.3f})")
    ax.axhline(y.mean(), color="k", ls=":", lw=0.8, label=f"chance (AP {y.mean():.3f})")
    ax.set(
        xlabel="recall",
        ylabel="precision",
        title=f"precision-recall ({split})",
        xlim=(0, 1),
        ylim=(0, 1.02),
    )
    ax.legend(loc="lower left")
    curve = pd.DataFrame({"recall": recall, "precision": precision})
    plots.append(save_plot(fig, curve, folder, f"pr_curve_{split}"))
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    bins = np.linspace(0, 1, 31)
    for label, name in ((1, "same isolate"), (0, "different isolates")):
        ax.hist(s[y == label], bins=list(bins), alpha=0.6, label=name)
    ax.set(xlabel="score", ylabel="pairs", title=f"score distribution ({split})")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))  # off the bars
    counts = pd.DataFrame({"bin_left": bins[:-1]})
    for label, name in ((1, "same_isolate"), (0, "different_isolates")):
        counts[name] = np.histogram(s[y == label], bins=bins)[0]
    plots.append(save_plot(fig, counts, folder, f"score_distribution_{split}"))
    page = write_report(folder, report_of(cfg, layout, split, pred, (auc, ap)), plots)
    log.info("visualize: %d plots -> %s", len(plots), page)
    return VisualizeResult(folder, plots, page)
