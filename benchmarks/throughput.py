"""Throughput of the score networks on QM9-sized flat batches, side by side with EDM's pattern.

Everything is measured in one process, in one run; no number is typed in. For each network
('egnn', 'e3nn', 'transformer', 'edm-padded') and size (hidden 64 / 4 layers, 128 / 6, 256 / 9)
it times

* a training step: DiffusionModel.training_loss (quotient treatment, EDM's de novo setting:
  one-hot atom types + charge diffused with the coordinates) + backward + Adam, batch of 64
  QM9 training molecules;
* a sampling step: one step of the quotient SDE sampler (denoiser, projection, curvature,
  projected noise) for 100 molecules.

The networks' repeats interleave (network A, B, C, D, then A, B, C, D again, ...), so that a change
of machine load hits all of them alike; each time is the median over the repeats, and each
speed-up is the ratio of medians, with its range over the repeats (ratio of the times taken in
the same round).

'edm-padded' is EDM's EGNN (Hoogeboom et al. 2022, ``egnn/egnn_new.py`` with the QM9 settings:
inv_sublayers 1, attention, tanh coordinates with range 15, norm_constant 1, sum aggregation with
normalisation factor 1) written here in its dense, padded formulation, as EDM's code runs it:
every molecule padded to the largest of the batch, all N_max^2 slot pairs of a molecule as
edges (self pairs and padding masked), edge and coordinate MLPs on the concatenation
[h_i, h_j, d_ij^2, d0_ij^2], a sigmoid attention gate, ``scatter_add_`` aggregation. Both sides
sit in the same DiffusionModel wrapper, so the ratio compares the networks.

FLOP floor: the matrix-product FLOPs of each step (``torch.utils.flop_counter``, which counts the
forward and the backward products of a training step, about 3x the forward's; element-wise work
counts zero) divided by the machine's float32 GEMM throughput measured in the same run (1024^3
products, best of 5, at the start and at the end). ``achieved / peak`` = (step FLOPs / step time)
/ GEMM throughput = floor time / measured time.

Also: the quotient treatment's own cost (projection, curvature; alignment for the GeoDiff and
AF3 heuristics) timed alone on the same tensors, and a profile of where a 64 / 4 training step
spends its time.

    python benchmarks/throughput.py --quick                 # 64 / 4, egnn vs edm-padded: < 1 min
    python benchmarks/throughput.py --threads 2             # all sizes and networks (tens of min)
    python benchmarks/throughput.py --quick --threads 2 --compile --tag compile   # torch.compile
    python benchmarks/throughput.py --counts-only --sample-steps 1   # parameters, FLOPs; no timing

Writes benchmarks/results/throughput.json and .md (--quick: throughput.quick.*; --counts-only:
throughput.counts.*; --tag adds parts to the name); docs/benchmarks/throughput.md discusses them.
Molecules come from QM9 (qm9pack) when it is installed, else sizes drawn from a QM9-like
distribution (mean 18 atoms, 3 to 29).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from _results import RESULTS, command, local_time, machine, write_results
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from quotient_diffusion.chem.elements import ATOMIC_NUMBERS
from quotient_diffusion.data.batch import GraphBatch, collate
from quotient_diffusion.diffusion import DiffusionModel, SamplerConfig
from quotient_diffusion.diffusion.treatments import get_treatment
from quotient_diffusion.groups import center
from quotient_diffusion.nn import get_network
from quotient_diffusion.nn.common import node_inputs
from quotient_diffusion.tasks.molecules import MoleculeSet
from quotient_diffusion.tasks.molecules import qm9_molecules as task_molecules

SIZES = [(64, 4), (128, 6), (256, 9)]
NETWORKS = ["egnn", "e3nn", "transformer", "edm-padded"]
QUICK_NETWORKS = ["egnn", "edm-padded"]
FEATURES = 6  # one-hot H, C, N, O, F + charge (EDM's QM9 node features)
TRAIN_MOLECULES, SAMPLE_MOLECULES = 64, 100
PADDED = "edm-padded"


# ----------------------------------------------------------------------------- EDM's pattern
def unsorted_segment_sum(
    data: torch.Tensor, segment_ids: torch.Tensor, num_segments: int, normalization_factor: float
) -> torch.Tensor:
    """EDM's aggregation: ``scatter_add_`` into zeros, divided by the normalisation factor."""
    result = data.new_zeros(num_segments, data.shape[1])
    result.scatter_add_(0, segment_ids.unsqueeze(-1).expand(-1, data.shape[1]), data)
    return result / normalization_factor


class PaddedEGNN(nn.Module):
    """EDM's EGNN on padded batches (QM9 settings), for timing comparisons only.

    The flat batch is scattered into B x N_max slots and every slot pair of a molecule is an
    edge (B N_max^2 of them; self pairs and padding are computed and masked out, as in EDM's
    ``get_adj_matrix`` + ``edge_mask``). Per layer (EDM's EquivariantBlock with one invariant
    sublayer): the GCL edge MLP on [h_i, h_j, d_ij^2, d0_ij^2] with a sigmoid attention gate,
    masked, summed into the node MLP on [h, agg] with a residual; then the coordinate MLP on the
    same concatenation with the updated h, tanh times the range, times the normalised difference
    (x_i - x_j) / (|x_i - x_j| + 1), masked and summed.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        hidden: int,
        layers: int,
        coords_range: float = 15.0,
        normalization_factor: float = 1.0,
    ):
        super().__init__()
        self.coords_range, self.normalization_factor = coords_range, normalization_factor
        self.embed = nn.Linear(in_features + 1, hidden)  # + time, as EDM's dynamics appends it
        cat = 2 * hidden + 2
        self.edge_mlps = nn.ModuleList(
            nn.Sequential(nn.Linear(cat, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU())
            for _ in range(layers)
        )
        self.attention = nn.ModuleList(nn.Linear(hidden, 1) for _ in range(layers))
        self.node_mlps = nn.ModuleList(
            nn.Sequential(nn.Linear(2 * hidden, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
            for _ in range(layers)
        )
        self.coord_mlps = nn.ModuleList(
            nn.Sequential(
                nn.Linear(cat, hidden),
                nn.SiLU(),
                nn.Linear(hidden, hidden),
                nn.SiLU(),
                nn.Linear(hidden, 1, bias=False),
            )
            for _ in range(layers)
        )
        self.readout = nn.Linear(hidden, out_features)

    def forward(
        self,
        pos: torch.Tensor,
        node_attr: torch.Tensor,
        batch: torch.Tensor,
        t: torch.Tensor,
        edge_index: torch.Tensor | None = None,
        edge_attr: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(coordinate update, node output) per atom of the flat batch; the graph is its own."""
        counts = torch.bincount(batch)
        nb, nmax = counts.numel(), int(counts.max())
        offsets = torch.cumsum(counts, 0) - counts
        slot = batch * nmax + torch.arange(batch.numel()) - offsets[batch]
        slots = nb * nmax
        x = pos.new_zeros(slots, 3).index_copy(0, slot, pos)
        node_mask = pos.new_zeros(slots, 1).index_fill(0, slot, 1.0)
        inputs = node_inputs(node_attr, batch, t)
        h = inputs.new_zeros(slots, inputs.shape[1]).index_copy(0, slot, inputs)
        local = torch.arange(nmax)
        row = (torch.arange(nb)[:, None, None] * nmax + local[None, :, None]).expand(-1, -1, nmax)
        col = (torch.arange(nb)[:, None, None] * nmax + local[None, None, :]).expand(-1, nmax, -1)
        row, col = row.reshape(-1), col.reshape(-1)
        edge_mask = node_mask[row] * node_mask[col] * (row != col).unsqueeze(-1).to(pos.dtype)
        d0 = ((x[row] - x[col]) ** 2).sum(-1, keepdim=True)
        x0 = x
        h = self.embed(h) * node_mask
        norm = self.normalization_factor
        for edge_mlp, att, node_mlp, coord_mlp in zip(
            self.edge_mlps, self.attention, self.node_mlps, self.coord_mlps
        ):
            diff = x[row] - x[col]
            radial = (diff * diff).sum(-1, keepdim=True)
            diff = diff / ((radial + 1e-8).sqrt() + 1.0)
            pair = torch.cat([radial, d0], -1)
            m = edge_mlp(torch.cat([h[row], h[col], pair], -1))
            m = m * torch.sigmoid(att(m)) * edge_mask
            h = h + node_mlp(torch.cat([h, unsorted_segment_sum(m, row, slots, norm)], -1))
            h = h * node_mask
            phi = torch.tanh(coord_mlp(torch.cat([h[row], h[col], pair], -1))) * self.coords_range
            step = diff * phi * edge_mask
            x = (x + unsorted_segment_sum(step, row, slots, norm)) * node_mask
        return (x - x0)[slot], (self.readout(h) * node_mask)[slot]


def build_network(name: str, hidden: int, layers: int) -> nn.Module:
    """One of the package's networks, or EDM's padded pattern, with EDM's QM9 in/out features."""
    if name == PADDED:
        return PaddedEGNN(FEATURES, FEATURES, hidden, layers)
    return get_network(
        name, in_features=FEATURES, out_features=FEATURES, hidden=hidden, layers=layers
    )


# ----------------------------------------------------------------------------- data
def qm9_molecules(count: int, seed: int) -> tuple[list[tuple[np.ndarray, np.ndarray]], str]:
    """``count`` (atomic numbers, positions) of QM9 training molecules, or QM9-like stand-ins."""
    rng = np.random.default_rng(seed)
    try:
        from quotient_diffusion.data.qm9 import load_qm9

        data = load_qm9(progress=False)
        chosen = rng.choice(data.subset("train"), count, replace=False)
        return task_molecules(data, chosen), "QM9"
    except (ImportError, FileNotFoundError):
        sizes = np.clip(np.rint(rng.normal(18.0, 3.0, count)), 3, 29).astype(int)
        elements = np.array(ATOMIC_NUMBERS)
        mols = []
        for n in sizes:
            z = rng.choice(elements, n, p=[0.51, 0.35, 0.06, 0.07, 0.01])
            mols.append((z, 1.5 * rng.standard_normal((n, 3))))
        return mols, "synthetic (QM9-like sizes)"


def make_graph(molecules: list[tuple[np.ndarray, np.ndarray]]) -> GraphBatch:
    """EDM's de novo setting, built by the de novo task's data set: no conditioning; diffused
    features [one-hot H, C, N, O, F, Z / 10] (task options feature_scale 1, charges)."""
    data = MoleculeSet(lambda i: molecules[i], len(molecules), feature_scale=1.0, charges=True)
    return collate(list(data))


# ----------------------------------------------------------------------------- timing
def matmul_gflops(size: int = 1024, repeats: int = 5) -> float:
    """Best-of-``repeats`` float32 GEMM throughput (GFLOP/s) at the current thread count."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def count_flops(fn_: Callable[[], object]) -> int:
    """Matrix-product FLOPs of one call (forward and backward, as dispatched)."""
    with FlopCounterMode(display=False) as counter:
        fn_()
    return int(counter.get_total_flops())


class Case:
    """One network at one size: its model, optimiser and step functions."""

    def __init__(
        self,
        name: str,
        hidden: int,
        layers: int,
        train: GraphBatch,
        sample: GraphBatch,
        sample_steps: int,
        compile_net: bool = False,
    ):
        torch.manual_seed(0)
        self.name = name + (" (compiled)" if compile_net else "")
        self.compiled = compile_net
        net = build_network(name, hidden, layers)
        self.params = sum(p.numel() for p in net.parameters())
        if compile_net:
            net = torch.compile(net, dynamic=True)
        self.model = DiffusionModel(net, get_treatment("quotient"), feature_dim=FEATURES)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-4)
        self.train_graph, self.sample_graph = train, sample
        self.sample_steps = sample_steps
        self.gen = torch.Generator().manual_seed(0)

    def train_step(self) -> None:
        """Loss, backward and one Adam step on the training batch."""
        loss, _ = self.model.training_loss(self.train_graph, self.gen)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()

    def forward_only(self) -> None:
        """The training loss alone, without gradients (for the forward FLOP count)."""
        with torch.no_grad():
            self.model.training_loss(self.train_graph, self.gen)

    def sample_run(self) -> None:
        """``sample_steps`` steps of the quotient SDE on the sampling batch."""
        config = SamplerConfig(steps=self.sample_steps, method="sde")
        self.model.sample(self.sample_graph, config, self.gen)


def interleaved(
    fns: dict[str, Callable[[], None]], repeats: int, warmup: int = 1
) -> dict[str, list[float]]:
    """Seconds per call of each function; repeats interleave the functions."""
    for f in fns.values():
        for _ in range(warmup):
            f()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for key, f in fns.items():
            start = time.perf_counter()
            f()
            times[key].append(time.perf_counter() - start)
    return times


def speedup(reference: list[float], times: list[float]) -> dict[str, float]:
    """Ratio of medians, and the range of the per-round ratios (same round = same load)."""
    rounds = [r / t for r, t in zip(reference, times)]
    return {
        "median_ratio": statistics.median(reference) / statistics.median(times),
        "min_round": min(rounds),
        "max_round": max(rounds),
    }


def treatment_costs(graph: GraphBatch, sample: GraphBatch, repeats: int) -> dict:
    """Milliseconds of the treatments' own operations, alone, on the benchmark's tensors.

    Training: loss + backward to the denoiser output (quotient: projection at x_t; GeoDiff / AF3:
    Kabsch alignment) minus the same for the plain (conventional) residual. Sampling: the SDE
    drift (projection + curvature) and projected noise minus the conventional drift and noise.
    """
    gen = torch.Generator().manual_seed(1)
    batch = graph.batch
    x1 = center(graph.pos, batch)
    xt = center(torch.randn(x1.shape, generator=gen), batch)
    den = (x1 + 0.1 * torch.randn(x1.shape, generator=gen)).requires_grad_(True)
    weight = torch.ones(graph.num_graphs)

    def loss_of(name: str) -> Callable[[], None]:
        treatment = get_treatment(name)

        def run() -> None:
            treatment.loss(den, x1, xt, batch, weight).mean().backward()
            den.grad = None

        return run

    sb = sample.batch
    xs = center(torch.randn(sample.pos.shape, generator=gen), sb)
    v, s = torch.randn_like(xs), torch.randn_like(xs)
    z, eta = torch.randn_like(xs), torch.full((xs.shape[0], 1), 0.3)

    def drift_of(name: str) -> Callable[[], None]:
        treatment = get_treatment(name)

        def run() -> None:
            treatment.drift(v, xs, sb, s, eta)
            treatment.noise(z, xs, sb)

        return run

    fns = {f"loss {k}": loss_of(k) for k in ("conventional", "quotient", "geodiff", "af3")}
    fns |= {f"drift {k}": drift_of(k) for k in ("conventional", "quotient")}
    times = interleaved(fns, repeats, warmup=2)
    ms = {k: 1e3 * statistics.median(v) for k, v in times.items()}
    base = ms["loss conventional"]
    return {
        "train_quotient_ms": ms["loss quotient"] - base,
        "train_geodiff_ms": ms["loss geodiff"] - base,
        "train_af3_ms": ms["loss af3"] - base,
        "sample_quotient_ms": ms["drift quotient"] - ms["drift conventional"],
        "raw_ms": ms,
    }


def profile_breakdown(case: Case) -> dict[str, float]:
    """Share of self CPU time of one training step: matrix products, gathers/scatters, rest."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        case.train_step()
    groups = {"matmul": 0.0, "gather_scatter": 0.0, "elementwise_other": 0.0}
    matmul = ("aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::linear")
    gather = ("index", "scatter", "gather", "index_add", "index_put", "segment")
    for event in prof.key_averages():
        if not event.key.startswith("aten::"):
            continue
        self_us = event.self_cpu_time_total
        if event.key in matmul:
            groups["matmul"] += self_us
        elif any(g in event.key for g in gather):
            groups["gather_scatter"] += self_us
        else:
            groups["elementwise_other"] += self_us
    total = sum(groups.values()) or 1.0
    return {k: v / total for k, v in groups.items()}


def step_flops(case: Case, sample_steps: int) -> dict[str, float]:
    """GFLOP of the matrix products of a training step (forward + backward), of its forward
    alone, and of one sampling step; the calls double as warm-up."""
    return {
        "train_gflop": count_flops(case.train_step) / 1e9,
        "forward_gflop": count_flops(case.forward_only) / 1e9,
        "sample_gflop": count_flops(case.sample_run) / sample_steps / 1e9,
    }


def count_size(
    hidden: int, layers: int, args: argparse.Namespace, train: GraphBatch, sample: GraphBatch
) -> list[dict]:
    """Rows (one per network) of one size with parameters and FLOPs only (no timing)."""
    rows = []
    for name in args.networks:
        case = Case(name, hidden, layers, train, sample, args.sample_steps)
        rows.append(
            {
                "network": name,
                "hidden": hidden,
                "layers": layers,
                "params": case.params,
                **step_flops(case, args.sample_steps),
            }
        )
        print(f"  {name:12s} {hidden} / {layers}: {rows[-1]['train_gflop']:.2f} GFLOP", flush=True)
    return rows


def time_size(
    hidden: int, layers: int, args: argparse.Namespace, train: GraphBatch, sample: GraphBatch
) -> list[dict]:
    """Rows (one per network) of one size: times, FLOPs, speed-ups, treatment overhead."""
    cases = [Case(n, hidden, layers, train, sample, args.sample_steps) for n in args.networks]
    if args.compile:
        cases.append(Case("egnn", hidden, layers, train, sample, args.sample_steps, True))
    print(f"hidden {hidden} / {layers} layers: timing {[c.name for c in cases]}", flush=True)
    # the FLOP-counted first calls double as warm-up (compiled networks: plain warm-up)
    flops = {}
    for c in cases:
        if c.compiled:
            c.train_step()
            c.sample_run()
            flops[c.name] = {"train_gflop": 0.0, "forward_gflop": 0.0, "sample_gflop": 0.0}
        else:
            flops[c.name] = step_flops(c, args.sample_steps)
    train_t = interleaved({c.name: c.train_step for c in cases}, args.repeats, warmup=0)
    sample_t = interleaved({c.name: c.sample_run for c in cases}, args.repeats, warmup=0)
    sample_t = {k: [v / args.sample_steps for v in vs] for k, vs in sample_t.items()}
    overhead = treatment_costs(train, sample, max(args.repeats, 5))
    rows = []
    for c in cases:
        train_ms = 1e3 * statistics.median(train_t[c.name])
        sample_ms = 1e3 * statistics.median(sample_t[c.name])
        row = {
            "network": c.name,
            "hidden": hidden,
            "layers": layers,
            "params": c.params,
            "train_ms": train_ms,
            "sample_ms": sample_ms,
            "train_times_ms": [1e3 * v for v in train_t[c.name]],
            "sample_times_ms": [1e3 * v for v in sample_t[c.name]],
            **flops[c.name],
            "overhead_fraction_train": overhead["train_quotient_ms"] / train_ms,
            "overhead_fraction_sample": overhead["sample_quotient_ms"] / sample_ms,
        }
        if PADDED in train_t:
            row["speedup_vs_padded_train"] = speedup(train_t[PADDED], train_t[c.name])
            row["speedup_vs_padded_sample"] = speedup(sample_t[PADDED], sample_t[c.name])
        rows.append(row)
        print(
            f"  {c.name:22s} train {train_ms:8.1f} ms  sample {sample_ms:8.1f} ms  "
            f"{row['train_gflop']:.2f} GFLOP",
            flush=True,
        )
    return [{**r, "overhead": overhead} for r in rows]


# ----------------------------------------------------------------------------- report
def _ratio(r: dict, key: str) -> str:
    s = r.get(key)
    if s is None:
        return "-"
    return f"{s['median_ratio']:.2f}x ({s['min_round']:.2f}..{s['max_round']:.2f})"


def to_markdown(rows: list[dict], meta: dict) -> str:
    """The results as markdown tables (what docs/benchmarks/throughput.md quotes)."""
    lines = [
        "# Throughput of the score networks",
        "",
        f"Command: `{meta['command']}`  ",
        f"Date: {meta['date']}. Machine: {meta['cpu']}, {meta['threads']} torch threads, torch "
        f"{meta['torch']}; load average (1, 5, 15 min) at start {meta['loadavg_start']}, at end "
        f"{meta['loadavg_end']}.  ",
        f"Data: {meta['data']}; training batch {meta['train_molecules']} molecules "
        f"({meta['train_atoms']} atoms, {meta['train_edges']} edges of the per-molecule full "
        f"graph; {meta['padded_edges']} slot pairs padded), sampling batch "
        f"{meta['sample_molecules']} molecules. Median of {meta['repeats']} interleaved repeats; "
        f"SDE steps per sampling timing: {meta['sample_sde_steps_per_timing']}.  ",
        f"Measured GEMM throughput (peak): {meta['matmul_gflops']:.1f} GFLOP/s (float32, 1024^3, "
        f"best of 5; {meta['matmul_gflops_start']:.1f} at the start, "
        f"{meta['matmul_gflops_end']:.1f} at the end, averaged).",
        "",
        "| network | hidden / layers | params | train step ms | sample step ms | "
        "train GFLOP (fwd+bwd) | fwd GFLOP | train achieved / peak | sample achieved / peak | "
        "speed-up vs edm-padded, train (range over rounds) | sample |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        counted = r["train_gflop"] > 0  # compiled networks are timed, not FLOP-counted
        flop_cells = (
            [
                f"{r['train_gflop']:.2f}",
                f"{r['forward_gflop']:.2f}",
                f"{r['train_floor_fraction']:.2f}",
                f"{r['sample_floor_fraction']:.2f}",
            ]
            if counted
            else ["-"] * 4
        )
        cells = [
            r["network"],
            f"{r['hidden']} / {r['layers']}",
            f"{r['params']:,}",
            f"{r['train_ms']:.1f}",
            f"{r['sample_ms']:.1f}",
            *flop_cells,
            _ratio(r, "speedup_vs_padded_train"),
            _ratio(r, "speedup_vs_padded_sample"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Quotient treatment overhead (its own operations timed alone, same tensors), as a "
        "share of the EGNN's step:",
        "",
        "| hidden / layers | train: projection ms (% of step) | "
        "sample: projection + curvature ms (% of step) | GeoDiff / AF3 alignment ms |",
        "|---|---|---|---|",
    ]
    for r in rows:
        if r["network"] != "egnn":
            continue
        o = r["overhead"]
        lines.append(
            f"| {r['hidden']} / {r['layers']} | "
            f"{o['train_quotient_ms']:.2f} ({100 * r['overhead_fraction_train']:.1f}%) | "
            f"{o['sample_quotient_ms']:.2f} ({100 * r['overhead_fraction_sample']:.1f}%) | "
            f"{o['train_geodiff_ms']:.2f} / {o['train_af3_ms']:.2f} |"
        )
    if not meta["profile"]:
        return "\n".join(lines) + "\n"
    lines += [
        "",
        "Where a training step (64 / 4) spends its time (profiler, share of self CPU time):",
        "",
        "| network | matrix products | gathers / scatters | element-wise and other |",
        "|---|---|---|---|",
    ]
    for name, p in meta["profile"].items():
        lines.append(
            f"| {name} | {100 * p['matmul']:.0f}% | {100 * p['gather_scatter']:.0f}% | "
            f"{100 * p['elementwise_other']:.0f}% |"
        )
    return "\n".join(lines) + "\n"


def counts_markdown(rows: list[dict], meta: dict) -> str:
    """Parameters and matrix-product FLOPs per step (machine-independent: no timing)."""
    lines = [
        "# Score networks: parameters and FLOPs per step (no timing)",
        "",
        f"Command: `{meta['command']}`  ",
        f"Date: {meta['date']}; torch {meta['torch']}. Data: {meta['data']}; training batch "
        f"{meta['train_molecules']} molecules ({meta['train_atoms']} atoms, "
        f"{meta['train_edges']} edges of the per-molecule full graph; {meta['padded_edges']} slot "
        f"pairs when padded to the largest molecule), sampling batch {meta['sample_molecules']} "
        "molecules. FLOPs: matrix products counted by torch.utils.flop_counter.",
        "",
        "| network | hidden / layers | params | train step GFLOP (fwd+bwd) | forward GFLOP | "
        "sample step GFLOP |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['network']} | {r['hidden']} / {r['layers']} | {r['params']:,} | "
            f"{r['train_gflop']:.2f} | {r['forward_gflop']:.2f} | {r['sample_gflop']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def machine_meta(args: argparse.Namespace, argv: list[str] | None) -> dict:
    """Command, CPU, threads, torch version, load and date of this run."""
    meta = {
        "command": command(__file__, argv),
        "cpu": machine(),
        "threads": args.threads,
        "torch": torch.__version__,
        "loadavg_start": [round(v, 2) for v in os.getloadavg()],
        "date": local_time(),
        "repeats": args.repeats,
        "sample_sde_steps_per_timing": args.sample_steps,
    }
    try:
        with open("/proc/cpuinfo") as fh:
            meta["cpu"] = next(
                line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")
            )
    except (OSError, StopIteration):
        pass
    return meta


def main(argv: list[str] | None = None) -> None:
    """Time every (network, size), write the JSON and markdown results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"64 / 4 only, networks {' '.join(QUICK_NETWORKS)} unless --networks, 3 repeats, "
        "1 SDE step per sampling timing, no profile",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--repeats", type=int, default=None, help="default 5 (3 with --quick)")
    parser.add_argument(
        "--sample-steps",
        type=int,
        default=None,
        help="SDE steps per sampling timing (default 3; 1 with --quick)",
    )
    parser.add_argument("--networks", nargs="+", default=None, choices=NETWORKS)
    parser.add_argument("--compile", action="store_true", help="also time a compiled EGNN")
    parser.add_argument(
        "--counts-only",
        action="store_true",
        help="parameters and FLOPs only, no timing (throughput.counts.*)",
    )
    parser.add_argument("--tag", nargs="*", default=[], help="extra parts of the file names")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results directory")
    args = parser.parse_args(argv)
    args.repeats = args.repeats or (3 if args.quick else 5)
    args.sample_steps = args.sample_steps or (1 if args.quick else 3)
    args.networks = args.networks or (QUICK_NETWORKS if args.quick else NETWORKS)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    meta = machine_meta(args, argv)
    train_mols, source = qm9_molecules(TRAIN_MOLECULES, seed=0)
    sample_mols, _ = qm9_molecules(SAMPLE_MOLECULES, seed=1)
    train, sample = make_graph(train_mols), make_graph(sample_mols)
    counts = train.num_nodes_per_graph
    meta |= {
        "data": source,
        "train_molecules": TRAIN_MOLECULES,
        "sample_molecules": SAMPLE_MOLECULES,
        "train_atoms": int(counts.sum()),
        "train_edges": int((counts * (counts - 1)).sum()),
        "padded_edges": int(TRAIN_MOLECULES * counts.max() ** 2),
    }
    sizes = SIZES[:1] if args.quick else SIZES
    args.out.mkdir(parents=True, exist_ok=True)
    if args.counts_only:
        rows = [r for h, n in sizes for r in count_size(h, n, args, train, sample)]
        stem = ".".join(["throughput", "counts"] + (["quick"] if args.quick else []) + args.tag)
        table = counts_markdown(rows, meta)
        write_results(args.out, stem, {"meta": meta, "rows": rows}, table, indent=2)
        print(table)
        return
    gflops_start = matmul_gflops()
    rows = [r for h, n in sizes for r in time_size(h, n, args, train, sample)]
    meta["profile"] = {}
    if not args.quick:
        for name in args.networks:
            case = Case(name, 64, 4, train, sample, args.sample_steps)
            case.train_step()
            meta["profile"][name] = profile_breakdown(case)
    gflops_end = matmul_gflops()
    gflops = 0.5 * (gflops_start + gflops_end)
    meta |= {
        "matmul_gflops": gflops,
        "matmul_gflops_start": gflops_start,
        "matmul_gflops_end": gflops_end,
        "loadavg_end": [round(v, 2) for v in os.getloadavg()],
    }
    for row in rows:
        row["train_floor_ms"] = 1e3 * row["train_gflop"] / gflops
        row["sample_floor_ms"] = 1e3 * row["sample_gflop"] / gflops
        row["train_floor_fraction"] = row["train_floor_ms"] / row["train_ms"]
        row["sample_floor_fraction"] = row["sample_floor_ms"] / row["sample_ms"]
    meta["wall_seconds"] = time.perf_counter() - started
    stem = ".".join(["throughput"] + (["quick"] if args.quick else []) + args.tag)
    table = to_markdown(rows, meta)
    write_results(args.out, stem, {"meta": meta, "rows": rows}, table, indent=2)
    print(table)
    print(f"wall time {meta['wall_seconds']:.0f} s")


if __name__ == "__main__":
    main()
