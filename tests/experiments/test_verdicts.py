"""Verdicts are computed from the data: each target's verdict function, fed a synthetic result
of each kind, returns each outcome; the rule itself by hand; the --all table."""

import pytest
import torch

from steepest.experiments import cli
from steepest.experiments.reproduce import CRITERIA, VERDICTS
from steepest.experiments.verdicts import Verdict, sign_of, threshold_test

AGREE, DISAGREE, UNCLEAR = "agrees", "disagrees", "inconclusive"


def test_sign_rule_by_hand():
    assert sign_of([1.0, 1.1, 0.9]) == 1  # mean 1, std 0.1, 2 se = 0.115
    assert sign_of([-1.0, -1.1, -0.9]) == -1
    assert sign_of([1.0, -0.1, 1.0]) == 0  # one seed on the other side
    assert sign_of([0.1, 2.0, 0.1]) == 0  # mean 0.733 <= 2 se = 1.27
    assert sign_of([1.0]) == 0  # one seed decides nothing
    assert threshold_test([0.05, 0.06, 0.05], 0.1) == 1
    with pytest.raises(ValueError, match="outcome='maybe'"):
        Verdict("c", "k", "maybe", "e")


def _schatten(spread, fraction):
    return {
        "p": [2.0, 32.0, None],
        "families": {
            "gaussian": {
                "spread": [[0.5, 0.01, 0.0]] * 3,
                "stable_rank_fraction": [[0.5, 0.99, 1]] * 3,
            },
            "gpt gradients": {
                "spread": [[0.5, s, 0.0] for s in spread],
                "stable_rank_fraction": [[0.5, f, 1.0] for f in fraction],
            },
        },
    }


def _low_rank(gd_small_k, gd_large_k):
    return {
        "ks": [1, 32],
        "muon_advantage_ratio": [[1.0] * 3, [0.5] * 3],
        "protocols": {
            "seed": {"gd_steps": [gd_small_k, gd_large_k], "muon_steps": [[10.0] * 3, [10.0] * 3]}
        },
    }


def _nds(nds_adamw, penalty_adamw, norm_adamw, matched_penalty_adamw):
    muon = {
        "median_nds": [1.0] * 3,
        "median_penalty": [1.0] * 3,
        "median_update_norm": [1.0] * 3,
        "median_gain": [1.0] * 3,
    }
    adamw = {
        "median_nds": nds_adamw,
        "median_penalty": penalty_adamw,
        "median_update_norm": norm_adamw,
        "median_gain": [1.0] * 3,
    }
    matched = {"adamw": {"median_penalty": matched_penalty_adamw}, "muon": muon}
    # at matched loss: the same NDS and penalty ratios; AdamW's one-step decrease 1 / its penalty
    views = [
        {
            "levels": [3.0, 2.5, 2.0],
            "adamw": {
                "nds": [n] * 3,
                "penalty": [p] * 3,
                "gain": [1.0] * 3,
                "actual": [-1 / p] * 3,
            },
            "muon": {
                "nds": [1.0] * 3,
                "penalty": [1.0] * 3,
                "gain": [1.0] * 3,
                "actual": [-1.0] * 3,
            },
        }
        for n, p in zip(nds_adamw, penalty_adamw, strict=True)
    ]
    return {
        "arms": {
            "task lrs": {"adamw": adamw, "muon": muon},
            "matched update norm": matched,
            "matched update norm, AdamW up": {**matched, "adamw": {**adamw, **matched["adamw"]}},
        },
        "matched_loss": views,
    }


def _imbalance(gap_end):
    def runs(final):
        return [
            {"step": [0, 20, 40, 60, 80, 100], "balanced_accuracy": [0.25, 0.5, 0.6, 0.7, 0.8, f]}
            for f in final
        ]

    return {
        "ratios": [1.0, 64.0],
        "curves": {
            "adamw": [runs([0.8] * 3), runs([0.8] * 3)],
            "muon": [runs([0.8] * 3), runs([0.8 + g for g in gap_end])],
        },
    }


def _bias(own_l2, other_l2, half_l2):
    norms = {"l2_margin": "ngd", "spectral_margin": "specgd", "max_norm_margin": "signgd"}

    def draw(i):
        curves = {}
        for method in norms.values():
            curves[method] = {}
            for key, own in norms.items():
                if key == "l2_margin":
                    final = own_l2[i] if method == own else other_l2[i]
                    half = half_l2[i] if method == own else other_l2[i]
                else:
                    final = half = 0.97 if method == own else 0.5
                curves[method][key] = [0.0, half, final]
        return {"curves": curves}

    return {"norms": norms, "draws": [draw(i) for i in range(3)]}


CASES = {
    "schatten-p": [
        (_schatten([0.02, 0.03, 0.025], [0.95, 0.96, 0.97]), [AGREE]),
        (_schatten([0.3, 0.31, 0.29], [0.95, 0.96, 0.97]), [DISAGREE]),
        (_schatten([0.05, 0.15, 0.09], [0.95, 0.96, 0.97]), [UNCLEAR]),
    ],
    "low-rank": [
        (_low_rank([100.0, 120.0, 110.0], [10.0, 11.0, 12.0]), [AGREE]),
        (_low_rank([10.0, 11.0, 12.0], [100.0, 120.0, 110.0]), [DISAGREE]),
        (_low_rank([100.0, 10.0, 20.0], [10.0, 100.0, 20.0]), [UNCLEAR]),
    ],
    "nds": [
        (_nds([3.0, 4.0, 5.0], [2.0, 2.5, 3.0], [1.2] * 3, [2.0, 3.0, 2.5]), [AGREE] * 6),
        (_nds([0.3, 0.2, 0.25], [0.1, 0.06, 0.07], [0.2] * 3, [0.5, 0.4, 0.3]), [DISAGREE] * 6),
        (_nds([3.0, 0.5, 1.5], [2.0, 0.5, 1.0], [1.0] * 3, [2.0, 0.5, 1.0]), [UNCLEAR] * 6),
    ],
    "imbalance": [
        (_imbalance([0.1, 0.12, 0.11]), [AGREE, UNCLEAR]),
        (_imbalance([-0.1, -0.12, -0.11]), [DISAGREE, UNCLEAR]),
        (_imbalance([0.1, -0.1, 0.05]), [UNCLEAR, UNCLEAR]),
    ],
    "implicit-bias": [
        (_bias([0.98, 0.97, 0.99], [0.8, 0.82, 0.81], [0.95] * 3), [AGREE]),
        (_bias([0.7, 0.72, 0.71], [0.8, 0.82, 0.81], [0.7, 0.72, 0.71]), [DISAGREE]),
        (_bias([0.7, 0.72, 0.71], [0.8, 0.82, 0.81], [0.5, 0.5, 0.5]), [UNCLEAR]),
    ],
}


@pytest.mark.parametrize("target", sorted(CASES))
def test_each_outcome_from_synthetic_results(target):
    # a target in its own module (steepest.experiments.targets) has these tests in its own file
    own = {n for n, f in VERDICTS.items() if ".targets." in f.__module__}
    assert set(CASES) == set(VERDICTS) - own
    outcomes = set()
    for record, expected in CASES[target]:
        verdicts = VERDICTS[target](record)
        assert [v.outcome for v in verdicts] == expected
        assert all(v.criterion and v.claim and v.evidence for v in verdicts)
        outcomes.update(expected)
    assert outcomes == {AGREE, DISAGREE, UNCLEAR}


def test_all_prints_the_criteria_and_a_verdict_table(tmp_path, capsys):
    def fake(name, outcome):
        def target(out, *, progress, size=1):
            assert size == 2  # the quick options reach the target
            verdict = Verdict(f"claim {name}", CRITERIA["nds"], outcome, "1 ± 0 (n=3)")
            return {"target": name, "verdicts": [verdict.__dict__]}

        return target

    targets = {"a": fake("a", AGREE), "b": fake("b", UNCLEAR)}
    quick = {"a": {"size": 2}, "b": {"size": 2}}
    argv = ["reproduce", "--all", "--quick", "--out", str(tmp_path), "--no-progress"]
    argv += ["--threads", "1"]
    parser = cli.build_parser()
    threads = torch.get_num_threads()
    try:
        assert cli._reproduce(parser, parser.parse_args(argv), argv, targets, quick) == 0
    finally:
        torch.set_num_threads(threads)
    text = capsys.readouterr().out
    assert text.count(CRITERIA["nds"]) == 2
    assert "\na  agrees" in text and "\nb  inconclusive" in text
