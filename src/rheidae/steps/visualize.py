"""visualize: parity plots (predicted vs true number densities and fluxes, model and Box3D)
and error histograms, each PNG beside the `*_data.csv` it was drawn from."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipekit.errors import InputDataError
from pipekit.plots import save_plot, write_index
from pipekit.uri import join_uri, open_uri, uri_exists
from rheidae.config import TrainSetup
from rheidae.moments import names


@dataclass(frozen=True)
class VisualizeResult:
    folder: str
    plots: list[str]


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
    folder = join_uri(out_dir, "visualizations")
    cols = names()
    total = df[[f"true_{c}" for c in cols if c.startswith("N_")]].sum(1).to_numpy()
    plots = []
    for kind, prefix in (("number", "N_"), ("flux", "F")):
        sel = [c for c in cols if c.startswith(prefix)]
        true = (df[[f"true_{c}" for c in sel]].to_numpy() / total[:, None]).ravel()
        pred = (df[[f"pred_{c}" for c in sel]].to_numpy() / total[:, None]).ravel()
        box = (df[[f"box3d_{c}" for c in sel]].to_numpy() / total[:, None]).ravel()
        fig, ax = plt.subplots(figsize=(4.8, 4.8))
        ax.scatter(true, box, s=2, alpha=0.3, label="Box3D")
        ax.scatter(true, pred, s=2, alpha=0.3, label="model")
        lim = [min(true.min(), pred.min()), max(true.max(), pred.max())]
        ax.plot(lim, lim, "k:", lw=0.8)
        ax.set(xlabel="true / total N", ylabel="predicted / total N", title=f"{kind} ({split})")
        ax.legend(markerscale=4)
        data = pd.DataFrame({"true": true, "box3d": box, "model": pred})
        plots.append(save_plot(fig, data, folder, f"parity_{kind}_{split}"))
    err_model = (
        np.abs(
            df[[f"pred_{c}" for c in cols]].to_numpy() - df[[f"true_{c}" for c in cols]].to_numpy()
        ).sum(1)
        / total
    )
    err_box = (
        np.abs(
            df[[f"box3d_{c}" for c in cols]].to_numpy() - df[[f"true_{c}" for c in cols]].to_numpy()
        ).sum(1)
        / total
    )
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    bins = np.logspace(
        np.log10(max(min(err_model.min(), err_box.min()), 1e-8)),
        np.log10(max(err_box.max(), err_model.max())),
        40,
    )
    ax.hist(err_box, bins=bins, alpha=0.6, label="Box3D")
    ax.hist(err_model, bins=bins, alpha=0.6, label="model")
    ax.set(
        xscale="log",
        xlabel="sum |error| / total N per point",
        ylabel="points",
        title=f"errors ({split})",
    )
    ax.legend()
    plots.append(
        save_plot(
            fig,
            pd.DataFrame({"box3d": err_box, "model": err_model}),
            folder,
            f"error_histogram_{split}",
        )
    )
    write_index(folder, f"Rheidae: {split}", plots)
    return VisualizeResult(folder, plots)
