r"""Does the bundled C-alpha backbone model (or ``--checkpoint PATH``) produce chains with
protein geometry, side by side with natural test chains?

Issue 17 item 4. The model is ``qdiff sample backbones``'s default
(quotient_diffusion/checkpoints/backbones.pt); ``--checkpoint`` measures any backbone
checkpoint, a training run's resumable last.pt included (loaded with
``quotient_diffusion.tasks.load``, weights_only=True; EMA weights).

Protocol
--------
* natural reference: the DB5.5 test chains of the family split as the data module gives them
  (``quotient_diffusion.data.proteins.load_protein_splits`` with the checkpoint's
  ``split_seed`` and ``cache_dir``: 50-256 residues, no chain breaks, de-duplicated; 51 chains),
  whatever length range the checkpoint was trained on;
* samples at one length: ``--per-length`` chains (default 8) of ``--length`` residues (default
  100, the issue's done-when); their natural counterpart is the ``--per-length`` test chains of
  the lengths closest to ``--length`` (89-116 residues for the defaults);
* samples over a spread of lengths: ``--lengths`` test chains (default 12) drawn at random
  (``--seed``) from the reference, one chain sampled at each of their lengths; the natural
  "all lengths" row is the whole reference;
* sampler: the command's default (Euler ODE, 100 steps, uniform grid; for ``--method sde``
  Euler-Maruyama, 100 steps) unless ``--sample-steps`` / ``--method`` say otherwise; the
  at-length chains are sampled with seed ``--seed``, the spread with ``--seed`` + 1, in
  batches of 16 chains, ``--threads`` torch threads (default 1);
* ``--quick`` (a smoke test of the script, not a measurement): 2 chains at ``--length``, the
  reference cut to the 2 test chains closest to ``--length`` (both of them drawn), 20 sampler
  steps.

Metrics (quotient_diffusion.metrics.proteins; traces in Angstrom)
----------------------------------------------------------------
* consecutive CA-CA distances d_i = |x_{i+1} - x_i|: the fractions with |d_i - 3.80| < 0.1 A
  and < 0.2 A, their mean and standard deviation (all bonds of a row pooled);
* clashes (``clash_statistics``' definition): pairs with |i - j| >= 2 closer than
  ``CLASH_DISTANCE`` = 3.0 A; reported as the fraction of all such pairs (pooled over chains),
  per residue, and the fraction of chains with at least one;
* radius of gyration R_g against the power law R_g = r0 L^nu fitted (log-log least squares) on
  the natural training chains (under ``--quick`` too): mean and sd of R_g / (r0 L^nu), and a
  plot of R_g against L. Not on the test chains: the 51 of them give r0 = 6.0 A, nu = 0.19, a
  law flattened by a few short extended chains (R_g 20-24 A at 55-110 residues); the many
  more training chains give r0 = 1.07 A, nu = 0.55 (both fits are in the JSON);
* helix and strand fractions of residues by P-SEA (biotite ``annotate_sse`` on C-alphas);
* virtual bond angles theta_i (x_{i-1}, x_i, x_{i+1}) and dihedrals phi_i (x_{i-1} .. x_{i+2}),
  degrees: 1-Wasserstein distance of a row's pooled angles to the pooled natural reference's
  (on the line for theta, on the circle for phi). Natural rows carry their floors instead: the
  all-lengths row the W1 between two random halves of the reference (chains split in two,
  seeded; the mean over ``FLOOR_SPLITS`` = 10 splits, the sd in the JSON), the at-length row
  the W1 of its chains to the other reference chains (a floor of the same sample size);
* diversity: the mean pairwise TM-score (TM-align, each pair the mean of its two
  normalisations) of the samples, and of as many natural chains (the at-length natural
  chains; the drawn natural chains for the spread). Lower is more diverse; 0.5 = same fold.

The figure has R_g against L, the theta and phi histograms (natural and samples), and C-alpha
traces of drawn natural chains above the samples of the same length, projected on their first
two principal axes and colored by residue index.

Writes ``<out>/<name>.json``, ``.md`` and ``.png`` (default benchmarks/results/
backbone_geometry.*, ``--quick``: backbone_geometry_quick.*). The JSON records the
checkpoint (path, SHA-256, training step), sampler, seeds, wall time and the load average at
the start (timings next to other work are slower). Bad input (a missing or unloadable
checkpoint, one of another task, an unwritable output folder, missing data, bad numbers): one
line on stderr and exit status 2, before any sampling.

    OMP_NUM_THREADS=1 python benchmarks/backbone_geometry.py --quick   # seconds
    OMP_NUM_THREADS=1 python benchmarks/backbone_geometry.py
    OMP_NUM_THREADS=1 python benchmarks/backbone_geometry.py \
        --checkpoint training_runs/backbones/last.pt --name backbone_geometry_run
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from _results import RESULTS, ROOT, command, markdown_table, save_figure, write_results

from quotient_diffusion.data.proteins import ProteinChain, load_protein_splits
from quotient_diffusion.diffusion import SamplerConfig
from quotient_diffusion.diffusion.samplers import resolve_sampler
from quotient_diffusion.errors import InputError
from quotient_diffusion.metrics.proteins import (
    CLASH_DISTANCE,
    IDEAL_CA_CA,
    bond_angles,
    bond_statistics,
    clash_statistics,
    dihedrals,
    fit_rg_power_law,
    pairwise_tm,
    radius_of_gyration,
    secondary_structure,
    wasserstein_circle,
    wasserstein_line,
)
from quotient_diffusion.output import check_output
from quotient_diffusion.tasks import checkpoint_path, generate_all, load
from quotient_diffusion.training import load_checkpoint

TASK = "backbones"
DEFAULT_STEPS = 100  # qdiff sample backbones: add_sampler_arguments(default_steps=100)
CLASH_SEPARATION = 2  # clash_statistics' default min_separation
FLOOR_SPLITS = 10
BATCH_SIZE = 16
QUICK = {"per_length": 2, "lengths": 2, "sample_steps": 20}
Trace = np.ndarray

#: (key, header, format) of the table's metric columns
COLUMNS = [
    ("ca_ca_within_0.1", "CA-CA ±0.1", "{:.3f}"),
    ("ca_ca_within_0.2", "CA-CA ±0.2", "{:.3f}"),
    ("ca_ca_mean", "CA-CA mean", "{:.3f}"),
    ("ca_ca_std", "CA-CA sd", "{:.3f}"),
    ("clash_pair_fraction", "clash pairs", "{:.2e}"),
    ("clash_chain_fraction", "chains w/ clash", "{:.2f}"),
    ("rg_ratio_mean", "Rg/law", "{:.2f}"),
    ("rg_ratio_std", "Rg/law sd", "{:.2f}"),
    ("helix_fraction", "helix", "{:.2f}"),
    ("strand_fraction", "strand", "{:.2f}"),
    ("bond_angle_w1", "W1 θ (°)", "{:.2f}"),
    ("dihedral_w1", "W1 φ (°)", "{:.2f}"),
    ("pairwise_tm", "pair TM", "{:.3f}"),
]


class UsageError(Exception):
    """Bad input (one line on stderr, exit status 2)."""


class SamplingError(Exception):
    """Non-finite sampled chains (one line on stderr, exit status 1)."""


# ------------------------------------------------------------------------------- arguments


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help=f"smoke run: {QUICK['per_length']} chains at --length; the "
                        f"{QUICK['lengths']} test chains closest to --length as the reference "
                        f"and the drawn lengths; {QUICK['sample_steps']} sampler steps "
                        "(seconds)")
    p.add_argument("--checkpoint", help="backbone checkpoint (default: the bundled model)")
    p.add_argument("--length", type=int, default=100, help="the one length (default 100)")
    p.add_argument("--per-length", type=int, default=None,
                   help="chains sampled at --length (default 8)")
    p.add_argument("--lengths", type=int, default=None,
                   help="natural test chains drawn for the spread of lengths, one chain "
                        "sampled at each of their lengths (default 12)")
    p.add_argument("--sample-steps", type=int, default=None,
                   help=f"sampler steps (default {DEFAULT_STEPS}, as qdiff sample backbones)")
    p.add_argument("--method", choices=("ode", "sde"), default="ode")
    p.add_argument("--seed", type=int, default=0, help="sampling, length draw, floor splits")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--out", default=str(RESULTS), help="results folder")
    p.add_argument("--name", help="file stem (default backbone_geometry[_quick])")
    p.add_argument("--data-dir", help="shared data root (else QD_DATA)")
    args = p.parse_args(argv)
    defaults = QUICK if args.quick else {"per_length": 8, "lengths": 12, "sample_steps": None}
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    for key in ("per_length", "lengths", "threads"):
        if getattr(args, key) < 1:
            raise UsageError(f"--{key.replace('_', '-')} must be at least 1")
    if args.sample_steps is not None and args.sample_steps < 1:
        raise UsageError("--sample-steps must be at least 1")
    if not 2 <= args.length <= 1000:
        raise UsageError("--length must lie in 2..1000")
    if args.seed < 0:
        raise UsageError("--seed must not be negative")
    args.name = args.name or ("backbone_geometry_quick" if args.quick else "backbone_geometry")
    return args


@dataclass
class Inputs:
    """What the checks before the work produce: the model, the reference, the sampler."""

    path: Path
    task: object
    model: torch.nn.Module
    reference: list[ProteinChain]  # the test chains, by length
    train: list[ProteinChain]
    sampler: SamplerConfig


def prepare(args: argparse.Namespace) -> Inputs:
    """Every check before the work: output folder, checkpoint, data; UsageError otherwise."""
    try:
        check_output(args.out, "dir")
    except InputError as err:
        raise UsageError(str(err)) from None
    path = checkpoint_path(args.checkpoint, TASK)
    if not path.is_file():
        raise UsageError(f"no bundled backbone model ({path}); pass --checkpoint"
                         if args.checkpoint is None else f"--checkpoint {path}: no such file")
    torch.set_num_threads(args.threads)
    try:
        task, model = load(path, TASK)
    except (OSError, ValueError, RuntimeError, EOFError) as err:  # CheckpointError: ValueError
        raise UsageError(f"cannot load the model: {err}") from None
    o = task.options
    try:
        splits = load_protein_splits(args.data_dir or task.config.task.data_dir, o.cache_dir,
                                     o.split_seed)
    except (OSError, ValueError) as err:
        raise UsageError(str(err)) from None
    if len(splits.test) < 2:
        raise UsageError(f"only {len(splits.test)} natural test chain(s)")
    sampler = resolve_sampler(SamplerConfig(steps=DEFAULT_STEPS), DEFAULT_STEPS,
                              steps=args.sample_steps, method=args.method)
    return Inputs(path, task, model, sorted(splits.test, key=len), splits.train, sampler)


# --------------------------------------------------------------------------------- choices


def draw_chains(chains: Sequence[ProteinChain], count: int, seed: int) -> list[ProteinChain]:
    """``count`` chains drawn without replacement (seeded), sorted by length."""
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(chains), min(count, len(chains)), replace=False)
    return sorted((chains[i] for i in pick), key=len)


def nearest_length(chains: Sequence[ProteinChain], length: int, count: int) -> list[ProteinChain]:
    """The ``count`` chains whose lengths are closest to ``length`` (ties: the shorter)."""
    order = sorted(range(len(chains)), key=lambda i: (abs(len(chains[i]) - length),
                                                      len(chains[i]), chains[i].name))
    return sorted((chains[i] for i in order[:count]), key=len)


# --------------------------------------------------------------------------------- metrics


def pooled(fn, traces: Sequence[Trace]) -> np.ndarray:
    """``fn`` (bond_angles, dihedrals) of every trace, concatenated."""
    return np.concatenate([fn(x) for x in traces])


def angle_w1(traces: Sequence[Trace], reference: Sequence[Trace]) -> dict:
    """W1 of the pooled bond angles (line) and dihedrals (circle) of two sets of traces."""
    if not traces or not reference:
        return {"bond_angle_w1": float("nan"), "dihedral_w1": float("nan")}
    return {"bond_angle_w1": wasserstein_line(pooled(bond_angles, traces),
                                              pooled(bond_angles, reference)),
            "dihedral_w1": wasserstein_circle(pooled(dihedrals, traces),
                                              pooled(dihedrals, reference))}


def half_split_floor(reference: Sequence[Trace], seed: int, splits: int = FLOOR_SPLITS) -> dict:
    """W1 between two random halves of the reference chains: mean and sd over ``splits``."""
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(splits):
        order = rng.permutation(len(reference))
        half = len(reference) // 2
        values.append(angle_w1([reference[i] for i in order[:half]],
                               [reference[i] for i in order[half:]]))
    return {key: {"mean": float(np.mean([v[key] for v in values])),
                  "sd": float(np.std([v[key] for v in values])), "splits": splits,
                  "first": values[0][key]}
            for key in ("bond_angle_w1", "dihedral_w1")}


def clash_pair_fraction(traces: Sequence[Trace], distance: float = CLASH_DISTANCE,
                        separation: int = CLASH_SEPARATION) -> float:
    """Pairs |i - j| >= ``separation`` closer than ``distance``, over all such pairs."""
    clashes = pairs = 0
    for x in traces:  # one vectorised distance matrix per chain
        i, j = np.triu_indices(len(x), k=separation)
        clashes += int((np.linalg.norm(x[i] - x[j], axis=-1) < distance).sum())
        pairs += len(i)
    return clashes / pairs if pairs else float("nan")


def geometry(traces: Sequence[Trace], rg_law: tuple[float, float]) -> dict:
    """The metrics of one row that need no reference: bonds, clashes, R_g, P-SEA."""
    r0, nu = rg_law
    lengths = np.array([len(x) for x in traces], dtype=float)
    ratio = np.array([radius_of_gyration(x) for x in traces]) / (r0 * lengths**nu)
    within = {f"ca_ca_within_{tol}": bond_statistics(traces, tol)["ca_ca_ideal_fraction"]
              for tol in (0.1, 0.2)}
    bonds = bond_statistics(traces)
    return {"chains": len(traces), "residues": int(lengths.sum()),
            "min_length": int(lengths.min()), "max_length": int(lengths.max()),
            **within, "ca_ca_mean": bonds["ca_ca_mean"], "ca_ca_std": bonds["ca_ca_std"],
            "clash_pair_fraction": clash_pair_fraction(traces),
            **clash_statistics(traces, CLASH_DISTANCE, CLASH_SEPARATION),
            "rg_ratio_mean": float(ratio.mean()), "rg_ratio_std": float(ratio.std()),
            **secondary_structure(traces)}


def row(traces: Sequence[Trace], rg_law: tuple[float, float], w1_against: Sequence[Trace],
        tm_traces: Sequence[Trace]) -> dict:
    """One row of the table: :func:`geometry`, the angle W1 against ``w1_against`` and the
    mean pairwise TM-score of ``tm_traces``."""
    return {**geometry(traces, rg_law), **angle_w1(traces, w1_against),
            "pairwise_tm": pairwise_tm(list(tm_traces)), "tm_chains": len(tm_traces)}


# -------------------------------------------------------------------------------- sampling


def sample(inputs: Inputs, lengths: Sequence[int], seed: int) -> tuple[list[Trace], float]:
    """One chain per length (float64, Angstrom) and the wall time; non-finite chains fail."""
    start = time.perf_counter()
    traces = generate_all(inputs.task, inputs.model, list(lengths), inputs.sampler, seed=seed,
                          batch_size=BATCH_SIZE)
    wall = time.perf_counter() - start
    bad = sum(not np.isfinite(x).all() for x in traces)
    if bad:
        raise SamplingError(f"{bad} of {len(traces)} sampled chains are not finite")
    return [np.asarray(x, dtype=np.float64) for x in traces], wall


# ----------------------------------------------------------------------------------- output


def describe_checkpoint(path: Path, task) -> dict:
    """Path (relative to the repository when inside it), SHA-256, training step (when
    recorded), planned steps and the model."""
    state = load_checkpoint(path)
    m, o = task.config.model, task.options
    full = path.resolve()
    shown = full.relative_to(ROOT) if full.is_relative_to(ROOT) else full
    return {"path": str(shown), "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "step": int(state["step"]) if "step" in state else None,
            "planned_steps": task.config.optim.steps,
            "network": f"{m.network} {m.hidden}/{m.layers}", "treatment": m.treatment,
            "trained_lengths": [o.min_length, o.max_length], "crop": o.crop}


def machine(threads: int) -> dict:
    load_avg = os.getloadavg()
    return {"platform": platform.platform(), "processor": platform.processor() or "unknown",
            "cpu_count": os.cpu_count(), "torch": torch.__version__, "torch_threads": threads,
            "load_average_at_start": [round(x, 2) for x in load_avg]}


def fmt(value, spec: str) -> str:
    return "—" if value is None or (isinstance(value, float) and np.isnan(value)) else \
        spec.format(value)


def table(payload: dict) -> str:
    length = payload["protocol"]["length"]
    header = ["rows", "set", "chains", "L", *(h for _, h, _ in COLUMNS)]
    lines = []
    for part, label in (("at_length", f"L = {length}"), ("all_lengths", "all lengths")):
        for kind in ("natural", "model"):
            r = payload["rows"][part][kind]
            lines.append([label, kind, str(r["chains"]), f"{r['min_length']}-{r['max_length']}",
                          *(fmt(r[k], spec) for k, _, spec in COLUMNS)])
    return "\n".join(markdown_table(header, lines, "ll" + "r" * (len(header) - 2)))


def markdown(payload: dict) -> str:
    ck, p, s = payload["checkpoint"], payload["protocol"], payload["sampler"]
    seeds = payload["seeds"]
    floor = payload["w1_floor_halves"]
    step = "step not recorded" if ck["step"] is None else f"step {ck['step']:,}"
    return "\n".join([
        f"<!-- written by benchmarks/backbone_geometry.py; command: {payload['command']} -->",
        "",
        "# Backbone geometry: model samples next to natural test chains",
        "",
        f"Model: `{ck['path']}` ({step} of {ck['planned_steps']:,} planned; {ck['network']}, "
        f"{ck['treatment']}; trained on lengths {ck['trained_lengths'][0]}-"
        f"{ck['trained_lengths'][1]}{', cropped' if ck['crop'] else ''}). Sampler "
        f"{s['label']} ({s['nfe']} evaluations). Seeds: sampling {seeds['at_length_sampling']} "
        f"(L = {p['length']}) and {seeds['spread_sampling']} (drawn lengths), length draw "
        f"{seeds['length_draw']}, floor splits {seeds['floor_splits']}.",
        "",
        table(payload),
        "",
        f"Natural reference: {p['reference_chains']} DB5.5 test chains (family split, "
        f"{p['reference_lengths'][0]}-{p['reference_lengths'][1]} residues). L = {p['length']}: "
        f"{p['per_length']} samples of {p['length']} residues against the "
        f"{len(p['at_length_natural'])} test chains closest in length; all lengths: one sample "
        f"per drawn test chain ({len(p['drawn_lengths'])}: lengths "
        f"{', '.join(map(str, p['drawn_lengths']))}) against the whole reference.",
        "",
        f"CA-CA ±x: fraction of consecutive distances within x Å of {IDEAL_CA_CA:.2f} Å. Clash "
        f"pairs: fraction of pairs |i - j| >= {CLASH_SEPARATION} closer than "
        f"{CLASH_DISTANCE} Å (chains w/ clash: fraction with at least one). Rg/law: R_g / "
        f"(r0 L^nu), law fitted on the training chains (r0 = "
        f"{payload['rg_law'][0]:.3f} Å, nu = {payload['rg_law'][1]:.3f}; the {p['test_chains']} "
        f"test chains' fit, for comparison: r0 = {payload['rg_law_test'][0]:.3f} Å, nu = "
        f"{payload['rg_law_test'][1]:.3f}). Helix / strand: "
        "P-SEA residue fractions. W1: "
        "1-Wasserstein distance of the pooled C-alpha bond angles θ and dihedrals φ to the "
        "reference's; in the natural rows the floors: all lengths, two random halves of the "
        f"reference (mean of {floor['bond_angle_w1']['splits']} seeded splits; sd θ "
        f"{floor['bond_angle_w1']['sd']:.2f}°, φ {floor['dihedral_w1']['sd']:.2f}°); "
        f"L = {p['length']}, its chains against the other reference chains. Pair TM: mean "
        "pairwise TM-score of the row's samples, and of as many natural chains (the "
        "at-length ones; the drawn ones), lower = more diverse.",
        "",
        f"Wall time {payload['wall_time_s']:.1f} s after the imports (sampling "
        f"{payload['sample_time_s']:.1f} s), "
        f"{payload['machine']['torch_threads']} torch thread(s), load average "
        f"{payload['machine']['load_average_at_start'][0]:.2f} on "
        f"{payload['machine']['cpu_count']} cores at the start. Figure: {payload['figure']}.",
        "",
    ])


def principal_projection(x: Trace) -> np.ndarray:
    """(L, 2) coordinates of a centred trace on its first two principal axes."""
    centred = x - x.mean(0)
    return centred @ np.linalg.svd(centred, full_matrices=False)[2][:2].T


def _trace_panel(ax, xy: np.ndarray, title: str, cmap, extent: float) -> None:
    """A projected trace, colored by residue index, in a square of half-width ``extent``."""
    from matplotlib.collections import LineCollection

    segments = np.stack([xy[:-1], xy[1:]], axis=1)
    lines = LineCollection(segments, cmap=cmap, linewidths=1.3)
    lines.set_array(np.linspace(0, 1, len(segments)))
    ax.add_collection(lines)
    ax.scatter(xy[:, 0], xy[:, 1], c=np.linspace(0, 1, len(xy)), cmap=cmap, s=4, zorder=3)
    ax.set_xlim(-extent, extent)
    ax.set_ylim(-extent, extent)
    ax.set_aspect("equal")
    ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])


def figure(path: Path, payload: dict, test: Sequence[Trace], reference: Sequence[Trace],
           at_samples: Sequence[Trace], drawn: Sequence[Trace], spread: Sequence[Trace]) -> Path:
    """R_g against L (every test chain; the law of the training chains), the angle histograms (the reference)
    and traces: natural above model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = min(4, len(drawn))
    picks = np.linspace(0, len(drawn) - 1, columns).round().astype(int)
    fig = plt.figure(figsize=(12, 9.5))
    grid = fig.add_gridspec(3, 12, height_ratios=[1.15, 1, 1])
    ax_rg, ax_th, ax_ph = (fig.add_subplot(grid[0, 4 * k: 4 * k + 4]) for k in range(3))

    r0, nu = payload["rg_law"]
    lengths = np.array([len(x) for x in test])
    ax_rg.scatter(lengths, [radius_of_gyration(x) for x in test], s=10, c="0.55",
                  label="natural test")
    for traces, label, marker in ((at_samples, f"model, L = {payload['protocol']['length']}",
                                   "x"), (spread, "model, drawn lengths", "o")):
        ax_rg.scatter([len(x) for x in traces], [radius_of_gyration(x) for x in traces], s=16,
                      marker=marker, label=label)
    grid_l = np.linspace(min(lengths.min(), payload["protocol"]["length"]),
                         max(lengths.max(), payload["protocol"]["length"]), 50)
    ax_rg.plot(grid_l, r0 * grid_l**nu, "k--", lw=1, label=f"natural law {r0:.2f} L^{nu:.2f}")
    ax_rg.set_xlabel("chain length L")
    ax_rg.set_ylabel("R_g (Å)")
    ax_rg.legend(fontsize=7)

    model_all = list(at_samples) + list(spread)
    for ax, fn, bins, label in ((ax_th, bond_angles, np.linspace(0, 180, 91), "θ"),
                                (ax_ph, dihedrals, np.linspace(-180, 180, 73), "φ")):
        ax.hist(pooled(fn, reference), bins, density=True, color="0.75",
                label=f"natural reference ({len(reference)} chains)")
        ax.hist(pooled(fn, model_all), bins, density=True, histtype="step", lw=1.5,
                color="C3", label="model (all samples)")
        ax.set_xlabel(f"C-alpha virtual {'bond angle' if label == 'θ' else 'dihedral'} "
                      f"{label} (°)")
        ax.set_yticks([])
        ax.legend(fontsize=7)

    cmap = plt.get_cmap("viridis")
    width = 12 // max(columns, 1)
    for col, k in enumerate(picks):  # one scale per column: natural and model comparable
        pair = [principal_projection(drawn[k]), principal_projection(spread[k])]
        extent = 1.05 * max(np.abs(xy).max() for xy in pair)
        for r, (xy, who) in enumerate(zip(pair, ("natural", "model"))):
            ax = fig.add_subplot(grid[1 + r, col * width: (col + 1) * width])
            _trace_panel(ax, xy, f"{who}, L = {len(xy)}", cmap, extent)
    fig.suptitle("C-alpha backbones: natural test chains and model samples "
                 "(traces on their principal axes, colour = residue index N→C)", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path, dpi=100)


# ------------------------------------------------------------------------------------ main


def run(args: argparse.Namespace, argv: Sequence[str] | None) -> int:
    host = machine(args.threads)  # the load average before this run adds to it
    t0 = time.perf_counter()
    inputs = prepare(args)
    chains = inputs.reference
    if args.quick:  # a reference of the --lengths test chains closest to --length
        chains = nearest_length(chains, args.length, args.lengths)
    drawn = draw_chains(chains, args.lengths, args.seed)
    near = nearest_length(chains, args.length, args.per_length)
    ref = [c.ca.astype(np.float64) for c in chains]
    drawn_ca = [c.ca.astype(np.float64) for c in drawn]
    near_ca = [c.ca.astype(np.float64) for c in near]
    near_names = {c.name for c in near}
    others = [c.ca.astype(np.float64) for c in chains if c.name not in near_names]
    test = [c.ca.astype(np.float64) for c in inputs.reference]
    rg_law = fit_rg_power_law([c.ca.astype(np.float64) for c in inputs.train])

    at_samples, t_at = sample(inputs, [args.length] * args.per_length, args.seed)
    spread, t_spread = sample(inputs, [len(c) for c in drawn], args.seed + 1)

    floor = half_split_floor(ref, args.seed)
    rows = {
        "at_length": {"natural": row(near_ca, rg_law, others, near_ca),
                      "model": row(at_samples, rg_law, ref, at_samples)},
        "all_lengths": {"natural": row(ref, rg_law, [], drawn_ca),
                        "model": row(spread, rg_law, ref, spread)},
    }
    rows["all_lengths"]["natural"].update({k: v["mean"] for k, v in floor.items()})
    words = list(argv) if argv is not None else sys.argv[1:]
    payload = {
        "question": "Does the backbone model produce chains with protein geometry, side by "
                    "side with natural test chains?",
        "command": "OMP_NUM_THREADS=1 " + command(__file__, words),
        "checkpoint": describe_checkpoint(inputs.path, inputs.task),
        "sampler": {"label": inputs.sampler.label(), "nfe": inputs.sampler.evaluations,
                    "config": asdict(inputs.sampler), "batch_size": BATCH_SIZE},
        "seeds": {"at_length_sampling": args.seed, "spread_sampling": args.seed + 1,
                  "length_draw": args.seed, "floor_splits": args.seed},
        "protocol": {
            "quick": args.quick, "length": args.length, "per_length": args.per_length,
            "test_chains": len(inputs.reference), "reference_chains": len(chains),
            "reference_lengths": [len(chains[0]), len(chains[-1])],
            "split_seed": inputs.task.options.split_seed,
            "drawn_chains": [c.name for c in drawn], "drawn_lengths": [len(c) for c in drawn],
            "at_length_natural": [c.name for c in near],
            "at_length_natural_lengths": [len(c) for c in near],
            "clash": {"distance": CLASH_DISTANCE, "min_separation": CLASH_SEPARATION},
            "natural_w1": "all_lengths: two random halves of the reference (mean of "
                          f"{FLOOR_SPLITS}); at_length: its chains against the other "
                          "reference chains",
        },
        "rg_law": list(rg_law),
        "rg_law_test": list(fit_rg_power_law(test)),
        "w1_floor_halves": floor,
        "rows": rows,
        "machine": host,
        "sample_time_s": t_at + t_spread,
        "sample_time_s_parts": {"at_length": t_at, "spread": t_spread},
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    png = out / f"{args.name}.png"
    payload["figure"] = png.name
    figure(png, payload, test, ref, at_samples, drawn_ca, spread)
    payload["wall_time_s"] = time.perf_counter() - t0
    json_path, md_path = write_results(out, args.name, payload, markdown(payload))
    print(table(payload))
    print(f"wrote {json_path}, {md_path}, {png}; wall time {payload['wall_time_s']:.1f} s")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return run(parse_args(argv), argv)
    except UsageError as err:
        print(f"backbone_geometry: {err}", file=sys.stderr)
        return 2
    except SamplingError as err:
        print(f"backbone_geometry: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
