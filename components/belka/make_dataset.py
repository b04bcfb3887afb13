"""make_dataset component: belka.parquet + vocab.txt -> the sharded feature store."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Output

from pipekit.pipeline.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def make_dataset(
    molecules: Input[Dataset], vocab: Input[Artifact], settings: dict, store: Output[Dataset]
):
    """Token ids and ECFP bits of every molecule, in compressed shards.

    Args:
        molecules: the generate_parquet output.
        vocab: the get_vocab output.
        settings: config sections (features, model.max_length, system.n_workers, ...).
        store: belka.tfr/ (shards, manifest.json) and failed_molecules.txt.
    """
    from belka import kfp_io
    from belka.steps import make_dataset as step
    from pipekit.kfp_io import fetch_folder, work_location

    # shards go where a retried task (a fresh pod, an empty output folder) finds them, and
    # it redoes only the missing ones
    work = work_location(store)
    cfg = kfp_io.component_config(settings, "", work, log_folder=store)
    step.run(cfg, kfp_io.layout(cfg, molecules=molecules, vocab=vocab, store=work))
    fetch_folder(work, store)  # the launcher uploads the store from its local folder
