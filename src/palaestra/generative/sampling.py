"""Sampling from trained generative runs: text from a language model, arrays from a GAN."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch

from palaestra.artifacts import atomic_write
from palaestra.errors import UserError
from palaestra.models.text_sampling import generate_text

__all__ = ["generate_samples", "generate_text", "write_samples"]


def generate_samples(run, n: int, seed: int = 0) -> np.ndarray:
    """``n`` GAN samples with the training data's shape and scale."""
    if run.spec.task != "generation":
        raise UserError(f"generating samples needs a generation (gan) run; {run.path or 'this run'} is a {run.spec.task} run")
    if n < 1:
        raise UserError("--n must be at least 1")
    z = run.model.sample(n, generator=torch.Generator().manual_seed(seed)).float().cpu().numpy()
    return run.preprocessor.decode_samples(z)


def write_samples(x: np.ndarray, out: Path) -> None:
    """``.npz`` (array ``x``) or ``.png`` (a grid of images)."""
    suffix = out.suffix.lower()
    if suffix == ".npz":
        buf = io.BytesIO()
        np.savez(buf, x=x)
        atomic_write(out, buf.getvalue())
    elif suffix == ".png":
        if x.ndim not in (3, 4):
            raise UserError("a PNG grid needs image samples; write vectors to an .npz file")
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        cols = min(10, len(x))
        rows = -(-len(x) // cols)
        fig, axes = plt.subplots(rows, cols, figsize=(cols, rows), squeeze=False)
        for i, ax in enumerate(axes.flat):
            ax.axis("off")
            if i < len(x):
                img = x[i] if x.ndim == 3 else (x[i][0] if x.shape[1] == 1 else np.transpose(x[i], (1, 2, 0)))
                ax.imshow(img, cmap="gray")
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=80)
        plt.close(fig)
        atomic_write(out, buf.getvalue())
    else:
        raise UserError(f"--out must end in .npz or .png, got '{out.name}'")
