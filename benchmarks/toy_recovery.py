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

``--points N [N ...]`` runs the learning part at each number of points N (issue 18: how the gap
between the quotient and the conventional loss depends on N), for each network of ``--network``
(several allowed here), with templates of N points drawn as for the committed N = 6. Its sizes
are its own, chosen so that N = 32 fits on one thread: hidden 32, batch 32, budgets 100, 300,
1,000 and 2,000 steps (the last as for N = 6), 300 ODE samples of 30 Euler steps, 3 seeds
(--quick: budgets 20, 60, 100 samples of 20 steps, 2 seeds); ``--budgets`` and
``--num-samples`` override them. Its rows add the horizontal part of the denoiser error for
every treatment (the exact minimiser is horizontal, so this is the same quantity for both
losses) and the training and evaluation seconds. One results set,
``toy_recovery[_quick]_NETWORKS_pointsN-N..._learning.{json,md,png}``: per N, network and
treatment the curves (mean and std over seeds of each metric against the steps), and per N and
network the quotient / conventional ratio, seed by seed, of the horizontal error and of the W1
distances at the last budget, next to the theory's 3/(3N-3) (the vertical share of the
coordinates; 3/(3N) for SO3, 1/(3N) for SO2); the plot shows the ratios against N and the
curves. The full run below (4 N x 2 networks x 2 treatments x 3 seeds) should take about 70
minutes on one thread, 45 of them at N = 32 and 14 at N = 16: estimated, not measured, from the
per-step training and per-sample evaluation seconds of the timed --quick run with the same N,
networks and treatments (147 and 156 s in two runs, measured beside two other training jobs on
2 cores). Without ``--points`` nothing changes: the committed commands give the committed
numbers.

``--group`` is the group the treatments quotient by: SE3 (default, the committed runs) or SO3
for the SO(3)-invariant target above; SO2 (rotations about z, no translations) for the same
templates rotated about z only (AxialTemplateMixture), a target invariant under SO(2) but not
SO(3). Its exact minimisers come from the von Mises posterior of the angle, its alignments are
SO(2) alignments, and the distances gain the SO(2)-only invariant "axial" (the z coordinates of
the centred points).

    python benchmarks/toy_recovery.py --quick      # a few minutes on 2 cores
    python benchmarks/toy_recovery.py              # the committed full run
    python benchmarks/toy_recovery.py --quick --part exact --group SO2 --seeds 1
    python benchmarks/toy_recovery.py --threads 1 --points 4 8 16 32 \
        --network egnn transformer --treatments conventional quotient    # about 70 minutes
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from _results import RESULTS, command, mean_std, save_figure, write_results
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


def exact_minimisers(target: TemplateMixture, xt, a, b, kinds: tuple[str, ...], generator,
                     num_rotations: int = 1024, max_elements: int = 2**25) -> dict:
    """The minimisers of ``kinds`` at the clouds ``xt`` (B, N, 3), in chunks of clouds so that
    the particle means (K * num_rotations per cloud) keep under ``max_elements`` numbers: one
    chunk at N = 6 (so the committed runs draw the same rotations), several at N = 16 or 32."""
    per_cloud = len(target.templates) * num_rotations * target.num_points * 3
    size = max(1, max_elements // per_cloud)
    parts = [target.denoisers(xt[i:i + size], a[i:i + size], b[i:i + size], kinds=kinds,
                              num_rotations=num_rotations, generator=generator)
             for i in range(0, len(xt), size)]
    return {k: torch.cat([part[k] for part in parts]) for k in kinds}


def run_learning(args, target: TemplateMixture, interp, detail: bool = False) -> dict:
    """Per treatment and budget, one row per seed: the denoiser error and the W1 distances.
    ``detail`` adds the horizontal part of the error for every treatment (the quotient
    treatment's error is already horizontal) and the cumulative training and evaluation
    seconds."""
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
    # the posterior mean is drawn first: other kinds leave it (and the committed runs) unchanged
    kinds = ("mean", *(k for k in ("geodiff", "af3") if k in args.treatments))
    exact = exact_minimisers(target, centred, a, b, kinds, gval)  # x1 is centred
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
            step, train_s = 0, 0.0
            for bud in budgets:
                t0 = time.perf_counter()
                while step < bud:
                    graph = make_graph(target.sample(args.batch, gen).float(), n)
                    loss, _ = model.training_loss(graph, gen)
                    opt.zero_grad()
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                    opt.step()
                    step += 1
                train_s += time.perf_counter() - t0
                t0 = time.perf_counter()
                with torch.no_grad():
                    den, _ = model.denoise(val_graph.pos, None, t.float(), val_graph)
                den = den.double()
                diff = den - exact[kind].reshape(-1, 3)
                horizontal = group.project(diff, xt.reshape(-1, 3), val_graph.batch)
                if tname == "quotient":
                    diff = horizontal
                err = float(diff.pow(2).sum(-1).view(nval, n).sum(-1).mean())
                xs, _ = model.sample(
                    make_graph(torch.zeros(args.num_samples * n, 3), n),
                    SamplerConfig(steps=args.steps, method="ode"),
                    generator=torch.Generator().manual_seed(500 + seed),
                )
                w1 = distances(invariants(xs.double(), n, axis), ref)
                row = {"denoiser_error": err, **w1}
                if detail:
                    herr = float(horizontal.pow(2).sum(-1).view(nval, n).sum(-1).mean())
                    row = {"denoiser_error": err, "horizontal_error": herr, **w1,
                           "train_seconds": train_s,
                           "eval_seconds": time.perf_counter() - t0}
                results[tname][str(bud)].append(row)
                print(
                    f"  {tname:12s} seed {seed} steps {bud:5d}: err {err:.4f} W1 {w1}", flush=True
                )
    return results


def run_points(args, interp) -> dict:
    """The learning part at each N of ``--points``, for each network: {N: {network: results}}
    (templates of N points drawn as for N = 6, the same seed for every N)."""
    out: dict[str, dict] = {}
    for n in args.point_counts:
        target = TARGETS[args.group].random(args.templates, n, args.shape_noise, seed=0)
        out[str(n)] = {}
        for net in args.networks:
            print(f"N = {n}, {net}:", flush=True)
            run_args = argparse.Namespace(**{**vars(args), "points": n, "network": net})
            out[str(n)][net] = run_learning(run_args, target, interp, detail=True)
    return out


def theory_fraction(group: GroupAction, n: int) -> float:
    """The vertical share of the coordinates the loss sees: rotation directions over the
    dimension of the (centred, with translations) space, 3 / (3N - 3) for SE3: the order of the
    gradient variance the quotient loss removes (issue 18)."""
    shift = 3 * group.has_translations
    return (group.dim - shift) / (3 * n - shift)


# the metrics compared as quotient / conventional at the last budget
RATIO_KEYS = ("horizontal_error", "rg", "logdetK", "pair")


def points_summary(learning: dict, group: GroupAction) -> tuple[dict, dict]:
    """From {N: {network: {treatment: {budget: rows}}}}: the curves (per N, network and
    treatment: the steps and each metric's mean and std over seeds) and the ratios (per N and
    network, at the last budget: quotient / conventional seed by seed, the same seed being the
    same initial network and data stream, with their mean and std, next to the theory's
    fraction)."""
    curves: dict[str, dict] = {}
    ratios: dict[str, dict] = {}
    for n, by_net in learning.items():
        curves[n], ratios[n] = {}, {}
        for net, by_treatment in by_net.items():
            curves[n][net] = {}
            for tname, by_budget in by_treatment.items():
                curve: dict = {"steps": [int(b) for b in by_budget]}
                for key in next(iter(by_budget.values()))[0]:
                    stats = [mean_std(r[key] for r in rows) for rows in by_budget.values()]
                    curve[key] = {"mean": [m for m, _ in stats], "std": [sd for _, sd in stats]}
                curves[n][net][tname] = curve
            last = str(max(int(b) for b in by_treatment["quotient"]))
            quo, con = by_treatment["quotient"][last], by_treatment["conventional"][last]
            entry: dict = {"steps": int(last), "theory": theory_fraction(group, int(n))}
            for key in (k for k in RATIO_KEYS + ("axial",) if k in quo[0]):
                per_seed = [q[key] / c[key] for q, c in zip(quo, con)]
                mean, std = mean_std(per_seed)
                entry[key] = {"mean": mean, "std": std, "per_seed": per_seed}
            ratios[n][net] = entry
    return curves, ratios


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


# (key, column, digits) of the learning tables
LEARNING_COLUMNS = [("denoiser_error", "denoiser error", 4), ("rg", "W1 Rg", 3),
                    ("logdetK", "W1 log det K", 3), ("pair", "W1 pairwise", 3)]
POINTS_COLUMNS = [*LEARNING_COLUMNS[:1], ("horizontal_error", "horizontal error", 4),
                  *LEARNING_COLUMNS[1:]]


def learning_lines(learning: dict, columns, so2: bool) -> list[str]:
    """The table of {treatment: {budget: rows}}: mean ± std over seeds of each column."""
    axial_head, axial_rule = (" W1 axial z |", "---|") if so2 else ("", "")
    lines = ["| treatment | steps | " + " | ".join(c for _, c, _ in columns) + " |" + axial_head,
             "|---|---|" + "---|" * len(columns) + axial_rule]
    for tname, by_budget in learning.items():
        for bud, rows in by_budget.items():
            s = summarise(rows)
            lines.append(f"| {tname} | {bud} | " + " | ".join(fmt(*s[k], d) for k, _, d in columns)
                         + " |" + axial_cells(s))
    return lines


def learning_setup(args, network: str) -> str:
    return (f"{network} hidden {args.hidden} x 4 layers, batch {args.batch}, Adam lr {args.lr}, "
            f"{args.seeds} seeds")


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
            f"Learning: {learning_setup(args, args.network)}; denoiser error = mean over "
            "validation (x_t, t) of |D - D*|^2 against the exact minimiser D* of the treatment's "
            "own loss (horizontal part for quotient); samples: ODE.",
            "",
            *learning_lines(learning, LEARNING_COLUMNS, so2),
        ]
    return "\n".join(lines) + "\n"


def points_markdown(learning: dict, ratios: dict, args) -> str:
    """The several-N study: the ratio table at the last budget, then each N's curves."""
    theory = {"SE3": "3/(3N-3)", "SO3": "3/(3N)", "SO2": "1/(3N)"}[args.group]
    ratio_cols = [k for k in (*RATIO_KEYS, "axial") if k in next(iter(
        next(iter(ratios.values())).values()))]
    names = {"horizontal_error": "horizontal error", "rg": "W1 Rg", "logdetK": "W1 log det K",
             "pair": "W1 pairwise", "axial": "W1 axial z"}
    last = max(args.budgets)
    lines = [
        f"Learning at N = {', '.join(map(str, args.point_counts))} points (group {args.group}): "
        f"{args.templates} templates of N points, shape noise {args.shape_noise}; "
        f"{learning_setup(args, ' and '.join(args.networks))}; ODE samples: {args.num_samples} "
        f"x {args.steps} Euler steps. Denoiser error = mean over 256 validation (x_t, t) of "
        "|D - D*|^2 against the exact minimiser D* of the treatment's own loss (horizontal part "
        "for quotient); horizontal error = its horizontal part |P(D - D*)|^2 for every treatment "
        "(D* is horizontal: the same quantity for both losses).",
        "",
        f"Quotient / conventional at {last} steps, seed by seed (the same seed: the same initial "
        "network and data stream), mean ± std over seeds; below 1: the quotient loss is ahead. "
        f"{theory}: the vertical (rotation) share of the coordinates, the order of the gradient "
        "variance the quotient loss removes.",
        "",
        f"| N | network | {theory} | " + " | ".join(names[k] for k in ratio_cols) + " |",
        "|---|---|---|" + "---|" * len(ratio_cols),
    ]
    for n, by_net in ratios.items():
        for net, r in by_net.items():
            lines.append(f"| {n} | {net} | {r['theory']:.3f} | "
                         + " | ".join(fmt(r[k]["mean"], r[k]["std"], 2) for k in ratio_cols) + " |")
    for n, by_net in learning.items():
        for net, by_treatment in by_net.items():
            lines += ["", f"N = {n}, {net}:", "",
                      *learning_lines(by_treatment, POINTS_COLUMNS, args.group == "SO2")]
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


def plot_points(curves: dict, ratios: dict, args, path: Path) -> None:
    """Per network (rows): the last budget's quotient / conventional ratios of the horizontal
    error and of W1 Rg against N (error bars: std over seeds), and the curves of both (per
    point, mean ± std over seeds) against the training steps, one colour per N."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ns = [int(n) for n in ratios]
    colours = plt.cm.viridis(np.linspace(0, 0.85, len(ns)))
    fig, axes = plt.subplots(len(args.networks), 3, figsize=(15, 4.2 * len(args.networks)),
                             squeeze=False)
    for row, net in zip(axes, args.networks):
        ax = row[0]
        for key, label, shift in (("horizontal_error", "horizontal error", -0.03),
                                  ("rg", "W1 Rg", 0.03)):
            m = [ratios[str(n)][net][key]["mean"] for n in ns]
            e = [ratios[str(n)][net][key]["std"] for n in ns]
            ax.errorbar(np.array(ns) * (1 + shift), m, yerr=e, marker="o", capsize=3, label=label)
        ax.axhline(1.0, color="grey", lw=0.8)
        grid = np.linspace(min(ns), max(ns), 100)
        theory = [1 - theory_fraction(get_group(args.group), n) for n in grid]
        ax.plot(grid, theory, ":", color="black", label="1 - theory fraction")
        ax.set_xscale("log", base=2)
        ax.set_xticks(ns, [str(n) for n in ns])
        ax.set_yscale("log")
        ax.set_xlabel("points N")
        ax.set_ylabel(f"quotient / conventional at {max(args.budgets)} steps")
        ax.set_title(f"{net}: ratio at the last budget")
        ax.legend(fontsize=8)
        for ax, key, title in ((row[1], "horizontal_error", "horizontal error / N"),
                               (row[2], "rg", "W1 Rg")):
            for n, colour in zip(ns, colours):
                scale = n if key == "horizontal_error" else 1
                for tname, style in (("conventional", "--"), ("quotient", "-")):
                    c = curves[str(n)][net][tname]
                    m, e = np.array(c[key]["mean"]) / scale, np.array(c[key]["std"]) / scale
                    ax.plot(c["steps"], m, style, color=colour, marker=".",
                            label=f"N={n} {tname}")
                    ax.fill_between(c["steps"], m - e, m + e, color=colour, alpha=0.12)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("training steps")
            ax.set_title(f"{net}: {title} (dashed: conventional)")
        row[2].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small run (a few minutes on 2 cores)")
    p.add_argument(
        "--part",
        choices=["exact", "learning", "both"],
        help="which question to run (each writes its own result files); default both, "
        "learning (the only one) with --points",
    )
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--treatments", nargs="+", help="treatments of the learning part",
                   default=["conventional", "geodiff", "af3", "quotient"])
    p.add_argument("--seeds", type=int, help="override the number of seeds")
    p.add_argument("--network", nargs="+", dest="networks", default=["egnn"],
                   choices=["egnn", "transformer"],
                   help="network of the learning part (transformer: rotation augmentation); "
                   "several only with --points")
    p.add_argument("--group", choices=sorted(TARGETS), default="SE3",
                   help="group of the treatments; SO2 (about z): a target rotated about z only")
    p.add_argument("--points", nargs="+", type=int, dest="point_counts", metavar="N",
                   help="the learning part at each number of points N, with the study's sizes "
                   "(module docstring); default: the single N = 6 of the committed runs")
    p.add_argument("--budgets", nargs="+", type=int, help="override the training budgets (steps)")
    p.add_argument("--num-samples", type=int, help="override the number of samples per run")
    p.add_argument("--name", help="results file stem before _exact / _learning (default "
                   "toy_recovery[_quick][_NETWORK][_GROUP][_pointsN-N...])")
    p.add_argument("--out", default=str(RESULTS), help="results folder (benchmarks/results)")
    args = p.parse_args(argv)
    study = args.point_counts is not None
    args.part = args.part or ("learning" if study else "both")
    if study and args.part != "learning":
        p.error("--points runs the learning part only (--part learning)")
    if study and not {"conventional", "quotient"} <= set(args.treatments):
        p.error("--points compares quotient with conventional: --treatments needs both")
    if not study and len(args.networks) > 1:
        p.error("several networks only with --points")
    if study and min(args.point_counts) < 3:
        p.error("--points: at least 3 points (rotations act freely on non-collinear clouds)")
    args.network = args.networks[0]
    torch.set_num_threads(args.threads)
    q = args.quick
    args.templates, args.shape_noise = 3, 0.15
    args.points = args.point_counts if study else 6
    args.seeds = args.seeds or (2 if q else 3)
    args.rotations = 128
    args.noise_scale = 1.0
    args.lr = 2e-3
    if study:  # sized for N = 32 on one thread (module docstring)
        args.steps, args.hidden, args.batch = (20 if q else 30), 32, 32
        args.num_samples = args.num_samples or (100 if q else 300)
        args.budgets = args.budgets or ([20, 60] if q else [100, 300, 1000, 2000])
    else:
        args.num_samples = args.num_samples or (300 if q else 500)
        args.steps = 30 if q else 40
        args.budgets = args.budgets or ([100, 300] if q else [200, 600, 2000])
        args.hidden, args.batch = (32 if q else 64), 64
    args.budgets = sorted(args.budgets)
    interp = LinearInterpolant()
    target = None if study else TARGETS[args.group].random(args.templates, args.points,
                                                           args.shape_noise, seed=0)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tag = "toy_recovery_quick" if q else "toy_recovery"
    if args.networks != ["egnn"]:
        tag += "_" + "-".join(args.networks)
    if args.group != "SE3":
        tag += f"_{args.group}"
    if study:
        tag += "_points" + "-".join(map(str, args.point_counts))
    tag = args.name or tag
    config = {k: v for k, v in vars(args).items() if k != "out"}
    for part in ("exact", "learning"):
        if args.part not in (part, "both"):
            continue
        t0 = time.perf_counter()
        print(f"{part}:", flush=True)
        extra = {}
        if study:
            rows = run_points(args, interp)
            curves, ratios = points_summary(rows, get_group(args.group))
            table = points_markdown(rows, ratios, args)
            plot_points(curves, ratios, args, out / f"{tag}_{part}.png")
            extra = {"curves": curves, "ratios": ratios}
        elif part == "exact":
            rows = run_exact(args, target, interp)
            table = markdown(rows, None, args)
            plot(rows, out / f"{tag}_exact.png")
        else:
            rows = run_learning(args, target, interp)
            table = markdown(None, rows, args)
        payload = {
            "command": command(__file__, argv),
            "config": config,
            part: rows,
            **extra,
            "seconds": time.perf_counter() - t0,
        }
        write_results(out, f"{tag}_{part}", payload, table)
        print(table)


if __name__ == "__main__":
    main()
