"""Belka: a SMILES transformer pre-trained with masked-language modelling and ECFP
prediction, then fine-tuned to predict binding to BRD4, HSA and sEH (the BELKA data)."""

PROTEINS = ("BRD4", "HSA", "sEH")
