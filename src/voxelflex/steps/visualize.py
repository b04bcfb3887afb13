"""Plots users look at after training; each PNG has the CSV of the data behind it."""

from __future__ import annotations

import base64
import html
import json
import logging
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")  # pods and CI have no display
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from pipekit.errors import InputDataError
from pipekit.uri import join_uri, open_uri, uri_exists
from voxelflex.config import Config, save_resolved_config
from voxelflex.data.sources import open_voxel_source, synthetic_note
from voxelflex.paths import RunPaths
from voxelflex.steps.predict import load_for_inference, predict_table, residues_for

log = logging.getLogger(__name__)

RESPONSE_TEMPS = np.arange(280.0, 481.0, 10.0)


@dataclass(frozen=True)
class VisualizeResult:
    plots: list[str]
    gallery: str  # one self-contained HTML page with every plot (the Kubeflow UI renders it)


class _Writer:
    def __init__(self, out_dir: str) -> None:
        self.out_dir = out_dir
        self.plots: list[str] = []

    def save(self, fig: plt.Figure, name: str, data: pd.DataFrame) -> None:
        png = join_uri(self.out_dir, f"{name}.png")
        fig.tight_layout()
        with open_uri(png, "wb") as fh:
            fig.savefig(fh, dpi=110)
        plt.close(fig)
        with open_uri(join_uri(self.out_dir, f"{name}_data.csv"), "w") as fh:
            data.to_csv(fh, index=False, float_format="%.6g")
        self.plots.append(png)


def html_gallery(plots: list[str], title: str, note: str | None = None) -> str:
    """One HTML page with each PNG inlined, so it renders wherever it is copied to; `note`
    (e.g. that the data are synthetic) stands under the title."""
    parts = [f"<html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head>"]
    parts.append(f"<body style='font-family:sans-serif'><h1>{html.escape(title)}</h1>")
    if note:
        parts.append(
            "<p style='background:#fff3cd;padding:0.6em;border:1px solid #e0c060'>"
            f"<b>Synthetic data.</b> {html.escape(note)}. These figures show that the pipeline "
            "works, not how well the model predicts real proteins.</p>"
        )
    for uri in plots:
        with open_uri(uri, "rb") as fh:
            data = base64.b64encode(fh.read()).decode("ascii")
        name = html.escape(uri.rsplit("/", 1)[-1].removesuffix(".png").replace("_", " "))
        parts.append(f"<h2>{name}</h2><img alt='{name}' src='data:image/png;base64,{data}'/>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _read_json(uri: str):
    with open_uri(uri, "r") as fh:
        return json.load(fh)


def training_curves(w: _Writer, history_uri: str) -> None:
    hist = pd.DataFrame(_read_json(history_uri))
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.plot(hist["epoch"], hist["train_loss"], "o-", label="train")
    a.plot(hist["epoch"], hist["val_loss"], "s-", label="validation")
    a.set(title="Loss (MSE)", xlabel="epoch", ylabel="MSE (nm²)", yscale="log")
    a.legend()
    b.plot(hist["epoch"], hist["val_pearson"], "s-", color="tab:green", label="validation r")
    b.set(title="Validation Pearson r (pooled)", xlabel="epoch", ylabel="Pearson r")
    b.legend()
    w.save(fig, "training_curves", hist[["epoch", "train_loss", "val_loss", "val_pearson"]])


def prediction_plots(w: _Writer, preds: pd.DataFrame, split: str) -> None:
    fig, ax = plt.subplots(figsize=(5.5, 5))
    hb = ax.hexbin(preds["target_rmsf"], preds["predicted_rmsf"], gridsize=40, mincnt=1, bins="log")
    lim = [0, float(max(preds["target_rmsf"].max(), preds["predicted_rmsf"].max())) * 1.05]
    ax.plot(lim, lim, "k--", lw=1, label="y = x")
    ax.set(
        title=f"Predicted vs true RMSF ({split})",
        xlabel="true RMSF (nm)",
        ylabel="predicted RMSF (nm)",
        xlim=lim,
        ylim=lim,
    )
    fig.colorbar(hb, ax=ax, label="samples (log)")
    ax.legend(loc="upper left")
    w.save(
        fig,
        "pred_vs_true_density",
        preds[["domain_id", "resid", "temperature", "target_rmsf", "predicted_rmsf"]],
    )
    err = (preds["predicted_rmsf"] - preds["target_rmsf"]).rename("error_nm")
    fig, ax = plt.subplots(figsize=(6, 4))
    for temp, g in preds.assign(error_nm=err).groupby("temperature"):
        ax.hist(g["error_nm"], bins=40, histtype="step", label=f"{temp:g} K")
    ax.axvline(0, color="k", lw=1)
    ax.set(
        title=f"Prediction error ({split})", xlabel="predicted − true RMSF (nm)", ylabel="samples"
    )
    ax.legend(title="temperature")
    w.save(fig, "error_distribution", preds.assign(error_nm=err)[["temperature", "error_nm"]])


def _fit_r_axis(ax: plt.Axes, values: np.ndarray) -> None:
    finite = values[np.isfinite(values)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    pad = max(0.01, 0.2 * (hi - lo))
    ax.set_ylim(lo - pad, hi + pad)


def per_temperature_r(w: _Writer, metrics: dict) -> None:
    rows = []
    for name in ("model", "baseline_resname_temperature_mean"):
        for temp, m in metrics[name]["per_temperature"].items():
            rows.append(
                {
                    "predictor": name,
                    "temperature": float(temp),
                    "mean_per_domain_r": m["mean_per_domain_pearson"],
                    "pooled_r": m["pearson"],
                }
            )
    data = pd.DataFrame(rows)
    model = data[data.predictor == "model"]
    base = data[data.predictor != "model"]
    temps = model["temperature"].to_numpy()
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4))
    # points and lines on axes fitted to the values: r of 0.80 and 0.85 must look apart, so
    # the model gets a panel of its own and the baseline comparison another
    ax.plot(temps, model["mean_per_domain_r"], "o-", label="mean per-domain r")
    ax.plot(temps, model["pooled_r"], "s--", label="pooled r")
    _fit_r_axis(ax, model[["mean_per_domain_r", "pooled_r"]].to_numpy(dtype=float))
    ax.set(title="Model: Pearson r per temperature", xlabel="temperature (K)", ylabel="r")
    bx.plot(temps, model["mean_per_domain_r"], "o-", label="model")
    bx.plot(temps, base["mean_per_domain_r"], "kD:", label="resname×T baseline")
    _fit_r_axis(bx, data[["mean_per_domain_r"]].to_numpy(dtype=float))
    bx.set(title="Mean per-domain r: model vs baseline", xlabel="temperature (K)", ylabel="r")
    for a in (ax, bx):
        a.set_xticks(temps, [f"{t:g}" for t in temps])
        a.grid(axis="y", alpha=0.3)
        a.legend(fontsize=8)
    w.save(fig, "per_temperature_r", data)


def rmsf_profiles(w: _Writer, preds: pd.DataFrame, domains: list[str]) -> None:
    for domain in domains:
        d = preds[preds["domain_id"] == domain]
        if d.empty:
            raise InputDataError(f"domain {domain!r} has no predictions to plot")
        fig, ax = plt.subplots(figsize=(10, 4))
        colors = plt.cm.coolwarm(np.linspace(0, 1, d["temperature"].nunique()))
        for color, (temp, g) in zip(colors, d.groupby("temperature"), strict=True):
            g = g.sort_values("resid")
            ax.plot(
                g["resid"], g["target_rmsf"], "-", color=color, lw=1.5, label=f"{temp:g} K true"
            )
            ax.plot(
                g["resid"],
                g["predicted_rmsf"],
                "--",
                color=color,
                lw=1.2,
                label=f"{temp:g} K predicted",
            )
        ax.set(title=f"RMSF profile: {domain}", xlabel="residue number", ylabel="RMSF (nm)")
        ax.legend(ncol=2, fontsize=7)
        w.save(fig, f"rmsf_profile_{domain}", d)


def temperature_response(
    w: _Writer, cfg: Config, model: str | None, preds: pd.DataFrame, domain: str, n: int = 5
) -> None:
    d = preds[preds["domain_id"] == domain]
    ref = d.loc[d["temperature"] == d["temperature"].min()].sort_values("target_rmsf")
    picks = ref.iloc[np.linspace(0, len(ref) - 1, min(n, len(ref))).astype(int)]
    loaded, device = load_for_inference(cfg, model)
    source = open_voxel_source(cfg.input.voxel_file)
    residues, _ = residues_for(cfg, source, [domain], None)
    residues = residues[residues["resid"].isin(picks["resid"])]
    table = residues.merge(pd.DataFrame({"temperature": RESPONSE_TEMPS}), how="cross")
    table["predicted_rmsf"] = predict_table(loaded, device, source, table, cfg, desc="response")
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for resid, g in table.groupby("resid"):
        ax.plot(
            g["temperature"],
            g["predicted_rmsf"],
            "-",
            label=f"{domain} {g['resname'].iloc[0]} {resid}",
        )
    lo, hi = loaded.scaler.temp_min, loaded.scaler.temp_max
    ax.axvspan(lo, hi, color="0.9", label="training range")
    ax.set(
        title="Predicted temperature response",
        xlabel="temperature (K)",
        ylabel="predicted RMSF (nm)",
    )
    ax.legend(fontsize=7)
    w.save(
        fig,
        "temperature_response",
        table[["domain_id", "resid", "resname", "temperature", "predicted_rmsf"]],
    )


def run(
    cfg: Config, split: str = "test", model: str | None = None, domains: list[str] | None = None
) -> VisualizeResult:
    paths = RunPaths.from_config(cfg)
    save_resolved_config(cfg, paths.resolved_config("visualize"))
    w = _Writer(paths.visualizations_dir)
    if uri_exists(paths.training_history):
        training_curves(w, paths.training_history)
    else:
        log.warning("no %s: skipping training curves", paths.training_history)
    preds_uri = join_uri(paths.metrics_dir, f"predictions_{split}.csv")
    metrics_uri = paths.evaluation_metrics(split)
    if not uri_exists(preds_uri) or not uri_exists(metrics_uri):
        raise InputDataError(
            f"{preds_uri} or {metrics_uri} missing: run `voxelflex evaluate` first"
        )
    with open_uri(preds_uri, "r") as fh:
        preds = pd.read_csv(fh, dtype={"domain_id": str})
    prediction_plots(w, preds, split)
    per_temperature_r(w, _read_json(metrics_uri))
    chosen = domains or list(preds["domain_id"].drop_duplicates()[:2])
    rmsf_profiles(w, preds, chosen)
    temperature_response(w, cfg, model, preds, chosen[0])
    gallery = join_uri(paths.visualizations_dir, "index.html")
    with open_uri(gallery, "w") as fh:
        title = f"VoxelFlex {cfg.output.run_name}: {split} split"
        fh.write(html_gallery(w.plots, title, synthetic_note(cfg.input.voxel_file or "")))
    log.info("visualize: %d plots in %s (all on one page: %s)", len(w.plots), w.out_dir, gallery)
    return VisualizeResult(w.plots, gallery)
