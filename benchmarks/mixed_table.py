"""Zero-config Palaestra on a table with numbers, a category, free text and a date, against what a practitioner
fits first (TF-IDF on the text, scaled numbers, one-hot categories, logistic regression) on the same rows, and
against itself with the text and date columns dropped. Accuracy only (no timing): seeds 0, 1, 2.

    .venv/bin/python -m benchmarks.mixed_table            # prints one line per seed and the means
    .venv/bin/python -m benchmarks.mixed_table model.embedding_dim=32   # with config overrides (as --set)
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd


def mixed_table(n: int = 800, seed: int = 0) -> pd.DataFrame:
    """Customers: an income, a plan, a free-text note, a sign-up date; churn depends on the note's sentiment and
    on signing up in winter, so a model that drops the text or the date loses signal."""
    rng = np.random.default_rng(seed)
    income = rng.normal(50, 15, n).round(1)
    plan = rng.choice(["basic", "plus", "pro"], n)
    happy = rng.random(n) < 0.5
    good = ["great service and friendly staff", "love the fast delivery", "very happy with the product quality"]
    bad = ["slow support and rude staff", "the app keeps crashing every day", "billing mistakes again this month"]
    filler = ["we", "ordered", "twice", "last", "year", "and", "the", "team", "said"]
    notes = [" ".join([*rng.choice(filler, 4), rng.choice(good if h else bad)]) for h in happy]
    days = rng.integers(0, 1500, n)
    when = pd.Timestamp("2020-01-01") + pd.to_timedelta(days, unit="D")
    winter = np.isin(when.month, [12, 1, 2])
    logit = 0.04 * (income - 50) + 4.4 * (happy - 0.5) + 1.5 * winter - 0.4
    churned = np.where(rng.random(n) < 1 / (1 + np.exp(-logit)), "no", "yes")
    spend = 20 + 0.8 * income + 15 * (plan == "pro") + 10 * happy + rng.normal(0, 4, n)
    return pd.DataFrame({"income": income, "plan": plan, "note": notes, "signup": when.strftime("%Y-%m-%d"),
                         "churned": churned, "spend": spend.round(2)})


def tfidf_baseline(frame: pd.DataFrame, train_idx, test_idx) -> float:
    """What a practitioner fits first: TF-IDF on the text, scaled numbers, one-hot categories, logistic regression."""
    from sklearn.compose import ColumnTransformer
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    X = frame.drop(columns=[c for c in ("churned", "spend") if c in frame.columns]).copy()
    X["signup_days"] = (pd.to_datetime(X["signup"]) - pd.Timestamp("2020-01-01")).dt.days
    prep = ColumnTransformer([("text", TfidfVectorizer(), "note"),
                              ("num", StandardScaler(), ["income", "signup_days"]),
                              ("cat", OneHotEncoder(handle_unknown="ignore"), ["plan"])])
    model = make_pipeline(prep, LogisticRegression(max_iter=2000)).fit(X.iloc[train_idx], frame.churned.iloc[train_idx])
    return float(model.score(X.iloc[test_idx], frame.churned.iloc[test_idx]))


def main(argv: list[str] | None = None) -> None:
    import palaestra
    from palaestra.config import load_config

    overrides = list(argv if argv is not None else sys.argv[1:])
    rows = []
    for seed in (0, 1, 2):
        frame = mixed_table(800, seed=seed).drop(columns=["spend"])
        cfg = load_config({"seed": seed, "data": {"source": "customers.csv", "target": "churned"},
                           "train": {"progress": False}}, overrides)
        run = palaestra.train(cfg, source=frame, quiet=True)
        less = palaestra.train(load_config(cfg, ["data.drop=[note, signup]"]), source=frame, quiet=True)
        baseline = tfidf_baseline(frame, run.data.train.index, run.data.test.index)
        rows.append((run.metrics["test"]["accuracy"], less.metrics["test"]["accuracy"], baseline))
        print(f"seed {seed}: palaestra {rows[-1][0]:.3f}  without text+date {rows[-1][1]:.3f}  "
              f"tf-idf + logistic regression {rows[-1][2]:.3f}", flush=True)
    mean = np.mean(rows, axis=0)
    print(f"mean: palaestra {mean[0]:.3f}  without text+date {mean[1]:.3f}  tf-idf + logistic regression {mean[2]:.3f}")


if __name__ == "__main__":
    main()
