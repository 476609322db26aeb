"""The routing suite: every parameter of real models routed as a hand-written expectation says.

For each model of models.py: each parameter matches at least one expectation pattern (and all
patterns it matches agree); its algorithm and the matrices Muon dualizes are the expected
ones; its lr multiplier is the spectral rule sqrt(m / n) of its first matrix; one Muon step
runs on the groups. The docs page of the reports equals the generated one."""

import fnmatch
import math

import pytest
import torch
import write_reports
from routing_models import MODELS, available

import steepest


def params_for(name):
    return [
        pytest.param(
            n,
            marks=pytest.mark.skipif(
                not available(n), reason=f"{MODELS[n][1]} does not import here"
            ),
        )
        for n in name
    ]


@pytest.mark.parametrize("name", params_for(MODELS))
def test_every_parameter_is_routed_as_expected(name):
    model, example, expected = MODELS[name][0]()
    groups, report = steepest.param_groups(model, example=example)
    used = set()
    for route in report:
        hits = {pat: want for pat, want in expected.items() if fnmatch.fnmatchcase(route.name, pat)}
        assert hits, f"{name}: no expectation for {route.name} {route.shape}"
        assert len(set(hits.values())) == 1, f"{name}: {route.name} expectations disagree {hits}"
        used.update(hits)
        algorithm, matrices = next(iter(hits.values()))
        assert (route.algorithm, route.matrices) == (algorithm, matrices), (name, route)
        if algorithm == "muon":
            m, n = matrices[0][-2:]
            assert route.lr_multiplier == pytest.approx(math.sqrt(m / n)), route
    assert used == set(expected), f"{name}: unused expectations {set(expected) - used}"
    routed = {n for g in groups for n in g["param_names"]}
    assert routed == {r.name for r in report}
    opt = steepest.Muon(groups, backend="svd")
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt.step()
    for n, p in model.named_parameters():
        assert not torch.equal(before[n], p), f"{name}: {n} did not move"


@pytest.mark.parametrize("name", params_for(MODELS))
def test_docs_page_matches_generated_report(name):
    page = write_reports.PAGE.read_text()
    committed = write_reports.sections(page)
    assert name in committed, "run python tests/routing/write_reports.py"
    assert committed[name] == write_reports.section(name), (
        "docs/routing-reports.md is out of date: run python tests/routing/write_reports.py"
    )
