"""Plots as a step's outputs: each PNG written beside the `*_data.csv` it was drawn from (the
page that shows them is `pipekit.report`'s)."""

from __future__ import annotations

import io
from typing import Any

from pipekit.atomic import replacing_uri
from pipekit.uri import join_uri


def save_plot(fig: Any, data: Any, folder: str, name: str, float_format: str = "%.6g") -> str:
    """`<folder>/<name>.png` and `<name>_data.csv` (a DataFrame), each whole; closes `fig`."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()  # panels' labels clear of their neighbours
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    with replacing_uri(join_uri(folder, f"{name}.png"), "wb") as fh:
        fh.write(buf.getvalue())
    with replacing_uri(join_uri(folder, f"{name}_data.csv"), "w") as fh:
        data.to_csv(fh, index=False, float_format=float_format)
    return f"{name}.png"


def epoch_ticks(ax: Any, epochs: Any) -> None:
    """Ticks at whole epochs only: each epoch up to 10 of them, else whole numbers (matplotlib's
    own ticks fall on 1.5 and 2.5, or on 0.96 ... 1.04 for a single epoch)."""
    from matplotlib.ticker import MaxNLocator

    values = sorted({int(e) for e in epochs})
    if len(values) <= 10:
        ax.set_xticks(values)
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
