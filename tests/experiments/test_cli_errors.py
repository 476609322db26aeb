"""The ``steepest`` command's argument errors name the bad entry; no arguments prints help."""

import pytest

from steepest.experiments.cli import main
from steepest.experiments.optimizers import OPTIMIZERS


def test_bare_command_prints_help(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: steepest") and "compare" in out and "reproduce" in out


@pytest.mark.parametrize(
    "given, needle",
    [("adamw,muonn", "unknown 'muonn'"), ("muon,muon", "repeated 'muon'"), (",", "no names")],
)
def test_bad_optimizer_entry_is_named(given, needle, tmp_path, capsys):
    with pytest.raises(SystemExit) as err:
        main(["compare", "--optimizers", given, "--out", str(tmp_path / "never")])
    assert err.value.code == 2
    message = capsys.readouterr().err
    assert needle in message and ", ".join(OPTIMIZERS) in message
    assert not (tmp_path / "never").exists()
