"""generate_parquet component: the BELKA inputs -> belka.parquet (one row per molecule)."""

from kfp import dsl
from kfp.dsl import Dataset, Output

from pipekit.pipeline.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def generate_parquet(raw_dir: str, settings: dict, molecules: Output[Dataset]):
    """Combine train, test and the extra CSV into one row per molecule, out of core.

    Args:
        raw_dir: URI of the folder of train.parquet, test.parquet, DNA_Labeled_Data.csv.
        settings: config sections (data file names, extra, validation, features, ...).
        molecules: belka.parquet and generate_parquet_report.json.
    """
    from belka import kfp_io
    from belka.steps import generate_parquet as step

    cfg = kfp_io.component_config(settings, raw_dir, molecules)
    step.run(cfg, kfp_io.layout(cfg))
