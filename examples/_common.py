"""Shared bits of the walk-throughs: the command line (--quick, --out) and a matplotlib figure without pyplot."""

from __future__ import annotations

import argparse
from pathlib import Path


def parse(description: str, argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="short settings (what `make test` runs)")
    p.add_argument("--out", default=str(Path(__file__).parent / "out"), help="folder for the plots")
    args = p.parse_args(argv)
    args.out = Path(args.out)
    args.out.mkdir(parents=True, exist_ok=True)
    return args


def figure(ncols: int = 1, width: float = 5.0, height: float = 3.6):
    """A figure drawn on the Agg canvas: no GUI, no global pyplot state."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * ncols, height), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, ncols)
    return fig, axes


def save(fig, path: Path) -> None:
    fig.savefig(path, dpi=90)
    print(f"plot: {path}")
