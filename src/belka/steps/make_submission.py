"""make_submission: `submission.csv` (`id, binds`) for every test row, and the evaluation on
the validation molecules: average precision per protein for shared-block and non-shared-
block molecules apart, beside two baselines (each protein's training prevalence, and a
logistic regression on ECFP bits). Writes `evaluation_metrics.json` and
`val_predictions.parquet` (what visualize plots)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import torch

from belka import PROTEINS
from belka.baseline import fit_logreg, logreg_scores
from belka.config import Config
from belka.data.dataset import StoreStream, buffer_rows, make_loader
from belka.data.store import Store
from belka.metrics import finite_mean, masked_scores, mean_ap, protein_aps
from belka.models import BelkaSpec, create_model
from belka.paths import BEST_MODEL, EVALUATION, SUBMISSION, VAL_PREDICTIONS, Layout
from belka.steps.generate_parquet import SUBSET_TEST, SUBSET_TRAIN, SUBSET_VAL, test_ids_uri
from belka.tokenizer import Vocab
from pipekit.atomic import replacing_path, replacing_uri
from pipekit.checkpoint import load_checkpoint
from pipekit.device import amp_enabled, autocast, resolve_device
from pipekit.errors import InputDataError, PipelineError
from pipekit.progress import progress
from pipekit.stats import bootstrap_intervals
from pipekit.uri import apply_storage_options, open_uri, uri_exists

log = logging.getLogger(__name__)
GROUPS = {"all": None, "shared": 1, "non_shared": 0}


@dataclass(frozen=True)
class SubmissionResult:
    submission: str
    rows: int
    fallback_rows: int
    evaluation: str
    report: dict[str, Any]


@torch.inference_mode()
def predict(model, stream: StoreStream, device, amp: bool) -> dict[str, np.ndarray]:
    model.eval()
    out: dict[str, list] = {"mol_id": [], "labels": [], "shared": [], "ecfp": [], "score": []}
    for batch in progress(make_loader(stream, 0), desc="predict", unit="batch"):
        with autocast(device, amp):
            logits = model(batch["tokens"].long().to(device))
        out["score"].append(torch.sigmoid(logits.float()).cpu().numpy())
        for k in ("mol_id", "labels", "shared", "ecfp"):
            out[k].append(batch[k].numpy())
    if not out["mol_id"]:
        return {}
    return {k: np.concatenate(v) for k, v in out.items()}


def load_clf(uri: str, vocab: Vocab, device) -> torch.nn.Module:
    ckpt = load_checkpoint(uri, hint="run --step train_model --mode clf first")
    spec = BelkaSpec(**ckpt["model_spec"])
    if spec.mode != "clf":
        raise InputDataError(f"{uri} is a {spec.mode} model; make_submission needs a clf model")
    if ckpt.get("vocab_digest") != vocab.digest():
        raise InputDataError(f"{uri} was trained with another vocab.txt")
    model = create_model("belka", spec).to(device)
    try:
        model.load_state_dict(ckpt["model_state"])
    except RuntimeError as exc:
        first = str(exc).splitlines()[1].strip() if "\n" in str(exc) else str(exc)
        raise InputDataError(
            f"{uri}: its weights do not fit the model it names ({first})"
        ) from None
    return model


def _aps(labels: np.ndarray, *scores: np.ndarray) -> np.ndarray:
    """For each scorer: the AP of each protein over its measured rows, then their mean; then
    the model's (first scorer's) mean AP minus each other scorer's."""
    out, means = [], []
    for s in scores:
        aps = protein_aps(labels, s)
        means.append(finite_mean(aps))
        out += [*aps, means[-1]]
    return np.array(out + [means[0] - m for m in means[1:]])


def _grouped(labels, shared, scores: dict[str, np.ndarray], n_boot: int, seed: int) -> dict:
    """Per scorer and group: mean AP and each protein's AP and AUC, each AP with its 95%
    bootstrap interval over the group's molecules, positives counted; and the model's mean AP
    minus each baseline's, with the interval of the difference (paired: the same resamples)."""
    names = list(scores)  # the model first
    report: dict[str, Any] = {name: {} for name in names}
    report["model_minus"] = {}
    k = len(PROTEINS) + 1
    for group, flag in GROUPS.items():
        keep = np.ones(len(labels), bool) if flag is None else shared == flag
        y, ss = labels[keep], [scores[n][keep] for n in names]
        point = _aps(y, *ss)
        lo, hi = (
            bootstrap_intervals(_aps, y, *ss, n_boot=n_boot, seed=seed)
            if len(y)
            else (
                np.full_like(point, np.nan),
                np.full_like(point, np.nan),
            )
        )
        ci = [[_num(a), _num(b)] for a, b in zip(lo, hi, strict=True)]
        for i, name in enumerate(names):
            per = masked_scores(y, ss[i])
            for j, p in enumerate(PROTEINS):
                per[p]["ap_ci95"] = ci[i * k + j]
            report[name][group] = {
                "mean_ap": mean_ap(per),
                "mean_ap_ci95": ci[i * k + k - 1],
                "molecules": int(keep.sum()),
                "positives": {p: per[p]["positives"] for p in PROTEINS},
                "per_protein": per,
            }
        report["model_minus"][group] = {
            name: {
                "mean_ap_difference": float(point[len(names) * k + i]),
                "ci95": ci[len(names) * k + i],
            }
            for i, name in enumerate(names[1:])
        }
    return report


def _num(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None  # JSON has no NaN


def _submission(layout: Layout, test: dict[str, np.ndarray], prevalence: np.ndarray):
    table = pq.read_table(
        open_uri(layout.parquet),
        columns=["mol_id", *[f"id_{p}" for p in PROTEINS]],
        filters=[("subset", "==", SUBSET_TEST)],
    ).to_pandas()
    if table.empty:
        raise InputDataError(f"{layout.parquet}: no test molecules (subset 2) to submit")
    scores = pd.DataFrame(test.get("score", np.zeros((0, 3))), columns=list(PROTEINS))
    scores["mol_id"] = test.get("mol_id", np.zeros(0, np.int64))
    merged = table.merge(scores, on="mol_id", how="left")
    parts, fallback = [], 0
    for j, p in enumerate(PROTEINS):
        rows = merged[merged[f"id_{p}"].notna()]
        missing = rows[p].isna()
        fallback += int(missing.sum())
        parts.append(
            pd.DataFrame(
                {
                    "id": rows[f"id_{p}"].astype(np.int64),
                    "binds": rows[p].astype(float).fillna(prevalence[j]),
                }
            )
        )
    sub = pd.concat(parts)
    return _every_input_id(layout, sub, prevalence, fallback)


def _input_test_ids(layout: Layout) -> pd.DataFrame:
    """(id, protein index or -1) of every row of the raw test file, skipped rows included, as
    generate_parquet recorded them beside belka.parquet."""
    uri = test_ids_uri(layout.parquet)
    if not uri_exists(uri):
        raise InputDataError(f"{uri} not found: rerun generate_parquet (it lists the test ids)")
    return pd.read_parquet(open_uri(uri))


def _every_input_id(
    layout: Layout, sub: pd.DataFrame, prevalence: np.ndarray, fallback: int
) -> tuple[pd.DataFrame, int]:
    """The submission holds each id of the raw test file exactly once: ids whose rows
    generate_parquet skipped (no SMILES, an unknown protein) get the protein's training
    prevalence (the mean of the three for an unknown protein); a kept id without a row, or
    any id twice, is an error (the run exits non-zero rather than submit a short file)."""
    if sub["id"].duplicated().any():
        dup = sub.loc[sub["id"].duplicated(), "id"].iloc[0]
        raise PipelineError(f"submission: test id {dup} twice; rerun generate_parquet")
    wanted = _input_test_ids(layout)
    absent = wanted[~wanted["id"].isin(sub["id"])]
    lost = absent[absent["kept"]]
    if len(lost):
        raise PipelineError(
            f"submission: {len(lost)} of {len(wanted)} test ids have no row in "
            f"{layout.parquet} (e.g. id {int(lost['id'].iloc[0])}); rerun generate_parquet"
        )
    if len(absent):
        prot = absent["protein"].to_numpy().astype(int)
        binds = np.where(prot >= 0, prevalence[np.clip(prot, 0, None)], prevalence.mean())
        sub = pd.concat([sub, pd.DataFrame({"id": absent["id"].to_numpy(), "binds": binds})])
        log.warning("%d test ids were skipped rows: given the prevalence", len(absent))
    extra = ~sub["id"].isin(wanted["id"])
    if extra.any() or len(sub) != len(wanted):
        raise PipelineError(
            f"submission: {len(sub)} rows for {len(wanted)} test ids "
            f"({int(extra.sum())} not among the input's test ids)"
        )
    return sub.sort_values("id"), fallback + len(absent)


def _prevalence(layout: Layout) -> np.ndarray:
    """Each protein's binding rate among the measured training molecules, from the label
    columns of belka.parquet (the store would decompress every training shard for it)."""
    cols = [f"binds_{p}" for p in PROTEINS]
    pos, known = np.zeros(len(PROTEINS)), np.zeros(len(PROTEINS))
    table = pq.ParquetFile(open_uri(layout.parquet))
    for batch in table.iter_batches(batch_size=1_000_000, columns=[*cols, "subset"]):
        df = batch.to_pandas()
        df = df[df["subset"] == SUBSET_TRAIN]
        pos += df[cols].eq(1).sum().to_numpy()
        known += df[cols].notna().sum().to_numpy()
    return pos / np.maximum(known, 1)


def run(
    cfg: Config, model_path: str | None = None, layout: Layout | None = None
) -> SubmissionResult:
    apply_storage_options(cfg.data.storage_options)
    layout = layout or Layout.of(cfg)
    vocab = Vocab.load(layout.vocab)
    store = Store.open(layout.store)
    val_store = Store.open(layout.val_store, "create_val_dataset")
    device = resolve_device(cfg.training.device)
    amp = amp_enabled(device, cfg.training.mixed_precision)
    clf_uri = model_path or f"{layout.model_dir('clf')}/{BEST_MODEL}"
    model = load_clf(clf_uri, vocab, device)
    bs = cfg.training.batch_size
    bits = int(store.manifest["ecfp_bits"])

    train_stream = StoreStream(
        store,
        (SUBSET_TRAIN,),
        bs,
        shuffle=True,
        seed=cfg.system.seed,
        buffer_size=buffer_rows(cfg.training, cfg.system, store),
    )
    prevalence = _prevalence(layout)

    test = predict(model, StoreStream(store, (SUBSET_TEST,), bs, shuffle=False), device, amp)
    sub, fallback = _submission(layout, test, prevalence)
    if fallback:
        log.warning(
            "%d test rows have no features (skipped molecules): given the training prevalence",
            fallback,
        )
    with replacing_uri(layout.out(SUBMISSION), "w") as fh:
        sub.to_csv(fh, index=False, float_format="%.6g")

    val = predict(model, StoreStream(val_store, (SUBSET_VAL,), bs, shuffle=False), device, amp)
    if not val:
        raise InputDataError(f"{layout.val_store}: no validation molecules")
    logreg = fit_logreg(
        train_stream,
        bits,
        cfg.evaluation.baseline_max_train,
        cfg.evaluation.baseline_epochs,
        cfg.system.seed,
    )
    scores = {  # the model first: the differences are the model's minus each baseline's
        "model": val["score"],
        "prevalence": np.broadcast_to(prevalence, val["score"].shape).astype(np.float32),
        "fingerprint_logreg": logreg_scores(logreg, val["ecfp"], bits),
    }
    ev = cfg.evaluation
    report = _grouped(val["labels"], val["shared"], scores, ev.bootstrap_samples, cfg.system.seed)
    report["training_prevalence"] = dict(zip(PROTEINS, prevalence.tolist(), strict=True))
    report["submission_rows"] = len(sub)
    report["sources"] = {"clf_model": clf_uri, "feature_store": layout.store}
    with replacing_uri(layout.out(EVALUATION), "w") as fh:
        json.dump(report, fh, indent=2)
    frame = pd.DataFrame({"mol_id": val["mol_id"], "shared": val["shared"]})
    for j, p in enumerate(PROTEINS):
        frame[f"binds_{p}"] = val["labels"][:, j]
        for name, s in scores.items():
            frame[f"{name}_{p}"] = s[:, j]
    with replacing_path(layout.out(VAL_PREDICTIONS)) as local:
        frame.to_parquet(local, index=False)
    return SubmissionResult(
        layout.out(SUBMISSION), len(sub), fallback, layout.out(EVALUATION), report
    )
