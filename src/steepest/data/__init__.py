"""Data sets shipped with steepest, loaded offline and checksum-verified.

The files, with their MD5 checksums in ``CHECKSUMS``:

* ``tinyshakespeare.txt``: the tiny-shakespeare corpus (40,000 lines of Shakespeare, public
  domain), 1,115,394 characters.
* ``mnist-t10k-*``: the MNIST test split (LeCun, Cortes and Burges, "The MNIST database of
  handwritten digits"), 10,000 images of 28 x 28 with labels, IDX format.
"""

from __future__ import annotations

import gzip
import hashlib
from importlib import resources

import numpy as np

__all__ = ["load_shakespeare", "load_mnist", "CHECKSUMS"]

CHECKSUMS = {
    "tinyshakespeare.txt": "6fb458f1232090904fb40fe944165e91",
    "mnist-t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "mnist-t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}


def _read_verified(name: str) -> bytes:
    """Read a shipped file and check its md5 against ``CHECKSUMS``."""
    raw = resources.files(__name__).joinpath(name).read_bytes()
    digest = hashlib.md5(raw).hexdigest()
    if digest != CHECKSUMS[name]:
        raise OSError(
            f"steepest.data: {name} has md5 {digest}, expected {CHECKSUMS[name]}; "
            "the package data is corrupt, reinstall steepest"
        )
    return raw


def load_shakespeare() -> str:
    """The tiny-shakespeare corpus as one string (1,115,394 characters)."""
    return _read_verified("tinyshakespeare.txt").decode("utf-8")


def load_mnist() -> tuple[np.ndarray, np.ndarray]:
    """The MNIST test split: images ``(10000, 28, 28)`` uint8 and labels ``(10000,)`` uint8.

    IDX format: a 16-byte header for images (magic 2051) and 8 bytes for labels (magic 2049).
    """
    images = gzip.decompress(_read_verified("mnist-t10k-images-idx3-ubyte.gz"))
    labels = gzip.decompress(_read_verified("mnist-t10k-labels-idx1-ubyte.gz"))
    if int.from_bytes(images[:4], "big") != 2051 or int.from_bytes(labels[:4], "big") != 2049:
        raise OSError("steepest.data: MNIST files do not carry the IDX magic numbers 2051/2049")
    n = int.from_bytes(images[4:8], "big")
    x = np.frombuffer(images, dtype=np.uint8, offset=16).reshape(n, 28, 28)
    y = np.frombuffer(labels, dtype=np.uint8, offset=8)
    return x, y
