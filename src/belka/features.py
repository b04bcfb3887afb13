"""Per-molecule features written once into the store: token ids and ECFP bits (RDKit
Morgan fingerprints, radius and size from `features`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from rdkit import Chem, RDLogger
from rdkit.Chem import rdFingerprintGenerator

from belka.tokenizer import Vocab

# unparsable SMILES are counted and listed, not printed
RDLogger.DisableLog("rdApp.*")  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Featurizer:
    vocab: Vocab
    max_length: int
    radius: int
    bits: int

    def __post_init__(self) -> None:
        gen = rdFingerprintGenerator.GetMorganGenerator(radius=self.radius, fpSize=self.bits)
        object.__setattr__(self, "_gen", gen)

    def fingerprint(self, smiles: str) -> np.ndarray | None:
        """Packed ECFP bits (bits/8 uint8), or None when RDKit cannot parse the molecule."""
        mol = Chem.MolFromSmiles(smiles)
        if mol is None:
            return None
        return np.packbits(self._gen.GetFingerprintAsNumPy(mol).astype(bool))  # type: ignore[attr-defined]

    def __call__(self, smiles: str) -> tuple[np.ndarray, np.ndarray, bool] | None:
        """(token ids, packed ECFP, truncated), or None for an unparsable molecule."""
        fp = self.fingerprint(smiles)
        if fp is None:
            return None
        try:
            tokens, truncated = self.vocab.encode(smiles, self.max_length)
        except ValueError:
            return None
        return tokens, fp, truncated


def unpack_bits(packed: np.ndarray, bits: int) -> np.ndarray:
    return np.unpackbits(packed, axis=-1)[..., :bits]
