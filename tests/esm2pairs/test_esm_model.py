"""The model side of the cache: a signature that sees every weight byte (one file or the
shards of a sharded checkpoint), and attention pooling as the model's own attention defines
it, checked against a direct computation on the model's outputs."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from esm2pairs.config import load_config
from esm2pairs.demo import make_tiny_esm
from esm2pairs.embedder import Embedder, model_signature, weight_files
from esm2pairs.steps import embed, preprocess
from pipekit.errors import InputDataError
from tests.esm2pairs.conftest import write_esm_config

SEQS = ["MKTAYIAKQRQISFVKSHFSRQ", "MSTNPKPQRKTKRNTNRRPQDVKFPGG", "GAVL"]


def _nudge_last_layer(weights: Path) -> str:
    """One value of the model's last layer changed by 1e-3, the file rewritten as the hub
    writes it; returns the tensor's name."""
    tensors = load_file(str(weights))
    last = max(
        (k for k in tensors if k.startswith("encoder.layer.") and k.split(".")[2].isdigit()),
        key=lambda k: (int(k.split(".")[2]), k),
    )
    tensors[last].view(-1)[-1] += 1e-3
    save_file(tensors, str(weights), metadata={"format": "pt"})
    return last


def test_one_value_changed_in_the_last_layer_makes_the_cache_refuse_the_model(
    tmp_path: Path, raw_proteins: Path
) -> None:
    model = make_tiny_esm(tmp_path / "esm2_big", seed=3, hidden=128, layers=4)
    (weights,) = weight_files(model)
    assert weights.stat().st_size > 2 << 20  # larger than any prefix a digest might read
    (tmp_path / "run").mkdir()
    cfg_path = write_esm_config(tmp_path / "run", raw_proteins, model)
    cfg = load_config(str(cfg_path))
    preprocess.run(cfg)
    assert embed.run(cfg).n_computed > 0

    head = weights.read_bytes()[: 1 << 20]
    size = weights.stat().st_size
    name = _nudge_last_layer(weights)  # fine-tuned in place: same size, same first MiB
    assert name.startswith("encoder.layer.3.")
    assert weights.stat().st_size == size and weights.read_bytes()[: 1 << 20] == head
    with pytest.raises(InputDataError, match="another model setup"):
        embed.run(load_config(str(cfg_path)))


def test_a_sharded_checkpoint_loads_and_every_shard_counts(tmp_path: Path) -> None:
    from transformers import EsmModel

    single = make_tiny_esm(tmp_path / "single", seed=4, hidden=64, layers=3)
    sharded = tmp_path / "sharded"
    EsmModel.from_pretrained(str(single), add_pooling_layer=False).save_pretrained(
        str(sharded), max_shard_size="150KB"
    )
    for f in single.iterdir():
        if f.name.startswith(("vocab", "tokenizer", "special")):
            shutil.copy(f, sharded / f.name)
    shards = weight_files(sharded)
    assert len(shards) >= 3 and (sharded / "model.safetensors.index.json").is_file()

    want = Embedder(single, "mean", "last", 120, "cpu").embed(SEQS)
    got = Embedder(sharded, "mean", "last", 120, "cpu").embed(SEQS)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)

    before = model_signature(sharded, "mean", "last", 120)
    assert model_signature(sharded, "mean", "last", 120) == before  # digests reused, stable
    assert (sharded / ".esm2pairs-weights.json").is_file()
    last = next(s for s in shards if "encoder.layer.2." in "".join(load_file(str(s))))
    _nudge_last_layer(last)
    assert model_signature(sharded, "mean", "last", 120) != before
    (sharded / shards[0].name).unlink()
    with pytest.raises(InputDataError, match="names shard"):
        model_signature(sharded, "mean", "last", 120)


@pytest.fixture(scope="module")
def peaky_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model whose attention is far from uniform (queries and keys scaled up): at
    initialisation's scale every token attends to all alike and the pooling would be the
    mean, which could not tell a wrong weighting from a right one."""
    folder = make_tiny_esm(tmp_path_factory.mktemp("esm") / "peaky", seed=5)
    (weights,) = weight_files(folder)
    tensors = load_file(str(weights))
    for k in tensors:
        if ".attention.self.query." in k or ".attention.self.key." in k:
            tensors[k] *= 12.0
    save_file(tensors, str(weights), metadata={"format": "pt"})
    return folder


@pytest.mark.parametrize("layer", ["last", 1])
def test_attention_pooling_weights_residues_by_the_cls_tokens_attention(
    peaky_model: Path, tmp_path: Path, raw_proteins: Path, layer: str | int
) -> None:
    from transformers import AutoTokenizer, EsmModel

    tiny_model = peaky_model
    cfg = load_config(
        str(write_esm_config(tmp_path, raw_proteins, tiny_model)),
        ["embeddings.pooling=attention", f"embeddings.layer={layer}"],
    )
    e = cfg.embeddings
    got = Embedder(tiny_model, e.pooling, e.layer, 120, "cpu").embed(SEQS)  # one padded batch

    tok = AutoTokenizer.from_pretrained(str(tiny_model))
    model = EsmModel.from_pretrained(
        str(tiny_model), add_pooling_layer=False, attn_implementation="eager"
    ).eval()
    index = model.config.num_hidden_layers if layer == "last" else 1
    for row, s in zip(got, SEQS, strict=True):
        with torch.no_grad():
            out = model(**tok(s, return_tensors="pt"), output_hidden_states=True,
                        output_attentions=True)  # fmt: skip
        hidden = out.hidden_states[index][0, 1:-1]  # (L, D): the residues
        cls_row = out.attentions[index - 1][0, :, 0, 1:-1].mean(0)  # (L,), heads averaged
        want = (hidden * (cls_row / cls_row.sum())[:, None]).sum(0)
        np.testing.assert_allclose(row, want.numpy(), rtol=1e-4, atol=1e-5)
        mean = hidden.mean(0).numpy()
        assert not np.allclose(row, mean, atol=1e-4)  # not the mean under another name
