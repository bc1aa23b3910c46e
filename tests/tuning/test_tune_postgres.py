"""A study on PostgreSQL, the storage workers on several machines share.

CI starts a server and exports PALAESTRA_TEST_POSTGRES_URL; there a missing or unreachable server fails the
test. Elsewhere the test is skipped only when no URL is given.
"""

from __future__ import annotations

import os
import uuid

import optuna
import pytest
import torch

from palaestra.tuning.storage import storage_url
from palaestra.tuning.study import tune

URL = os.environ.get("PALAESTRA_TEST_POSTGRES_URL")


@pytest.mark.skipif(not URL and not os.environ.get("CI"), reason="no PostgreSQL: PALAESTRA_TEST_POSTGRES_URL unset")
def test_a_study_on_postgres_records_and_resumes(tmp_path):
    assert URL, "CI must export PALAESTRA_TEST_POSTGRES_URL (the .ci/run PostgreSQL server)"
    name = f"palaestra-test-{uuid.uuid4().hex[:8]}"
    config = {"seed": 0, "data": {"source": "iris"}, "model": {"hidden": [8]},
              "train": {"epochs": 2, "progress": False, "early_stopping": None, "threads": 1},
              "tune": {"sampler": "random", "pruner": "none", "trials": 2,
                       "space": {"optimizer.lr": {"log_uniform": [1e-3, 1e-1]}}}}
    threads = torch.get_num_threads()
    try:
        tune(config, out=tmp_path / "a", storage=URL, study_name=name, quiet=True, best_run=False, plots=False)
        config["tune"]["trials"] = 3  # a second worker (another directory) joins and extends the study
        result = tune(config, out=tmp_path / "b", storage=URL, study_name=name, quiet=True, best_run=False,
                      plots=False)
        assert result.ran == [2]
        study = optuna.load_study(study_name=name, storage=storage_url(URL))
        trials = study.get_trials()
        assert [t.number for t in trials] == [0, 1, 2]
        assert all(t.state.name == "COMPLETE" and sorted(t.intermediate_values) == [1, 2] for t in trials)
        assert (tmp_path / "b" / "best.yaml").is_file()
    finally:
        torch.set_num_threads(threads)
        try:
            optuna.delete_study(study_name=name, storage=storage_url(URL))
        except Exception as exc:  # the server is gone: the assertion above already says so
            print("DELETE FAILED", repr(exc))
