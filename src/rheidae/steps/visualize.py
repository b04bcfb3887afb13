"""visualize: the run's report (`visualizations/index.html`: the model's and Box3D's errors,
the improvement with its interval, conservation, provenance, the figures) and what a physicist
checks, each PNG beside the `*_data.csv` it was drawn from:

- `change_parity_{number,flux}_<split>`: the true change of each moment (final - initial)
  against the predicted one, the model and Box3D in separate panels, so neither hides the
  other and a method that moves the wrong way shows off the diagonal;
- `error_parity_<split>`: each point's error under Box3D against under the model (log-log);
  below the diagonal the model is closer;
- `error_histogram_<split>`: each point's mean relative error (the measure whose mean is
  evaluate's headline, marked), on the range the data occupy.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipekit.errors import InputDataError
from pipekit.plots import save_plot
from pipekit.report import Report, Table, interval, write_report
from pipekit.uri import join_uri, open_uri, uri_exists
from rheidae.config import TrainSetup
from rheidae.moments import names, total_number, unflat
from rheidae.steps.evaluate import point_errors


@dataclass(frozen=True)
class VisualizeResult:
    folder: str
    plots: list[str]
    report: str  # index.html: the report, plots inlined


def report_of(setup: TrainSetup, split: str, metrics: dict) -> Report:
    """The model against Box3D and against no change at all, in evaluate's measure."""

    def row(name: str, block: dict) -> tuple[object, ...]:
        return (name, block["mean_relative_error"], block["rmse_relative"])

    head = ("", "mean |error| / total N", "RMS |error| / total N")
    improvement = interval(
        metrics["improvement_over_box3d"], *metrics["improvement_over_box3d_ci95"]
    )
    return Report(
        title=f"Rheidae: {split} split",
        headline=Table(
            (*head, "Box3D error / model error [95% CI]", "max conservation violation"),
            [
                (
                    *row(f"model ({metrics['points']} points)", metrics["model"]),
                    improvement,
                    metrics["conservation"]["model_max"],
                )
            ],
        ),
        baselines=Table(
            head, [row("Box3D", metrics["box3d"]), row("no change", metrics["no_change"])]
        ),
        provenance={
            "preprocessed data": setup.experiment.data.path,
            "model predicts": "the residual over Box3D"
            if metrics["predict_residual"]
            else "the final moments",
            "interval": "percentile bootstrap over the split's points (paired), 1000 resamples",
        },
        caveat=setup.experiment.report.caveat,
    )


# the parity plots draw the few points past their range on the frame's edge, and say so
ON_EDGE = "(beyond the frame: on its edge)"


def _columns(df: pd.DataFrame, prefix: str, cols: list[str]) -> np.ndarray:
    return df[[f"{prefix}_{c}" for c in cols]].to_numpy()


def _change_parity(plt, df, true, pred, box, init, kind: str, prefix: str, split: str):
    """The true change of each moment against the predicted one, model and Box3D apart."""
    cols = names()
    total = total_number(unflat(true))[:, None]
    sel = [i for i, c in enumerate(cols) if c.startswith(prefix)]
    d_true = ((true - init) / total)[:, sel].ravel()
    d_model = ((pred - init) / total)[:, sel].ravel()
    d_box = ((box - init) / total)[:, sel].ravel()
    lim = np.quantile(np.concatenate([d_true, d_model, d_box]), [0.001, 0.999])
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.4), sharex=True, sharey=True)
    for ax, got, label in ((axes[0], d_model, "model"), (axes[1], d_box, "Box3D")):
        # the few points beyond the frame stay in view, on its edge
        color = "C1" if label == "model" else "C0"
        ax.scatter(np.clip(d_true, *lim), np.clip(got, *lim), s=2, alpha=0.3, color=color)
        ax.plot(lim, lim, "k:", lw=0.8)
        rms = float(np.sqrt(np.mean((got - d_true) ** 2)))
        ax.xaxis.set_major_locator(plt.MaxNLocator(5))  # long signed labels: fewer of them
        ax.set(
            xlim=lim,
            ylim=lim,
            xlabel="true change / total N",
            title=f"{label}: rms off the diagonal {rms:.2e}",
        )
    axes[0].set_ylabel("predicted change / total N")
    fig.suptitle(f"{kind} moments, final - initial ({split}, {len(df)} points) {ON_EDGE}")
    return fig, pd.DataFrame(
        {"true_change": d_true, "model_change": d_model, "box3d_change": d_box}
    )


def _error_range(err_model: np.ndarray, err_box: np.ndarray) -> tuple[float, float]:
    both = np.concatenate([err_model, err_box])
    lo, hi = np.quantile(both[both > 0], [0.005, 0.995])
    return float(lo), float(hi)


def _error_parity(
    plt, err_model: np.ndarray, err_box: np.ndarray, split: str, lo: float, hi: float
):
    fig, ax = plt.subplots(figsize=(4.8, 4.8))
    ax.scatter(np.clip(err_box, lo, hi), np.clip(err_model, lo, hi), s=3, alpha=0.4)
    ax.plot([lo, hi], [lo, hi], "k:", lw=0.8)
    better = float((err_model < err_box).mean())
    ax.set(
        xscale="log",
        yscale="log",
        xlim=(lo, hi),
        ylim=(lo, hi),
        xlabel="Box3D mean relative error",
        ylabel="model mean relative error",
        title=f"per point ({split}): model closer on {better:.0%}\n{ON_EDGE}",
    )
    return fig, pd.DataFrame({"box3d": err_box, "model": err_model})


def _error_histogram(
    plt, err_model: np.ndarray, err_box: np.ndarray, split: str, lo: float, hi: float
):
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    bins = np.logspace(np.log10(lo), np.log10(hi), 40)
    for err, label, color in ((err_box, "Box3D", "C0"), (err_model, "model", "C1")):
        ax.hist(np.clip(err, lo, hi), bins=bins, alpha=0.55, label=label, color=color)
        ax.axvline(err.mean(), color=color, ls="--", lw=1.2)
    ax.set(
        xscale="log",
        xlabel="mean over 24 components of |error| / total N",
        ylabel="points",
        title=f"errors ({split}); dashed: the means evaluate reports",
    )
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig, pd.DataFrame({"box3d": err_box, "model": err_model})


def run(setup: TrainSetup, split: str = "test") -> VisualizeResult:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = setup.experiment.training.output_dir
    uri = join_uri(out_dir, "metrics", f"predictions_{split}.csv")
    if not uri_exists(uri):
        raise InputDataError(f"{uri} not found: run evaluate --split {split} first")
    with open_uri(uri, "rb") as fh:
        df = pd.read_csv(fh)
    if "init_N_nu_e" not in df:
        raise InputDataError(f"{uri} has no initial moments: rerun evaluate --split {split}")
    folder = join_uri(out_dir, "visualizations")
    cols = names()
    true, pred, box, init = (_columns(df, p, cols) for p in ("true", "pred", "box3d", "init"))
    plots = []
    for kind, prefix in (("number", "N_"), ("flux", "F")):
        fig, data = _change_parity(plt, df, true, pred, box, init, kind, prefix, split)
        plots.append(save_plot(fig, data, folder, f"change_parity_{kind}_{split}"))
    err_model = point_errors(pred, true).mean(1)
    err_box = point_errors(box, true).mean(1)
    lo, hi = _error_range(err_model, err_box)  # one range for both plots' error axes
    fig, data = _error_parity(plt, err_model, err_box, split, lo, hi)
    plots.append(save_plot(fig, data, folder, f"error_parity_{split}"))
    fig, data = _error_histogram(plt, err_model, err_box, split, lo, hi)
    plots.append(save_plot(fig, data, folder, f"error_histogram_{split}"))
    with open_uri(join_uri(out_dir, "metrics", f"evaluation_metrics_{split}.json"), "r") as fh:
        metrics = json.load(fh)
    page = write_report(folder, report_of(setup, split, metrics), plots)
    return VisualizeResult(folder, plots, page)
