"""What a scientist checks on a figure, checked on every figure a test's steps save.

`FigureChecks.install(monkeypatch)` wraps matplotlib's `Figure.savefig`: each figure is drawn
and looked at before it is written. The rules, each a defect seen in the project's plots:

- every axes with data has a title (its own or the figure's), an x label and a y label (a
  panel whose axis is shared with a labelled one may leave that label out);
- an axes with two or more labelled artists has a legend (its own, or one of the figure's
  showing the same labels), of at most 8 entries;
- no data point or vertex lies under a legend (legends placed outside the axes pass);
- no scatter point lies outside the axes' limits, silently hidden (a plot keeps outliers in
  view by its range or by drawing them on the frame's edge);
- no axis label runs into another panel, and no two tick labels of an axis run into each other;
- an axis labelled "epoch" has whole-number ticks only;
- no line or histogram outline is drawn in a colour too light to read on white.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.collections import PathCollection
from matplotlib.figure import Figure

MAX_ENTRIES = 8
MAX_LUMINANCE = 0.85  # relative luminance of a line colour; white is 1


def _luminance(color) -> float:
    r, g, b = matplotlib.colors.to_rgb(color)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def _name(fig: Figure, ax: Axes) -> str:
    title = ax.get_title() or ax.get_title("left") or ax.get_title("right")
    sup = fig._suptitle.get_text() if fig._suptitle is not None else ""
    return title or sup or "(untitled axes)"


def _points(ax: Axes) -> np.ndarray:
    """Display coordinates of the data's vertices: line points and patch outlines, leaving
    out those on the axes' frame (spans drawn from edge to edge)."""
    parts = []
    for line in ax.get_lines():
        xy = np.asarray(line.get_xydata(), dtype=float)
        parts.append(ax.transData.transform(xy[np.isfinite(xy).all(1)]))
    for patch in ax.patches:
        verts = patch.get_path().vertices
        parts.append(patch.get_transform().transform(verts))
    if not parts:
        return np.zeros((0, 2))
    pts = np.concatenate(parts)
    in_axes = ax.transAxes.inverted().transform(pts)
    inner = ((in_axes > 0.002) & (in_axes < 0.998)).all(1)
    return pts[inner]


def _hidden_points(ax: Axes) -> int:
    """Scatter points (data coordinates) outside the axes' view limits."""
    (x0, x1), (y0, y1) = sorted(ax.get_xlim()), sorted(ax.get_ylim())
    hidden = 0
    for coll in ax.collections:
        if not isinstance(coll, PathCollection) or coll.get_offset_transform() is not ax.transData:
            continue
        xy = np.asarray(coll.get_offsets(), dtype=float).reshape(-1, 2)
        xy = xy[np.isfinite(xy).all(1)]
        out = (xy[:, 0] < x0) | (xy[:, 0] > x1) | (xy[:, 1] < y0) | (xy[:, 1] > y1)
        hidden += int(out.sum())
    return hidden


def _crowded_ticks(ax: Axes, renderer) -> list[str]:
    """Tick labels of the x or y axis whose boxes overlap a neighbour's."""
    found = []
    for axis, which in ((ax.xaxis, "x"), (ax.yaxis, "y")):
        boxes = [
            t.get_window_extent(renderer)
            for t in axis.get_ticklabels()
            if t.get_visible() and t.get_text()
        ]
        boxes.sort(key=lambda b: b.x0 if which == "x" else b.y0)
        if any(a.overlaps(b) for a, b in pairwise(boxes)):
            found.append(which)
    return found


def _labelled(ax: Axes) -> list[str]:
    artists = [*ax.get_lines(), *ax.collections, *ax.containers, *ax.patches]
    labels = {a.get_label() for a in artists}
    return sorted(lbl for lbl in labels if lbl and not lbl.startswith("_"))


def figure_problems(fig: Figure) -> list[str]:
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    problems: list[str] = []
    # labels some legend of the figure shows (one legend may serve panels that share it)
    legends = [ax.get_legend() for ax in fig.axes] + list(fig.legends)
    shown = {x.get_text() for lg in legends if lg is not None for x in lg.get_texts()}
    for ax in fig.axes:
        if ax.get_label() == "<colorbar>" or not ax.has_data():
            continue
        name = _name(fig, ax)
        if name == "(untitled axes)":
            problems.append("an axes without a title")
        if not any(s.get_ylabel() for s in ax.get_shared_y_axes().get_siblings(ax)):
            problems.append(f"{name}: no y label")
        if not any(s.get_xlabel() for s in ax.get_shared_x_axes().get_siblings(ax)):
            problems.append(f"{name}: no x label")
        legend = ax.get_legend()
        entries = _labelled(ax)
        if legend is None and len(entries) >= 2 and not set(entries) <= shown:
            problems.append(f"{name}: {len(entries)} labelled artists and no legend")
        if legend is not None:
            n = len(legend.get_texts())
            if n > MAX_ENTRIES:
                problems.append(f"{name}: a legend of {n} entries")
            box = legend.get_window_extent(renderer)
            pts = _points(ax)
            inside = (
                (pts[:, 0] > box.x0)
                & (pts[:, 0] < box.x1)
                & (pts[:, 1] > box.y0)
                & (pts[:, 1] < box.y1)
            )
            under = int(inside.sum())
            if under:
                problems.append(f"{name}: {under} data point(s) under the legend")
        for which in _crowded_ticks(ax, renderer):
            problems.append(f"{name}: its {which} tick labels run into each other")
        hidden = _hidden_points(ax)
        if hidden:
            problems.append(f"{name}: {hidden} scatter point(s) outside the axes, not shown")
        for text in (ax.xaxis.label, ax.yaxis.label):
            if not text.get_text():
                continue
            box = text.get_window_extent(renderer)
            for other in fig.axes:
                if other is not ax and box.overlaps(other.get_window_extent(renderer)):
                    problems.append(f"{name}: its label {text.get_text()!r} runs into a panel")
        for axis, label in ((ax.xaxis, ax.get_xlabel()), (ax.yaxis, ax.get_ylabel())):
            if label.strip().lower() == "epoch":
                lo, hi = sorted(axis.get_view_interval())
                ticks = [t for t in axis.get_ticklocs() if lo - 1e-9 <= t <= hi + 1e-9]
                if any(abs(t - round(t)) > 1e-9 for t in ticks):
                    problems.append(f"{name}: epoch ticks at {ticks}")
        for line in ax.get_lines():
            if (
                not line.get_label().startswith("_")
                and _luminance(line.get_color()) > MAX_LUMINANCE
            ):
                problems.append(f"{name}: line {line.get_label()!r} too light to read")
        for patch in ax.patches:
            if not patch.get_fill() and _luminance(patch.get_edgecolor()) > MAX_LUMINANCE:
                problems.append(f"{name}: outline {patch.get_label()!r} too light to read")
    return problems


@dataclass
class FigureChecks:
    """The figures saved while installed, by title, with their problems."""

    seen: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def install(self, monkeypatch) -> FigureChecks:
        original = Figure.savefig

        def checked(fig: Figure, *args, **kwargs):
            titles = [_name(fig, ax) for ax in fig.axes if ax.has_data()]
            self.seen.append(" | ".join(titles))
            self.problems += figure_problems(fig)
            return original(fig, *args, **kwargs)

        monkeypatch.setattr(Figure, "savefig", checked)
        return self


def report_problems(page: str, n_plots: int, caveat: bool, baselines: bool = True) -> list[str]:
    """What a run's report page (`pipekit.report`) must hold: the caveat where the data are
    synthetic (and none where they are not), the headline metrics, the baselines, the
    provenance, every plot inlined."""
    problems = []
    if ("class='caveat'" in page) != caveat:
        problems.append(f"caveat {'missing' if caveat else 'shown for real data'}")
    sections = ["Headline metrics", "Data and provenance", "Figures"]
    for section in sections + (["Baselines"] if baselines else []):
        if f"<h2>{section}</h2>" not in page:
            problems.append(f"no {section} section")
    if page.count("data:image/png;base64,") != n_plots:
        problems.append(f"{page.count('data:image/png;base64,')} inlined images, {n_plots} plots")
    if "<td>nan</td>" in page:
        problems.append("a NaN shown as nan")
    return problems
