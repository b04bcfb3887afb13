"""The feature store (the plan's TFRecord role): a folder of compressed shards written once.

`shard-NNNNN.npz` holds, for up to `features.shard_size` molecules: `tokens` (n, max_length)
token ids, `ecfp` (n, bits/8) packed Morgan bits, `labels` (n, 3) int8 (-1: unmeasured),
`mol_id` (n,) the molecule's row in belka.parquet, `subset` (n,) and `shared` (n,) int8 (-1:
unknown). `build.json` says what the shards are made from (written first, so a re-run
keeps finished shards only when it would make the same ones); `manifest.json` (written
last) lists the shards with their row counts per subset: without it a store is unfinished.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipekit.atomic import replacing_uri
from pipekit.errors import InputDataError
from pipekit.uri import join_uri, open_uri, uri_exists

FORMAT_VERSION = 1
MANIFEST, BUILD = "manifest.json", "build.json"
FIELDS = ("tokens", "ecfp", "labels", "mol_id", "subset", "shared")
N_SUBSETS = 3


def shard_name(i: int) -> str:
    return f"shard-{i:05d}.npz"


def write_shard(store: str, i: int, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """One shard, whole or not at all; returns its manifest entry, with the size and
    SHA-256 of its bytes (numpy writes the same arrays as the same bytes)."""
    buf = io.BytesIO()
    np.savez_compressed(buf, **{k: arrays[k] for k in FIELDS})  # type: ignore[arg-type]
    data = buf.getvalue()
    with replacing_uri(join_uri(store, shard_name(i))) as fh:
        fh.write(data)
    digest = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    return entry(i, arrays["subset"]) | digest


def entry(i: int, subset: np.ndarray) -> dict[str, Any]:
    counts = np.bincount(subset.astype(np.int64), minlength=N_SUBSETS)[:N_SUBSETS]
    return {"name": shard_name(i), "rows": len(subset), "by_subset": counts.tolist()}


def read_json(uri: str) -> dict[str, Any] | None:
    if not uri_exists(uri):
        return None
    with open_uri(uri, "r") as fh:
        return json.load(fh)


def write_json(uri: str, value: dict[str, Any]) -> None:
    with replacing_uri(uri, "w") as fh:
        json.dump(value, fh, indent=2)


@dataclass(frozen=True)
class Store:
    uri: str
    manifest: dict[str, Any]

    @classmethod
    def open(cls, uri: str, step: str = "make_dataset") -> Store:
        manifest = read_json(join_uri(uri, MANIFEST))
        if manifest is None:
            raise InputDataError(f"{uri}: not a finished feature store; run --step {step} first")
        if manifest.get("version") != FORMAT_VERSION:
            raise InputDataError(
                f"{uri}: store format {manifest.get('version')}, this code reads "
                f"{FORMAT_VERSION}; run --step {step} again"
            )
        return cls(uri.rstrip("/"), manifest)

    @property
    def shards(self) -> list[dict[str, Any]]:
        return self.manifest["shards"]

    @property
    def rows(self) -> int:
        return int(sum(s["rows"] for s in self.shards))

    def count(self, subsets: tuple[int, ...]) -> int:
        return int(sum(s["by_subset"][k] for s in self.shards for k in subsets))

    def read(self, i: int) -> dict[str, np.ndarray]:
        uri = join_uri(self.uri, self.shards[i]["name"])
        with open_uri(uri) as fh:
            data = fh.read()
        want = self.shards[i].get("sha256")  # stores made before digests were kept have none
        if want is not None and hashlib.sha256(data).hexdigest() != want:
            raise InputDataError(
                f"{uri}: its bytes do not match the manifest's SHA-256 (torn or replaced); "
                "run make_dataset again"
            )
        with np.load(io.BytesIO(data)) as z:
            return {k: z[k] for k in FIELDS}

    def check(self, vocab_digest: str, max_length: int) -> None:
        """Refuse a store made with another vocabulary or sequence length than the model's."""
        m = self.manifest
        if m["vocab_digest"] != vocab_digest:
            raise InputDataError(
                f"{self.uri} was made with another vocab.txt (digest {m['vocab_digest']}, "
                f"now {vocab_digest}); run --step make_dataset again"
            )
        if m["max_length"] != max_length:
            raise InputDataError(
                f"{self.uri} holds {m['max_length']} tokens per molecule, model.max_length is "
                f"{max_length}; run --step make_dataset again or set model.max_length"
            )
