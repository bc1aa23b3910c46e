"""The loop against a plain hand-written PyTorch loop, the order of callback hooks, and the stopping rules."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from palaestra.config import EarlyStoppingConfig, ModelConfig, OptimizerConfig, ScheduleConfig
from palaestra.data.batching import TensorBatcher
from palaestra.data.spec import FeatureSpec
from palaestra.models.registry import build_model
from palaestra.training import callbacks as cb
from palaestra.training.loop import evaluate, fit
from palaestra.training.optim import Schedule, build_optimizer
from palaestra.training.state import TrainState

CPU = torch.device("cpu")



def _config(epochs: int, **sections) -> dict:
    """A small iris config (like conftest's ``tiny``; defined here because another directory's conftest.py
    can shadow the module name ``conftest`` during a full-suite collection)."""
    cfg = {"seed": 0, "data": {"source": "iris"}, "model": {"hidden": [16]},
           "train": {"epochs": epochs, "progress": False, "early_stopping": None}}
    for key, value in sections.items():
        cfg.setdefault(key, {}).update(value)
    return cfg
SPEC = FeatureSpec(kind="vector", task="classification", input_names=["x"], n_outputs=3, input_shape=[5], n_numeric=5)


def _data(n: int = 90, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 5, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()  # three learnable classes
    return x, y


def _state(model, x, y, batch_size=16, seed=1, lr=1e-2, optimizer="adamw", monitor="train_loss", fused=None):
    batcher = TensorBatcher((x, y), batch_size, shuffle=True, seed=seed)
    opt = build_optimizer(model.parameters(), OptimizerConfig(name=optimizer, lr=lr, weight_decay=0.01, fused=fused))
    schedule = Schedule(ScheduleConfig(), opt, lr, 1, len(batcher))
    return TrainState(model, opt, schedule, batcher, monitor=monitor, mode=cb.monitor_mode(monitor))


def _plain_loop(model, x, y, epochs, batch_size, shuffle_seed, lr, loss_fn=F.cross_entropy, fused=None):
    """What a textbook writes: shuffle, slice, forward, loss, zero_grad, backward, step."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, fused=fused)
    g = torch.Generator().manual_seed(shuffle_seed)
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(len(y), generator=g)
        for start in range(0, len(y), batch_size):
            idx = perm[start:start + batch_size]
            loss = loss_fn(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model


def _assert_same_weights(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


@pytest.mark.parametrize("fused", [True, False])  # Palaestra's default kernel, and torch's default one
def test_fit_matches_plain_pytorch_loop_exactly(fused):
    x, y = _data()
    cfg = ModelConfig(hidden=[8, 8], dropout=0.1)  # dropout: the global RNG must be consumed identically too
    torch.manual_seed(0)
    ours = build_model(SPEC, cfg)
    torch.manual_seed(0)
    ref = build_model(SPEC, cfg)
    _assert_same_weights(ours, ref)

    torch.manual_seed(123)
    state = _state(ours, x, y, batch_size=16, seed=7, lr=1e-2, fused=fused)
    fit(state, 4, nn.CrossEntropyLoss(), None, None, cb.CallbackList([]), CPU)
    torch.manual_seed(123)
    _plain_loop(ref, x, y, epochs=4, batch_size=16, shuffle_seed=7, lr=1e-2, fused=fused)

    assert state.epoch == 4 and state.step == 4 * math.ceil(90 / 16)
    _assert_same_weights(ours, ref)
    assert not torch.equal(ours.head.weight, build_model(SPEC, cfg).head.weight)  # it did train


def test_pipeline_train_matches_plain_pytorch_loop_exactly():
    from palaestra.config import load_config
    from palaestra.data.prepare import prepare_data
    from palaestra.pipeline import seed_everything, train

    config = _config(3, model={"hidden": [8], "dropout": 0.1}, optimizer={"name": "adamw", "lr": 0.01, "weight_decay": 0.01},
                  train={"batch_size": 16, "restore_best": False})
    run = train(config, quiet=True)

    cfg = load_config(config)
    data = prepare_data(cfg.data, cfg.seed)
    seed_everything(cfg.seed)
    ref = build_model(data.spec, cfg.model)

    numeric, categorical = data.train.inputs
    assert categorical.shape[1] == 0
    opt = torch.optim.AdamW(ref.parameters(), lr=0.01, weight_decay=0.01, fused=True)  # Palaestra's default kernel
    g = torch.Generator().manual_seed(cfg.seed + 1)
    for _ in range(3):
        ref.train()
        perm = torch.randperm(len(data.train), generator=g)
        for start in range(0, len(perm), 16):
            idx = perm[start:start + 16]
            loss = F.cross_entropy(ref(numeric[idx], categorical[idx]), data.train.target[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    _assert_same_weights(run.model, ref)


class Recorder(cb.Callback):
    def __init__(self):
        self.calls = []

    def on_train_begin(self, state):
        self.calls.append("on_train_begin")

    def on_epoch_begin(self, state):
        self.calls.append(f"on_epoch_begin:{state.epoch}")

    def on_batch_end(self, state, loss):
        self.calls.append("on_batch_end")

    def on_epoch_end(self, state, logs):
        self.calls.append(f"on_epoch_end:{state.epoch}")

    def on_train_end(self, state):
        self.calls.append("on_train_end")


def test_callback_hooks_are_called_in_the_documented_order():
    x, y = _data(n=40)
    torch.manual_seed(0)
    state = _state(build_model(SPEC, ModelConfig(hidden=[4])), x, y, batch_size=16)
    rec = Recorder()
    fit(state, 2, nn.CrossEntropyLoss(), None, None, cb.CallbackList([rec]), CPU)
    per_epoch = lambda e: [f"on_epoch_begin:{e}", *["on_batch_end"] * 3, f"on_epoch_end:{e + 1}"]  # noqa: E731
    assert rec.calls == ["on_train_begin", *per_epoch(0), *per_epoch(1), "on_train_end"]
    assert set(cb.HOOKS) == {c.split(":")[0] for c in rec.calls}


def test_callbacks_run_in_list_order_and_see_the_epoch_logs():
    x, y = _data(n=32)
    torch.manual_seed(0)
    state = _state(build_model(SPEC, ModelConfig(hidden=[4])), x, y, batch_size=32)
    seen = []

    class Tag(cb.Callback):
        def __init__(self, name):
            self.name = name

        def on_epoch_end(self, state, logs):
            seen.append((self.name, sorted(logs)))

    fit(state, 1, nn.CrossEntropyLoss(), None, None, cb.CallbackList([Tag("a"), Tag("b")]), CPU)
    assert [s[0] for s in seen] == ["a", "b"]
    assert seen[0][1] == ["epoch", "grad_norm", "lr", "seconds", "train_loss"]


class Script(cb.Callback):
    """Writes a scripted value of the monitored metric into each epoch's logs (before the trackers run)."""

    def __init__(self, values, key="val_loss"):
        self.values, self.key = values, key

    def on_epoch_end(self, state, logs):
        logs[self.key] = self.values[state.epoch - 1]


def _scripted_run(values, extra, epochs=20, key="val_loss"):
    x, y = _data(n=16)
    torch.manual_seed(0)
    state = _state(build_model(SPEC, ModelConfig(hidden=[4])), x, y, monitor=key)
    callbacks = cb.CallbackList([Script(values, key), cb.BestTracker(), *extra])
    fit(state, epochs, nn.CrossEntropyLoss(), None, None, callbacks, CPU)
    return state


def test_early_stopping_stops_after_patience_epochs_without_improvement():
    values = [1.0, 0.8, 0.9, 0.85, 0.95, 0.1, 0.05] + [0.01] * 13
    state = _scripted_run(values, [cb.EarlyStopping(EarlyStoppingConfig(patience=3))])
    assert state.epoch == 5  # best at epoch 2, no improvement in epochs 3, 4, 5
    assert state.best_epoch == 2 and state.best == 0.8
    assert state.stop_reason.startswith("early stopping")


def test_early_stopping_respects_max_mode():
    values = [0.5, 0.6, 0.7, 0.65, 0.69] + [0.99] * 15
    state = _scripted_run(values, [cb.EarlyStopping(EarlyStoppingConfig(monitor="val_accuracy", patience=2))],
                          key="val_accuracy")
    assert state.mode == "max"
    assert state.epoch == 5 and state.best_epoch == 3


def test_stop_at_target_stops_at_the_first_epoch_reaching_it():
    state = _scripted_run([1.0, 0.7, 0.45, 0.3] + [0.2] * 16, [cb.StopAtTarget({"val_loss": 0.5})])
    assert state.epoch == 3
    assert state.stop_reason == "target reached: val_loss=0.45"


def test_stop_at_without_prefix_reads_the_validation_metric():
    state = _scripted_run([0.5, 0.8, 0.95] + [0.99] * 17, [cb.StopAtTarget({"accuracy": 0.9})], key="val_accuracy")
    assert state.epoch == 3


class GradNorm(cb.Callback):
    def __init__(self):
        self.norms = []

    def on_batch_end(self, state, loss):
        grads = [p.grad.detach().flatten() for p in state.model.parameters() if p.grad is not None]
        self.norms.append(float(torch.cat(grads).norm()))


@pytest.mark.parametrize("clip", [None, 0.05])
def test_grad_clip_caps_the_global_norm(clip):
    x, y = _data(n=64)
    torch.manual_seed(0)
    state = _state(build_model(SPEC, ModelConfig(hidden=[16])), x * 10, y, optimizer="sgd", lr=1e-3)
    rec = GradNorm()
    fit(state, 2, nn.CrossEntropyLoss(), None, None, cb.CallbackList([rec]), CPU, grad_clip=clip)
    if clip is None:
        assert max(rec.norms) > 0.5  # the data does produce large gradients, so the clipped case is a real test
    else:
        assert max(rec.norms) <= clip * (1 + 1e-4)


def test_divergence_guard_stops_and_keeps_last_good_weights():
    x, y = _data(n=64)
    torch.manual_seed(0)
    model = build_model(SPEC, ModelConfig(hidden=[16]))
    state = _state(model, x * 100, y, optimizer="sgd", lr=1e12)
    rec = Recorder()
    fit(state, 30, nn.CrossEntropyLoss(), None, None, cb.CallbackList([cb.BestTracker(), rec]), CPU)
    assert state.diverged and state.stop_reason.startswith("diverged")
    assert state.epoch < 30
    assert all(torch.isfinite(p).all() for p in model.parameters())
    _assert_same_weights(model, _loaded(state.best_weights))
    # The diverged epoch is recorded in the history but no callback sees it as a finished epoch.
    assert not math.isfinite(state.history[-1]["train_loss"])
    assert rec.calls.count(f"on_epoch_end:{state.epoch}") == 0 and rec.calls[-1] == "on_train_end"


def _loaded(weights):
    torch.manual_seed(1)
    m = build_model(SPEC, ModelConfig(hidden=[16]))
    m.load_state_dict(weights)
    return m


def test_divergence_through_pipeline_reports_plainly():
    from palaestra.pipeline import train

    run = train(_config(30, optimizer={"name": "sgd", "lr": 1e12}), quiet=True)
    assert run.metrics["stop_reason"].startswith("diverged")
    assert "lower optimizer.lr" in run.metrics["stop_reason"]
    assert all(torch.isfinite(p).all() for p in run.model.parameters())
    assert run.metrics["epochs"] < 30


def test_evaluate_is_the_sample_weighted_mean_loss():
    x, y = _data(n=50)
    torch.manual_seed(0)
    model = build_model(SPEC, ModelConfig(hidden=[4], dropout=0.5))
    batches = TensorBatcher((x, y), 16, shuffle=False)
    got = evaluate(model, batches, nn.CrossEntropyLoss(), None, CPU)
    assert model.training  # evaluate restores the mode it found
    model.eval()
    with torch.no_grad():
        want = float(F.cross_entropy(model(x), y))
    assert got["loss"] == pytest.approx(want, rel=1e-6)


def test_time_limit_ends_training_gracefully_with_a_full_run_directory(tmp_path):
    from testkit import tiny

    from palaestra.pipeline import train
    from palaestra.runs import Run, read_state

    cfg = tiny("penguins", epochs=10_000, train={"time_limit": 0.5, "batch_size": 8})
    run = train(cfg, out=tmp_path / "run", quiet=True)
    assert run.metrics["stop_reason"].startswith("time limit")
    assert 1 <= run.metrics["epochs"] < 10_000
    assert read_state(tmp_path / "run") == "complete"
    assert Run.load(tmp_path / "run").metrics["test"]["accuracy"] > 0


def test_an_interrupted_run_resumes_with_more_epochs_but_no_other_change(tmp_path):
    """`palaestra train --resume RUN --set train.epochs=N` trains longer; any other change is still refused."""
    import yaml
    from testkit import tiny

    from palaestra.errors import UserError
    from palaestra.pipeline import train
    from palaestra.runs import read_state

    class StopAfterTwo(cb.Callback):
        def on_epoch_end(self, state, logs):
            if state.epoch == 2:
                raise KeyboardInterrupt

    cfg = tiny("penguins", epochs=3)
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(cfg, out=out, quiet=True, extra_callbacks=[StopAfterTwo()])
    assert read_state(out) == "interrupted"
    with pytest.raises(UserError, match="different config"):
        train(cfg, resume=out, overrides=["model.hidden=[64]"], quiet=True)
    run = train(cfg, resume=out, overrides=["train.epochs=5"], quiet=True)
    assert run.metrics["epochs"] == 5 and read_state(out) == "complete"
    assert yaml.safe_load((out / "config.yaml").read_text())["train"]["epochs"] == 5
