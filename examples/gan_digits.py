"""A GAN on the 8x8 digits, checked by a separately trained classifier.

Trains a digits classifier (the `cnn` family) and, separately, a GAN (`model.family: gan`) on the same images;
draws samples with the GAN run (as `palaestra generate RUN --n N --out samples.npz` would) and asks the
classifier what they are. A GAN that learned the digits yields samples the classifier labels with high
confidence, spread over most of the ten classes (a collapsed GAN would give one or two classes).

    python examples/gan_digits.py            # about 200 GAN epochs
    python examples/gan_digits.py --quick    # a smoke run
"""

from __future__ import annotations

import json
import sys

import numpy as np

from palaestra.generative.sampling import generate_samples, write_samples
from palaestra.pipeline import train

try:
    from examples._common import parse
except ImportError:  # run as a script from the examples folder
    from _common import parse


def main(argv: list[str] | None = None) -> dict:
    args = parse(__doc__.splitlines()[0], argv)
    gan_epochs, clf_epochs, n = (5, 5, 100) if args.quick else (200, 40, 1000)
    common = {"seed": 0, "train": {"progress": False, "threads": 1}}
    classifier = train({**common, "data": {"source": "digits"}, "model": {"family": "cnn", "channels": [16, 32]},
                        "train": {**common["train"], "epochs": clf_epochs}}, out=args.out / "digits-classifier", quiet=True)
    gan = train({**common, "data": {"source": "digits"}, "model": {"family": "gan", "channels": [64]},
                 "train": {**common["train"], "epochs": gan_epochs}}, out=args.out / "digits-gan", quiet=True)
    samples = generate_samples(gan, n, seed=0)  # (n, 8, 8) on the digits' 0..16 scale
    write_samples(samples, args.out / "gan-samples.npz")
    write_samples(samples[:50], args.out / "gan-samples.png")
    probs = classifier.predict_proba(samples)
    labels, confidence = probs.argmax(1), probs.max(1)
    counts = np.bincount(labels, minlength=10)
    result = {
        "classifier_test_accuracy": round(classifier.metrics["test"]["accuracy"], 4),
        "samples": n,
        "sample_range": [float(samples.min()), float(samples.max())],
        "mean_confidence": round(float(confidence.mean()), 4),
        "share_confidence_over_0.9": round(float((confidence > 0.9).mean()), 4),
        "classes_covered": int((counts >= 0.02 * n).sum()),  # classes with at least 2% of the samples
        "class_counts": counts.tolist(),
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
    sys.exit(0)
