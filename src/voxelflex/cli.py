"""`voxelflex <command>`: each subcommand parses its flags and calls one step's `run`."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from typing import Any

from pipekit.cli import (
    add_config_args,
    add_gate_command,
    add_pipeline_commands,
    add_runner_arg,
    print_local_run,
    require_local,
    run_main,
    start_logging,
)
from pipekit.errors import InputDataError, PipelineError
from pipekit.shards import parse_shard
from voxelflex import __version__

log = logging.getLogger("voxelflex")


def _prepare(args: argparse.Namespace):
    """Load the config and set up logging (console + the run's log file) and progress bars."""
    from pipekit.distributed import from_env
    from pipekit.uri import apply_storage_options
    from voxelflex.config import load_config
    from voxelflex.paths import RunPaths

    cfg = load_config(args.config, args.overrides)
    apply_storage_options(cfg.input.storage_options)
    main = from_env().is_main  # under torchrun, rank 0 alone keeps the run's log file
    log_file = RunPaths.from_config(cfg).log_file if main else None
    start_logging(cfg.logging.level, args, log_file, cfg.logging.show_progress and main)
    return cfg


def cmd_demo_data(args: argparse.Namespace) -> None:
    from pipekit.logging_setup import setup_logging
    from voxelflex.steps.demo_data import make_demo_dataset

    setup_logging("INFO")
    ds = make_demo_dataset(args.out, n_domains=args.domains, seed=args.seed)
    print(f"demo dataset: {ds.n_domains} domains, {ds.n_residues} residues in {ds.root}")
    print(f"config: {ds.config}")


def cmd_preprocess(args: argparse.Namespace) -> None:
    from voxelflex.steps import preprocess

    res = preprocess.run(_prepare(args))
    print(f"{res.n_samples} samples -> {res.master_samples}")


def cmd_train(args: argparse.Namespace) -> None:
    from pipekit.distributed import from_env
    from voxelflex.steps import train

    cfg = _prepare(args)
    if args.smoke:
        out = train.smoke_check(cfg)
        print(f"smoke check passed: loss {out['loss']:.4f} on {out['samples']} samples")
        return
    res = train.run(cfg, resume="auto" if args.auto_resume else args.resume)
    if from_env().is_main:  # under torchrun every rank returns; one says so
        print(f"best validation Pearson r {res.best_val_pearson:.4f} -> {res.best_model}")


def cmd_predict(args: argparse.Namespace) -> None:
    from voxelflex.steps import predict

    if args.structure:
        from voxelflex.steps import predict_structure

        done = predict_structure.run(
            _prepare(args), args.structure, args.temperature, model=args.model, out_dir=args.out
        )
        print(f"{done.n_residues} residues -> {done.predictions}")
        print("\n".join([*done.plots, *done.structures]))
        return
    if args.config is None:
        raise PipelineError("predict --domains/--split needs --config (the run's inputs)")
    from pipekit.distributed import from_env

    res = predict.run(
        _prepare(args),
        args.temperature,
        domains=args.domains,
        split=args.split,
        model=args.model,
        out=args.out,
    )
    if from_env().is_main:  # under torchrun rank 0 merges the ranks' parts and says so
        print(f"{res.n_predictions} predictions -> {res.predictions}")


def cmd_evaluate(args: argparse.Namespace) -> None:
    from voxelflex.steps import evaluate

    res = evaluate.run(
        _prepare(args), split=args.split, model=args.model, permutation=args.permutation_importance
    )
    print(evaluate.markdown_summary(res.report))
    print(f"metrics -> {res.metrics}")


def cmd_visualize(args: argparse.Namespace) -> None:
    from voxelflex.steps import visualize

    res = visualize.run(_prepare(args), split=args.split, model=args.model, domains=args.domains)
    print("\n".join(res.plots))


def cmd_voxelize(args: argparse.Namespace) -> None:
    from pipekit.logging_setup import setup_logging
    from pipekit.progress import set_progress
    from voxelflex.steps import voxelize

    setup_logging("WARNING" if args.quiet else "INFO")
    set_progress(not args.quiet)
    res = voxelize.run(args.structure, args.out)
    print(f"{res.n_residues} residues of {res.n_structures} structure(s) -> {res.out}")
    if res.n_skipped:
        print(f"{res.n_skipped} skipped (reasons in {res.skipped})")


def cmd_ingest_mdcath(args: argparse.Namespace) -> None:
    from pipekit.logging_setup import setup_logging
    from pipekit.progress import set_progress
    from voxelflex.steps import ingest_mdcath

    setup_logging("WARNING" if args.quiet else "INFO")
    set_progress(not args.quiet)
    res = ingest_mdcath.run(args.src, args.out, parse_shard(args.shard))
    if args.shard:
        print(f"shard {args.shard}: {res.n_domains} domains ingested, {res.n_failed} failed")
    else:
        print(
            f"{res.n_domains} domains ingested ({res.n_residues} residues, {res.n_rows} "
            f"residue-temperature rows), {res.n_failed} failed (see {res.failed}), "
            f"{res.n_skipped_residues} residues skipped -> {res.voxel_file}, {res.rmsf_csv}"
        )
    if res.n_domains == 0 and res.n_failed:
        raise InputDataError(f"no domain was ingested: all {res.n_failed} failed")


def cmd_mirror(args: argparse.Namespace) -> None:
    from pipekit.logging_setup import setup_logging
    from pipekit.progress import set_progress
    from voxelflex.steps import mirror

    setup_logging("WARNING" if args.quiet else "DEBUG" if args.verbose > 1 else "INFO")
    set_progress(not args.quiet)
    shard = parse_shard(args.shard)
    res = mirror.run(
        args.src, args.dst, args.format, args.chunk_rows, args.overwrite, shard, args.plan_only
    )
    if not res.complete:
        print(f"mirror {res.uri}: {res.chunks_written} of {res.n_chunks} chunks written now")
        return
    print(
        f"mirror {res.uri} ({res.format}): {res.n_rows} residues of {res.n_domains} domains in "
        f"{res.n_chunks} chunks ({res.chunks_written} written now), verified; "
        f"{res.bytes_stored / max(res.n_rows, 1):.0f} bytes/residue"
    )


def cmd_pipeline_run(args: argparse.Namespace) -> None:
    from pipekit.pipeline.submit import parse_params
    from pipekit.uri import is_local, join_uri, local_path, uri_exists
    from voxelflex.paths import RunPaths
    from voxelflex.pipeline_run import publish, run_local

    require_local(args, "voxelflex_pipeline")
    cfg = _prepare(args)
    root = args.pipeline_root or join_uri(RunPaths.from_config(cfg).run_dir, "kfp_local")
    if not is_local(root):
        raise PipelineError(f"--pipeline-root must be a local folder for kfp.local, not {root}")
    mirror_uri = (args.mirror_uri or "") if args.mirror or args.mirror_uri else None
    run = run_local(
        cfg,
        local_path(root),
        temperatures=args.temperature,
        split=args.split,
        mirror_uri=mirror_uri,
        params=parse_params(args.param),
        pipeline=args.pipeline,
        runner=args.runner,
    )
    print_local_run(run)
    if args.pipeline == "voxelflex_pipeline":
        run_dir = publish(cfg, run)
        print(f"outputs (what `voxelflex predict|evaluate|visualize --config` use): {run_dir}")
        report = join_uri(run_dir, "visualizations", "index.html")
        if uri_exists(report):
            print(f"report (open in a browser): {report}")


def read_metrics(uri: str) -> dict:
    """The headline numbers of an evaluation_metrics JSON (as the UI's Metrics show them)."""
    import json

    from pipekit.uri import open_uri
    from voxelflex.steps.evaluate import headline_metrics

    with open_uri(uri, "r") as fh:
        return headline_metrics(json.load(fh))


def _judge():
    from voxelflex.steps.gate import JUDGE

    return JUDGE


def _step_commands(sub: Any) -> None:
    """The pipeline's steps, each a command (predict apart)."""
    p = sub.add_parser("demo-data", help="write a small synthetic dataset and its config.yaml")
    p.add_argument("--out", required=True, help="folder to write into")
    p.add_argument("--domains", type=int, default=24, help="number of domains (>= 3)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_demo_data)

    p = sub.add_parser("preprocess", help="join voxels, RMSF CSV and splits into metadata")
    add_config_args(p)
    p.set_defaults(func=cmd_preprocess)

    p = sub.add_parser("train", help="train the model")
    add_config_args(p)
    p.add_argument("--resume", action="store_true", help="continue from latest_model.pt")
    p.add_argument(
        "--auto-resume",
        action="store_true",
        help="continue from latest_model.pt if there is one (jobs that restart), else start",
    )
    p.add_argument("--smoke", action="store_true", help="one batch forward/backward and exit")
    p.set_defaults(func=cmd_train)


def _predict_commands(sub: Any) -> None:
    """predict, evaluate and visualize: what runs on a trained model."""
    p = sub.add_parser("predict", help="per-residue RMSF at any temperature (K)")
    add_config_args(p, config_required=False)
    p.add_argument("--model", help="checkpoint (default: the run's best_model.pt)")
    p.add_argument(
        "--temperature",
        type=float,
        action="append",
        required=True,
        help="temperature in kelvin (repeatable), e.g. --temperature 335",
    )
    scope = p.add_mutually_exclusive_group(required=True)
    scope.add_argument("--domains", nargs="+", help="domain IDs (keys of the voxel file)")
    scope.add_argument("--split", choices=["train", "val", "test"], help="every domain of a split")
    scope.add_argument(
        "--structure", nargs="+", help="your own PDB/mmCIF file(s): voxelized here, then predicted"
    )
    p.add_argument(
        "--out",
        help="CSV to write (default: metrics/predictions_<scope>_<T>.csv); with --structure, "
        "the folder for the CSV, plots and B-factor structures (default: <run>/structures)",
    )
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("evaluate", help="metrics, baselines and a summary on a split")
    add_config_args(p)
    p.add_argument("--model", help="checkpoint (default: the run's best_model.pt)")
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    p.add_argument(
        "--permutation-importance",
        action="store_true",
        help="also measure how much temperature and each voxel channel matter",
    )
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("visualize", help="plots (PNG) and the data behind each (CSV)")
    add_config_args(p)
    p.add_argument("--model", help="checkpoint (default: the run's best_model.pt)")
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    p.add_argument("--domains", nargs="+", help="domains for RMSF profiles (default: first two)")
    p.set_defaults(func=cmd_visualize)


def _data_commands(sub: Any) -> None:
    """Structures, mdCATH and the packed mirror: making and moving the voxels."""
    p = sub.add_parser("voxelize", help="PDB/mmCIF structures -> voxel HDF5 (aposteriori frames)")
    p.add_argument("--structure", nargs="+", required=True, help="PDB/mmCIF files (.gz too)")
    p.add_argument("--out", required=True, help="voxel HDF5 to write")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_voxelize)

    p = sub.add_parser("ingest-mdcath", help="mdCATH per-domain HDF5 files -> voxels + RMSF CSV")
    p.add_argument("--src", required=True, help="folder/prefix with mdcath_dataset_<domain>.h5")
    p.add_argument("--out", required=True, help="folder for voxels.hdf5 and aggregated_rmsf.csv")
    p.add_argument(
        "--shard",
        metavar="K/N",
        help="ingest only the K-th of N runs of domains, beside other writers; a plain run "
        "then merges them and writes the CSV",
    )
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_ingest_mdcath)

    p = sub.add_parser("mirror", help="voxel HDF5 -> packed store (zarr/HDF5, local or s3)")
    p.add_argument("--src", required=True, help="per-residue voxel HDF5 (any fsspec URI)")
    p.add_argument("--dst", required=True, help="store folder/prefix, e.g. s3://bucket/voxels")
    p.add_argument("--format", default="zarr", choices=["zarr", "hdf5"])
    p.add_argument("--chunk-rows", type=int, default=1024, help="residues per storage chunk")
    p.add_argument("--overwrite", action="store_true", help="rebuild instead of resuming")
    p.add_argument("--plan-only", action="store_true", help="list the source, create the store")
    p.add_argument(
        "--shard", metavar="K/N", help="write only the K-th of N runs of chunks (after --plan-only)"
    )
    p.add_argument("-v", "--verbose", action="count", default=0)
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_mirror)


def _pipeline_commands(sub: Any) -> None:
    p = sub.add_parser("pipeline", help="the Kubeflow pipeline: compile, or run it locally")
    psub = p.add_subparsers(dest="pipeline_command", required=True)
    add_pipeline_commands(
        psub,
        "voxelflex",
        "voxelflex_pipeline",
        "voxelflex_evaluation_pipeline",
        read_metrics=read_metrics,
        schedule_name="voxelflex-scheduled-evaluation",
    )
    q = psub.add_parser("run", help="run the whole pipeline (kfp.local with --local)")
    add_config_args(q, config_required=False)
    q.add_argument(
        "--pipeline",
        default="voxelflex_pipeline",
        help="voxelflex_pipeline (default; inputs from --config), "
        "voxelflex_evaluation_pipeline or voxelflex_structure_pipeline (inputs as --param)",
    )
    q.add_argument("--local", action="store_true", help="run here through kfp.local")
    q.add_argument("--pipeline-root", help="folder for artifacts (default: <run dir>/kfp_local)")
    add_runner_arg(q)
    q.add_argument(
        "--temperature",
        type=float,
        action="append",
        help="temperature (K) to predict at (repeatable; default: the pipeline's)",
    )
    q.add_argument("--split", default="test", choices=["train", "val", "test"])
    q.add_argument(
        "--mirror", action="store_true", help="mirror the voxels into a packed store first"
    )
    q.add_argument("--mirror-uri", help="where the packed store goes (implies --mirror)")
    q.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set a pipeline parameter directly, e.g. accepted_metrics_uri=accepted.json",
    )
    q.set_defaults(func=cmd_pipeline_run)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="voxelflex", description=__doc__)
    parser.add_argument("--version", action="version", version=f"voxelflex {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _step_commands(sub)
    _predict_commands(sub)
    _data_commands(sub)
    _pipeline_commands(sub)
    add_gate_command(sub, "per-domain r", _judge)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run_main("voxelflex", build_parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
