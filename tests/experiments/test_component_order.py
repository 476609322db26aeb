"""The principal-component learning order (``imbalance`` target): the measure against closed
forms on a diagonal problem, the order index by hand, each verdict from synthetic records."""

import math

import pytest
import torch

from steepest.experiments.reproduce import CRITERIA, VERDICTS
from steepest.experiments.targets import component_order as co
from steepest.experiments.tasks import make_task

COUNTS, MEAN, NOISE, PAIRS = [40, 10, 2], 2.0, 1.0, 5


def _diagonal_problem():
    """Class c: COUNTS[c] points MEAN e_c and PAIRS pairs +-NOISE e_c; PAIRS pairs +-e_3 of
    class 0. Then S = X^T X / n and C = Y^T X / n are diagonal: C_cc = COUNTS[c] MEAN / n,
    S_cc = (COUNTS[c] MEAN^2 + 2 PAIRS NOISE^2) / n, S_33 = 2 PAIRS / n."""
    rows, labels = [], []
    for c, count in enumerate(COUNTS):
        e = torch.eye(4, dtype=torch.float64)[c]
        rows += [MEAN * e] * count + [NOISE * e, -NOISE * e] * PAIRS
        labels += [c] * (count + 2 * PAIRS)
    e3 = torch.eye(4, dtype=torch.float64)[3]
    rows += [e3, -e3] * PAIRS
    labels += [0] * (2 * PAIRS)
    x, y = torch.stack(rows), torch.tensor(labels)
    n = len(y)
    cross = [count * MEAN / n for count in COUNTS]
    lam = [(count * MEAN**2 + 2 * PAIRS * NOISE**2) / n for count in COUNTS]
    return x, y, cross, lam


def test_components_closed_form():
    x, y, cross, lam = _diagonal_problem()
    comps = co.components(x, y, 3)
    assert comps.sigma.tolist() == pytest.approx(cross, rel=1e-12)  # descending by design
    expected = [c / s for c, s in zip(cross, lam, strict=True)]
    assert comps.target.tolist() == pytest.approx(expected, rel=1e-12)


def test_gd_learns_each_component_at_its_closed_form_time():
    """GD from 0: u_j^T W_t v_j / a*_j = 1 - (1 - lr lam_j)^t, so the 50% time is
    ceil(ln(1/2) / ln(1 - lr lam_j)): dominant first, order index ln(t_3 / t_1) > 0."""
    x, y, _, lam = _diagonal_problem()
    comps = co.components(x, y, 3)
    lr, steps = 0.05, 400
    run = co.run("sgd", comps, lr, steps)
    for t, p in zip(run.step, run.progress, strict=True):
        expected = [1 - (1 - lr * s) ** t for s in lam]
        assert p == pytest.approx(expected, abs=1e-12)
    times = [math.ceil(math.log(1 - co.FRACTION) / math.log(1 - lr * s)) for s in lam]
    assert run.times == times and times[0] < times[1] < times[2] <= steps
    assert run.order() == pytest.approx(math.log(times[2] / times[0]))


def test_specgd_moves_every_component_at_one_rate():
    """Spectral GD on the diagonal problem: the update is diag(sign(G_jj)) times lr * scale,
    so every u_j^T W v_j grows by the same delta per step and is half learned at
    ceil(a*_j / (2 delta)): the smallest target (the minority's) first."""
    x, y, _, _ = _diagonal_problem()
    comps = co.components(x, y, 3)
    run = co.run("specgd", comps, 1e-3, 1000)
    delta = run.first_step[0]
    assert delta > 0 and run.first_step == pytest.approx([delta] * 3, rel=1e-12)
    target = comps.target.tolist()
    times = [math.ceil(co.FRACTION * a / delta) for a in target]
    assert run.times == times and times[2] < times[1] < times[0]
    assert run.order() < 0


def test_calibrate_hits_the_dominant_step():
    """GD's dominant time at lr is ceil(ln 2 / -ln(1 - lr lam_1)); the calibrated lr gives
    20 steps within 10 %, i.e. lr within 10 % of (1 - 2^(-1/20)) / lam_1."""
    x, y, _, lam = _diagonal_problem()
    comps = co.components(x, y, 3)
    lr = co.calibrate("sgd", comps, 20)
    assert lr == pytest.approx((1 - 0.5 ** (1 / 20)) / lam[0], rel=0.1)
    assert abs(co.run("sgd", comps, lr, 40).times[0] - 20) <= 2


def test_order_index_by_hand():
    assert co.order_index([10, 30, 20], 100) == pytest.approx(math.log(2))
    assert co.order_index([10, 30, None], 100) == pytest.approx(math.log(10))  # the horizon
    assert co.order_index([40, 20, 10], 100) == pytest.approx(math.log(0.25))


def test_bad_inputs_are_named():
    x, y, _, _ = _diagonal_problem()
    with pytest.raises(ValueError, match="classes=5"):
        co.components(x, y, 5)
    with pytest.raises(ValueError, match="dominant_step=50"):
        co.measure(x, y, 3, ["sgd"], steps=50, dominant_step=50)
    with pytest.raises(ValueError, match="optimizer='nope'"):
        co.run("nope", co.components(x, y, 3), 0.1, 1)


def _part(sgd, spectral):
    def draw(i):
        return {"runs": {"sgd": {"order": sgd[i]}, "specgd": {"order": spectral[i]},
                         "muon": {"order": spectral[i]}, "adamw": {"order": 0.0}}}  # fmt: skip

    return {"ratios": [1.0, 64.0], "draws": [[draw(i) for i in range(3)] for _ in range(2)]}


@pytest.mark.parametrize(
    ("sgd", "spectral", "outcome"),
    [
        ([2.0, 1.9, 2.1], [-2.0, -1.8, -2.1], "agrees"),  # GD's order index clearly larger
        ([0.1, 0.2, 0.1], [1.0, 1.1, 0.9], "disagrees"),
        ([2.0, 0.1, 1.0], [0.5, 0.5, 1.2], "inconclusive"),  # one draw on the other side
    ],
)
def test_each_outcome_from_synthetic_records(sgd, spectral, outcome):
    verdicts = co.verdicts(_part(sgd, spectral))
    assert [v.outcome for v in verdicts] == [outcome, outcome]
    assert all(co.CRITERION in v.criterion and v.criterion.startswith("[GD vs") for v in verdicts)
    assert CRITERIA["imbalance components"] == co.CRITERION
    record = {"ratios": [1.0, 64.0], "curves": _flat_curves(), "components": _part(sgd, spectral)}
    assert [v.outcome for v in VERDICTS["imbalance"](record)][2:] == [outcome, outcome]


def _flat_curves():
    run = {"step": [0, 5, 10], "balanced_accuracy": [0.3, 0.5, 0.6]}
    return {"adamw": [[run] * 3], "muon": [[run] * 3]}


def test_data_seed_draws_new_data():
    def data(seed):
        task = make_task("imbalanced-gmm", classes=3, dim=4, train_size=30, data_seed=seed)
        task.setup(torch.device("cpu"))
        return task.train_x

    assert torch.equal(data(1), data(1)) and not torch.equal(data(0), data(1))
    with pytest.raises(ValueError, match="data_seed=1.5"):
        make_task("imbalanced-gmm", data_seed=1.5)
