"""A tiny SVG plotter for the static leaderboard (no JavaScript, no CDN, fast).

The site draws its per-entry figures as inline SVG: one page with six figures renders in
milliseconds, where matplotlib would take ~0.1 s a figure. Only presentation attributes are
used (no ``style=`` attributes), so the page works under a strict Content-Security-Policy.
Every text that reaches the SVG goes through :func:`html.escape`.
"""

from __future__ import annotations

import hashlib
import html
import math

import numpy as np

__all__ = ["Axes", "nice_ticks", "COLORS"]

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#17becf", "#7f7f7f"]


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round tick values covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo]
    raw = (hi - lo) / max(n, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = min((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw), default=10 * mag)
    start = math.ceil(lo / step - 1e-9) * step
    ticks = []
    t = start
    while t <= hi + 1e-9 * step:
        ticks.append(round(t, 10))
        t += step
    return ticks


def _fmt(v: float) -> str:
    return f"{v:.1f}"


def _tick_label(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 1000 or abs(v) < 0.01:
        return f"{v:.1e}"
    return f"{v:g}"


class Axes:
    """One SVG figure with a single set of axes.

    Parameters
    ----------
    xlim, ylim : (float, float)
        Data ranges (expanded by 0 if equal).
    width, height : int
        Pixel size of the figure.
    title, xlabel, ylabel : str
        Plain text (escaped here).
    """

    def __init__(self, xlim, ylim, width=420, height=300, title="", xlabel="", ylabel=""):
        self.w, self.h = width, height
        self.ml, self.mr, self.mt, self.mb = 56, 12, 26, 42
        x0, x1 = (float(v) for v in xlim)
        y0, y1 = (float(v) for v in ylim)
        if not x1 > x0:
            x0, x1 = x0 - 1, x1 + 1
        if not y1 > y0:
            y0, y1 = y0 - 1, y1 + 1
        self.xlim, self.ylim = (x0, x1), (y0, y1)
        self.title, self.xlabel, self.ylabel = title, xlabel, ylabel
        self.body: list[str] = []
        self.legend: list[tuple[str, str, str]] = []

    # coordinates -------------------------------------------------------------------
    def px(self, x):
        x0, x1 = self.xlim
        return self.ml + (np.asarray(x, dtype=float) - x0) / (x1 - x0) * (self.w - self.ml - self.mr)

    def py(self, y):
        y0, y1 = self.ylim
        return self.h - self.mb - (np.asarray(y, dtype=float) - y0) / (y1 - y0) * (self.h - self.mt - self.mb)

    # primitives --------------------------------------------------------------------
    def line(self, x, y, color=COLORS[0], width=1.5, dash=None, label=None):
        """Polyline through finite points (NaN splits the line)."""
        x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
        ok = np.isfinite(x) & np.isfinite(y)
        seg: list[str] = []
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""

        def flush():
            if len(seg) > 1:
                self.body.append(f'<polyline fill="none" stroke="{color}" stroke-width="{width}"{dash_attr} '
                                 f'points="{" ".join(seg)}"/>')

        for xi, yi, oki in zip(self.px(x), self.py(y), ok):
            if oki:
                seg.append(f"{_fmt(xi)},{_fmt(yi)}")
            else:
                flush()
                seg = []
        flush()
        if label:
            self.legend.append(("line", color, label))

    def step_hist(self, edges, values, color=COLORS[0], width=1.5, label=None):
        """Histogram outline (values per bin between edges)."""
        e = np.asarray(edges, dtype=float)
        v = np.asarray(values, dtype=float)
        xs = np.repeat(e, 2)[1:-1]
        ys = np.repeat(v, 2)
        self.line(np.concatenate([[e[0]], xs, [e[-1]]]), np.concatenate([[0], ys, [0]]), color, width, label=label)

    def points(self, x, y, color=COLORS[0], r=2.5, label=None, title=None):
        for xi, yi in zip(self.px(x), self.py(y)):
            if np.isfinite(xi) and np.isfinite(yi):
                tip = f"<title>{html.escape(title)}</title>" if title else ""
                self.body.append(f'<circle cx="{_fmt(xi)}" cy="{_fmt(yi)}" r="{r}" fill="{color}">{tip}</circle>')
        if label:
            self.legend.append(("point", color, label))

    def errorbar(self, x, y, yerr, color=COLORS[0], label=None, r=3):
        for xi, yi, ei in zip(np.asarray(x, float), np.asarray(y, float), np.asarray(yerr, float)):
            if not (np.isfinite(xi) and np.isfinite(yi)):
                continue
            if np.isfinite(ei):
                X = _fmt(float(self.px(xi)))
                self.body.append(f'<line x1="{X}" x2="{X}" y1="{_fmt(float(self.py(yi - ei)))}" '
                                 f'y2="{_fmt(float(self.py(yi + ei)))}" stroke="{color}" stroke-width="1.2"/>')
        self.points(x, y, color, r, label)

    def bars(self, x, heights, width, color=COLORS[0], labels=None):
        y0 = max(self.ylim[0], 0.0)
        for i, (xi, hi) in enumerate(zip(x, heights)):
            if not np.isfinite(hi):
                continue
            xa, xb = float(self.px(xi - width / 2)), float(self.px(xi + width / 2))
            ya, yb = float(self.py(hi)), float(self.py(y0))
            tip = f"<title>{html.escape(labels[i])}</title>" if labels else ""
            self.body.append(f'<rect x="{_fmt(xa)}" y="{_fmt(min(ya, yb))}" width="{_fmt(xb - xa)}" '
                             f'height="{_fmt(abs(yb - ya))}" fill="{color}" fill-opacity="0.8">{tip}</rect>')

    def density(self, x, y, bins=60, color="#1f77b4"):
        """2-D histogram as rectangles whose opacity grows with the log of the count."""
        x, y = np.asarray(x, float), np.asarray(y, float)
        ok = np.isfinite(x) & np.isfinite(y)
        hist, xe, ye = np.histogram2d(x[ok], y[ok], bins=bins, range=[self.xlim, self.ylim])
        if hist.max() <= 0:
            return
        alpha = 0.15 + 0.85 * np.log1p(hist) / np.log1p(hist.max())
        pxe, pye = self.px(xe), self.py(ye)  # pixel edges, computed once (thousands of cells)
        w = np.diff(pxe) + 0.3
        h = -np.diff(pye) + 0.3
        self.body.extend(
            f'<rect x="{pxe[i]:.1f}" y="{pye[j + 1]:.1f}" width="{w[i]:.1f}" height="{h[j]:.1f}" '
            f'fill="{color}" fill-opacity="{alpha[i, j]:.2f}"/>'
            for i, j in zip(*np.nonzero(hist)))

    def hline(self, y, color="#888", dash="3,3"):
        self.line(list(self.xlim), [y, y], color, 1, dash)

    def vline(self, x, color="#888", dash="3,3"):
        self.line([x, x], list(self.ylim), color, 1, dash)

    def text(self, x, y, s, anchor="start", size=11, color="#222"):
        """Text at data coordinates."""
        self.body.append(f'<text x="{_fmt(float(self.px(x)))}" y="{_fmt(float(self.py(y)))}" '
                         f'font-size="{size}" fill="{color}" text-anchor="{anchor}">{html.escape(str(s))}</text>')

    def note(self, s, line=0):
        """Text in the top-left corner of the axes."""
        self.body.append(f'<text x="{self.ml + 6}" y="{self.mt + 14 + 13 * line}" font-size="11" '
                         f'fill="#222">{html.escape(str(s))}</text>')

    # output ------------------------------------------------------------------------
    def _axes(self, xticks=None, yticks=None, xticklabels=None) -> list[str]:
        out = []
        left, right, top, bottom = self.ml, self.w - self.mr, self.mt, self.h - self.mb
        out.append(f'<rect x="{left}" y="{top}" width="{right - left}" height="{bottom - top}" '
                   f'fill="none" stroke="#444" stroke-width="1"/>')
        xt = xticks if xticks is not None else nice_ticks(*self.xlim)
        for i, t in enumerate(xt):
            if not self.xlim[0] - 1e-12 <= t <= self.xlim[1] + 1e-12:
                continue
            X = _fmt(float(self.px(t)))
            lab = xticklabels[i] if xticklabels else _tick_label(t)
            out.append(f'<line x1="{X}" x2="{X}" y1="{bottom}" y2="{bottom + 4}" stroke="#444"/>')
            out.append(f'<text x="{X}" y="{bottom + 16}" font-size="10" text-anchor="middle" '
                       f'fill="#333">{html.escape(lab)}</text>')
        for t in (yticks if yticks is not None else nice_ticks(*self.ylim)):
            if not self.ylim[0] - 1e-12 <= t <= self.ylim[1] + 1e-12:
                continue
            Y = _fmt(float(self.py(t)))
            out.append(f'<line x1="{left - 4}" x2="{left}" y1="{Y}" y2="{Y}" stroke="#444"/>')
            out.append(f'<text x="{left - 6}" y="{Y}" dy="3" font-size="10" text-anchor="end" '
                       f'fill="#333">{html.escape(_tick_label(t))}</text>')
        out.append(f'<text x="{(left + right) / 2:.1f}" y="{self.h - 8}" font-size="11" text-anchor="middle" '
                   f'fill="#222">{html.escape(self.xlabel)}</text>')
        out.append(f'<text x="14" y="{(top + bottom) / 2:.1f}" font-size="11" text-anchor="middle" '
                   f'fill="#222" transform="rotate(-90 14 {(top + bottom) / 2:.1f})">{html.escape(self.ylabel)}</text>')
        out.append(f'<text x="{(left + right) / 2:.1f}" y="16" font-size="12" font-weight="bold" '
                   f'text-anchor="middle" fill="#111">{html.escape(self.title)}</text>')
        # Legend in the top-right corner, as wide as its longest label (~5.6 px a character).
        width = max((len(label) for _, _, label in self.legend), default=0) * 5.6 + 26
        x = max(left + 4, right - 6 - width)
        for i, (kind, color, label) in enumerate(self.legend):
            y = top + 12 + 13 * i
            if kind == "line":
                out.append(f'<line x1="{_fmt(x)}" x2="{_fmt(x + 16)}" y1="{y - 4}" y2="{y - 4}" stroke="{color}" '
                           f'stroke-width="2"/>')
            else:
                out.append(f'<circle cx="{_fmt(x + 8)}" cy="{y - 4}" r="3" fill="{color}"/>')
            out.append(f'<text x="{_fmt(x + 20)}" y="{y}" font-size="10" fill="#222">{html.escape(label)}</text>')
        return out

    def to_svg(self, xticks=None, yticks=None, xticklabels=None, css_class="plot") -> str:
        """The figure as an inline ``<svg>`` element."""
        # Named by content: the same figure always gets the same id (pages are byte-identical
        # however many were rendered before), different figures on one page different ones.
        digest = hashlib.sha256(f"{self.w} {self.h} {self.ml} {self.mt} {self.title}".encode()
                                + "".join(self.body).encode()).hexdigest()
        cid = f"clip-{digest[:12]}"
        clip = (f'<clipPath id="{cid}"><rect x="{self.ml}" y="{self.mt}" width="{self.w - self.ml - self.mr}" '
                f'height="{self.h - self.mt - self.mb}"/></clipPath>')
        return (f'<svg class="{css_class}" xmlns="http://www.w3.org/2000/svg" width="{self.w}" height="{self.h}" '
                f'viewBox="0 0 {self.w} {self.h}" role="img"><title>{html.escape(self.title)}</title>'
                f'<defs>{clip}</defs><g clip-path="url(#{cid})">' + "".join(self.body) + "</g>"
                + "".join(self._axes(xticks, yticks, xticklabels)) + "</svg>")
