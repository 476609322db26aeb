"""The ``>>>`` examples in the public packages' docstrings run and print what they show."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import steepest

PACKAGES = ["steepest.optim", "steepest.polar", "steepest.norms", "steepest.diagnostics"]
PACKAGES += ["steepest.distributed", "steepest.groups"]


def modules() -> list[str]:
    names = []
    for package in PACKAGES:
        module = importlib.import_module(package)
        names.append(package)
        if hasattr(module, "__path__"):
            names += [info.name for info in pkgutil.walk_packages(module.__path__, package + ".")]
    return names


def examples() -> list[doctest.DocTest]:
    finder = doctest.DocTestFinder(exclude_empty=True)
    found = {}
    for name in modules():
        for test in finder.find(importlib.import_module(name)):
            if test.examples and test.name.startswith("steepest."):
                found.setdefault(test.name, test)
    return sorted(found.values(), key=lambda test: test.name)


EXAMPLES = examples()


def test_the_main_entry_points_have_examples():
    assert len(EXAMPLES) >= 2, [test.name for test in EXAMPLES]


@pytest.mark.parametrize("test", EXAMPLES, ids=[test.name for test in EXAMPLES])
def test_docstring_example(test):
    runner = doctest.DocTestRunner(
        optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS, verbose=False
    )
    test.globs = {"steepest": steepest}
    failures = []
    runner.run(test, out=failures.append)
    assert runner.failures == 0, "".join(failures)
