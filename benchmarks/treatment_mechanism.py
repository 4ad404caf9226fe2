r"""Why (and how much) the quotient loss helps: its mechanism, measured at fixed parameters.

Issue 18, item 2. No training: for a network at fixed parameters (freshly initialised with a
fixed seed, and the bundled models), at each t of a grid, with the same draws (x1, eps) for both
losses (paired), this measures

1. the gradient variance of each loss: the total variance (trace of the covariance) of the
   per-sample parameter gradient, tr Cov[g] = E|g - E g|^2, estimated from M draws (one molecule
   each by default; with ``--batch`` b molecules per draw, b tr Cov of the minibatch gradient),
   for the conventional loss w |D - x1|^2 and the quotient loss w |P_{x_t}(D - x1)|^2. The
   paired difference gives ``reduction`` = 1 - tr Cov[g_q] / tr Cov[g_c], with a jackknife
   standard error over 16 blocks of draws; ``vertical share`` = tr Cov[g_c - g_q] / tr Cov[g_c]
   is the variance of the vertical term's own gradient (the reduction also holds its
   covariance with the horizontal one);
2. the size of vertical components (squared-norm fractions in the centred space, E|V u|^2 /
   E|u|^2 with V = I - P_{x_t} the projection onto the rotation orbit's tangent space at x_t):
   of the conventional regression target of the network's output F (D = c_skip x_t + c_out F,
   target (x1 - c_skip x_t) / c_out; c_skip = c_out = 1 without preconditioning: x1 - x_t; its
   vertical part is V x1 / c_out since V x_t = 0), of the conventional residual D - x1 (the
   share of the conventional loss the quotient loss drops, 1 - L_q / L_c), and of the network's
   output F itself; on the toy also of the residual at the optimum, E[x1 | x_t] - x1 (exact
   posterior of the template mixture), which is the irreducible part;
3. the theory's prediction beside them (DESIGN 2.8): for an SO(3)-invariant p_t the posterior
   mean is horizontal, so at the optimum the vertical part of the residual is pure noise; if
   that noise is spread evenly over the 3N - 3 centred degrees of freedom, the vertical 3 of
   them carry 3 / (3N - 3) of it, and the quotient loss lowers the gradient variance by a
   fraction of that order (exactly that if the gradient map treats all directions alike).
   Two things the estimate leaves out, which these columns separate: the quotient loss drops
   J^T V r from the gradient (J the Jacobian of the output in the parameters), so a network
   whose output is horizontal for every parameter value (V J = 0) gets the same gradient from
   both losses however large V r is; and at the optimum the posterior pins the shape down more
   tightly than the orientation, so the vertical share of the irreducible residual (the toy's
   'optimum' column) need not be 3 / (3N - 3).

Cases: the toy (rotated noisy templates, tasks/toy.py's target: 3 templates, shape noise 0.15)
at N = 4, 8, 16, 32 points, float64; QM9 conformers (N ~ 18 with hydrogens, float32; the
conformer task's graphs without the GEOM test exclusion, which only matters for training);
protein backbones (C-alpha chains of 50-128 residues, float32; the full run only). Networks:
the EGNN (E(3)-equivariant) and the transformer trained with rotation augmentation (its
training draws of x1 are randomly rotated, as in training), freshly initialised (hidden 64,
4 layers, seed 0), and the bundled models (conformers_qm9.pt: a stereo EGNN with the
chirality push, SO(3)- but not O(3)-equivariant, trained with the quotient loss; backbones.pt:
a transformer with augmentation, quotient loss, a short run). Fresh models on QM9 and
backbones see the task's plain graphs (no stereo inputs); the bundled ones their own task
options. The loss weight is each
model's own (the default 'velocity' weight here); at fixed t it scales both losses alike and
cancels in every ratio.

    OMP_NUM_THREADS=1 python benchmarks/treatment_mechanism.py --quick   # < 1 minute
    OMP_NUM_THREADS=1 python benchmarks/treatment_mechanism.py           # about 10 minutes

Results: benchmarks/results/treatment_mechanism{_quick}.{json,md}.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from _results import RESULTS, command, machine, markdown_table, utc_time, write_results

from quotient_diffusion.data import Graph, collate
from quotient_diffusion.diffusion import (
    Conventional,
    DiffusionModel,
    LinearInterpolant,
    Quotient,
    prior_sample,
)
from quotient_diffusion.diffusion.template_posterior import TemplateMixture
from quotient_diffusion.groups import GroupAction

BLOCKS = 16  # jackknife blocks of the gradient-variance estimates


# ---------------------------------------------------------------------- geometry
def vertical_energy(u: torch.Tensor, x: torch.Tensor, batch: torch.Tensor,
                    group: GroupAction) -> tuple[float, float]:
    """(|V u|^2, |u|^2) summed over the batch, for ``u`` taken in the group's space without
    translations (centred for SE(3)) and V = I - P_x the orbit's tangent (rotation) part."""
    uc = group.remove_translations(u, batch)
    vert = uc - group.project(uc, x, batch)
    return float((vert * vert).sum()), float((uc * uc).sum())


def theory_fraction(sizes: Sequence[int], group: GroupAction) -> float:
    """Mean over molecules of dim(rotations) / dim(space): 3 / (3N - 3) for SE(3)."""
    k = group.dim - (3 if group.has_translations else 0)
    fixed = 3 if group.has_translations else 0
    return float(np.mean([k / (3 * n - fixed) for n in sizes]))


# ---------------------------------------------------------------------- gradient statistics
class BlockMoments:
    """Running sums for tr Cov of vectors g_k in blocks: per block, sum_k g_k and sum_k |g_k|^2;
    enough for the estimate and its leave-one-block-out (jackknife) versions."""

    def __init__(self, blocks: int, dim: int):
        self.sums = torch.zeros(blocks, dim, dtype=torch.float64)
        self.squares = torch.zeros(blocks, dtype=torch.float64)
        self.counts = torch.zeros(blocks, dtype=torch.float64)

    def add(self, block: int, g: torch.Tensor) -> None:
        g = g.double()
        self.sums[block] += g
        self.squares[block] += g.dot(g)
        self.counts[block] += 1

    def trace_covs(self) -> tuple[float, np.ndarray]:
        """The unbiased tr Cov = (sum_k |g_k|^2 - |sum_k g_k|^2 / M) / (M - 1) of all draws,
        and of all draws but those of block b, for each b (from the Gram matrix of the block
        sums)."""
        gram = (self.sums @ self.sums.T).numpy()
        sq, n = self.squares.numpy(), self.counts.numpy()
        keep = np.vstack([np.ones(len(n)), 1 - np.eye(len(n))])  # all, then leave one out
        m = keep @ n
        total = np.einsum("ib,bc,ic->i", keep, gram, keep)
        cov = (keep @ sq - total / m) / (m - 1)
        return float(cov[0]), cov[1:]


def variance_summary(conv: BlockMoments, quot: BlockMoments, vert: BlockMoments,
                     scale: float) -> dict:
    """tr Cov of each gradient (times ``scale``: the minibatch size, per-sample units), the
    reduction 1 - q / c and the vertical share v / c, with jackknife standard errors over the
    blocks (v: the gradient of the vertical term, g_c - g_q)."""
    (c, c_loo), (q, q_loo), (v, v_loo) = (m.trace_covs() for m in (conv, quot, vert))
    nb = len(c_loo)

    def jackknife(values: np.ndarray) -> float:
        return float(np.sqrt((nb - 1) / nb * ((values - values.mean()) ** 2).sum()))

    return {"trcov_conventional": c * scale, "trcov_quotient": q * scale,
            "trcov_vertical": v * scale, "reduction": 1 - q / c,
            "reduction_se": jackknife(1 - q_loo / c_loo), "vertical_share": v / c,
            "vertical_share_se": jackknife(v_loo / c_loo)}


# ---------------------------------------------------------------------- one case
@dataclass
class Case:
    """A model at fixed parameters and a source of molecules: ``draw(generator, b)`` returns b
    graphs (positions in Angstrom). ``target`` (toy only) gives the exact posterior."""

    dataset: str
    network: str
    params: str  # 'init' or the bundled file's name
    model: DiffusionModel
    draw: Callable[[torch.Generator, int], list[Graph]]
    dtype: torch.dtype
    target: TemplateMixture | None = None


def flat_gradient(loss: torch.Tensor, params: list[torch.Tensor], retain: bool) -> torch.Tensor:
    grads = torch.autograd.grad(loss, params, retain_graph=retain, allow_unused=True)
    return torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1)
                      for p, g in zip(params, grads)])


def noisy_draw(case: Case, t: float, b: int, gen: torch.Generator):
    """One training-like draw at time t: (graph, x1, x_t) in model units; the transformer's
    x1 is randomly rotated as in its training (``augment_rotations``)."""
    model, group = case.model, case.model.group
    graph = collate(case.draw(gen, b)).to(dtype=case.dtype)
    batch = graph.batch
    x1 = group.remove_translations(graph.pos, batch) / model.coord_scale
    if model.augment_rotations:
        x1 = group.augment(x1, batch, gen)
    eps, _ = prior_sample(batch, 0, case.dtype, gen, group)
    tn = torch.full((len(batch), 1), t, dtype=case.dtype)
    return graph, x1, model.interpolant.noisy(x1, eps, tn)


def measure_case(case: Case, times: Sequence[float], draws: int, batch_size: int = 1,
                 seed: int = 0, optimum_samples: int = 0) -> list[dict]:
    """The statistics of the module docstring for ``case`` at each t of ``times``: ``draws``
    paired gradient draws of ``batch_size`` molecules each, and (toy) ``optimum_samples``
    clouds for the residual at the exact posterior mean."""
    model, group = case.model, case.model.group
    conventional, quotient = Conventional(group), Quotient(group)
    params = [p for p in model.parameters() if p.requires_grad]
    dim = sum(p.numel() for p in params)
    rows = []
    for t in times:
        gen = torch.Generator().manual_seed(seed)
        blocks = min(BLOCKS, draws)
        moments = [BlockMoments(blocks, dim) for _ in range(3)]
        energy = np.zeros((3, 2))  # (target, residual, output) x (|V u|^2, |u|^2)
        sizes: list[int] = []
        for k in range(draws):
            graph, x1, xt = noisy_draw(case, t, batch_size, gen)
            batch, nb = graph.batch, graph.num_graphs
            sizes += torch.bincount(batch).tolist()
            tt = torch.full((nb,), t, dtype=case.dtype)
            den, _ = model.denoise(xt, None, tt, graph)
            weight = model.loss_weight(tt, model.sigma_data)
            loss_c = conventional.loss(den, x1, xt, batch, weight).mean()
            loss_q = quotient.loss(den, x1, xt, batch, weight).mean()
            g_c = flat_gradient(loss_c, params, retain=True)
            g_q = flat_gradient(loss_q, params, retain=False)
            for m, g in zip(moments, (g_c, g_q, g_c - g_q)):
                m.add(k % blocks, g)
            with torch.no_grad():
                tn = tt[batch].unsqueeze(-1)
                if model.preconditioning:
                    skip, out, _ = model.scalings(tn, model.sigma_data)
                else:
                    skip, out = torch.ones_like(tn), torch.ones_like(tn)
                target = (x1 - skip * xt) / out
                output = (den.detach() - skip * xt) / out
                for i, u in enumerate((target, den.detach() - x1, output)):
                    energy[i] += vertical_energy(u, xt, batch, group)
        row = {"t": t, "draws": draws, "batch": batch_size, "mean_atoms": float(np.mean(sizes)),
               "theory": theory_fraction(sizes, group),
               **variance_summary(*moments, scale=batch_size),
               "vertical_target": energy[0, 0] / energy[0, 1],
               "vertical_residual": energy[1, 0] / energy[1, 1],
               "vertical_output": energy[2, 0] / max(energy[2, 1], 1e-300)}
        if case.target is not None and optimum_samples:
            row.update(optimum_residual(case, t, optimum_samples, seed))
        rows.append(row)
    return rows


@torch.no_grad()
def optimum_residual(case: Case, t: float, num: int, seed: int) -> dict:
    """Toy: the vertical fraction of the residual at the optimum, E[x1 | x_t] - x1 (exact
    posterior mean by importance sampling), and that of the posterior mean itself (zero but
    for the sampling error: the mean is horizontal)."""
    group, interp, target = case.model.group, case.model.interpolant, case.target
    gen = torch.Generator().manual_seed(10_000 + seed)
    n = target.num_points
    x1 = target.sample(num, gen).view(num, n, 3)
    eps = torch.randn(x1.shape, dtype=x1.dtype, generator=gen)
    eps = eps - eps.mean(1, keepdim=True)
    tt = torch.full((num,), t, dtype=x1.dtype)
    a, b = interp.coefficients(tt)
    xt = a[:, None, None] * eps + b[:, None, None] * x1
    mean = target.denoisers(xt, a, b, num_rotations=128, kinds=("mean",), generator=gen)["mean"]
    batch = torch.arange(num).repeat_interleave(n)
    flat = xt.reshape(-1, 3)
    res = vertical_energy((mean - x1).reshape(-1, 3), flat, batch, group)
    mv = vertical_energy(mean.reshape(-1, 3), flat, batch, group)
    return {"vertical_optimum_residual": res[0] / res[1], "vertical_posterior_mean": mv[0] / mv[1]}


# ---------------------------------------------------------------------- the cases
def toy_case(points: int, network: str, hidden: int, seed: int = 0) -> Case:
    """tasks/toy.py's target (3 templates, shape noise 0.15) at ``points`` points and a fresh
    network as benchmarks/toy_recovery.py builds it (float64)."""
    from quotient_diffusion.nn import get_network

    target = TemplateMixture.random(3, points, 0.15, seed=0)
    torch.manual_seed(seed)
    net = get_network(network, in_features=1, out_features=0, hidden=hidden, layers=4).double()
    model = DiffusionModel(net, Conventional(), LinearInterpolant(),
                           augment_rotations=network == "transformer")

    def draw(gen, b):
        x = target.sample(b, gen).view(b, points, 3)
        return [Graph(pos=p, node_attr=torch.ones(points, 1, dtype=torch.float64)) for p in x]

    return Case(f"toy N={points}", network, "init", model, draw, torch.float64, target)


def task_graphs(name: str, options: dict, limit: int):
    """The training graphs of task ``name`` (``limit`` of them) and the task."""
    from quotient_diffusion.tasks import get_task
    from quotient_diffusion.training.config import TrainConfig

    config = TrainConfig.from_dict({"task": {"name": name, "limit": limit, "options": options}})
    task = get_task(config)
    return task.datasets()[0], task


def fresh_task_model(name: str, options: dict, network: str, seed: int = 0) -> DiffusionModel:
    """A freshly initialised model of task ``name`` (hidden 64, 4 layers; the transformer with
    rotation augmentation)."""
    from quotient_diffusion.tasks import get_task
    from quotient_diffusion.training.config import TrainConfig

    config = TrainConfig.from_dict({
        "task": {"name": name, "options": options},
        "model": {"network": network, "augment_rotations": network == "transformer"},
    })
    torch.manual_seed(seed)
    return get_task(config).build_model()


def dataset_draw(graphs) -> Callable[[torch.Generator, int], list[Graph]]:
    def draw(gen, b):
        idx = torch.randint(len(graphs), (b,), generator=gen).tolist()
        return [graphs[i] for i in idx]

    return draw


def task_cases(name: str, label: str, options: dict, limit: int, networks: Sequence[str],
               bundled: str | None) -> list[Case]:
    """Fresh models of task ``name`` for each network, and the bundled model ``bundled`` (if
    it is there) on graphs of its own task options (e.g. stereo inputs)."""
    from quotient_diffusion.tasks import bundled_checkpoint, load_trained_model

    graphs, _ = task_graphs(name, options, limit)
    cases = [Case(label, net, "init", fresh_task_model(name, options, net), dataset_draw(graphs),
                  torch.float32) for net in networks]
    path = bundled_checkpoint(bundled) if bundled else None
    if path is not None and path.exists():
        model, config = load_trained_model(path)
        own = {**config.task.options, **{k: v for k, v in options.items()
                                         if k in ("exclude_geom_test", "num_val")}}
        own_graphs = graphs if own == options else task_graphs(name, own, limit)[0]
        extras = [word for word, on in (
            ("aug", config.model.augment_rotations), ("stereo", config.task.options.get("stereo")),
            ("chirality push", config.model.network_options.get("chirality_push"))) if on]
        net = config.model.network + (f" ({', '.join(extras)})" if extras else "")
        cases.append(Case(label, net, bundled, model, dataset_draw(own_graphs), torch.float32))
    elif bundled:
        print(f"  {bundled}: not there, skipped", flush=True)
    return cases


# ---------------------------------------------------------------------- report
def fmt(x: float, digits: int = 3) -> str:
    return f"{x:.{digits}f}" if abs(x) >= 10 ** -digits or x == 0 else f"{x:.1e}"


def summary_rows(results: list[dict]) -> list[dict]:
    """Per case: the reduction averaged over the t grid (standard error from the per-t
    errors, independent draws), beside the theory and the mean vertical fractions."""
    out = []
    for r in results:
        rows = r["rows"]
        k = len(rows)
        red = float(np.mean([x["reduction"] for x in rows]))
        se = float(np.sqrt(sum(x["reduction_se"] ** 2 for x in rows)) / k)
        item = {"dataset": r["dataset"], "network": r["network"], "params": r["params"],
                "mean_atoms": float(np.mean([x["mean_atoms"] for x in rows])),
                "theory": float(np.mean([x["theory"] for x in rows])),
                "reduction": red, "reduction_se": se,
                **{key: float(np.mean([x[key] for x in rows]))
                   for key in ("vertical_share", "vertical_target", "vertical_residual",
                               "vertical_output")}}
        if "vertical_optimum_residual" in rows[0]:
            item["vertical_optimum_residual"] = float(
                np.mean([x["vertical_optimum_residual"] for x in rows]))
        out.append(item)
    return out


def network_label(r: dict) -> str:
    aug = " (aug)" if r["network"] == "transformer" else ""
    return f"{r['network']}{aug}"


def markdown(results: list[dict], settings: dict) -> str:
    lines = [
        "# Mechanism of the quotient loss at fixed parameters (issue 18, item 2)",
        "",
        f"Command: `{settings['command']}`; {settings['when']}, {settings['machine']}, "
        f"{settings['threads']} thread(s), {settings['seconds']:.0f} s "
        f"({settings['cpu_seconds']:.0f} s CPU). No training: fresh "
        f"networks (seed 0, hidden {settings['hidden']}, 4 layers) and the bundled models. Per "
        f"t, {settings['draws']} (toy) or {settings['task_draws']} (QM9, backbones) paired draws "
        f"of {settings['batch']} molecule(s) each (the same x1, eps for both losses). "
        "reduction = 1 - trCov[g_quotient] / trCov[g_conventional] of the "
        "per-sample parameter gradient (jackknife standard error); vertical share = "
        "trCov[g_conv - g_quot] / trCov[g_conv]; theory = 3 / (3N - 3). Vertical fractions are "
        "squared-norm fractions in the centred space at x_t: of the conventional target of F "
        "(x1 - x_t without preconditioning), of the residual D - x1 (= 1 - L_q / L_c), of the "
        "network output F, and (toy) of the residual at the exact optimum E[x1|x_t] - x1.",
        "",
        "## Averaged over the t grid",
        "",
    ]
    summary = summary_rows(results)
    opt = any("vertical_optimum_residual" in s for s in summary)
    header = ["data", "N", "network", "params", "theory 3/(3N-3)", "reduction", "vertical share",
              "vert. target", "vert. residual", "vert. output"] + (["vert. optimum"] if opt else [])
    body = []
    for s in summary:
        cells = [s["dataset"], f"{s['mean_atoms']:.1f}", network_label(s), s["params"],
                 fmt(s["theory"]), f"{s['reduction']:.3f} ± {s['reduction_se']:.3f}",
                 fmt(s["vertical_share"]), fmt(s["vertical_target"]),
                 fmt(s["vertical_residual"]), fmt(s["vertical_output"])]
        if opt:
            cells.append(fmt(s["vertical_optimum_residual"]) if "vertical_optimum_residual" in s
                         else "")
        body.append(cells)
    lines += markdown_table(header, body, "lrll" + "r" * (len(header) - 4))
    lines += ["", "## Per t", ""]
    header = ["data", "network", "params", "t", "trCov conv.", "trCov quot.", "reduction",
              "theory", "vert. target", "vert. residual", "vert. output"] + (
                  ["vert. optimum", "vert. post. mean"] if opt else [])
    body = []
    for r in results:
        for x in r["rows"]:
            cells = [r["dataset"], network_label(r), r["params"], f"{x['t']:.2f}",
                     f"{x['trcov_conventional']:.3g}", f"{x['trcov_quotient']:.3g}",
                     f"{x['reduction']:.3f} ± {x['reduction_se']:.3f}", fmt(x["theory"]),
                     fmt(x["vertical_target"]), fmt(x["vertical_residual"]),
                     fmt(x["vertical_output"])]
            if opt:
                cells += ([fmt(x["vertical_optimum_residual"]),
                           fmt(x["vertical_posterior_mean"])]
                          if "vertical_optimum_residual" in x else ["", ""])
            body.append(cells)
    lines += markdown_table(header, body, "llll" + "r" * (len(header) - 4))
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------- main
def run(args) -> tuple[dict, str]:
    t0, cpu0 = time.perf_counter(), time.process_time()
    cases: list[Case] = []
    for n in args.points:
        cases += [toy_case(n, net, args.hidden) for net in args.networks]
    if "qm9" in args.data:
        cases += task_cases("conformers", "QM9 conformers",
                            {"exclude_geom_test": False, "num_val": 8}, args.limit,
                            args.networks, None if args.no_bundled else "conformers_qm9.pt")
    if "backbones" in args.data:
        cases += task_cases("backbones", "backbones", {"max_length": 128}, args.limit,
                            args.networks, None if args.no_bundled else "backbones.pt")
    results = []
    for case in cases:
        start = time.perf_counter()
        draws = args.draws if case.target is not None else args.task_draws
        rows = measure_case(case, args.times, draws, args.batch, args.seed,
                            args.optimum_samples if case.target is not None else 0)
        results.append({"dataset": case.dataset, "network": case.network,
                        "params": case.params, "parameters": sum(
                            p.numel() for p in case.model.parameters()),
                        "seconds": time.perf_counter() - start, "rows": rows})
        red = ", ".join(f"{x['reduction']:.3f}" for x in rows)
        print(f"  {case.dataset:16s} {case.network:18s} {case.params:18s} reduction per t "
              f"[{red}] theory {rows[0]['theory']:.3f} ({time.perf_counter() - start:.1f} s)",
              flush=True)
    settings = {"command": command(__file__), "when": utc_time(), "machine": machine(),
                "threads": torch.get_num_threads(), "seconds": time.perf_counter() - t0,
                "cpu_seconds": time.process_time() - cpu0,
                "draws": args.draws, "task_draws": args.task_draws, "batch": args.batch,
                "times": list(args.times), "points": list(args.points),
                "networks": list(args.networks), "data": list(args.data),
                "hidden": args.hidden, "seed": args.seed, "limit": args.limit,
                "optimum_samples": args.optimum_samples, "quick": args.quick}
    payload = {"question": "Where does the quotient loss act? Gradient variance of the "
                           "conventional and the quotient loss at equal parameters, and the "
                           "size of vertical components, against 3/(3N-3)",
               "settings": settings, "results": results, "summary": summary_rows(results)}
    return payload, markdown(results, settings)


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small run (under a minute)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--draws", type=int, help="gradient draws per t on the toy")
    p.add_argument("--task-draws", type=int, help="gradient draws per t on QM9 / backbones")
    p.add_argument("--batch", type=int, default=1, help="molecules per draw (1: per sample)")
    p.add_argument("--times", type=float, nargs="+", help="the t grid (0 prior, 1 data)")
    p.add_argument("--points", type=int, nargs="+", help="toy sizes N")
    p.add_argument("--networks", nargs="+", choices=["egnn", "transformer"],
                   default=["egnn", "transformer"])
    p.add_argument("--data", nargs="*", choices=["qm9", "backbones"],
                   help="real data sets besides the toy (default: qm9, and backbones unless "
                        "--quick)")
    p.add_argument("--no-bundled", action="store_true", help="skip the bundled models")
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--limit", type=int, default=512, help="training molecules/chains drawn from")
    p.add_argument("--optimum-samples", type=int, help="toy clouds for the optimum residual")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(RESULTS), help="results folder")
    args = p.parse_args(argv)
    q = args.quick
    args.draws = args.draws or (32 if q else 160)
    args.task_draws = args.task_draws or (24 if q else 128)
    args.times = args.times or ([0.3, 0.7] if q else [0.1, 0.3, 0.5, 0.7, 0.9])
    args.points = args.points or [4, 8, 16, 32]
    args.data = ["qm9"] if q and args.data is None else (
        ["qm9", "backbones"] if args.data is None else args.data)
    args.optimum_samples = (32 if q else 256) if args.optimum_samples is None \
        else args.optimum_samples
    return args


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse(argv)
    torch.set_num_threads(args.threads)
    payload, table = run(args)
    stem = "treatment_mechanism_quick" if args.quick else "treatment_mechanism"
    write_results(args.out, stem, payload, table)
    print(table)
    return payload


if __name__ == "__main__":
    main()

