"""Sharded dualization over torch.distributed: DDP-replicated and FSDP2 (DTensor) parameters.

A steepest optimizer detects DTensor parameters and an initialized process group by itself and
then computes exactly the update one process would, each rank dualizing the matrices a plan
of the polar iteration's flops gives it (balance.py, sharded.py). Muon-like groups run the
fast path's compiled and recorded local stages around the exchange
(steepest.optim.fast.sharded_step). Nothing extra is called per step.

Public API:
    configure(optimizer, *, block_period=None, comm_dtype=None, check_replicas=False,
              share_replicated=True, process_group=None) -> ShardedDualizer
    ShardedDualizer(...)        the options above; ``optimizer.stacks.distributed``
    shard_rows(rows, world)     rows per rank under torch.chunk (FSDP2) sharding
    shared_row_scales(...)      the prescales shared by a row-sharded matrix's row parts
                                (the fast path's float16 stage 1 under FSDP2)
    RowShards(rows, group)      a row-sharded matrix's collectives (Dion's power iteration:
                                all-reduces of its small factors, no whole-matrix gather)
    all_reduce_mean(tensors)    the mean over ranks, in place (MuLoCo's outer gradient)
    broadcast_(tensors)         rank 0's values on every rank, in place
    whole(t) -> (full, back)    a DTensor gathered whole, and the way back to its placements
                                (NorMuon, Shampoo, CASPR and SOAP keep whole-matrix state)
    COMM_DTYPES
    balance(costs, world)       -> RankPlan: which rank dualizes which item, the LPT plan
                                over the polar iteration's flops (polar_flops)
    plan_shapes(shapes, world)  the plan of replicated matrices of these shapes

Counters: ``optimizer.stacks.orthogonalizations`` (whole matrices dualized on this rank) and
``optimizer.stacks.block_orthogonalizations`` (MuonBP block steps).

Checkpoints: ``torch.distributed.checkpoint.save({"optim": optimizer.state_dict(), ...})``;
the state is eager, so its keys are the same on every rank and before the first step.
"""

from .averaging import all_reduce_mean, broadcast_
from .balance import RankPlan, balance, plan_shapes, polar_flops
from .row_shards import RowShards
from .sharded import COMM_DTYPES, ShardedDualizer, configure, shard_rows, shared_row_scales
from .whole import whole

__all__ = [
    "COMM_DTYPES",
    "RankPlan",
    "RowShards",
    "ShardedDualizer",
    "all_reduce_mean",
    "balance",
    "broadcast_",
    "configure",
    "plan_shapes",
    "polar_flops",
    "shard_rows",
    "shared_row_scales",
    "whole",
]
