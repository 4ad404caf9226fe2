"""Does each symmetry treatment's sampler recover an SO(3)-invariant (or SO(2)-invariant) target?

Question 1 (exact denoisers). The target is a mixture of randomly rotated noisy templates
(quotient_diffusion.diffusion.template_posterior). For it the minimiser of every treatment's loss
is computed near-exactly from the posterior p(k, R | x_t) (importance sampling over rotations),
so the samplers are judged without any learning error: conventional ODE/SDE, GeoDiff-aligned,
AF3-aligned, quotient ODE/SDE, and the two wrong quotient SDEs (the paper's printed '+' sign, and
no curvature term). Distances between generated and target distributions of invariants (radius of
gyration, log det K, pairwise distances): 1-D Wasserstein, with spreads over seeds, next to the
floor given by a second independent target sample.

Question 2 (learning). The same small EGNN is trained under each treatment with the same data,
seeds and steps; at several budgets we report the denoiser's error against the exact minimiser of
its own loss (horizontal part for quotient) and the W1 distances of its ODE samples.

``--group`` is the group the treatments quotient by: SE3 (default, the committed runs) or SO3
for the SO(3)-invariant target above; SO2 (rotations about z, no translations) for the same
templates rotated about z only (AxialTemplateMixture), a target invariant under SO(2) but not
SO(3). Its exact minimisers come from the von Mises posterior of the angle, its alignments are
SO(2) alignments, and the distances gain the SO(2)-only invariant "axial" (the z coordinates of
the centred points).

    python benchmarks/toy_recovery.py --quick      # a few minutes on 2 cores
    python benchmarks/toy_recovery.py              # the committed full run
    python benchmarks/toy_recovery.py --quick --part exact --group SO2 --seeds 1
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from _results import RESULTS, save_figure, write_results
from scipy.stats import wasserstein_distance

from quotient_diffusion.data import GraphBatch
from quotient_diffusion.diffusion import (
    DiffusionModel,
    LinearInterpolant,
    Quotient,
    SamplerConfig,
    get_treatment,
    prior_sample,
    sample,
)
from quotient_diffusion.diffusion.template_posterior import AxialTemplateMixture, TemplateMixture
from quotient_diffusion.groups import GroupAction, get_group, inertia_tensor

DT = torch.float64

# name -> (treatment, sampler method, which exact minimiser the network would learn)
SAMPLERS = {
    "conventional ODE": ("conventional", "ode", "mean"),
    "conventional SDE": ("conventional", "sde", "mean"),
    "GeoDiff-aligned ODE": ("geodiff", "ode", "geodiff"),
    "AF3-aligned ODE": ("af3", "ode", "af3"),
    "quotient ODE": ("quotient", "ode", "mean"),
    "quotient SDE (-eta h, ours)": ("quotient", "sde", "mean"),
    "quotient SDE (+eta h, as printed)": ("quotient+", "sde", "mean"),
    "quotient SDE (no correction)": ("quotient0", "sde", "mean"),
}


# --group -> the target invariant under it (templates rotated by the group's rotations)
TARGETS = {"SE3": TemplateMixture, "SO3": TemplateMixture, "SO2": AxialTemplateMixture}


def make_treatment(name: str, group: GroupAction):
    if name == "quotient+":
        return Quotient(group, curvature_sign=+1.0)
    if name == "quotient0":
        return Quotient(group, curvature_sign=0.0)
    return get_treatment(name, group)


def invariants(x: torch.Tensor, n: int, axis: torch.Tensor | None = None) -> dict[str, np.ndarray]:
    """Radius of gyration, log det K and all pairwise distances of clouds (flat, N points), and
    with an ``axis`` the axial coordinates of the centred points (SO(2)-invariant only)."""
    c = x.view(-1, n, 3)
    c = c - c.mean(1, keepdim=True)
    rg = c.pow(2).sum(-1).mean(-1).sqrt()
    batch = torch.arange(c.shape[0]).repeat_interleave(n)
    logdet = torch.logdet(inertia_tensor(c.reshape(-1, 3), batch, c.shape[0]))
    iu = torch.triu_indices(n, n, 1)
    dist = (c[:, iu[0]] - c[:, iu[1]]).norm(dim=-1)
    out = {"rg": rg.numpy(), "logdetK": logdet.numpy(), "pair": dist.reshape(-1).numpy()}
    if axis is not None:
        out["axial"] = (c @ axis.to(c.dtype)).reshape(-1).numpy()
    return out


def target_axis(target: TemplateMixture) -> torch.Tensor | None:
    """The rotation axis of an SO(2) target (None for an SO(3) one)."""
    return target.group.axis if isinstance(target, AxialTemplateMixture) else None


def distances(gen: dict, ref: dict) -> dict[str, float]:
    return {k: float(wasserstein_distance(gen[k], ref[k])) for k in ref}


def run_exact(args, target: TemplateMixture, interp) -> dict:
    n, axis, group = target.num_points, target_axis(target), get_group(args.group)
    rows = {}
    ref = invariants(target.sample(args.num_samples, torch.Generator().manual_seed(999)), n, axis)
    floor = []
    for seed in range(args.seeds):
        other = target.sample(args.num_samples, torch.Generator().manual_seed(seed))
        floor.append(distances(invariants(other, n, axis), ref))
    rows["target (independent sample)"] = floor
    batch = torch.arange(args.num_samples).repeat_interleave(n)
    for name, (tname, method, kind) in SAMPLERS.items():
        per_seed = []
        t0 = time.perf_counter()
        for seed in range(args.seeds):
            gen = torch.Generator().manual_seed(100 + seed)
            denoise = target.denoise_fn(interp, kind, generator=gen, num_rotations=args.rotations)
            x0, _ = prior_sample(batch, dtype=DT, generator=gen, group=group)
            steps = args.steps if method == "ode" else 2 * args.steps
            cfg = SamplerConfig(steps=steps, method=method, noise_scale=args.noise_scale)
            treatment = make_treatment(tname, group)
            x, _ = sample(denoise, x0, None, batch, treatment, interp, cfg, gen)
            per_seed.append(distances(invariants(x, n, axis), ref))
        rows[name] = per_seed
        print(f"  {name:36s} done in {time.perf_counter() - t0:6.1f} s", flush=True)
    return rows


# ---------------------------------------------------------------------- learning
def make_graph(x: torch.Tensor, n: int) -> GraphBatch:
    num = x.shape[0] // n
    return GraphBatch(
        pos=x,
        node_attr=torch.ones(x.shape[0], 1, dtype=x.dtype),
        batch=torch.arange(num).repeat_interleave(n),
        num_graphs=num,
    )


def run_learning(args, target: TemplateMixture, interp) -> dict:
    from quotient_diffusion.nn import get_network

    n, axis, group = target.num_points, target_axis(target), get_group(args.group)
    ref = invariants(target.sample(args.num_samples, torch.Generator().manual_seed(999)), n, axis)
    # fixed validation set of (x_t, t) with the exact minimiser of every treatment
    gval = torch.Generator().manual_seed(7)
    nval = 256
    x1 = target.sample(nval, gval).view(nval, n, 3)
    t = torch.rand(nval, dtype=DT, generator=gval) * 0.95
    a, b = interp.coefficients(t)
    eps = torch.randn(nval, n, 3, dtype=DT, generator=gval)
    if group.has_translations:
        eps = eps - eps.mean(1, keepdim=True)
    xt = a[:, None, None] * eps + b[:, None, None] * x1
    centred = xt if group.has_translations else xt - xt.mean(1, keepdim=True)
    exact = target.denoisers(centred, a, b, num_rotations=1024, generator=gval)  # x1 is centred
    val_graph = make_graph(xt.reshape(-1, 3).float(), n)
    budgets = sorted(args.budgets)
    results: dict[str, dict] = {}
    for tname in args.treatments:
        kind = {"conventional": "mean", "quotient": "mean"}.get(tname, tname)
        results[tname] = {str(bud): [] for bud in budgets}
        for seed in range(args.seeds):
            torch.manual_seed(seed)
            gen = torch.Generator().manual_seed(seed)
            net = get_network(args.network, in_features=1, out_features=0, hidden=args.hidden,
                              layers=4)
            # a network that is not equivariant learns the symmetry from augmentation (Proteina)
            model = DiffusionModel(net, make_treatment(tname, group), interp,
                                   augment_rotations=args.network == "transformer")
            opt = torch.optim.Adam(model.parameters(), lr=args.lr)
            step = 0
            for bud in budgets:
                while step < bud:
                    graph = make_graph(target.sample(args.batch, gen).float(), n)
                    loss, _ = model.training_loss(graph, gen)
                    opt.zero_grad()
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                    opt.step()
                    step += 1
                with torch.no_grad():
                    den, _ = model.denoise(val_graph.pos, None, t.float(), val_graph)
                den = den.double()
                diff = den - exact[kind].reshape(-1, 3)
                if tname == "quotient":
                    diff = group.project(diff, xt.reshape(-1, 3), val_graph.batch)
                err = float(diff.pow(2).sum(-1).view(nval, n).sum(-1).mean())
                xs, _ = model.sample(
                    make_graph(torch.zeros(args.num_samples * n, 3), n),
                    SamplerConfig(steps=args.steps, method="ode"),
                    generator=torch.Generator().manual_seed(500 + seed),
                )
                w1 = distances(invariants(xs.double(), n, axis), ref)
                results[tname][str(bud)].append({"denoiser_error": err, **w1})
                print(
                    f"  {tname:12s} seed {seed} steps {bud:5d}: err {err:.4f} W1 {w1}", flush=True
                )
    return results


# ---------------------------------------------------------------------- report
def summarise(rows: list[dict]) -> dict[str, tuple[float, float]]:
    keys = rows[0].keys()
    return {
        k: (float(np.mean([r[k] for r in rows])), float(np.std([r[k] for r in rows]))) for k in keys
    }


def fmt(m, s, digits=3):
    return f"{m:.{digits}f} ± {s:.{digits}f}"


def axial_cells(s: dict) -> str:
    """The table cell of the SO(2) target's axial invariant ('' for an SO(3) target)."""
    return f" {fmt(*s['axial'])} |" if "axial" in s else ""


def markdown(exact: dict, learning: dict | None, args) -> str:
    so2 = args.group == "SO2"
    axial_head, axial_rule = (" W1 axial z |", "---|") if so2 else ("", "")
    lines = (
        []
        if exact is None
        else [
            f"Target: {args.templates} templates of {args.points} points, shape noise "
            f"{args.shape_noise}; {args.num_samples} samples per run, {args.seeds} seeds; ODE "
            f"{args.steps} steps (Heun off, Euler), SDE {2 * args.steps} steps, noise scale "
            f"{args.noise_scale}. W1 = 1-D Wasserstein distance to a reference target sample "
            "(mean ± std over seeds; lower is better)."
            + (" Group SO(2) about z: templates rotated about z only." if so2 else ""),
            "",
            f"| sampler (exact denoiser) | W1 Rg | W1 log det K | W1 pairwise dist. |{axial_head}",
            f"|---|---|---|---|{axial_rule}",
        ]
    )
    for name, rows in (exact or {}).items():
        s = summarise(rows)
        lines.append(f"| {name} | {fmt(*s['rg'])} | {fmt(*s['logdetK'])} | {fmt(*s['pair'])} |"
                     + axial_cells(s))
    if learning:
        lines += [
            "",
            f"Learning: {args.network} hidden {args.hidden} x 4 layers, batch {args.batch}, "
            f"Adam lr {args.lr}, {args.seeds} seeds; denoiser error = mean over validation "
            "(x_t, t) of |D - D*|^2 against the exact minimiser D* of the treatment's own loss "
            "(horizontal part for quotient); samples: ODE.",
            "",
            "| treatment | steps | denoiser error | W1 Rg | W1 log det K | W1 pairwise |"
            + axial_head,
            f"|---|---|---|---|---|---|{axial_rule}",
        ]
        for tname, by_budget in learning.items():
            for bud, rows in by_budget.items():
                s = summarise(rows)
                lines.append(
                    f"| {tname} | {bud} | {fmt(*s['denoiser_error'], 4)} | {fmt(*s['rg'])} | "
                    f"{fmt(*s['logdetK'])} | {fmt(*s['pair'])} |" + axial_cells(s)
                )
    return "\n".join(lines) + "\n"


def plot(exact: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(exact)
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.5), sharey=True)
    for ax, key, title in zip(axes, ["rg", "logdetK", "pair"], ["Rg", "log det K", "pair dist."]):
        s = [summarise(exact[n])[key] for n in names]
        ax.barh(range(len(names)), [m for m, _ in s], xerr=[e for _, e in s], color="tab:blue")
        ax.set_title(f"W1 to target: {title}")
        ax.set_xscale("log")
    axes[0].set_yticks(range(len(names)))
    axes[0].set_yticklabels(names, fontsize=8)
    axes[0].invert_yaxis()
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small run (a few minutes on 2 cores)")
    p.add_argument(
        "--part",
        choices=["exact", "learning", "both"],
        default="both",
        help="which question to run (each writes its own result files)",
    )
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--treatments", nargs="+", help="treatments of the learning part",
                   default=["conventional", "geodiff", "af3", "quotient"])
    p.add_argument("--seeds", type=int, help="override the number of seeds")
    p.add_argument("--network", choices=["egnn", "transformer"], default="egnn",
                   help="network of the learning part (transformer: rotation augmentation)")
    p.add_argument("--group", choices=sorted(TARGETS), default="SE3",
                   help="group of the treatments; SO2 (about z): a target rotated about z only")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    q = args.quick
    args.templates, args.points, args.shape_noise = 3, 6, 0.15
    args.num_samples = 300 if q else 500
    args.seeds = args.seeds or (2 if q else 3)
    args.steps = 30 if q else 40
    args.rotations = 128
    args.noise_scale = 1.0
    args.budgets = [100, 300] if q else [200, 600, 2000]
    args.hidden, args.batch, args.lr = (32 if q else 64), 64, 2e-3
    target = TARGETS[args.group].random(args.templates, args.points, args.shape_noise, seed=0)
    interp = LinearInterpolant()
    RESULTS.mkdir(parents=True, exist_ok=True)
    tag = "toy_recovery_quick" if q else "toy_recovery"
    if args.network != "egnn":
        tag += f"_{args.network}"
    if args.group != "SE3":
        tag += f"_{args.group}"
    for part in ("exact", "learning"):
        if args.part not in (part, "both"):
            continue
        t0 = time.perf_counter()
        print(f"{part}:", flush=True)
        if part == "exact":
            rows = run_exact(args, target, interp)
            table = markdown(rows, None, args)
            plot(rows, RESULTS / f"{tag}_exact.png")
        else:
            rows = run_learning(args, target, interp)
            table = markdown(None, rows, args)
        payload = {
            "command": " ".join(["python", *sys.argv]),
            "config": vars(args),
            part: rows,
            "seconds": time.perf_counter() - t0,
        }
        write_results(RESULTS, f"{tag}_{part}", payload, table)
        print(table)


if __name__ == "__main__":
    main()
