"""The new tasks against independent oracles: shard bytes, labels, class sizes, margins."""

import json
import math

import numpy as np
import pytest
import torch
from experiments_helpers import tiny_args

from steepest.experiments.cli import main
from steepest.experiments.tasks import make_task
from steepest.experiments.tasks.imbalanced_gmm import class_sizes
from steepest.experiments.tasks.implicit_bias import margins
from steepest.experiments.tasks.modular_addition import first_step_reaching
from steepest.experiments.tasks.tokens_bin import read_shard, write_shard

CPU = torch.device("cpu")


# --- tokens-bin -------------------------------------------------------------------------------


def _raw_shard(path, magic, tokens, dtype, count=None):
    header = np.zeros(256, dtype="<i4")
    header[:3] = (magic, 1, len(tokens) if count is None else count)
    path.write_bytes(header.tobytes() + np.asarray(tokens, dtype=dtype).tobytes())


@pytest.mark.parametrize("magic, dtype", [(20240520, "<u2"), (20240801, "<u4")])
def test_read_shard_of_hand_written_bytes(magic, dtype, tmp_path):
    tokens = [0, 7, 65535, 3] if dtype == "<u2" else [0, 70000, 2**32 - 1, 5]
    _raw_shard(tmp_path / "s.bin", magic, tokens, dtype)
    assert read_shard(tmp_path / "s.bin").tolist() == tokens
    write_shard(tmp_path / "t.bin", tokens, magic=magic)  # the writer gives the same bytes
    assert (tmp_path / "t.bin").read_bytes() == (tmp_path / "s.bin").read_bytes()


def test_read_shard_rejects_bad_files(tmp_path):
    _raw_shard(tmp_path / "bad.bin", 12345, [1, 2], "<u2")
    with pytest.raises(ValueError, match="magic 12345"):
        read_shard(tmp_path / "bad.bin")
    _raw_shard(tmp_path / "short.bin", 20240520, [1, 2], "<u2", count=3)
    with pytest.raises(ValueError, match="says 3 tokens"):
        read_shard(tmp_path / "short.bin")
    (tmp_path / "tiny.bin").write_bytes(b"\0" * 10)
    with pytest.raises(ValueError, match="fewer than"):
        read_shard(tmp_path / "tiny.bin")
    with pytest.raises(ValueError, match="tokens must lie in"):
        write_shard(tmp_path / "x.bin", [70000], magic=20240520)


def test_tokens_bin_option_errors(tmp_path):
    with pytest.raises(ValueError, match="train_files is required"):
        make_task("tokens-bin")
    write_shard(tmp_path / "a.bin", np.arange(100) % 50)
    task = make_task("tokens-bin", train_files=str(tmp_path / "a.bin"), val_files="nowhere*.bin")
    with pytest.raises(ValueError, match="matches no file"):
        task.setup(CPU)
    task = make_task(
        "tokens-bin",
        train_files=str(tmp_path / "a.bin"),
        val_files=str(tmp_path / "a.bin"),
        vocab_size=40,
        context=8,
    )
    with pytest.raises(ValueError, match="token 49 >= vocab_size=40"):
        task.setup(CPU)


def test_tokens_bin_batches_are_windows_of_the_shards(tmp_path):
    args = tiny_args("tokens-bin", tmp_path)
    options = dict(a.split("=", 1) for a in args[1::2])
    task = make_task(
        "tokens-bin",
        train_files=options["train_files"],
        val_files=options["val_files"],
        vocab_size=32,
        context=8,
        eval_windows=4,
    )
    task.setup(CPU)
    stream = np.concatenate([read_shard(p) for p in sorted(tmp_path.glob("shards/train_*.bin"))])
    batch = next(task.batches(0)).numpy()
    assert batch.shape == (16, 9)
    text = stream.tobytes()
    assert all(row.astype(np.int64).tobytes() in text for row in batch)


def test_bad_magic_through_the_cli(tmp_path, capsys):
    _raw_shard(tmp_path / "bad.bin", 1, [1, 2, 3], "<u2")
    with pytest.raises(ValueError, match="magic 1;"):
        main(
            [
                "compare",
                "--task",
                "tokens-bin",
                "--out",
                str(tmp_path / "out"),
                "--no-progress",
                "--task-option",
                f"train_files={tmp_path / 'bad.bin'}",
                "--task-option",
                f"val_files={tmp_path / 'bad.bin'}",
            ]
        )


# --- modular-addition -------------------------------------------------------------------------


def test_modular_addition_labels_and_split():
    task = make_task("modular-addition", modulus=7, train_fraction=0.5)
    task.setup(CPU)
    x = torch.cat([task.train_x, task.val_x])
    y = torch.cat([task.train_y, task.val_y])
    assert len(task.train_x) == round(0.5 * 49) and len(x) == 49
    assert {tuple(p) for p in x.tolist()} == {(a, b) for a in range(7) for b in range(7)}
    assert all((a + b) % 7 == c for (a, b), c in zip(x.tolist(), y.tolist(), strict=True))


def test_first_step_reaching_by_hand():
    curve = {"step": [0, 5, 10, 15], "val_accuracy": [0.1, 0.94, 0.95, 0.99]}
    assert first_step_reaching(curve, "val_accuracy", 0.95) == 10
    assert first_step_reaching(curve, "val_accuracy", 0.995) is None


def test_modular_addition_run_summary_in_json(tmp_path):
    out = tmp_path / "ma"
    main(
        [
            "compare",
            "--task",
            "modular-addition",
            "--optimizers",
            "adamw,muon",
            "--steps",
            "4",
            "--seeds",
            "1",
            "--eval-every",
            "2",
            "--out",
            str(out),
            "--no-progress",
            "--threads",
            "1",
            *tiny_args("modular-addition"),
        ]
    )
    record = json.loads((out / "results.json").read_text())
    for summary, run in zip(record["run_summaries"], record["runs"], strict=True):
        assert summary["optimizer"] == run["optimizer"]
        assert summary["step_to_95"] == first_step_reaching(run["curve"], "val_accuracy", 0.95)


# --- imbalanced-gmm ---------------------------------------------------------------------------


def test_class_sizes_by_hand():
    assert class_sizes(110, 2, 10.0) == [100, 10]
    assert class_sizes(700, 3, 4.0) == [400, 200, 100]


def test_per_class_and_balanced_accuracy_of_a_constant_classifier():
    task = make_task("imbalanced-gmm", classes=3, dim=4, train_size=70, val_per_class=10)
    task.setup(CPU)
    assert torch.bincount(task.train_y).tolist() == class_sizes(70, 3, 10.0)
    assert torch.bincount(task.val_y).tolist() == [10, 10, 10]

    class AlwaysOne(torch.nn.Module):
        def forward(self, x):
            return torch.tensor([0.0, 1.0, 0.0]).expand(len(x), 3)

    metrics = task.evaluate(AlwaysOne())
    assert [metrics[f"class_{k}_accuracy"] for k in range(3)] == [0.0, 1.0, 0.0]
    assert metrics["balanced_accuracy"] == pytest.approx(1 / 3)
    # cross-entropy: -log(e / (e + 2)) on class 1, -log(1 / (e + 2)) on the two others
    expected = (math.log(math.e + 2) - 1 + 2 * math.log(math.e + 2)) / 3
    assert metrics["val_loss"] == pytest.approx(expected, rel=1e-6)


# --- implicit-bias ----------------------------------------------------------------------------


def test_margins_against_brute_force():
    gen = torch.Generator().manual_seed(1)
    w = torch.randn(4, 6, generator=gen, dtype=torch.float64)
    x = torch.randn(9, 6, generator=gen, dtype=torch.float64)
    y = torch.randint(4, (9,), generator=gen)
    raw = min(float((w[y[i]] - w[j]) @ x[i]) for i in range(9) for j in range(4) if j != int(y[i]))
    got = margins(w, x, y)
    s = np.linalg.svd(w.numpy(), compute_uv=False)
    assert got["l2_margin"] == pytest.approx(raw / np.sqrt((s**2).sum()))
    assert got["spectral_margin"] == pytest.approx(raw / s[0])
    assert got["max_norm_margin"] == pytest.approx(raw / np.abs(w.numpy()).max())
    assert margins(torch.zeros(4, 6), x.float(), y) == dict.fromkeys(got, 0.0)


def test_implicit_bias_data_are_separable_and_margins_grow(tmp_path):
    task = make_task("implicit-bias", n=40, dim=6, classes=3)
    task.setup(CPU)
    assert torch.allclose(task.x.norm(dim=1), torch.ones(40))
    out = tmp_path / "ib"
    main(
        [
            "compare",
            "--task",
            "implicit-bias",
            "--optimizers",
            "adamw,muon",
            "--steps",
            "60",
            "--seeds",
            "1",
            "--eval-every",
            "20",
            "--out",
            str(out),
            "--no-progress",
            "--threads",
            "1",
            *tiny_args("implicit-bias"),
        ]
    )
    record = json.loads((out / "results.json").read_text())
    for run in record["runs"]:
        curve = run["curve"]
        assert curve["l2_margin"][0] == 0.0  # W0 = 0
        for key in ("l2_margin", "spectral_margin"):
            assert all(-2 <= v <= 2 for v in curve[key])
        # spectral <= Frobenius norm, so the spectral margin is the larger when positive
        for l2, sp in zip(curve["l2_margin"], curve["spectral_margin"], strict=True):
            assert (sp >= l2) if l2 > 0 else (sp <= l2)
        assert curve["val_loss"][-1] < curve["val_loss"][0]


# --- zipf-pcfg --------------------------------------------------------------------------------


def test_zipf_rule_probabilities_follow_the_law():
    from steepest.experiments.tasks.zipf_pcfg import random_grammar

    g = random_grammar(5, 10, 4, exponent=1.5, seed=0)
    for rules, probs in zip(g.rules, g.probs, strict=True):
        assert sum(probs) == pytest.approx(1.0)
        assert probs[0] / probs[3] == pytest.approx(4**1.5)
        assert rules[-1][0] == "t"  # every nonterminal can end
    assert random_grammar(5, 10, 4, exponent=0.0, seed=0).probs[0] == (0.25,) * 4


def test_zipf_sentences_at_depth_one_match_the_terminal_rules():
    """With max_depth=1 a sentence is one terminal drawn from the start symbol's terminal
    rules, renormalized: compare empirical frequencies with those probabilities."""
    from steepest.experiments.tasks.zipf_pcfg import random_grammar, sample_stream

    g = random_grammar(3, 6, 5, exponent=1.0, seed=2)
    stream = sample_stream(g, 20000, max_depth=1, seed=0)
    assert stream[1::2] == [6] * 10000  # every sentence is one token and the end token
    expected = np.zeros(6)
    for rule, p in zip(g.rules[0], g.probs[0], strict=True):
        if rule[0] == "t":
            expected[rule[1]] += p
    expected /= expected.sum()
    counts = np.bincount(stream[0::2], minlength=6) / 10000
    assert np.abs(counts - expected).max() < 0.02  # ~4 standard errors at n = 10000


def test_zipf_sentence_lengths_are_bounded_by_depth():
    from steepest.experiments.tasks.zipf_pcfg import random_grammar, sample_stream

    g = random_grammar(6, 9, 4, exponent=0.5, seed=1)
    stream = sample_stream(g, 5000, max_depth=3, seed=0)
    ends = [i for i, t in enumerate(stream) if t == 9]
    lengths = np.diff([-1, *ends]) - 1
    assert lengths.min() >= 1 and lengths.max() <= 2 ** (3 - 1)
    assert max(stream) == 9 and min(stream) >= 0
