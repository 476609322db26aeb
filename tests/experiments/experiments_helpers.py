"""Tiny task settings so that every CLI run in these tests takes a second or two."""

from pathlib import Path

import numpy as np

TINY_OPTIONS = {
    "shakespeare-char": [
        "layers=1",
        "width=16",
        "heads=2",
        "context=16",
        "batch_size=4",
        "eval_windows=8",
    ],
    "mnist-mlp": ["train_size=512", "batch_size=32"],
    "quadratic": ["m=12", "n=6", "rank=3"],
    "modular-addition": ["modulus=11", "width=8", "hidden=16", "batch_size=32"],
    "imbalanced-gmm": [
        "classes=3",
        "dim=6",
        "train_size=120",
        "val_per_class=20",
        "hidden=8",
        "batch_size=16",
    ],
    "implicit-bias": ["n=30", "dim=5", "classes=3"],
    "zipf-pcfg": [
        "nonterminals=4",
        "terminals=8",
        "rules=3",
        "max_depth=3",
        "train_tokens=400",
        "val_tokens=100",
        "layers=1",
        "width=16",
        "heads=2",
        "context=8",
        "batch_size=4",
        "eval_windows=4",
    ],
    "tokens-bin": [
        "vocab_size=32",
        "layers=1",
        "width=16",
        "heads=2",
        "context=8",
        "batch_size=4",
        "eval_windows=4",
    ],
}


def write_tiny_shards(folder: Path) -> tuple[str, str]:
    """Two uint16 training shards and one uint32 validation shard of tokens < 32; their globs."""
    from steepest.experiments.tasks.tokens_bin import write_shard

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(2):
        write_shard(folder / f"train_{i:02d}.bin", rng.integers(0, 32, 300), magic=20240520)
    write_shard(folder / "val_00.bin", rng.integers(0, 32, 200), magic=20240801)
    return str(folder / "train_*.bin"), str(folder / "val_*.bin")


def tiny_args(task: str, tmp_path: Path | None = None) -> list[str]:
    """``--task-option`` arguments that make ``task`` tiny (tokens-bin: shards in tmp_path)."""
    options = list(TINY_OPTIONS[task])
    if task == "tokens-bin":
        train, val = write_tiny_shards(tmp_path / "shards")
        options += [f"train_files={train}", f"val_files={val}"]
    return [arg for opt in options for arg in ("--task-option", opt)]
