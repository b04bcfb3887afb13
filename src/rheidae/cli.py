"""`rheidae <command>`: each subcommand parses its flags and calls one step's `run`."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

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


def _training_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="model.yaml: data, model, optimizer, scheduler, training, loss")
    p.add_argument("--train-parms", help="train_parms.yaml: weighting, pcgrad, targets, ...")
    p.add_argument(
        "--predict-residual", action="store_true", help="learn F_true - F_box (overrides)"
    )
    add_overrides(p)


def _setup(args: argparse.Namespace):
    from pipekit.uri import join_uri
    from rheidae.config import load_training

    setup = load_training(args.config, args.train_parms, args.overrides, args.predict_residual)
    log_file = join_uri(setup.experiment.training.output_dir, "logs", "rheidae.log")
    lg = setup.experiment.logging
    start_logging(lg.level, args, log_file, lg.show_progress)
    return setup


def cmd_demo_data(args: argparse.Namespace) -> None:
    from rheidae.demo import make_demo

    d = make_demo(args.out, n_runs=args.runs, seed=args.seed)
    print(f"demo: {d.n_runs} runs in {d.database}")
    print(f"configs: {d.pre_process}, {d.model_config}, {d.train_parms}")
    print(f"from {d.root}: make preprocess, make train-residual, ... (its Makefile)")


def cmd_init(args: argparse.Namespace) -> None:
    from rheidae.project import write_project

    makefile = write_project(args.folder)
    print(f"{makefile}: make setup|preprocess|train|train-residual|smoke|clean from its folder")
    print(f"{makefile.parent / 'scripts' / 'train.py'}: the lab's training CLI (rheidae train)")


def cmd_preprocess(args: argparse.Namespace) -> None:
    from pipekit.uri import join_uri
    from rheidae.config import load_preprocess
    from rheidae.steps import preprocess

    cfg = load_preprocess(args.config, args.overrides)
    start_logging(
        cfg.logging.level,
        args,
        join_uri(cfg.output.dir, "logs", "rheidae.log"),
        cfg.logging.show_progress,
    )
    res = preprocess.run(cfg)
    print(
        f"preprocess: {res.n_points} points from {res.n_files} files ({res.n_reused} reused), "
        f"{len(res.failed)} runs refused -> {res.combined}"
    )


def cmd_train(args: argparse.Namespace) -> None:
    from rheidae.steps import train

    setup = _setup(args)
    res = train.run(setup, resume=args.resume, smoke=args.smoke)
    if args.smoke:
        print(f"smoke: one batch forward and backward, accuracy loss {res.best_val_accuracy:.3e}")
        return
    print(
        f"train: best val MSE {res.best_val_accuracy:.3e} at epoch {res.best_epoch} of "
        f"{res.epochs_run} ({res.samples_per_s:.0f} samples/s) -> {res.output_dir}"
    )


def cmd_evaluate(args: argparse.Namespace) -> None:
    from rheidae.steps import evaluate

    res = evaluate.run(_setup(args), split=args.split)
    h = evaluate.headline(res.report)
    print(
        f"{args.split}: model {h['model_mean_relative_error']:.3e} vs Box3D "
        f"{h['box3d_mean_relative_error']:.3e} mean relative error "
        f"({h['improvement_over_box3d']:.2f}x, 95% CI {h['improvement_ci95_low']:.2f}-"
        f"{h['improvement_ci95_high']:.2f}); max conservation violation "
        f"{h['model_max_conservation_violation']:.2e} -> {res.predictions}"
    )


def cmd_visualize(args: argparse.Namespace) -> None:
    from rheidae.steps import visualize

    res = visualize.run(_setup(args), split=args.split)
    print(f"visualize: {len(res.plots)} plots -> {res.report}")


def cmd_pipeline_run(args: argparse.Namespace) -> None:
    from pipekit.uri import join_uri
    from rheidae.pipeline_run import publish, run_local

    require_local(args, "rheidae_pipeline")
    start_logging(log_level("WARNING", args), args, None, False)
    run = run_local(
        args.pre_process,
        args.config,
        args.train_parms,
        args.overrides,
        args.predict_residual,
        args.pipeline_root,
        args.runner,
    )
    print_local_run(run)
    out = publish(args.pre_process, args.config, args.train_parms, args.overrides, run)
    print(f"outputs (what `rheidae evaluate|visualize` and the make targets use): {out}")
    print(f"report (open in a browser): {join_uri(out, 'visualizations', 'index.html')}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rheidae", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo-data", help="a demo database, raw layout, and config files")
    p.add_argument("--out", default="demo_rheidae")
    p.add_argument("--runs", type=int, default=4000)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_demo_data)

    p = sub.add_parser("init", help="the lab's layout and make targets in a project folder")
    p.add_argument("folder", nargs="?", default=".")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("preprocess", help="raw H5s -> *_preprocessed.h5, preprocessed_all.h5")
    p.add_argument("--config", help="pre_process.yaml")
    add_overrides(p)
    p.set_defaults(func=cmd_preprocess)

    p = sub.add_parser("train", help="the residual model")
    _training_args(p)
    p.add_argument("--resume", action="store_true", help="continue from latest_model.pt")
    p.add_argument("--smoke", action="store_true", help="one batch forward/backward, no workers")
    p.set_defaults(func=cmd_train)

    for name, text, func in (
        ("evaluate", "errors vs Box3D, conservation, growth-rate strata", cmd_evaluate),
        ("visualize", "parity plots and error histograms", cmd_visualize),
    ):
        p = sub.add_parser(name, help=text)
        _training_args(p)
        p.add_argument("--split", default="test", choices=["train", "val", "test"])
        p.set_defaults(func=func)

    p = sub.add_parser("pipeline", help="the Kubeflow pipeline: compile, run, submit, schedule")
    psub = p.add_subparsers(dest="pipeline_command", required=True)
    add_pipeline_commands(psub, "rheidae", "rheidae_pipeline", "rheidae_pipeline")
    q = psub.add_parser("run", help="run the whole pipeline (kfp.local with --local)")
    q.add_argument("--pre-process", help="pre_process.yaml")
    _training_args(q)
    q.add_argument("--local", action="store_true")
    q.add_argument("--pipeline-root", default="kfp_local_rheidae", help="artifacts folder")
    add_runner_arg(q)
    q.set_defaults(func=cmd_pipeline_run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run_main("rheidae", build_parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
