"""``tokens-bin``: a GPT on token shards in the llm.c / modded-nanogpt ``.bin`` format.

A shard is a header of 256 little-endian int32 followed by the tokens. ``header[0]`` is the
magic: 20240520 for uint16 tokens or 20240801 for uint32 tokens; ``header[1]`` the version;
``header[2]`` the number of tokens, which must match the file size. Training batches are random
windows of the concatenated training shards (seeded by the run's seed); the validation loss is
the mean next-token cross-entropy over ``eval_windows`` evenly spaced windows of the validation
shards. Meant for GPU users with shards at hand; nothing is downloaded.

References:
    The shard layout of llm.c (Karpathy, ``dev/data/data_common.py``) and modded-nanogpt.
"""

from __future__ import annotations

import dataclasses
import glob
from pathlib import Path
from typing import Final

import numpy as np
import torch
from numpy.typing import ArrayLike

from steepest.experiments.tasks.lm import GPTTask

__all__ = ["TokensBin", "read_shard", "write_shard", "MAGIC_DTYPES", "HEADER_INTS"]

HEADER_INTS: Final = 256
MAGIC_DTYPES: Final = {20240520: np.uint16, 20240801: np.uint32}


def read_shard(path: str | Path) -> np.ndarray:
    """The tokens of one ``.bin`` shard as an int64 array.

    Raises:
        ValueError: the file is shorter than the header, has an unknown magic, or its token
            count disagrees with its size.
    """
    path = Path(path)
    raw = path.read_bytes()
    if len(raw) < 4 * HEADER_INTS:
        raise ValueError(
            f"read_shard: {path} has {len(raw)} bytes, fewer than the {4 * HEADER_INTS}-byte header"
        )
    header = np.frombuffer(raw, dtype="<i4", count=HEADER_INTS)
    magic = int(header[0])
    if magic not in MAGIC_DTYPES:
        raise ValueError(
            f"read_shard: {path} has magic {magic}; expected 20240520 (uint16 tokens) or "
            "20240801 (uint32 tokens)"
        )
    dtype = np.dtype(MAGIC_DTYPES[magic]).newbyteorder("<")
    count = int(header[2])
    body = len(raw) - 4 * HEADER_INTS
    if count < 0 or count * dtype.itemsize != body:
        raise ValueError(
            f"read_shard: {path} header says {count} tokens but holds {body} bytes "
            f"({body // dtype.itemsize} tokens of {dtype.itemsize} bytes)"
        )
    return np.frombuffer(raw, dtype=dtype, offset=4 * HEADER_INTS).astype(np.int64)


def write_shard(path: str | Path, tokens: ArrayLike, magic: int = 20240520) -> None:
    """Write ``tokens`` as a ``.bin`` shard with the given magic (version 1).

    Raises:
        ValueError: unknown magic or a token outside the magic's unsigned range.
    """
    if magic not in MAGIC_DTYPES:
        raise ValueError(f"write_shard: magic={magic!r}; expected one of {list(MAGIC_DTYPES)}")
    tokens = np.asarray(tokens, dtype=np.int64)
    limit = np.iinfo(MAGIC_DTYPES[magic]).max
    if tokens.size and (tokens.min() < 0 or tokens.max() > limit):
        raise ValueError(f"write_shard: tokens must lie in [0, {limit}] for magic {magic}")
    header = np.zeros(HEADER_INTS, dtype="<i4")
    header[:3] = (magic, 1, tokens.size)
    body = tokens.astype(np.dtype(MAGIC_DTYPES[magic]).newbyteorder("<"))
    Path(path).write_bytes(header.tobytes() + body.tobytes())


def _load(pattern: str, option: str) -> np.ndarray:
    paths = sorted(glob.glob(pattern))
    if not paths:
        raise ValueError(f"tokens-bin: option {option}={pattern!r} matches no file")
    return np.concatenate([read_shard(p) for p in paths])


@dataclasses.dataclass
class TokensBin(GPTTask):
    """GPT (``layers`` x ``width``) on ``.bin`` token shards matched by glob patterns."""

    train_files: str = ""
    val_files: str = ""
    vocab_size: int = 50304
    layers: int = 4
    width: int = 128
    heads: int = 4
    context: int = 128
    batch_size: int = 16
    eval_windows: int = 64

    name = "tokens-bin"
    steps = 300
    eval_every = 25
    warmup = 0.05
    schedule = "cosine"
    default_lrs = {"adamw": (3e-3, 3e-3), "muon": (0.03, 3e-3), "sgd": (0.3, 3e-3)}
    metrics = ()

    def __post_init__(self) -> None:
        self._check_positive(
            "vocab_size", "layers", "width", "heads", "context", "batch_size", "eval_windows"
        )
        for option in ("train_files", "val_files"):
            if not getattr(self, option):
                raise ValueError(
                    f"tokens-bin: option {option} is required (a glob of .bin shards, e.g. "
                    f"--task-option {option}=data/fineweb_train_*.bin)"
                )

    def setup(self, device: torch.device) -> None:
        train = _load(self.train_files, "train_files")
        val = _load(self.val_files, "val_files")
        span = self.context + 1
        for option, tokens in (("train_files", train), ("val_files", val)):
            if len(tokens) <= span:
                raise ValueError(
                    f"tokens-bin: {option} hold {len(tokens)} tokens; need more than "
                    f"context + 1 = {span}"
                )
            if tokens.max() >= self.vocab_size:
                raise ValueError(
                    f"tokens-bin: {option} hold token {tokens.max()} >= vocab_size="
                    f"{self.vocab_size}; raise the vocab_size option"
                )
        self.set_streams(torch.from_numpy(train), torch.from_numpy(val), self.vocab_size, device)
