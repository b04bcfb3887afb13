"""Atom-level SMILES tokens (bracket atoms, two-letter halogens, bonds, ring digits) and the
vocabulary file `vocab.txt`: one token per line, the special tokens first."""

from __future__ import annotations

import re
from collections.abc import Iterable

import numpy as np

from pipekit.errors import InputDataError
from pipekit.uri import open_uri

PAD, MASK, UNK = "[PAD]", "[MASK]", "[UNK]"
SPECIAL = (PAD, MASK, UNK)  # ids 0, 1, 2
PAD_ID, MASK_ID, UNK_ID = 0, 1, 2

# a bracket atom is one token ([C@@H], [NH3+], [H]); Br and Cl before B and C
TOKEN = re.compile(
    r"(\[[^\]]+\]|Br|Cl|Si|Se|se|B|C|N|O|S|P|F|I|b|c|n|o|s|p|\(|\)|\.|=|#|-|\+|\\|/|:|~|@|\?"
    r"|>|\*|\$|%\d{2}|\d)"
)


def tokenize(smiles: str) -> list[str]:
    """Tokens of a SMILES string; a character no token covers makes it unparsable."""
    tokens = TOKEN.findall(smiles)
    if sum(map(len, tokens)) != len(smiles):
        raise ValueError(f"untokenizable characters in {smiles!r}")
    return tokens


class Vocab:
    def __init__(self, tokens: Iterable[str]):
        self.tokens = list(tokens)
        if tuple(self.tokens[: len(SPECIAL)]) != SPECIAL:
            raise InputDataError(f"vocabulary must start with {SPECIAL}")
        self.index = {t: i for i, t in enumerate(self.tokens)}
        if len(self.index) != len(self.tokens):
            raise InputDataError("vocabulary has repeated tokens")

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, smiles: str, max_length: int) -> tuple[np.ndarray, bool]:
        """Token ids padded to `max_length` and whether the molecule was truncated."""
        ids = [self.index.get(t, UNK_ID) for t in tokenize(smiles)]
        out: np.ndarray = np.zeros(max_length, dtype=self.dtype)
        out[: min(len(ids), max_length)] = ids[:max_length]
        return out, len(ids) > max_length

    @property
    def dtype(self) -> type:
        return np.uint8 if len(self) <= 256 else np.uint16

    def save(self, uri: str) -> None:
        from pipekit.atomic import replacing_uri

        with replacing_uri(uri, "w") as fh:
            fh.write("\n".join(self.tokens) + "\n")

    @classmethod
    def load(cls, uri: str) -> Vocab:
        try:
            with open_uri(uri, "r") as fh:
                tokens = [line.rstrip("\n") for line in fh if line.strip()]
        except FileNotFoundError:
            raise InputDataError(f"{uri}: no vocabulary; run --step get_vocab first") from None
        try:
            return cls(tokens)
        except InputDataError as exc:
            raise InputDataError(f"{uri}: {exc}") from None

    @classmethod
    def from_counts(cls, counts: dict[str, int]) -> Vocab:
        """Most frequent first (ties by token), after the special tokens."""
        ordered = sorted(counts, key=lambda t: (-counts[t], t))
        return cls([*SPECIAL, *(t for t in ordered if t not in SPECIAL)])

    def digest(self) -> str:
        import hashlib

        return hashlib.sha256("\n".join(self.tokens).encode()).hexdigest()[:16]
