"""`esm2pairs <command>`: each subcommand parses its flags and calls one step's `run`."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

from pipekit.cli import (
    add_config_args,
    add_gate_command,
    add_pipeline_commands,
    add_runner_arg,
    log_level,
    print_local_run,
    require_local,
    run_main,
    start_logging,
)
from pipekit.errors import PipelineError
from pipekit.shards import parse_shard

log = logging.getLogger("esm2pairs")


def _config_args(p: argparse.ArgumentParser) -> None:
    add_config_args(p, config_required=False)
    p.add_argument(
        "--config_bundle", help="a packaged bundle (flu_a, bunya) or a YAML file; --config wins"
    )


def _prepare(args: argparse.Namespace, step: str, extra: Sequence[str] = ()):
    """Load the config; console + the step's log file; progress bars unless --quiet."""
    from esm2pairs.config import load_config
    from esm2pairs.paths import STEP_FOLDER, Layout
    from pipekit.uri import apply_storage_options

    cfg = load_config(args.config or args.config_bundle, [*extra, *args.overrides])
    apply_storage_options(cfg.paths.storage_options)
    layout = Layout.from_config(cfg)
    log_file = layout.log_file(getattr(layout, STEP_FOLDER[step]))
    start_logging(cfg.logging.level, args, log_file, cfg.logging.show_progress)
    return cfg


def cmd_demo_data(args: argparse.Namespace) -> None:
    from esm2pairs.demo import make_demo
    from pipekit.logging_setup import setup_logging

    setup_logging("WARNING")
    d = make_demo(args.out, n_isolates=args.isolates, seed=args.seed)
    print(f"demo: {d.n_proteins} proteins of {d.n_isolates} isolates, a tiny random ESM-2 model")
    print(f"config: {d.config}")


def cmd_preprocess(args: argparse.Namespace) -> None:
    from esm2pairs.steps import preprocess

    res = preprocess.run(_prepare(args, "preprocess"))
    print(
        f"preprocess: {res.n_rows} proteins of {res.n_isolates} isolates -> {res.output} "
        f"({res.n_invalid} with non-standard residues, {res.n_too_long} over the length limit, "
        f"{res.n_empty} skipped)"
    )


def _table_args(p: argparse.ArgumentParser) -> None:
    """The protein table and the run's folder, for every step that reads the table: a step
    given them agrees with an embed given the same."""
    p.add_argument("--input_file", help="protein_final.csv (default: preprocess's output)")
    p.add_argument("--output_dir", help="folder of sampled_isolates.txt (run-specific)")


def _table_overrides(args: argparse.Namespace) -> list[str]:
    extra = []
    if args.input_file:
        extra.append(f"paths.input_file={args.input_file}")
    if args.output_dir:
        extra.append(f"paths.output_dir={args.output_dir}")
    return extra


def cmd_embed(args: argparse.Namespace) -> None:
    from esm2pairs.steps import embed

    extra = _table_overrides(args)
    if args.cuda_name:
        extra.append(f"embeddings.device={args.cuda_name}")
    cfg = _prepare(args, "embed", extra)
    shard = parse_shard(args.shard)
    if shard is not None:
        if args.merge or args.force_recompute:
            raise PipelineError("--shard computes one share: without --merge/--force-recompute")
        res = embed.run_shard(cfg, *shard)
        print(
            f"embed shard {shard[0]}/{shard[1]}: {res.n_sequences} distinct sequences: "
            f"{res.n_cached} already embedded, {res.n_computed} computed "
            f"({res.sequences_per_s:.1f} seq/s), {res.n_failed} failed -> parts of {res.cache}"
        )
        return
    res = embed.run(cfg, force_recompute=args.force_recompute, compute=not args.merge)
    if args.merge:
        print(
            f"embed --merge: {res.n_ids} IDs, {res.n_sequences} distinct sequences: "
            f"{res.n_cached} in the store before ({res.hit_rate:.0%}), {res.n_computed} from "
            f"the shards, {res.n_failed} failed -> {res.cache}"
        )
        return
    print(
        f"embed: {res.n_ids} IDs, {res.n_sequences} distinct sequences: {res.n_cached} cached "
        f"({res.hit_rate:.0%}), {res.n_computed} computed ({res.sequences_per_s:.1f} seq/s), "
        f"{res.n_failed} failed; {res.model_calls} model calls -> {res.cache}"
    )


def cmd_pairs(args: argparse.Namespace) -> None:
    from esm2pairs.steps import pairs

    res = pairs.run(_prepare(args, "pairs", _table_overrides(args)))
    for split, c in res.counts.items():
        print(f"{split}: {c['pos']} positive, {c['neg']} negative pairs ({c['isolates']} isolates)")
    print(f"pairs -> {res.pairs_dir}")


def cmd_train(args: argparse.Namespace) -> None:
    from esm2pairs.steps import train

    cfg = _prepare(args, "train")
    if args.smoke:
        print(f"smoke: one batch forward and backward, loss {train.smoke(cfg):.4f}")
        return
    res = train.run(cfg, resume=args.resume or None)
    print(
        f"train: best val AUROC {res.best_val_auroc:.4f} at epoch {res.best_epoch} of "
        f"{res.epochs_run}{' (early stop)' if res.stopped_early else ''} -> {res.run_dir}"
    )


def cmd_evaluate(args: argparse.Namespace) -> None:
    from esm2pairs.steps import evaluate

    res = evaluate.run(_prepare(args, "evaluate"), split=args.split)
    o = res.metrics["overall"]
    print(
        f"{args.split}: AUROC {o['auroc']:.4f}, AUPRC {o['auprc']:.4f}, F1 {o['f1']:.4f} "
        f"({o['n']} pairs) -> {res.predictions}"
    )


def cmd_visualize(args: argparse.Namespace) -> None:
    from esm2pairs.steps import visualize

    res = visualize.run(_prepare(args, "visualize"), split=args.split)
    print(f"visualize: {len(res.plots)} plots -> {res.report}")


def cmd_pipeline_run(args: argparse.Namespace) -> None:
    from esm2pairs.config import load_config
    from esm2pairs.pipeline_run import publish, run_local

    require_local(args, "esm2pairs_pipeline")
    start_logging(log_level("WARNING", args), args, None, False)
    cfg = load_config(args.config or args.config_bundle, args.overrides)
    from pipekit.uri import join_uri

    root = args.pipeline_root or join_uri(cfg.paths.data_dir, "kfp_local")
    run = run_local(cfg, root, args.runner)
    print_local_run(run)
    run_dir = publish(cfg, run)
    print(f"outputs (what `esm2pairs evaluate|visualize --config` use): {run_dir}")
    print(f"report (open in a browser): {join_uri(run_dir, 'visualizations', 'index.html')}")


def _judge():
    from esm2pairs.steps.gate import JUDGE

    return JUDGE


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="esm2pairs", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo-data", help="write demo proteins, a tiny model and a config")
    p.add_argument("--out", default="demo_esm2", help="folder to write (default demo_esm2)")
    p.add_argument("--isolates", type=int, default=160)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_demo_data)

    p = sub.add_parser("preprocess", help="raw protein table -> protein_final.csv")
    _config_args(p)
    p.set_defaults(func=cmd_preprocess)

    p = sub.add_parser("embed", help="ESM-2 embeddings into the master cache")
    _config_args(p)
    p.add_argument("--cuda_name", help="device, e.g. cuda:0 (default: embeddings.device)")
    _table_args(p)
    p.add_argument(
        "--shard",
        metavar="K/N",
        help="embed only the K-th of N shares of what the cache lacks, beside other shards "
        "(parts only); then `embed --merge` builds the store and index",
    )
    p.add_argument("--merge", action="store_true", help="merge the shards' parts; embed nothing")
    p.add_argument("--force-recompute", action="store_true", help="recompute cached sequences")
    p.set_defaults(func=cmd_embed)

    p = sub.add_parser("pairs", help="train/val/test_pairs.csv, split by isolate")
    _config_args(p)
    _table_args(p)
    p.set_defaults(func=cmd_pairs)

    p = sub.add_parser("train", help="the pair classifier on frozen embeddings")
    _config_args(p)
    p.add_argument("--resume", action="store_true", help="continue from latest_model.pt")
    p.add_argument("--smoke", action="store_true", help="one batch forward and backward only")
    p.set_defaults(func=cmd_train)

    for name, helptext, func in (
        ("evaluate", "predictions and metrics of a split", cmd_evaluate),
        ("visualize", "ROC/PR curves and score distributions", cmd_visualize),
    ):
        p = sub.add_parser(name, help=helptext)
        _config_args(p)
        p.add_argument("--split", default="test", choices=["train", "val", "test"])
        p.set_defaults(func=func)

    add_gate_command(sub, "AUROC/AUPRC", _judge)

    p = sub.add_parser("pipeline", help="the Kubeflow pipeline: compile, run, submit, schedule")
    psub = p.add_subparsers(dest="pipeline_command", required=True)
    add_pipeline_commands(psub, "esm2pairs", "esm2pairs_pipeline", "esm2pairs_pipeline")
    q = psub.add_parser("run", help="run the whole pipeline (kfp.local with --local)")
    _config_args(q)
    q.add_argument("--local", action="store_true", help="run here through kfp.local")
    q.add_argument("--pipeline-root", help="artifacts folder (default: <paths.data_dir>/kfp_local)")
    add_runner_arg(q)
    q.set_defaults(func=cmd_pipeline_run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run_main("esm2pairs", build_parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
