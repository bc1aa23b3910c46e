"""Small building blocks shared by the model families."""

from __future__ import annotations

from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "leaky_relu": nn.LeakyReLU}


def activation(name: str) -> nn.Module:
    return ACTIVATIONS[name]()


def dense_stack(n_in: int, hidden: list[int], act: str, dropout: float) -> tuple[nn.Sequential, int]:
    """Linear -> activation -> dropout, per hidden width. Returns the stack and its output width."""
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(n_in, width), activation(act)]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        n_in = width
    return nn.Sequential(*layers), n_in
