"""Demo data in the pipeline's own layout: a raw protein table of influenza-like isolates
and a tiny random ESM-2 model folder, so every step runs here in seconds.

The rule a classifier can learn: each isolate descends from one of `n_lineages` lineages.
A lineage has its own motif in every segment's protein and favours three residues in its
substitutions, so two proteins of one isolate (a positive pair) share lineage-specific
features; a negative pair joins two isolates, of one lineage only by chance
(1/`n_lineages`), which bounds the reachable AUROC below 1. The tiny model's weights are
random (no weights can be downloaded here): its embeddings still reflect a sequence's
composition and motifs, which is what the rule is made of.

Real-data quirks are included on purpose: identical proteins shared by two isolates (the
cache computes them once), non-standard residues (`X`), a stop codon (`*`), lower case,
and one sequence longer than the demo's `esm2_max_residues`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

AMINO = np.array(list("ACDEFGHIKLMNPQRSTVWY"))
SEGMENTS = (  # (canonical segment, function) as BV-BRC names them
    ("1", "Polymerase PB2 protein"),
    ("2", "Polymerase PB1 protein"),
    ("4", "Hemagglutinin precursor"),
    ("6", "Neuraminidase protein"),
)
# the 33 tokens of the ESM-2 alphabet, in its order
ESM_TOKENS = [
    "<cls>",
    "<pad>",
    "<eos>",
    "<unk>",
    "L",
    "A",
    "G",
    "V",
    "S",
    "E",
    "R",
    "T",
    "I",
    "D",
    "P",
    "K",
    "Q",
    "N",
    "F",
    "Y",
    "M",
    "H",
    "W",
    "C",
    "X",
    "B",
    "U",
    "Z",
    "O",
    ".",
    "-",
    "<null_1>",
    "<mask>",
]
MAX_RESIDUES = 120


@dataclass(frozen=True)
class DemoData:
    root: Path
    config: Path
    raw_protein_file: Path
    model_dir: Path
    n_isolates: int
    n_proteins: int


def make_tiny_esm(folder: str | Path, seed: int = 0, hidden: int = 32, layers: int = 2) -> Path:
    """A random ESM-2-shaped model and its tokenizer, saved as the hub's folders are."""
    import torch
    from transformers import EsmConfig, EsmModel, EsmTokenizer

    from esm2pairs.embedder import _quiet_transformers

    _quiet_transformers()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(ESM_TOKENS) + "\n")
    tok = EsmTokenizer(str(folder / "vocab.txt"))
    cfg = EsmConfig(
        vocab_size=len(ESM_TOKENS),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        intermediate_size=2 * hidden,
        max_position_embeddings=1026,
        pad_token_id=tok.pad_token_id,
        mask_token_id=tok.mask_token_id,
        position_embedding_type="rotary",
        token_dropout=True,
        emb_layer_norm_before=False,
    )
    torch.manual_seed(seed)
    EsmModel(cfg, add_pooling_layer=False).save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    # readable by all, as a hub download is: transformers writes the weights owner-only,
    # which a step running as another user (the image's, in a container) cannot open
    for path in folder.iterdir():
        path.chmod(path.stat().st_mode | 0o444)
    return folder


def _mutate(base: np.ndarray, rng: np.random.Generator, favoured: np.ndarray, rate: float):
    seq = base.copy()
    hits = rng.random(len(seq)) < rate
    biased = rng.random(len(seq)) < 0.7
    seq[hits & biased] = rng.choice(favoured, int((hits & biased).sum()))
    seq[hits & ~biased] = rng.choice(AMINO, int((hits & ~biased).sum()))
    return seq


def protein_table(n_isolates: int = 120, n_lineages: int = 4, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    bases = [rng.choice(AMINO, int(rng.integers(50, 90))) for _ in SEGMENTS]
    favoured = [rng.choice(AMINO, 3, replace=False) for _ in range(n_lineages)]
    motifs = [[rng.choice(AMINO, 6) for _ in SEGMENTS] for _ in range(n_lineages)]
    rows = []
    for i in range(n_isolates):
        lineage = int(rng.integers(n_lineages))
        assembly = f"{1000 + i}.{int(rng.integers(1, 9))}"
        for s, (segment, function) in enumerate(SEGMENTS):
            seq = _mutate(bases[s], rng, favoured[lineage], rate=0.25)
            at = 10 + 5 * s
            seq = np.concatenate([seq[:at], motifs[lineage][s], seq[at:]])
            rows.append(
                {
                    "brc_fea_id": f"fig|11320.{i}.peg.{s + 1}",
                    "assembly_id": assembly,
                    "function": function,
                    "canonical_segment": segment,
                    "prot_seq": "".join(seq),
                    "lineage": lineage,  # the answer; the pipeline never reads it
                }
            )
    df = pd.DataFrame(rows)
    # identical proteins in two isolates (one embedding serves both)
    for a, b in ((2, 7), (11, 19)):
        df.loc[4 * b + 2, "prot_seq"] = df.loc[4 * a + 2, "prot_seq"]
    df.loc[5, "prot_seq"] = df.loc[5, "prot_seq"][:20] + "X" + df.loc[5, "prot_seq"][21:]
    df.loc[6, "prot_seq"] = df.loc[6, "prot_seq"].lower() + "*"
    df.loc[9, "prot_seq"] = df.loc[9, "prot_seq"] * 2  # longer than MAX_RESIDUES
    return df


CAVEAT = (
    "Demo data: synthetic influenza-like isolates (four lineages with planted motifs) embedded "
    "by a tiny ESM-2 with random weights. These figures show that the pipeline works, not how "
    "well ESM-2 embeddings tell isolates apart."
)


def make_demo(out: str | Path, n_isolates: int = 120, seed: int = 0) -> DemoData:
    """The raw table, the tiny model and `config.yaml` under `out`."""
    root = Path(out).resolve()
    (root / "raw").mkdir(parents=True, exist_ok=True)
    df = protein_table(n_isolates, seed=seed)
    raw = root / "raw" / "protein_data.csv"
    df.to_csv(raw, index=False)
    model = make_tiny_esm(root / "esm2_tiny", seed=seed)
    config = {
        "virus": {"virus_name": "flu_demo", "data_version": "demo"},
        "paths": {"data_dir": "data", "raw_protein_file": "raw/protein_data.csv"},
        "preprocess": {"esm2_max_residues": MAX_RESIDUES},
        "embeddings": {
            "model_ckpt": str(model),
            "emb_storage_precision": "fp32",
            "batch_size": 64,
            "max_tokens": 8192,
            "flush_every": 128,
        },
        "training": {
            "hidden_dims": [64, 32],
            "batch_size": 64,
            "num_epochs": 40,
            "patience": 8,
            "learning_rate": 3.0e-3,
        },
        "report": {"caveat": CAVEAT},
    }
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return DemoData(root, path, raw, model, n_isolates, len(df))
