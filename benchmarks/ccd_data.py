"""The drug-like CCD training set: how it is filtered, what it holds, and how noisy it is.

Everything on the CCD section of docs/data.md comes from here
(``quotient_diffusion.data.ccd.load_ccd``):

* the filter funnel (components left after each filter, in the order they are applied) and
  the split sizes (Bemis-Murcko scaffold split, 90/5/5, seed 0);
* element and heavy-atom-count histograms, and which elements the conformer featuriser
  (``chem.featurize``) has a column of its own for;
* the element choice: what Br and P would add (survivors of the column filters; the
  phosphorus molecules, by phosphate/phosphonate group and nucleoside), and the benchmark
  ligands holding each element;
* the leak check, recomputed here from the CCD and the SDF files, not read from the cache: the
  molecules of train/valid/test that are an evaluation component, or share a canonical SMILES
  without stereo or an InChIKey skeleton with one, or with a Genentech benchmark ligand (all
  must be 0); scaffolds shared between splits (must be 0);
* the noise of the experimental single conformers: for a seeded sample of training molecules,
  MMFF94 relaxations of the experimental geometry, free and with every heavy atom held within
  ``RESTRAINT_A`` of its place (flat-bottomed restraint), against the experimental geometry:
  heavy-atom RMSD (Kabsch, atoms matched by index), bond-length MAE (heavy-heavy and X-H),
  heavy-atom bond-angle MAE; the same for QM9 training molecules from their DFT geometries
  (what MMFF alone disagrees with a good geometry); and the spread of one bond type (the C:C
  bonds of benzene rings, 1.39-1.40 A in any good geometry) and of the C-H lengths in each set,
  which needs no force field.

    OMP_NUM_THREADS=1 python benchmarks/ccd_data.py            # 200 + 200 molecules relaxed
    OMP_NUM_THREADS=1 python benchmarks/ccd_data.py --quick    # 20 + 20 (smoke run)
    OMP_NUM_THREADS=1 python benchmarks/ccd_data.py --refresh  # rebuild the cache, timed

Writes benchmarks/results/ccd_data.{json,md} (``--quick``: ccd_data_quick.*).
"""

from __future__ import annotations

import argparse
import collections
import time

import numpy as np
import torch
from _results import RESULTS, command, local_time, markdown_table, write_results

from quotient_diffusion.chem.featurize import supported_elements
from quotient_diffusion.data import ccd as ccd_data
from quotient_diffusion.data.qm9 import load_qm9

#: flat-bottom width of the restrained relaxation (Angstrom) and its force constant
RESTRAINT_A = 0.1
RESTRAINT_K = 100.0  # kcal/mol/A^2
MAX_ITERS = 2000
HEAVY_BINS = (10, 15, 20, 25, 30, 35, 40, 45, 50, 55, 61)


# --------------------------------------------------------------------------- contents
def histograms(data: ccd_data.CCD) -> dict:
    """Elements (atoms, and molecules holding each) and heavy-atom counts, per split."""
    from rdkit import Chem

    table = Chem.GetPeriodicTable()
    comp = np.repeat(np.arange(len(data)), data.num_atoms())
    out = {"elements": {}, "heavy_atoms": {}}
    for z in np.unique(data.atomic_numbers).tolist():
        has = np.bincount(comp, weights=data.atomic_numbers == z, minlength=len(data)) > 0
        out["elements"][table.GetElementSymbol(z)] = {
            "atoms": int((data.atomic_numbers == z).sum()), "molecules": int(has.sum())}
    heavy = data.num_heavy_atoms()
    for k, name in enumerate(ccd_data.SPLIT_NAMES):
        counts, _ = np.histogram(heavy[data.split == k], bins=HEAVY_BINS)
        out["heavy_atoms"][name] = counts.tolist()
    out["heavy_atom_bins"] = [f"{a}-{b - 1}" for a, b in zip(HEAVY_BINS[:-1], HEAVY_BINS[1:])]
    out["heavy_atoms_median"] = float(np.median(heavy))
    out["atoms_with_h_median"] = float(np.median(data.num_atoms()))
    out["atoms_with_h_max"] = int(data.num_atoms().max())
    own = set(supported_elements())
    other = [e for e in out["elements"] if e not in own]
    has_other = np.zeros(len(data), dtype=bool)
    for e in other:
        z = table.GetAtomicNumber(e)
        has_other |= np.bincount(comp, weights=data.atomic_numbers == z, minlength=len(data)) > 0
    out["featurizer"] = {"own_column": list(supported_elements()), "shared_other_column": other,
                         "molecules_with_other": int(has_other.sum())}
    return out


def element_choice(tables: ccd_data.CCDTables, benchmark: list) -> dict:
    """What Br and P add: survivors of the column filters with each element set; what the
    phosphorus molecules are (molecule filters applied, no exclusions); the benchmark ligands
    holding each element."""
    from rdkit import Chem

    base = ("H", "C", "N", "O", "F", "S", "Cl")

    def survivors(elements) -> np.ndarray:
        alive = np.ones(len(tables.code), dtype=bool)
        for _, passed in ccd_data.column_filters(tables, elements):
            alive &= passed
        return alive

    out = {"column_filter_survivors": {}}
    for extra in ((), ("Br",), ("P",), ("Br", "P")):
        out["column_filter_survivors"]["+".join(("base", *extra))] = int(
            survivors(base + extra).sum())
    adds_p = survivors(base + ("Br", "P")) & ~survivors(base + ("Br",))
    built = ccd_data.build_ccd(ccd_data.select_components(tables, tables.code[adds_p]),
                               elements=base + ("Br", "P"), progress=False)
    phosphate = Chem.MolFromSmarts("P(=O)(~O)~O")
    nucleoside = Chem.MolFromSmarts("[#6]1[#8][#6]([#7;R])[#6][#6]1")
    mols = [built.molecule(i) for i in range(len(built))]
    out["phosphorus"] = {"molecules": len(mols),
                         "phosphate_or_phosphonate": sum(m.HasSubstructMatch(phosphate)
                                                         for m in mols),
                         "nucleoside": sum(m.HasSubstructMatch(nucleoside) for m in mols)}
    held = collections.Counter(e for m in benchmark for e in {a.GetSymbol() for a in
                                                              m.GetAtoms()})
    out["benchmark_ligands"] = len(benchmark)
    out["benchmark_ligands_with"] = dict(held.most_common())
    return out


def leak_check(data: ccd_data.CCD, tables: ccd_data.CCDTables, benchmark: list) -> dict:
    """Train/valid/test molecules that are, or equal, an evaluation or benchmark molecule;
    scaffolds on two sides. Recomputed from the sources (every count must be 0)."""
    codes = ccd_data.evaluation_codes()
    tables = ccd_data.select_components(tables, codes)
    eval_keys = [ccd_data.molecule_keys(m) for c in range(len(tables.code))
                 for m in [ccd_data.graph_molecule(tables, c)] if m is not None]
    bench_keys = [ccd_data.molecule_keys(m) for m in benchmark]
    out = {"evaluation_codes": len(codes), "evaluation_codes_in_ccd": int(len(tables.code)),
           "evaluation_molecules_keyed": len(eval_keys),
           "benchmark_molecules": len(bench_keys)}
    for name in ccd_data.SPLIT_NAMES:
        idx = data.subset(name)
        smiles = {data.smiles_no_stereo[i] for i in idx}
        inchi = {data.inchikey[i] for i in idx}
        out[name] = {
            "evaluation_code": len(set(codes) & {data.code[i] for i in idx}),
            "evaluation_smiles": len(smiles & {e[0] for e in eval_keys}),
            "evaluation_inchikey": len(inchi & {e[1] for e in eval_keys}),
            "benchmark_smiles": len(smiles & {e[0] for e in bench_keys}),
            "benchmark_inchikey": len(inchi & {e[1] for e in bench_keys}),
        }
    per_split = [{data.scaffold[i] for i in data.subset(n)} for n in ccd_data.SPLIT_NAMES]
    out["scaffolds_in_two_splits"] = len((per_split[0] & per_split[1]) | (per_split[0] &
                                         per_split[2]) | (per_split[1] & per_split[2]))
    out["total"] = sum(v for n in ccd_data.SPLIT_NAMES for v in out[n].values()) + out[
        "scaffolds_in_two_splits"]
    return out


def split_report(data: ccd_data.CCD) -> dict:
    """Split sizes, scaffold groups, the largest groups, stereoisomer groups."""
    groups = collections.Counter(data.scaffold)
    stereo = collections.Counter(data.smiles_no_stereo)
    return {
        "molecules": {n: int((data.split == k).sum()) for k, n in
                      enumerate(ccd_data.SPLIT_NAMES)},
        "scaffolds": {n: len({data.scaffold[i] for i in data.subset(n)})
                      for n in ccd_data.SPLIT_NAMES},
        "scaffold_groups": len(groups),
        "singleton_scaffolds": sum(c == 1 for c in groups.values()),
        "largest_scaffolds": [[s or "(acyclic)", c] for s, c in groups.most_common(5)],
        "stereoisomer_groups": sum(c > 1 for c in stereo.values()),
        "molecules_in_stereoisomer_groups": sum(c for c in stereo.values() if c > 1),
    }


# ------------------------------------------------------------------------------ noise
def kabsch_rmsd(a: np.ndarray, b: np.ndarray) -> float:
    """RMSD of ``a`` and ``b`` (n, 3), atoms matched by index, after the best rotation."""
    a, b = a - a.mean(0), b - b.mean(0)
    u, _, vt = np.linalg.svd(a.T @ b)
    d = np.sign(np.linalg.det(u @ vt))
    rot = u @ np.diag([1.0, 1.0, d]) @ vt
    return float(np.sqrt(((a @ rot - b) ** 2).sum(1).mean()))


def relax(mol, restrained: bool):
    """MMFF94 minimum from the molecule's conformer (None where MMFF has no parameters);
    ``restrained``: heavy atoms held within RESTRAINT_A of their start."""
    from rdkit import Chem
    from rdkit.Chem import rdForceFieldHelpers as ff_helpers

    mol = Chem.Mol(mol)  # the force field moves the conformer it is built on
    props = ff_helpers.MMFFGetMoleculeProperties(mol)
    if props is None:
        return None
    ff = ff_helpers.MMFFGetMoleculeForceField(mol, props)
    if restrained:
        for atom in mol.GetAtoms():
            if atom.GetAtomicNum() > 1:
                ff.MMFFAddPositionConstraint(atom.GetIdx(), RESTRAINT_A, RESTRAINT_K)
    ff.Initialize()
    ff.Minimize(maxIts=MAX_ITERS)
    return np.asarray(ff.Positions(), dtype=np.float64).reshape(-1, 3)


_BENZENE = None


def _geometry_terms(mol):
    """Heavy-heavy bonds, X-H bonds, heavy-atom angles (index arrays), benzene C:C, C-H."""
    global _BENZENE
    from rdkit import Chem

    if _BENZENE is None:
        _BENZENE = Chem.MolFromSmarts("[c;r6]1[c;r6][c;r6][c;r6][c;r6][c;r6]1")
    z = np.array([a.GetAtomicNum() for a in mol.GetAtoms()])
    bonds = np.array([(b.GetBeginAtomIdx(), b.GetEndAtomIdx()) for b in mol.GetBonds()])
    heavy_bond = (z[bonds] > 1).all(1)
    aromatic_cc = np.zeros(len(bonds), dtype=bool)  # C:C bonds of benzene rings
    for ring in mol.GetSubstructMatches(_BENZENE):
        for a, b in zip(ring, ring[1:] + ring[:1]):
            aromatic_cc[mol.GetBondBetweenAtoms(a, b).GetIdx()] = True
    ch = np.sort(z[bonds], axis=1).tolist()
    ch = np.array([p == [1, 6] for p in ch])
    angles = [(i.GetIdx(), j.GetIdx(), k.GetIdx()) for j in mol.GetAtoms() if j.GetAtomicNum() > 1
              for n, i in enumerate(j.GetNeighbors()) for k in list(j.GetNeighbors())[n + 1:]
              if i.GetAtomicNum() > 1 and k.GetAtomicNum() > 1]
    return z, bonds, heavy_bond, aromatic_cc, ch, np.array(angles, dtype=int).reshape(-1, 3)


def _lengths(pos, bonds):
    return np.linalg.norm(pos[bonds[:, 0]] - pos[bonds[:, 1]], axis=1)


def _angles(pos, angles):
    u = pos[angles[:, 0]] - pos[angles[:, 1]]
    v = pos[angles[:, 2]] - pos[angles[:, 1]]
    cos = (u * v).sum(1) / np.linalg.norm(u, axis=1) / np.linalg.norm(v, axis=1)
    return np.degrees(np.arccos(np.clip(cos, -1, 1)))


def noise(mols) -> dict:
    """Experimental (or DFT) geometry against its MMFF relaxations, per molecule; pooled bond
    lengths of aromatic C:C and C-H."""
    per = {f"{kind}_{m}": [] for kind in ("free", "restrained")
           for m in ("heavy_rmsd_A", "heavy_bond_mae_A", "xh_bond_mae_A", "xh_bond_bias_A",
                     "heavy_angle_mae_deg")}
    pooled = {"benzene_cc_A": [], "ch_A": [], "benzene_cc_relaxed_A": [], "ch_relaxed_A": []}
    skipped, seconds = 0, 0.0
    for mol in mols:
        pos = mol.GetConformer().GetPositions()
        z, bonds, heavy_bond, aromatic, ch, angles = _geometry_terms(mol)
        start = time.perf_counter()
        relaxed = {k: relax(mol, k == "restrained") for k in ("free", "restrained")}
        seconds += time.perf_counter() - start
        if relaxed["free"] is None:
            skipped += 1
            continue
        d0 = _lengths(pos, bonds)
        pooled["benzene_cc_A"] += d0[aromatic].tolist()
        pooled["ch_A"] += d0[ch].tolist()
        for kind, new in relaxed.items():
            d1 = _lengths(new, bonds)
            heavy = z > 1
            per[f"{kind}_heavy_rmsd_A"].append(kabsch_rmsd(pos[heavy], new[heavy]))
            per[f"{kind}_heavy_bond_mae_A"].append(float(np.abs(d0 - d1)[heavy_bond].mean()))
            xh = ~heavy_bond
            per[f"{kind}_xh_bond_mae_A"].append(float(np.abs(d0 - d1)[xh].mean()) if xh.any()
                                                else np.nan)
            per[f"{kind}_xh_bond_bias_A"].append(float((d0 - d1)[xh].mean()) if xh.any()
                                                 else np.nan)
            per[f"{kind}_heavy_angle_mae_deg"].append(
                float(np.abs(_angles(pos, angles) - _angles(new, angles)).mean())
                if len(angles) else np.nan)
            if kind == "restrained":
                pooled["benzene_cc_relaxed_A"] += d1[aromatic].tolist()
                pooled["ch_relaxed_A"] += d1[ch].tolist()
    out = {"molecules": len(per["free_heavy_rmsd_A"]), "skipped_no_mmff": skipped,
           "relax_seconds": round(seconds, 1)}
    for key, values in per.items():
        v = np.asarray(values, dtype=float)
        v = v[np.isfinite(v)]
        q = np.percentile(v, [25, 50, 75]) if len(v) else [np.nan] * 3
        out[key] = {"q25": float(q[0]), "median": float(q[1]), "q75": float(q[2]),
                    "mean": float(v.mean()) if len(v) else float("nan")}
    for key, values in pooled.items():
        v = np.asarray(values, dtype=float)
        q = np.percentile(v, [25, 50, 75]) if len(v) else [np.nan] * 3
        out[key] = {"bonds": int(len(v)), "median": float(q[1]), "iqr": float(q[2] - q[0]),
                    "std": float(v.std()) if len(v) else float("nan")}
    return out


def with_benzene(qm9, order: np.ndarray, count: int) -> list[int]:
    """The first ``count`` QM9 entries of ``order`` whose molecule holds a benzene ring (QM9
    has few: a random sample of 200 holds about one)."""
    from rdkit import Chem

    _geometry_terms(Chem.AddHs(Chem.MolFromSmiles("C")))  # compiles _BENZENE
    found = []
    for i in order:
        mol = Chem.MolFromSmiles(qm9.smiles[i])
        if mol is not None and mol.HasSubstructMatch(_BENZENE):
            found.append(int(i))
            if len(found) == count:
                break
    return found


# ----------------------------------------------------------------------------- report
def _q(d: dict, digits: int = 3) -> str:
    return f"{d['median']:.{digits}f} ({d['q25']:.{digits}f}-{d['q75']:.{digits}f})"


def to_markdown(r: dict) -> str:
    """The report as the tables docs/data.md quotes."""
    funnel, kept = r["funnel"], dict(ccd_data.FILTERS)
    lines = ["# The drug-like CCD training set", "",
             f"Command: `{r['meta']['command']}` ({r['meta']['seconds']:.0f} s, "
             f"{r['meta']['cpu_seconds']:.0f} s of CPU, "
             f"{r['meta']['date']}; biotite {r['options']['biotite']}, "
             f"{r['meta']['threads']} thread(s); cache {r['meta']['cache']})", "",
             "## Filter funnel", ""]
    build = r["options"].get("build_seconds", {})
    if build:
        lines[-2:-2] = ["Cache build, seconds per stage (wall clock, as the cache recorded it): "
                        + ", ".join(f"{k} {v:.0f}" for k, v in build.items()) + ".", ""]
    rows = [["all components", "", f"{funnel[0][1]:,}", ""]]
    for (name, left), (_, before) in zip(funnel[1:], funnel[:-1]):
        rows.append([f"`{name}`", kept[name], f"{left:,}", f"-{before - left:,}"])
    lines += markdown_table(["filter", "keeps", "left", "removed"], rows, "llrr")
    e = r["exclusion"]
    lines += ["", f"Evaluation exclusion: {e['removed']['by_code']:,} by code, "
              f"{e['removed']['by_smiles']:,} more by canonical SMILES without stereo, "
              f"{e['removed']['by_inchikey']:,} more by InChIKey skeleton "
              f"({e['codes_in_ccd']:,} of the {e['codes_listed']:,} listed codes are in this CCD). "
              f"Benchmark (Genentech, {e['benchmark_molecules']:,} ligands): "
              f"{e['benchmark_removed']['by_smiles']:,} by SMILES, "
              f"{e['benchmark_removed']['by_inchikey_only']:,} more by InChIKey skeleton.", ""]
    s = r["split"]
    lines += ["## Split (Bemis-Murcko scaffolds, 90/5/5, seed 0)", ""]
    lines += markdown_table(["", *ccd_data.SPLIT_NAMES],
                            [["molecules", *(f"{s['molecules'][n]:,}" for n in
                                             ccd_data.SPLIT_NAMES)],
                             ["scaffolds", *(f"{s['scaffolds'][n]:,}" for n in
                                             ccd_data.SPLIT_NAMES)]], "lrrr")
    lines += ["", f"{s['scaffold_groups']:,} scaffold groups ({s['singleton_scaffolds']:,} "
              "of one molecule); largest: " + ", ".join(f"`{g}` {c:,}" for g, c in
                                                       s["largest_scaffolds"]) +
              f". {s['stereoisomer_groups']:,} stereo-free SMILES are shared by several "
              f"stereoisomers ({s['molecules_in_stereoisomer_groups']:,} molecules).", ""]
    leak = r["leak_check"]
    lines += ["## Leak check (recomputed from the CCD and the SDF files)", ""]
    cols = ["evaluation_code", "evaluation_smiles", "evaluation_inchikey", "benchmark_smiles",
            "benchmark_inchikey"]
    lines += markdown_table(["split", *cols], [[n, *(str(leak[n][c]) for c in cols)]
                                               for n in ccd_data.SPLIT_NAMES], "lrrrrr")
    lines += ["", f"Scaffolds in two splits: {leak['scaffolds_in_two_splits']}. "
              f"Total: **{leak['total']}**.", ""]
    h = r["histograms"]
    lines += ["## Contents", ""]
    lines += markdown_table(["element", "atoms", "molecules"],
                            [[el, f"{v['atoms']:,}", f"{v['molecules']:,}"]
                             for el, v in h["elements"].items()], "lrr")
    lines += ["", "Heavy atoms per molecule (median "
              f"{h['heavy_atoms_median']:.0f}; with hydrogens median "
              f"{h['atoms_with_h_median']:.0f}, max {h['atoms_with_h_max']}):", ""]
    lines += markdown_table(["heavy atoms", *ccd_data.SPLIT_NAMES],
                            [[b, *(f"{h['heavy_atoms'][n][k]:,}" for n in ccd_data.SPLIT_NAMES)]
                             for k, b in enumerate(h["heavy_atom_bins"])], "lrrr")
    f = h["featurizer"]
    lines += ["", f"Conformer featuriser (`chem.featurize`): own columns for "
              f"{', '.join(f['own_column'])}; {', '.join(f['shared_other_column'])} share the "
              f"'other' column ({f['molecules_with_other']:,} molecules hold one of them).", ""]
    c = r["element_choice"]
    surv, p = c["column_filter_survivors"], c["phosphorus"]
    lines += ["Element choice (survivors of the column filters, base = H C N O F S Cl): "
              + ", ".join(f"{k} {v:,}" for k, v in surv.items())
              + f". Phosphorus would add {p['molecules']:,} molecules after the molecule "
              f"filters: {p['phosphate_or_phosphonate']:,} with a phosphate or phosphonate "
              f"group, {p['nucleoside']:,} nucleosides. Benchmark ligands "
              f"({c['benchmark_ligands']:,}) holding each element: "
              + ", ".join(f"{k} {v:,}" for k, v in c["benchmark_ligands_with"].items()) + ".",
              ""]
    n = r["noise"]
    lines += ["## Noise of the single conformers (MMFF94 relaxations)", "",
              f"Median (quartiles) per molecule; restrained: heavy atoms within "
              f"{RESTRAINT_A} A of their start (flat bottom, k = {RESTRAINT_K:g} "
              "kcal/mol/A^2). CCD: experimental coordinates of training molecules; QM9: DFT "
              "training geometries.", ""]
    metrics = [("heavy_rmsd_A", "heavy-atom RMSD (A)"),
               ("heavy_bond_mae_A", "heavy-atom bond-length MAE (A)"),
               ("xh_bond_mae_A", "X-H bond-length MAE (A)"),
               ("xh_bond_bias_A", "X-H bond length, start - relaxed (A)"),
               ("heavy_angle_mae_deg", "heavy-atom angle MAE (deg)")]
    rows = []
    for key, label in metrics:
        digits = 2 if key.endswith("deg") else 3
        rows.append([label, *(_q(n[s][f"{kind}_{key}"], digits) for s in ("ccd", "qm9")
                              for kind in ("free", "restrained"))])
    lines += markdown_table(["", "CCD free", "CCD restrained", "QM9 free", "QM9 restrained"],
                            rows, "lrrrr")
    lines += ["", f"Molecules: CCD {n['ccd']['molecules']} (MMFF relaxations "
              f"{n['ccd']['relax_seconds']:.0f} s), QM9 {n['qm9']['molecules']} "
              f"({n['qm9']['relax_seconds']:.0f} s); without MMFF parameters: CCD "
              f"{n['ccd']['skipped_no_mmff']}, QM9 {n['qm9']['skipped_no_mmff']}.", "",
              "Spread of one bond type, pooled over the sample (QM9 benzene C:C: over "
              f"{n['qm9_benzene']['molecules']} QM9 training molecules with a benzene ring):", ""]
    rows = []
    for key, label in (("benzene_cc", "benzene C:C"), ("ch", "C-H")):
        for src in ("ccd", "qm9_benzene" if key == "benzene_cc" else "qm9"):
            for tag, name in (("", "as given"), ("_relaxed", "restrained MMFF")):
                d = n[src][f"{key}{tag}_A"]
                rows.append([label, src.split("_")[0].upper(), name, f"{d['bonds']:,}",
                             f"{d['median']:.3f}", f"{d['std']:.4f}", f"{d['iqr']:.4f}"])
    lines += markdown_table(["bond", "set", "geometry", "bonds", "median (A)", "std (A)",
                             "IQR (A)"], rows, "lllrrrr")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20 + 20 molecules relaxed")
    parser.add_argument("--sample", type=int, default=None,
                        help="molecules relaxed per set (default 200; 20 with --quick)")
    parser.add_argument("--refresh", action="store_true", help="rebuild the cache (timed)")
    args = parser.parse_args(argv)
    sample = args.sample or (20 if args.quick else 200)
    start, cpu = time.perf_counter(), time.process_time()
    path = ccd_data.cache_path()
    cached = path.exists() and not args.refresh
    data = ccd_data.load_ccd(refresh=args.refresh, progress=True)
    load_s, load_cpu = time.perf_counter() - start, time.process_time() - cpu
    tables, benchmark = ccd_data.read_ccd_tables(), ccd_data.benchmark_molecules()
    report = {
        "funnel": data.funnel,
        "exclusion": {k: v for k, v in data.evaluation.items() if not isinstance(v, list)},
        "options": data.options,
        "split": split_report(data),
        "histograms": histograms(data),
        "leak_check": leak_check(data, tables, benchmark),
        "element_choice": element_choice(tables, benchmark),
    }
    rng = np.random.RandomState(0)
    train = rng.permutation(data.subset("train"))[:sample]
    report["noise_sample_codes"] = [data.code[i] for i in train]
    qm9 = load_qm9(progress=False)
    qm9_train = rng.permutation(qm9.subset("train"))[:sample]
    report["noise"] = {"ccd": noise(data.molecule(i) for i in train),
                       "qm9": noise(qm9.molecule(i) for i in qm9_train),
                       "qm9_benzene": noise(qm9.molecule(i) for i in
                                            with_benzene(qm9, rng.permutation(
                                                qm9.subset("train")), sample))}
    report["meta"] = {"command": command(__file__, argv), "date": local_time(),
                      "seconds": time.perf_counter() - start, "sample": sample,
                      "threads": torch.get_num_threads(),
                      "cpu_seconds": time.process_time() - cpu,
                      "cache": "read" if cached else f"built in {load_s:.0f} s "
                      f"({load_cpu:.0f} s of CPU)",
                      "load_seconds": round(load_s, 1), "load_cpu_seconds": round(load_cpu, 1)}
    stem = "ccd_data" + "_quick" * args.quick
    write_results(RESULTS, stem, report, to_markdown(report))
    print(to_markdown(report))


if __name__ == "__main__":
    main()
