"""Train an MLP on the shipped MNIST test split with steepest.Muon (+ AdamW routing).

The 10,000 images are split 8,000 train / 2,000 held-out (fixed seed). Hidden matrices go to
Muon, biases and the output head to AdamW (steepest.param_groups prints where each went).
Run: python examples/mnist_mlp.py   (about 10 s on one CPU thread; held-out accuracy ~97%)
"""

from __future__ import annotations

import time

import torch
from torch import nn

import steepest
from steepest.data import load_mnist


def split(n_train: int = 8000, seed: int = 0):
    """(x_train, y_train, x_test, y_test): MNIST test split, pixels scaled to zero mean/unit std."""
    images, labels = load_mnist()
    x = torch.from_numpy(images.reshape(len(images), -1).astype("float32")) / 255.0
    x = (x - x.mean()) / x.std()
    y = torch.from_numpy(labels.astype("int64"))
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    train, test = order[:n_train], order[n_train:]
    return x[train], y[train], x[test], y[test]


def build_model(hidden: int = 256) -> nn.Module:
    """784 -> hidden -> hidden -> 10 MLP with ReLU."""
    return nn.Sequential(
        nn.Linear(784, hidden),
        nn.ReLU(),
        nn.Linear(hidden, hidden),
        nn.ReLU(),
        nn.Linear(hidden, 10),
    )


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def train(epochs: int = 6, batch: int = 128, seed: int = 0, verbose: bool = True):
    """Train and return (held-out accuracy, seconds, routing report)."""
    torch.manual_seed(seed)
    x_train, y_train, x_test, y_test = split(seed=seed)
    model = build_model()
    groups, report = steepest.param_groups(model, example=x_train[:2])  # the head: from a forward
    optimizer = steepest.Muon(groups, lr=0.02, adamw_lr=3e-3, weight_decay=0.0)
    steps = epochs * (len(x_train) // batch)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda t: 1.0 - t / steps)
    start = time.perf_counter()
    for epoch in range(epochs):
        order = torch.randperm(len(x_train))
        for i in range(len(x_train) // batch):
            idx = order[i * batch : (i + 1) * batch]
            loss = nn.functional.cross_entropy(model(x_train[idx]), y_train[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
        if verbose:
            held_out = accuracy(model, x_test, y_test)
            print(f"epoch {epoch + 1}: loss {loss.item():.4f}, held-out acc {held_out:.4f}")
    seconds = time.perf_counter() - start
    return accuracy(model, x_test, y_test), seconds, report


if __name__ == "__main__":
    torch.set_num_threads(1)  # one thread: fastest on a small shared CPU
    acc, seconds, report = train()
    print(report)
    print(f"held-out accuracy {acc:.4f} after {seconds:.1f} s of training")
