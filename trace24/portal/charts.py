"""The portal's charts, drawn on the server as SVG (matplotlib): no script runs in the browser.

Text in the pictures is dates and numbers only; titles and legends are the page's (Chinese, from
labels.yaml), so no CJK font is needed on the server. A chart is drawn once per set of figures
and kept (the figures are the cache key, so a new run's figures draw anew).
"""

from __future__ import annotations

import functools
import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.dates as mdates
import matplotlib.pyplot as plt

# Fixed metadata and ids, so the same figures give the same bytes.
_SVG = {"format": "svg", "metadata": {"Date": None, "Creator": None}}
matplotlib.rcParams["svg.hashsalt"] = "trace24"


def _render(fig) -> bytes:
    ax = fig.axes[0]
    ax.xaxis.set_major_locator(mdates.AutoDateLocator(minticks=3, maxticks=7))
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%m-%d"))
    ax.spines[["top", "right"]].set_visible(False)
    out = io.BytesIO()
    fig.savefig(out, bbox_inches="tight", **_SVG)
    plt.close(fig)
    return out.getvalue()


@functools.lru_cache(maxsize=256)
def _curve(days: tuple) -> bytes:
    fig, ax = plt.subplots(figsize=(7, 2.6))
    dates = [d for d, _, _ in days]
    ax.bar(dates, [n for _, n, _ in days], color="#b22222", width=0.8)
    ax.bar(dates, [a for _, _, a in days], bottom=[n for _, n, _ in days], color="#f4a460", width=0.8)
    ax.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    return _render(fig)


def epidemic_curve(days: list[tuple]) -> bytes:
    """Cases per day: symptomatic (dark) with asymptomatic stacked on top (light)."""
    return _curve(tuple(days))


@functools.lru_cache(maxsize=256)
def _compliance(days: tuple) -> bytes:
    fig, ax = plt.subplots(figsize=(7, 2.6))
    dates = [d[0] for d in days]
    listed = [d[2] / (d[2] + d[3]) if d[2] + d[3] else None for d in days]
    controlled = [d[5] / (d[5] + d[6]) if d[5] + d[6] else None for d in days]
    ax.plot(dates, [x if x is not None else float("nan") for x in listed], marker="o", color="#1f4e79")
    ax.plot(dates, [x if x is not None else float("nan") for x in controlled], marker="s", color="#2e8b57",
            linestyle="--")
    ax.set_ylim(0, 1.05)
    ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
    return _render(fig)


def compliance_chart(days: list[tuple]) -> bytes:
    """Share of cases whose contacts were listed (solid) and controlled (dashed) within 24 hours, per day."""
    return _compliance(tuple(days))
