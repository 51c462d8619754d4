"""Plots as SVG text, drawn on the server from data the domain answered.

Written by hand rather than with matplotlib: a page of an experiment with 10 segments and 8
variants draws a dozen plots, and matplotlib took over a second per figure on these machines
(the page must render in under 500 ms); plain SVG takes about a millisecond. Every plot is an
`<svg role="img">` with a `<title>` and a `<desc>` a screen reader reads, axes labelled with
their units, a zero or reference line, 95% intervals as whiskers and the Okabe–Ito
colour-blind-safe palette. Presentation only: no statistics are computed here.
"""

import math
from dataclasses import dataclass
from datetime import datetime
from itertools import count

from markupsafe import Markup, escape

# Okabe & Ito (2008), reordered so that the first colours contrast most on white; the yellow
# comes last and is drawn with a dash so that it is never the only cue.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#56B4E9", "#E69F00", "#000000", "#F0E442")
DASHES = ("", "6 3", "2 2", "8 3 2 3")
INK = "#222"
GRID = "#ddd"
FONT = 'font-family="system-ui, sans-serif" font-size="11"'

_ids = count(1)


def colour(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def dash(index: int) -> str:
    return DASHES[(index // len(PALETTE)) % len(DASHES)]


def percent(value: float, digits: int = 0) -> str:
    return f"{value * 100:+.{digits}f}%"


@dataclass(frozen=True)
class Scale:
    """A linear map from data [low, high] to pixels [start, end]."""

    low: float
    high: float
    start: float
    end: float

    def __call__(self, value: float) -> float:
        span = self.high - self.low or 1.0
        return self.start + (value - self.low) / span * (self.end - self.start)


def nice_ticks(low: float, high: float, wanted: int = 5) -> list[float]:
    """Round tick values covering [low, high]."""
    if not math.isfinite(low) or not math.isfinite(high):
        return [0.0]
    if high <= low:
        high = low + 1.0
    raw = (high - low) / max(wanted, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step - 1e-9) * step
    ticks = []
    value = first
    while value <= high + step * 1e-9:
        ticks.append(round(value, 12))
        value += step
    return ticks


def padded(low: float, high: float, share: float = 0.05) -> tuple[float, float]:
    if high <= low:
        return low - 0.5, high + 0.5
    pad = (high - low) * share
    return low - pad, high + pad


def _open(width: int, height: int, title: str, description: str) -> tuple[str, list[str]]:
    ident = f"plot-{next(_ids)}"
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" class="plot" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'aria-labelledby="{ident}-t {ident}-d" {FONT}>',
        f'<title id="{ident}-t">{escape(title)}</title>',
        f'<desc id="{ident}-d">{escape(description)}</desc>',
        f'<rect width="{width}" height="{height}" fill="#fff"/>',
    ]
    return ident, parts


def _text(x, y, content, anchor="start", **attributes) -> str:
    extra = "".join(f' {k.replace("_", "-")}="{escape(v)}"' for k, v in attributes.items())
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" fill="{INK}"{extra}>'
        f"{escape(content)}</text>"
    )


def _x_axis(parts, scale: Scale, y: float, top: float, label: str, fmt) -> None:
    for tick in nice_ticks(scale.low, scale.high):
        x = scale(tick)
        parts.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top:.1f}" y2="{y:.1f}" stroke="{GRID}"/>'
        )
        parts.append(_text(x, y + 13, fmt(tick), "middle"))
    parts.append(_text((scale.start + scale.end) / 2, y + 28, label, "middle", font_weight="600"))


def _y_axis(parts, scale: Scale, x: float, right: float, label: str, fmt) -> None:
    for tick in nice_ticks(min(scale.low, scale.high), max(scale.low, scale.high), 4):
        y = scale(tick)
        parts.append(
            f'<line x1="{x:.1f}" x2="{right:.1f}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID}"/>'
        )
        parts.append(_text(x - 4, y + 4, fmt(tick), "end"))
    middle = (scale.start + scale.end) / 2
    parts.append(
        f'<text transform="translate(12 {middle:.1f}) rotate(-90)" text-anchor="middle" '
        f'fill="{INK}" font-weight="600">{escape(label)}</text>'
    )


def _legend(parts, names: list[str], x: float, y: float) -> float:
    """One line per name, from (x, y); returns the y below it."""
    for i, name in enumerate(names):
        row = y + i * 15
        parts.append(
            f'<line x1="{x:.1f}" x2="{x + 18:.1f}" y1="{row - 4:.1f}" y2="{row - 4:.1f}" '
            f'stroke="{colour(i)}" stroke-width="3" stroke-dasharray="{dash(i)}"/>'
        )
        parts.append(_text(x + 24, row, name))
    return y + len(names) * 15


def _close(parts) -> Markup:
    parts.append("</svg>")
    return Markup("".join(parts))


# -- forest plots --------------------------------------------------------------------------------


def forest(
    rows: list[dict],
    *,
    title: str,
    x_label: str,
    reference: float = 0.0,
    fmt=percent,
    width: int = 720,
) -> Markup:
    """One row per estimate: a point and its 95% whisker against a reference line.

    rows: {"label", "mean", "low", "high", "group"?, "colour"?, "note"?}; a row with mean None
    is drawn as its note (e.g. "control") on the reference line; "group" starts a heading row.
    """
    label_width = min(300, 60 + 6 * max((len(r["label"]) for r in rows), default=10))
    top, row_height, bottom = 10, 17, 40
    lines = []
    group = object()
    for row in rows:
        if row.get("group") is not None and row["group"] != group:
            group = row["group"]
            lines.append(("group", group))
        lines.append(("row", row))
    height = top + row_height * len(lines) + bottom
    values = [reference]
    for row in rows:
        if row.get("mean") is not None:
            values += [row["low"], row["high"], row["mean"]]
    low, high = padded(min(values), max(values))
    scale = Scale(low, high, label_width + 10, width - 20)
    described = [
        f"{r['label']}: {fmt(r['mean'], 1)} "
        f"(95% interval {fmt(r['low'], 1)} to {fmt(r['high'], 1)})"
        if r.get("mean") is not None
        else f"{r['label']}: {r.get('note', 'no estimate')}"
        for r in rows
    ]
    _, parts = _open(width, height, title, "; ".join(described) + ".")
    axis_y = top + row_height * len(lines) + 4
    _x_axis(parts, scale, axis_y, top, x_label, lambda v: fmt(v))
    x0 = scale(reference)
    parts.append(
        f'<line x1="{x0:.1f}" x2="{x0:.1f}" y1="{top}" y2="{axis_y}" stroke="{INK}" '
        'stroke-dasharray="4 3"/>'
    )
    for i, (kind, item) in enumerate(lines):
        y = top + row_height * i + row_height / 2
        if kind == "group":
            parts.append(_text(4, y + 4, item, font_weight="700"))
            continue
        parts.append(_text(label_width, y + 4, _shorten(item["label"], label_width), "end"))
        ink = item.get("colour", INK)
        if item.get("mean") is None:
            parts.append(
                f'<path d="M{x0 - 5:.1f} {y:.1f}l5 -5l5 5l-5 5z" fill="#fff" stroke="{INK}"/>'
            )
            parts.append(_text(x0 + 9, y + 4, item.get("note", "control"), font_style="italic"))
            continue
        a, b, m = scale(item["low"]), scale(item["high"]), scale(item["mean"])
        parts.append(
            f'<line x1="{a:.1f}" x2="{b:.1f}" y1="{y:.1f}" y2="{y:.1f}" stroke="{ink}" '
            'stroke-width="2"/>'
            f'<line x1="{a:.1f}" x2="{a:.1f}" y1="{y - 4:.1f}" y2="{y + 4:.1f}" stroke="{ink}"/>'
            f'<line x1="{b:.1f}" x2="{b:.1f}" y1="{y - 4:.1f}" y2="{y + 4:.1f}" stroke="{ink}"/>'
            f'<circle cx="{m:.1f}" cy="{y:.1f}" r="4" fill="{ink}"/>'
        )
    return _close(parts)


def _shorten(label: str, width: float) -> str:
    fits = int(width / 6)
    return label if len(label) <= fits else label[: fits - 1] + "…"


def meta_forest(studies: list[dict], pooled: dict | None, *, title: str, width: int = 720):
    """A meta-analysis forest plot: one row per experiment (square sized by its weight) and the
    pooled estimate as a diamond. studies: {"label", "mean", "low", "high", "weight"}."""
    label_width = min(300, 60 + 6 * max((len(s["label"]) for s in studies), default=10))
    top, row_height, bottom = 10, 20, 40
    n = len(studies) + (1 if pooled else 0)
    height = top + row_height * n + bottom
    values = [0.0]
    for s in [*studies, *([pooled] if pooled else [])]:
        values += [s["low"], s["high"]]
    low, high = padded(min(values), max(values))
    scale = Scale(low, high, label_width + 10, width - 20)
    described = [
        f"{s['label']}: {percent(s['mean'], 1)} ({percent(s['low'], 1)} to "
        f"{percent(s['high'], 1)}), weight {s['weight']:.0%}"
        for s in studies
    ]
    if pooled:
        described.append(
            f"pooled: {percent(pooled['mean'], 1)} ({percent(pooled['low'], 1)} to "
            f"{percent(pooled['high'], 1)})"
        )
    _, parts = _open(width, height, title, "; ".join(described) + ".")
    axis_y = top + row_height * n + 4
    _x_axis(parts, scale, axis_y, top, "Relative lift (95% interval)", percent)
    x0 = scale(0)
    parts.append(
        f'<line x1="{x0:.1f}" x2="{x0:.1f}" y1="{top}" y2="{axis_y}" stroke="{INK}" '
        'stroke-dasharray="4 3"/>'
    )
    for i, s in enumerate(studies):
        y = top + row_height * i + row_height / 2
        parts.append(_text(label_width, y + 4, _shorten(s["label"], label_width), "end"))
        a, b, m = scale(s["low"]), scale(s["high"]), scale(s["mean"])
        side = 4 + 8 * math.sqrt(max(s["weight"], 0.0))
        parts.append(
            f'<line x1="{a:.1f}" x2="{b:.1f}" y1="{y:.1f}" y2="{y:.1f}" stroke="{PALETTE[0]}" '
            'stroke-width="2"/>'
            f'<rect x="{m - side / 2:.1f}" y="{y - side / 2:.1f}" width="{side:.1f}" '
            f'height="{side:.1f}" fill="{PALETTE[0]}"/>'
        )
    if pooled:
        y = top + row_height * len(studies) + row_height / 2
        a, b, m = scale(pooled["low"]), scale(pooled["high"]), scale(pooled["mean"])
        parts.append(_text(label_width, y + 4, "pooled", "end", font_weight="700"))
        parts.append(
            f'<path d="M{a:.1f} {y:.1f}L{m:.1f} {y - 7:.1f}L{b:.1f} {y:.1f}L{m:.1f} {y + 7:.1f}Z" '
            f'fill="{PALETTE[1]}"/>'
        )
    return _close(parts)


def interval_bar(mean: float | None, low: float | None, high: float | None, *, label: str):
    """A small inline bar: a lift's 95% interval on a fixed -100%..+150% scale (clipped), so
    that bars of different learnings compare at a glance; the tick is no difference."""
    width, height = 140, 16
    _, parts = _open(width, height, label, label)
    scale = Scale(-1.0, 1.5, 4, width - 4)
    x0 = scale(0)
    parts.append(f'<line x1="{x0}" x2="{x0}" y1="1" y2="{height - 1}" stroke="{INK}"/>')
    if mean is not None and low is not None and high is not None:
        clip = lambda v: min(max(scale(v), 2), width - 2)  # noqa: E731
        ink = PALETTE[2] if low > 0 else PALETTE[1] if high < 0 else "#777"
        parts.append(
            f'<rect x="{clip(low):.1f}" y="5" width="{max(clip(high) - clip(low), 1):.1f}" '
            f'height="6" fill="{ink}" opacity="0.55"/>'
            f'<circle cx="{clip(mean):.1f}" cy="8" r="3" fill="{ink}"/>'
        )
    return _close(parts)


# -- curves and series ---------------------------------------------------------------------------


def densities(curves: list[dict], *, title: str, x_label: str, fmt, width: int = 720):
    """Posterior densities, one line per arm: curves {"label", "x": […], "y": […]}."""
    height, left, top, bottom = 260, 50, 10, 40
    legend_x = width - 230
    xs = [x for c in curves for x in c["x"]] or [0.0, 1.0]
    ys = [y for c in curves for y in c["y"]] or [1.0]
    sx = Scale(min(xs), max(xs), left, legend_x - 20)
    sy = Scale(0, max(ys) * 1.05 or 1.0, height - bottom, top)
    described = ", ".join(c["label"] for c in curves)
    _, parts = _open(width, height, title, f"Density of each arm's posterior: {described}.")
    _x_axis(parts, sx, height - bottom, top, x_label, fmt)
    parts.append(
        f'<text transform="translate(14 {(height - bottom + top) / 2:.1f}) rotate(-90)" '
        f'text-anchor="middle" fill="{INK}" font-weight="600">density</text>'
    )
    for i, c in enumerate(curves):
        points = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in zip(c["x"], c["y"], strict=True))
        parts.append(
            f'<polyline points="{points}" fill="none" stroke="{colour(i)}" stroke-width="2" '
            f'stroke-dasharray="{dash(i)}"/>'
        )
    _legend(parts, [_shorten(c["label"], 200) for c in curves], legend_x, top + 10)
    return _close(parts)


def series(
    x_labels: list[str],
    lines: dict[str, list[float]],
    *,
    title: str,
    x_label: str,
    y_label: str,
    y_fmt,
    y_max: float | None = None,
    width: int = 720,
    height: int = 240,
    legend: bool = True,
) -> Markup:
    """Lines over ordered x positions (periods, hours): {name: [value per x]}."""
    left, top, bottom = 60, 10, 42
    right = width - (230 if legend else 15)
    n = max(len(x_labels), 1)
    sx = Scale(0, max(n - 1, 1), left, right)
    peak = max([v for values in lines.values() for v in values] or [1.0])
    sy = Scale(0, y_max if y_max is not None else peak * 1.05 or 1.0, height - bottom, top)
    names = list(lines)
    last = {name: values[-1] for name, values in lines.items() if values}
    described = "; ".join(f"{name}: {y_fmt(v)} at the end" for name, v in last.items())
    _, parts = _open(width, height, title, f"{len(x_labels)} points. {described}.")
    _y_axis(parts, sy, left, right, y_label, y_fmt)
    shown = sorted({0, n - 1, *range(0, n, max(1, n // 6))})
    for i in shown:
        if i < len(x_labels):
            parts.append(_text(sx(i), height - bottom + 13, x_labels[i], "middle"))
    parts.append(
        _text((left + right) / 2, height - bottom + 30, x_label, "middle", font_weight="600")
    )
    for i, name in enumerate(names):
        values = lines[name]
        if len(values) == 1:
            parts.append(
                f'<circle cx="{sx(0):.1f}" cy="{sy(values[0]):.1f}" r="4" fill="{colour(i)}"/>'
            )
            continue
        points = " ".join(f"{sx(j):.1f},{sy(v):.1f}" for j, v in enumerate(values))
        parts.append(
            f'<polyline points="{points}" fill="none" stroke="{colour(i)}" stroke-width="2" '
            f'stroke-dasharray="{dash(i)}"/>'
        )
    if legend:
        _legend(parts, [_shorten(name, 200) for name in names], right + 15, top + 10)
    return _close(parts)


def time_label(moment: datetime | str) -> str:
    if isinstance(moment, str):
        return moment[5:16]
    return moment.strftime("%m-%d %H:%M")
