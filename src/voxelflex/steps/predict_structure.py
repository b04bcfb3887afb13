"""Predict flexibility for a user's own structure: PDB/mmCIF in; per-residue RMSF at each
temperature out, as a CSV, a profile plot per chain, and a copy of the structure per
temperature with the predicted RMSF in the B-factor column (for PyMOL/ChimeraX).

The B-factor column holds RMSF in angstrom (10x the nm of the CSV), so `spectrum b` in PyMOL
or `color bfactor` in ChimeraX colours by predicted flexibility directly.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from pipekit.errors import InputDataError
from pipekit.report import Report, Table, render
from pipekit.uri import join_uri, open_uri
from voxelflex.config import Config
from voxelflex.data.structure import (
    StructureVoxelSource,
    read_structure,
    structure_residues,
)
from voxelflex.data.voxels import HDF5VoxelSource, VoxelSource
from voxelflex.paths import RunPaths
from voxelflex.steps.predict import (
    check_temperatures,
    load_for_inference,
    predict_table,
    warn_outside_range,
)
from voxelflex.steps.voxelize import VOXEL_FILE

log = logging.getLogger(__name__)

COLUMNS = ["domain_id", "chain_id", "resid", "resid_str", "resname", "temperature"]


@dataclass(frozen=True)
class StructurePredictResult:
    predictions: str
    plots: list[str]
    structures: list[str]  # B-factor = predicted RMSF (A), one per structure and temperature
    n_residues: int


def write_gallery(result: StructurePredictResult, uri: str) -> None:
    """The report of a structure prediction (per chain: residues and mean predicted RMSF at
    each temperature; the profile plots inlined) on one page the Kubeflow UI renders."""
    with open_uri(result.predictions, "r") as fh:
        table = pd.read_csv(fh, dtype={"chain_id": str, "resid_str": str})
    summary = (
        table.groupby(["domain_id", "chain_id", "temperature"], sort=True)["predicted_rmsf"]
        .agg(["size", "mean"])
        .reset_index()
    )
    headline = Table(
        ("structure", "chain", "temperature (K)", "residues", "mean predicted RMSF (nm)"),
        [tuple(r) for r in summary.itertuples(index=False)],
    )
    report = Report(
        title="VoxelFlex: predicted flexibility",
        headline=headline,
        baselines=None,
        provenance={
            "predictions": result.predictions,
            "structures with RMSF as B-factor": str(len(result.structures)),
        },
    )
    with open_uri(uri, "w") as fh:
        fh.write(render(report, result.plots))


def _plot_chain(table: pd.DataFrame, name: str, chain: str, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(9, 3.2))
    for temp, g in table.groupby("temperature"):
        ax.plot(np.arange(len(g)), g["predicted_rmsf"], label=f"{temp:g} K", lw=1.3)
    first = table.loc[table["temperature"] == table["temperature"].iloc[0]]
    ticks = np.linspace(0, len(first) - 1, min(len(first), 10)).astype(int)
    ax.set_xticks(ticks, first["resid_str"].iloc[ticks])
    ax.set(xlabel="residue", ylabel="predicted RMSF (nm)", title=f"{name} chain {chain}")
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _write_bfactors(path: str, rmsf_nm: dict[tuple[str, str], float], out: Path) -> None:
    """The whole first model, B-factor = predicted RMSF in A (0 where not predicted)."""
    import biotite.structure.io.pdb as pdb
    import biotite.structure.io.pdbx as pdbx

    atoms = read_structure(path)
    keys = zip(atoms.chain_id, atoms.res_id, atoms.ins_code, strict=True)
    b = [10.0 * rmsf_nm.get((str(c), f"{n}{str(i).strip()}"), 0.0) for c, n, i in keys]
    atoms.set_annotation("b_factor", np.round(np.asarray(b, dtype=float), 2))
    atoms.chain_id = atoms.file_chain_id  # written back as the file had it (maybe blank)
    for extra in ("file_chain_id", "parent_name"):
        atoms.del_annotation(extra)
    if out.suffix == ".cif":
        cif = pdbx.CIFFile()
        pdbx.set_structure(cif, atoms)
        cif.write(str(out))
    else:
        f = pdb.PDBFile()
        f.set_structure(atoms)
        f.write(str(out))


def run(
    cfg: Config,
    structures: list[str],
    temperatures: list[float],
    model: str | None = None,
    out_dir: str | None = None,
    voxels: str | None = None,
) -> StructurePredictResult:
    """`voxels`: the folder where `voxelize` wrote frames of the same structures (the
    pipeline's first step); without it the structures are voxelized here, in memory."""
    check_temperatures(temperatures)
    out = Path(out_dir or Path(RunPaths.from_config(cfg).run_dir) / "structures")
    out.mkdir(parents=True, exist_ok=True)
    residues = [structure_residues(s) for s in structures]
    empty = [r.name for r in residues if not len(r)]
    if empty:
        raise InputDataError(f"no residue with a complete backbone in {', '.join(empty)}")
    loaded, device = load_for_inference(cfg, model)
    warn_outside_range(loaded.scaler, temperatures)
    if voxels:
        source: VoxelSource = HDF5VoxelSource(join_uri(voxels, VOXEL_FILE))
    else:
        source = StructureVoxelSource(residues)
    table = pd.concat(
        [
            pd.DataFrame(
                {
                    "domain_id": r.name,
                    "chain_id": r.chain,
                    "resid": r.resid,
                    "resid_str": r.resid_str,
                    "resname": r.resname,
                }
            )
            for r in residues
        ],
        ignore_index=True,
    ).merge(pd.DataFrame({"temperature": [float(t) for t in temperatures]}), how="cross")
    table["predicted_rmsf"] = predict_table(loaded, device, source, table, cfg)
    csv = out / "predictions_structures.csv"
    table[[*COLUMNS, "predicted_rmsf"]].to_csv(csv, index=False, float_format="%.6g")
    plots, written = [], []
    for path, res in zip(structures, residues, strict=True):
        mine = table.loc[table["domain_id"] == res.name]
        for chain, g in mine.groupby("chain_id", sort=False):
            png = out / f"{res.name}_{chain}_rmsf.png"
            _plot_chain(g, res.name, str(chain), png)
            plots.append(str(png))
        suffix = ".cif" if ".cif" in Path(path).name else ".pdb"
        for temp, g in mine.groupby("temperature"):
            keys = zip(g["chain_id"], g["resid_str"], strict=True)
            rmsf = dict(zip(keys, g["predicted_rmsf"], strict=True))
            target = out / f"{res.name}_rmsf_{temp:g}K{suffix}"
            _write_bfactors(path, rmsf, target)
            written.append(str(target))
    n_res = len(table) // len(temperatures)
    log.info("predicted %d residues x %d temperatures -> %s", n_res, len(temperatures), out)
    return StructurePredictResult(str(csv), plots, written, n_res)
