"""Sampling text from a character language model: used by ``palaestra generate`` and by the run's report."""

from __future__ import annotations

import math

import torch

from palaestra.errors import UserError


def generate_text(run, prompt: str = "", length: int = 200, temperature: float = 1.0, top_k: int | None = None,
                  seed: int = 0) -> str:
    """Continue ``prompt`` by ``length`` characters, sampling each from the model's next-character distribution.

    ``temperature`` divides the logits (0: always the most likely character); ``top_k`` keeps only the k most
    likely characters. The prompt is returned with its continuation.

    >>> print(generate_text(run, "The ", length=40, temperature=0.8, top_k=10))  # doctest: +SKIP
    """
    if run.spec.task != "language_model":
        raise UserError(f"generating text needs a language_model run; {run.path or 'this run'} is a {run.spec.task} run")
    if length < 0 or temperature < 0 or (top_k is not None and top_k < 1):
        raise UserError("--length and --temperature must be >= 0 and --top-k >= 1")
    pre, model = run.preprocessor, run.model
    model.eval()
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    ids = pre.encode(prompt).tolist()
    if not ids:  # no prompt: start from a character drawn from the training unigram distribution
        ids = [int(torch.multinomial(torch.tensor(pre.unigram[1:]), 1, generator=gen)) + 1]
        prompt = pre.decode(ids)
    out: list[int] = []
    with torch.inference_mode():
        for _ in range(length):
            context = torch.tensor([(ids + out)[-pre.context:]], device=device)
            logits = model(context)[0, -1].float().cpu()
            logits[0] = -math.inf  # never emit the unknown character
            if top_k is not None and top_k < len(logits):
                cutoff = torch.topk(logits, top_k).values[-1]
                logits[logits < cutoff] = -math.inf
            if temperature == 0:
                nxt = int(logits.argmax())
            else:
                # In float64 and from the largest logit (0): any finite temperature gives finite probabilities
                # (a tiny one the most likely character, a huge one a uniform draw), never NaN.
                scaled = (logits.double() - logits.max()) / temperature
                nxt = int(torch.multinomial(torch.softmax(scaled, -1), 1, generator=gen))
            out.append(nxt)
    return prompt + pre.decode(out)
