"""examples/fsdp_gpt.py under torchrun (2 gloo ranks): it trains, and the ranks together
orthogonalize each matrix once per step (1 layer: qkv as 3 blocks + proj + fc + out = 6).
A run whose rank a signal killed (the loaded 2-core machine now and then aborts a gloo rank in
C++) is retried, as dist_helpers.spawn does."""

import re
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "fsdp_gpt.py"


def test_fsdp_gpt_example_runs_and_shares_the_matrices():
    args = ["--steps", "3", "--layers", "1", "--width", "32", "--context", "16", "--check"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    for _ in range(3):  # a rank killed by a signal gets two more attempts (dist_helpers.spawn)
        done = subprocess.run(
            [*cmd, str(EXAMPLE), *args], capture_output=True, text=True, timeout=120
        )
        if not re.search(r"exitcode: -\d+", done.stderr):
            break
    assert done.returncode == 0, done.stderr[-2000:]
    steps = re.findall(r"step (\d+): loss ([\d.]+), \d+ ms, orthogonalized (\d+)", done.stdout)
    assert [int(s) for s, _, _ in steps] == [1, 2, 3]
    assert [int(c) for _, _, c in steps] == [6, 12, 18]  # cumulative, 6 per step
    losses = [float(v) for _, v, _ in steps]
    assert losses[-1] < losses[0]
