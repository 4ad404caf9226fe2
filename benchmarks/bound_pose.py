"""How well do generated conformers reproduce protein-bound ligand poses? (issue 19, item 3)

Sets (``--sets``):

* ``genentech_neutral`` (648) and ``genentech_charged`` (382): the Genentech PDB ligands of
  ``$QD_DATA/druglike`` (X-ray poses with good density, hydrogens added; README there). In the
  charged file the proton that charges a nitrogen is missing: 274 N+ atoms of 259 ligands
  (ammonium 199, iminium/amidinium/guanidinium 70, pyridinium-like 5) carry the +1 charge but
  one hydrogen atom too few, which RDKit reads as an implicit hydrogen. Those hydrogens are
  added with coordinates (``Chem.AddHs(addCoords=True)``) and the stereo re-perceived from the
  3D pose (with one H, C=[NH2+] looked like a stereo double bond); the heavy-atom pose is
  untouched. The count is in the results (``hydrogens_added``).
* ``ccd_test``: the held-out Bemis-Murcko scaffold test split of the drug-like CCD set
  (:func:`quotient_diffusion.data.ccd.load_ccd`, ``subset("test")``: 10-60 heavy atoms,
  experimental coordinates of one PDB entry each; built once, a few minutes, then cached). The
  CCD set already excludes the Genentech ligands and the evaluation components.

``--molecules K`` takes a fixed random subset of K per set (default: all of them).

Methods, each generating ``max(--counts)`` conformers per molecule once (seeded per molecule
from ``--seed`` and the molecule's id, so a molecule's conformers do not depend on which others
are selected); conformer count N uses the first N of them:

* ``etkdg``: RDKit ``EmbedMultipleConfs`` with ETKDGv3, one thread, no pruning. Where it embeds
  nothing it is retried once with random starting coordinates (RDKit's advice for strained
  systems, as benchmarks/conformers.py does); the runs needing the retry (``fallback``), giving
  fewer conformers than asked (``short``) or none at all (``failed``, not accepted) are counted.
* ``etkdg+mmff``: the same conformers (same seed: the embedding is shared and its time counted
  in both rows), then ``MMFFOptimizeMoleculeConfs`` (MMFF94, 500 iterations, one thread). A
  molecule MMFF cannot parameterise keeps its ETKDG conformers (counted: ``mmff_no_params``).
* the diffusion model of ``--checkpoint`` (row ``--model-name``, default ``model``) and/or the
  bundled QM9 model (``--bundled``, row ``bundled_qm9``), loaded with
  :func:`quotient_diffusion.tasks.load` and sampled with
  :func:`quotient_diffusion.tasks.generate` (the library's sampling loop: ``--max-atoms`` atoms
  per batch, the command's default sampler ``quotient_diffusion.conformers.DEFAULT_SAMPLER``
  unless ``--sample-steps`` or ``--method sde`` with its ``--noise-scale``), raw samples mirrored where that gives the requested stereo
  (``fix_stereo``, as benchmarks/conformers.py scores them; the fraction with the requested
  stereo is reported). ``--model-mmff`` adds a row with each sample relaxed by MMFF94. A
  molecule the model cannot take is refused, counted by reason, not sampled: the command's
  rules with the model's limits (``quotient_diffusion.conformers.check_molecule`` with
  ``task.limits``: for the bundled QM9 model H C N O F, neutral, at most 18 heavy atoms, so it
  refuses most ligands; for a CCD model its 8 elements, up to 60 heavy atoms, charges
  allowed). Without a model the model rows are skipped with a message.

Spread: for each molecule and method, the median over pairs of its conformers of their
heavy-atom RMSD after superposition (identity atom map, no symmetry: a measure of diversity);
per method the median over molecules (passes stored before it was recorded have none).

Score: for each molecule and N, the best heavy-atom RMSD to the experimental pose over the first
N conformers, after the best symmetry-aware superposition: ``rdMolAlign.GetBestRMS`` on
hydrogen-free copies (``Chem.RemoveAllHs``; conjugated terminal groups such as carboxylates
symmetrised, RDKit's default). Guard against huge symmetry: at most ``--max-matches``
(default 10,000) atom maps are tried; molecules whose self-match count reaches it are counted
(``symmetry_capped``; their RMSD is then an upper bound). Per set and method: molecules,
accepted, median best RMSD over the accepted molecules, fraction under 1 A and 2 A (of the
accepted and of all molecules), and the time per conformer of generation in this run (wall
time, one thread; mean = total time / conformers, and the median over molecules), scoring not
counted. Where a model row exists, every other method's median is also given on the molecules
that model accepted (the same molecules).

Results: benchmarks/results/bound_pose[_quick].json (settings, summaries, per-molecule best
RMSDs and times), .md (the tables, written with benchmarks/_results.py) and .png (median best
RMSD against N, log x, per method and set). Each (set, method) pass is saved molecule by
molecule under ``<name>_parts/``; a rerun with the same settings (and model file) continues
where it stopped, so the timings of a resumed pass come from more than one session.

Published reference points (context only, other sets and protocols): on the Platinum set of
protein-bound ligands, commercial generators reach a median best RMSD of 0.46-0.61 A with up to
250 conformers, CONFORGE 0.41 A; issue 19 measured ETKDG within 1 A of the bound pose for 66%
of 100 held-out drug-like ligands, median best RMSD 0.72 A, with 20 conformers each.

    OMP_NUM_THREADS=1 python benchmarks/bound_pose.py --quick            # about a minute
    OMP_NUM_THREADS=1 python benchmarks/bound_pose.py --checkpoint training_runs/x/final.pt
    OMP_NUM_THREADS=1 python benchmarks/bound_pose.py --quick --bundled

Cost: the quick run measured ETKDG at 10-50 ms per conformer and ETKDG + MMFF at 20-100 ms
on this machine (one thread, loaded), so the default run (all 2,572 molecules x 250 conformers)
is of the order of 10 CPU-hours for the RDKit rows alone: choose with ``--sets`` and
``--molecules``; passes resume. Run the timed passes on an otherwise idle machine: timings next
to other work are slower and not comparable (the JSON records the load average at the start).

Genentech molecules are named by their ``fullStructID`` (PDB entry, ligand, chain, residue); a
few ligands appear in more than one entry (646 distinct molecules among the 648 neutral poses,
378 among the 382 charged): each pose is a molecule here. All 1,030 records sanitise in RDKit.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from _results import (
    RESULTS,
    ROOT,
    command,
    machine,
    markdown_table,
    save_figure,
    write_json,
    write_text,
)

from quotient_diffusion.errors import InputError
from quotient_diffusion.output import check_output

SETS = ("genentech_neutral", "genentech_charged", "ccd_test")
GENENTECH = {"genentech_neutral": "druglike/genentech_pdb_ligands_neutral.sdf",
             "genentech_charged": "druglike/genentech_pdb_ligands_charged.sdf"}
COUNTS = (10, 50, 250)
QUICK_COUNTS = (5, 10)
QUICK_MOLECULES = 8
MAX_MATCHES = 10_000
MMFF_ITERS = 500
BUNDLED_LABEL = "bundled_qm9"
PART_VERSION = 1


class UsageError(Exception):
    """Bad input: a missing data file, an unreadable checkpoint, a bad option or output folder
    (one line on stderr, exit status 2)."""


# ------------------------------------------------------------------------------ the sets
@dataclass
class Ligand:
    """One reference: an id, the RDKit molecule (explicit hydrogens, the experimental pose as
    its conformer) and its heavy-atom count."""

    id: str
    mol: object
    heavy: int


def read_genentech(path: Path) -> tuple[list[Ligand], dict]:
    """The ligands of one Genentech SDF and what reading it took (records, unreadable ones,
    molecules whose missing hydrogens were added)."""
    from rdkit import Chem

    supplier = Chem.SDMolSupplier(str(path), removeHs=False)
    ligands, unreadable, added, seen = [], [], 0, Counter()
    for k in range(len(supplier)):
        mol = supplier[k]
        if mol is None:
            unreadable.append(k)
            continue
        if any(a.GetNumImplicitHs() for a in mol.GetAtoms()):
            mol = Chem.AddHs(mol, addCoords=True)
            Chem.AssignStereochemistryFrom3D(mol, replaceExistingTags=True)
            added += 1
        name = mol.GetProp("fullStructID") if mol.HasProp("fullStructID") else f"record{k}"
        seen[name] += 1
        if seen[name] > 1:
            name = f"{name}#{seen[name]}"
        ligands.append(Ligand(name, mol, mol.GetNumHeavyAtoms()))
    info = {"file": str(path), "records": len(supplier), "unreadable": len(unreadable),
            "unreadable_records": unreadable, "hydrogens_added": added}
    return ligands, info


def read_ccd_test(data_dir: str | None) -> tuple[list[Ligand], dict]:
    from quotient_diffusion.data.ccd import cache_path, load_ccd

    if not cache_path(data_dir).exists():
        print("building the drug-like CCD set (once, a few minutes)", flush=True)
    ccd = load_ccd(data_dir, progress=False)
    entries = ccd.subset("test")
    ligands, failed = [], []
    for i in entries.tolist():
        try:
            mol = ccd.molecule(i)
        except Exception:  # RDKit raises several types; the set was sanitised when built
            failed.append(ccd.code[i])
            continue
        ligands.append(Ligand(ccd.code[i], mol, mol.GetNumHeavyAtoms()))
    info = {"cache": str(cache_path(data_dir)), "records": int(len(entries)),
            "unreadable": len(failed), "unreadable_records": failed, "hydrogens_added": 0}
    return ligands, info


def load_set(name: str, data_dir: str | None) -> tuple[list[Ligand], dict]:
    """(ligands, reading info) of one set; :class:`UsageError` when its data are missing."""
    from quotient_diffusion.data.paths import data_root

    try:
        if name == "ccd_test":
            return read_ccd_test(data_dir)
        relative = GENENTECH[name]
        return read_genentech(data_root(data_dir, required=relative) / relative)
    except (FileNotFoundError, ImportError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UsageError(f"set {name}: {first}") from None
    except OSError as err:
        raise UsageError(f"set {name}: cannot read its data ({err})") from None


def select(ligands: list[Ligand], count: int | None, seed: int = 0) -> list[Ligand]:
    """A fixed random subset of ``count`` ligands (all when None), in file order."""
    if count is None or count >= len(ligands):
        return ligands
    keep = np.sort(np.random.RandomState(seed).permutation(len(ligands))[:count])
    return [ligands[k] for k in keep]


def molecule_seed(seed: int, set_name: str, ligand_id: str) -> int:
    """A positive 31-bit seed for one molecule: the run's seed and the molecule's identity."""
    return 1 + zlib.crc32(f"{seed}/{set_name}/{ligand_id}".encode()) % (2**31 - 2)


# ------------------------------------------------------------------------------ scoring
class PoseScorer:
    """Best heavy-atom RMSDs of conformers of a ligand to its experimental pose
    (``GetBestRMS`` on hydrogen-free copies, at most ``max_matches`` atom maps)."""

    def __init__(self, ligand: Ligand, max_matches: int = MAX_MATCHES):
        from rdkit import Chem

        self.mol = ligand.mol
        self.ref = Chem.RemoveAllHs(ligand.mol)
        self.max_matches = max_matches
        matches = self.ref.GetSubstructMatches(self.ref, uniquify=False, useChirality=False,
                                               maxMatches=max_matches)
        self.capped = len(matches) >= max_matches

    def rmsds(self, positions: list[np.ndarray]) -> list[float]:
        """The RMSD (A) of each conformer (positions of every atom, in the ligand's order)."""
        from rdkit import Chem
        from rdkit.Chem import rdMolAlign

        if not positions:
            return []
        probe = Chem.Mol(self.mol)
        probe.RemoveAllConformers()
        for pos in positions:
            conf = Chem.Conformer(probe.GetNumAtoms())
            conf.SetPositions(np.asarray(pos, dtype=np.float64))
            conf.Set3D(True)
            probe.AddConformer(conf, assignId=True)
        probe = Chem.RemoveAllHs(probe)
        return [float(rdMolAlign.GetBestRMS(probe, self.ref, prbId=c.GetId(),
                                            maxMatches=self.max_matches))
                for c in probe.GetConformers()]


def spread(mol, positions: list[np.ndarray]) -> float | None:
    """The median over pairs of conformers of their heavy-atom RMSD after superposition
    (identity atom map, :func:`quotient_diffusion.metrics.conformers.pairwise_rmsd`): how
    different a method's conformers of one molecule are (None below two conformers)."""
    from quotient_diffusion.metrics.conformers import pairwise_rmsd

    if len(positions) < 2:
        return None
    heavy = [a.GetIdx() for a in mol.GetAtoms() if a.GetAtomicNum() > 1]
    return round(float(np.median(pairwise_rmsd(np.stack(positions)[:, heavy]))), 4)


def best_by_count(rmsds: list[float], counts) -> dict[str, float | None]:
    """The best RMSD over the first N conformers for each N (None: no conformer)."""
    return {str(n): (round(min(rmsds[:n]), 4) if rmsds else None) for n in counts}


# ------------------------------------------------------------------------------ methods
def etkdg_records(ligand: Ligand, seed: int, count: int, scorer: PoseScorer, counts) -> dict:
    """The ``etkdg`` and ``etkdg+mmff`` records of one molecule (one shared embedding)."""
    from rdkit import Chem
    from rdkit.Chem import AllChem

    mol = Chem.Mol(ligand.mol)
    mol.RemoveAllConformers()
    params = AllChem.ETKDGv3()
    params.randomSeed = seed
    params.numThreads = 1
    t0 = time.perf_counter()
    ids = list(AllChem.EmbedMultipleConfs(mol, numConfs=count, params=params))
    fallback = not ids
    if fallback:
        params.useRandomCoords = True
        ids = list(AllChem.EmbedMultipleConfs(mol, numConfs=count, params=params))
    embed_s = time.perf_counter() - t0
    raw = [mol.GetConformer(i).GetPositions() for i in ids]
    t0 = time.perf_counter()
    has_params = bool(ids) and AllChem.MMFFHasAllMoleculeParams(mol)
    unconverged = 0
    if has_params:
        results = AllChem.MMFFOptimizeMoleculeConfs(mol, numThreads=1, maxIters=MMFF_ITERS)
        unconverged = sum(1 for flag, _ in results if flag != 0)
    mmff_s = time.perf_counter() - t0
    relaxed = [mol.GetConformer(i).GetPositions() for i in ids]
    status = "ok" if ids else "failed: no conformer embedded"
    base = {"id": ligand.id, "heavy": ligand.heavy, "status": status, "conformers": len(ids),
            "symmetry_capped": scorer.capped, "fallback": fallback, "short": 0 < len(ids) < count}
    return {
        "etkdg": {**base, "seconds": embed_s, "spread": spread(mol, raw),
                  "best_rmsd": best_by_count(scorer.rmsds(raw), counts)},
        "etkdg+mmff": {**base, "seconds": embed_s + mmff_s, "mmff_no_params": bool(ids)
                       and not has_params, "mmff_unconverged": unconverged,
                       "spread": spread(mol, relaxed),
                       "best_rmsd": best_by_count(scorer.rmsds(relaxed), counts)},
    }


def refusal(task, mol) -> tuple[str, str] | None:
    """(kind, reason) why the model of ``task`` is not asked for ``mol`` (the command's rules
    with that model's limits, ``check_molecule(mol, task.limits)``); None if it is."""
    from quotient_diffusion.conformers import check_molecule

    reason = check_molecule(mol, task.limits)
    if reason is None:
        return None
    kind = ("heavy_atoms" if "heavy atoms" in reason else "charge" if "charge" in reason else
            "elements" if "element" in reason else "fragments" if "fragments" in reason else
            "other")
    return kind, reason


@dataclass
class Model:
    """A conformer model to measure: its row label, file, task and network."""

    label: str
    path: Path
    task: object
    net: object
    sha256: str


def shown(path: Path) -> str:
    """``path`` relative to the repository where it lies inside it (as the results show it)."""
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def load_model(label: str, path: Path) -> Model:
    from quotient_diffusion.tasks import load

    if not path.is_file():
        raise UsageError(f"checkpoint {path}: no such file")
    try:
        task, net = load(path, "conformers")
    except (OSError, ValueError, RuntimeError, EOFError) as err:  # InputError is a ValueError
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UsageError(f"cannot load the model {path}: {first}") from None
    return Model(label, path, task, net, hashlib.sha256(path.read_bytes()).hexdigest())


def model_records(model: Model, ligand: Ligand, seed: int, count: int, scorer: PoseScorer,
                  counts, args) -> dict:
    """The record(s) of one molecule for a model (and its +mmff row with ``--model-mmff``)."""
    from quotient_diffusion.conformers import fix_stereo, relax_mmff
    from quotient_diffusion.tasks import generate

    labels = [model.label] + ([f"{model.label}+mmff"] if args.model_mmff else [])
    base = {"id": ligand.id, "heavy": ligand.heavy, "symmetry_capped": scorer.capped}
    refused = refusal(model.task, ligand.mol)
    if refused is not None:
        record = {**base, "status": f"refused: {refused[1]}", "refusal": refused[0],
                  "conformers": 0, "seconds": 0.0, "best_rmsd": best_by_count([], counts)}
        return {label: dict(record) for label in labels}
    generator = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    samples = [pos for batch in generate(model.task, model.net, [ligand.mol], args.sampler,
                                         generator, copies=count, max_atoms=args.max_atoms)
               for _, pos in batch]
    fixed = [fix_stereo(ligand.mol, pos) for pos in samples]
    sample_s = time.perf_counter() - t0
    positions = [pos for pos, _ in fixed]
    stereo_ok = float(np.mean([ok for _, ok in fixed])) if fixed else None
    status = "ok" if positions else "failed: no sample"
    out = {model.label: {**base, "status": status, "conformers": len(positions),
                         "seconds": sample_s, "stereo_ok": stereo_ok,
                         "spread": spread(ligand.mol, positions),
                         "best_rmsd": best_by_count(scorer.rmsds(positions), counts)}}
    if args.model_mmff:
        t0 = time.perf_counter()
        relaxed = [relax_mmff(ligand.mol, pos)[0] for pos in positions]
        out[labels[1]] = {**out[model.label], "seconds": sample_s + time.perf_counter() - t0,
                          "spread": spread(ligand.mol, relaxed),
                          "best_rmsd": best_by_count(scorer.rmsds(relaxed), counts)}
    return out


# ------------------------------------------------------------------------------ passes
def run_pass(set_name: str, ligands: list[Ligand], kind: str, meta: dict, parts: Path,
             compute, fresh: bool) -> tuple[dict[str, list[dict]], float | None]:
    """Records (method -> one per ligand, in order) of one pass over a set, continuing the
    part file ``parts/<set>__<kind>.json`` when its settings are these (``meta``), and the
    load average when the pass first started (None: not recorded)."""
    path = parts / f"{set_name}__{kind.replace('+', '_')}.json"
    done: dict[str, dict] = {}
    load = None  # the load average when the pass first started (absent from older part files)
    if path.exists() and not fresh:
        try:
            stored = json.loads(path.read_text())
        except (OSError, ValueError):
            stored = {}
        if stored.get("meta") == meta:
            done = stored["records"]
            load = stored.get("load_average_at_start")
        else:
            print(f"{path.name}: other settings; starting this pass afresh", flush=True)
    todo = [lig for lig in ligands if lig.id not in done]
    if todo:
        print(f"{set_name} / {kind}: {len(todo)} molecule(s) to do "
              f"({len(ligands) - len(todo)} stored)", flush=True)
    if todo and load is None:
        load = round(os.getloadavg()[0], 2)
    for k, ligand in enumerate(todo, 1):
        done[ligand.id] = compute(ligand)
        write_json(path, {"meta": meta, "load_average_at_start": load, "records": done},
                   indent=None)
        if k % 25 == 0 or k == len(todo):
            print(f"  {k}/{len(todo)}", flush=True)
    methods = list(done[ligands[0].id]) if ligands else []
    return {m: [done[lig.id][m] for lig in ligands] for m in methods}, load


# ------------------------------------------------------------------------------ summaries
def _fraction(hits: int, total: int) -> float | None:
    return hits / total if total else None


def summarise(records: list[dict], counts) -> dict:
    """Counts, per-N medians and fractions, and the time per conformer of one method on one
    set."""
    accepted = [r for r in records if r["status"] == "ok"]
    out = {"molecules": len(records), "accepted": len(accepted),
           "refused": sum(r["status"].startswith("refused") for r in records),
           "failed": sum(r["status"].startswith("failed") for r in records),
           "symmetry_capped": sum(bool(r.get("symmetry_capped")) for r in records),
           "by_count": {}}
    for n in counts:
        values = np.array([r["best_rmsd"][str(n)] for r in accepted], dtype=float)
        out["by_count"][str(n)] = {
            "median": float(np.median(values)) if len(values) else None,
            "mean": float(np.mean(values)) if len(values) else None,
            "under_1A": _fraction(int((values < 1).sum()), len(values)),
            "under_2A": _fraction(int((values < 2).sum()), len(values)),
            "under_1A_of_all": _fraction(int((values < 1).sum()), len(records)),
            "under_2A_of_all": _fraction(int((values < 2).sum()), len(records))}
    made = [r for r in accepted if r["conformers"]]
    conformers = sum(r["conformers"] for r in made)
    out["ms_per_conformer_mean"] = (1000 * sum(r["seconds"] for r in made) / conformers
                                    if conformers else None)
    out["ms_per_conformer_median_molecule"] = (
        float(np.median([1000 * r["seconds"] / r["conformers"] for r in made])) if made
        else None)
    out["conformers"] = conformers
    if any("fallback" in r for r in records):
        out["embedding"] = {"fallback": sum(r["fallback"] for r in records),
                            "short": sum(r["short"] for r in records),
                            "failed": out["failed"]}
    if any("mmff_no_params" in r for r in records):
        out["mmff_no_params"] = sum(r["mmff_no_params"] for r in records)
        out["mmff_unconverged_conformers"] = sum(r["mmff_unconverged"] for r in records)
    if any("refusal" in r for r in records):
        out["refusals"] = dict(Counter(r["refusal"] for r in records if "refusal" in r))
    spreads = [r["spread"] for r in accepted if r.get("spread") is not None]
    if spreads:  # absent from passes stored before the spread was recorded
        out["spread_median"] = float(np.median(spreads))
    stereo = [r["stereo_ok"] for r in accepted if r.get("stereo_ok") is not None]
    if stereo:
        out["stereo_ok"] = float(np.mean(stereo))
    return out


#: heavy-atom bins of the by-size table (inclusive bounds)
SIZE_BINS = ((1, 19), (20, 24), (25, 29), (30, 34), (35, 200))


def by_size(records: dict[str, list[dict]], counts) -> dict:
    """Per heavy-atom bin (:data:`SIZE_BINS`) and method: the molecules it accepted there,
    the median best RMSD at the largest N, the median time per conformer (ms) and the median
    spread."""
    n = str(max(counts))
    out = {}
    for lo, hi in SIZE_BINS:
        row = {}
        for method, recs in records.items():
            made = [r for r in recs if r["status"] == "ok" and r["conformers"]
                    and lo <= r["heavy"] <= hi]
            spreads = [r["spread"] for r in made if r.get("spread") is not None]
            row[method] = {
                "molecules": len(made),
                "median": float(np.median([r["best_rmsd"][n] for r in made])) if made else None,
                "ms_per_conformer_median": (float(np.median([1000 * r["seconds"] / r["conformers"]
                                                             for r in made])) if made else None),
                "spread_median": float(np.median(spreads)) if spreads else None}
        out[f"{lo}-{hi}"] = row
    return out


def paired_medians(records: dict[str, list[dict]], model_label: str, counts) -> dict:
    """Each method's median best RMSD per N on the molecules that ``model_label`` accepted
    (and that method too)."""
    keep = [r["status"] == "ok" for r in records[model_label]]
    out = {}
    for method, recs in records.items():
        both = [r for r, k in zip(recs, keep) if k and r["status"] == "ok"]
        out[method] = {"molecules": len(both), **{
            str(n): float(np.median([r["best_rmsd"][str(n)] for r in both])) if both else None
            for n in counts}}
    return out


def columns(records: list[dict], counts) -> dict:
    """The per-molecule results of one method, compactly (one list per quantity)."""
    return {"status": [r["status"] for r in records],
            "conformers": [r["conformers"] for r in records],
            "seconds": [round(r["seconds"], 4) for r in records],
            "best_rmsd": {str(n): [r["best_rmsd"][str(n)] for r in records] for n in counts}}


# ------------------------------------------------------------------------------ output
def _num(value, fmt: str = ".2f") -> str:
    return "—" if value is None else format(value, fmt)


def _pct(value) -> str:
    return "—" if value is None else f"{100 * value:.0f}"


def markdown(payload: dict) -> str:
    s = payload["settings"]
    counts = s["counts"]
    lines = [f"Bound-pose reproduction: best heavy-atom RMSD to the experimental pose over the "
             f"first N of {max(counts)} conformers (RDKit GetBestRMS, hydrogen-free, at most "
             f"{s['max_matches']:,} atom maps). Command: `{payload['command']}`.",
             "",
             f"Time per conformer: generation wall time in this run, {s['threads']} thread(s); "
             f"{payload['machine']['note']} Model sampler: {s['sampler'] or '—'}. "
             f"{'; '.join(payload['model_notes'])}", ""]
    for name, data in payload["sets"].items():
        info = data["info"]
        lines += [f"## {name}", "",
                  f"{data['selected']} of {info['records']} molecules "
                  f"(unreadable {info['unreadable']}, hydrogens added to "
                  f"{info['hydrogens_added']}).", ""]
        rows = []
        for method, m in data["methods"].items():
            for n in counts:
                c = m["by_count"][str(n)]
                rows.append([method, str(m["molecules"]), str(m["accepted"]), str(n),
                             _num(c["median"]), _pct(c["under_1A"]), _pct(c["under_2A"]),
                             _pct(c["under_1A_of_all"]), _num(m["ms_per_conformer_mean"], ".1f"),
                             _num(m["ms_per_conformer_median_molecule"], ".1f")])
        lines += markdown_table(["method", "molecules", "accepted", "N",
                                 "median best RMSD (Å)", "< 1 Å (% acc.)", "< 2 Å (% acc.)",
                                 "< 1 Å (% all)", "ms / conf. (mean)",
                                 "ms / conf. (median mol.)"], rows, "lllrrrrrrr")
        notes = []
        for method, m in data["methods"].items():
            extra = []
            if "embedding" in m and method == "etkdg":
                e = m["embedding"]
                extra.append(f"embedding: {e['failed']} failed, {e['fallback']} needed random "
                             f"coordinates, {e['short']} gave fewer conformers than asked")
            if m.get("mmff_no_params"):
                extra.append(f"{m['mmff_no_params']} without MMFF parameters (kept unrelaxed)")
            if m.get("refusals"):
                extra.append("refused: " + ", ".join(f"{v} {k}" for k, v in
                                                     sorted(m["refusals"].items())))
            if "spread_median" in m:
                extra.append(f"spread {m['spread_median']:.2f} Å (median over molecules of the "
                             "median pairwise RMSD of its conformers)")
            if "stereo_ok" in m:
                extra.append(f"{100 * m['stereo_ok']:.0f}% of samples with the requested stereo "
                             "(after mirroring)")
            if m["symmetry_capped"]:
                extra.append(f"{m['symmetry_capped']} at the atom-map cap")
            if extra:
                notes.append(f"{method}: {'; '.join(extra)}.")
        if notes:
            lines += ["", *notes]
        if data.get("by_size"):
            n = max(counts)
            methods = list(data["methods"])
            lines += ["", f"By size (heavy atoms): median best RMSD at N = {n} (Å) / median ms "
                          "per conformer / median spread (Å), each method on the molecules it "
                          "accepted (their count in brackets):", ""]
            lines += markdown_table(
                ["heavy atoms", *methods],
                [[bin_name, *(f"{_num(c['median'])} / {_num(c['ms_per_conformer_median'], '.1f')}"
                              f" / {_num(c['spread_median'])} ({c['molecules']})"
                              for c in (row[m] for m in methods))]
                 for bin_name, row in data["by_size"].items()],
                "l" + "r" * len(methods))
        for label, paired in data.get("on_model_accepted", {}).items():
            accepted = paired[label]["molecules"]
            if accepted in (0, data["selected"]):  # nothing to compare, or the table above
                continue
            lines += ["", f"On the {accepted} molecules {label} accepted "
                          "(median best RMSD, Å):", ""]
            lines += markdown_table(["method", "molecules", *(f"N = {n}" for n in counts)],
                                    [[method, str(p["molecules"]),
                                      *(_num(p[str(n)]) for n in counts)]
                                     for method, p in paired.items()],
                                    "l" + "r" * (1 + len(counts)))
        lines.append("")
    return "\n".join(lines)


def plot(payload: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullLocator

    sets = payload["sets"]
    counts = payload["settings"]["counts"]
    fig, axes = plt.subplots(1, len(sets), figsize=(4.2 * len(sets), 3.6), squeeze=False,
                             sharey=True)
    for ax, (name, data) in zip(axes[0], sets.items()):
        for method, m in data["methods"].items():
            y = [m["by_count"][str(n)]["median"] for n in counts]
            ax.plot(counts, [np.nan if v is None else v for v in y], marker="o",
                    label=f"{method} ({m['accepted']}/{m['molecules']})")
        ax.set_xscale("log")
        ax.set_xticks(counts)
        ax.set_xticklabels([str(n) for n in counts])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xlabel("conformers per molecule (N)")
        ax.set_title(name, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("median best heavy-atom RMSD (Å)")
    fig.tight_layout()
    save_figure(fig, path, dpi=120)


# ------------------------------------------------------------------------------ main
def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help=f"{QUICK_MOLECULES} molecules per set, counts {QUICK_COUNTS}")
    p.add_argument("--sets", nargs="+", choices=SETS, default=list(SETS))
    p.add_argument("--counts", type=int, nargs="+", help=f"conformer counts (default {COUNTS})")
    p.add_argument("--molecules", type=int, help="a fixed random subset per set (default all)")
    p.add_argument("--checkpoint", help="a conformer model to measure (default: none)")
    p.add_argument("--model-name", default="model", help="row label of --checkpoint")
    p.add_argument("--bundled", action="store_true",
                   help=f"also measure the bundled QM9 model (row {BUNDLED_LABEL}; it takes "
                        "only H C N O F and <= 18 heavy atoms)")
    p.add_argument("--model-mmff", action="store_true",
                   help="also each model's samples relaxed with MMFF94 (rows LABEL+mmff)")
    p.add_argument("--sample-steps", type=int, help="model sampler steps (default: the "
                                                    "command's default sampler)")
    p.add_argument("--method", choices=("ode", "sde"), default="ode",
                   help="model sampler: the ODE (default) or the SDE (Euler-Maruyama, "
                        "50 steps on the uniform grid unless --sample-steps)")
    p.add_argument("--noise-scale", type=float, default=1.0,
                   help="SDE noise scale (below 1: a lower-temperature SDE)")
    p.add_argument("--max-atoms", type=int, default=4096, help="atoms per sampling batch")
    p.add_argument("--max-matches", type=int, default=MAX_MATCHES,
                   help="atom maps tried per RMSD (the guard against huge symmetry)")
    p.add_argument("--skip-etkdg", action="store_true", help="no ETKDG rows")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--data-dir", help="shared data root (default $QD_DATA)")
    p.add_argument("--fresh", action="store_true", help="ignore stored passes")
    p.add_argument("--note", help="a sentence on the conditions of the timed passes, for the "
                                  "results (e.g. what else ran)")
    p.add_argument("--name", help="results file stem (default bound_pose[_quick])")
    p.add_argument("--out", default=str(RESULTS), help="results folder (benchmarks/results)")
    args = p.parse_args(argv)
    if args.counts is None:
        args.counts = list(QUICK_COUNTS if args.quick else COUNTS)
    args.counts = sorted(set(args.counts))
    if args.molecules is None and args.quick:
        args.molecules = QUICK_MOLECULES
    for key in ("molecules", "threads", "max_atoms", "max_matches", "sample_steps"):
        value = getattr(args, key)
        if value is not None and value < 1:
            raise UsageError(f"--{key.replace('_', '-')} must be at least 1")
    if args.counts[0] < 1:
        raise UsageError("--counts must be at least 1")
    if args.model_name in ("etkdg", "etkdg+mmff", BUNDLED_LABEL) or "+" in args.model_name:
        raise UsageError(f"--model-name {args.model_name!r} is taken or contains '+'")
    args.name = args.name or ("bound_pose_quick" if args.quick else "bound_pose")
    return args


def evaluate_set(name: str, ligands: list[Ligand], info: dict, models: list[Model],
                 parts: Path, args: argparse.Namespace) -> dict:
    """Every pass over one set (stored ones reused) and its summaries."""
    chosen = select(ligands, args.molecules)
    count = max(args.counts)
    scorers: dict[str, PoseScorer] = {}

    def scorer(ligand: Ligand) -> PoseScorer:
        if ligand.id not in scorers:
            scorers[ligand.id] = PoseScorer(ligand, args.max_matches)
        return scorers[ligand.id]

    def seed_of(ligand: Ligand) -> int:
        return molecule_seed(args.seed, name, ligand.id)

    common = {"version": PART_VERSION, "ids": [lig.id for lig in chosen], "count": count,
              "counts": args.counts, "seed": args.seed, "max_matches": args.max_matches}
    records: dict[str, list[dict]] = {}
    loads: dict[str, float | None] = {}

    def add(kind: str, result: tuple[dict, float | None]) -> None:
        records.update(result[0])
        loads[kind] = result[1]

    if not args.skip_etkdg:
        add("etkdg", run_pass(
            name, chosen, "etkdg", {**common, "mmff_iterations": MMFF_ITERS}, parts,
            lambda lig: etkdg_records(lig, seed_of(lig), count, scorer(lig), args.counts),
            args.fresh))
    for m in models:
        meta = {**common, "model_sha256": m.sha256, "sampler": args.sampler.label(),
                "max_atoms": args.max_atoms, "mmff": args.model_mmff}
        add(m.label, run_pass(
            name, chosen, m.label, meta, parts,
            lambda lig, m=m: model_records(m, lig, seed_of(lig), count, scorer(lig),
                                           args.counts, args),
            args.fresh))
    data = {"info": info, "selected": len(chosen), "ids": [lig.id for lig in chosen],
            "heavy_atoms": [lig.heavy for lig in chosen],
            "methods": {method: summarise(recs, args.counts) for method, recs in records.items()},
            "by_size": by_size(records, args.counts),
            "load_average_at_pass_start": loads,
            "per_molecule": {method: columns(recs, args.counts)
                             for method, recs in records.items()}}
    if models and records:
        data["on_model_accepted"] = {m.label: paired_medians(records, m.label, args.counts)
                                     for m in models}
    return data


def run(args: argparse.Namespace, argv: list[str] | None) -> int:
    from rdkit import RDLogger

    from quotient_diffusion.conformers import conformer_sampler, default_checkpoint

    RDLogger.DisableLog("rdApp.*")
    out = Path(args.out)
    try:
        check_output(out, "dir")
    except InputError as err:
        raise UsageError(str(err)) from None
    torch.set_num_threads(args.threads)
    models, notes = [], []
    if args.bundled:
        path = default_checkpoint()
        if not path.is_file():
            raise UsageError(f"no bundled conformer model ({path})")
        models.append(load_model(BUNDLED_LABEL, path))
    if args.checkpoint:
        models.append(load_model(args.model_name, Path(args.checkpoint)))
    if not models:
        message = ("model rows skipped: no --checkpoint given (--bundled measures the bundled "
                   "QM9 model, which refuses most ligands)")
        print(message, flush=True)
        notes.append(message)
    if args.noise_scale < 0 or (args.noise_scale != 1.0 and args.method != "sde"):
        raise UsageError("--noise-scale must be >= 0, and only with --method sde")
    args.sampler = conformer_sampler(args.sample_steps, args.method,
                                     noise_scale=args.noise_scale)
    for m in models:
        options = m.task.options
        net = m.task.config.model
        notes.append(f"{m.label}: `{shown(m.path)}` (sha256 {m.sha256[:12]}), {net.network} "
                     f"{net.hidden}/{net.layers}, trained on {options.source}, elements "
                     f"{' '.join(m.task.elements)}")
    loaded = {name: load_set(name, args.data_dir) for name in args.sets}  # every set checked first
    out.mkdir(parents=True, exist_ok=True)
    parts = out / f"{args.name}_parts"
    parts.mkdir(exist_ok=True)
    load_avg = os.getloadavg()
    settings = {"sets": args.sets, "counts": args.counts, "molecules": args.molecules,
                "seed": args.seed, "max_matches": args.max_matches, "threads": args.threads,
                "sampler": args.sampler.label() if models else None,
                "max_atoms": args.max_atoms, "mmff_iterations": MMFF_ITERS}
    payload = {"question": "How well do generated conformers reproduce protein-bound ligand "
                           "poses?",
               "command": " ".join(["OMP_NUM_THREADS=1", command(__file__, argv)]),
               "settings": settings,
               "machine": {"processor": machine(), "cpu_count": os.cpu_count(),
                           "torch_threads": args.threads,
                           "load_average_at_start": [round(x, 2) for x in load_avg],
                           "note": f"load average {load_avg[0]:.2f} on {os.cpu_count()} cores at "
                                   "the start of this invocation (timings next to other work "
                                   "are slower; each pass's own in the JSON where recorded)"
                                   + (f"; {args.note}" if args.note else "") + "."},
               "models": {m.label: {"path": shown(m.path), "sha256": m.sha256,
                                    "source": m.task.options.source,
                                    "elements": list(m.task.elements)} for m in models},
               "model_notes": notes, "sets": {}}
    for name, (ligands, info) in loaded.items():
        payload["sets"][name] = evaluate_set(name, ligands, info, models, parts, args)
    write_json(out / f"{args.name}.json", payload)
    table = markdown(payload)
    write_text(out / f"{args.name}.md", table)
    if any(d["methods"] for d in payload["sets"].values()):
        plot(payload, out / f"{args.name}.png")
    print(table)
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        return run(parse(argv), argv)
    except UsageError as err:
        print(f"bound_pose: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
