"""Preprocess component: the raw protein table -> protein_final.csv."""

from kfp import dsl
from kfp.dsl import Dataset, Output

from pipekit.pipeline.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def preprocess(raw_protein_file: str, settings: dict, proteins: Output[Dataset]):
    """Clean sequences into esm2_ready_seq and check the protein table's contract.

    Args:
        raw_protein_file: URI of the raw protein table (CSV or parquet: brc_fea_id,
            assembly_id, prot_seq, function, ...).
        settings: config sections (preprocess, logging, ...).
        proteins: protein_final.csv (and skipped_proteins.csv when any were skipped).
    """
    from esm2pairs import kfp_io
    from esm2pairs.steps import preprocess as step

    cfg = kfp_io.component_config(
        settings,
        {
            "raw_protein_file": raw_protein_file,
            "input_file": kfp_io.in_folder(proteins, "protein_final.csv"),
        },
        proteins,
    )
    step.run(cfg)
