"""Throughput of the score networks on QM9-sized flat batches, against the FLOP floor.

For each network ('egnn', 'e3nn', 'transformer') and size (hidden 64 / 4 layers, 128 / 6,
256 / 9) it times, side by side in one run (the repeats interleave the networks, so that a
change of machine load hits all of them alike):

* a training step: DiffusionModel.training_loss (quotient treatment, EDM's de novo setting:
  one-hot atom types + charge diffused with the coordinates) + backward + Adam, batch of 64
  molecules;
* a sampling step: one step of the quotient SDE sampler (denoiser, projection, curvature,
  projected noise) for 100 molecules;
* the FLOPs of each (torch.utils.flop_counter: matrix products only) and the floor
  FLOPs / (measured matmul throughput of this machine at the same thread count);
* the quotient treatment's own cost (projection, curvature; alignment for the GeoDiff and AF3
  heuristics) timed alone on the same tensors, as a fraction of the steps;
* 'edm-padded': EDM's computation pattern re-implemented for this comparison (every molecule
  padded to the largest of the batch, the padded graph fully connected with masks, edge and
  coordinate MLPs on concatenated [h_i, h_j, d^2, d0^2], attention gate). Its time next to ours
  calibrates the machine's load against EDM's published reference (460 ms per training step at
  64 / 4 on an idle machine of this kind).

Molecules come from QM9 (qm9pack) when it is installed, else sizes drawn from a QM9-like
distribution (mean 18 atoms, 3 to 29).

    python benchmarks/throughput.py --quick                 # 64 / 4 only, about a minute
    python benchmarks/throughput.py --threads 2             # all sizes (tens of minutes)
    python benchmarks/throughput.py --threads 2 --compile   # + torch.compile of the EGNN

Writes benchmarks/results/throughput.json and .md (--quick: throughput.quick.*);
docs/benchmarks/throughput.md discusses them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from quotient_diffusion.data.batch import Graph, GraphBatch, collate
from quotient_diffusion.diffusion import DiffusionModel, SamplerConfig
from quotient_diffusion.diffusion.treatments import get_treatment
from quotient_diffusion.groups import center
from quotient_diffusion.nn import get_network
from quotient_diffusion.nn.common import node_inputs
from quotient_diffusion.scatter import scatter_sum

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
SIZES = [(64, 4), (128, 6), (256, 9)]
NETWORKS = ["egnn", "e3nn", "transformer", "edm-padded"]
FEATURES = 6  # one-hot H, C, N, O, F + charge (EDM's QM9 node features)
#: EDM's reference code on an idle machine of this kind (torch 2.13 CPU, 2 threads, median of 5)
EDM_TRAIN_MS = {(64, 4): 460.0, (128, 6): 2000.0, (256, 9): 16000.0}
EDM_SAMPLE_MS = {(64, 4): 190.0, (128, 6): 730.0, (256, 9): 6200.0}


# ----------------------------------------------------------------------------- EDM's pattern
class PaddedEGNN(nn.Module):
    """EDM's EGNN computation pattern on padded batches, for timing comparisons only.

    The flat batch is scattered into B x N_max slots; every slot pair of a molecule is an edge
    (B N_max^2 of them, self pairs and padding masked out); per layer an edge MLP on
    [h_i, h_j, d_ij^2, d0_ij^2] with a sigmoid attention gate, a node MLP, and a coordinate MLP
    on the same concatenation after the node update (EDM's EquivariantBlock with one invariant
    sublayer, tanh coordinates, range 15, sum aggregation).
    """

    def __init__(self, in_features: int, out_features: int, hidden: int, layers: int):
        super().__init__()
        self.embed = nn.Linear(in_features + 1, hidden)
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

    def forward(self, pos, node_attr, batch, t, edge_index=None, edge_attr=None):
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
        for edge_mlp, att, node_mlp, coord_mlp in zip(
            self.edge_mlps, self.attention, self.node_mlps, self.coord_mlps
        ):
            diff = x[row] - x[col]
            radial = (diff * diff).sum(-1, keepdim=True)
            pair = torch.cat([radial, d0], -1)
            m = edge_mlp(torch.cat([h[row], h[col], pair], -1))
            m = m * torch.sigmoid(att(m)) * edge_mask
            h = (h + node_mlp(torch.cat([h, scatter_sum(m, row, slots)], -1))) * node_mask
            phi = torch.tanh(coord_mlp(torch.cat([h[row], h[col], pair], -1))) * 15.0
            step = diff / ((radial + 1e-8).sqrt() + 1.0) * phi * edge_mask
            x = (x + scatter_sum(step, row, slots)) * node_mask
        return (x - x0)[slot], self.readout(h)[slot]


def build_network(name: str, hidden: int, layers: int) -> nn.Module:
    if name == "edm-padded":
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
        return [(data.atomic_numbers_of(i), data.positions_of(i)) for i in chosen], "QM9"
    except (ImportError, FileNotFoundError):
        sizes = np.clip(np.rint(rng.normal(18.0, 3.0, count)), 3, 29).astype(int)
        elements = np.array([1, 6, 7, 8, 9])
        mols = []
        for n in sizes:
            z = rng.choice(elements, n, p=[0.51, 0.35, 0.06, 0.07, 0.01])
            mols.append((z, 1.5 * rng.standard_normal((n, 3))))
        return mols, "synthetic (QM9-like sizes)"


def make_graph(molecules) -> GraphBatch:
    """EDM's de novo setting: no conditioning; diffused features [one-hot, charge / 9]."""
    graphs = []
    for z, xyz in molecules:
        z = torch.as_tensor(np.asarray(z, dtype=np.int64))
        onehot = (z[:, None] == torch.tensor([1, 6, 7, 8, 9])).float()
        feats = torch.cat([onehot, z[:, None].float() / 9.0], 1)
        graphs.append(
            Graph(
                pos=torch.as_tensor(np.asarray(xyz), dtype=torch.float32),
                node_attr=torch.zeros(len(z), 0),
                extras={"features": feats},
            )
        )
    return collate(graphs)


# ----------------------------------------------------------------------------- timing
def matmul_gflops(threads: int, size: int = 1024, repeats: int = 5) -> float:
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
        loss, _ = self.model.training_loss(self.train_graph, self.gen)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()

    def sample_run(self) -> None:
        config = SamplerConfig(steps=self.sample_steps, method="sde")
        self.model.sample(self.sample_graph, config, self.gen)


def interleaved(fns: dict[str, Callable[[], None]], repeats: int, warmup: int = 1):
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


def treatment_costs(graph: GraphBatch, sample: GraphBatch, repeats: int) -> dict[str, float]:
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

    def loss_of(name):
        treatment = get_treatment(name)

        def run():
            treatment.loss(den, x1, xt, batch, weight).mean().backward()
            den.grad = None

        return run

    sb = sample.batch
    xs = center(torch.randn(sample.pos.shape, generator=gen), sb)
    v, s = torch.randn_like(xs), torch.randn_like(xs)
    z, eta = torch.randn_like(xs), torch.full((xs.shape[0], 1), 0.3)

    def drift_of(name):
        treatment = get_treatment(name)
        return lambda: (treatment.drift(v, xs, sb, s, eta), treatment.noise(z, xs, sb))

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


# ----------------------------------------------------------------------------- report
def to_markdown(rows: list[dict], meta: dict) -> str:
    lines = [
        "# Throughput of the score networks",
        "",
        f"Command: `{meta['command']}`  ",
        f"Machine: {meta['cpu']}, {meta['threads']} torch threads, torch {meta['torch']}; "
        f"load average at start {meta['loadavg_start']}, at end {meta['loadavg_end']} "
        "(other work shared the cores: absolute times are inflated, ratios taken side by side "
        "are the robust numbers).  ",
        f"Data: {meta['data']}; training batch {meta['train_molecules']} molecules "
        f"({meta['train_atoms']} atoms, {meta['train_edges']} edges of the per-molecule full "
        f"graph), sampling batch {meta['sample_molecules']} molecules.  ",
        f"Measured GEMM throughput: {meta['matmul_gflops']:.1f} GFLOP/s (float32, 1024^3, "
        "best of 5, start and end of the run averaged).",
        "",
        "| network | hidden / layers | params | train step ms | sample step ms | "
        "train GFLOP | floor ms | floor / measured | vs edm-padded (train, sample) | "
        "vs EDM reference (train, sample) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['network']} | {r['hidden']} / {r['layers']} | {r['params']:,} | "
            f"{r['train_ms']:.1f} | {r['sample_ms']:.1f} | {r['train_gflop']:.2f} | "
            f"{r['train_floor_ms']:.1f} | {r['train_floor_fraction']:.2f} | "
            f"{r['speedup_vs_padded_train']:.2f}x, {r['speedup_vs_padded_sample']:.2f}x | "
            f"{r['speedup_vs_edm_train']:.2f}x, {r['speedup_vs_edm_sample']:.2f}x |"
        )
    lines += [
        "",
        "Quotient treatment overhead (its own operations timed alone, same tensors):",
        "",
        "| hidden / layers | network | train: projection ms (% of step) | "
        "sample: projection + curvature ms (% of step) | GeoDiff / AF3 alignment ms |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        if r["network"] != "egnn":
            continue
        o = r["overhead"]
        lines.append(
            f"| {r['hidden']} / {r['layers']} | {r['network']} | "
            f"{o['train_quotient_ms']:.2f} ({100 * o['train_fraction']:.1f}%) | "
            f"{o['sample_quotient_ms']:.2f} ({100 * o['sample_fraction']:.1f}%) | "
            f"{o['train_geodiff_ms']:.2f} / {o['train_af3_ms']:.2f} |"
        )
    lines += [
        "",
        "Where a training step (64 / 4) spends its time (profiler, share of self CPU time):",
        "",
        "| network | matrix products | gathers / scatters | element-wise and other |",
        "|---|---|---|---|",
    ]
    for name, p in meta.get("profile", {}).items():
        lines.append(
            f"| {name} | {100 * p['matmul']:.0f}% | {100 * p['gather_scatter']:.0f}% | "
            f"{100 * p['elementwise_other']:.0f}% |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="64 / 4 only, 3 repeats")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--repeats", type=int, default=None, help="default 5 (3 with --quick)")
    parser.add_argument("--sample-steps", type=int, default=3, help="SDE steps per timing")
    parser.add_argument("--networks", nargs="+", default=NETWORKS, choices=NETWORKS)
    parser.add_argument("--compile", action="store_true", help="also time a compiled EGNN")
    parser.add_argument("--tag", nargs="*", default=[], help="extra parts of the file names")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results directory")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    repeats = args.repeats or (3 if args.quick else 5)
    sizes = SIZES[:1] if args.quick else SIZES
    meta = {
        "command": "python benchmarks/throughput.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "cpu": platform.processor() or platform.machine(),
        "threads": args.threads,
        "torch": torch.__version__,
        "loadavg_start": [round(v, 2) for v in os.getloadavg()],
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "repeats": repeats,
        "sample_sde_steps_per_timing": args.sample_steps,
    }
    try:
        meta["cpu"] = next(
            line.split(":", 1)[1].strip()
            for line in open("/proc/cpuinfo")
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        pass
    gflops_start = matmul_gflops(args.threads)
    train_mols, source = qm9_molecules(64, seed=0)
    sample_mols, _ = qm9_molecules(100, seed=1)
    train, sample = make_graph(train_mols), make_graph(sample_mols)
    counts = train.num_nodes_per_graph
    meta |= {
        "data": source,
        "train_molecules": 64,
        "sample_molecules": 100,
        "train_atoms": int(counts.sum()),
        "train_edges": int((counts * (counts - 1)).sum()),
        "padded_edges": int(64 * counts.max() ** 2),
    }
    rows = []
    for hidden, layers in sizes:
        cases = [Case(n, hidden, layers, train, sample, args.sample_steps) for n in args.networks]
        if args.compile:
            cases.append(Case("egnn", hidden, layers, train, sample, args.sample_steps, True))
        print(f"hidden {hidden} / {layers} layers: timing {[c.name for c in cases]}", flush=True)
        # the FLOP-counted first calls double as warm-up (compiled networks: plain warm-up)
        flops = {}
        for c in cases:
            compiled = "compiled" in c.name
            flops[c.name] = (
                0 if compiled else count_flops(c.train_step),
                0 if compiled else count_flops(c.sample_run) / args.sample_steps,
            )
            if compiled:
                c.train_step()
                c.sample_run()
        train_t = interleaved({c.name: c.train_step for c in cases}, repeats, warmup=0)
        sample_t = interleaved({c.name: c.sample_run for c in cases}, repeats, warmup=0)
        overhead = treatment_costs(train, sample, max(repeats, 5))
        ms = {c.name: 1e3 * statistics.median(train_t[c.name]) for c in cases}
        sms = {c.name: 1e3 * statistics.median(sample_t[c.name]) / args.sample_steps for c in cases}
        padded = "edm-padded" if "edm-padded" in ms else None
        for c in cases:
            train_flops, sample_flops = flops[c.name]
            row = {
                "network": c.name,
                "hidden": hidden,
                "layers": layers,
                "params": c.params,
                "train_ms": ms[c.name],
                "sample_ms": sms[c.name],
                "train_times_ms": [1e3 * v for v in train_t[c.name]],
                "sample_times_ms": [1e3 * v / args.sample_steps for v in sample_t[c.name]],
                "train_gflop": train_flops / 1e9,
                "sample_gflop": sample_flops / 1e9,
                "speedup_vs_edm_train": EDM_TRAIN_MS[(hidden, layers)] / ms[c.name],
                "speedup_vs_edm_sample": EDM_SAMPLE_MS[(hidden, layers)] / sms[c.name],
                "speedup_vs_padded_train": ms[padded] / ms[c.name] if padded else float("nan"),
                "speedup_vs_padded_sample": sms[padded] / sms[c.name] if padded else float("nan"),
                "overhead": {
                    **overhead,
                    "train_fraction": overhead["train_quotient_ms"] / ms[c.name],
                    "sample_fraction": overhead["sample_quotient_ms"] / sms[c.name],
                },
            }
            rows.append(row)
            print(
                f"  {c.name:22s} train {row['train_ms']:8.1f} ms  sample {row['sample_ms']:8.1f}"
                f" ms  {row['train_gflop']:.2f} GFLOP",
                flush=True,
            )
    meta["profile"] = {}
    for name in args.networks:
        case = Case(name, 64, 4, train, sample, args.sample_steps)
        case.train_step()
        meta["profile"][name] = profile_breakdown(case)
    gflops = 0.5 * (gflops_start + matmul_gflops(args.threads))
    meta["matmul_gflops"] = gflops
    meta["loadavg_end"] = [round(v, 2) for v in os.getloadavg()]
    for row in rows:
        row["train_floor_ms"] = 1e3 * row["train_gflop"] / gflops
        row["sample_floor_ms"] = 1e3 * row["sample_gflop"] / gflops
        row["train_floor_fraction"] = row["train_floor_ms"] / row["train_ms"]
        row["sample_floor_fraction"] = row["sample_floor_ms"] / row["sample_ms"]
    stem = ".".join(["throughput"] + (["quick"] if args.quick else []) + args.tag)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{stem}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    table = to_markdown(rows, meta)
    (args.out / f"{stem}.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
