"""preprocess: raw H5s -> `<run>_preprocessed.h5` per raw file and `preprocessed_all.h5`:
`input` (N, 48) = initial 24 + Box3D 24, `target` (N, 24) = final, and diagnostics per point
(`growth_rate`, `box3d_crossing` (N,) whether Box3D found an ELN-XLN crossing,
`conservation_violation` (initial vs final), `source`). Runs that cannot be used are listed
in `failed_runs.txt` with the reason.

Resumable: a per-run file whose recorded source (size and modification time or ETag) still
matches is kept; each file and the combined file appear whole or not at all.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass

import h5py
import numpy as np
from fsspec.core import url_to_fs

from pipekit.atomic import replacing_path, replacing_uri
from pipekit.errors import InputDataError
from pipekit.faults import crashpoint
from pipekit.progress import progress
from pipekit.uri import is_local, join_uri, local_path, open_uri, uri_exists
from rheidae.box3d import box3d
from rheidae.config.schema import PreprocessConfig
from rheidae.data.raw import read_file
from rheidae.moments import flat, unphysical, violations
from rheidae.paths import FAILED_RUNS, combined, per_run

log = logging.getLogger(__name__)

# v2: Box3D as published (mu and tau averaged), `box3d_crossing` (N,); v1 files are redone
FORMAT = "rheidae-preprocessed-v2"


def _recipe(cfg: PreprocessConfig) -> str:
    """What a per-run file's numbers depend on besides its source: a file made with another
    quadrature or other stability settings is redone, not reused."""
    return json.dumps(
        {"box3d": asdict(cfg.box3d), "stability": asdict(cfg.stability)}, sort_keys=True
    )


@dataclass(frozen=True)
class PreprocessResult:
    combined: str
    n_files: int
    n_points: int
    n_reused: int
    failed: dict[str, str]


def _fingerprint(fs, path: str) -> str:
    info = fs.info(path)
    stamp = info.get("ETag") or info.get("mtime") or info.get("LastModified") or ""
    return f"{info.get('size')}|{stamp}"


def _local_copy(fs, path: str, tmpdir: str) -> str:
    """h5py reads local files; a file in object storage is fetched once."""
    from fsspec.implementations.local import LocalFileSystem

    if isinstance(fs, LocalFileSystem):
        return path
    dest = join_uri(tmpdir, path.rsplit("/", 1)[-1])
    fs.get(path, dest)
    return dest


def _write(uri: str, arrays: dict[str, np.ndarray], attrs: dict[str, str | int]) -> None:
    with replacing_path(uri) as path, h5py.File(path, "w") as f:
        for name, arr in arrays.items():
            if arr.dtype.kind == "U":
                f.create_dataset(name, data=arr.astype("S"))
            else:
                f.create_dataset(name, data=arr)
        f.attrs.update({"format": FORMAT, **attrs})


def _read(uri: str) -> tuple[dict[str, np.ndarray], dict]:
    src = local_path(uri) if is_local(uri) else open_uri(uri, "rb")
    with h5py.File(src, "r") as f:
        return {k: f[k][()] for k in f}, dict(f.attrs)


def _screened(runs, cfg: PreprocessConfig, failed: dict[str, str]) -> dict[str, np.ndarray]:
    """A file's runs with Box3D's prediction beside them, less those refused (named in
    `failed` with the first reason that applies): unphysical moments, broken conservation."""
    box = box3d(runs.initial, cfg.box3d.lebedev_order)
    leak = violations(runs.final, runs.initial).max(-1)
    tol = cfg.stability.conservation_tolerance
    reasons = (
        (box.unphysical, "unphysical initial moments (non-finite, N <= 0 or |F| >= N)"),
        (unphysical(runs.final), "unphysical final moments (non-finite, N <= 0 or |F| >= N)"),
        (leak > tol, f"conservation violated between initial and final (> {tol})"),
    )
    keep = np.ones(len(runs.ids), dtype=bool)
    for mask, why in reasons:
        for i in np.flatnonzero(mask & keep):
            failed[runs.ids[i]] = why
        keep &= ~mask
    return {
        "input": np.concatenate([flat(runs.initial), flat(box.f4)], 1)[keep],
        "target": flat(runs.final)[keep],
        "growth_rate": runs.growth[keep],
        "box3d_crossing": box.crossing[keep],
        "conservation_violation": leak[keep],
        "source": np.array(runs.ids)[keep],
    }


def run(cfg: PreprocessConfig) -> PreprocessResult:
    import tempfile

    fs, root = url_to_fs(cfg.input.raw_dir)
    if not fs.isdir(root):
        raise InputDataError(f"input.raw_dir {cfg.input.raw_dir} is not a folder")
    sources = sorted(fs.glob(f"{root.rstrip('/')}/**/{cfg.input.pattern}"))
    out_dir = cfg.output.dir
    sources = [s for s in sources if not s.endswith(("_preprocessed.h5", "preprocessed_all.h5"))]
    if not sources:
        raise InputDataError(
            f"no {cfg.input.pattern} file under {cfg.input.raw_dir} (input.raw_dir, "
            "input.pattern): put the simulations' H5 files there, or write a demo set with "
            "`rheidae demo-data`"
        )
    failed: dict[str, str] = {}
    parts: list[dict[str, np.ndarray]] = []
    reused, recipe = 0, _recipe(cfg)
    with tempfile.TemporaryDirectory() as tmp:
        for src in progress(sources, desc="preprocess", unit="file"):
            name = src.rsplit("/", 1)[-1]
            out = per_run(out_dir, name)
            stamp = _fingerprint(fs, src)
            if uri_exists(out):
                arrays, attrs = _read(out)
                same = attrs.get("source_fingerprint") == stamp and attrs.get("recipe") == recipe
                if same and attrs.get("format") == FORMAT:
                    parts.append(arrays)
                    failed.update(json.loads(attrs.get("failed", "{}")))
                    reused += 1
                    continue
            runs, bad = read_file(_local_copy(fs, src, tmp), cfg.stability)
            failed.update(bad)
            arrays = _screened(runs, cfg, failed) if runs.ids else {}
            mine = {k: v for k, v in failed.items() if k == name or k.startswith(f"{name}#")}
            _write(
                out,
                arrays,
                {
                    "source": src,
                    "source_fingerprint": stamp,
                    "recipe": recipe,
                    "failed": json.dumps(mine),
                },
            )
            crashpoint("preprocess.run_written")
            if arrays:
                parts.append(arrays)
    parts = [p for p in parts if "input" in p and len(p["input"])]
    if not parts:
        raise InputDataError(
            f"no usable run in {cfg.input.raw_dir}: {len(failed)} refused (see {FAILED_RUNS})"
        )
    merged = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    _write(combined(out_dir), merged, {"sources": len(sources)})
    with replacing_uri(join_uri(out_dir, FAILED_RUNS), "w") as fh:
        fh.write("".join(f"{k}\t{v}\n" for k, v in sorted(failed.items())))
    n = len(merged["input"])
    log.info(
        "preprocess: %d points from %d files (%d reused), %d runs refused -> %s",
        n,
        len(sources),
        reused,
        len(failed),
        combined(out_dir),
    )
    return PreprocessResult(combined(out_dir), len(sources), n, reused, failed)
