"""The README's shell snippets run as written.

Every command in a ```bash block of README.md is either run here, in a fresh directory as a new user would
(``.venv`` linked in, no PALAESTRA_RUNS), or listed in ``SKIPPED`` with the reason. A new snippet fails
``test_every_snippet_is_run_or_skipped_with_a_reason`` until it is placed in one or the other.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from testkit import ROOT

PALAESTRA = ".venv/bin/palaestra"
# The tour's training, shortened: the same command with fewer epochs.
TINY_TRAIN = " --set train.epochs=5"
SKIPPED = {
    "make run": "creates .venv and trains penguins for up to 200 epochs; the tour's train command is run instead",
    "make test": "the test suite itself",
    f"{PALAESTRA} train --data mnist1d --set model.family=gru": "minutes per epoch on 2 CPU cores",
    f"{PALAESTRA} train --data sunspots --task forecast --set data.window=24 --set data.horizon=1":
        "up to 200 epochs; forecasting is covered by tests/sequence",
    f"{PALAESTRA} train --data corpus.txt --task language_model --out runs/chars":
        "needs the reader's own corpus.txt and minutes per epoch; covered by tests/sequence",
    f'{PALAESTRA} generate runs/chars --prompt "The " --length 200 --temperature 0.8 --top-k 20':
        "needs runs/chars from the language-model one-liner",
    f"{PALAESTRA} train --data digits --task generation --out runs/gan && {PALAESTRA} generate runs/gan --n 64 "
    "--out samples.npz": "a GAN trained for up to 200 epochs (no validation split to stop early)",
    f"{PALAESTRA} tune --data penguins --trials 20 --sampler tpe --pruner hyperband --out studies/penguins":
        "20 full trainings; tuning is covered by tests/tuning",
    f"{PALAESTRA} train studies/penguins/best.yaml": "needs the study above",
    f"{PALAESTRA} train --data pydocs --set model.text_encoder=minilm":
        "covered by tests/models/test_pretrained_text.py and the pretrained_vs_random example",
    **{f".venv/bin/python examples/{name}.py": "tests/examples runs every example (with --quick)"
       for name in ("guess_the_number", "separate_two_classes", "which_bird", "backprop_by_hand",
                    "minibatch_and_epoch", "pretrained_vs_random", "forecast_against_naive")},
}
# What is run, by how each command begins: the command itself is taken from the README, as written.
RUN = {
    "train": f"{PALAESTRA} train --data penguins --target species --out runs/penguins",
    "datasets": f"{PALAESTRA} datasets",
    "predict": f"{PALAESTRA} predict runs/penguins --data new_birds.csv",
    "evaluate": f"{PALAESTRA} evaluate runs/penguins --data labelled_birds.csv",
    "runs": f"{PALAESTRA} runs",
    "export": f"{PALAESTRA} export runs/penguins",
    "lr_find": f"{PALAESTRA} lr-find --data digits",
    "compress": f"{PALAESTRA} compress runs/penguins",
    "serve": f"{PALAESTRA} serve runs/penguins --port 8000",
    "curl": "curl -s localhost:8000/predict",
    "curl_v2": "curl -s localhost:8000/v2/models/penguins-species/infer",
    "curl_mlflow": "curl -s localhost:8000/invocations",
    "tracked": f'{PALAESTRA} train --data penguins --target species --set "train.trackers=[mlflow,tensorboard]"',
    "export_mlflow": f"{PALAESTRA} runs export --mlflow",
    "explain": f"{PALAESTRA} explain",
}


def readme_commands() -> list[str]:
    """Each command of each ```bash block: continuation lines joined, trailing comments and spacing dropped."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in re.sub(r"\\\n\s*", "", block).splitlines():
            line = re.sub(r"\s+#\s.*$", "", line).strip()  # a trailing comment
            if line and not line.startswith("#"):
                commands.append(line)
    return commands


def readme_runs() -> dict[str, str]:
    """The README's command for each entry of ``RUN`` (exactly one each; a command that fits several beginnings
    belongs to the longest, so ``runs export`` is not taken for ``runs``)."""
    found: dict[str, list[str]] = {name: [] for name in RUN}
    for c in readme_commands():
        fits = [name for name, start in RUN.items() if c == start or c.startswith(start + " ")]
        if fits:
            found[max(fits, key=lambda name: len(RUN[name]))].append(c)
    assert all(len(v) == 1 for v in found.values()), f"RUN entries must match one README command each: {found}"
    return {name: v[0] for name, v in found.items()}


def test_every_snippet_is_run_or_skipped_with_a_reason():
    ran = set(readme_runs().values())
    unplaced = [c for c in readme_commands() if c not in ran and c not in SKIPPED]
    assert not unplaced, f"README commands neither run nor skipped (add them to RUN or SKIPPED): {unplaced}"
    assert set(SKIPPED) <= set(readme_commands()), "SKIPPED lists commands that are no longer in the README"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def newcomer(tmp_path, monkeypatch):
    """A fresh working directory with the project's .venv linked in, and a user's environment."""
    venv = Path(sys.prefix)
    if not (venv / "bin" / "palaestra").is_file():
        pytest.skip("palaestra is not installed in this interpreter's environment (make setup)")
    (tmp_path / ".venv").symlink_to(venv)
    monkeypatch.delenv("PALAESTRA_RUNS", raising=False)  # the default: ./runs under the working directory
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200", "NO_COLOR": "1", "PALAESTRA_TOKEN": "s3cret"}
    return tmp_path, env


def _sh(command: str, cwd: Path, env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    r = subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{command}\nexit {r.returncode}\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    return r


def _birds(cwd: Path) -> None:
    """The reader's new_birds.csv (no species) and labelled_birds.csv: penguins rows with the raw columns."""
    from palaestra.data.sources import read_source

    frame = read_source("penguins").sample(40, random_state=0)
    frame.drop(columns=["species"]).to_csv(cwd / "new_birds.csv", index=False)
    frame.to_csv(cwd / "labelled_birds.csv", index=False)


def test_the_tour_runs_as_written(newcomer):
    cwd, env = newcomer
    assert shutil.which("curl") or not os.environ.get("CI"), "CI must have curl: .ci/run installs it"
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    readme = readme_runs()
    train, datasets, predict, evaluate, runs, export, lr_find, compress, serve, curl, curl_v2, curl_mlflow = (
        readme[k] for k in ("train", "datasets", "predict", "evaluate", "runs", "export", "lr_find", "compress",
                            "serve", "curl", "curl_v2", "curl_mlflow"))
    r = _sh(train + TINY_TRAIN, cwd, env)
    assert "run: runs/penguins" in r.stdout and (cwd / "runs" / "penguins" / "report.html").is_file()
    assert "penguins" in _sh(datasets, cwd, env).stdout

    _birds(cwd)
    _sh(predict, cwd, env)
    assert (cwd / "predictions.csv").read_text().startswith("prediction,prob_Adelie,prob_Chinstrap,prob_Gentoo")
    assert json.loads(_sh(evaluate, cwd, env).stdout)["rows"] == 40
    listed = _sh(runs, cwd, env).stdout
    assert "penguins-species" in listed and "complete" in listed
    _sh(export, cwd, env)
    assert "suggested lr" in _sh(lr_find, cwd, env).stdout
    _sh(compress, cwd, env)
    assert (cwd / "runs" / "penguins-small" / "model.safetensors").is_file()

    port = _free_port()
    server = subprocess.Popen(["bash", "-c", "exec " + serve.replace("--port 8000", f"--port {port}")], cwd=cwd,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, server.stdout.read()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the server did not come up"
            time.sleep(0.5)
        answer = _sh(curl.replace("localhost:8000", f"localhost:{port}"), cwd, env, timeout=60).stdout
        body = json.loads(answer)
        assert "predictions" in body, answer  # a form-encoded body gets 422 instead
        assert body["predictions"][0] in ("Adelie", "Chinstrap", "Gentoo")
        assert abs(sum(body["probabilities"][0].values()) - 1.0) < 1e-4
        v2 = json.loads(_sh(curl_v2.replace("localhost:8000", f"localhost:{port}"), cwd, env, timeout=60).stdout)
        outputs = {o["name"]: o for o in v2["outputs"]}
        assert outputs["label"]["data"][0] in ("Adelie", "Chinstrap", "Gentoo"), v2
        assert abs(sum(outputs["probabilities"]["data"]) - 1.0) < 1e-4
        mlflow = json.loads(_sh(curl_mlflow.replace("localhost:8000", f"localhost:{port}"), cwd, env, timeout=60).stdout)
        assert mlflow["predictions"][0]["prediction"] == body["predictions"][0], mlflow
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def test_trackers_and_explain_run_as_written(newcomer):
    pytest.importorskip("mlflow")
    pytest.importorskip("tensorboard")
    pytest.importorskip("captum")
    cwd, env = newcomer
    readme = readme_runs()
    _sh(readme["train"] + TINY_TRAIN, cwd, env)
    _birds(cwd)
    out = _sh(readme["explain"], cwd, env).stdout
    assert "permutation importance" in out and "row 2:" in out
    assert "exported to MLflow" in _sh(readme["export_mlflow"], cwd, env).stdout
    _sh(readme["tracked"] + TINY_TRAIN, cwd, env)
    assert (cwd / "runs" / "mlruns").is_dir() and any((cwd / "runs" / "tracked" / "tensorboard").iterdir())
    again = _sh(f"{PALAESTRA} runs export --mlflow runs/tracked", cwd, env).stdout
    assert "already in MLflow" in again  # tracked while it trained
