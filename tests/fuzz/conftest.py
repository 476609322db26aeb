"""Fuzz suite settings: one torch thread, and a summary line of cases tried per property."""

import pytest
import torch
from fuzz_helpers import EXCLUDED, FAILED, TRIED


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def pytest_terminal_summary(terminalreporter):
    if not TRIED:
        return
    terminalreporter.section("steepest fuzz counts")
    for prop in sorted(TRIED):
        terminalreporter.write_line(
            f"fuzz {prop}: {TRIED[prop]} cases tried, failures: {FAILED[prop]}"
            + (f" (excluded, known limitation: {EXCLUDED[prop]})" if EXCLUDED[prop] else "")
        )
    terminalreporter.write_line(
        f"fuzz total: {sum(TRIED.values())} cases tried, failures: {sum(FAILED.values())}"
    )
