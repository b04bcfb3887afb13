"""Pairs component: train/val/test_pairs.csv, split by isolate."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Output

from pipekit.pipeline.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def pairs(
    proteins: Input[Dataset],
    run_info: Input[Dataset],
    embeddings_uri: str,
    settings: dict,
    pair_sets: Output[Dataset],
):
    """Same-isolate (positive) and cross-isolate (negative) segment pairs.

    Args:
        proteins: the preprocess output (protein_final.csv).
        run_info: the embed output (sampled_isolates.txt).
        embeddings_uri: folder of the master cache (its index lists the embedded IDs).
        settings: config sections (dataset, sampling, logging, ...).
        pair_sets: train_pairs.csv, val_pairs.csv, test_pairs.csv (brc_a, brc_b, label).
    """
    from esm2pairs import kfp_io
    from esm2pairs.steps import pairs as step

    cfg = kfp_io.component_config(
        settings,
        {
            "input_file": kfp_io.in_folder(proteins, "protein_final.csv"),
            "output_dir": run_info,
            "embeddings_dir": embeddings_uri,
            "pairs_dir": pair_sets,
        },
        pair_sets,
    )
    step.run(cfg)
