import math
from pathlib import Path

from palaestra.evaluation.report import write_report

CLASSES = ["Adelie", "Chinstrap", "Gentoo"]
CLASSIFICATION_METRICS = ["accuracy", "precision_macro", "recall_macro", "f1_macro", "f1_weighted", "roc_auc"]


def _history(epochs: int, metric_names: list[str], lr: float = 1e-3) -> list[dict]:
    return [
        {"epoch": e, "train_loss": 1.0 / e, "val_loss": 1.2 / e, **{f"val_{m}": 0.5 + 0.1 * e for m in metric_names},
         "grad_norm": 2.0 / e, "lr": lr / e, "seconds": 0.01}
        for e in range(1, epochs + 1)
    ]


def _classification_metrics() -> dict:
    split = {m: 0.9 for m in CLASSIFICATION_METRICS}
    split.update(confusion_matrix=[[5, 1, 0], [0, 4, 1], [0, 0, 6]], classes=CLASSES)
    return {"val": dict(split), "test": dict(split), "epochs": 3, "train_seconds": 0.5, "stop_reason": None}


def _write(run_dir: Path, history: list[dict], metrics: dict, notices: list[str] | None = None, **kw) -> list[str]:
    config = {"name": "penguins", "seed": 0, "train": {"epochs": len(history)}}
    info = {"task": "classification", "model": "mlp", "parameters": 12345, "device": "cpu"}
    return write_report(run_dir, config, history, metrics, info, notices or [], **kw)


def _is_png(path: Path) -> bool:
    return path.read_bytes().startswith(b"\x89PNG")


def test_classification_report_has_metrics_classes_and_plots(tmp_path):
    written = _write(tmp_path, _history(3, ["accuracy", "f1_macro"]), _classification_metrics())

    for name in ["report.html", "plots/loss.png", "plots/metrics.png", "plots/confusion_matrix.png", "plots/lr.png"]:
        assert name in written
    for name in written:
        assert (tmp_path / name).is_file()
        if name.endswith(".png"):
            assert _is_png(tmp_path / name)
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "penguins" in page
    for metric in CLASSIFICATION_METRICS:
        assert metric in page
    for label in CLASSES:
        assert label in page
    assert 'src="plots/confusion_matrix.png"' in page
    assert "mlp" in page and "12345" in page


def test_regression_report_has_no_confusion_matrix(tmp_path):
    split = {"mse": 4.0, "rmse": 2.0, "mae": 1.5, "r2": 0.8}
    metrics = {"val": dict(split), "test": dict(split), "epochs": 2, "train_seconds": 0.1, "stop_reason": None}
    history = [{k: v for k, v in row.items() if k != "lr"} for row in _history(2, ["rmse", "r2"])]

    written = _write(tmp_path, history, metrics)

    assert "plots/confusion_matrix.png" not in written
    assert not (tmp_path / "plots" / "confusion_matrix.png").exists()
    assert "plots/lr.png" not in written
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    for metric in split:
        assert metric in page


def test_diverged_history_with_nan_still_writes_report(tmp_path):
    history = _history(3, ["accuracy"])
    history[1]["train_loss"] = math.nan
    history[2].update(train_loss=math.inf, val_loss=math.nan, val_accuracy=math.nan, grad_norm=math.nan)
    metrics = _classification_metrics()
    metrics["stop_reason"] = "diverged: the loss became nan at epoch 2"

    written = _write(tmp_path, history, metrics)

    assert _is_png(tmp_path / "plots" / "loss.png")
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "diverged: the loss became nan" in page
    assert "report.html" in written


def test_long_history_is_elided(tmp_path):
    _write(tmp_path, _history(60, ["accuracy"]), _classification_metrics())
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "40 epochs" in page
    assert page.count("<tr><td>") < 60


def test_text_is_escaped_and_sections_are_appended(tmp_path):
    notice = "column <script>alert(1)</script> has 3 missing values"
    _write(tmp_path, _history(2, []), _classification_metrics(), [notice],
           sections=[("Doctor", "<p class='finding'>no problems found</p>")])

    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<h2>Doctor</h2>" in page
    assert "<p class='finding'>no problems found</p>" in page
    assert not (tmp_path / "plots" / "metrics.png").exists()


def _sections(page: str) -> list[str]:
    import re

    return re.findall(r"<h2>([^<(]+)", page) + (["Resolved config"] if "<summary>Resolved config" in page else [])


def test_what_a_person_looks_for_first_comes_first(tmp_path):
    _write(tmp_path, _history(3, ["accuracy"]), _classification_metrics(), ["a notice"],
           sections=[("Samples", "<p>samples</p>"), ("Doctor", "<p>no problems found</p>")])
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    order = [s.strip() for s in _sections(page)]
    assert order[:3] == ["Test metrics", "Doctor", "Data notices"]
    assert order.index("Plots") < order.index("Per-class metrics") < order.index("History")
    assert order[-1] == "Resolved config" and "<details><summary>Resolved config</summary>" in page
    assert '<div class="scroll"><table><tr><th>epoch</th>' in page  # the history scrolls in its own box


def test_classification_gets_a_per_class_table_from_the_confusion_matrix(tmp_path):
    from palaestra.evaluation.report import per_class

    rows = per_class([[5, 1, 0], [0, 4, 1], [0, 0, 6]])
    assert rows[0] == {"precision": 1.0, "recall": 5 / 6, "f1": 2 * (5 / 6) / (1 + 5 / 6), "support": 6}
    assert rows[2]["precision"] == 6 / 7 and rows[2]["recall"] == 1.0 and rows[2]["support"] == 6
    assert per_class([[0, 0], [0, 3]])[0] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    _write(tmp_path, _history(3, ["accuracy"]), _classification_metrics())
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "<h2>Per-class metrics (test)</h2>" in page
    assert "<tr><td>Adelie</td><td>1</td><td>0.8333</td><td>0.9091</td><td>6</td></tr>" in page


def test_regression_gets_predicted_vs_actual_and_residual_plots(tmp_path):
    split = {"mse": 4.0, "rmse": 2.0, "mae": 1.5, "r2": 0.8}
    metrics = {"val": dict(split), "test": dict(split), "epochs": 2, "best_epoch": 1}
    predictions = {"actual": [1.0, 2.0, 3.0, float("nan")], "predicted": [1.5, 1.8, 3.3, 2.0], "target": "price"}
    written = _write(tmp_path, _history(2, ["rmse", "r2"]), metrics, predictions=predictions)
    for name in ("plots/predicted_vs_actual.png", "plots/residuals.png"):
        assert name in written and _is_png(tmp_path / name)
        assert f'src="{name}"' in (tmp_path / "report.html").read_text(encoding="utf-8")
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert '<tr class="best"><td>1</td>' in page  # the best epoch, marked in the history too
    assert "Per-class" not in page


def test_metrics_nested_per_target_render_per_target(tmp_path):
    kind = {"accuracy": 0.75, "confusion_matrix": [[3, 1], [0, 4]], "classes": ["a", "b"]}
    price = {"mse": 4.0, "r2": 0.5}
    metrics = {"val": {"price": dict(price), "kind": dict(kind)}, "test": {"price": price, "kind": kind},
               "epochs": 2}
    written = _write(tmp_path, _history(2, []), metrics)
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "<h2>Test metrics (price)</h2>" in page and "<h2>Test metrics (kind)</h2>" in page
    assert "<h2>Per-class metrics (test, kind)</h2>" in page
    assert "plots/confusion_matrix-kind.png" in written


def test_a_regression_run_plots_its_test_predictions_in_the_targets_units(tmp_path):
    import numpy as np
    from testkit import tiny

    from palaestra.artifacts import read_json
    from palaestra.data.sources import read_source
    from palaestra.evaluation.report import regression_predictions
    from palaestra.pipeline import train

    run = train(tiny("diabetes", epochs=2), out=tmp_path / "run", quiet=True)
    pairs = regression_predictions(run, run.data.test)
    test_rows = read_json(tmp_path / "run" / "preprocess.json")["splits"]["test"]
    expected = read_source("diabetes").iloc[test_rows]["progression"].to_numpy(dtype=float)
    assert np.allclose(pairs["actual"], expected, rtol=1e-5)
    assert np.allclose(pairs["predicted"], run.predict(read_source("diabetes").iloc[test_rows])["prediction"],
                       rtol=1e-4, atol=1e-3)
    assert pairs["target"] == "progression"
    for name in ("predicted_vs_actual.png", "residuals.png"):
        assert _is_png(tmp_path / "run" / "plots" / name)
    assert regression_predictions(train(tiny("iris", epochs=1), quiet=True), None) is None


def test_the_forecast_figure_draws_each_series_and_each_origins_horizon():
    import numpy as np
    import pandas as pd

    from palaestra.evaluation.task_sections import MAX_SERIES, forecast_figure

    class Pre:
        time_column, series_id, target = "t", "shop", "sales"

    def parts(n_series: int, first_rows: list[int], horizon: int) -> tuple[dict, np.ndarray]:
        rows = np.array([r + 100 * s for s in range(n_series) for r in first_rows])
        series = np.repeat([f"s{s}" for s in range(n_series)], len(first_rows))
        actual = rows[:, None] + np.arange(horizon)[None, :] + 0.5
        return {"actual": actual, "model": actual + 1, "naive": actual - 1, "series": series, "scale": {}}, rows

    frame = pd.DataFrame({"t": np.arange(100 * MAX_SERIES + 100)})
    # a backtest: origins a horizon apart, each drawn with its whole horizon (actual, then one line per origin)
    backtest, rows = parts(2, [10, 13, 16], horizon=3)
    fig = forecast_figure(backtest, rows, frame, Pre)
    assert len(fig.axes) == 2
    for ax in fig.axes:
        lines = ax.get_lines()
        assert len(lines) == 1 + 2 * 3 and len(lines[0].get_xdata()) == 9
        assert [t.get_text() for t in ax.get_legend().get_texts()][:2] == ["actual", "forecast (mae 1)"]
    # every origin: the one-step-ahead forecasts, one line each
    dense, rows = parts(MAX_SERIES + 2, list(range(10, 20)), horizon=3)
    fig = forecast_figure(dense, rows, frame, Pre)
    assert len(fig.axes) == MAX_SERIES and len(fig.axes[0].get_lines()) == 3
    assert fig.get_suptitle() == f"the first {MAX_SERIES} of {MAX_SERIES + 2} series"
