"""The shipped data sets load offline and match their published sizes and checksums."""

import hashlib
from importlib import resources

import numpy as np
import pytest

from steepest import data


def test_shakespeare_size_and_start():
    text = data.load_shakespeare()
    assert len(text) == 1_115_394
    assert text.startswith("First Citizen:")


def test_mnist_shapes_and_label_counts():
    x, y = data.load_mnist()
    assert x.shape == (10_000, 28, 28) and x.dtype == np.uint8
    assert y.shape == (10_000,)
    # The MNIST test split's label counts (digit 0..9), a published fact of the data set.
    counts = np.bincount(y, minlength=10).tolist()
    assert counts == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.mark.parametrize("name", sorted(data.CHECKSUMS))
def test_checksums_match_files(name):
    raw = resources.files("steepest.data").joinpath(name).read_bytes()
    assert hashlib.md5(raw).hexdigest() == data.CHECKSUMS[name]


def test_corrupt_checksum_raises(monkeypatch):
    monkeypatch.setitem(data.CHECKSUMS, "tinyshakespeare.txt", "0" * 32)
    with pytest.raises(OSError, match="tinyshakespeare.txt"):
        data.load_shakespeare()
