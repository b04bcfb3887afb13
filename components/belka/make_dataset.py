"""make_dataset components, fanned out: plan the shards into ranges, featurize one range per
task, then gather the parts into the sharded feature store."""

from typing import List  # noqa: UP035 (KFP reads typing.List for a collected input)

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Output

from pipekit.pipeline.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def make_dataset_plan(molecules: Input[Dataset], settings: dict, tasks: int) -> list:
    """Split the store's shards into at most `tasks` contiguous ranges.

    Args:
        molecules: the generate_parquet output.
        settings: config sections (features.shard_size, logging).
        tasks: how many featurizing tasks to fan out to.

    Returns:
        One item per task ({"first": i, "stop": j}: shards i .. j-1).
    """
    import tempfile

    from belka import kfp_io
    from belka.steps import make_dataset as step

    cfg = kfp_io.component_config(settings, "", tempfile.mkdtemp(prefix="belka-plan-"))
    return step.plan(cfg, kfp_io.layout(cfg, molecules=molecules), tasks)


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def make_dataset_part(
    molecules: Input[Dataset],
    vocab: Input[Artifact],
    settings: dict,
    part: dict,
    shards: Output[Dataset],
):
    """Token ids and ECFP bits of one range of shards.

    Args:
        molecules: the generate_parquet output.
        vocab: the get_vocab output.
        settings: config sections (features, model.max_length, system.n_workers, ...).
        part: the range, one item of make_dataset_plan's list.
        shards: belka.tfr/ with this range's shards, their records and part.json.
    """
    from belka import kfp_io
    from belka.steps import make_dataset as step
    from pipekit.kfp_io import fetch_folder, work_location

    # shards go where a retried task (a fresh pod, an empty output folder) finds them, and
    # it redoes only the missing ones
    work = work_location(shards)
    cfg = kfp_io.component_config(settings, "", work, log_folder=shards)
    layout = kfp_io.layout(cfg, molecules=molecules, vocab=vocab, store=work)
    step.run_part(cfg, layout, int(part["first"]), int(part["stop"]))
    fetch_folder(work, shards)  # the launcher uploads the shards from its local folder


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def make_dataset(
    molecules: Input[Dataset],
    vocab: Input[Artifact],
    parts: Input[List[Dataset]],  # noqa: UP006
    settings: dict,
    store: Output[Dataset],
):
    """The feature store from its parts: every shard checked against its record.

    Args:
        molecules: the generate_parquet output.
        vocab: the get_vocab output.
        parts: every make_dataset_part output (collected over the fan-out).
        settings: config sections (features, model.max_length, ...).
        store: belka.tfr/ (shards, manifest.json) and failed_molecules.txt.
    """
    from belka import kfp_io
    from belka.paths import STORE
    from belka.steps import make_dataset as step
    from pipekit.kfp_io import fetch_folder, work_location
    from pipekit.uri import join_uri

    work = work_location(store)
    cfg = kfp_io.component_config(settings, "", work, log_folder=store)
    layout = kfp_io.layout(cfg, molecules=molecules, vocab=vocab, store=work)
    step.finish(cfg, layout, [join_uri(kfp_io.folder(p), STORE) for p in parts])
    fetch_folder(work, store)  # the launcher uploads the store from its local folder
