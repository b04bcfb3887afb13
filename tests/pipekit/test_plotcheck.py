"""The figure checks catch the defects they name, on figures drawn here by hand, and pass a
figure drawn without them."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pytest

from tests.plotcheck import figure_problems


def _good():
    fig, ax = plt.subplots()
    x = np.arange(1, 5)
    ax.plot(x, x**2, "o-", label="train")
    ax.plot(x, x**2 + 1, "s-", label="validation")
    ax.set(title="loss", xlabel="epoch", ylabel="loss", xticks=x)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.15))
    return fig, ax


def test_a_clean_figure_passes() -> None:
    fig, _ = _good()
    assert figure_problems(fig) == []
    plt.close(fig)


@pytest.mark.parametrize(
    "spoil, problem",
    [
        (lambda ax: ax.set_ylabel(""), "no y label"),
        (lambda ax: ax.set_xticks([1, 1.5, 2, 2.5]), "epoch ticks"),
        (lambda ax: ax.legend(loc="upper left", bbox_to_anchor=(0.0, 1.0)), "under the legend"),
        (lambda ax: ax.get_legend().remove(), "no legend"),
        (lambda ax: ax.plot([1, 2], [3, 4], color="#f4f4f4", label="379 K"), "too light"),
        (lambda ax: [ax.plot([1], [i], label=f"{i}") for i in range(9)] and ax.legend(), "entries"),
        (lambda ax: ax.set_yticks(np.linspace(0, 16, 60)), "tick labels run into each other"),
        (lambda ax: ax.scatter([2, 30], [5, 5], s=4) and ax.set_xlim(0, 5), "outside the axes"),
    ],
)
def test_each_defect_is_named(spoil, problem) -> None:
    fig, ax = _good()
    if problem == "under the legend":  # a point where the legend goes
        ax.plot([1.05], [15.5], "x", label="_point")
    spoil(ax)
    found = figure_problems(fig)
    assert any(problem in p for p in found), found
    plt.close(fig)


def test_a_label_running_into_the_next_panel_is_named() -> None:
    fig, axes = plt.subplots(1, 3, figsize=(6, 2.5))  # crowded, and no tight_layout
    for ax in axes:
        ax.plot([1, 2], [100000.0, 200000.0])
        ax.set(title="t", xlabel="epoch", ylabel="a long loss label", xticks=[1, 2])
    found = figure_problems(fig)
    assert any("runs into a panel" in p for p in found), found
    fig.tight_layout()
    assert not any("runs into a panel" in p for p in figure_problems(fig))
    plt.close(fig)


def test_scatter_outliers_drawn_on_the_frame_pass() -> None:
    fig, ax = plt.subplots()
    x = np.array([0.5, 2.0, 30.0])
    ax.scatter(np.clip(x, 0, 5), x / 10, s=4)
    ax.set(title="t", xlabel="x", ylabel="y", xlim=(0, 5), ylim=(0, 5))
    assert figure_problems(fig) == []
    plt.close(fig)
