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


def billion_laughs(levels: int = 12) -> str:
    """YAML whose aliases of aliases expand to 10**levels values from a few hundred bytes."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, levels)]
    return "\n".join(lines + [f"model: {{hidden: *a{levels - 1}}}"]) + "\n"


def damaged_copy(d: Path, run: Path, name: str, data: str, resign: bool = False) -> str:
    """A copy of a finished run with ``name`` replaced by ``data``; ``resign``: manifest rewritten to match
    (a file of the wrong shape that the checksums vouch for, as a hand-edited, re-signed run would be)."""
    import shutil

    from palaestra.artifacts import read_json, write_manifest

    copy = d / "damaged"
    shutil.copytree(run, copy)
    (copy / name).write_text(data)
    if resign:
        write_manifest(copy, list(read_json(copy / "manifest.json")["files"]))
    return str(copy)


def user_dir(d: Path, *names: str) -> str:
    """A directory holding the user's own files (a best.yaml, a best-run/ ...): no command may touch them."""
    mine = d / "mine"
    mine.mkdir()
    for name in names:
        if name.endswith("/"):
            (mine / name).mkdir()
            (mine / name / "notes.txt").write_text("mine")
        else:
            (mine / name).write_text("mine")
    return str(mine)


def a_file(d: Path) -> str:
    (d / "afile").write_text("not a directory")
    return "afile"


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
    # --- issue 16: non-finite numbers -------------------------------------------------------------------------
    "infinite-lr": (lambda d, r: ["train", "--set", "optimizer.lr=.inf"], "optimizer.lr"),
    "nan-in-config-file": (lambda d, r: ["train", write(d, "c.yaml", "optimizer: {lr: .nan}\n")], "finite"),
    "nan-stop-at": (lambda d, r: ["train", "--set", "train.stop_at={val_loss: .nan}"], "train.stop_at"),
    "infinite-space-bound": (lambda d, r: ["tune", "--space", "optimizer.lr={uniform: [0.001, .inf]}"], "finite"),
    "value-too-large-to-scale": (lambda d, r: train_on(csv(d, "t.csv", table(24, a=[0.5 * i for i in range(23)] + [1e308]))),
                                 "column 'a' holds a value too large"),
    "value-too-large-npz-target": (lambda d, r: train_on(npz(d, "big.npz", x=np.random.default_rng(0).random((20, 3)),
                                                            y=np.r_[np.linspace(0, 1, 19), 1e308]), "--task",
                                                    "regression"), "too large"),
    "diverging-run": (lambda d, r: train_on(csv(d, "t.csv", table(30)), "--out", "diverged", "--set", "optimizer.name=sgd",
                                            "--set", "optimizer.lr=1e30", "--set", "train.epochs=3", "--set", "train.progress=false"),
                      "diverged"),
    "init-range-beyond-float32": (lambda d, r: ["train", "--set", "model.init=uniform", "--set",
                                                 "model.init_range=[-1e308, 1e308]"], "model.init_range"),
    "init-std-huge": (lambda d, r: ["train", "--set", "model.init=normal", "--set", "model.init_std=1e300"],
                      "model.init_std"),
    "generate-nan-temperature": (lambda d, r: ["generate", str(r), "--temperature", "nan"], "finite number"),
    "export-infinite-tolerance": (lambda d, r: ["export", str(r), "--format", "onnx", "--tolerance", "inf"], "finite"),
    "compress-nan-prune": (lambda d, r: ["compress", str(r), "--prune", "nan"], "finite"),
    "serve-nan-timeout": (lambda d, r: ["serve", str(r), "--timeout", "nan"], "finite"),
    # --- hangs and resource exhaustion ---------------------------------------------------------------------------
    "billion-laughs-config": (lambda d, r: ["train", write(d, "c.yaml", billion_laughs())], "aliases of aliases"),
    "billion-laughs-set": (lambda d, r: ["train", "--set", "model.hidden=" + billion_laughs().replace("\n", "; ")],
                           "--set"),
    "billion-laughs-space": (lambda d, r: ["tune", "--space", "model.hidden={choice: [&a [1,1,1,1,1,1,1,1,1,1], "
                                           + ", ".join(f"&b{i} [{', '.join(['*a' if i == 0 else f'*b{i - 1}'] * 10)}]"
                                                       for i in range(8)) + "]}"], "aliases of aliases"),
    "deeply-nested-config": (lambda d, r: ["train", write(d, "c.yaml", "model: " + "[" * 100_000 + "]" * 100_000)],
                             "nested more than"),
    "deeply-nested-set": (lambda d, r: ["train", "--set", "model.hidden=" + "[" * 5000 + "]" * 5000], "nested more than"),
    "deep-set-key": (lambda d, r: ["train", "--set", "tune.space." + ".".join(["a"] * 5000) + "=1"], "at most"),
    "huge-config-file": (lambda d, r: ["train", write(d, "c.yaml", "name: x\n" + "# padding\n" * 200_000)], "bytes"),
    "huge-set-value": (lambda d, r: ["train", "--set", "model.activation=" + "x" * 1_000_000], "limit"),
    "huge-unknown-value": (lambda d, r: ["train", "--set", "model.activation=[" + "1," * 30_000 + "1]"],
                           "model.activation"),
    "grid-too-large": (lambda d, r: ["tune", "--sampler", "grid", "--space", "train.batch_size={int: [1, 1000000000]}"],
                       "grid"),
    "width-beyond-int32": (lambda d, r: ["train", "--set", "model.hidden=[100000000000]"], "model.hidden"),
    "model-beyond-memory": (lambda d, r: ["train", "--set", "model.hidden=[1000000000, 1000]", "--out", "big"],
                            "parameters"),
    "model-overflowing-memory": (lambda d, r: ["train", "--set", "model.hidden=[2000000000, 2000000000]"], "memory"),
    "threads-beyond-cpus": (lambda d, r: ["train", "--set", "train.threads=100000000"], "train.threads"),
    "workers-beyond-cpus": (lambda d, r: ["train", "--set", "data.num_workers=100000"], "data.num_workers"),
    "layers-beyond-bound": (lambda d, r: ["train", "--set", "model.layers=100000000"], "model.layers"),
    "generate-billions": (lambda d, r: ["generate", str(r), "--n", "10000000000"], "between"),
    "serve-port-out-of-range": (lambda d, r: ["serve", str(r), "--port", "70000"], "65535"),
    "serve-port-not-a-number": (lambda d, r: ["serve", str(r), "--port", "http"], "port"),
    # --- secrets -------------------------------------------------------------------------------------------------
    "storage-password-bad-port": (lambda d, r: ["tune", "--out", "t", "--storage",
                                                "postgresql://user:PASSWORD@host:badport/db"], "user:***@host"),
    "storage-unknown-driver": (lambda d, r: ["tune", "--out", "t", "--storage", "nosuch://user:PASSWORD@host/db"],
                               "***"),
    # --- outputs that cannot be written, files a command did not create -------------------------------------------
    "storage-not-a-database": (lambda d, r: ["tune", "--out", "t", "--storage",
                                             f"sqlite:///{d / csv(d, 'a.csv', table())}"], "not a database"),
    "train-out-inside-a-file": (lambda d, r: train_on(csv(d, "t.csv", table()), "--out", f"{a_file(d)}/run"),
                                "not a directory"),
    "train-out-is-a-file": (lambda d, r: ["train", "--out", a_file(d)], "not a directory"),
    "predict-out-is-a-directory": (lambda d, r: ["predict", str(r), "--data", penguins_rows(d, r, "p.csv"), "--out", "."],
                                   "is a directory"),
    "predict-out-inside-a-file": (lambda d, r: ["predict", str(r), "--data", penguins_rows(d, r, "p.csv"), "--out",
                                                f"{a_file(d)}/p.csv"], "not a directory"),
    "export-out-inside-a-file": (lambda d, r: ["export", str(r), "--format", "onnx", "--out", f"{a_file(d)}/m.onnx"],
                                 "not a directory"),
    "compress-out-inside-a-file": (lambda d, r: ["compress", str(r), "--prune", "0.5", "--out", f"{a_file(d)}/c"],
                                   "not a directory"),
    "tune-out-with-user-files": (lambda d, r: ["tune", "--out", user_dir(d, "best.yaml", "trials.csv", "best-run/")],
                                 "did not create"),
    "lr-find-out-with-user-files": (lambda d, r: ["lr-find", "--out", user_dir(d, "lr_find.csv")], "did not create"),
    # --- damaged or foreign run directories ------------------------------------------------------------------------
    "runs-show-not-a-run": (lambda d, r: ["runs", "show", "."], "not a finished run"),
    "runs-show-a-file": (lambda d, r: ["runs", "show", a_file(d)], "not a run directory"),
    "doctor-not-a-run": (lambda d, r: ["doctor", "."], "not a finished run"),
    "evaluate-damaged-history": (lambda d, r: ["evaluate", damaged_copy(d, r, "history.csv", "\x00garbage"), "--data",
                                               penguins_rows(d, r, "e.csv")], "history.csv"),
    "doctor-damaged-history": (lambda d, r: ["doctor", damaged_copy(d, r, "history.csv", "epoch\nx\n")], "history.csv"),
    "doctor-resigned-history": (lambda d, r: ["doctor", damaged_copy(d, r, "history.csv", "epoch,train_loss\n1,low\n",
                                                                     resign=True)], "history.csv"),
    "doctor-damaged-diagnostics": (lambda d, r: ["doctor", damaged_copy(d, r, "diagnostics.json", "{")],
                                   "diagnostics.json"),
    "doctor-resigned-diagnostics": (lambda d, r: ["doctor", damaged_copy(d, r, "diagnostics.json", '{"grad_norms": 5}',
                                                                         resign=True)], "diagnostics.json"),
    "doctor-metrics-wrong-shape": (lambda d, r: ["doctor", damaged_copy(d, r, "metrics.json", "[1, 2]", resign=True)],
                                   "metrics.json"),
    "runs-show-metrics-wrong-shape": (lambda d, r: ["runs", "show", damaged_copy(d, r, "metrics.json", '{"test": 3}',
                                                                                 resign=True)], "metrics.json"),
    "runs-compare-damaged": (lambda d, r: ["runs", "compare", str(r), damaged_copy(d, r, "metrics.json", "{}")],
                             "metrics.json"),
    "evaluate-metrics-wrong-shape": (lambda d, r: ["evaluate", damaged_copy(d, r, "metrics.json", '"x"', resign=True),
                                                   "--data", penguins_rows(d, r, "e.csv")], "metrics.json"),
    "serve-log-inside-a-file": (lambda d, r: ["serve", str(r), "--log-predictions", f"{a_file(d)}/log.jsonl"],
                                "not a directory"),
    "serve-damaged-env": (lambda d, r: ["serve", damaged_copy(d, r, "env.json", "{}"), "--port", "0"], "env.json"),
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
    # Notes (how the columns were typed) may come first when training had started; then one error line.
    lines = [line for line in stderr.strip().splitlines() if not line.startswith("note: ")]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert len(stderr) < 2500, f"a {len(stderr)}-character message"  # never megabytes of the user's input
    assert "PASSWORD" not in result["stdout"] + stderr  # credentials in URLs are masked
    assert not (result["cwd"] / "run" / "model.safetensors").exists()  # refused before training


def test_user_files_are_left_untouched(corpus):
    for case in ("tune-out-with-user-files", "lr-find-out-with-user-files"):
        mine = corpus[case]["cwd"] / "mine"
        files = sorted(p.relative_to(mine).as_posix() for p in mine.rglob("*"))
        assert all((mine / f).read_text() == "mine" for f in files if (mine / f).is_file()), case
        assert not any(f.startswith(".") for f in files), f"{case} wrote into a directory it does not own: {files}"


def test_a_diverged_run_is_failed_not_complete(corpus):
    run = corpus["diverging-run"]["cwd"] / "diverged"
    assert json.loads((run / "state.json").read_text())["state"] == "failed"
    assert (run / "manifest.json").is_file()  # kept whole, for `palaestra doctor`
    from palaestra.errors import ArtifactError
    from palaestra.runs import Run

    with pytest.raises(ArtifactError, match="failed run"):  # its weights are no model to predict with
        Run.load(run)


def test_yaml_tags_do_not_execute_code(corpus):
    assert corpus["yaml-python-tag"]["rc"] == 2
    assert not (corpus["yaml-python-tag"]["cwd"] / "pwned").exists()


def test_semicolon_csv_is_read_not_refused(tmp_path):
    from palaestra.data.sources import read_source

    path = tmp_path / "semi.csv"
    table().to_csv(path, index=False, sep=";")
    assert list(read_source(str(path)).columns) == ["a", "b", "y"]


def test_a_damaged_run_index_is_a_plain_error(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "index.sqlite").write_bytes(b"not a database, but a user's file" * 100)
    r = cli("runs", env={"PALAESTRA_RUNS": str(runs)})
    assert r.returncode == 2 and r.stderr.startswith("error: the run index") and "Traceback" not in r.stderr


@pytest.mark.parametrize("case", ["unknown-config-key"])
def test_as_its_own_process(case, tmp_path, penguins_run):
    """The same refusal through ``python -m palaestra``: the process's exit code and stderr (one case: each
    process costs seconds of imports; the batch above runs the same entry point)."""
    argv = CASES[case][0](tmp_path, penguins_run)
    r = cli(*argv, cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert CASES[case][1].lower() in r.stderr.lower()
