"""Compression: a wide MLP shrinks at least 2x with test accuracy within one point; runs reload exactly."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors import safe_open
from testkit import tiny

from palaestra.cli import main
from palaestra.deployment.compress import compress
from palaestra.deployment.export import held_out
from palaestra.errors import ArtifactError, UserError
from palaestra.runs import Run


@pytest.fixture(scope="module")
def wide_run(tmp_path_factory):
    from palaestra.pipeline import train

    out = tmp_path_factory.mktemp("wide") / "run"
    with pytest.MonkeyPatch.context() as mp:  # module fixtures run before the per-test run-index isolation
        mp.setenv("PALAESTRA_RUNS", str(tmp_path_factory.mktemp("wide-runs")))
        train(tiny("penguins", epochs=5, model={"hidden": [256, 256]}), out=out, quiet=True)
    return out


def test_int8_shrinks_a_wide_mlp_with_accuracy_within_one_point(wide_run, tmp_path):
    run = Run.load(wide_run)
    new, report = compress(run, tmp_path / "int8", quantize="int8", repeats=10)
    before = (wide_run / "model.safetensors").stat().st_size
    after = (new.path / "model.safetensors").stat().st_size
    assert report["before"]["file_bytes"] == before and report["after"]["file_bytes"] == after
    assert before / after >= 2.0
    raw = held_out(run)
    acc_before = run.evaluate(raw)["accuracy"]
    acc_after = new.evaluate(raw)["accuracy"]  # the reloaded run, on the same test split
    assert report["before"]["accuracy"] == pytest.approx(acc_before)
    assert report["after"]["accuracy"] == pytest.approx(acc_after)
    assert abs(acc_before - acc_after) <= 0.01
    assert new.metrics["test"]["accuracy"] == pytest.approx(acc_after)
    # Weights really are int8 in the safetensors file, and the loaded model runs int8 Linear layers.
    with safe_open(str(new.path / "model.safetensors"), "pt") as f:
        dtypes = {k: f.get_tensor(k).dtype for k in f.keys()}
    assert dtypes["body.0.weight"] == torch.int8 and dtypes["head.weight"] == torch.int8
    assert "Int8Linear" in repr(new.model) and new.model.body[0].weight.dtype == torch.int8
    for key in ("latency_ms_batch1", "latency_ms_batch256"):
        assert report["before"][key] > 0 and report["after"][key] > 0


def test_pruning_is_permanent_sparse_on_disk_and_reloads_exactly(wide_run, tmp_path):
    run = Run.load(wide_run)
    new, report = compress(run, tmp_path / "pruned", prune=0.5, finetune_epochs=1, repeats=5)
    for name in ("body.0.weight", "head.weight"):
        w = new.model.state_dict()[name]
        assert float((w == 0).float().mean()) >= 0.5
    layout = json.loads((new.path / "compression.json").read_text())["tensors"]
    assert layout["body.3.weight"]["format"] == "sparse"  # the 256x256 layer: mask + kept values
    assert report["size_ratio"] > 1.5
    raw = held_out(run)
    # What was measured in memory is what reloads from disk.
    assert new.evaluate(raw)["accuracy"] == pytest.approx(report["after"]["accuracy"])
    np.testing.assert_allclose(Run.load(new.path).outputs(raw), new.outputs(raw), atol=0, rtol=0)


def test_altered_compression_layout_is_refused(wide_run, tmp_path):
    new, _ = compress(Run.load(wide_run), tmp_path / "c", quantize="int8", repeats=2)
    layout = new.path / "compression.json"
    layout.write_text(layout.read_text().replace('"scale": ', '"scale": 1', 1))
    with pytest.raises(ArtifactError, match="compression.json"):
        Run.load(new.path)


def test_compress_refuses_bad_requests(wide_run, tmp_path, capsys):
    run = Run.load(wide_run)
    with pytest.raises(UserError, match="nothing to do"):
        compress(run, tmp_path / "x")
    assert main(["compress", str(wide_run), "--prune", "1.5"]) == 2
    err = capsys.readouterr().err
    assert "--prune" in err and "Traceback" not in err
    assert main(["compress", str(wide_run)]) == 2 and "--quantize int8" in capsys.readouterr().err


def test_exports_of_int8_models(wide_run, tmp_path):
    from palaestra.deployment.export import export, model_inputs, predict_exported

    run = Run.load(wide_run)
    raw = held_out(run)
    # onnxruntime's quantizer on the float graph: smaller, checked at a tolerance scaled to the logits.
    float_path, _ = export(run, "onnx", tmp_path / "float.onnx")
    int8_path, check = export(run, "onnx", tmp_path / "int8.onnx", quantize="int8")
    assert check.ok and 1e-4 < check.max_abs_diff <= check.tolerance
    assert float_path.stat().st_size / int8_path.stat().st_size >= 2.0
    agree = (predict_exported(int8_path, raw).argmax(1) == run.outputs(raw).argmax(1)).mean()
    assert agree >= 0.98
    # A compressed (int8 weights) run exports to every format with its own outputs (the ONNX exporter folds
    # the dequantized weights into float constants: for an int8 ONNX file, --quantize int8 above).
    new, _ = compress(run, tmp_path / "c", quantize="int8", repeats=2)
    for fmt, name in (("onnx", "c.onnx"), ("torch_export", "c.pt2")):
        path, check = export(new, fmt, tmp_path / name)
        assert check.max_abs_diff <= 1e-4
        np.testing.assert_allclose(predict_exported(path, raw), new.outputs(raw), atol=1e-4)
    assert model_inputs(new, raw)[0].shape[0] == len(raw)


def test_int8_weights_leave_no_deprecated_torch_quantization(wide_run, tmp_path, recwarn):
    import warnings

    warnings.simplefilter("always")
    new, _ = compress(Run.load(wide_run), tmp_path / "c", quantize="int8", repeats=2)
    Run.load(new.path).outputs(held_out(new))
    deprecations = [str(w.message) for w in recwarn if issubclass(w.category, DeprecationWarning)
                    and "quantiz" in str(w.message)]
    assert not deprecations and not any("torch.ao" in type(m).__module__ for m in new.model.modules())


def test_an_ensemble_prunes_and_quantizes_its_shared_weights(tmp_path):
    """The zero-config table model's shape (8 members sharing their dense weights) compresses like any MLP."""
    from palaestra.pipeline import train

    model = {"ensemble": 8, "hidden": [64, 64], "dropout": 0.0}
    run = train(tiny("penguins", epochs=5, model=model), out=tmp_path / "run", quiet=True)
    new, report = compress(run, tmp_path / "small", prune=0.5, quantize="int8", finetune_epochs=1, repeats=2)
    with safe_open(str(new.path / "model.safetensors"), "pt") as f:
        names = set(f.keys())
    layout = json.loads((new.path / "compression.json").read_text())["tensors"]
    shared = layout["body.layers.0.linear.weight"]
    assert shared["quantized"] and shared["format"] == "sparse" and "body.layers.0.linear.weight.mask" in names
    assert "Int8Linear" in repr(new.model)
    assert abs(report["after"]["accuracy"] - report["before"]["accuracy"]) <= 0.05
    raw = held_out(run)
    np.testing.assert_allclose(Run.load(new.path).outputs(raw), new.outputs(raw), atol=0, rtol=0)


def test_the_finetune_reads_columns_as_the_run_did(tmp_path, monkeypatch):
    """A run made when inference read a column differently (here: store_id as a number, before repeating ids
    became categories) still fine-tunes: compress prepares the rows with the run's own column types."""
    import pandas as pd

    import palaestra.data.prepare as prepare
    from palaestra.pipeline import train

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"store_id": np.arange(200) // 10, "x": rng.normal(size=200)})
    frame["y"] = np.where(frame.x + 0.1 * frame.store_id > 1, "hi", "lo")
    frame.to_csv(tmp_path / "shops.csv", index=False)
    today = prepare.infer_column
    with monkeypatch.context() as m:  # the older inference
        m.setattr(prepare, "infer_column", lambda name, series: "numeric" if name == "store_id" else today(name, series))
        run = train(tiny(str(tmp_path / "shops.csv"), epochs=2, data={"target": "y"}), out=tmp_path / "run", quiet=True)
    assert today("store_id", frame.store_id) == "category"  # what inference says now
    new, _ = compress(Run.load(run.path), tmp_path / "small", prune=0.5, finetune_epochs=1, repeats=2)
    assert next(f for f in new.preprocessor.features if f.name == "store_id").type == "numeric"
