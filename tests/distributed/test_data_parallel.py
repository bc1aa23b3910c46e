"""Data-parallel training on gloo (CPU): two ranks of batch B/2 equal one process of batch B; resume is exact.

The ranks run in ``torch.multiprocessing.spawn`` workers that call ``pipeline.train`` with torchrun's
environment variables set, which is what a worker of ``palaestra train --nproc 2`` does.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

from palaestra.training.callbacks import Callback

B = 12  # the single process's batch; each of the two ranks takes B // 2


def _config(csv: Path, batch_size: int, epochs: int) -> dict:
    # No dropout, no batch norm: the only difference between the runs is who computes which gradient.
    return {"seed": 3, "data": {"source": str(csv), "target": "y", "split": {"train": 0.8, "val": 0.1, "test": 0.1}},
            "model": {"family": "mlp", "hidden": [16, 8], "dropout": 0.0},
            "optimizer": {"name": "adamw", "lr": 0.01},
            "train": {"epochs": epochs, "batch_size": batch_size, "early_stopping": None, "restore_best": False,
                      "progress": False, "device": "cpu",
                      "threads": 1}}  # one thread per rank, as `--nproc` sets on this 2-core machine


def _write_data(path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 4))
    y = np.where(x[:, 0] + 0.5 * x[:, 1] > 0.3, "a", np.where(x[:, 2] > 0, "b", "c"))
    frame = pd.DataFrame(x, columns=["x1", "x2", "x3", "x4"])
    frame["y"] = y
    frame.to_csv(path, index=False)


class _CutAfter(Callback):
    """Stops every rank at the end of an epoch (after rank 0's checkpoint), like a crash between epochs."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_epoch_end(self, state, logs) -> None:
        if state.epoch == self.epoch:
            raise RuntimeError("cut")


def _rank(rank: int, world: int, port: int, root: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank), PALAESTRA_RUNS=str(Path(root) / "index"))
    torch.set_num_threads(1)
    from palaestra.distributed import run_worker
    from palaestra.pipeline import train

    root = Path(root)
    csv = root / "data.csv"
    report = {}

    def job() -> int:
        # Only the resumed run needs a run directory (checkpoints); the others hand back their weights.
        run = train(_config(csv, B // 2, 3), quiet=True)
        save_file(run.model.state_dict(), str(root / f"ddp{rank}.safetensors"))
        loader = _config(csv, B // 2, 3)
        loader["data"]["batching"] = "loader"  # the DataLoader path shards the same way
        save_file(train(loader, quiet=True).model.state_dict(), str(root / f"loader{rank}.safetensors"))
        report["train_loss"] = [h["train_loss"] for h in run.history]
        report["val_loss"] = [h["val_loss"] for h in run.history]
        report["test"] = run.metrics["test"]["accuracy"]
        report["confusion_matrix"] = run.metrics["test"]["confusion_matrix"]
        full = train(_config(csv, B // 2, 4), quiet=True)
        save_file(full.model.state_dict(), str(root / f"full{rank}.safetensors"))
        report["full_train_loss"] = [h["train_loss"] for h in full.history]
        try:
            train(_config(csv, B // 2, 4), out=root / "cut", quiet=True, extra_callbacks=[_CutAfter(2)])
        except RuntimeError as exc:
            assert str(exc) == "cut"
        else:
            raise AssertionError("the run was meant to be cut after epoch 2, so that --resume has work to do")
        resumed = train(resume=root / "cut", quiet=True)
        report["path"] = str(resumed.path) if resumed.path else None
        return 0

    assert run_worker(job) == 0
    (root / f"rank{rank}.json").write_text(json.dumps(report))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_ranks(tmp_path):
    """One spawn of two ranks (starting them is most of the cost), three properties checked on its output."""
    _write_data(tmp_path / "data.csv")
    mp.spawn(_rank, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    _check_two_ranks_of_half_batch_equal_one_process_of_full_batch(tmp_path)
    _check_the_dataloader_path_shards_like_the_in_memory_batcher(tmp_path)
    _check_distributed_resume_is_exact(tmp_path)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path / "model.safetensors" if path.is_dir() else path))


def _check_two_ranks_of_half_batch_equal_one_process_of_full_batch(two_ranks: Path) -> None:
    from palaestra.config import load_config
    from palaestra.data.prepare import prepare_data
    from palaestra.pipeline import train

    cfg = load_config(_config(two_ranks / "data.csv", B, 3))
    n_train = len(prepare_data(cfg.data, cfg.seed).train)
    # No padding: each global step of B samples splits evenly over the two ranks.
    assert n_train % 2 == 0 and n_train % B != 0  # a ragged last batch is covered too

    threads = torch.get_num_threads()
    try:
        single = train(cfg, quiet=True)
    finally:
        torch.set_num_threads(threads)
    one = single.model.state_dict()
    for rank in (0, 1):
        ddp = _weights(two_ranks / f"ddp{rank}.safetensors")
        assert ddp.keys() == one.keys()  # no DDP "module." prefix
        for name in one:
            assert torch.allclose(ddp[name], one[name], atol=1e-6, rtol=0), (rank, name)

    ranks = [json.loads((two_ranks / f"rank{r}.json").read_text()) for r in (0, 1)]
    # The reported training loss is the mean over both ranks' samples: the single process's number.
    assert np.allclose(ranks[0]["train_loss"], [h["train_loss"] for h in single.history], atol=1e-6)
    # Every rank reports the same metrics; only rank 0 has a run directory.
    assert ranks[0]["train_loss"] == ranks[1]["train_loss"] and ranks[0]["val_loss"] == ranks[1]["val_loss"]
    assert ranks[0]["path"] == str(two_ranks / "cut") and ranks[1]["path"] is None
    assert abs(ranks[0]["test"] - single.metrics["test"]["accuracy"]) < 1e-9
    # Each rank evaluates the whole test set once: no sample counted twice.
    assert ranks[0]["confusion_matrix"] == ranks[1]["confusion_matrix"] == single.metrics["test"]["confusion_matrix"]


def _check_the_dataloader_path_shards_like_the_in_memory_batcher(two_ranks: Path) -> None:
    memory, loader = _weights(two_ranks / "ddp0.safetensors"), _weights(two_ranks / "loader0.safetensors")
    assert memory.keys() == loader.keys()
    for name in memory:
        assert torch.equal(memory[name], loader[name]), name


def _check_distributed_resume_is_exact(two_ranks: Path) -> None:
    full, resumed = _weights(two_ranks / "full0.safetensors"), _weights(two_ranks / "cut")
    assert full.keys() == resumed.keys()
    for name in full:
        assert torch.equal(full[name], resumed[name]), name
    assert torch.equal(torch.cat([t.flatten() for t in full.values()]),
                       torch.cat([t.flatten() for t in _weights(two_ranks / "full1.safetensors").values()]))
    a = json.loads((two_ranks / "rank0.json").read_text())["full_train_loss"]
    b = pd.read_csv(two_ranks / "cut" / "history.csv")["train_loss"].tolist()
    assert len(a) == len(b) == 4
    assert np.allclose(a, b, rtol=0, atol=1e-12)  # history.csv rounds nothing away that matters here
