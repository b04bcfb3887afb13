"""preprocess, pairs, train, evaluate and visualize on tiny data; bad inputs as one line."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from esm2pairs.cli import main
from esm2pairs.config import load_config
from esm2pairs.metrics import auroc, average_precision, f1
from esm2pairs.paths import Layout
from esm2pairs.steps import pairs, preprocess, train
from pipekit.checkpoint import load_checkpoint
from pipekit.errors import ConfigError, InputDataError
from pipekit.stats import bootstrap_ci
from pipekit.timing import TIMINGS
from tests.esm2pairs.conftest import write_esm_config
from tests.plotcheck import report_problems


def _raw(tmp_path: Path, raw_proteins: Path, edit) -> Path:
    df = pd.read_csv(raw_proteins, dtype=str)
    path = tmp_path / "raw.csv"
    edit(df).to_csv(path, index=False)
    return path


def test_preprocess_cleans_sequences_and_counts_what_it_warns_about(esm_config) -> None:
    res = preprocess.run(load_config(str(esm_config)))
    final = pd.read_csv(res.output)
    assert list(final.columns[:4]) == ["brc_fea_id", "assembly_id", "function", "canonical_segment"]
    assert {"esm2_ready_seq", "length"} <= set(final.columns)
    assert final.esm2_ready_seq.str.fullmatch(r"[A-Z]+").all()  # lower case and * cleaned
    assert (final.length == final.esm2_ready_seq.str.len()).all()
    assert (res.n_invalid, res.n_too_long, res.n_rows) == (1, 1, 160)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda d: d.drop(columns=["assembly_id"]),
            r"lacks required column\(s\) \['assembly_id'\]",
        ),
        (
            lambda d: d.assign(prot_seq=d.prot_seq.where(d.index != 1, "MKV")).assign(
                brc_fea_id=d.brc_fea_id.where(d.index != 1, d.brc_fea_id[0])
            ),
            r"1 brc_fea_id value\(s\) occur more than once: fig\|11320\.0\.peg\.1",
        ),
        (lambda d: d.iloc[:0], "has no rows"),
    ],
)
def test_bad_protein_tables_are_one_line_errors(
    tmp_path, raw_proteins, tiny_model, capsys, edit, message
) -> None:
    cfg = write_esm_config(tmp_path, _raw(tmp_path, raw_proteins, edit), tiny_model)
    assert main(["preprocess", "--config", str(cfg), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("esm2pairs: error:")
    import re

    assert re.search(message, err), err


def test_a_missing_raw_table_names_the_key_that_sets_it(esm_config, tmp_path, capsys) -> None:
    gone = tmp_path / "nowhere.csv"
    argv = ["preprocess", "--config", str(esm_config), "-q"]
    assert main([*argv, "--set", f"paths.raw_protein_file={gone}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"esm2pairs: error: raw protein table not found: {gone} (paths.raw_protein_file)"


def test_unknown_config_keys_and_bundles_are_named(tmp_path, capsys) -> None:
    assert main(["pairs", "--config_bundle", "flu_b", "-q"]) == 2
    assert "'flu_b' is not a bundle; known: ['bunya', 'flu_a']" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="embeddings.poolng.*did you mean 'pooling'"):
        load_config(None, ["embeddings.poolng=cls"])
    with pytest.raises(ConfigError, match="embeddings.pooling"):
        load_config("flu_a", ["embeddings.pooling=attn"])
    assert load_config("flu_a", ["embeddings.pooling=attention"]).embeddings.pooling == "attention"


def test_pairs_split_by_isolate_with_both_labels(embedded) -> None:
    cfg = load_config(str(embedded))
    layout = Layout.from_config(cfg)
    final = pd.read_csv(layout.input_file, dtype=str).set_index("brc_fea_id")
    seen: dict[str, str] = {}
    for split in ("train", "val", "test"):
        df = pd.read_csv(layout.pairs(split), dtype={"brc_a": str, "brc_b": str})
        assert list(df.columns[:3]) == ["brc_a", "brc_b", "label"]
        iso_a = final.loc[df.brc_a, "assembly_id"].to_numpy()
        iso_b = final.loc[df.brc_b, "assembly_id"].to_numpy()
        assert ((iso_a == iso_b) == (df.label == 1)).all()  # positives: one isolate
        assert (
            final.loc[df.brc_a, "function"].to_numpy() != final.loc[df.brc_b, "function"].to_numpy()
        ).all()
        for iso in set(iso_a) | set(iso_b):
            assert seen.setdefault(iso, split) == split, f"isolate {iso} in two splits"
        assert set(df.label) == {0, 1}


def test_selected_functions_and_sampling_restrict_pairs(embedded_copy) -> None:
    chosen = ["Hemagglutinin precursor", "Neuraminidase protein"]
    over = [f"dataset.selected_functions={json.dumps(chosen)}"]
    res = pairs.run(load_config(str(embedded_copy), over))
    layout = Layout.from_config(load_config(str(embedded_copy)))
    df = pd.concat(pd.read_csv(layout.pairs(s)) for s in ("train", "val", "test"))
    assert set(df.func_a) | set(df.func_b) == set(chosen)
    assert sum(c["isolates"] for c in res.counts.values()) == 40
    with pytest.raises(InputDataError, match="match no protein"):
        pairs.run(load_config(str(embedded_copy), ['dataset.selected_functions=["Spike"]']))
    with pytest.raises(InputDataError, match="sampled_isolates.txt not found: run the embed"):
        pairs.run(load_config(str(embedded_copy), ["sampling.max_isolates_to_process=10"]))


def test_training_refuses_pairs_whose_ids_the_cache_lacks(embedded_copy) -> None:
    layout = Layout.from_config(load_config(str(embedded_copy)))
    df = pd.read_csv(layout.pairs("train"), dtype=str)
    df.loc[0, "brc_b"] = "fig|999.9.peg.9"
    df.to_csv(layout.pairs("train"), index=False)
    with pytest.raises(
        InputDataError, match=r"1 brc_fea_id\(s\) .* no embedding in the cache: fig\|999"
    ):
        train.run(load_config(str(embedded_copy)))


def test_resumed_training_equals_an_uninterrupted_run(tmp_path, embedded) -> None:
    import shutil

    runs = {}
    for name, plan in (("straight", [3]), ("resumed", [1, 3])):
        root = tmp_path / name
        shutil.copytree(embedded.parent, root)
        over = [f"paths.data_dir={root / 'data'}", "training.patience=10"]
        for epochs in plan:
            train.run(
                load_config(str(root / "config.yaml"), [*over, f"training.num_epochs={epochs}"]),
                resume=True,
            )
        layout = Layout.from_config(load_config(str(root / "config.yaml"), over))
        runs[name] = (
            load_checkpoint(layout.latest_model),
            json.loads(Path(layout.history).read_text()),
        )
    (a, ha), (b, hb) = runs["straight"], runs["resumed"]
    speedless = [[{k: v for k, v in e.items() if k not in TIMINGS} for e in h] for h in (ha, hb)]
    assert speedless[0] == speedless[1] and len(ha) == 3
    for key, value in a["model_state"].items():
        assert torch.equal(value, b["model_state"][key]), key


def test_evaluate_and_visualize_write_the_contract_files(
    tmp_path, embedded_copy, capsys, figure_checks
) -> None:
    cfg_path = str(embedded_copy)
    assert main(["train", "--config", cfg_path, "--smoke", "-q"]) == 0
    assert "smoke: one batch forward and backward" in capsys.readouterr().out
    assert main(["evaluate", "--config", cfg_path, "-q"]) == 2  # the smoke check saves nothing
    assert "(run train first)" in capsys.readouterr().err
    assert main(["train", "--config", cfg_path, "-q"]) == 0
    assert main(["evaluate", "--config", cfg_path, "-q"]) == 0
    caveat = ["--set", "report.caveat=random weights"]  # as the demo's config says
    assert main(["visualize", "--config", cfg_path, "-q", *caveat]) == 0
    layout = Layout.from_config(load_config(cfg_path))
    pred = pd.read_csv(layout.predictions("test"))
    assert {"brc_a", "brc_b", "label", "score", "pred"} <= set(pred.columns)
    report = json.loads(Path(layout.evaluation_metrics("test")).read_text())
    o = report["overall"]
    assert o["auroc"] == pytest.approx(auroc(pred.label, pred.score))
    assert len(report["per_segment_pair"]) == 6  # 4 functions: 6 segment pairs
    for name in ("roc_curve_test", "pr_curve_test", "score_distribution_test"):
        assert (Path(layout.visualizations_dir) / f"{name}.png").stat().st_size > 1000
        assert (Path(layout.visualizations_dir) / f"{name}_data.csv").is_file()
    # every figure readable, the report of the shape every system's has (a random-weight
    # model on synthetic isolates: the caveat shows)
    assert len(figure_checks.seen) == 3 and figure_checks.problems == []
    page = (Path(layout.visualizations_dir) / "index.html").read_text()
    assert report_problems(page, n_plots=3, caveat=True) == []
    assert f"{o['auroc']:.3g} [" in page  # the headline AUROC with its interval
    # over proteins (product weights, conservative): wider than rows resampled as if independent
    shown = re.search(re.escape(f"{o['auroc']:.3g} [") + r"([\d.]+), ([\d.]+)\]", page)
    assert shown is not None and "proteins, 1000 resamples" in page
    y, s = pred.label.to_numpy(), pred.score.to_numpy()
    rlo, rhi = bootstrap_ci(auroc, y, s)
    assert float(shown[2]) - float(shown[1]) > 1.2 * (rhi - rlo)
    assert "random weights" in page and "class='caveat'" in page
    # the embeddings' provenance is the cache's own record, as evaluate read it
    assert report["embeddings"]["model_signature"][:16] in page


def _auroc_by_pairs(y, s) -> float:
    pos, neg = s[y == 1], s[y == 0]
    return float(np.mean([(p > n) + 0.5 * (p == n) for p in pos for n in neg]))


def _ap_by_definition(y, s) -> float:
    """Mean over positives of the precision among items scoring at least as high."""
    return float(
        np.mean(
            [((s >= s[i]) & (y == 1)).sum() / (s >= s[i]).sum() for i in np.flatnonzero(y == 1)]
        )
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_agree_with_their_definitions(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 60)
    s = np.round(rng.random(60) + 0.3 * y, 1)  # ties on purpose
    assert auroc(y, s) == pytest.approx(_auroc_by_pairs(y, s))
    assert average_precision(y, s) == pytest.approx(_ap_by_definition(y, s))
    pred = s >= 0.5
    tp = (pred & (y == 1)).sum()
    assert f1(y, s, 0.5) == pytest.approx(2 * tp / (pred.sum() + y.sum()))
    assert math.isnan(auroc(np.ones(5), s[:5]))


def test_the_gate_holds_auroc_and_auprc_to_the_baseline(tmp_path, capsys) -> None:
    """The platform's gate with this system's judge: the first run pins the baseline, a
    drop over --max-drop fails in one line, a passing model is promoted."""

    def report(name: str, auroc_: float, auprc_: float) -> str:
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps({"overall": {"auroc": auroc_, "auprc": auprc_, "f1": 0.5}}))
        return str(path)

    record = tmp_path / "accepted.json"
    gate = ["gate", "--accepted", str(record), "--max-drop", "0.02"]
    assert main([*gate, "--metrics", report("first", 0.85, 0.80), "--model", "s3://m/1"]) == 0
    assert "baseline set" in capsys.readouterr().out
    assert main([*gate, "--metrics", report("worse", 0.85, 0.75), "--model", "s3://m/2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "AUPRC 0.7500 vs reference 0.8000 (drop 0.0500 > 0.02)" in err
    assert main([*gate, "--metrics", report("fine", 0.86, 0.79), "--model", "s3://m/3"]) == 0
    saved = json.loads(record.read_text())
    assert saved["format"] == "esm2pairs-promotion-v1"
    assert (
        saved["accepted"]["model_uri"] == "s3://m/3"
        and saved["baseline"]["model_uri"] == "s3://m/1"
    )
    assert [h["model_uri"] for h in saved["history"]] == ["s3://m/1", "s3://m/3"]


def test_pairs_reads_the_protein_table_that_embed_was_given(embedded_copy, tmp_path, capsys):
    """`embed --input_file F --output_dir D` then `pairs` with the same flags: the table and
    the sampled isolates are found where embed took and left them."""
    layout = Layout.from_config(load_config(str(embedded_copy)))
    table = tmp_path / "elsewhere" / "proteins.csv"
    table.parent.mkdir()
    Path(layout.input_file).rename(table)
    run_dir = tmp_path / "run"
    flags = ["--input_file", str(table), "--output_dir", str(run_dir)]
    assert main(["embed", "--config", str(embedded_copy), "-q", *flags]) == 0
    assert (run_dir / "sampled_isolates.txt").is_file()
    assert main(["pairs", "--config", str(embedded_copy), "-q"]) != 0
    assert "protein table not found" in (err := capsys.readouterr().err)
    assert "(run preprocess first, or pass --input_file)" in err
    assert main(["pairs", "--config", str(embedded_copy), "-q", *flags]) == 0
    assert len(pd.read_csv(layout.pairs("train"))) > 0
