"""The SMILES tokenizer, the vocabulary file, ECFP bits and their packing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from rdkit import Chem, DataStructs
from rdkit.Chem import AllChem

from belka.features import Featurizer
from belka.objectives import mask_tokens, unpack_bits
from belka.tokenizer import MASK_ID, PAD_ID, SPECIAL, UNK_ID, Vocab, tokenize
from pipekit.errors import InputDataError


def test_tokens_are_atoms_bonds_and_ring_digits() -> None:
    # a BELKA-like molecule: bracket atoms (chirality, the [H] that replaced [Dy]), Cl, Br
    smiles = "C#C[C@@H](CC(=O)N[H])Nc1nc(NCc2ccc(Cl)cc2Br)nc(N)n1"
    assert tokenize(smiles) == [
        "C", "#", "C", "[C@@H]", "(", "C", "C", "(", "=", "O", ")", "N", "[H]", ")", "N",
        "c", "1", "n", "c", "(", "N", "C", "c", "2", "c", "c", "c", "(", "Cl", ")", "c", "c",
        "2", "Br", ")", "n", "c", "(", "N", ")", "n", "1",
    ]  # fmt: skip
    assert tokenize("C%12CC%12") == ["C", "%12", "C", "C", "%12"]
    with pytest.raises(ValueError, match="untokenizable"):
        tokenize("CC&C")


def test_vocab_file_round_trip_unknown_tokens_and_truncation(tmp_path: Path) -> None:
    vocab = Vocab.from_counts({"C": 10, "c": 7, "(": 3, ")": 3, "O": 5})
    assert vocab.tokens[:3] == list(SPECIAL) and vocab.tokens[3:5] == ["C", "c"]
    vocab.save(str(tmp_path / "vocab.txt"))
    loaded = Vocab.load(str(tmp_path / "vocab.txt"))
    assert loaded.tokens == vocab.tokens and loaded.digest() == vocab.digest()
    ids, cut = loaded.encode("CC(O)N", 8)
    assert ids.tolist() == [3, 3, 6, 5, 7, UNK_ID, PAD_ID, PAD_ID] and not cut
    ids, cut = loaded.encode("CCCCCCCCCC", 8)
    assert cut and len(ids) == 8
    (tmp_path / "bad.txt").write_text("C\nc\n")
    with pytest.raises(InputDataError, match="bad.txt"):
        Vocab.load(str(tmp_path / "bad.txt"))
    with pytest.raises(InputDataError, match="get_vocab"):
        Vocab.load(str(tmp_path / "none.txt"))


def test_ecfp_bits_are_rdkits_morgan_bits_packed_and_unpacked_on_the_device() -> None:
    smiles = "O=C(N[H])C1CCN(c2nc(NCc3ccc(F)cc3)nc(NC3CC3)n2)CC1"
    f = Featurizer(Vocab.from_counts(dict.fromkeys(tokenize(smiles), 1)), 64, 2, 512)
    tokens, packed, cut = f(smiles)
    # RDKit's own (older) API for the same fingerprint: radius 2, 512 bits
    ref = AllChem.GetMorganFingerprintAsBitVect(Chem.MolFromSmiles(smiles), 2, nBits=512)
    want = np.zeros(512, dtype=np.uint8)
    DataStructs.ConvertToNumpyArray(ref, want)
    assert packed.shape == (64,) and packed.dtype == np.uint8
    assert np.array_equal(np.unpackbits(packed), want)
    unpacked = unpack_bits(torch.from_numpy(packed[None]), 512)
    assert torch.equal(unpacked[0], torch.from_numpy(want).float())
    assert not cut and tokens[len(tokenize(smiles)) :].max() == PAD_ID
    assert f("C1CC") is None  # an unclosed ring: RDKit cannot parse it


def test_masking_touches_only_real_tokens_at_about_the_rate() -> None:
    tokens = torch.full((200, 50), 5)
    tokens[:, 30:] = PAD_ID
    inputs, masked = mask_tokens(tokens, 0.15, torch.Generator().manual_seed(0))
    assert not masked[:, 30:].any()
    assert (inputs[masked] == MASK_ID).all() and (inputs[~masked] == tokens[~masked]).all()
    assert 0.13 < masked[:, :30].float().mean() < 0.17
