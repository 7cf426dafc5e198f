"""One style for every figure: paper font sizes, colour-blind palette, Agg, provenance."""
from __future__ import annotations

import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402

from vgbench.provenance import FIGURE_PNG_KEY, atomic_write  # noqa: E402

PALETTE = "colorblind"


def apply() -> None:
    sns.set_theme(context="paper", style="whitegrid", palette=PALETTE, font_scale=0.9)
    plt.rcParams.update({"figure.dpi": 120, "savefig.dpi": 200, "savefig.bbox": "tight",
                         "axes.titlesize": 8, "legend.fontsize": 7, "legend.title_fontsize": 7,
                         "pdf.fonttype": 42})


def empty(ax, text="no data in this profile", blank=True):
    """A panel with nothing to draw says so. blank=False where the note itself is a finding (every
    norm underflowed): a figure whose every panel is blank is left out of the paper (see save)."""
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=8, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])
    ax._vgbench_blank = blank


def is_blank(fig) -> bool:
    """Whether every visible panel of `fig` had no data in this profile."""
    shown = [ax for ax in fig.axes if ax.get_visible()]
    return bool(shown) and all(getattr(ax, "_vgbench_blank", False) for ax in shown)


def save(fig, path_stem: str, provenance: dict) -> list[str]:
    """Write <stem>.pdf and <stem>.png with the provenance in each file's metadata."""
    if is_blank(fig):   # the paper leaves it out (only then the key: other figures' bytes unchanged)
        provenance = {**provenance, "blank": True}
    blob = json.dumps(provenance, sort_keys=True)
    # no CreationDate: the same data and code give the same bytes (the provenance says what made it)
    meta = {"pdf": {"Title": provenance.get("figure", ""), "Subject": blob, "Creator": "vgbench", "CreationDate": None},
            "png": {"Title": provenance.get("figure", ""), FIGURE_PNG_KEY: blob, "Software": "vgbench"}}
    out = []
    for fmt, md in meta.items():
        with atomic_write(f"{path_stem}.{fmt}") as tmp:
            fig.savefig(tmp, format=fmt, metadata=md)
        out.append(f"{path_stem}.{fmt}")
    plt.close(fig)
    return out
