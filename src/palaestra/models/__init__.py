"""Stage 2: model design. Families register themselves in ``registry``."""

from palaestra.models import cnn, gan, mlp, rnn, transformer  # noqa: F401  (register the built-in families)
from palaestra.models.registry import FAMILIES, build_model, register

__all__ = ["FAMILIES", "build_model", "register"]
