"""``model.ensemble: k``: k members sharing the dense weights, each scored on its own loss, their mean predicted."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from palaestra.config import LossConfig, ModelConfig
from palaestra.data.spec import FeatureSpec
from palaestra.models.ensemble import EnsembleMLP
from palaestra.models.registry import build_model
from palaestra.training.losses import build_loss

SPEC = FeatureSpec(kind="table", task="classification", input_names=["numeric", "categorical"], n_outputs=3,
                   n_numeric=5, embeddings=[(6, 3)], classes=[0, 1, 2])


def _inputs(b: int = 10):
    g = torch.Generator().manual_seed(0)
    return torch.randn(b, 5, generator=g), torch.randint(0, 6, (b, 1), generator=g)


def test_members_train_apart_and_predict_their_mean():
    torch.manual_seed(0)
    model = build_model(SPEC, ModelConfig(ensemble=4, hidden=[16, 8], dropout=0.0))
    x = _inputs()
    members = model.train()(*x)
    assert members.shape == (10, 4, 3)
    assert not torch.allclose(members[:, 0], members[:, 1])  # random signs + own heads: the members differ
    mean = model.eval()(*x)
    assert mean.shape == (10, 3)
    torch.testing.assert_close(mean, members.mean(dim=1))


def test_the_loss_is_the_mean_of_the_members_losses():
    target = torch.tensor([0, 1, 2, 1, 0])
    loss_fn = build_loss(LossConfig(), SPEC, target, members=4)
    out = torch.randn(5, 4, 3)
    want = torch.stack([F.cross_entropy(out[:, i], target) for i in range(4)]).mean()
    torch.testing.assert_close(loss_fn(out, target), want)
    torch.testing.assert_close(loss_fn(out[:, 0], target), F.cross_entropy(out[:, 0], target))  # one output: as is


def test_a_member_learns_only_from_its_own_loss():
    torch.manual_seed(0)
    net = EnsembleMLP(5, [8], 2, "relu", 0.0, k=3)
    out = net.train()(torch.randn(6, 5))
    out[:, 1].sum().backward()  # member 1's output alone
    grads = net.heads.weight.grad.abs().sum(dim=(1, 2))
    assert grads[1] > 0 and grads[0] == 0 and grads[2] == 0
    assert net.layers[0].r.grad[[0, 2]].abs().sum() == 0  # the other members' own scales are untouched
    assert net.layers[0].linear.weight.grad.abs().sum() > 0  # the shared weights learn from every member
    names = [n for n, _ in net.named_parameters()]
    assert names[0].startswith("layers.0.") and names[-1].startswith("heads.")  # input to output (the doctor)


def test_tables_get_the_ensemble_recipe_unless_the_user_describes_the_network():
    from palaestra.config import load_config
    from palaestra.pipeline import resolve_config

    plain = resolve_config(load_config({}), SPEC, rows=5000)
    assert (plain.model.ensemble, plain.model.hidden, plain.model.dropout, plain.train.batch_size) == (8, [64, 64], 0.0, 256)
    assert resolve_config(load_config({}), SPEC, rows=1200).train.batch_size == 128  # an eighth of the rows
    assert resolve_config(load_config({}), SPEC, rows=200).train.batch_size == 32
    own = resolve_config(load_config({"model": {"hidden": [16]}}), SPEC, rows=5000)
    assert (own.model.ensemble, own.model.hidden, own.model.dropout) == (1, [16], 0.2)  # as described
    assert own.train.batch_size == 256  # the batch group is apart: the user set nothing of it
    batch = resolve_config(load_config({"train": {"batch_size": 64}}), SPEC, rows=5000)
    assert (batch.model.ensemble, batch.train.batch_size) == (8, 64)
    warm = resolve_config(load_config({"model": {"init": {"from": "runs/earlier"}}}), SPEC, rows=5000)
    assert (warm.model.ensemble, warm.model.hidden) == (1, [32])  # weights from a run: the plain network
    trial = resolve_config(load_config({"model": {"dropout": 0.3}}), SPEC, rows=5000)  # e.g. a tuning trial
    assert (trial.model.ensemble, trial.model.hidden, trial.model.dropout) == (8, [64, 64], 0.3)
    again = resolve_config(load_config(plain.to_dict()), SPEC, rows=5000)  # a run's config.yaml: the same model
    assert again.to_dict() == plain.to_dict()
    texts = FeatureSpec(kind="table", task="classification", input_names=["numeric", "text:notes"], n_outputs=3,
                        n_numeric=5, classes=[0, 1, 2], texts=[{"name": "notes", "vocab_size": 20, "max_length": 6}])
    assert resolve_config(load_config({}), texts, rows=5000).model.ensemble == 1  # text tables: as before
