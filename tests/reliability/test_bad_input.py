"""The malformed-input corpus: each case gives exit code 2, one plain message naming the problem, no traceback.

All cases run through the real entry point (``palaestra.cli.main``) in one fresh Python process
(``cli_batch.py``), so torch is imported once for the whole corpus; a few cases also run as their own
``python -m palaestra`` process to prove the process-level exit code and stderr.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from reliability_helpers import run_cli_batch
from testkit import cli, tiny

from palaestra.config import load_config


def table(n: int = 12, **extra) -> pd.DataFrame:
    """A tiny two-class table: a numeric and a categorical feature, target ``y``."""
    df = pd.DataFrame({"a": [i * 0.5 for i in range(n)], "b": ["p", "q", "r"] * (n // 3), "y": ["x", "z"] * (n // 2)})
    for k, v in extra.items():
        df[k] = v
    return df


def csv(d: Path, name: str, df: pd.DataFrame) -> str:
    df.to_csv(d / name, index=False)
    return name


def write(d: Path, name: str, data: str | bytes) -> str:
    (d / name).write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return name


def npz(d: Path, name: str, **arrays) -> str:
    np.savez(d / name, **arrays)
    return name


def train_on(name: str, *more: str) -> list[str]:
    return ["train", "--data", name, "--target", "y", "--out", "run", *more]


def ragged_images(d: Path) -> list[str]:
    images = np.empty(3, dtype=object)
    images[:] = [np.zeros((8, 8)), np.zeros((8, 8)), np.zeros((10, 10))]
    return train_on(npz(d, "ragged.npz", x=images, y=np.array([0, 1, 0])))


def other_config_resume(d: Path) -> list[str]:
    """An interrupted run directory (as training leaves it), resumed with a different config."""
    run = d / "stopped"
    run.mkdir()
    (run / "config.yaml").write_text(load_config(tiny()).to_yaml())
    (run / "state.json").write_text(json.dumps({"state": "interrupted"}))
    write(d, "other.yaml", json.dumps({**tiny(), "seed": 7}))
    return ["train", "other.yaml", "--resume", str(run)]


def penguins_rows(d: Path, run: Path, name: str, drop: list[str] = (), **changes) -> str:
    rows = pd.read_csv(_penguins_csv(run)).drop(columns=list(drop))
    for k, v in changes.items():
        rows[k] = rows[k].astype(object)
        rows.loc[rows.index[0], k] = v
    return csv(d, name, rows)


def _penguins_csv(run: Path) -> Path:
    path = run.parent / "penguins-rows.csv"
    if not path.exists():
        from palaestra.data.sources import read_source

        read_source("penguins").head(20).to_csv(path, index=False)
    return path


# id: (builder(dir, penguins_run) -> argv, a substring the message must contain)
CASES = {
    "missing-file": (lambda d, r: train_on("nope.csv"), "nope.csv"),
    "empty-file": (lambda d, r: train_on(write(d, "empty.csv", "")), "empty"),
    "header-only": (lambda d, r: train_on(write(d, "header.csv", "a,b,y\n")), "no rows"),
    "wrong-delimiter": (lambda d, r: train_on(write(d, "colon.csv", table().to_csv(index=False, sep=":"))), "delimiter"),
    "wrong-encoding": (lambda d, r: train_on(write(d, "latin1.csv", table(b=["café", "naïve", "crème"] * 4)
                                                   .to_csv(index=False).encode("latin-1"))), "UTF-8"),
    "binary-as-csv": (lambda d, r: train_on(write(d, "binary.csv", b"PK\x03\x04\x00\x00garbage\x00\x01")), "csv"),
    "unsupported-type": (lambda d, r: train_on(write(d, "data.xlsx", b"PK\x03\x04")), "unsupported data file type"),
    "directory": (lambda d, r: train_on("."), "directory"),
    "target-missing": (lambda d, r: train_on(csv(d, "t.csv", table().rename(columns={"y": "species"})), "--target",
                                             "specis"), "did you mean 'species'"),
    "one-class": (lambda d, r: train_on(csv(d, "one.csv", table(y="only"))), "only one class"),
    "all-empty-column": (lambda d, r: train_on(csv(d, "e.csv", table(c=[None] * 12))), "column 'c' is empty"),
    "text-in-numeric": (lambda d, r: train_on(csv(d, "t.csv", table(24, a=[str(i) for i in range(23)] + ["abc"]))),
                        "'abc'"),
    "ragged-images": (lambda d, r: ragged_images(d), "mismatched shapes"),
    "nan-in-features": (lambda d, r: train_on(npz(d, "nan.npz", x=np.r_[np.zeros((5, 3)), [[np.nan, 0, 0]]],
                                                  y=np.arange(6) % 2)), "NaN or infinite"),
    "inf-in-features": (lambda d, r: train_on(npz(d, "inf.npz", x=np.r_[np.ones((5, 3)), [[np.inf, 0, 0]]],
                                                  y=np.arange(6) % 2)), "NaN or infinite"),
    "npz-without-x": (lambda d, r: train_on(npz(d, "nox.npz", features=np.zeros((4, 2)), y=np.arange(4))), "named 'x'"),
    "npz-one-dimensional": (lambda d, r: train_on(npz(d, "flat.npz", x=np.zeros(4), y=np.arange(4))), "sample axis"),
    "npz-length-mismatch": (lambda d, r: train_on(npz(d, "len.npz", x=np.zeros((4, 2)), y=np.arange(3))),
                            "'y' has 3"),
    "npz-scalar-y": (lambda d, r: train_on(npz(d, "sy.npz", x=np.zeros((4, 2)), y=np.array(1))), "'y'"),
    "corrupt-parquet": (lambda d, r: train_on(write(d, "bad.parquet", b"PAR1" + bytes(range(200)) + b"PAR1")),
                        "Parquet"),
    "corrupt-npz": (lambda d, r: train_on(write(d, "bad.npz", b"PK\x03\x04" + bytes(100))), ".npz"),
    "invalid-yaml": (lambda d, r: ["train", write(d, "c.yaml", "model: [unclosed\n")], "not valid YAML"),
    "yaml-not-a-mapping": (lambda d, r: ["train", write(d, "c.yaml", "- a\n- b\n")], "mapping"),
    "yaml-python-tag": (lambda d, r: ["train", write(d, "c.yaml", "name: !!python/object/apply:os.system "
                                                     "['touch pwned']\n")], "c.yaml"),
    "missing-config": (lambda d, r: ["train", "nope.yaml"], "nope.yaml"),
    "unknown-config-key": (lambda d, r: ["train", write(d, "c.yaml", "optimizer: {lrr: 0.1}\n")],
                           "did you mean 'optimizer.lr'"),
    "unknown-section": (lambda d, r: ["train", write(d, "c.yaml", "trian: {epochs: 1}\n")], "did you mean 'train'"),
    "negative-lr": (lambda d, r: ["train", "--set", "optimizer.lr=-0.1"], "optimizer.lr"),
    "zero-batch-size": (lambda d, r: ["train", "--set", "train.batch_size=0"], "train.batch_size"),
    "zero-epochs": (lambda d, r: ["train", "--set", "train.epochs=0"], "train.epochs"),
    "text-for-a-number": (lambda d, r: ["train", "--set", "optimizer.lr=fast"], "optimizer.lr"),
    "split-not-summing-to-one": (lambda d, r: ["train", "--set", "data.split.train=0.5"], "sum to 1"),
    "set-without-equals": (lambda d, r: ["train", "--set", "optimizer.lr"], "KEY=VALUE"),
    "unknown-model-family": (lambda d, r: train_on(csv(d, "t.csv", table()), "--set", "model.family=mpl"),
                             "did you mean 'mlp'"),
    "unknown-task": (lambda d, r: train_on(csv(d, "t.csv", table()), "--task", "clasification"), "data.task"),
    "seed-out-of-range": (lambda d, r: ["train", "--set", "seed=99999999999999999999"], "seed"),
    "unknown-device": (lambda d, r: ["train", "--set", "train.device=tpu"], "train.device"),
    "misspelt-monitor": (lambda d, r: train_on(csv(d, "t.csv", table(30)), "--set", "train.epochs=1", "--set",
                                               "train.early_stopping.monitor=val_acc"), "did you mean 'val_accuracy'"),
    "infinite-regression-target": (lambda d, r: train_on(csv(d, "t.csv", table(24, y=[0.5 * i for i in range(23)] + [np.inf]))),
                                   "infinite"),
    "nan-label-in-npz": (lambda d, r: train_on(npz(d, "nany.npz", x=np.random.default_rng(0).random((20, 3)),
                                                   y=np.r_[np.linspace(0, 1, 19), np.nan])), "NaN"),
    "complex-features": (lambda d, r: train_on(npz(d, "c.npz", x=np.ones((10, 2), dtype=complex), y=np.arange(10) % 2)),
                         "numeric"),
    "npz-no-samples": (lambda d, r: train_on(npz(d, "empty.npz", x=np.ones((0, 3)), y=np.zeros(0))), "no samples"),
    "resume-another-config": (lambda d, r: other_config_resume(d), "different config"),
    "resume-not-a-run": (lambda d, r: ["train", "--resume", "."], "not a run directory"),
    "predict-missing-columns": (lambda d, r: ["predict", str(r), "--data", penguins_rows(d, r, "p.csv", drop=["island"]),
                                              "--out", "p.out.csv"], "missing column: 'island'"),
    "predict-text-in-numeric": (lambda d, r: ["predict", str(r), "--data", penguins_rows(d, r, "p.csv", bill_length_mm="long"),
                                              "--out", "p.out.csv"], "'long'"),
    "predict-unknown-run": (lambda d, r: ["predict", "nowhere", "--data", "x.csv", "--out", "p.csv"], "nowhere"),
    "predict-arrays-into-table-model": (lambda d, r: ["predict", str(r), "--data",
                                                      npz(d, "a.npz", x=np.zeros((2, 4))), "--out", "p.csv"], "table"),
    "evaluate-without-target": (lambda d, r: ["evaluate", str(r), "--data",
                                              penguins_rows(d, r, "e.csv", drop=["species"])], "species"),
    "evaluate-unseen-label": (lambda d, r: ["evaluate", str(r), "--data", penguins_rows(d, r, "e.csv", species="Dodo")],
                              "Dodo"),
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, penguins_run):
    """Every case's (rc, stdout, stderr), all run in one fresh process."""
    cases = []
    for case_id, (build, _) in CASES.items():
        d = tmp_path_factory.mktemp(case_id)
        cases.append({"id": case_id, "argv": build(d, penguins_run), "cwd": str(d)})
    results = run_cli_batch(cases)
    for c in cases:
        results[c["id"]]["cwd"] = Path(c["cwd"])
    return results


@pytest.mark.parametrize("case", list(CASES))
def test_malformed_input_gives_exit_2_and_one_plain_message(case, corpus):
    result = corpus[case]
    expected = CASES[case][1]
    stderr = result["stderr"]
    assert "Traceback" not in stderr, stderr
    assert result["rc"] == 2, f"rc={result['rc']}\n{stderr}"
    assert expected.lower() in stderr.lower(), stderr
    assert stderr.startswith("error: ") and len(stderr.strip().splitlines()) == 1, stderr
    assert not (result["cwd"] / "run" / "model.safetensors").exists()  # refused before training


def test_yaml_tags_do_not_execute_code(corpus):
    assert corpus["yaml-python-tag"]["rc"] == 2
    assert not (corpus["yaml-python-tag"]["cwd"] / "pwned").exists()


def test_semicolon_csv_is_read_not_refused(tmp_path):
    from palaestra.data.sources import read_source

    path = tmp_path / "semi.csv"
    table().to_csv(path, index=False, sep=";")
    assert list(read_source(str(path)).columns) == ["a", "b", "y"]


@pytest.mark.parametrize("case", ["unknown-config-key"])
def test_as_its_own_process(case, tmp_path, penguins_run):
    """The same refusal through ``python -m palaestra``: the process's exit code and stderr (one case: each
    process costs seconds of imports; the batch above runs the same entry point)."""
    argv = CASES[case][0](tmp_path, penguins_run)
    r = cli(*argv, cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert CASES[case][1].lower() in r.stderr.lower()
