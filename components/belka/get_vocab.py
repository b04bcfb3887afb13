"""get_vocab component: belka.parquet -> vocab.txt."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Output

from pipekit.pipeline.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def get_vocab(molecules: Input[Dataset], settings: dict, vocab: Output[Artifact]):
    """Tokenize every molecule's SMILES and write the vocabulary.

    Args:
        molecules: the generate_parquet output.
        settings: config sections (system.n_workers, ...).
        vocab: vocab.txt ([PAD], [MASK], [UNK], then tokens by frequency).
    """
    from belka import kfp_io
    from belka.steps import get_vocab as step

    cfg = kfp_io.component_config(settings, "", vocab)
    step.run(cfg, kfp_io.layout(cfg, molecules=molecules, vocab=vocab))
