"""visualize: precision-recall curves per protein (model and baselines, shared and
non-shared blocks), AP bars, and the training curves of each mode; each PNG beside the
`*_data.csv` it was drawn from, under `<working>/visualizations/`."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd

from belka import PROTEINS
from belka.config import MODES, Config
from belka.paths import EVALUATION, HISTORY, VAL_PREDICTIONS, Layout
from pipekit.errors import InputDataError
from pipekit.plots import save_plot, write_index
from pipekit.uri import apply_storage_options, join_uri, open_uri, uri_exists

SCORERS = ("model", "fingerprint_logreg", "prevalence")


@dataclass(frozen=True)
class VisualizeResult:
    folder: str
    plots: list[str]


def pr_curve(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(-s, kind="mergesort")
    tp = np.cumsum(y[order])
    return tp / max(int(y.sum()), 1), tp / np.arange(1, len(y) + 1)  # recall, precision


def run(cfg: Config, layout: Layout | None = None) -> VisualizeResult:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    apply_storage_options(cfg.data.storage_options)
    layout = layout or Layout.of(cfg)
    uri = layout.out(VAL_PREDICTIONS)
    if not uri_exists(uri):
        raise InputDataError(f"{uri} not found: run --step make_submission first")
    with open_uri(uri) as fh:
        df = pd.read_parquet(fh)
    with open_uri(layout.out(EVALUATION), "r") as fh:
        report = json.load(fh)
    folder = layout.out("visualizations")
    plots = []
    for group, flag in (("shared", 1), ("non_shared", 0)):
        fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
        rows = []
        for ax, p in zip(axes, PROTEINS, strict=True):
            sel = df[(df["shared"] == flag) & (df[f"binds_{p}"] >= 0)]
            y = (sel[f"binds_{p}"] == 1).to_numpy()
            for name in SCORERS:
                if not y.any():
                    continue
                recall, precision = pr_curve(y, sel[f"{name}_{p}"].to_numpy())
                ap = report[name][group]["per_protein"][p]["ap"]
                ax.plot(recall, precision, label=f"{name} (AP {ap:.3f})")
                rows.append(
                    pd.DataFrame(
                        {"protein": p, "scorer": name, "recall": recall, "precision": precision}
                    )
                )
            ax.set(
                title=f"{p}, {group.replace('_', '-')} blocks ({len(sel)})",
                xlabel="recall",
                ylabel="precision",
                ylim=(0, 1.02),
            )
            if y.any():
                ax.legend(fontsize=7)
            else:
                ax.text(0.5, 0.5, "no binders here", ha="center", transform=ax.transAxes)
        data = pd.concat(rows) if rows else pd.DataFrame()
        plots.append(save_plot(fig, data, folder, f"precision_recall_{group}"))
    bars = pd.DataFrame(
        [
            {
                "scorer": name,
                "group": group,
                "protein": p,
                "ap": report[name][group]["per_protein"][p]["ap"],
                "ci_low": report[name][group]["per_protein"][p]["ap_ci95"][0],
                "ci_high": report[name][group]["per_protein"][p]["ap_ci95"][1],
            }
            for name in SCORERS
            for group in ("shared", "non_shared")
            for p in PROTEINS
        ]
    )
    fig, ax = plt.subplots(figsize=(8, 3.8))
    pivot = bars.pivot_table(index=["group", "protein"], columns="scorer", values="ap")
    low = bars.pivot_table(index=["group", "protein"], columns="scorer", values="ci_low")
    high = bars.pivot_table(index=["group", "protein"], columns="scorer", values="ci_high")
    # the 95% bootstrap interval of each AP (over the group's molecules) as error bars
    err = np.stack(
        [
            (pivot - low.reindex_like(pivot)).T.to_numpy(),
            (high.reindex_like(pivot) - pivot).T.to_numpy(),
        ],
        axis=1,
    )
    pivot.plot.bar(ax=ax, yerr=np.nan_to_num(err), capsize=2, rot=0)
    positives = {g: report["model"][g]["positives"] for g in ("shared", "non_shared")}
    ax.set_xticklabels(
        [f"{p}\n{g.replace('_', '-')}\n{positives[g][p]} binders" for g, p in pivot.index],
        fontsize=8,
    )
    ax.set(
        xlabel="",
        ylim=(0, 1.1),  # AP <= 1; the headroom keeps the legend off the bars
        ylabel="average precision",
        title="validation AP by block overlap (95% bootstrap intervals)",
    )
    ax.legend(title=None, fontsize=8, loc="upper left", ncol=3)
    plots.append(save_plot(fig, bars, folder, "average_precision"))
    curves = []
    for mode in MODES:
        h_uri = join_uri(layout.model_dir(mode), HISTORY)
        if uri_exists(h_uri):
            with open_uri(h_uri, "r") as fh:
                for h in json.load(fh):
                    curves.append(
                        {
                            "mode": mode,
                            "epoch": h["epoch"],
                            "loss": h["loss"],
                            "val_loss": h["val_loss"],
                        }
                    )
    if curves:
        hist = pd.DataFrame(curves)
        fig, axes = plt.subplots(1, len(hist["mode"].unique()), figsize=(12, 3.5), squeeze=False)
        for ax, (mode, part) in zip(axes[0], hist.groupby("mode", sort=False), strict=True):
            ax.plot(part["epoch"], part["loss"], label="train")
            ax.plot(part["epoch"], part["val_loss"], label="validation")
            ax.set(title=mode, xlabel="epoch", ylabel="loss")
            ax.legend()
        plots.append(save_plot(fig, hist, folder, "training_curves"))
    write_index(folder, "Belka: validation", plots)
    return VisualizeResult(folder, plots)
