"""Plots as a step's outputs: each PNG written beside the `*_data.csv` it was drawn from, an
index page, and that page with its images inlined (a KFP HTML artifact is one file)."""

from __future__ import annotations

import base64
import io
import re
from typing import Any

from pipekit.atomic import replacing_uri
from pipekit.uri import join_uri, open_uri


def save_plot(fig: Any, data: Any, folder: str, name: str, float_format: str = "%.6g") -> str:
    """`<folder>/<name>.png` and `<name>_data.csv` (a DataFrame), each whole; closes `fig`."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    with replacing_uri(join_uri(folder, f"{name}.png"), "wb") as fh:
        fh.write(buf.getvalue())
    with replacing_uri(join_uri(folder, f"{name}_data.csv"), "w") as fh:
        data.to_csv(fh, index=False, float_format=float_format)
    return f"{name}.png"


def write_index(folder: str, title: str, plots: list[str]) -> str:
    body = "".join(f'<h3>{p}</h3><img src="{p}">\n' for p in plots)
    uri = join_uri(folder, "index.html")
    with replacing_uri(uri, "w") as fh:
        fh.write(f"<html><body><h2>{title}</h2>\n{body}</body></html>\n")
    return uri


def inlined_index(folder: str) -> str:
    """The folder's index page with every PNG it shows inlined as a data URI."""
    with open_uri(join_uri(folder, "index.html"), "r") as fh:
        page = fh.read()

    def inline(match: re.Match) -> str:
        with open_uri(join_uri(folder, match.group(1)), "rb") as img:
            return f'src="data:image/png;base64,{base64.b64encode(img.read()).decode()}"'

    return re.sub(r'src="([^"]+\.png)"', inline, page)
