"""Temporary probe: how often the late verdict's host copy was not written behind its event."""
import torch
from common import SETS, parameters_with_gradients, pipelined, time_fn

import steepest

calls = []
real = torch.cuda.synchronize
torch.cuda.synchronize = lambda *a: calls.append(1) or real(*a)
params = parameters_with_gradients(SETS["gpt2-small"], torch.device("cuda"))
opt = steepest.Muon(params, lr=0.02, compile=True, cuda_graph=True)
for _ in range(5):
    opt.step()
n = len(calls)
t = pipelined(opt.step)
print("fallback syncs during 20 pipelined steps:", len(calls) - n, "pipelined ms", t)
