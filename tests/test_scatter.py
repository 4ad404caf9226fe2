"""Segment reductions of quotient_diffusion.scatter against a plain Python reference."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest
import torch

from quotient_diffusion import scatter
from quotient_diffusion.scatter import (
    batch_index,
    num_segments,
    scatter_mean,
    scatter_sum,
    segment_counts,
)

pytestmark = pytest.mark.usefixtures("single_thread")

DT = torch.float64


def reference(src: torch.Tensor, index: torch.Tensor, dim_size: int, mean: bool):
    """Row-by-row Python loop: sums (or means, 0 for empty segments) per segment."""
    out = [torch.zeros(src.shape[1:], dtype=src.dtype) for _ in range(dim_size)]
    count = [0] * dim_size
    for row, seg in zip(src, index.tolist(), strict=True):
        out[seg] = out[seg] + row
        count[seg] += 1
    if mean:
        out = [o / c if c else o for o, c in zip(out, count, strict=True)]
    return torch.stack(out)


def make_case(shape_tail: tuple[int, ...], sort: bool, seed: int):
    gen = torch.Generator().manual_seed(seed)
    dim_size = 9
    index = torch.randint(0, dim_size - 2, (40,), generator=gen)  # last two segments empty
    index[::7] = 4
    if sort:
        index = index.sort().values
    src = torch.randn((40,) + shape_tail, dtype=DT, generator=gen)
    return src, index, dim_size


@pytest.mark.parametrize("shape_tail", [(), (3,), (3, 3), (2, 5)])
@pytest.mark.parametrize("sort", [False, True])
def test_scatter_sum_and_mean_match_reference(shape_tail, sort):
    src, index, dim_size = make_case(shape_tail, sort, seed=len(shape_tail) + 10 * sort)
    torch.testing.assert_close(
        scatter_sum(src, index, dim_size, sort), reference(src, index, dim_size, False)
    )
    torch.testing.assert_close(
        scatter_mean(src, index, dim_size, sort), reference(src, index, dim_size, True)
    )
    counts = segment_counts(index, dim_size, DT)
    torch.testing.assert_close(counts, torch.bincount(index, minlength=dim_size).to(DT))
    assert scatter_mean(src, index, dim_size)[-2:].abs().max() == 0  # empty segments give 0


def test_float32():
    src, index, dim_size = make_case((3,), True, seed=3)
    out = scatter_mean(src.float(), index, dim_size, True)
    assert out.dtype == torch.float32
    ref = reference(src, index, dim_size, True)
    torch.testing.assert_close(out.double(), ref, atol=1e-6, rtol=0)


@pytest.mark.parametrize("sort", [False, True])
def test_gradients(sort):
    src, index, dim_size = make_case((3,), sort, seed=4)
    src = src.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda s: scatter_mean(s, index, dim_size, sort), (src,))
    assert torch.autograd.gradcheck(lambda s: scatter_sum(s, index, dim_size, sort), (src,))
    # closed form: d/d src_i of sum_s w_s . mean_s = w_{index_i} / count_{index_i}
    w = torch.randn(dim_size, 3, dtype=DT, generator=torch.Generator().manual_seed(5))
    (grad,) = torch.autograd.grad((scatter_mean(src, index, dim_size, sort) * w).sum(), src)
    counts = torch.bincount(index, minlength=dim_size).to(DT)
    torch.testing.assert_close(grad, w[index] / counts[index, None])


def test_batch_helpers():
    x = torch.zeros(5, 3)
    torch.testing.assert_close(batch_index(x, None), torch.zeros(5, dtype=torch.long))
    b = torch.tensor([0, 0, 1, 3, 3])
    assert batch_index(x, b) is b
    assert num_segments(b) == 4
    assert num_segments(torch.zeros(0, dtype=torch.long)) == 0
    with pytest.raises(ValueError):
        batch_index(x, torch.zeros(4, dtype=torch.long))


_SNIPPET = """
import torch
from quotient_diffusion import scatter
g = torch.Generator().manual_seed(0)
index = torch.randint(0, 6, (50,), generator=g).sort().values
src = torch.randn(50, 3, 3, dtype=torch.float64, generator=g, requires_grad=True)
out = scatter.scatter_mean(src, index, 8, True)
(grad,) = torch.autograd.grad((out ** 2).sum(), src)
torch.save(dict(fast=scatter.HAS_TORCH_SCATTER, out=out.detach(), grad=grad), PATH)
"""


@pytest.mark.skipif(
    importlib.util.find_spec("torch_scatter") is None,
    reason="torch_scatter is not installed: only the native torch path exists here",
)
def test_torch_scatter_and_native_paths_agree(tmp_path):
    results = {}
    for label, flag in (("fast", None), ("native", "1")):
        env = dict(os.environ)
        env.pop("QD_NO_TORCH_SCATTER", None)
        if flag:
            env["QD_NO_TORCH_SCATTER"] = flag
        path = str(tmp_path / f"{label}.pt")
        code = _SNIPPET.replace("PATH", repr(path))
        subprocess.run([sys.executable, "-c", code], env=env, check=True)
        results[label] = torch.load(path, map_location="cpu", weights_only=True)
    assert results["fast"]["fast"] and not results["native"]["fast"]
    torch.testing.assert_close(results["fast"]["out"], results["native"]["out"])
    torch.testing.assert_close(results["fast"]["grad"], results["native"]["grad"])


def test_module_reports_backend():
    assert scatter.HAS_TORCH_SCATTER == (scatter._torch_scatter is not None)


def test_unsorted_index_with_sorted_flag_is_still_correct():
    """sorted_index=True on an unsorted index must not give wrong sums (any back end)."""
    src, index, dim_size = make_case((3,), False, seed=6)
    assert not bool((index[1:] >= index[:-1]).all())
    torch.testing.assert_close(
        scatter_sum(src, index, dim_size, True), reference(src, index, dim_size, False)
    )
