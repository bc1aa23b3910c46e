"""The model contract for the sequence, text and generative families, in the variants the shared contract
test (tests/models/test_contract.py) does not build: language models (per-step outputs), regression heads,
bidirectional recurrent layers, and the GAN's own alternating step. Plus what the variants promise: padding
carries no signal, a causal model never reads the future.
"""

from __future__ import annotations

import pytest
import torch
from testkit import assert_one_step_lowers_loss

import palaestra.models  # noqa: F401  (registers every built-in family)
from palaestra.artifacts import read_tensors, write_tensors
from palaestra.config import ModelConfig
from palaestra.data.spec import FeatureSpec
from palaestra.errors import ConfigError
from palaestra.models.registry import build_model

B, T, V = 6, 12, 9
SMALL = {"hidden": [8], "channels": [4, 8], "dropout": 0.0, "hidden_size": 8, "layers": 2, "embedding_dim": 4,
         "heads": 2, "d_model": 8, "latent_dim": 4}


def _cfg(family: str, **kw) -> ModelConfig:
    return ModelConfig(**{**SMALL, "family": family, **kw})


def _lm(g):
    spec = FeatureSpec(kind="tokens", task="language_model", input_names=["x"], n_outputs=V, input_shape=[T],
                       extra={"vocab_size": V})
    x = torch.randint(1, V, (B, T), generator=g)
    return spec, (x,), torch.roll(x, -1, dims=1)


def _regression(g):
    spec = FeatureSpec(kind="sequence", task="forecast", input_names=["x", "lengths"], n_outputs=1, input_shape=[T, 2])
    return spec, (torch.randn(B, T, 2, generator=g), torch.full((B,), T)), torch.randn(B, generator=g)


def _bidirectional(g):
    spec = FeatureSpec(kind="sequence", task="classification", input_names=["x", "lengths"], n_outputs=3,
                       input_shape=[T, 2], classes=[0, 1, 2])
    return spec, (torch.randn(B, T, 2, generator=g), torch.randint(3, T + 1, (B,), generator=g)), torch.arange(B) % 3


CASES = [pytest.param(f, _lm, {}, id=f"{f}-language_model") for f in ("transformer", "gru", "lstm", "rnn")]
CASES += [pytest.param(f, _regression, {}, id=f"{f}-regression") for f in ("transformer", "gru", "lstm", "rnn", "cnn")]
CASES += [pytest.param(f, _bidirectional, {"bidirectional": True}, id=f"{f}-bidirectional") for f in ("gru", "lstm")]


@pytest.mark.parametrize(("family", "make", "extra"), CASES)
def test_sequence_variant_contract(family, make, extra, tmp_path):
    g = torch.Generator().manual_seed(0)
    spec, inputs, target = make(g)
    cfg = _cfg(family, **extra)
    torch.manual_seed(0)
    model = build_model(spec, cfg)
    model.train()
    out = model(*inputs)
    expected = (B, T, V) if spec.task == "language_model" else (B, spec.n_outputs)
    assert out.shape == expected and torch.isfinite(out).all()

    assert_one_step_lowers_loss(model, spec, inputs, target)

    model.eval()
    write_tensors(tmp_path / "m.safetensors", model.state_dict())
    torch.manual_seed(5)
    fresh = build_model(spec, cfg.model_copy(update={"init": "default"}))
    fresh.load_state_dict(read_tensors(tmp_path / "m.safetensors"))
    fresh.eval()
    with torch.no_grad():
        assert torch.equal(model(*inputs), fresh(*inputs))


@pytest.mark.parametrize("family", ["transformer", "gru"])
def test_language_model_never_reads_the_future(family):
    g = torch.Generator().manual_seed(1)
    spec, (x,), _ = _lm(g)
    model = build_model(spec, _cfg(family)).eval()
    changed = x.clone()
    changed[:, 7:] = (changed[:, 7:] % (V - 1)) + 1  # different characters from step 7 on
    with torch.no_grad():
        a, b = model(x), model(changed)
    assert torch.allclose(a[:, :7], b[:, :7], atol=1e-6)  # the past's predictions are untouched
    assert not torch.allclose(a[:, 7:], b[:, 7:])


@pytest.mark.parametrize("family", ["gru", "lstm", "rnn", "transformer", "cnn"])
def test_padding_carries_no_signal(family):
    g = torch.Generator().manual_seed(2)
    spec, (x, _), _ = _bidirectional(g)
    lengths = torch.tensor([4, 12, 7, 1, 9, 12])
    model = build_model(spec, _cfg(family, bidirectional=family in ("gru", "lstm"))).eval()
    noisy = x.clone()
    pad = torch.arange(T)[None, :] >= lengths[:, None]
    noisy[pad] = 100.0 * torch.randn(int(pad.sum()), 2, generator=g)
    with torch.no_grad():
        assert torch.allclose(model(x, lengths), model(noisy, lengths), atol=1e-5)


def test_recurrent_summary_matches_the_sequence_alone():
    """A padded sequence's output equals that of the same sequence with no padding at all (packing)."""
    g = torch.Generator().manual_seed(3)
    spec, (x, _), _ = _bidirectional(g)
    model = build_model(spec, _cfg("gru", bidirectional=True)).eval()
    with torch.no_grad():
        padded = model(x[:1], torch.tensor([5]))
        alone = model(x[:1, :5], torch.tensor([5]))
    assert torch.allclose(padded, alone, atol=1e-6)


def test_gan_step_lowers_the_discriminator_loss_and_samples_keep_the_shape():
    from palaestra.models.gan import REAL_LABEL

    g = torch.Generator().manual_seed(4)
    for shape in ([1, 8, 8], [5]):
        spec = FeatureSpec(kind="generation", task="generation", input_names=["x"], n_outputs=1, input_shape=shape)
        torch.manual_seed(0)
        gan = build_model(spec, _cfg("gan"))
        x = torch.rand(B, *shape, generator=g) * 2 - 1
        fake = gan.sample(B, generator=torch.Generator().manual_seed(0))
        assert fake.shape == (B, *shape) and fake.abs().max() <= 1.0

        def d_loss(gan=gan, x=x, fake=fake):
            real, fk = gan(x), gan(fake)
            return (torch.nn.functional.binary_cross_entropy_with_logits(real, torch.full_like(real, REAL_LABEL))
                    + torch.nn.functional.binary_cross_entropy_with_logits(fk, torch.zeros_like(fk)))

        gan.train()
        with torch.no_grad():
            before = d_loss()
        state = type("S", (), {"optimizer": torch.optim.Adam(gan.parameters(), lr=1e-2, betas=(0.5, 0.999))})()
        g_before = [p.detach().clone() for p in gan.generator.parameters()]
        gan.train_step(state, (x, torch.zeros(B)))
        with torch.no_grad():
            after = d_loss()
        assert after < before, shape
        assert any(not torch.equal(a, b) for a, b in zip(g_before, gan.generator.parameters(), strict=True))


def test_invalid_variants_are_plain_config_errors():
    g = torch.Generator().manual_seed(0)
    spec, _, _ = _lm(g)
    with pytest.raises(ConfigError, match="bidirectional"):
        build_model(spec, _cfg("gru", bidirectional=True))
    with pytest.raises(ConfigError, match="'cnn' does not take tokens"):
        build_model(spec, _cfg("cnn"))
    with pytest.raises(ConfigError, match="divisible"):
        build_model(spec, _cfg("transformer", d_model=10, heads=4))
