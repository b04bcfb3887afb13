"""Belka's data layer: the BELKA inputs, the molecule table, the sharded feature store."""
