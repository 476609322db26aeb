"""The MNIST example trains for real and reaches >= 95% held-out accuracy quickly on CPU."""

import importlib.util
import pathlib

import torch

EXAMPLE = pathlib.Path(__file__).parents[2] / "examples" / "mnist_mlp.py"


def load_example():
    spec = importlib.util.spec_from_file_location("mnist_mlp", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_split_sizes_and_classes():
    example = load_example()
    x_train, y_train, x_test, y_test = example.split()
    assert x_train.shape == (8000, 784) and x_test.shape == (2000, 784)
    assert torch.bincount(y_test, minlength=10).min() > 150  # every class held out
    assert abs(x_train.mean().item()) < 0.05


def test_mnist_mlp_reaches_95_percent():
    example = load_example()
    accuracy, seconds, report = example.train(epochs=4, verbose=False)
    assert accuracy >= 0.95, accuracy
    assert report.algorithm_of("0.weight") == "muon"
    assert report.algorithm_of("4.weight") == "adamw"
    print(f"held-out accuracy {accuracy:.4f} in {seconds:.1f} s")
