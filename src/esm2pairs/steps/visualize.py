"""visualize: ROC and precision-recall curves and score distributions of a split's
predictions, each PNG beside the `*_data.csv` it was drawn from, and an index page."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from esm2pairs.config import Config
from esm2pairs.paths import Layout
from esm2pairs.steps.evaluate import curve_points, read_predictions
from pipekit.plots import save_plot, write_index

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VisualizeResult:
    folder: str
    plots: list[str]


def run(cfg: Config, split: str = "test") -> VisualizeResult:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layout = Layout.from_config(cfg)
    pred = read_predictions(layout, split)
    folder = layout.visualizations_dir
    y, s = pred["label"].to_numpy(), pred["score"].to_numpy()
    pts = curve_points(y, s)
    plots = []
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot(np.r_[0, pts["fpr"]], np.r_[0, pts["tpr"]])
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=f"ROC ({split})")
    plots.append(save_plot(fig, pts[["threshold", "fpr", "tpr"]], folder, f"roc_curve_{split}"))
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot(pts["recall"], pts["precision"])
    ax.axhline(y.mean(), color="k", ls=":", lw=0.8)
    ax.set(xlabel="recall", ylabel="precision", title=f"precision-recall ({split})", ylim=(0, 1.02))
    plots.append(
        save_plot(fig, pts[["threshold", "recall", "precision"]], folder, f"pr_curve_{split}")
    )
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    bins = np.linspace(0, 1, 31)
    for label, name in ((1, "same isolate"), (0, "different isolates")):
        ax.hist(s[y == label], bins=bins, alpha=0.6, label=name)
    ax.set(xlabel="score", ylabel="pairs", title=f"score distribution ({split})")
    ax.legend()
    counts = pd.DataFrame({"bin_left": bins[:-1]})
    for label, name in ((1, "same_isolate"), (0, "different_isolates")):
        counts[name] = np.histogram(s[y == label], bins=bins)[0]
    plots.append(save_plot(fig, counts, folder, f"score_distribution_{split}"))
    write_index(folder, f"ESM-2 segment pairs: {split}", plots)
    log.info("visualize: %d plots -> %s", len(plots), folder)
    return VisualizeResult(folder, plots)
