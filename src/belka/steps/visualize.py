"""visualize: the run's report (`<working>/visualizations/index.html`: the validation mean AP
of the model and the baselines with their intervals, provenance, the figures) and its figures,
each PNG beside the `*_data.csv` it was drawn from: precision-recall curves per protein
(model and baselines, shared and non-shared blocks), AP bars, the training curves of each
mode."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd

from belka import PROTEINS
from belka.config import MODES, Config
from belka.paths import EVALUATION, HISTORY, VAL_PREDICTIONS, Layout
from pipekit.errors import InputDataError
from pipekit.metrics import pr_curve
from pipekit.plots import epoch_ticks, save_plot
from pipekit.report import Report, Table, interval, write_report
from pipekit.uri import apply_storage_options, join_uri, open_uri, uri_exists

SCORERS = ("model", "fingerprint_logreg", "prevalence")


@dataclass(frozen=True)
class VisualizeResult:
    folder: str
    plots: list[str]
    report: str  # index.html: the report, plots inlined


GROUP_NAMES = {"non_shared": "non-shared blocks", "shared": "shared blocks"}


def _pr_figure(plt, df: pd.DataFrame, report: dict, group: str, flag: int):
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    rows = []
    for ax, p in zip(axes, PROTEINS, strict=True):
        sel = df[(df["shared"] == flag) & (df[f"binds_{p}"] >= 0)]
        y = (sel[f"binds_{p}"] == 1).to_numpy()
        for name in SCORERS if y.any() else ():
            recall, precision = pr_curve(y, sel[f"{name}_{p}"].to_numpy())
            ap = report[name][group]["per_protein"][p]["ap"]
            # a step curve: its area is the AP in the legend
            ax.plot(recall, precision, drawstyle="steps-pre", label=f"{name} (AP {ap:.3f})")
            rows.append(
                pd.DataFrame(
                    {"protein": p, "scorer": name, "recall": recall, "precision": precision}
                )
            )
        ax.set(
            title=f"{p}, {GROUP_NAMES[group]} ({len(sel)}, {int(y.sum())} binders)",
            xlabel="recall",
            ylabel="precision",
            xlim=(0, 1),
            ylim=(0, 1.02),
        )
        if y.any():
            ax.legend(fontsize=7, loc="upper right")
        else:
            ax.text(0.5, 0.5, "no binders here", ha="center", transform=ax.transAxes)
    return fig, pd.concat(rows) if rows else pd.DataFrame()


def _ap_bars(plt, report: dict):
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
        [f"{p}\n{GROUP_NAMES[g]}\n{positives[g][p]} binders" for g, p in pivot.index],
        fontsize=8,
    )
    ax.set(
        xlabel="protein, block group, binders among the group's molecules",
        ylim=(0, 1.1),  # AP <= 1; the headroom keeps the legend off the bars
        ylabel="average precision",
        title="validation AP by block overlap (95% bootstrap intervals)",
    )
    ax.legend(title=None, fontsize=8, loc="upper left", ncol=3)
    return fig, bars


def _training_curves(plt, layout: Layout):
    curves = []
    for mode in MODES:
        h_uri = join_uri(layout.model_dir(mode), HISTORY)
        if uri_exists(h_uri):
            with open_uri(h_uri, "r") as fh:
                curves += [
                    {
                        "mode": mode,
                        "epoch": h["epoch"],
                        "loss": h["loss"],
                        "val_loss": h["val_loss"],
                    }
                    for h in json.load(fh)
                ]
    if not curves:
        return None, None
    hist = pd.DataFrame(curves)
    fig, axes = plt.subplots(1, hist["mode"].nunique(), figsize=(12, 3.5), squeeze=False)
    for ax, (mode, part) in zip(axes[0], hist.groupby("mode", sort=False), strict=True):
        ax.plot(part["epoch"], part["loss"], "o-", label="train")
        ax.plot(part["epoch"], part["val_loss"], "o-", label="validation")
        ax.set(title=mode, xlabel="epoch", ylabel="loss")
        epoch_ticks(ax, part["epoch"])
        ax.legend()
    return fig, hist


def report_of(cfg: Config, layout: Layout, report: dict) -> Report:
    """The run's report: the model's validation mean AP per group with its interval, the
    baselines and the paired difference to the fingerprint model."""
    groups = ("non_shared", "shared")
    headline = Table(
        ("validation group", "molecules", "binders (BRD4, HSA, sEH)", "model mean AP [95% CI]"),
        [
            (
                GROUP_NAMES[g],
                report["model"][g]["molecules"],
                ", ".join(str(report["model"][g]["positives"][p]) for p in PROTEINS),
                interval(report["model"][g]["mean_ap"], *report["model"][g]["mean_ap_ci95"]),
            )
            for g in groups
        ],
    )
    ci = [f"{GROUP_NAMES[g]}: mean AP [95% CI]" for g in groups]
    rows: list[tuple[object, ...]] = [
        (
            name,
            *(
                interval(report[name][g]["mean_ap"], *report[name][g]["mean_ap_ci95"])
                for g in groups
            ),
        )
        for name in SCORERS[1:]
    ]
    rows.append(
        (
            "model minus fingerprint_logreg (paired)",
            *(
                interval(d["mean_ap_difference"], *d["ci95"])
                for d in (report["model_minus"][g]["fingerprint_logreg"] for g in groups)
            ),
        )
    )
    return Report(
        title="Belka: validation",
        headline=headline,
        baselines=Table(("scorer", *ci), rows),
        provenance={
            **{name.replace("_", " "): str(uri) for name, uri in report.get("sources", {}).items()},
            "evaluation": layout.out(EVALUATION),
            "submission rows": str(report.get("submission_rows", "n/a")),
            "intervals": f"percentile bootstrap over the group's molecules, "
            f"{cfg.evaluation.bootstrap_samples} resamples",
        },
        caveat=cfg.report.caveat,
        notes=(
            "fingerprint_logreg: logistic regression on the ECFP bits of the training molecules; "
            "prevalence: each protein's training hit rate for every molecule.",
        ),
    )


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
        fig, data = _pr_figure(plt, df, report, group, flag)
        plots.append(save_plot(fig, data, folder, f"precision_recall_{group}"))
    fig, bars = _ap_bars(plt, report)
    plots.append(save_plot(fig, bars, folder, "average_precision"))
    fig, hist = _training_curves(plt, layout)
    if fig is not None:
        plots.append(save_plot(fig, hist, folder, "training_curves"))
    page = write_report(folder, report_of(cfg, layout, report), plots)
    return VisualizeResult(folder, plots, page)
