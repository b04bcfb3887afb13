"""evaluate: the trained classifier on a split's pairs -> `predictions_<split>.csv` and
`evaluation_metrics_<split>.json` (AUROC, AUPRC, F1, overall and per segment pair)."""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from esm2pairs import metrics as m
from esm2pairs.config import Config
from esm2pairs.data.cache import CacheMeta
from esm2pairs.data.pair_loader import stage_in_memory
from esm2pairs.paths import Layout
from esm2pairs.steps.train import build, checked_cache, pair_batches, score
from pipekit.atomic import replacing_uri
from pipekit.checkpoint import load_checkpoint
from pipekit.device import resolve_device
from pipekit.errors import InputDataError, PipelineError
from pipekit.metrics import threshold_counts

log = logging.getLogger(__name__)

HEADLINE = ("auroc", "auprc", "f1")


@dataclass(frozen=True)
class EvalResult:
    split: str
    metrics: dict[str, Any]
    predictions: str


def load_classifier(layout: Layout, now: CacheMeta, device_name: str) -> tuple[Any, float, Any]:
    """The trained classifier, refused unless it was trained on embeddings made as the
    cache's (`now`) are."""
    ckpt = load_checkpoint(layout.trained_model, hint="run train first")
    try:
        model = build(ckpt["model_config"])
        model.load_state_dict(ckpt["model_state"])
        made_on = CacheMeta(**ckpt["cache"])
    except (KeyError, TypeError) as exc:
        raise InputDataError(
            f"{layout.trained_model} lacks {exc}: not an esm2pairs classifier"
        ) from None
    why = made_on.differs(now)
    if why:
        raise InputDataError(
            f"the classifier was trained on other embeddings than the cache's: {why}"
        )
    device = resolve_device(device_name)
    return model.to(device), float(ckpt["threshold"]), device


def headline(report: dict[str, Any]) -> dict[str, float]:
    """The numbers the Kubeflow UI shows: the overall metrics."""
    return {k: report["overall"][k] for k in HEADLINE}


def run(cfg: Config, split: str = "test") -> EvalResult:
    layout = Layout.from_config(cfg)
    cache, meta, index = checked_cache(layout)
    model, threshold, device = load_classifier(layout, meta, cfg.training.device)
    batches, pairs = pair_batches(cfg, layout, split, False, cache, index)
    stage_in_memory([batches])  # from object storage: sorted runs of rows, not a request per row
    scores = score(model, batches, device, cfg.training.num_workers)
    pred = pairs.assign(score=scores, pred=(scores >= threshold).astype(int))
    for col in ("func_a", "func_b"):
        if col not in pred:
            pred[col] = ""
    o = m.summary(pred["label"].to_numpy(), scores, threshold)
    report = {
        "split": split,
        "threshold": threshold,
        # what made the embeddings the classifier scored (the cache's own record)
        "embeddings": {k: getattr(meta, k) for k in ("model_name", "model_signature", "pooling")},
        "overall": o,
        "per_segment_pair": m.per_segment_pair(pred, threshold),
    }
    if not all(math.isfinite(v) for v in headline(report).values()):
        raise PipelineError(
            f"evaluation on {split} is undefined ({headline(report)}): the split needs both "
            "positive and negative pairs, and finite scores"
        )
    with replacing_uri(layout.predictions(split), "w") as fh:
        pred.to_csv(fh, index=False, float_format="%.6g")
    with replacing_uri(layout.evaluation_metrics(split), "w") as fh:
        json.dump(report, fh, indent=2)
    log.info(
        "%s: AUROC %.4f, AUPRC %.4f, F1 %.4f (%d pairs)",
        split,
        o["auroc"],
        o["auprc"],
        o["f1"],
        o["n"],
    )
    return EvalResult(split, report, layout.predictions(split))


def read_predictions(layout: Layout, split: str) -> pd.DataFrame:
    from pipekit.uri import open_uri, uri_exists

    uri = layout.predictions(split)
    if not uri_exists(uri):
        raise InputDataError(f"{uri} not found: run evaluate --split {split} first")
    with open_uri(uri, "rb") as fh:
        return pd.read_csv(fh)


def curve_points(labels: np.ndarray, scores: np.ndarray) -> pd.DataFrame:
    """ROC points at each distinct score, highest first (the precision-recall curve is
    `pipekit.metrics.pr_curve`'s)."""
    y = np.asarray(labels).astype(bool)
    threshold, tp, n = threshold_counts(y, scores)
    return pd.DataFrame(
        {
            "threshold": threshold,
            "fpr": (n - tp) / max((~y).sum(), 1),
            "tpr": tp / max(y.sum(), 1),
        }
    )
