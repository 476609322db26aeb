"""Tiny task settings so that every CLI run in these tests takes a second or two."""

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
}


def tiny_args(task: str) -> list[str]:
    """``--task-option`` arguments that make ``task`` tiny."""
    return [arg for opt in TINY_OPTIONS[task] for arg in ("--task-option", opt)]
