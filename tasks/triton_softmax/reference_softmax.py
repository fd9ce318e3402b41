"""The trusted reference for triton_softmax's timing: torch.softmax behind the same frozen harness.

The evaluator times `benchmark` here and in the candidate with the same clock, so the speed-up is
relative to PyTorch's own softmax kernel on the same GPU.
"""

import numpy as np
import torch


def softmax(x):
    return torch.softmax(x, dim=-1)


def run_softmax(x):
    out = softmax(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).cuda())
    torch.cuda.synchronize()
    return out.cpu().numpy()


def benchmark(n_rows, n_cols, seed, iterations):
    generator = torch.Generator(device="cuda").manual_seed(seed)
    x = torch.randn(n_rows, n_cols, device="cuda", generator=generator)
    torch.cuda.synchronize()
    y = x
    for _ in range(iterations):
        y = softmax(x)
    torch.cuda.synchronize()
    return float(y.double().sum().item())
