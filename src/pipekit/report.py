"""One report per run, the same shape for every system: a self-contained `index.html` (plots
inlined, so it renders wherever it is copied: a browser, the Kubeflow UI's HTML artifact).

In order: the caveat (synthetic data, random weights) where there is one, the headline
metrics, the baselines in the same measures, the data's provenance, then every figure with
the name of the CSV it was drawn from.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pipekit.atomic import replacing_uri
from pipekit.uri import join_uri, open_uri

INDEX = "index.html"


@dataclass(frozen=True)
class Table:
    header: Sequence[str]
    rows: Sequence[Sequence[object]]

    def __post_init__(self) -> None:
        for row in self.rows:
            if len(row) != len(self.header):
                raise ValueError(f"row {row!r} has {len(row)} cells, header {len(self.header)}")


@dataclass(frozen=True)
class Report:
    title: str
    headline: Table  # the model's own figures
    baselines: Table | None  # what the model is measured against, in the same measures
    provenance: Mapping[str, str]  # inputs, model, split, ...: where the numbers come from
    caveat: str | None = None  # e.g. "synthetic data": shown first, on a coloured band
    notes: Sequence[str] = field(default_factory=tuple)  # one-line readings of the tables


def fmt(x: object, digits: int = 3) -> str:
    """A cell: floats to `digits` significant places, None and NaN as n/a."""
    if x is None:
        return "n/a"
    if isinstance(x, float):
        return "n/a" if x != x else f"{x:.{digits}g}"
    return str(x)


def interval(value: float, lo: float, hi: float, digits: int = 3) -> str:
    """`0.224 [0.182, 0.286]`: a value with its interval."""
    return f"{fmt(value, digits)} [{fmt(lo, digits)}, {fmt(hi, digits)}]"


def _table(t: Table) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in t.header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(fmt(c))}</td>" for c in row) + "</tr>" for row in t.rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_STYLE = (
    "body{font-family:sans-serif;max-width:70em;margin:1em auto;padding:0 1em}"
    "table{border-collapse:collapse;margin:0.5em 0}"
    "td,th{border:1px solid #ccc;padding:0.25em 0.6em;text-align:left}"
    ".caveat{background:#fff3cd;padding:0.6em;border:1px solid #e0c060}"
    "img{max-width:100%}"
)


def render(report: Report, plots: Sequence[str]) -> str:
    """The page; `plots` are the PNGs' URIs (each beside its `<name>_data.csv`)."""
    title = html.escape(report.title)
    parts = [
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{title}</title>"
        f"<style>{_STYLE}</style></head><body><h1>{title}</h1>"
    ]
    if report.caveat:
        parts.append(f"<p class='caveat'><b>Caveat.</b> {html.escape(report.caveat)}</p>")
    parts.append("<h2>Headline metrics</h2>" + _table(report.headline))
    if report.baselines is not None:
        parts.append("<h2>Baselines</h2>" + _table(report.baselines))
    parts += [f"<p>{html.escape(n)}</p>" for n in report.notes]
    made = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    prov = Table(("", ""), [*report.provenance.items(), ("report written", made)])
    parts.append("<h2>Data and provenance</h2>" + _table(prov))
    parts.append("<h2>Figures</h2>")
    for uri in plots:
        name = uri.rsplit("/", 1)[-1].removesuffix(".png")
        with open_uri(uri, "rb") as fh:
            data = base64.b64encode(fh.read()).decode("ascii")
        label = html.escape(name.replace("_", " "))
        parts.append(
            f"<h3>{label}</h3><img alt='{label}' src='data:image/png;base64,{data}'/>"
            f"<p><small>data: {html.escape(name)}_data.csv</small></p>"
        )
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(folder: str, report: Report, plots: Sequence[str]) -> str:
    """`<folder>/index.html`, written whole; `plots` are PNG names in `folder` or URIs."""
    uris = [p if "/" in p else join_uri(folder, p) for p in plots]
    uri = join_uri(folder, INDEX)
    page = render(report, uris)
    with replacing_uri(uri, "w") as fh:
        fh.write(page)
    return uri


def read_report(folder: str) -> str:
    """The page `write_report` wrote (for a KFP HTML artifact, which is one file)."""
    with open_uri(join_uri(folder, INDEX), "r") as fh:
        return fh.read()
