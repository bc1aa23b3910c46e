"""Shared pieces of the benchmarks: the cases, the three contenders (plain PyTorch, Palaestra, Lightning),
statistics and Markdown tables.

Every contender trains the same model (built by Palaestra's registry from the same seed), on the same
prepared tensors, in the same batch order (``torch.randperm`` from a generator seeded ``seed + 1``, which is
what ``TensorBatcher`` and a shuffled ``DataLoader`` with that generator both draw), for the same epochs, with
a validation pass after every epoch.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import platform
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cache
from pathlib import Path
from typing import Any

import torch
from torch import nn

RESULTS = Path(__file__).resolve().parent / "results"


# --- cases -------------------------------------------------------------------------------------------------


@cache
def synthetic_table(rows: int = 20_000, features: int = 20) -> str:
    """A CSV of ``make_classification`` rows (3 classes), written once per process; returns its path."""
    import numpy as np
    import pandas as pd
    from sklearn.datasets import make_classification

    x, y = make_classification(n_samples=rows, n_features=features, n_informative=min(10, features),
                               n_redundant=2 if features > 12 else 0, n_classes=3,
                               random_state=0)
    frame = pd.DataFrame(x.astype(np.float32), columns=[f"f{i}" for i in range(features)])
    frame["label"] = np.asarray(["a", "b", "c"])[y]
    path = Path(tempfile.mkdtemp(prefix="palaestra-bench-")) / f"table-{rows}.csv"
    frame.to_csv(path, index=False)
    return str(path)


CACHE = Path(tempfile.gettempdir()) / "palaestra-bench-cache"


@cache
def raw_source(source: str):
    """A built-in dataset or file read once per process (as ``palaestra.data.sources.read_source`` reads it).

    mnist1d is generated from templates (slow): its arrays are cached as ``.npz`` for the memory subprocesses.
    """
    import numpy as np

    from palaestra.data.raw import SequenceArrays
    from palaestra.data.sources import read_source

    if source != "mnist1d":
        return read_source(source)
    path = CACHE / "mnist1d.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as f:
            return SequenceArrays(x=f["x"], y=f["y"], name="mnist1d", test_size=int(f["test_size"]))
    raw = read_source(source)
    CACHE.mkdir(exist_ok=True)
    np.savez(path, x=raw.x, y=raw.y, test_size=np.asarray(raw.test_size))
    return raw


@dataclass
class Case:
    """One loop-overhead case: a Palaestra config (as a dict) that all three contenders follow."""

    name: str
    description: str
    source: str | Callable[[], str]
    target: str | None
    batch_size: int
    epochs: int
    model: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)

    @property
    def source_name(self) -> str:
        return self.source() if callable(self.source) else self.source

    def raw(self):
        """The source read into memory once (a DataFrame or arrays), handed to every contender."""
        return raw_source(self.source_name)

    def config(self, epochs: int | None = None, **train: Any) -> dict[str, Any]:
        data: dict[str, Any] = {"source": self.source_name}
        if self.target:
            data["target"] = self.target
        # Early stopping stays on (as a user has it) but cannot end the run: every contender does `epochs`.
        # restore_best is off so the final weights can be compared with the plain loop's.
        return {"name": f"bench-{self.name}", "seed": 0, "data": data, "model": dict(self.model),
                "train": {"epochs": epochs or self.epochs, "batch_size": self.batch_size,
                          "early_stopping": {"patience": 10_000}, "restore_best": False, "progress": True,
                          **self.train, **train}}


def cases(quick: bool = False) -> list[Case]:
    """The loop-overhead cases; ``quick`` shrinks epochs and data for a smoke run."""
    rows = 4_000 if quick else 20_000
    out = [
        Case("mlp-table", f"MLP [64, 64] on a {rows:,}-row make_classification table, batch 32",
             lambda: synthetic_table(rows), "label", 32, 2 if quick else 3),
        Case("cnn-digits", "CNN [32, 64] on digits 8x8 images, batch 64", "digits", None, 64, 2 if quick else 10),
    ]
    out.append(Case("gru-mnist1d", "GRU (1 layer, 64 units) on mnist1d sequences of length 40, batch 64",
                    "mnist1d", None, 64, 1 if quick else 3,
                    model={"family": "gru", "hidden_size": 64, "layers": 1}))
    return out


# --- shared preparation --------------------------------------------------------------------------------------


@dataclass
class Prepared:
    config: Any  # palaestra.config.Config, family and task resolved
    data: Any  # palaestra.data.prepare.PreparedData


def prepare(config: dict[str, Any], raw: Any = None) -> Prepared:
    """The tensors and resolved config that ``pipeline.train`` itself would train on (outside any timing)."""
    from palaestra.config import load_config
    from palaestra.data.prepare import prepare_data
    from palaestra.models import resolve_layout
    from palaestra.pipeline import resolve_config

    cfg = load_config(config)
    data = prepare_data(resolve_layout(cfg), cfg.seed, source=raw, embedding_dim=cfg.model.embedding_dim)
    return Prepared(resolve_config(cfg, data.spec), data)


def fresh_model(p: Prepared) -> nn.Module:
    """The model Palaestra would build: same seed, same initialisation."""
    from palaestra.models.registry import build_model
    from palaestra.pipeline import seed_everything, use_channels_last

    seed_everything(p.config.seed)
    model = build_model(p.data.spec, p.config.model)
    if use_channels_last(p.config, p.data.spec):
        model = model.to(memory_format=torch.channels_last)
    return model


def plain_optimizer(model: nn.Module, cfg: Any, **kw: Any) -> torch.optim.Optimizer:
    """AdamW as configured, with the kernel Palaestra's config resolves to (fused by default) unless ``kw`` says."""
    from palaestra.training.optim import use_fused

    o = cfg.optimizer
    kw.setdefault("fused", use_fused(o, list(model.parameters())) or None)
    return torch.optim.AdamW(model.parameters(), lr=o.lr, betas=o.betas, weight_decay=o.weight_decay, **kw)


# --- contenders ----------------------------------------------------------------------------------------------


def run_plain(p: Prepared, epochs: int | None = None, optimizer_kw: dict | None = None,
              compile_model: bool = False, stop: Callable[[nn.Module, int], bool] | None = None) -> dict[str, Any]:
    """The loop a user writes by hand: shuffle, slice, forward, loss, backward, step; validate each epoch.

    ``stop(model, epoch)`` (time-to-accuracy) is called after each epoch with the clock paused.
    """
    cfg = p.config
    epochs = epochs or cfg.train.epochs
    model = fresh_model(p)
    opt = plain_optimizer(model, cfg, **(optimizer_kw or {}))
    loss_fn = nn.CrossEntropyLoss()
    *xs, y = p.data.train.tensors
    *vxs, vy = p.data.val.tensors
    n, bs = len(y), cfg.train.batch_size
    g = torch.Generator().manual_seed(cfg.seed + 1)
    net = torch.compile(model) if compile_model else model
    clip = cfg.train.grad_clip  # recurrent families clip by default: the plain loop does the same
    history = []
    started, cpu = time.perf_counter(), time.process_time()
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(n, generator=g)
        total = 0.0
        for i in range(0, n, bs):
            idx = perm[i:i + bs]
            target = y[idx]
            loss = loss_fn(net(*(x[idx] for x in xs)), target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if clip:
                nn.utils.clip_grad_norm_(model.parameters(), clip)
            opt.step()
            total += loss.item() * len(target)
        model.eval()
        val_loss, correct = 0.0, 0
        with torch.inference_mode():
            for i in range(0, len(vy), 1024):
                out = net(*(x[i:i + 1024] for x in vxs))
                val_loss += float(loss_fn(out, vy[i:i + 1024])) * len(out)
                correct += int((out.argmax(1) == vy[i:i + 1024]).sum())
        history.append({"train_loss": total / n, "val_loss": val_loss / len(vy), "val_accuracy": correct / len(vy)})
        if stop is not None:
            paused = time.perf_counter()
            done = stop(model, len(history))
            started += time.perf_counter() - paused
            if done:
                break
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    return {"seconds": seconds, "cpu": cpu, "total": seconds, "history": history, "model": model}


def null_console():
    """A rich console that renders the live progress bar as on a terminal, into a throw-away buffer."""
    from rich.console import Console

    return Console(file=io.StringIO(), force_terminal=True, width=120, color_system="standard")


def _span_callback():
    """A user callback that times the loop itself (wall and CPU), from ``on_train_begin`` to ``on_train_end``."""
    from palaestra.training.callbacks import Callback

    class Span(Callback):
        def on_train_begin(self, state) -> None:
            self.wall, self.cpu = time.perf_counter(), time.process_time()

        def on_train_end(self, state) -> None:
            self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu

    return Span()


def run_palaestra(config: dict[str, Any], raw: Any = None, workdir: str | Path | None = None,
                  **overrides: Any) -> dict[str, Any]:
    """``palaestra.pipeline.train`` as a user calls it: a run directory, progress bar, metrics, checkpoints.

    ``seconds``/``cpu``: the loop (training, per-epoch validation, checkpoints, progress bar); ``total``: the
    whole call, with data preparation from the in-memory source, the final evaluation and the run directory.
    """
    from palaestra.pipeline import train

    if overrides:
        config = {**config, "train": {**config["train"], **overrides}}
    out = Path(tempfile.mkdtemp(prefix="run-", dir=workdir)) / "run"
    span = _span_callback()
    started = time.perf_counter()
    run = train(config, source=raw, out=out, console=null_console(), extra_callbacks=[span])
    total = time.perf_counter() - started
    history = [{"train_loss": h["train_loss"], "val_loss": h.get("val_loss"), "val_accuracy": h.get("val_accuracy")}
               for h in run.history]
    return {"seconds": span.wall, "cpu": span.cpu, "total": total, "history": history, "model": run.model,
            "run": run}


class _Permutation(torch.utils.data.Sampler):
    """Each epoch ``torch.randperm`` from one generator: the order the plain loop and Palaestra draw."""

    def __init__(self, n: int, seed: int):
        self.n, self.generator = n, torch.Generator().manual_seed(seed)

    def __iter__(self):
        return iter(torch.randperm(self.n, generator=self.generator).tolist())

    def __len__(self) -> int:
        return self.n


def run_lightning(p: Prepared, epochs: int | None = None, workdir: str | Path | None = None) -> dict[str, Any]:
    """A Lightning ``Trainer``: progress bar on, per-epoch checkpoint on (``ModelCheckpoint``), logger off."""
    import logging

    import lightning as L
    from torch.utils.data import DataLoader, TensorDataset

    cfg = p.config
    epochs = epochs or cfg.train.epochs
    model = fresh_model(p)

    class Module(L.LightningModule):
        def __init__(self, net: nn.Module):
            super().__init__()
            self.net = net
            self.loss_fn = nn.CrossEntropyLoss()

        def training_step(self, batch, batch_idx):
            *xs, y = batch
            loss = self.loss_fn(self.net(*xs), y)
            self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True)
            return loss

        def validation_step(self, batch, batch_idx):
            *xs, y = batch
            out = self.net(*xs)
            self.log("val_loss", self.loss_fn(out, y), prog_bar=True)
            self.log("val_accuracy", (out.argmax(1) == y).float().mean())

        def configure_optimizers(self):
            return plain_optimizer(self.net, cfg)  # the same AdamW kernel as the other two contenders

    train_set = TensorDataset(*p.data.train.tensors)
    # The loader's own generator only feeds its base seed, so the global RNG (dropout) stays untouched.
    train_dl = DataLoader(train_set, batch_size=cfg.train.batch_size,
                          sampler=_Permutation(len(train_set), cfg.seed + 1), generator=torch.Generator())
    val_dl = DataLoader(TensorDataset(*p.data.val.tensors), batch_size=max(cfg.train.batch_size, 1024),
                        generator=torch.Generator())
    root = tempfile.mkdtemp(prefix="lightning-", dir=workdir)
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()), \
            contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, logger=False,
                            enable_checkpointing=True, enable_progress_bar=True, enable_model_summary=False,
                            num_sanity_val_steps=0, default_root_dir=root, gradient_clip_val=cfg.train.grad_clip)
        module = Module(model)
        started, cpu = time.perf_counter(), time.process_time()
        trainer.fit(module, train_dl, val_dl)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    return {"seconds": seconds, "cpu": cpu, "total": seconds, "history": [], "model": model}


def best_ms(fn: Callable[[], Any], repeats: int = 5) -> float:
    """Wall milliseconds of one call, best of ``repeats`` (after one unmeasured call)."""
    fn()
    best = math.inf
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return 1e3 * best


def max_weight_diff(a: nn.Module, b: nn.Module) -> float:
    sa, sb = a.state_dict(), b.state_dict()
    return max(float((sa[k].float() - sb[k].float()).abs().max()) for k in sa if sa[k].numel())


# --- statistics and tables -------------------------------------------------------------------------------------


def summary(values: Sequence[float]) -> dict[str, float]:
    """Median, min, max and interquartile range of repeated timings."""
    v = sorted(values)
    q = statistics.quantiles(v, n=4) if len(v) >= 2 else [v[0], v[0], v[0]]
    return {"median": statistics.median(v), "min": v[0], "max": v[-1], "q1": q[0], "q3": q[2], "n": len(v)}


def fmt_time(s: dict[str, float]) -> str:
    return f"{s['median']:.3f} ({s['min']:.3f}–{s['max']:.3f})"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    """Where the numbers came from: stated beside every table."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "cpu": cpu,
            "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version(), "gpu": torch.cuda.is_available()}


def machine_line(info: dict[str, Any]) -> str:
    gpu = "a CUDA GPU" if info["gpu"] else "no GPU"
    return (f"{info['date']} · {info['cpu']}, {info['cores']} cores, torch {info['torch']} "
            f"({info['torch_threads']} threads), Python {info['python']}, {gpu}")


def reset_peak_rss() -> bool:
    """Reset this process's peak-RSS mark (Linux ``clear_refs``), so a later reading is one contender's peak."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """This process's peak resident set size since start or the last ``reset_peak_rss``."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def current_rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


@contextlib.contextmanager
def isolated_runs():
    """Keep benchmark runs out of the user's run index."""
    previous = os.environ.get("PALAESTRA_RUNS")
    with tempfile.TemporaryDirectory(prefix="palaestra-bench-runs-") as tmp:
        os.environ["PALAESTRA_RUNS"] = tmp
        try:
            yield Path(tmp)
        finally:
            if previous is None:
                os.environ.pop("PALAESTRA_RUNS", None)
            else:
                os.environ["PALAESTRA_RUNS"] = previous


def section_main(run, description: str | None, default_repeats: int, argv: list[str] | None = None) -> None:
    """The command line of one section run on its own: ``python -m benchmarks.NAME [--quick] [--repeats N]``."""
    import argparse

    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int, default=default_repeats)
    args = ap.parse_args(argv)
    print(run(args.quick, args.repeats)["markdown"])
