"""A tuning study's HTML report: best value and params, the trials best first, plots named after the metric."""

import re

import pytest
import torch

from palaestra.tuning.study import tune


@pytest.fixture(autouse=True)
def _restore_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def test_a_study_writes_study_html_with_the_metric_named_on_its_plots(tmp_path, monkeypatch):
    import optuna.visualization.matplotlib as ovm
    from matplotlib.text import Text

    texts: list[str] = []
    for name in ("plot_optimization_history", "plot_param_importances", "plot_parallel_coordinate"):
        original = getattr(ovm, name)

        def drawn(*args, _original=original, **kwargs):
            ax = _original(*args, **kwargs)
            fig = (ax.flat[0] if hasattr(ax, "flat") else ax).figure
            fig.canvas.draw()  # tick labels exist once drawn
            texts.extend(t.get_text() for t in fig.findobj(Text))
            return ax

        monkeypatch.setattr(ovm, name, drawn)
    config = {"seed": 0, "data": {"source": "iris"}, "model": {"hidden": [8]},
              "train": {"epochs": 2, "progress": False, "early_stopping": None, "threads": 1},
              "tune": {"sampler": "random", "pruner": "none", "trials": 3, "metric": "val_accuracy",
                       "space": {"optimizer.lr": {"log_uniform": [1e-3, 1e-1]}}}}
    result = tune(config, out=tmp_path / "study", quiet=True, best_run=False, plots=True)

    assert "val_accuracy" in texts and "Objective Value" not in texts
    page = (tmp_path / "study" / "study.html").read_text(encoding="utf-8")
    assert tmp_path / "study" / "study.html" in result.files
    assert f"best val_accuracy</td><td>{result.best_value:.6g}</td>" in page
    assert f"<td>optimizer.lr</td><td>{result.best_params['optimizer.lr']:.4g}</td>" in page
    head = re.search(r"<tr><th>trial</th>.*?</tr>", page).group(0)
    assert "<th>val_accuracy</th>" in head and "<th>optimizer.lr</th>" in head
    rows = re.findall(r'<tr(?: class="best")?><td>(\d+)</td>', page)
    assert len(rows) == 3 and int(rows[0]) == result.best_trial.number  # best first
    assert '<tr class="best">' in page
    for plot in ("plots/history.png", "plots/importances.png", "plots/parallel.png"):
        assert f'src="{plot}"' in page
