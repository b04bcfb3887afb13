"""`voxelflex <command>`: each subcommand parses its flags and calls one step's `run`."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from voxelflex import __version__
from voxelflex.errors import InputDataError, VoxelFlexError

log = logging.getLogger("voxelflex")


def _common(p: argparse.ArgumentParser, config_required: bool = True) -> None:
    p.add_argument(
        "--config", required=config_required, help="YAML config merged over the defaults"
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set training.batch_size=64 (repeatable)",
    )
    p.add_argument("-v", "--verbose", action="count", default=0, help="-v: INFO, -vv: DEBUG")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars, warnings only")


def _prepare(args: argparse.Namespace):
    """Load the config and set up logging (console + the run's log file) and progress bars."""
    from voxelflex.config import load_config
    from voxelflex.data.uri import apply_storage_options
    from voxelflex.logging_setup import setup_logging
    from voxelflex.paths import RunPaths
    from voxelflex.progress import set_progress
    from voxelflex.training.distributed import from_env

    cfg = load_config(args.config, args.overrides)
    apply_storage_options(cfg.input.storage_options)
    level = cfg.logging.level
    if args.quiet:
        level = "WARNING"
    elif args.verbose:
        level = "DEBUG" if args.verbose > 1 else "INFO"
    main = from_env().is_main  # under torchrun, rank 0 alone keeps the run's log file
    setup_logging(level, RunPaths.from_config(cfg).log_file if main else None)
    set_progress(cfg.logging.show_progress and not args.quiet and main)
    return cfg


def cmd_demo_data(args: argparse.Namespace) -> None:
    from voxelflex.data.demo import make_demo_dataset
    from voxelflex.logging_setup import setup_logging

    setup_logging("INFO")
    ds = make_demo_dataset(args.out, n_domains=args.domains, seed=args.seed)
    print(f"demo dataset: {ds.n_domains} domains, {ds.n_residues} residues in {ds.root}")
    print(f"config: {ds.config}")


def cmd_preprocess(args: argparse.Namespace) -> None:
    from voxelflex.steps import preprocess

    res = preprocess.run(_prepare(args))
    print(f"{res.n_samples} samples -> {res.master_samples}")


def cmd_train(args: argparse.Namespace) -> None:
    from voxelflex.steps import train
    from voxelflex.training.distributed import from_env

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

        res = predict_structure.run(
            _prepare(args), args.structure, args.temperature, model=args.model, out_dir=args.out
        )
        print(f"{res.n_residues} residues -> {res.predictions}")
        print("\n".join([*res.plots, *res.structures]))
        return
    if args.config is None:
        raise VoxelFlexError("predict --domains/--split needs --config (the run's inputs)")
    from voxelflex.training.distributed import from_env

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
    from voxelflex.logging_setup import setup_logging
    from voxelflex.progress import set_progress
    from voxelflex.steps import voxelize

    setup_logging("WARNING" if args.quiet else "INFO")
    set_progress(not args.quiet)
    res = voxelize.run(args.structure, args.out)
    print(f"{res.n_residues} residues of {res.n_structures} structure(s) -> {res.out}")
    if res.n_skipped:
        print(f"{res.n_skipped} skipped (reasons in {res.skipped})")


def _shard(value: str | None) -> tuple[int, int] | None:
    """`--shard K/N` -> (K, N)."""
    if not value:
        return None
    k, sep, n = value.partition("/")
    if not sep or not k.isdigit() or not n.isdigit():
        raise VoxelFlexError(f"--shard must look like 0/4, not {value!r}")
    return int(k), int(n)


def cmd_ingest_mdcath(args: argparse.Namespace) -> None:
    from voxelflex.logging_setup import setup_logging
    from voxelflex.progress import set_progress
    from voxelflex.steps import ingest_mdcath

    setup_logging("WARNING" if args.quiet else "INFO")
    set_progress(not args.quiet)
    res = ingest_mdcath.run(args.src, args.out, _shard(args.shard))
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
    from voxelflex.logging_setup import setup_logging
    from voxelflex.progress import set_progress
    from voxelflex.steps import mirror

    setup_logging("WARNING" if args.quiet else "DEBUG" if args.verbose > 1 else "INFO")
    set_progress(not args.quiet)
    shard = _shard(args.shard)
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


def cmd_pipeline_compile(args: argparse.Namespace) -> None:
    from voxelflex.pipelines.compile import COMPILED_DIR, compile_pipelines

    for path in compile_pipelines(args.out or COMPILED_DIR):
        print(f"compiled -> {path}")


def cmd_pipeline_run(args: argparse.Namespace) -> None:
    from voxelflex.data.uri import is_local, join_uri, local_path, uri_exists
    from voxelflex.paths import RunPaths
    from voxelflex.pipelines.local import run_local
    from voxelflex.pipelines.submit import parse_params

    if not args.local:
        raise VoxelFlexError(
            "pipeline run needs --local (kfp.local on this machine); on a cluster, upload "
            "pipelines/compiled/voxelflex_pipeline.yaml in the Kubeflow UI"
        )
    cfg = _prepare(args)
    root = args.pipeline_root or join_uri(RunPaths.from_config(cfg).run_dir, "kfp_local")
    if not is_local(root):
        raise VoxelFlexError(f"--pipeline-root must be a local folder for kfp.local, not {root}")
    mirror_uri = (args.mirror_uri or "") if args.mirror or args.mirror_uri else None
    run = run_local(
        cfg,
        local_path(root),
        temperatures=args.temperature,
        split=args.split,
        mirror_uri=mirror_uri,
        params=parse_params(args.param),
        pipeline=args.pipeline,
    )
    print(f"pipeline run: {run.run_dir}")
    for task, outputs in run.artifacts.items():
        for name, art in outputs.items():
            print(f"  {task}/{name}: {art['uri']}")
            for key, value in (art["metadata"] or {}).items():
                shown = f"{value:.4g}" if isinstance(value, float) else value
                print(f"      {key} = {shown}")
    if args.pipeline == "voxelflex_pipeline":
        from voxelflex.pipelines.local import publish

        run_dir = publish(cfg, run)
        print(f"outputs (what `voxelflex predict|evaluate|visualize --config` use): {run_dir}")
        report = join_uri(run_dir, "visualizations", "index.html")
        if uri_exists(report):
            print(f"report (open in a browser): {report}")


def _kfp_args(q: argparse.ArgumentParser, pipeline: str) -> None:
    q.add_argument("--host", required=True, help="KFP API endpoint, e.g. https://kf.lab/pipeline")
    q.add_argument("--pipeline", default=pipeline, help=f"pipeline to use (default {pipeline})")
    q.add_argument("--package", help="a compiled pipeline YAML instead of compiling now")
    q.add_argument("--experiment", default="voxelflex", help="KFP experiment name")
    q.add_argument(
        "--param", action="append", default=[], metavar="NAME=VALUE", help="pipeline parameter"
    )
    q.add_argument("--params-file", help="YAML mapping of pipeline parameters (--param wins)")
    q.add_argument("--service-account", help="Kubernetes service account for the run's pods")
    q.add_argument(
        "--unreleased",
        action="store_true",
        help="compile this checkout although no released image holds its code (an image "
        "you built from it); each step still refuses an image with other code",
    )
    q.add_argument("-v", "--verbose", action="count", default=0)


def cmd_pipeline_submit(args: argparse.Namespace) -> None:
    from voxelflex.logging_setup import setup_logging
    from voxelflex.pipelines.submit import load_params, submit

    setup_logging("DEBUG" if args.verbose > 1 else "INFO" if args.verbose else "WARNING")
    res = submit(
        args.host,
        load_params(args.params_file, args.param),
        pipeline=args.pipeline,
        package=args.package,
        experiment=args.experiment,
        run_name=args.run_name,
        service_account=args.service_account,
        wait=args.wait,
        timeout=args.timeout,
        metrics_uri=args.metrics_uri,
        unreleased=args.unreleased,
    )
    print(f"run {res.run_id}: {res.url}")
    if res.state is not None:
        print(f"final state: {res.state}")
        for task, state in res.tasks.items():
            print(f"  {task}: {state}")
        for key, value in res.metrics.items():
            print(f"  {key} = {value:.4g}" if isinstance(value, float) else f"  {key} = {value}")


def cmd_pipeline_schedule(args: argparse.Namespace) -> None:
    from voxelflex.logging_setup import setup_logging
    from voxelflex.pipelines.submit import load_params, schedule

    setup_logging("DEBUG" if args.verbose > 1 else "INFO" if args.verbose else "WARNING")
    job_id = schedule(
        args.host,
        args.cron,
        load_params(args.params_file, args.param),
        pipeline=args.pipeline,
        package=args.package,
        experiment=args.experiment,
        name=args.name,
        service_account=args.service_account,
        unreleased=args.unreleased,
    )
    print(f"recurring run {job_id}: '{args.cron}' ({args.pipeline})")


def cmd_gate(args: argparse.Namespace) -> None:
    from voxelflex.logging_setup import setup_logging
    from voxelflex.steps import gate

    setup_logging("INFO")
    res = gate.run(
        args.metrics,
        args.accepted,
        args.max_drop,
        promote=not args.no_promote,
        model_uri=args.model,
        run_id=args.run_id,
        against=args.against,
        rebaseline=args.rebaseline,
        registry_url=args.registry_url,
    )
    worst = max(res.drops.values(), default=0.0)
    what = "baseline set" if res.first_run else f"largest per-domain r drop {worst:.4f}"
    print(f"gate passed ({what})" + (f"; {args.accepted} updated" if res.promoted else ""))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="voxelflex", description=__doc__)
    parser.add_argument("--version", action="version", version=f"voxelflex {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo-data", help="write a small synthetic dataset and its config.yaml")
    p.add_argument("--out", required=True, help="folder to write into")
    p.add_argument("--domains", type=int, default=24, help="number of domains (>= 3)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_demo_data)

    p = sub.add_parser("preprocess", help="join voxels, RMSF CSV and splits into metadata")
    _common(p)
    p.set_defaults(func=cmd_preprocess)

    p = sub.add_parser("train", help="train the model")
    _common(p)
    p.add_argument("--resume", action="store_true", help="continue from latest_model.pt")
    p.add_argument(
        "--auto-resume",
        action="store_true",
        help="continue from latest_model.pt if there is one (jobs that restart), else start",
    )
    p.add_argument("--smoke", action="store_true", help="one batch forward/backward and exit")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("predict", help="per-residue RMSF at any temperature (K)")
    _common(p, config_required=False)
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
    _common(p)
    p.add_argument("--model", help="checkpoint (default: the run's best_model.pt)")
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    p.add_argument(
        "--permutation-importance",
        action="store_true",
        help="also measure how much temperature and each voxel channel matter",
    )
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("visualize", help="plots (PNG) and the data behind each (CSV)")
    _common(p)
    p.add_argument("--model", help="checkpoint (default: the run's best_model.pt)")
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    p.add_argument("--domains", nargs="+", help="domains for RMSF profiles (default: first two)")
    p.set_defaults(func=cmd_visualize)

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

    p = sub.add_parser("pipeline", help="the Kubeflow pipeline: compile, or run it locally")
    psub = p.add_subparsers(dest="pipeline_command", required=True)
    q = psub.add_parser("compile", help="write pipelines/compiled/*.yaml for the Kubeflow UI")
    q.add_argument("--out", help="folder to write into (default: pipelines/compiled)")
    q.set_defaults(func=cmd_pipeline_compile)
    q = psub.add_parser("run", help="run the whole pipeline (kfp.local with --local)")
    _common(q, config_required=False)
    q.add_argument(
        "--pipeline",
        default="voxelflex_pipeline",
        help="voxelflex_pipeline (default; inputs from --config), "
        "voxelflex_evaluation_pipeline or voxelflex_structure_pipeline (inputs as --param)",
    )
    q.add_argument("--local", action="store_true", help="run here through kfp.local")
    q.add_argument("--pipeline-root", help="folder for artifacts (default: <run dir>/kfp_local)")
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

    q = psub.add_parser("submit", help="create a run on a Kubeflow Pipelines server")
    _kfp_args(q, "voxelflex_pipeline")
    q.add_argument("--run-name", help="display name of the run")
    q.add_argument("--wait", action="store_true", help="wait; fail unless the run succeeds")
    q.add_argument("--timeout", type=int, default=24 * 3600, help="seconds to wait at most")
    q.add_argument("--metrics-uri", help="evaluation_metrics JSON to print after --wait")
    q.set_defaults(func=cmd_pipeline_submit)
    q = psub.add_parser("schedule", help="create a recurring run (default: the evaluation)")
    _kfp_args(q, "voxelflex_evaluation_pipeline")
    q.add_argument("--cron", required=True, help='e.g. "0 3 * * *" (03:00 every day)')
    q.add_argument("--name", default="voxelflex-scheduled-evaluation")
    q.set_defaults(func=cmd_pipeline_schedule)

    p = sub.add_parser("gate", help="fail on a per-domain r drop; promote a passing model")
    p.add_argument("--metrics", required=True, help="evaluation_metrics_<split>.json to judge")
    p.add_argument("--accepted", required=True, help="the promotion record (URI)")
    p.add_argument("--max-drop", type=float, default=0.05, help="allowed fall of per-domain r")
    p.add_argument("--no-promote", action="store_true", help="judge only; record nothing")
    p.add_argument("--model", help="URI of the model the metrics are of (recorded on promotion)")
    p.add_argument("--run-id", help="the run that produced the model (recorded on promotion)")
    p.add_argument(
        "--against",
        default="baseline",
        choices=["baseline", "best"],
        help="compare with the pinned baseline (default) or the best model accepted so far",
    )
    p.add_argument(
        "--rebaseline", action="store_true", help="a passing model also becomes the baseline"
    )
    p.add_argument(
        "--registry-url",
        help="also register the promoted model in this Kubeflow Model Registry (http(s)://host:port)",
    )
    p.set_defaults(func=cmd_gate)
    return parser


def one_line(exc: BaseException) -> str:
    """A user error's message; raised in a DataLoader worker, torch re-raises it in the main
    process with the worker's traceback in the message: keep its last line, the message."""
    text = str(exc)
    if "Original Traceback" not in text:
        return text
    last = [line for line in text.splitlines() if line.strip()][-1]
    return last.split(": ", 1)[1] if ": " in last else last


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except VoxelFlexError as exc:
        # user errors: one line that names the key or file to fix, no traceback (internal
        # bugs, any other exception, keep theirs)
        print(f"voxelflex: error: {one_line(exc)}", file=sys.stderr)
        log.debug("details", exc_info=True)
        return 2
    except KeyboardInterrupt:
        print("voxelflex: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
