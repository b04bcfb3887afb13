"""create_val_dataset component: the validation molecules into their own store."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Output

from pipekit.pipeline.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def create_val_dataset(store: Input[Dataset], settings: dict, val_store: Output[Dataset]):
    """Copy the subset-1 molecules of the store into belka_val.tfr.

    Args:
        store: the make_dataset output.
        settings: config sections (features.shard_size, ...).
        val_store: belka_val.tfr/.
    """
    from belka import kfp_io
    from belka.steps import create_val_dataset as step

    cfg = kfp_io.component_config(settings, "", val_store)
    step.run(cfg, kfp_io.layout(cfg, store=store, val_store=val_store))
