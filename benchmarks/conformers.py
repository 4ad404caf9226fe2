"""Conformer generation on GEOM-QM9 test molecules: the four symmetry treatments vs RDKit ETKDG.

Question: at equal training budget, with the same network, data and seeds, does the quotient
treatment give better conformers than the conventional one and the alignment heuristics, and
how do they compare with ETKDG (and ETKDG + MMFF)?

Reference: the 1,000 GEOM-QM9 test SMILES (../shared/data/geom_qm9); 918 of them have their DFT
geometry in QM9 (matched by canonical SMILES without stereo): that geometry is the (single)
reference conformer. Those molecules are excluded from training (ConformerTask). A fixed random
subset of them (``--molecules``) is evaluated; every method generates ``--conformers`` per
molecule. Metrics (quotient_diffusion.metrics.conformers): recall coverage at 0.5 A and AMR
(heavy-atom RMSD after the best symmetry-aware alignment, RDKit GetBestRMS), precision
coverage/AMR, and wall-clock time per conformer (measured in this run, one after another).

Training runs go to ``runs/bench_conformers/<treatment>_s<seed>`` and resume when interrupted;
evaluations are appended to the JSON as they finish, and a rerun skips what is there.

Timing (``--timing``, nothing is trained): ``qdiff conformers`` against ETKDG side by side, each
counting everything its command does except interpreter start-up. Ours is the command itself,
run in-process (``cli.main``: read the SMILES file, check the inputs, load the model from disk,
sample, stereo checks and resampling, geometry checks, write the SDF) with the model's default
sampler and torch's default thread count (``--model-threads`` to change); ETKDG is parse +
AddHs + EmbedMultipleConfs (ETKDGv3, one thread, the random-coordinates fallback) + the same
SDF writer. Two passes: the whole file at once (mean ms per conformer written), then one
molecule at a time, ours and ETKDG alternating (median over molecules of the ms per conformer;
the model stays loaded, its load time is reported apart). The share of our time spent inside
the network evaluations (``DiffusionModel.denoise``, timed around each call) is reported for
both passes: it bounds what fewer solver steps or a cheaper network can save. The conformers of
the whole-file pass are scored like the rest of this benchmark (not timed). Run it on an
otherwise idle machine: timings taken next to other work are several times slower and not
comparable.

    python benchmarks/conformers.py --quick          # a few minutes: tiny models, 12 molecules
    python benchmarks/conformers.py                  # the committed run (see docs)
    python benchmarks/conformers.py --timing         # ours vs ETKDG, 200 molecules x 10
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _results import (
    ROOT,
    command,
    markdown_table,
    mean_std,
    save_figure,
    write_json,
    write_results,
    write_text,
)

from quotient_diffusion.chem.stereo import compare_stereo, realised_stereo, requested_stereo
from quotient_diffusion.conformers import (
    default_checkpoint,
    fix_stereo,
    prepare_jobs,
    raw_samples,
    relax_mmff,
)
from quotient_diffusion.data.qm9 import load_qm9
from quotient_diffusion.diffusion import SamplerConfig, resolve_sampler
from quotient_diffusion.metrics.conformers import ensemble_scores, heavy_atom_rmsd_matrix
from quotient_diffusion.tasks import get_task, load
from quotient_diffusion.tasks.conformers import (
    ConformerTask,
    canonical_no_stereo,
    geom_qm9_test_smiles,
)
from quotient_diffusion.training import TrainConfig, load_checkpoint, train

TREATMENTS = ("conventional", "geodiff", "af3", "quotient")
#: torch's own thread count, before this script sets its own (the command's default)
DEFAULT_THREADS = torch.get_num_threads()


def reference_molecules(data_dir: str | None, count: int, seed: int = 0) -> list[dict]:
    """GEOM-QM9 test molecules with a QM9 DFT geometry: a fixed random subset of ``count``."""
    qm9 = load_qm9()
    entry_of = {}
    for entry, smi in enumerate(qm9.smiles):
        entry_of.setdefault(canonical_no_stereo(smi), entry)
    refs = []
    for smi in geom_qm9_test_smiles(data_dir):
        key = canonical_no_stereo(smi)
        if key is not None and key in entry_of:
            refs.append({"smiles": smi, "entry": entry_of[key]})
    print(f"{len(refs)} GEOM-QM9 test molecules have a QM9 DFT geometry")
    order = np.random.RandomState(seed).permutation(len(refs))[:count]
    return [refs[i] for i in sorted(order)]


def base_config(args, treatment: str, seed: int) -> TrainConfig:
    cfg = TrainConfig.load(ROOT / "configs" / "conformers_qm9.json")
    cfg.model.treatment = treatment
    cfg.model.hidden, cfg.model.layers = args.hidden, args.layers
    cfg.optim.steps = args.train_steps
    cfg.run.seed = seed
    cfg.run.threads = args.threads
    cfg.run.out_dir = str(Path(args.runs) / f"{treatment}_s{seed}")
    cfg.task.data_dir = args.data_dir
    if args.quick:
        cfg.task.limit = 2000
        cfg.optim.batch_size = 32
        cfg.run.checkpoint_every = cfg.run.validate_every = 25
    return cfg


def train_run(cfg: TrainConfig) -> Path:
    out = Path(cfg.run.out_dir)
    final = out / "final.pt"
    if final.exists() and load_checkpoint(final, ("step",))["step"] >= cfg.optim.steps:
        return final
    return train(get_task(cfg), cfg, resume=(out / "last.pt").exists(), progress=True)


def score(jobs, refs, qm9) -> dict:
    """Mean/median of the per-molecule metrics for jobs whose conformers are filled in."""
    per_mol, failures = [], 0
    for job, ref in zip(jobs, refs):
        if not job.conformers:  # counted: no coverage, left out of the AMR means
            failures += 1
            continue
        wanted = requested_stereo(job.mol)
        verdicts = [compare_stereo(wanted, realised_stereo(job.mol, p)) for p in job.conformers]
        gens = [fix_stereo(job.mol, p)[0] for p in job.conformers]
        rmsd = heavy_atom_rmsd_matrix(job.mol, gens, qm9.molecule(ref["entry"]),
                                      [qm9.positions_of(ref["entry"])])
        per_mol.append({**ensemble_scores(rmsd).__dict__,
                        "stereo_raw": float(np.mean([v == "ok" for v in verdicts])),
                        "stereo_mirrored": float(np.mean([v != "wrong" for v in verdicts]))})
    keys = per_mol[0].keys()
    out = {k: float(np.mean([m[k] for m in per_mol])) for k in keys}
    out["cov_recall"] *= len(per_mol) / (len(per_mol) + failures)
    out["failures"] = failures
    out["amr_recall_median"] = float(np.median([m["amr_recall"] for m in per_mol]))
    out["per_molecule_amr_recall"] = [m["amr_recall"] for m in per_mol]
    return out


def benchmark_sampler(args) -> SamplerConfig:
    """The sampler of the evaluated models: Euler on the uniform grid unless --solver,
    --schedule, --rho or --last-time say otherwise."""
    return resolve_sampler(SamplerConfig(steps=args.sample_steps), args.sample_steps,
                           method=args.method, solver=args.solver, schedule=args.schedule,
                           rho=args.rho, last_time=args.last_time)


def evaluate_model(path: Path, refs, qm9, args, seed: int, mmff: bool = False) -> dict:
    """Raw samples of the model at ``path`` (``mmff``: each then relaxed with MMFF94, as
    ``qdiff conformers --mmff`` does), scored; the time counts sampling and relaxation."""
    torch.set_num_threads(args.threads)
    task, model = load(path, "conformers")
    jobs = prepare_jobs([r["smiles"] for r in refs])
    sampler = benchmark_sampler(args)
    t0 = time.perf_counter()
    raw_samples(task, model, jobs, args.conformers, sampler, seed=seed)
    if mmff:
        for job in jobs:
            job.conformers = [relax_mmff(job.mol, pos)[0] for pos in job.conformers]
    elapsed = time.perf_counter() - t0
    result = score(jobs, refs, qm9)
    result["ms_per_conformer"] = 1000 * elapsed / (len(jobs) * args.conformers)
    return result


def evaluate_etkdg(refs, qm9, args, seed: int, mmff: bool) -> dict:
    from rdkit.Chem import AllChem

    jobs = prepare_jobs([r["smiles"] for r in refs])
    params = AllChem.ETKDGv3()
    # RDKit quirk: randomSeed = 0 embeds every conformer from the same start (identical copies)
    params.randomSeed = 1000 + seed
    t0 = time.perf_counter()
    for job in jobs:
        ids = _etkdg_embed(job.mol, args.conformers, params)
        if mmff and ids:
            AllChem.MMFFOptimizeMoleculeConfs(job.mol, maxIters=500)
        job.conformers = [job.mol.GetConformer(i).GetPositions() for i in ids]
        job.mol.RemoveAllConformers()
    elapsed = time.perf_counter() - t0
    result = score(jobs, refs, qm9)
    result["ms_per_conformer"] = 1000 * elapsed / (len(jobs) * args.conformers)
    return result


def _etkdg_embed(mol, count: int, params) -> list:
    """EmbedMultipleConfs, with random starting coordinates as the fallback where it fails
    (strained polycycles: RDKit's advice)."""
    from rdkit.Chem import AllChem

    ids = list(AllChem.EmbedMultipleConfs(mol, numConfs=count, params=params))
    if not ids:
        params.useRandomCoords = True
        ids = list(AllChem.EmbedMultipleConfs(mol, numConfs=count, params=params))
        params.useRandomCoords = False
    return ids


def etkdg_command(smiles: list[str], count: int, out: Path, seed: int) -> list[list]:
    """What an ETKDG command line would do for a SMILES list: parse, add hydrogens, embed
    ``count`` conformers (one thread), write one SDF. Returns each molecule's positions."""
    from rdkit import Chem
    from rdkit.Chem import AllChem

    params = AllChem.ETKDGv3()
    params.randomSeed = 1000 + seed  # RDKit quirk: 0 gives identical copies
    params.numThreads = 1
    records, positions = [], []
    for number, smi in enumerate(smiles, start=1):
        mol = Chem.AddHs(Chem.MolFromSmiles(smi))
        ids = _etkdg_embed(mol, count, params)
        positions.append([mol.GetConformer(i).GetPositions() for i in ids])
        records += [(mol, pos, "", {"input_line": number, "smiles": smi, "conformer": k})
                    for k, pos in enumerate(positions[-1])]
    ConformerTask(TrainConfig()).write(records, out)  # the SDF writer of `qdiff conformers`
    return positions


def qdiff_command(smiles: list[str], count: int, out: Path, seed: int,
                  threads: int) -> list[list]:
    """``qdiff conformers`` on a SMILES file, in-process; returns each molecule's positions as
    written to the SDF (input order)."""
    from rdkit import Chem

    from quotient_diffusion.cli import main as qdiff

    source = out.with_suffix(".smi")
    source.write_text("".join(f"{smi}\n" for smi in smiles))
    with contextlib.redirect_stderr(io.StringIO()):  # its summary lines, once per call
        code = qdiff(["conformers", str(source), "-n", str(count), "-o", str(out),
                      "--seed", str(seed), "--threads", str(threads)])
    if code not in (0, 1):
        raise RuntimeError(f"qdiff conformers exited with {code}")
    positions = [[] for _ in smiles]
    for mol in Chem.SDMolSupplier(str(out), removeHs=False):
        positions[mol.GetIntProp("input_line") - 1].append(mol.GetConformer().GetPositions())
    return positions


@contextlib.contextmanager
def network_timer():
    """While active, the wall seconds spent inside ``DiffusionModel.denoise`` (the network with
    its preconditioning: what fewer solver steps or a cheaper network would save) accumulate in
    the one-element list it yields."""
    from quotient_diffusion.diffusion.model import DiffusionModel

    spent = [0.0]
    original = DiffusionModel.denoise

    def timed(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return original(self, *args, **kwargs)
        finally:
            spent[0] += time.perf_counter() - start

    DiffusionModel.denoise = timed
    try:
        yield spent
    finally:
        DiffusionModel.denoise = original


def time_commands(refs, qm9, args) -> dict:
    """Side-by-side timing of ``qdiff conformers`` and ETKDG (module docstring)."""
    from quotient_diffusion import conformers as qc

    smiles = [r["smiles"] for r in refs]
    threads = args.model_threads or DEFAULT_THREADS
    out = Path(tempfile.mkdtemp(prefix="conformer_timing_"))
    qc._load_model.cache_clear()
    t0 = time.perf_counter()
    qc.load_conformer_model(None)
    load_s = time.perf_counter() - t0
    qc._load_model.cache_clear()  # the whole-file pass loads it again, as the command does
    result = {"model_threads": threads, "etkdg_threads": 1, "model_load_s": load_s,
              "sampler": qc.DEFAULT_SAMPLER.label(), "conformers_requested": args.conformers}

    network = {"whole_file": 0.0, "per_molecule": 0.0}

    def run(name: str, some: list[str], path: Path, part: str) -> tuple[list[list], float]:
        """(positions, seconds) of one command on ``some`` SMILES; the network's share of
        ours is added to ``network[part]``."""
        t0 = time.perf_counter()
        if name == "qdiff":
            with network_timer() as spent:
                positions = qdiff_command(some, args.conformers, path, 0, threads)
            network[part] += spent[0]
        else:
            positions = etkdg_command(some, args.conformers, path, 0)
        return positions, time.perf_counter() - t0

    for name in ("qdiff", "etkdg"):
        positions, elapsed = run(name, smiles, out / f"{name}_all.sdf", "whole_file")
        written = sum(map(len, positions))
        jobs = prepare_jobs(smiles)
        for job, pos in zip(jobs, positions):
            job.conformers = pos
        result[name] = {"seconds": elapsed, "conformers": written,
                        "ms_per_conformer": 1000 * elapsed / written,
                        **{k: v for k, v in score(jobs, refs, qm9).items()
                           if not k.startswith("per_molecule")}}
    per_molecule = {"qdiff": [], "etkdg": []}
    qdiff_seconds = 0.0
    for k, smi in enumerate(smiles):  # alternating, so that a change of load hits both
        for name in ("qdiff", "etkdg"):
            positions, elapsed = run(name, [smi], out / f"{name}_{k}.sdf", "per_molecule")
            per_molecule[name].append(1000 * elapsed / max(len(positions[0]), 1))
            qdiff_seconds += elapsed if name == "qdiff" else 0.0
    result["qdiff"]["network_share_whole_file"] = network["whole_file"] / result["qdiff"]["seconds"]
    result["qdiff"]["network_share_per_molecule"] = network["per_molecule"] / qdiff_seconds
    for name, values in per_molecule.items():
        result[name]["median_molecule_ms_per_conformer"] = float(np.median(values))
    result["ratio_mean"] = (result["qdiff"]["ms_per_conformer"]
                            / result["etkdg"]["ms_per_conformer"])
    result["ratio_median_molecule"] = (result["qdiff"]["median_molecule_ms_per_conformer"]
                                       / result["etkdg"]["median_molecule_ms_per_conformer"])
    return result


def timing_markdown(result: dict, meta: dict) -> str:
    rows = [("qdiff conformers", result["qdiff"], f"{result['model_threads']} (torch default)"),
            ("RDKit ETKDGv3", result["etkdg"], "1")]
    lines = [f"`qdiff conformers` (sampler {result['sampler']}, bundled model) vs ETKDG on "
             f"{meta['molecules']} GEOM-QM9 test molecules, {meta['conformers']} conformers "
             "each, side by side in one run; everything each command does except interpreter "
             f"start-up (model load {1000 * result['model_load_s']:.0f} ms, counted in the "
             "whole-file pass only). AMR-R / COV-R of the whole-file pass against the QM9 DFT "
             "geometry.", "",
             "| method | threads | conformers | ms / conformer (whole file) | ms / conformer "
             "(median molecule) | AMR-R (A) | COV-R (%) |", "|---|---|---|---|---|---|---|"]
    for name, r, threads in rows:
        lines.append(f"| {name} | {threads} | {r['conformers']} | {r['ms_per_conformer']:.2f} | "
                     f"{r['median_molecule_ms_per_conformer']:.2f} | {r['amr_recall']:.3f} | "
                     f"{100 * r['cov_recall']:.1f} |")
    lines += ["", f"Ratio qdiff / ETKDG: {result['ratio_mean']:.2f} (whole file), "
                  f"{result['ratio_median_molecule']:.2f} (median molecule)."]
    q = result["qdiff"]
    if "network_share_whole_file" in q:  # runs before it was measured lack it
        lines += ["", f"Share of qdiff's time inside the network evaluations "
                      f"(`DiffusionModel.denoise`): {100 * q['network_share_whole_file']:.0f}% "
                      f"(whole file), {100 * q['network_share_per_molecule']:.0f}% (one "
                      "molecule at a time)."]
    return "\n".join(lines) + "\n"


def describe_checkpoint(path: Path) -> str:
    """What a checkpoint was trained for: its steps and the model it was warm-started from."""
    state = load_checkpoint(path, ("step",))
    start = (state.get("history") or [{}])[0].get("init_from")
    return f"{state['step']:,} steps" + (f" warm-started from `{start}`" if start else "")


def summarise(results: dict) -> dict:
    """method -> metric -> (mean, std over seeds)."""
    table = {}
    for key, res in results.items():
        method = key.rsplit("_s", 1)[0]
        table.setdefault(method, []).append(res)
    out = {}
    for method, runs in table.items():
        metrics = [k for k in runs[0] if not k.startswith("per_molecule")]
        out[method] = {k: (*mean_std(r[k] for r in runs), len(runs)) for k in metrics}
    return out


def markdown(summary: dict, meta: dict) -> str:
    cols = [("cov_recall", "COV-R (%)", 100), ("amr_recall", "AMR-R mean (A)", 1),
            ("amr_recall_median", "AMR-R median (A)", 1), ("cov_precision", "COV-P (%)", 100),
            ("amr_precision", "AMR-P (A)", 1), ("stereo_raw", "stereo ok raw (%)", 100),
            ("stereo_mirrored", "stereo ok after mirror (%)", 100),
            ("ms_per_conformer", "ms / conformer", 1),
            ("failures", "failed molecules", 1)]
    models = [f"{label}: {text}" for label, text in meta["checkpoints"].items()]
    if meta["trained_rows"]:
        models.insert(0, f"treatment rows: {meta['network']}, {meta['train_steps']} training "
                         f"steps of batch {meta['batch_size']}")
    lines = [f"Conformers on {meta['molecules']} GEOM-QM9 test molecules (QM9 DFT geometry as the "
             f"reference), {meta['conformers']} conformers each; mean ± std over seeds "
             f"{meta['seeds']} (checkpoint rows: sampling seed 0). Models: {'; '.join(models)}. "
             f"Sampler {meta['sampler']}.", ""]
    rows = [[method, *("n/a" if k not in m else f"{m[k][0] * s:.3g} ± {m[k][1] * s:.2g}"
                       if m[k][2] > 1 else f"{m[k][0] * s:.3g}" for k, _, s in cols)]
            for method, m in summary.items()]
    lines += markdown_table(["method", *(c[1] for c in cols)], rows)
    return "\n".join(lines) + "\n"


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    grid = np.linspace(0, 2.0, 201)
    methods = {}
    for key, res in results.items():
        methods.setdefault(key.rsplit("_s", 1)[0], []).extend(res["per_molecule_amr_recall"])
    for method, values in methods.items():
        v = np.asarray(values)
        ax.plot(grid, [(v < g).mean() for g in grid], label=method)
    ax.axvline(0.5, color="grey", ls=":", lw=1)
    ax.set_xlabel("best heavy-atom RMSD to the DFT geometry (A)")
    ax.set_ylabel("fraction of molecules (all seeds)")
    ax.set_title("Recall coverage as a function of the threshold")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--treatments", nargs="+", default=list(TREATMENTS))
    p.add_argument("--train-steps", type=int, default=1000)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--molecules", type=int, default=200)
    p.add_argument("--conformers", type=int, default=10)
    p.add_argument("--sample-steps", type=int, default=50)
    p.add_argument("--method", choices=("ode", "sde"), default="ode")
    p.add_argument("--solver", choices=("euler", "heun", "dpm2m"), default=None)
    p.add_argument("--schedule", choices=("uniform", "power", "edm"), default=None)
    p.add_argument("--rho", type=float, default=None)
    p.add_argument("--last-time", type=float, default=None,
                   help="the power grid's last interior time (samplers.SamplerConfig)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--runs", default=str(ROOT / "runs" / "bench_conformers"))
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    p.add_argument("--only-train", action="store_true", help="train the models, do not evaluate")
    p.add_argument("--only-report", action="store_true",
                   help="collect the evaluations already made into the JSON, table and plot")
    p.add_argument("--no-train", action="store_true",
                   help="evaluate only the models whose training has finished")
    p.add_argument("--bundled", action="store_true",
                   help="also evaluate the checkpoint that ships with the package (row 'bundled')")
    p.add_argument("--checkpoint", action="append", default=[], metavar="NAME=PATH",
                   help="also evaluate this trained checkpoint as row NAME (repeatable)")
    p.add_argument("--model-mmff", action="store_true",
                   help="also evaluate the bundled and named models with MMFF94 relaxation "
                        "(rows NAME+mmff)")
    p.add_argument("--name", default="conformers",
                   help="results file stem under --out (default conformers)")
    p.add_argument("--skip-etkdg", action="store_true", help="do not evaluate the RDKit baselines")
    p.add_argument("--timing", action="store_true",
                   help="only time qdiff conformers against ETKDG (see above); trains nothing")
    p.add_argument("--model-threads", type=int, default=None,
                   help=f"torch threads of the timed command (default: torch's, here "
                        f"{DEFAULT_THREADS})")
    args = p.parse_args()
    name = args.name
    named = {}
    for item in args.checkpoint:
        label, sep, path = item.partition("=")
        if not sep or not label or "_s" in label or not Path(path).is_file():
            p.error(f"--checkpoint {item!r}: expected NAME=PATH of an existing file, NAME "
                    f"without '_s'")
        named[label] = Path(path)
    if args.quick:
        args.seeds, args.train_steps, args.hidden, args.layers = [0], 30, 32, 2
        args.molecules, args.conformers, args.sample_steps = 12, 3, 10
        args.runs = str(Path(args.runs) / "quick")
        name = f"{args.name}_quick"
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.timing:
        refs = reference_molecules(args.data_dir, args.molecules)
        result = time_commands(refs, load_qm9(), args)
        meta = {"molecules": args.molecules, "conformers": args.conformers,
                "command": command(__file__)}
        table = timing_markdown(result, meta)
        write_results(out, f"{name}_timing", {"meta": meta, "result": result}, table)
        print(table)
        return 0
    json_path = out / f"{name}.json"
    parts = out / f"{name}_parts"  # one JSON per evaluated model: runs can go in parallel
    parts.mkdir(exist_ok=True)
    meta = {"molecules": args.molecules, "conformers": args.conformers, "seeds": args.seeds,
            "network": f"egnn {args.hidden}/{args.layers}", "train_steps": args.train_steps,
            "batch_size": base_config(args, "quotient", 0).optim.batch_size,
            "method": args.method, "sample_steps": args.sample_steps,
            "sampler": benchmark_sampler(args).label(),
            "command": command(__file__)}

    def part_path(key: str) -> Path:
        return parts / f"{key}.json"

    def load_part(key: str, model: str | None = None) -> dict | None:
        """The stored evaluation of ``key`` when it was made with this run's settings (the
        sampler and training steps for model rows only: ETKDG's rows do not depend on them) and,
        for a named or bundled checkpoint, of the same file (``model``: its SHA-256)."""
        path = part_path(key)
        if not path.exists():
            return None
        part = json.loads(path.read_text())
        settings = ("molecules", "conformers")  # what an RDKit baseline's rows depend on
        if not key.startswith("etkdg"):
            settings += ("train_steps", "sampler")
        same = all(part["meta"].get(k) == meta[k] for k in settings)
        same = same and (model is None or part["meta"].get("model_sha256") == model)
        return part["result"] if same else None

    def evaluate(key: str, fn, *fn_args, model: str | None = None) -> None:
        if load_part(key, model) is None:
            print(f"evaluating {key}", flush=True)
            write_json(part_path(key), {"meta": {**meta, "model_sha256": model},
                                        "result": fn(*fn_args)}, indent=None)

    keys = [f"{t}_s{s}" for s in args.seeds for t in args.treatments]
    if args.bundled:
        named = {"bundled": default_checkpoint(), **named}
    if not args.only_report:
        paths = {}
        for seed in args.seeds:
            for treatment in args.treatments:
                cfg = base_config(args, treatment, seed)
                if args.no_train:
                    final = Path(cfg.run.out_dir) / "final.pt"
                    if final.exists():
                        paths[f"{treatment}_s{seed}"] = final
                    continue
                paths[f"{treatment}_s{seed}"] = train_run(cfg)
        if args.only_train:
            return 0
        refs = reference_molecules(args.data_dir, args.molecules)
        qm9 = load_qm9()
        for key, path in paths.items():
            seed = int(key.rsplit("_s", 1)[1])
            evaluate(key, evaluate_model, path, refs, qm9, args, seed)
        for label, path in named.items():
            sha = hashlib.sha256(Path(path).read_bytes()).hexdigest()
            evaluate(f"{label}_s0", evaluate_model, path, refs, qm9, args, 0, model=sha)
            if args.model_mmff:
                evaluate(f"{label}+mmff_s0", evaluate_model, path, refs, qm9, args, 0, True,
                         model=sha)
        if not args.skip_etkdg:
            for seed in args.seeds:
                for method, mmff in (("etkdg", False), ("etkdg+mmff", True)):
                    evaluate(f"{method}_s{seed}", evaluate_etkdg, refs, qm9, args, seed, mmff)
    trained = len(keys)
    keys += [f"{m}_s{s}" for s in args.seeds for m in ("etkdg", "etkdg+mmff")]
    keys += [f"{label}{relax}_s0" for label in dict.fromkeys(["bundled", *named])
             for relax in ("", "+mmff")]
    results = {k: r for k in keys if (r := load_part(k)) is not None}
    missing = sorted(set(keys) - set(results))
    if missing:
        print(f"not evaluated yet: {missing}")
    # the commands that evaluated each part (this invocation may only have collected them)
    made_by = {k: json.loads(part_path(k).read_text())["meta"]["command"] for k in results}
    summary = summarise(results)
    meta = {**meta, "trained_rows": any(k in results for k in keys[:trained]),
            "checkpoints": {k: describe_checkpoint(p) for k, p in named.items()}}
    write_json(json_path, {"meta": meta, "made_by": made_by, "results": results,
                           "summary": summary})
    table = markdown(summary, meta)
    write_text(out / f"{name}.md", table)
    plot(results, out / f"{name}.png")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
