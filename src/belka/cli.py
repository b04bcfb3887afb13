"""`belka --step STEP [flags]`: the plan's pipeline driver; without `--step`, every step in
order (generate_parquet, get_vocab, make_dataset, create_val_dataset, train_model for mlm,
fps and clf in turn, make_submission, visualize). `belka demo-data` writes demo inputs and
`belka pipeline compile|run|submit|schedule` drives the Kubeflow pipeline."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

from pipekit.cli import (
    add_overrides,
    add_pipeline_commands,
    add_runner_arg,
    log_level,
    print_local_run,
    require_local,
    run_main,
    start_logging,
)
from pipekit.errors import PipelineError

STEPS = (
    "generate_parquet",
    "get_vocab",
    "make_dataset",
    "create_val_dataset",
    "train_model",
    "make_submission",
    "visualize",
)
SUBCOMMANDS = ("demo-data", "pipeline")
# the plan's config, read when --config is not given and the working folder holds it (the
# plan's `python scripts/pipeline.py --step get_vocab` names no config); else the packaged one
PLAN_CONFIG = "configs/config.yaml"
log = logging.getLogger("belka")


def _config_file(given: str | None) -> str | None:
    return given if given or not Path(PLAN_CONFIG).is_file() else PLAN_CONFIG


def _config(args: argparse.Namespace, config: str | None):
    from belka.config import load_config

    over = list(args.overrides)
    if args.batch_size is not None:
        over.append(f"training.batch_size={args.batch_size}")
    if args.n_workers is not None:
        over.append(f"system.n_workers={args.n_workers}")
    if args.output_dir is not None:
        over.append(f"data.working={args.output_dir}")
    if args.log_level is not None:
        over.append(f"logging.level={args.log_level}")
    if args.vocab is not None:
        over.append(f"data.vocab={args.vocab}")
    return load_config(config, over)


def _layout(cfg, args: argparse.Namespace):
    """The config's layout, with the store, validation store and model folder the flags
    name (a TrainJob's nodes read and write each where its artifact is)."""
    from belka.paths import Layout

    where = {k: getattr(args, k) for k in ("store", "val_store") if getattr(args, k)}
    layout = Layout.of(cfg, **where)
    if args.model_dir:
        if args.mode is None:
            raise PipelineError("--model_dir needs --mode")
        layout = layout.with_models(**{args.mode: args.model_dir.rstrip("/")})
    return layout


def _train(cfg, args: argparse.Namespace, mode: str, model_path: str | None) -> str:
    from belka.steps import train_model

    res = train_model.run(
        cfg,
        mode,
        model_path=model_path,
        resume=args.resume,
        initial_epoch=args.initial_epoch,
        smoke=args.smoke,
        layout=_layout(cfg, args),
    )
    if args.smoke:
        print(f"smoke: one {mode} batch forward and backward, loss {res.best_val_loss:.4f}")
        return res.model_dir
    extra = f", val mAP {res.val_metrics['val_map']:.4f}" if "val_map" in res.val_metrics else ""
    print(
        f"train_model {mode}: best val loss {res.best_val_loss:.4f} at epoch {res.best_epoch} "
        f"of {res.epochs_run}{extra} ({res.samples_per_s:.0f} molecules/s) -> {res.model_dir}"
    )
    return res.model_dir


def _generate_parquet(cfg, args: argparse.Namespace) -> None:
    from belka.steps import generate_parquet

    r = generate_parquet.run(cfg)
    skipped = sum(v["skipped"] for v in r.skipped_rows.values())
    print(
        f"generate_parquet: {r.molecules} molecules {r.by_subset} from {r.input_rows} rows "
        f"({skipped} skipped), {r.heldout_blocks} building blocks held out -> {r.parquet}; "
        f"validation groups {r.validation_groups}"
    )


def _get_vocab(cfg, args: argparse.Namespace) -> None:
    from belka.steps import get_vocab

    r = get_vocab.run(cfg)
    print(
        f"get_vocab: {r.size} tokens from {r.molecules} molecules ({r.untokenizable} "
        f"untokenizable, longest {r.longest} tokens) -> {r.vocab}"
    )


def _make_dataset(cfg, args: argparse.Namespace) -> None:
    from belka.steps import make_dataset

    r = make_dataset.run(cfg)
    print(
        f"make_dataset: {r.molecules} molecules in {r.shards} shards ({r.reused_shards} "
        f"kept from an earlier run), {r.skipped} skipped, {r.truncated} cut -> {r.store}"
    )


def _create_val_dataset(cfg, args: argparse.Namespace) -> None:
    from belka.steps import create_val_dataset

    r = create_val_dataset.run(cfg)
    print(f"create_val_dataset: {r.molecules} molecules in {r.shards} shards -> {r.store}")


def _train_model(cfg, args: argparse.Namespace) -> None:
    if args.mode is None:
        raise PipelineError("--step train_model needs --mode mlm|fps|clf")
    _train(cfg, args, args.mode, args.model_path)


def _make_submission(cfg, args: argparse.Namespace) -> None:
    from belka.steps import make_submission

    r = make_submission.run(cfg, args.model_path)
    rep = r.report
    print(f"make_submission: {r.rows} rows ({r.fallback_rows} at prevalence) -> {r.submission}")
    for group in ("shared", "non_shared"):
        shown = ", ".join(
            f"{name} {_with_ci(rep[name][group]['mean_ap'], rep[name][group]['mean_ap_ci95'])}"
            for name in ("model", "fingerprint_logreg", "prevalence")
        )
        positives = rep["model"][group]["positives"]
        print(
            f"  validation mAP [95% CI], {group.replace('_', '-')} blocks "
            f"({rep['model'][group]['molecules']} molecules, positives "
            f"{', '.join(f'{p} {n}' for p, n in positives.items())}): {shown}"
        )
        diff = rep["model_minus"][group]["fingerprint_logreg"]
        print(
            "    model - fingerprint_logreg: "
            f"{_with_ci(diff['mean_ap_difference'], diff['ci95'], signed=True)}"
        )
    print(f"  -> {r.evaluation}")


def _visualize(cfg, args: argparse.Namespace) -> None:
    from belka.steps import visualize

    r = visualize.run(cfg)
    print(f"visualize: {len(r.plots)} plots -> {r.report}")


STEP_COMMANDS = {
    "generate_parquet": _generate_parquet,
    "get_vocab": _get_vocab,
    "make_dataset": _make_dataset,
    "create_val_dataset": _create_val_dataset,
    "train_model": _train_model,
    "make_submission": _make_submission,
    "visualize": _visualize,
}


def _step(cfg, args: argparse.Namespace, step: str) -> None:
    STEP_COMMANDS[step](cfg, args)


def _with_ci(value: float, ci: list, signed: bool = False) -> str:
    fmt = "+.4f" if signed else ".4f"
    lo, hi = (f"{x:{fmt}}" if x is not None else "n/a" for x in ci)
    return f"{value:{fmt}} [{lo}, {hi}]"


def cmd_steps(args: argparse.Namespace) -> None:
    from belka.paths import BEST_MODEL, Layout

    config = _config_file(args.config)
    cfg = _config(args, config)
    layout = Layout.of(cfg)
    lg = cfg.logging
    start_logging(lg.level, args, layout.log, lg.show_progress)
    if config != args.config:
        log.info("config: %s (the plan's; --config names another)", config)
    if args.memory_safe:
        log.info("--memory_safe: generate_parquet always runs out of core")
    if args.step is not None:
        _step(cfg, args, args.step)
        return
    if args.smoke or args.resume or args.model_path:
        raise PipelineError("--smoke, --resume and --model_path need a --step")
    for step in STEPS[:4]:
        _step(cfg, args, step)
    previous = None
    for mode in ("mlm", "fps", "clf"):
        previous = f"{_train(cfg, args, mode, previous)}/{BEST_MODEL}"
    _step(cfg, args, "make_submission")
    _step(cfg, args, "visualize")


def cmd_demo_data(args: argparse.Namespace) -> None:
    from belka.demo import make_demo

    d = make_demo(args.out, args.molecules, args.test, args.extra, args.seed, args.non_shared)
    hits = ", ".join(f"{p} {v:.1%}" for p, v in d.hit_rate.items())
    print(
        f"demo: {d.train_molecules} labelled ({d.non_shared_molecules} of held-out blocks: "
        f"the non-shared validation group), {d.test_molecules} test, {d.extra_molecules} "
        f"extra molecules (hit rates {hits}) in {d.root}/raw; config {d.config}"
    )


def cmd_pipeline_run(args: argparse.Namespace) -> None:
    from belka.pipeline_run import publish, run_local
    from pipekit.uri import join_uri

    require_local(args, "belka_pipeline")
    start_logging(log_level("WARNING", args), args, None, False)
    config = _config_file(args.config)
    run = run_local(config, args.overrides, args.pipeline_root, args.runner)
    print_local_run(run)
    out = publish(config, args.overrides, run)
    print(f"outputs (what `belka --step ...` uses): {out}")
    print(f"report (open in a browser): {join_uri(out, 'visualizations', 'index.html')}")


def _flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        help=f"config YAML over the packaged config.yaml (default: {PLAN_CONFIG} where the "
        "working folder has one)",
    )
    p.add_argument("--step", choices=STEPS, help="one step (default: all, in order)")
    p.add_argument("--mode", choices=("mlm", "fps", "clf"), help="train_model's head")
    p.add_argument("--resume", action="store_true", help="continue from latest_model.pt")
    p.add_argument(
        "--model_path",
        help="train_model: start from this model (or resume from it); "
        "make_submission: the clf model (default models/clf/best_model.pt)",
    )
    p.add_argument("--initial_epoch", type=int, help="epochs already done (with --resume)")
    p.add_argument("--vocab", help="data.vocab: vocab.txt (default <working>/vocab.txt)")
    p.add_argument("--store", help="train_model: the feature store (default <working>/belka.tfr)")
    p.add_argument("--val_store", help="train_model: the validation store")
    p.add_argument("--model_dir", help="train_model: the mode's model folder")
    p.add_argument("--batch_size", type=int, help="training.batch_size")
    p.add_argument("--n_workers", type=int, help="system.n_workers")
    p.add_argument(
        "--memory_safe",
        action="store_true",
        help="accepted; generate_parquet is always out of core",
    )
    p.add_argument("--output_dir", help="data.working")
    p.add_argument("--log_level", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    p.add_argument("--smoke", action="store_true", help="train_model: one batch, no workers")
    add_overrides(p)  # also --quiet/-q (no progress bars) and -v


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="belka", description=__doc__)
    _flags(parser)
    parser.set_defaults(func=cmd_steps)
    return parser


def build_command_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="belka", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo-data", help="demo inputs in the BELKA layout and a config")
    p.add_argument("--out", default="demo_belka")
    p.add_argument(
        "--molecules",
        type=int,
        default=15000,
        help="labelled molecules (two fifths held out: the non-shared validation group)",
    )
    p.add_argument(
        "--non-shared",
        type=int,
        help="of those, how many from the held-out library (default two fifths)",
    )
    p.add_argument("--test", type=int, default=1500, help="test molecules")
    p.add_argument("--extra", type=int, default=1500, help="extra (sEH-only) molecules")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_demo_data)

    p = sub.add_parser("pipeline", help="the Kubeflow pipeline: compile, run, submit, schedule")
    psub = p.add_subparsers(dest="pipeline_command", required=True)
    add_pipeline_commands(psub, "belka", "belka_pipeline", "belka_pipeline")
    q = psub.add_parser("run", help="run the whole pipeline (kfp.local with --local)")
    q.add_argument(
        "--config",
        help=f"config YAML (data.root: the BELKA inputs; default: {PLAN_CONFIG} where the "
        "working folder has one)",
    )
    add_overrides(q)
    q.add_argument("--local", action="store_true")
    q.add_argument("--pipeline-root", default="kfp_local_belka", help="artifacts folder")
    add_runner_arg(q)
    q.set_defaults(func=cmd_pipeline_run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    import sys

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SUBCOMMANDS:
        return run_main("belka", build_command_parser(), argv)
    return run_main("belka", build_parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
