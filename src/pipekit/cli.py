"""What every system's console script shares: the config flags, the pipeline commands
(`pipeline compile|submit|schedule`; `run --local` takes each system's own inputs) and the
one-line report of a user error."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from pipekit.errors import PipelineError

log = logging.getLogger(__name__)


def add_config_args(p: argparse.ArgumentParser, config_required: bool = True) -> None:
    p.add_argument(
        "--config", required=config_required, help="YAML config merged over the defaults"
    )
    add_overrides(p)


def add_overrides(p: argparse.ArgumentParser) -> None:
    """`--set section.key=value` (repeatable) and the verbosity flags."""
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set training.batch_size=64 (repeatable)",
    )
    add_verbosity(p)


def add_verbosity(p: argparse.ArgumentParser) -> None:
    p.add_argument("-v", "--verbose", action="count", default=0, help="-v: INFO, -vv: DEBUG")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars, warnings only")


def log_level(configured: str, args: argparse.Namespace) -> str:
    """`-q` and `-v/-vv` win over the config's level."""
    if getattr(args, "quiet", False):
        return "WARNING"
    if getattr(args, "verbose", 0):
        return "DEBUG" if args.verbose > 1 else "INFO"
    return configured


def start_logging(
    level: str, args: argparse.Namespace, log_file: str | None, show_progress: bool
) -> None:
    """A command's console (the config's level unless -q/-v say otherwise), its log file and
    its progress bars (off with -q)."""
    from pipekit.logging_setup import set_verbose, setup_logging
    from pipekit.progress import set_progress

    setup_logging(log_level(level, args), log_file)
    set_verbose(getattr(args, "verbose", 0) > 0)
    set_progress(show_progress and not getattr(args, "quiet", False))


def _kfp_args(q: argparse.ArgumentParser, pipeline: str, experiment: str) -> None:
    q.add_argument("--host", required=True, help="KFP API endpoint, e.g. https://kf.lab/pipeline")
    q.add_argument("--pipeline", default=pipeline, help=f"pipeline to use (default {pipeline})")
    q.add_argument("--package", help="a compiled pipeline YAML instead of compiling now")
    q.add_argument("--experiment", default=experiment, help="KFP experiment name")
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


def add_pipeline_commands(
    psub: Any,
    system: str,
    main_pipeline: str,
    scheduled_pipeline: str,
    read_metrics: Callable[[str], dict[str, Any]] | None = None,
    schedule_name: str | None = None,
) -> None:
    """`compile`, `submit` and `schedule` under a system's `pipeline` command, for the
    system's pipelines (`lab_pipelines.pipelines_of(system)`)."""

    def pipelines() -> dict[str, Callable]:
        from lab_pipelines import pipelines_of

        return pipelines_of(system)

    def cmd_compile(args: argparse.Namespace) -> None:
        from lab_pipelines import COMPILED_DIR
        from pipekit.pipeline.compile import compile_pipelines

        for path in compile_pipelines(pipelines(), args.out or COMPILED_DIR):
            print(f"compiled -> {path}")

    def cmd_submit(args: argparse.Namespace) -> None:
        from pipekit.pipeline import submit

        start_logging("WARNING", args, None, False)  # -v for more
        res = submit.submit(
            args.host,
            submit.load_params(args.params_file, args.param),
            pipelines(),
            args.pipeline,
            args.experiment,
            package=args.package,
            run_name=args.run_name,
            service_account=args.service_account,
            wait=args.wait,
            timeout=args.timeout,
            metrics_uri=args.metrics_uri,
            unreleased=args.unreleased,
            read_metrics=read_metrics,
        )
        print(f"run {res.run_id}: {res.url}")
        if res.state is not None:
            print(f"final state: {res.state}")
            for task, state in res.tasks.items():
                print(f"  {task}: {state}")
            for key, value in res.metrics.items():
                shown = f"{value:.4g}" if isinstance(value, float) else value
                print(f"  {key} = {shown}")

    def cmd_schedule(args: argparse.Namespace) -> None:
        from pipekit.pipeline import submit

        start_logging("WARNING", args, None, False)  # -v for more
        job_id = submit.schedule(
            args.host,
            args.cron,
            submit.load_params(args.params_file, args.param),
            pipelines(),
            args.pipeline,
            args.experiment,
            args.name,
            package=args.package,
            service_account=args.service_account,
            unreleased=args.unreleased,
        )
        print(f"recurring run {job_id}: '{args.cron}' ({args.pipeline})")

    _pipeline_parsers(psub, system, main_pipeline, scheduled_pipeline, schedule_name)
    for name, func in (
        ("compile", cmd_compile),
        ("submit", cmd_submit),
        ("schedule", cmd_schedule),
    ):
        psub.choices[name].set_defaults(func=func)


def _pipeline_parsers(
    psub: Any, system: str, main_pipeline: str, scheduled_pipeline: str, schedule_name: str | None
) -> None:
    """The flags of `pipeline compile|submit|schedule`."""
    q = psub.add_parser("compile", help="write pipelines/compiled/*.yaml for the Kubeflow UI")
    q.add_argument("--out", help="folder to write into (default: pipelines/compiled)")
    q = psub.add_parser("submit", help="create a run on a Kubeflow Pipelines server")
    _kfp_args(q, main_pipeline, system)
    q.add_argument("--run-name", help="display name of the run")
    q.add_argument("--wait", action="store_true", help="wait; fail unless the run succeeds")
    q.add_argument("--timeout", type=int, default=24 * 3600, help="seconds to wait at most")
    q.add_argument("--metrics-uri", help="metrics JSON to print after --wait")
    q = psub.add_parser("schedule", help=f"create a recurring run (default: {scheduled_pipeline})")
    _kfp_args(q, scheduled_pipeline, system)
    q.add_argument("--cron", required=True, help='e.g. "0 3 * * *" (03:00 every day)')
    q.add_argument("--name", default=schedule_name or f"{system}-scheduled-run")


def add_gate_command(sub: Any, label: str, judge: Callable[[], Any]) -> None:
    """`gate`: fail on a drop of the system's scores (`judge()`, a `pipekit.gate.Judge`)
    against the promotion record; promote a passing model."""

    def cmd_gate(args: argparse.Namespace) -> None:
        from pipekit import gate
        from pipekit.logging_setup import setup_logging

        setup_logging("INFO")
        res = gate.run(
            judge(),
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
        what = "baseline set" if res.first_run else f"largest {label} drop {worst:.4f}"
        print(f"gate passed ({what})" + (f"; {args.accepted} updated" if res.promoted else ""))

    p = sub.add_parser("gate", help=f"fail on a {label} drop; promote a passing model")
    p.add_argument("--metrics", required=True, help="evaluation_metrics_<split>.json to judge")
    p.add_argument("--accepted", required=True, help="the promotion record (URI)")
    p.add_argument("--max-drop", type=float, default=0.05, help=f"allowed fall of {label}")
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


def require_local(args: argparse.Namespace, pipeline: str) -> None:
    """`<system> pipeline run` runs a pipeline here, through kfp.local, only with --local;
    on a cluster its compiled YAML is uploaded instead."""
    if not args.local:
        raise PipelineError(
            "pipeline run needs --local (kfp.local on this machine); on a cluster, upload "
            f"pipelines/compiled/{pipeline}.yaml in the Kubeflow UI"
        )


def add_runner_arg(q: argparse.ArgumentParser) -> None:
    """`--runner` of `pipeline run --local`: each step as a subprocess (default) or in the
    project's image (`make images`), as on a cluster's pods."""
    q.add_argument(
        "--runner",
        choices=("subprocess", "docker"),
        default="subprocess",
        help="run each step as a subprocess of this Python (default) or in the project's "
        "image as its non-root user (docker; build it with `make images`)",
    )


def print_local_run(run: Any) -> None:
    """Each task's outputs of a local pipeline run, with the metrics they logged."""
    print(f"pipeline run: {run.run_dir}")
    for task, outputs in run.artifacts.items():
        if task in run.display_names:  # what the UI calls it (the folder has the task's name)
            print(f"  {task}: {run.display_names[task]}")
        for name, art in outputs.items():
            print(f"  {task}/{name}: {art['uri']}")
            for key, value in (art["metadata"] or {}).items():
                shown = f"{value:.4g}" if isinstance(value, float) else value
                print(f"      {key} = {shown}")


def one_line(exc: BaseException) -> str:
    """A user error's message; raised in a DataLoader worker, torch re-raises it in the main
    process with the worker's traceback in the message: keep its last line, the message."""
    text = str(exc)
    if "Original Traceback" not in text:
        return text
    last = [line for line in text.splitlines() if line.strip()][-1]
    return last.split(": ", 1)[1] if ": " in last else last


def run_main(prog: str, parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    """Parse and run a subcommand; a user error is one line naming what to fix, exit 2
    (internal bugs, any other exception, keep their traceback)."""
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except PipelineError as exc:
        print(f"{prog}: error: {one_line(exc)}", file=sys.stderr)
        log.debug("details", exc_info=True)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    return 0
