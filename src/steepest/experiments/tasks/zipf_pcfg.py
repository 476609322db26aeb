"""``zipf-pcfg``: a small GPT on token streams sampled from a random Zipf-weighted PCFG.

The grammar (drawn once from ``grammar_seed``) has ``nonterminals`` symbols, symbol 0 the start,
and ``terminals`` tokens. Each nonterminal has ``rules`` productions; the last one is a terminal
rule ``A -> a`` and each other one is, with probability 1/2, a binary rule ``A -> B C`` (B, C
uniform nonterminals), else a terminal rule (a uniform token). The k-th production of every
nonterminal has probability proportional to ``(k + 1)^(-exponent)`` (a Zipf law; 0 gives
uniform rules, larger values a more imbalanced language). A sentence expands the start symbol
depth first; a nonterminal at depth ``max_depth - 1`` uses only its terminal rules
(renormalized), so a sentence has at most ``2^(max_depth - 1)`` tokens. Sentences are joined
with an end token (id ``terminals``) into a training and a validation stream from different
sampling seeds. Metric: the validation next-token loss.

References:
    "Why Muon Outperforms Adam: A Curvature Perspective", arXiv 2606.04662
    (Zipf-PCFG data with a controllable imbalance, where Muon's NDS advantage over Adam widens).
"""

from __future__ import annotations

import dataclasses
import random

import torch

from steepest.experiments.tasks.lm import GPTTask

__all__ = ["ZipfPCFG", "Grammar", "Production", "random_grammar", "sample_stream"]

#: ``("t", token)`` (emit a terminal) or ``("nt", B, C)`` (expand into nonterminals B C)
Production = tuple[str, int] | tuple[str, int, int]


@dataclasses.dataclass(frozen=True)
class Grammar:
    """Per nonterminal, its productions (``("t", token)`` or ``("nt", B, C)``) and probabilities."""

    rules: tuple[tuple[Production, ...], ...]
    probs: tuple[tuple[float, ...], ...]
    terminals: int


def random_grammar(
    nonterminals: int, terminals: int, rules: int, exponent: float, seed: int
) -> Grammar:
    """A random grammar as described in the module docstring."""
    rng = random.Random(seed)
    weights = [(k + 1) ** (-exponent) for k in range(rules)]
    probs = tuple(w / sum(weights) for w in weights)
    table = []
    for _ in range(nonterminals):
        productions: list[Production] = []
        for k in range(rules):
            if k < rules - 1 and rng.random() < 0.5:
                productions.append(("nt", rng.randrange(nonterminals), rng.randrange(nonterminals)))
            else:
                productions.append(("t", rng.randrange(terminals)))
        table.append(tuple(productions))
    return Grammar(tuple(table), (probs,) * nonterminals, terminals)


def sample_stream(grammar: Grammar, tokens: int, max_depth: int, seed: int) -> list[int]:
    """At least ``tokens`` tokens: sentences from the start symbol, each followed by the end
    token ``grammar.terminals``; truncated to ``tokens``."""
    rng = random.Random(seed)
    end = grammar.terminals
    leaf_rules = [
        [(r, p) for r, p in zip(rs, ps, strict=True) if r[0] == "t"]
        for rs, ps in zip(grammar.rules, grammar.probs, strict=True)
    ]
    out: list[int] = []
    while len(out) < tokens:
        stack = [(0, 0)]  # (nonterminal, depth); expanded left to right
        while stack:
            symbol, depth = stack.pop()
            if depth >= max_depth - 1:
                leaves = leaf_rules[symbol]
                rule = rng.choices([r for r, _ in leaves], [p for _, p in leaves])[0]
            else:
                rule = rng.choices(grammar.rules[symbol], grammar.probs[symbol])[0]
            if len(rule) == 2:  # ("t", token)
                out.append(rule[1])
            else:
                stack.append((rule[2], depth + 1))
                stack.append((rule[1], depth + 1))
        out.append(end)
    return out[:tokens]


@dataclasses.dataclass
class ZipfPCFG(GPTTask):
    """GPT on a Zipf-PCFG language (rule probabilities ~ rank^-``exponent``)."""

    exponent: float = 1.0
    nonterminals: int = 16
    terminals: int = 64
    rules: int = 8
    max_depth: int = 6
    grammar_seed: int = 0
    train_tokens: int = 100_000
    val_tokens: int = 8192
    layers: int = 2
    width: int = 64
    heads: int = 4
    context: int = 64
    batch_size: int = 16
    eval_windows: int = 64

    name = "zipf-pcfg"
    steps = 300
    eval_every = 15
    warmup = 0.05
    schedule = "cosine"
    default_lrs = {"adamw": (3e-3, 3e-3), "muon": (0.03, 3e-3), "sgd": (0.3, 3e-3)}
    metrics = ()

    def __post_init__(self) -> None:
        self._check_positive(
            "nonterminals", "terminals", "rules", "max_depth", "train_tokens", "val_tokens",
            "layers", "width", "heads", "context", "batch_size", "eval_windows",
        )  # fmt: skip
        if not isinstance(self.exponent, (int, float)) or self.exponent < 0:
            raise ValueError(f"zipf-pcfg: option exponent={self.exponent!r} must be >= 0")
        for option in ("train_tokens", "val_tokens"):
            if getattr(self, option) <= self.context + 1:
                raise ValueError(
                    f"zipf-pcfg: option {option}={getattr(self, option)} must exceed "
                    f"context + 1 = {self.context + 1}"
                )

    def setup(self, device: torch.device) -> None:
        self.grammar = random_grammar(
            self.nonterminals, self.terminals, self.rules, float(self.exponent), self.grammar_seed
        )
        train = sample_stream(self.grammar, self.train_tokens, self.max_depth, seed=1)
        val = torch.tensor(sample_stream(self.grammar, self.val_tokens, self.max_depth, seed=2))
        self.set_streams(torch.tensor(train), val, self.terminals + 1, device)
