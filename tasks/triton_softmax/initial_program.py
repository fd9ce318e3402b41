"""triton_softmax: a row-wise softmax kernel in Triton, on one NVIDIA GPU.

Only the region between the EVOLVE-BLOCK markers evolves: the @triton.jit kernel and the
`softmax(x)` wrapper that launches it. The frozen helpers below are what the evaluator calls, in a
separate process: `run_softmax` (numpy in, numpy out, for correctness) and `benchmark` (the
evaluator times whole calls with its own clock). Needs torch and triton with a CUDA GPU.
"""

import numpy as np
import torch
import triton
import triton.language as tl


# EVOLVE-BLOCK-START
@triton.jit
def softmax_kernel(out_ptr, in_ptr, in_row_stride, out_row_stride, n_cols, BLOCK_SIZE: tl.constexpr):
    """One program per row: load the row, subtract its maximum, exponentiate, normalise, store."""
    row = tl.program_id(0)
    cols = tl.arange(0, BLOCK_SIZE)
    mask = cols < n_cols
    x = tl.load(in_ptr + row * in_row_stride + cols, mask=mask, other=-float("inf"))
    x = x - tl.max(x, axis=0)
    numerator = tl.exp(x)
    y = numerator / tl.sum(numerator, axis=0)
    tl.store(out_ptr + row * out_row_stride + cols, y, mask=mask)


def softmax(x):
    """Softmax over the last dimension of a 2-D float32 CUDA tensor; returns a new tensor."""
    n_rows, n_cols = x.shape
    block_size = triton.next_power_of_2(n_cols)
    num_warps = 4 if block_size < 2048 else 8 if block_size < 4096 else 16
    y = torch.empty_like(x)
    softmax_kernel[(n_rows,)](y, x, x.stride(0), y.stride(0), n_cols, BLOCK_SIZE=block_size, num_warps=num_warps)
    return y
# EVOLVE-BLOCK-END


def run_softmax(x):
    """Frozen entry point for correctness: a float32 numpy array in, the softmax as numpy out."""
    out = softmax(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).cuda())
    torch.cuda.synchronize()
    return out.cpu().numpy()


def benchmark(n_rows, n_cols, seed, iterations):
    """Frozen entry point for timing: `iterations` softmax calls on one seeded input; returns the
    sum of the last output (n_rows for a correct softmax). The evaluator clocks the whole call."""
    generator = torch.Generator(device="cuda").manual_seed(seed)
    x = torch.randn(n_rows, n_cols, device="cuda", generator=generator)
    torch.cuda.synchronize()
    y = x
    for _ in range(iterations):
        y = softmax(x)
    torch.cuda.synchronize()
    return float(y.double().sum().item())
