"""Plots users look at after training; each PNG has the CSV of the data behind it."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")  # pods and CI have no display
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from pipekit.errors import InputDataError
from pipekit.plots import epoch_ticks
from pipekit.report import Report, Table, interval, write_report
from pipekit.stats import bootstrap_ci
from pipekit.uri import join_uri, open_uri, uri_exists
from voxelflex.config import Config, save_resolved_config
from voxelflex.data.sources import open_voxel_source, synthetic_note
from voxelflex.paths import RunPaths
from voxelflex.steps.predict import load_for_inference, predict_table, residues_for
from voxelflex.training.metrics import domain_pearsons, pearson

log = logging.getLogger(__name__)

RESPONSE_TEMPS = np.arange(280.0, 481.0, 10.0)


@dataclass(frozen=True)
class VisualizeResult:
    plots: list[str]
    gallery: str  # the run's report: one self-contained page (the Kubeflow UI renders it)


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


def report_of(cfg: Config, metrics: dict, per_domain: pd.DataFrame) -> Report:
    """The run's report: per temperature, the model's mean per-domain r (with its bootstrap
    interval over the domains, `per_domain`'s r, which are few on a demo), pooled r and RMSE;
    the baselines in the same measures."""
    domains = {t: m.get("n_domains") for t, m in metrics["model"]["per_temperature"].items()}

    def rows(name: str, label: str) -> list[tuple[object, ...]]:
        # the training mean at T is one number per temperature: r within T is undefined
        constant = name == "baseline_temperature_mean"
        out: list[tuple[object, ...]] = []
        for temp, m in metrics[name]["per_temperature"].items():
            r_dom, r = m["mean_per_domain_pearson"], m["pearson"]
            if constant:
                r_dom = r = "n/a (constant at T)"
            elif name == "model":
                rs = per_domain.loc[per_domain["temperature"] == float(temp), "r"].to_numpy(float)
                rs = rs[np.isfinite(rs)]
                if len(rs) > 1:
                    r_dom = interval(r_dom, *bootstrap_ci(np.mean, rs))
            out.append((label, f"{temp} K", domains.get(temp), r_dom, r, m["rmse"]))
        pooled = metrics[name]["pooled"]
        out.append(
            (label, "all (pooled)", metrics["n_domains"], None, pooled["pearson"], pooled["rmse"])
        )
        return out

    header = ("predictor", "temperature", "domains", "mean per-domain r", "pooled r", "RMSE (nm)")
    note = synthetic_note(cfg.input.voxel_file or "")
    return Report(
        title=f"VoxelFlex: {metrics['split']} split",
        headline=Table(header, rows("model", "model")),
        baselines=Table(
            header,
            rows("baseline_temperature_mean", "training mean at T")
            + rows("baseline_resname_temperature_mean", "training mean per residue type at T"),
        ),
        provenance={
            "voxel file": cfg.input.voxel_file or "n/a",
            "model": str(metrics["model_uri"]),
            "samples": f"{metrics['n_samples']} residue-temperature rows, "
            f"{metrics['n_domains']} domains",
            "interval": "mean per-domain r: percentile bootstrap over the domains, 1000 resamples",
        },
        caveat=None
        if note is None
        else f"Synthetic data. {note}. These figures show that the pipeline works, not how well "
        "the model predicts real proteins.",
        notes=(
            "Per-domain r is the mean over domains of Pearson r within each domain; pooled r "
            "mixes domains (and, overall, temperatures) and reads higher.",
        ),
    )


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
    for axis in (a, b):
        epoch_ticks(axis, hist["epoch"])
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
    # one set of bins for every temperature, or the curves' heights cannot be compared
    bins = list(np.histogram_bin_edges(err.to_numpy(), bins=40))
    colors = _temperature_colors(preds["temperature"].nunique())
    for color, (temp, g) in zip(
        colors, preds.assign(error_nm=err).groupby("temperature"), strict=True
    ):
        ax.hist(g["error_nm"], bins=bins, histtype="step", lw=1.4, color=color, label=f"{temp:g} K")
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


def domain_rs(preds: pd.DataFrame) -> pd.DataFrame:
    """Pearson r within each domain at each temperature (what the mean per-domain r averages)."""
    parts = []
    for temp, g in preds.groupby("temperature", sort=True):
        rs = domain_pearsons(g, "predicted_rmsf").sort_index()
        parts.append(pd.DataFrame({"temperature": float(temp), "domain_id": rs.index, "r": rs}))
    return pd.concat(parts, ignore_index=True)


def per_temperature_r(w: _Writer, metrics: dict, per_domain: pd.DataFrame) -> None:
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
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.6))
    # each domain's r as a small point (the spread the mean hides), on axes fitted to the
    # values: r of 0.80 and 0.85 must look apart; legends below the axes, off the points
    n_dom = per_domain.groupby("temperature")["r"].count()
    ax.plot(
        per_domain["temperature"], per_domain["r"], ".", color="0.6", ms=5, label="one domain's r"
    )
    ax.plot(temps, model["mean_per_domain_r"], "o-", label="mean per-domain r")
    ax.plot(temps, model["pooled_r"], "s--", label="pooled r")
    _fit_r_axis(
        ax,
        np.r_[
            per_domain["r"].to_numpy(float),
            model[["mean_per_domain_r", "pooled_r"]].to_numpy(float).ravel(),
        ],
    )
    ax.set(title="Model: Pearson r per temperature", xlabel="temperature (K)", ylabel="r")
    bx.plot(temps, model["mean_per_domain_r"], "o-", label="model")
    bx.plot(temps, base["mean_per_domain_r"], "kD:", label="resname×T baseline")
    _fit_r_axis(bx, data[["mean_per_domain_r"]].to_numpy(dtype=float))
    bx.set(title="Mean per-domain r: model vs baseline", xlabel="temperature (K)", ylabel="r")
    for a in (ax, bx):
        a.set_xticks(temps, [f"{t:g}\n({n_dom.get(t, 0)} dom.)" for t in temps])
        a.grid(axis="y", alpha=0.3)
        a.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=3, frameon=False)
    data = pd.concat([data, per_domain.assign(predictor="model_one_domain")], ignore_index=True)
    w.save(fig, "per_temperature_r", data)


def _temperature_colors(n: int) -> np.ndarray:
    """Colours for `n` temperatures, cold to hot, every one dark enough to read on white
    (coolwarm's middle is near white)."""
    return plt.cm.plasma(np.linspace(0.0, 0.85, max(n, 1)))


def rmsf_profiles(w: _Writer, preds: pd.DataFrame, domains: list[str]) -> None:
    """Per domain: one panel per temperature (true and predicted RMSF along the chain, on one
    shared y axis), so no line hides another."""
    for domain in domains:
        d = preds[preds["domain_id"] == domain]
        if d.empty:
            raise InputDataError(f"domain {domain!r} has no predictions to plot")
        temps = d.groupby("temperature")
        fig, axes = plt.subplots(
            len(temps),
            1,
            figsize=(10, 1.9 * len(temps) + 0.8),
            sharex=True,
            sharey=True,
            squeeze=False,
        )
        for ax, (temp, g) in zip(axes[:, 0], temps, strict=True):
            g = g.sort_values("resid")
            r = pearson(g["target_rmsf"].to_numpy(), g["predicted_rmsf"].to_numpy())
            ax.plot(g["resid"], g["target_rmsf"], "-", color="k", lw=1.4, label="true")
            ax.plot(
                g["resid"], g["predicted_rmsf"], "-", color="tab:red", lw=1.2, label="predicted"
            )
            ax.set_ylabel("RMSF (nm)")
            ax.set_title(f"{temp:g} K (r = {r:.2f})", fontsize=9, loc="left")
        axes[0, 0].legend(fontsize=8, loc="upper right", ncol=2)
        axes[-1, 0].set_xlabel("residue number")
        fig.suptitle(f"RMSF profile: {domain}")
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
    metrics = _read_json(metrics_uri)
    per_domain = domain_rs(preds)  # the points of one plot and the intervals of the report
    per_temperature_r(w, metrics, per_domain)
    chosen = domains or list(preds["domain_id"].drop_duplicates()[:2])
    rmsf_profiles(w, preds, chosen)
    temperature_response(w, cfg, model, preds, chosen[0])
    gallery = write_report(paths.visualizations_dir, report_of(cfg, metrics, per_domain), w.plots)
    log.info("visualize: %d plots in %s (all on one page: %s)", len(w.plots), w.out_dir, gallery)
    return VisualizeResult(w.plots, gallery)
