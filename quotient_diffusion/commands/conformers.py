"""``qdiff conformers INPUT -n 10 -o out.sdf``: 3D conformers from molecular graphs.

How INPUT is read: it is a file only when it ends in .smi, .txt, .csv or .sdf (any case), or is
'-' (standard input, one SMILES per line); anything else is a SMILES string, even when a file
of that name exists. --input-format smiles|smi|csv|sdf overrides the rule.
  .smi/.txt  a SMILES per line, then optionally whitespace and a name (the rest of the line,
             spaces allowed); '#' lines and a first line starting with 'smiles' are skipped
  .csv       read as CSV (quoted fields allowed); a header row with a 'smiles' column picks
             it (and a 'name', 'id' or 'title' column for the names), else column 1 is the
             SMILES and column 2 the name
  .sdf       every record, with its stereo; its title is the name

Sampler: by default the ODE with DPM-Solver++(2M) on a power time grid with its last interior
point at 0.99, t_k = 0.99 (1 - (1 - k/(K-1))^1.5) for k < K, K = 8 network evaluations: level
with the previous default, 10 steps on t_k = 1 - (1 - k/K)^2, in AMR-R and bond lengths
(benchmarks/sampler_steps.py), at 0.8x its time. --solver, --schedule, --rho, --last-time and
--steps change it (--steps 10 --rho 2 --last-time 0 is the previous default);
--method sde takes 50 Euler-Maruyama steps on the uniform grid.

Models: two ship with the package. --model qm9 was trained on QM9's DFT geometries and takes
the elements H C N O F, at most 18 heavy atoms and neutral molecules only; --model druglike was
trained on PDB ligand geometries (the Chemical Component Dictionary) and takes H C N O F S Cl Br,
up to 60 heavy atoms and net charges. --model auto (the default) gives each input the QM9 model
when that takes it and it has at most 9 heavy atoms, else the drug-like model; the SDF
property 'checkpoint' names the model of each conformer. --checkpoint uses a trained model
instead, whose limits are those its training task records (a CCD model's as the drug-like one's;
the task option max_heavy_atoms overrides the size limit). Inputs above the training molecules'
size get a warning.

Every conformer goes to one SDF (-o -: standard output) with its properties, among them
geometry_ok and max_bond_error_A (bond lengths against UFF's, clashes) and stereo_repair. A
sample whose stereo (R/S, E/Z) is wrong is mirrored when that mends it, else replaced by a new
sample (up to 3 extra rounds), else dropped. Inputs that cannot be handled are reported on
stderr with their line number; the others still come out.

Exit code: 0 every input got conformers, 1 some did not (the others are written), 2 nothing
could be done (bad arguments, input, model or output), 130 interrupted (Ctrl-C; the finished
conformers are written).
"""

from __future__ import annotations

import argparse
import sys
import time

from ..chem.inputs import FORMATS
from .arguments import positive_int
from .sampler_options import add_sampler_arguments, sampler_from_arguments

#: the default ODE sampler, as --help shows it (quotient_diffusion.tasks.conformers.DEFAULT_SAMPLER,
#: written out so that building the parser imports no torch; tests check they agree)
ODE_DEFAULT = "8 steps of the dpm2m solver, power grid, rho 1.5, last time 0.99"
#: --model's choices: quotient_diffusion.conformers.BUNDLED_MODELS and auto (written out, as above)
MODELS = ("auto", "qm9", "druglike")


def register(sub) -> None:
    p = sub.add_parser(
        "conformers",
        help="generate 3D conformers for SMILES (bundled QM9 and drug-like models)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", help="a SMILES string, or a .smi/.txt/.csv/.sdf file, or - (stdin)")
    p.add_argument("--input-format", choices=FORMATS, default="auto",
                   help="how to read INPUT (default auto: by its extension, see above)")
    p.add_argument("-n", "--num-conformers", type=positive_int, default=10)
    p.add_argument("-o", "--output", required=True, help="output SDF file ('-': stdout)")
    p.add_argument("--model", choices=MODELS, default="auto",
                   help="bundled model (default auto: the QM9 model for small molecules it "
                        "takes, the drug-like model for the rest; see above)")
    p.add_argument("--checkpoint", help="a trained conformer model instead of a bundled one; the "
                   "elements, sizes and charges accepted are its own")
    p.add_argument("--mmff", action="store_true", help="relax every conformer with MMFF94")
    add_sampler_arguments(p, default_steps=50, ode_default=ODE_DEFAULT)
    p.set_defaults(func=run)


def _say(message: str) -> None:
    print(f"qdiff conformers: {message}", file=sys.stderr)


def _report_inputs(jobs, kind: str) -> None:
    unit = "record" if kind == "sdf" else "line"
    for job in jobs:
        where = "input" if kind == "smiles" else f"{unit} {job.number}"
        label = f"{where} ({job.text})" if job.text else where
        if job.error:
            _say(f"{label}: {job.error}")
        for warning in job.warnings:
            _say(f"{label}: warning: {warning}")


def _records(jobs, results, models, args, kind: str, sampler: str) -> list[tuple]:
    """The records of :meth:`ConformerTask.write` (mol, positions, name, properties) of every
    conformer on the jobs' mols; ``models`` gives each job's (checkpoint label, task)."""
    where = "input_record" if kind == "sdf" else "input_line"
    records = []
    for job, result, (label, task) in zip(jobs, results, models):
        model = f"{task.config.model.network}/{task.config.model.treatment}"
        for k, conf in enumerate(job.mol.GetConformers()):
            props = {where: job.number, "smiles": job.text, "conformer": k,
                     **conf.GetPropsAsDict(), "seed": args.seed}
            if props["source"] == "model":
                props.update(model=model, checkpoint=label, sampler=sampler)
            if result is not None:
                props["stereo_dropped"] = result.dropped
            if job.warnings:
                props["warning"] = "; ".join(job.warnings)
            records.append((job.mol, conf.GetPositions(), job.name, props))
    return records


def _summary(records: list[tuple], results, requested: int) -> list[str]:
    """Lines for stderr: the geometry check and the stereo repairs."""
    from ..chem.geometry import BOND_TOLERANCE
    from ..tasks.conformers import STEREO_ROUNDS

    props = [r[3] for r in records]
    good = sum(p["geometry_ok"] for p in props)
    worst = max((p["max_bond_error_A"] for p in props), default=0.0)
    lines = [f"geometry: {good} of {len(props)} conformers pass (bond lengths within "
             f"{BOND_TOLERANCE} A of UFF's, no clash); largest bond error {worst:.2f} A"]
    if results is not None:
        mirrored = sum(r.mirrored for r in results)
        resampled = sum(r.resampled for r in results)
        dropped = sum(r.dropped for r in results)
        lines.append(f"stereo: {mirrored} mirrored, {resampled} resampled, {dropped} of "
                     f"{requested} dropped (wrong after "
                     f"{STEREO_ROUNDS} extra rounds)")
    return lines


def run(args: argparse.Namespace) -> int:
    from ..output import STDOUT, check_output

    check_output(args.output)  # before any work: a bad path fails at once

    from ..chem.inputs import read_inputs
    from ..conformers import (
        DEFAULT_SAMPLER,
        bundled_model,
        choose_model,
        embed_molecules,
        load_conformer_model,
        prepare_jobs,
    )

    sampler = sampler_from_arguments(args, DEFAULT_SAMPLER)  # bad options fail before any work
    try:
        kind, inputs = read_inputs(args.input, args.input_format)
    except (OSError, UnicodeDecodeError) as err:
        _say(str(err))
        return 2
    if not inputs:
        _say("the input holds no SMILES")
        return 2
    if args.checkpoint is not None and args.model != "auto":
        _say("give --model or --checkpoint, not both")
        return 2
    # the file that sets which molecules are taken: auto's drug-like model takes a superset of
    # what the QM9 model takes
    limiting = args.checkpoint or bundled_model("druglike" if args.model == "auto" else args.model)
    try:
        task, _ = load_conformer_model(limiting)
    except (OSError, ValueError) as err:
        _say(f"cannot load the model: {err}")
        return 2
    jobs = prepare_jobs(inputs, task.limits)  # the molecules this model takes
    _report_inputs(jobs, kind)
    ok = [j for j in jobs if j.error is None]
    if not ok:
        return 2
    if args.checkpoint is not None:
        models = [(args.checkpoint, task)] * len(ok)
    else:
        names = [choose_model(j.mol) if args.model == "auto" else args.model for j in ok]
        models = [(f"bundled {name}", load_conformer_model(bundled_model(name))[0])
                  for name in names]
    requested = args.num_conformers * len(ok)
    t0 = time.perf_counter()
    try:
        results = embed_molecules([j.mol for j in ok], args.num_conformers, seed=args.seed,
                                  mmff=args.mmff, checkpoint=args.checkpoint, sampler=sampler,
                                  model=args.model)
    except KeyboardInterrupt:
        records = _records(ok, [None] * len(ok), models, args, kind, sampler.label())
        if records:
            task.write(records, args.output)
        print(f"interrupted: wrote {len(records)} of {requested} conformers to {args.output}",
              file=sys.stderr)
        return 130
    elapsed = time.perf_counter() - t0
    records = _records(ok, results, models, args, kind, sampler.label())
    empty = [j for j, r in zip(ok, results) if not r.ids]
    for job in empty:
        _say(f"{job.text}: no conformer kept the requested stereo")
    if records:
        task.write(records, args.output)
    for line in _summary(records, results, requested):
        _say(line)
    shown = "standard output" if args.output == STDOUT else args.output
    _say(f"wrote {len(records)} conformers of {len(ok) - len(empty)} molecule(s) to {shown} "
         f"({1000 * elapsed / max(len(records), 1):.1f} ms per conformer)")
    if not records:
        return 2
    return 0 if len(ok) - len(empty) == len(jobs) else 1
