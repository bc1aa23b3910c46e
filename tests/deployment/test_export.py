"""Export parity: ONNX and TorchScript give the run's outputs within 1e-4 on its test split."""

from __future__ import annotations

import numpy as np
import pytest

from palaestra.artifacts import read_json
from palaestra.cli import main
from palaestra.deployment import export as ex
from palaestra.errors import UserError
from palaestra.runs import Run


@pytest.mark.parametrize("fixture", ["penguins_run", "digits_run"])
@pytest.mark.parametrize("fmt", ["onnx", "torch_export", "torchscript"])
def test_export_matches_the_run_on_the_test_split(fixture, fmt, request, tmp_path):
    run_dir = request.getfixturevalue(fixture)
    run = Run.load(run_dir)
    path, check = ex.export(run, fmt, tmp_path / f"model.{fmt}")
    test_rows = len(read_json(run_dir / "preprocess.json")["splits"]["test"])
    assert check.rows == test_rows and "held-out" in check.source
    assert check.max_abs_diff <= 1e-4
    # Only the exported file and its preprocessing JSON: raw rows in, the run's outputs out.
    raw = ex.held_out(run)
    got = ex.predict_exported(path, raw)
    want = run.outputs(raw)
    assert got.shape == want.shape == (test_rows, run.spec.n_outputs)
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
    # The batch dimension is dynamic: one row and a larger batch than the export example both run.
    meta = read_json(ex.preprocess_path(path))
    assert meta["format"] == fmt
    if meta["inputs"] == ex.RAW:  # a table's ONNX file takes its raw columns
        assert fmt == "onnx" and meta["input_names"] == run.preprocessor.feature_columns
        np.testing.assert_allclose(ex.predict_exported(path, raw.head(1)), want[:1], atol=1e-4, rtol=0)
    else:
        assert meta["input_names"] == run.spec.input_names
        runner = ex.load_exported(path, fmt, run.spec.input_names)
        inputs = ex.model_inputs(run, raw)
        np.testing.assert_allclose(runner(tuple(t[:1] for t in inputs)), want[:1], atol=1e-4, rtol=0)


def test_a_mismatching_export_fails_loudly_and_is_removed(penguins_run, tmp_path, monkeypatch):
    real = ex.load_exported

    def off_by_a_little(path, fmt, names):
        runner = real(path, fmt, names)
        return lambda inputs: runner(inputs) + 1e-3

    monkeypatch.setattr(ex, "load_exported", off_by_a_little)
    out = tmp_path / "model.onnx"
    with pytest.raises(UserError, match="differs from the original"):
        ex.export(Run.load(penguins_run), "onnx", out)
    assert not out.exists() and not ex.preprocess_path(out).exists()


def test_synthetic_inputs_when_the_source_is_gone(penguins_run, monkeypatch, tmp_path):
    run = Run.load(penguins_run)
    run.config = run.config.model_copy(update={"data": run.config.data.model_copy(update={"source": str(tmp_path / "gone.csv")})})
    assert ex.held_out(run) is None
    _, check = ex.export(run, "torchscript", tmp_path / "m.pt")
    assert check.rows == 64 and "synthetic" in check.source and check.ok


def test_cli_export(penguins_run, tmp_path, capsys):
    out = tmp_path / "m.onnx"
    assert main(["export", str(penguins_run), "--format", "onnx", "--out", str(out)]) == 0
    assert out.is_file() and ex.preprocess_path(out).is_file()
    assert "max |difference|" in capsys.readouterr().out
    assert main(["export", str(tmp_path / "no-run"), "--format", "torchscript"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_torch_export_is_a_pt2_that_torch_export_load_runs_and_torchscript_says_it_is_deprecated(penguins_run, tmp_path,
                                                                                              capsys):
    import torch

    out = tmp_path / "m.pt2"
    assert main(["export", str(penguins_run), "--format", "torch_export", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "max |difference|" in captured.out and "deprecated" not in captured.err
    run = Run.load(penguins_run)
    raw = ex.held_out(run)
    module = torch.export.load(str(out)).module()  # what a user without palaestra does
    with torch.inference_mode():
        got = module(*ex.model_inputs(run, raw)).numpy()
    np.testing.assert_allclose(got, run.outputs(raw), atol=1e-5, rtol=0)
    assert main(["export", str(penguins_run), "--format", "torchscript", "--out", str(tmp_path / "m.pt")]) == 0
    assert "torch_export" in capsys.readouterr().err
