"""Up to what size does the bundled conformer model give sound geometry?

Question: the bundled model was trained on QM9 (at most 9 heavy atoms). As molecules grow, when
do its raw samples stop being chemically sound? This sets ``MAX_HEAVY_ATOMS`` in
quotient_diffusion/conformers.py.

Molecules: QM9 test-split molecules with 1 to 9 heavy atoms (``--per-count`` of each count, a
fixed random choice), then known drugs made of C, N, O, F (neutral, one fragment) with 10 to 40
heavy atoms, listed below (the first ``--per-count`` of each count). Linear molecules are left
out: the command line builds those instead of sampling them. Each molecule gets
``--conformers`` raw samples of the bundled model with the command's default sampler
(``DEFAULT_SAMPLER``: 10 DPM-Solver++(2M) steps on the power grid), no stereo repair, no MMFF.
A sample is ``geometry_ok`` when every bond is within 0.25 A
of its UFF rest length and no two atoms three or more bonds apart are closer than half the sum
of their van der Waals radii (quotient_diffusion.chem.geometry).

    python benchmarks/conformer_size_limit.py --quick    # about a minute (1 thread)
    python benchmarks/conformer_size_limit.py            # the committed run, about 5 CPU-minutes

Writes benchmarks/results/conformer_size_limit{,_quick}.json and .md and prints the table.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from _results import RESULTS, utc_time, write_results

from quotient_diffusion.chem.geometry import check_geometry, is_linear, reference_bond_lengths
from quotient_diffusion.conformers import (
    DEFAULT_SAMPLER,
    ConformerJob,
    raw_samples,
)
from quotient_diffusion.tasks import load

BINS = [(1, 3), (4, 6), (7, 9), (10, 12), (13, 15), (16, 18), (19, 21), (22, 24), (25, 27),
        (28, 30), (31, 34), (35, 40)]

#: known drugs made of C, N, O, F only (stereo left out: geometry does not depend on it)
DRUGS = """
amphetamine CC(N)Cc1ccccc1
dimethyl_fumarate COC(=O)C=CC(=O)OC
paracetamol CC(=O)Nc1ccc(O)cc1
dopamine NCCc1ccc(O)c(O)c1
pregabalin CC(C)CC(CN)CC(O)=O
menthol CC(C)C1CCC(C)CC1O
nicotine CN1CCCC1c1cccnc1
benzocaine CCOC(=O)c1ccc(N)cc1
gabapentin NCC1(CC(O)=O)CCCCC1
aspirin CC(=O)Oc1ccccc1C(=O)O
serotonin NCCc1c[nH]c2ccc(O)cc12
theophylline Cn1c2nc[nH]c2c(=O)n(C)c1=O
caffeine Cn1cnc2c1c(=O)n(C)c(=O)n2C
selegiline CC(Cc1ccccc1)N(C)CC#C
levodopa NC(Cc1ccc(O)c(O)c1)C(O)=O
ibuprofen CC(C)Cc1ccc(cc1)C(C)C(=O)O
acyclovir Nc1nc2n(COCCO)cnc2c(=O)[nH]1
lidocaine CCN(CC)CC(=O)Nc1c(C)cccc1C
naproxen COc1ccc2cc(ccc2c1)C(C)C(=O)O
salbutamol CC(C)(C)NCC(O)c1ccc(O)c(CO)c1
carbamazepine NC(=O)N1c2ccccc2C=Cc2ccccc12
flurbiprofen CC(C(O)=O)c1ccc(c(F)c1)-c1ccccc1
gemcitabine Nc1ccn(C2OC(CO)C(O)C2(F)F)c(=O)n1
metoprolol CC(C)NCC(O)COc1ccc(CCOC)cc1
propranolol CC(C)NCC(O)COc1cccc2ccccc12
phenytoin O=C1NC(=O)C(N1)(c1ccccc1)c1ccccc1
estradiol CC12CCC3c4ccc(O)cc4CCC3C1CCC2O
venlafaxine COc1ccc(cc1)C(CN(C)C)C1(O)CCCCC1
artemisinin CC1CCC2C(C)C(=O)OC3OC4(C)CCC1C32OO4
morphine CN1CCC23c4c5ccc(O)c4OC2C(O)C=CC3C1C5
testosterone CC12CCC3C(CCC4=CC(=O)CCC34C)C1CCC2O
galantamine COc1ccc2CN(C)CCC34C=CC(O)CC3Oc1c24
fluoxetine CNCCC(Oc1ccc(cc1)C(F)(F)F)c1ccccc1
oseltamivir CCOC(=O)C1=CC(OC(CC)CC)C(NC(C)=O)C(N)C1
codeine COc1ccc2CC3N(C)CCC45C(Oc1c24)C(O)C=CC35
warfarin CC(=O)CC(c1ccccc1)c1c(O)c2ccccc2oc1=O
progesterone CC(=O)C1CCC2C1(C)CCC1C2CCC2=CC(=O)CCC12C
oxycodone COc1ccc2CC3N(C)CCC45C(Oc1c24)C(=O)CCC35O
ciprofloxacin OC(=O)C1=CN(C2CC2)c2cc(N3CCNCC3)c(F)cc2C1=O
citalopram CN(C)CCCC1(OCc2cc(ccc12)C#N)c1ccc(F)cc1
paroxetine Fc1ccc(cc1)C1CCNCC1COc1ccc2OCOc2c1
strychnine O=C1CC2OCC=C3CN4CCC56C4CC3C2C6N1c1ccccc15
fentanyl CCC(=O)N(c1ccccc1)C1CCN(CCc2ccccc2)CC1
voriconazole CC(c1ncncc1F)C(O)(Cn1cncn1)c1ccc(F)cc1F
hydrocortisone OCC(=O)C1(O)CCC2C3CCC4=CC(=O)CCC4(C)C3C(O)CC21C
mefloquine OC(C1CCCCN1)c1cc(nc2c(cccc12)C(F)(F)F)C(F)(F)F
yohimbine COC(=O)C1C(O)CCC2CN3CCc4c([nH]c5ccccc45)C3CC12
finasteride CC(C)(C)NC(=O)C1CCC2C3CCC4NC(=O)C=CC4(C)C3CCC12C
upadacitinib CCC1CN(CC1c1cnc2cnc3[nH]ccc3n12)C(=O)NCC(F)(F)F
tamoxifen CCC(=C(c1ccccc1)c1ccc(OCCN(C)C)cc1)c1ccccc1
donepezil COc1cc2CC(CC3CCN(Cc4ccccc4)CC3)C(=O)c2cc1OC
dexamethasone CC1CC2C3CCC4=CC(=O)C=CC4(C)C3(F)C(O)CC2(C)C1(O)C(=O)CO
tadalafil O=C1N(C)CC(=O)N2C1Cc1c([nH]c3ccccc13)C2c1ccc2OCOc2c1
erlotinib COCCOc1cc2ncnc(Nc3cccc(c3)C#C)c2cc1OCCOC
colchicine COc1cc2CCC(NC(C)=O)C3=CC(=O)C(OC)=CC=C3c2c(OC)c1OC
risperidone Cc1nc2CCCCn2c(=O)c1CCN1CCC(CC1)c1noc2cc(F)ccc12
ezetimibe OC(CCC1C(N(C1=O)c1ccc(F)cc1)c1ccc(O)cc1)c1ccc(F)cc1
lorlatinib CC1Oc2cc(cnc2N)-c2c(C#N)n(C)nc2CN(C)C(=O)c2ccc(F)cc12
latanoprost CC(C)OC(=O)CCCC=CCC1C(O)CC(O)C1CCC(O)CCc1ccccc1
ranolazine COc1ccccc1OCC(O)CN1CCN(CC(=O)Nc2c(C)cccc2C)CC1
paliperidone Cc1nc2n(c(=O)c1CCN1CCC(CC1)c1noc3cc(F)ccc13)CCCC2O
valsartan CCCCC(=O)N(Cc1ccc(cc1)-c1ccccc1-c1nn[nH]n1)C(C(C)C)C(O)=O
olaparib Fc1ccc(Cc2n[nH]c(=O)c3ccccc23)cc1C(=O)N1CCN(CC1)C(=O)C1CC1
mifepristone CC#CC1(O)CCC2C3CCC4=CC(=O)CCC4=C3C(CC21C)c1ccc(cc1)N(C)C
verapamil COc1ccc(CCN(C)CCCC(C#N)(C(C)C)c2ccc(OC)c(OC)c2)cc1OC
methotrexate CN(Cc1cnc2nc(N)nc(N)c2n1)c1ccc(cc1)C(=O)NC(CCC(O)=O)C(O)=O
ibrutinib C=CC(=O)N1CCCC(C1)n1nc(-c2ccc(Oc3ccccc3)cc2)c2c(N)ncnc12
apixaban COc1ccc(cc1)-n1nc(C(N)=O)c2CCN(C(=O)c21)c1ccc(cc1)N1CCCCC1=O
dabigatran Cn1c(CNc2ccc(cc2)C(N)=N)nc2cc(ccc12)C(=O)N(CCC(O)=O)c1ccccn1
nirmatrelvir CC1(C)C2C1C(N(C2)C(=O)C(NC(=O)C(F)(F)F)C(C)(C)C)C(=O)NC(CC1CCNC1=O)C#N
acalabrutinib CC#CC(=O)N1CCCC1c1nc(-c2ccc(cc2)C(=O)Nc2ccccn2)c2c(N)nccn12
zanubrutinib C=CC(=O)N1CCC(CC1)C1CCNc2c(C(N)=O)c(nn12)-c1ccc(Oc2ccccc2)cc1
tucatinib Cc1cc(ccc1Oc1ccn2ncnc2c1)Nc1ncnc2ccc(cc12)NC1=NC(C)(C)CO1
imatinib Cc1ccc(NC(=O)c2ccc(CN3CCN(C)CC3)cc2)cc1Nc1nccc(n1)-c1cccnc1
fexofenadine CC(C)(C(O)=O)c1ccc(cc1)C(O)CCCN1CCC(CC1)C(O)(c1ccccc1)c1ccccc1
maraviroc CC(C)c1nnc(C)n1C1CC2CCC(C1)N2CCC(NC(=O)C1CCC(F)(F)CC1)c1ccccc1
nilotinib Cc1cn(cn1)-c1cc(NC(=O)c2ccc(C)c(Nc3nccc(n3)-c3cccnc3)c2)cc(c1)C(F)(F)F
ponatinib Cc1ccc(cc1C#Cc1cnc2cccnn12)C(=O)Nc1ccc(CN2CCN(C)CC2)c(c1)C(F)(F)F
selpercatinib COc1ccc(CN2C3CC2CN(C3)c2ccc(cn2)-c2cc(OCC(C)(C)O)cn3ncc(C#N)c23)cn1
telmisartan CCCc1nc2c(C)cc(cc2n1Cc1ccc(cc1)-c1ccccc1C(O)=O)-c1nc2ccccc2n1C
nintedanib COC(=O)c1ccc2c(c1)NC(=O)C2=C(Nc1ccc(cc1)N(C)C(=O)CN1CCN(C)CC1)c1ccccc1
gilteritinib CCc1nc(C(N)=O)c(Nc2ccc(N3CCC(CC3)N3CCN(C)CC3)c(OC)c2)nc1NC1CCOCC1
"""


def _molecule(smiles: str):
    from rdkit import Chem

    return Chem.AddHs(Chem.MolFromSmiles(smiles))


def qm9_molecules(per_count: int, seed: int = 0) -> list[tuple[str, str]]:
    """(name, SMILES): ``per_count`` QM9 test-split molecules of each heavy-atom count 1..9."""
    from quotient_diffusion.data.qm9 import load_qm9

    qm9 = load_qm9(progress=False)
    by_count = defaultdict(list)
    for entry in np.random.RandomState(seed).permutation(qm9.subset("test")):
        smiles = qm9.smiles[entry]
        mol = _molecule(smiles)
        bucket = by_count[mol.GetNumHeavyAtoms()]
        if len(bucket) < per_count and not is_linear(mol):
            bucket.append((f"qm9_{entry}", smiles))
    return [m for count in sorted(by_count) for m in by_count[count]]


def drug_molecules(per_count: int) -> list[tuple[str, str]]:
    """(name, SMILES): the first ``per_count`` drugs of :data:`DRUGS` of each heavy-atom
    count."""
    taken = defaultdict(int)
    out = []
    for line in DRUGS.strip().splitlines():
        name, smiles = line.split()
        count = _molecule(smiles).GetNumHeavyAtoms()
        if taken[count] < per_count:
            taken[count] += 1
            out.append((name, smiles))
    return out


def measure(molecules: list[tuple[str, str]], conformers: int, seed: int) -> list[dict]:
    """One row per molecule: the geometry check of each raw sample and the sampling time."""
    task, model = load(None, "conformers")
    sampler = DEFAULT_SAMPLER
    rows = []
    for k, (name, smiles) in enumerate(molecules):
        mol = _molecule(smiles)
        job = ConformerJob(number=k + 1, text=smiles, name=name, mol=mol)
        start = time.perf_counter()
        raw_samples(task, model, [job], conformers, sampler, seed=seed)
        elapsed = time.perf_counter() - start
        reference = reference_bond_lengths(mol)
        checks = [check_geometry(mol, pos, reference) for pos in job.conformers]
        rows.append({
            "name": name, "smiles": smiles, "heavy_atoms": mol.GetNumHeavyAtoms(),
            "atoms": mol.GetNumAtoms(), "conformers": conformers,
            "geometry_ok": sum(c.ok for c in checks),
            "bonds_ok": sum(c.max_bond_error <= 0.25 for c in checks),
            "clash_free": sum(c.clashes == 0 for c in checks),
            "max_bond_error_A": [round(c.max_bond_error, 3) for c in checks],
            "seconds_per_conformer": elapsed / conformers,
        })
        print(f"{name:>16} {rows[-1]['heavy_atoms']:3d} heavy: {rows[-1]['geometry_ok']}/"
              f"{conformers} ok, worst bond error {max(rows[-1]['max_bond_error_A']):.2f} A",
              flush=True)
    return rows


def summarise(rows: list[dict]) -> list[dict]:
    """Per heavy-atom bin: molecules, conformers, fractions ok, median worst bond error."""
    table = []
    for low, high in BINS:
        part = [r for r in rows if low <= r["heavy_atoms"] <= high]
        if not part:
            continue
        total = sum(r["conformers"] for r in part)
        errors = [e for r in part for e in r["max_bond_error_A"]]
        table.append({
            "heavy_atoms": f"{low}-{high}", "molecules": len(part), "conformers": total,
            "geometry_ok": sum(r["geometry_ok"] for r in part) / total,
            "bonds_ok": sum(r["bonds_ok"] for r in part) / total,
            "clash_free": sum(r["clash_free"] for r in part) / total,
            "molecules_all_ok": sum(r["geometry_ok"] == r["conformers"] for r in part) / len(part),
            "median_max_bond_error_A": float(np.median(errors)),
            "ms_per_conformer": 1000 * float(np.mean([r["seconds_per_conformer"] for r in part])),
        })
    return table


def to_markdown(table: list[dict], meta: dict) -> str:
    lines = [
        f"Bundled conformer model, raw samples ({meta['sampler']}), {meta['conformers']} per "
        f"molecule, {meta['threads']} thread(s), {meta['when']}{' (--quick)' * meta['quick']}.",
        "",
        "| heavy atoms | molecules | conformers | geometry_ok | bonds within 0.25 A | "
        "no clash | molecules all ok | median worst bond error (A) | ms / conformer |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in table:
        lines.append(
            f"| {r['heavy_atoms']} | {r['molecules']} | {r['conformers']} | "
            f"{r['geometry_ok']:.0%} | {r['bonds_ok']:.0%} | {r['clash_free']:.0%} | "
            f"{r['molecules_all_ok']:.0%} | {r['median_max_bond_error_A']:.3f} | "
            f"{r['ms_per_conformer']:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 molecule per count, 2 samples")
    parser.add_argument("--per-count", type=int, help="molecules per heavy-atom count "
                        "(default 3 QM9 / 2 drugs; 1 with --quick)")
    parser.add_argument("--conformers", type=int, help="samples per molecule (default 4; 2 "
                        "with --quick)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS, help="results directory")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    conformers = args.conformers or (2 if args.quick else 4)
    qm9_count = args.per_count or (1 if args.quick else 3)
    drug_count = args.per_count or (1 if args.quick else 2)
    molecules = qm9_molecules(qm9_count, args.seed) + drug_molecules(drug_count)
    start = time.perf_counter()
    rows = measure(molecules, conformers, args.seed)
    meta = {"conformers": conformers, "threads": torch.get_num_threads(), "quick": args.quick,
            "sampler": DEFAULT_SAMPLER.label(),
            "seed": args.seed, "seconds": round(time.perf_counter() - start, 1),
            "when": utc_time(),
            "command": "python benchmarks/conformer_size_limit.py"
                       + " --quick" * args.quick}
    table = summarise(rows)
    markdown = to_markdown(table, meta)
    stem = "conformer_size_limit" + "_quick" * args.quick
    write_results(args.out, stem, {"meta": meta, "bins": table, "molecules": rows}, markdown,
                  indent=2)
    print()
    print(markdown)


if __name__ == "__main__":
    main()
