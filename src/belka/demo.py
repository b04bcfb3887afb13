"""Demo data in the BELKA layout, made with RDKit.

A triazine-core DNA-encoded library: building block 1 is an Fmoc-protected amino acid whose
acid carries the DNA linker (`[Dy]`), blocks 2 and 3 are amines; the molecule is the three
on a 1,3,5-triazine, as the competition's molecules are. The blocks form two families, as
the competition's split did: a quarter of the amino acids and amines make a non-shared
library of their own (two fifths of the labelled molecules and half the test molecules),
never mixed with the others' blocks; `heldout_blocks.txt` lists its blocks, and the demo
config holds them out of training, so its labelled molecules are the non-shared validation
group and its test molecules share no block with training.

Binding, per protein (the documented rule; a rule-positive molecule binds with probability
`P_BIND`, any other with probability `P_NOISE`):
- BRD4: a 3,5-dimethylisoxazole (an acetyl-lysine mimic) and an aromatic ring in block 1;
- HSA: a free carboxylic acid and a halogen on an aromatic ring;
- sEH: a urea and no aromatic ring in block 1.
The extra CSV (`DNA_Labeled_Data.csv`: `new_structure`, `read_count`) holds further
molecules measured against sEH only, a binder with a high read count."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from rdkit import Chem, RDLogger

from belka import PROTEINS
from pipekit.errors import PipelineError

RDLogger.DisableLog("rdApp.*")  # type: ignore[attr-defined]
P_BIND, P_NOISE = 0.35, 0.002
FMOC = "[*:1]C(=O)OCC1c2ccccc2-c2ccccc21"
HELDOUT_FILE = "heldout_blocks.txt"

# block 1: [*:1] the amine (to the core), [*:9] the acid (to the DNA linker)
AMINO_ACIDS = [
    "[*:1]N[C@@H](C)C(=O)[*:9]",
    "[*:1]N[C@@H](CC#C)CC(=O)[*:9]",
    "[*:1]N[C@@H](Cc1ccccc1)C(=O)[*:9]",
    "[*:1]NCC(=O)[*:9]",
    "[*:1]N1CCC(CC1)C(=O)[*:9]",
    "[*:1]Nc1ccc(cc1)C(=O)[*:9]",
    "[*:1]N[C@@H](CC(C)C)C(=O)[*:9]",
    "[*:1]N[C@H](Cc1ccc(O)cc1)C(=O)[*:9]",
    "[*:1]NC1(CCCC1)C(=O)[*:9]",
    "[*:1]N[C@@H](CCSC)C(=O)[*:9]",
    "[*:1]Nc1cc(ccc1Cl)C(=O)[*:9]",
    "[*:1]NCc1ccc(cc1)C(=O)[*:9]",
    "[*:1]N1CCC[C@H]1C(=O)[*:9]",
    "[*:1]N[C@@H](c1ccccc1)C(=O)[*:9]",
    "[*:1]NCCC(=O)[*:9]",
    "[*:1]Nc1ccc(nc1)C(=O)[*:9]",
    "[*:1]N[C@@H](CO)C(=O)[*:9]",
    "[*:1]N[C@@H](Cc1c[nH]c2ccccc12)C(=O)[*:9]",
    "[*:1]Nc1cccc(c1)C(=O)[*:9]",
    "[*:1]N[C@@H]1CC[C@H](CC1)C(=O)[*:9]",
    "[*:1]N[C@@H](Cc1ccsc1)C(=O)[*:9]",
    "[*:1]Nc1ccc(F)c(c1)C(=O)[*:9]",
    "[*:1]N[C@@H](CC1CC1)C(=O)[*:9]",
    "[*:1]NCc1cccc(c1)C(=O)[*:9]",
]
# amines: a scaffold with {X} where a substituent goes ([*:7] bonds to the core)
AMINE_SCAFFOLDS = [
    "[*:7]NCc1ccc({X})cc1",
    "[*:7]Nc1ccc({X})cc1",
    "[*:7]NCCc1ccc({X})cc1",
    "[*:7]Nc1cccc({X})c1",
    "[*:7]NCc1cccc({X})c1",
    "[*:7]NCc1ccc({X})nc1",
    "[*:7]Nc1ccc({X})cn1",
    "[*:7]NCc1ccc({X})s1",
    "[*:7]NC1CCN(CC1)c1ccc({X})cc1",
    "[*:7]NCc1ccc({X})o1",
    "[*:7]N[C@@H](C)c1ccc({X})cc1",
    "[*:7]NCc1cc({X})cc(F)c1",
    "[*:7]NCC1CCN(C1)C(=O)c1ccc({X})cc1",
]
SUBSTITUENTS = [
    "[H]",
    "F",
    "Cl",
    "Br",
    "C",
    "OC",
    "C(F)(F)F",
    "OC(F)(F)F",
    "C#N",
    "S(N)(=O)=O",
    "C(=O)O",
    "NC(N)=O",
    "c2c(C)onc2C",
    "C(N)=O",
    "N2CCOCC2",
    "CC(=O)O",
    "OCC",
]
ALIPHATIC = [
    "[*:7]NC1CC1",
    "[*:7]NCC(C)C",
    "[*:7]NCCOC",
    "[*:7]NC1CCOCC1",
    "[*:7]NCC#C",
    "[*:7]NCC1CCCO1",
    "[*:7]NCCN1CCOCC1",
    "[*:7]NC1CCCCC1",
    "[*:7]NCC(F)(F)F",
    "[*:7]NCCS(C)(=O)=O",
]
CORE = "[*:1]c1nc([*:2])nc([*:3])n1"
LINKER = "[*:9]N[Dy]"


def _zip(*parts: str) -> Chem.Mol:
    mol = Chem.molzip(Chem.MolFromSmiles(".".join(parts)))
    return Chem.RemoveHs(mol)


def _canon(mol: Chem.Mol) -> str:
    return Chem.MolToSmiles(mol)


def amines() -> list[str]:
    frags = [s.replace("{X}", x) for s in AMINE_SCAFFOLDS for x in SUBSTITUENTS] + ALIPHATIC
    out = []
    for f in frags:
        if Chem.MolFromSmiles(f) is not None:
            out.append(f)
    return sorted(set(out))


def block_smiles(frag: str) -> str:
    """The building block as the library lists it (block 1 Fmoc-protected, amines free)."""
    if "[*:9]" in frag:
        return _canon(_zip(frag, FMOC, "[*:9]O"))
    return _canon(Chem.MolFromSmiles(frag.replace("[*:7]", "", 1)))


class Rule:
    """The binding rule of the module docstring, per protein."""

    def __init__(self) -> None:
        self.isoxazole = Chem.MolFromSmarts("[CH3]c1onc([CH3])c1")
        self.acid = Chem.MolFromSmarts("[CX3](=O)[OX2H1]")
        self.aryl_halide = Chem.MolFromSmarts("[c][F,Cl,Br]")
        self.urea = Chem.MolFromSmarts("[NX3][CX3](=O)[NX3]")
        self.aromatic_bb1 = {f: bool(Chem.MolFromSmiles(f).GetAromaticAtoms()) for f in AMINO_ACIDS}

    def positive(self, mol: Chem.Mol, bb1: str) -> dict[str, bool]:
        has = mol.HasSubstructMatch
        return {
            "BRD4": has(self.isoxazole) and self.aromatic_bb1[bb1],
            "HSA": has(self.acid) and has(self.aryl_halide),
            "sEH": has(self.urea) and not self.aromatic_bb1[bb1],
        }


@dataclass(frozen=True)
class Demo:
    root: Path
    config: Path
    train_molecules: int  # labelled: train.parquet's molecules
    non_shared_molecules: int  # of those, made of held-out blocks only
    test_molecules: int
    extra_molecules: int
    hit_rate: dict[str, float]


def _library(n: int, bb1s: list[str], pool: list[str], rng) -> list[tuple[str, str, str]]:
    """n distinct (bb1, bb2, bb3) combinations (fewer if the blocks cannot make n)."""
    seen: set[tuple[str, str, str]] = set()
    tries = 0
    while len(seen) < n and tries < 50 * n:
        tries += 1
        a = bb1s[rng.integers(len(bb1s))]
        # blocks 2 and 3 sit on equivalent triazine positions: (a, b, c) and (a, c, b) are one
        # molecule, so each pair is kept in one order
        b, c = sorted(pool[i] for i in rng.integers(len(pool), size=2))
        if b != c:
            seen.add((a, b, c))
    return sorted(seen)


def _molecules(combos, rule: Rule, rng) -> list:
    rows = []
    for a, b, c in combos:
        mol = _zip(CORE, a, b.replace("[*:7]", "[*:2]"), c.replace("[*:7]", "[*:3]"), LINKER)
        # RDKit brackets the linker's NH (Dy has no default valence); BELKA writes N[Dy]
        smiles = _canon(mol).replace("[NH][Dy]", "N[Dy]")
        pos = rule.positive(mol, a)
        binds = {p: int(rng.random() < (P_BIND if pos[p] else P_NOISE)) for p in PROTEINS}
        rows.append((block_smiles(a), block_smiles(b), block_smiles(c), smiles, binds))
    return rows


def _long(rows, first_id: int, labelled: bool) -> pd.DataFrame:
    out = []
    i = first_id
    for b1, b2, b3, smiles, binds in rows:
        for p in PROTEINS:
            rec = {
                "id": i,
                "buildingblock1_smiles": b1,
                "buildingblock2_smiles": b2,
                "buildingblock3_smiles": b3,
                "molecule_smiles": smiles,
                "protein_name": p,
            }
            if labelled:
                rec["binds"] = binds[p]
            out.append(rec)
            i += 1
    return pd.DataFrame(out)


CAVEAT = (
    "Demo data: a library enumerated with RDKit whose binding follows a documented substructure "
    "rule plus noise, not BELKA's measurements. These figures show that the pipeline works, "
    "not how well the model ranks real binders."
)


def demo_config(root: Path, working: Path) -> dict:
    return {
        "data": {"root": str(root), "working": str(working)},
        # 2 layers of 4 heads: the plan's 4 x 8 runs at a third of the speed on a laptop CPU
        "model": {"num_layers": 2, "num_heads": 4, "dropout_rate": 0.1},
        "training": {
            "batch_size": 128,
            "buffer_size": 4096,
            "epochs": 4,
            "patience": 3,
            "steps_per_epoch": None,
            "validation_steps": None,
            "learning_rate": 2.0e-3,
        },
        # the non-shared library's blocks held out (a designed split), no drawn fraction
        "validation": {
            "heldout_block_fraction": 0.0,
            "heldout_blocks_file": HELDOUT_FILE,
            "shared_fraction": 0.05,
        },
        "features": {"ecfp_bits": 1024, "shard_size": 2000, "rows_per_bucket": 20000},
        "system": {"n_workers": 0},
        "evaluation": {"baseline_max_train": 50000, "baseline_epochs": 30},
        "report": {"caveat": CAVEAT},
    }


def _families(rng, rule: Rule) -> tuple[tuple[list[str], list[str]], tuple[list[str], list[str]]]:
    """(amino acids, amines) of the shared family and of the non-shared library: a quarter
    of each, the library's amino acids half aromatic (BRD4's and sEH's rules need both)."""
    aromatic = [a for a in AMINO_ACIDS if rule.aromatic_bb1[a]]
    plain = [a for a in AMINO_ACIDS if not rule.aromatic_bb1[a]]
    rng.shuffle(aromatic)
    rng.shuffle(plain)
    k = len(AMINO_ACIDS) // 8
    new_aa, old_aa = aromatic[:k] + plain[:k], aromatic[k:] + plain[k:]
    pool = amines()
    rng.shuffle(pool)
    n_new = len(pool) // 4
    return (old_aa, pool[n_new:]), (new_aa, pool[:n_new])


def make_demo(
    out: str | Path,
    n_train: int = 15000,
    n_test: int = 1500,
    n_extra: int = 1500,
    seed: int = 0,
    n_non_shared: int | None = None,
) -> Demo:
    """`n_train` labelled molecules, `n_non_shared` of them (two fifths unless given) from the
    library whose blocks training never sees: the non-shared validation group."""
    # two fifths by default (6,000 molecules: the paired model-vs-baseline interval 0.085
    # wide, against 0.140 with a quarter); more only narrows the interval, for demo time
    n_library = n_train * 2 // 5 if n_non_shared is None else n_non_shared
    if not 0 <= n_library < n_train:
        raise PipelineError(
            f"demo: {n_library} non-shared molecules of {n_train} labelled: give fewer than "
            "--molecules (the rest are the training set)"
        )
    rng = np.random.default_rng(seed)
    rule = Rule()
    (old_aa, old_pool), (new_aa, new_pool) = _families(rng, rule)
    most = len(new_aa) * len(new_pool) * (len(new_pool) - 1) // 2  # blocks 2, 3 unordered
    if n_library > most:
        raise PipelineError(
            f"demo: the held-out blocks make {most} distinct molecules; --non-shared "
            f"{n_library} asks for more"
        )
    out = Path(out)
    raw = out / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    labelled = _library(n_train - n_library, old_aa, old_pool, rng)
    labelled += _library(n_library, new_aa, new_pool, rng)
    train_rows = _molecules(labelled, rule, rng)
    taken = set(labelled)
    shared = _library(n_test // 2, old_aa, old_pool, rng)
    new = _library(n_test - n_test // 2, new_aa, new_pool, rng)
    test_rows = _molecules([c for c in shared + new if c not in taken], rule, rng)
    held = sorted({block_smiles(f) for f in new_aa + new_pool})
    (raw / HELDOUT_FILE).write_text("\n".join(held) + "\n")
    train = _long(train_rows, 0, True)
    test = _long(test_rows, len(train), False)
    pq.write_table(pa.Table.from_pandas(train, preserve_index=False), raw / "train.parquet")
    pq.write_table(pa.Table.from_pandas(test, preserve_index=False), raw / "test.parquet")
    extra_rows = _molecules(_library(n_extra, old_aa, old_pool, rng), rule, rng)
    extra = pd.DataFrame(
        {
            "new_structure": [r[3] for r in extra_rows],
            "read_count": [
                int(rng.poisson(6) + 1) if r[4]["sEH"] else int(rng.poisson(0.05))
                for r in extra_rows
            ],
        }
    )
    extra.to_csv(raw / "DNA_Labeled_Data.csv", index=False)
    test[["id"]].assign(binds=0.5).to_csv(raw / "sample_submission.csv", index=False)
    config = out / "config.yaml"
    config.write_text(yaml.safe_dump(demo_config(Path("raw"), Path("work")), sort_keys=False))
    hits = {p: float(np.mean([r[4][p] for r in train_rows])) for p in PROTEINS}
    return Demo(out, config, len(train_rows), n_library, len(test_rows), len(extra_rows), hits)
