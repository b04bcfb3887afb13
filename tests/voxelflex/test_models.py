import pytest
import torch

from pipekit.errors import ConfigError
from voxelflex.models import create_model, list_models

ARCHS = ["multipath_rmsf_net", "densenet3d_regression", "dilated_resnet3d"]
SMALL = {
    "base_filters": 4,
    "num_residual_blocks": 2,
    "densenet_growth_rate": 4,
    "densenet_block_layers": [2, 2],
    "head_hidden": 8,
}


def test_registry_lists_the_three_architectures() -> None:
    assert list_models() == sorted(ARCHS)
    with pytest.raises(ConfigError, match="unknown model architecture 'nope'"):
        create_model("nope")


@pytest.mark.parametrize("name", ARCHS)
def test_shape_finite_and_every_parameter_gets_a_gradient(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, **SMALL)
    voxels = (torch.rand(6, 5, 21, 21, 21) < 0.02).float()  # (B, C, D, H, W)
    temp = torch.rand(6, 1)
    out = model(voxels, temp)
    assert out.shape == (6,)
    assert torch.isfinite(out).all() and (out >= 0).all()  # RMSF is positive
    out.sum().backward()
    no_grad = [
        n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0
    ]
    assert no_grad == []


@pytest.mark.parametrize("name", ARCHS)
def test_shared_voxels_equal_repeated_voxels(name: str) -> None:
    """Encoding each residue once and indexing equals feeding one grid per sample."""
    torch.manual_seed(0)
    model = create_model(name, **SMALL).eval()
    grids = (torch.rand(3, 5, 21, 21, 21) < 0.02).float()
    index = torch.tensor([0, 0, 1, 2, 2, 2])
    temp = torch.linspace(0, 1, 6).unsqueeze(1)
    with torch.no_grad():
        shared = model(grids, temp, index)
        repeated = model(grids[index], temp)
    torch.testing.assert_close(shared, repeated)
    # and temperature is an input the model uses
    assert not torch.allclose(shared[3:], shared[3].expand(3))
