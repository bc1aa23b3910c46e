"""``palaestra generate RUN``: text from a language model run, samples from a GAN run."""

from __future__ import annotations

import argparse
from pathlib import Path

from palaestra.cli import bounded_int, command, console, finite_float
from palaestra.errors import UserError


@command("generate", help="sample from a generative run (GAN samples to .npz/.png, text to stdout)")
def cmd_generate(args: argparse.Namespace) -> int:
    from palaestra.generative.sampling import generate_samples, generate_text, write_samples
    from palaestra.runs import Run

    run = Run.load(args.run)
    if run.spec.task == "language_model":
        if args.out:
            raise UserError("a language model prints its text: leave out --out (redirect stdout to save it)")
        print(generate_text(run, args.prompt or "", args.length, args.temperature, args.top_k, args.seed))
        return 0
    if run.spec.task == "generation":
        if not args.out:
            raise UserError("name the file for the samples with --out samples.npz (or .png for a grid)")
        x = generate_samples(run, args.n, args.seed)
        write_samples(x, Path(args.out))
        console(stderr=True).print(f"{len(x)} samples of shape {tuple(x.shape[1:])} written to {args.out}")
        return 0
    raise UserError(f"{args.run} is a {run.spec.task} run: generate needs a language_model or generation (gan) run")


@cmd_generate.arguments
def _generate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="run directory")
    p.add_argument("--n", type=bounded_int(1, 100_000, "a sample count"), default=16, help="samples to draw (GAN)")
    p.add_argument("--out", help="file for GAN samples: .npz (array x) or .png (grid)")
    p.add_argument("--prompt", help="text to continue (language model)")
    p.add_argument("--length", type=bounded_int(1, 1_000_000, "a length"), default=200, help="characters to generate (language model)")
    p.add_argument("--temperature", type=finite_float, default=1.0, help="softmax temperature; 0 picks the most likely")
    p.add_argument("--top-k", type=bounded_int(1, 1 << 31, "a count"), default=None, help="sample only from the k most likely characters")
    p.add_argument("--seed", type=bounded_int(0, 2**63 - 1, "a seed"), default=0, help="random seed for sampling")
