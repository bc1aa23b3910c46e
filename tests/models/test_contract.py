"""The contract every model family keeps (scikit-learn's estimator checks, in miniature).

Parametrized over ``palaestra.models.registry.FAMILIES`` x each data kind the family declares, so a family
added later is checked automatically. A kind is testable when this file knows how to make an example
``FeatureSpec`` and inputs for it (``EXAMPLES`` below), or when the family declares its own with an
``example`` attribute: ``() -> (FeatureSpec, inputs tuple, target)``.

Contract: builds from a ``FeatureSpec`` alone; outputs ``(batch, n_outputs)``; one optimizer step on a tiny
batch lowers the loss; save (safetensors) and reload into a freshly built model give identical outputs.
"""

from __future__ import annotations

from typing import get_args

import pytest
import torch
from testkit import assert_one_step_lowers_loss

import palaestra.models  # noqa: F401  (registers every built-in family)
from palaestra.artifacts import read_tensors, write_tensors
from palaestra.config import ModelConfig, Task
from palaestra.data.spec import FeatureSpec
from palaestra.models.registry import FAMILIES, build_model

B = 12  # batch size
K = 3  # classes



def _target(g: torch.Generator) -> torch.Tensor:
    return torch.arange(B) % K  # every class present


def _table(g):
    """Numbers, two embedded categories and a text column (padded token ids)."""
    spec = FeatureSpec(kind="table", task="classification", input_names=["numeric", "categorical", "text:notes"],
                       n_outputs=K, n_numeric=5, embeddings=[(7, 3), (4, 2)], classes=list(range(K)),
                       texts=[{"name": "notes", "vocab_size": 20, "max_length": 6}])
    categorical = torch.stack([torch.randint(0, 7, (B,), generator=g), torch.randint(0, 4, (B,), generator=g)], 1)
    ids = torch.randint(1, 20, (B, 6), generator=g)
    ids[::3, 3:] = 0  # some texts are shorter (padding)
    return spec, (torch.randn(B, 5, generator=g), categorical, ids)


def _vector(g):
    spec = FeatureSpec(kind="vector", task="classification", input_names=["x"], n_outputs=K, input_shape=[6],
                       n_numeric=6, classes=list(range(K)))
    return spec, (torch.randn(B, 6, generator=g),)


def _image(g):
    spec = FeatureSpec(kind="image", task="classification", input_names=["x"], n_outputs=K, input_shape=[1, 8, 8],
                       classes=list(range(K)))
    return spec, (torch.randn(B, 1, 8, 8, generator=g),)


def _sequence(g):
    spec = FeatureSpec(kind="sequence", task="classification", input_names=["x", "lengths"], n_outputs=K,
                       input_shape=[10, 2], classes=list(range(K)))
    return spec, (torch.randn(B, 10, 2, generator=g), torch.randint(4, 11, (B,), generator=g))


def _tokens(g):
    spec = FeatureSpec(kind="tokens", task="classification", input_names=["x", "lengths"], n_outputs=K,
                       input_shape=[10], classes=list(range(K)), extra={"vocab_size": 20})
    return spec, (torch.randint(2, 20, (B, 10), generator=g), torch.randint(4, 11, (B,), generator=g))


EXAMPLES = {"table": _table, "vector": _vector, "image": _image, "sequence": _sequence, "tokens": _tokens}


def _example(family, kind):
    g = torch.Generator().manual_seed(0)
    declared = getattr(FAMILIES[family], "example", None)
    if declared is not None:
        return declared()
    spec, inputs = EXAMPLES[kind](g)
    return spec, inputs, _target(g)


def _cases():
    cases = []
    for name, fam in FAMILIES.items():
        for kind in fam.kinds:
            known = kind in EXAMPLES or getattr(fam, "example", None) is not None
            marks = () if known else pytest.mark.skip(reason=f"no example FeatureSpec for '{kind}' data: declare "
                                                              f"Family.example or add it to EXAMPLES")
            cases.append(pytest.param(name, kind, id=f"{name}-{kind}", marks=marks))
    return cases


def _small_config() -> ModelConfig:
    """Tiny layers, no dropout (so train-mode outputs are deterministic); fields a family lacks are left out."""
    wanted = {"hidden": [8], "channels": [4, 8], "dropout": 0.0, "hidden_size": 8, "layers": 1, "embedding_dim": 4,
              "heads": 2, "d_model": 8}
    return ModelConfig(**{k: v for k, v in wanted.items() if k in ModelConfig.model_fields})


def test_every_family_declares_kinds_and_is_covered():
    assert {"mlp", "cnn"} <= set(FAMILIES)
    for name, fam in FAMILIES.items():
        assert fam.kinds, name
        assert set(fam.default_for) <= set(fam.kinds) | set(get_args(Task)), name  # kinds, or tasks (forecast)


@pytest.mark.parametrize(("family", "kind"), _cases())
def test_family_contract(family, kind, tmp_path):
    spec, inputs, target = _example(family, kind)
    cfg = _small_config().model_copy(update={"family": family})
    torch.manual_seed(0)
    model = build_model(spec, cfg)
    model.train()

    out = model(*inputs)
    assert out.shape == (len(target), spec.n_outputs)
    assert torch.isfinite(out).all()

    assert_one_step_lowers_loss(model, spec, inputs, target)

    model.eval()
    write_tensors(tmp_path / "model.safetensors", model.state_dict())
    torch.manual_seed(99)  # a differently initialised copy: every value must come from the file
    fresh = build_model(spec, cfg.model_copy(update={"init": "default"}))
    fresh.load_state_dict(read_tensors(tmp_path / "model.safetensors"))
    fresh.eval()
    with torch.no_grad():
        assert torch.equal(model(*inputs), fresh(*inputs))


@pytest.mark.parametrize("task,n_outputs", [("regression", 1), ("classification", 2)])
def test_mlp_and_cnn_heads_follow_the_spec(task, n_outputs):
    g = torch.Generator().manual_seed(1)
    for make in (_table, _image):
        spec, inputs = make(g)
        spec.task, spec.n_outputs = task, n_outputs
        model = build_model(spec, _small_config())
        assert model(*inputs).shape == (B, n_outputs)


def test_transformer_combiner_keeps_the_contract(tmp_path):
    g = torch.Generator().manual_seed(3)
    spec, inputs = _table(g)
    target = _target(g)
    cfg = _small_config().model_copy(update={"combiner": "transformer"})
    torch.manual_seed(0)
    model = build_model(spec, cfg)
    assert type(model).__name__ == "FeatureTransformer"
    assert model(*inputs).shape == (B, K)
    assert_one_step_lowers_loss(model, spec, inputs, target)


def test_families_declare_their_defaults_and_explicit_settings_win():
    from palaestra.config import load_config
    from palaestra.pipeline import resolve_config

    spec = FeatureSpec(kind="sequence", task="classification", input_names=["x", "lengths"], n_outputs=2,
                       input_shape=[10, 2], classes=[0, 1])
    assert FAMILIES["gru"].defaults == {"train.grad_clip": 1.0, "train.time_limit": 600.0}
    clipped = resolve_config(load_config({"model": {"family": "gru"}}), spec)
    assert clipped.train.grad_clip == 1.0
    off = resolve_config(load_config({"model": {"family": "gru"}, "train": {"grad_clip": None}}), spec)
    assert off.train.grad_clip is None  # `grad_clip: null` switches clipping off
    own = resolve_config(load_config({"model": {"family": "gru"}}, ["train.grad_clip=5"]), spec)
    assert own.train.grad_clip == 5.0
    # The resolved config, saved and loaded again, trains the same way.
    assert resolve_config(load_config(off.to_dict()), spec).train.grad_clip is None
    gan = FeatureSpec(kind="generation", task="generation", input_names=["x"], n_outputs=1, input_shape=[1, 8, 8])
    resolved = resolve_config(load_config({"model": {"family": "gan"}, "optimizer": {"lr": 0.001}}), gan)
    assert resolved.optimizer.name == "adam" and resolved.optimizer.lr == 0.001  # the user's lr, the GAN's optimizer
    assert resolved.train.early_stopping is None
    own_stop = resolve_config(load_config({"model": {"family": "gan"}, "train": {"early_stopping": {"patience": 5}}}), gan)
    assert own_stop.train.early_stopping.patience == 5  # part of a section set: the section is the user's
