"""Stage 2: model design. Every built-in family is imported here, so importing ``palaestra.models`` (or any
module in it) registers them all in ``registry.FAMILIES``."""

from palaestra.models import cnn, dlinear, gan, mlp, rnn, transformer  # noqa: F401  (register the built-in families)
from palaestra.models.registry import FAMILIES, Family, build_model, register, resolve_family, resolve_layout

__all__ = ["FAMILIES", "Family", "build_model", "register", "resolve_family", "resolve_layout"]
