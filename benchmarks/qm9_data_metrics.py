"""Do our molecule metrics reproduce EDM's numbers for the QM9 data itself?

EDM reports, for the QM9 geometries, atom stability 99.0 %, molecule stability 95.2 %, validity
97.7 % (and valid x unique 97.7 %). This script computes the same metrics
(quotient_diffusion.metrics.molecules) on the DFT geometries of the QM9 test split (EDM split,
13,083 molecules) and of the training split, plus what EDM does not report: validity with RDKit's
xyz2mol (DetermineBonds), connectedness, novelty of the test molecules against the training
split, the agreement of the perceived SMILES with the QM9 (GDB) SMILES, and the distribution
distances between the test and training geometries (the floor for generated molecules).

    OMP_NUM_THREADS=1 python benchmarks/qm9_data_metrics.py          # about 2 minutes
    OMP_NUM_THREADS=1 python benchmarks/qm9_data_metrics.py --quick  # 1,000 test molecules
"""

from __future__ import annotations

import argparse
import collections
import sys
import time

import numpy as np
from _results import RESULTS, write_json, write_text

from quotient_diffusion.chem.elements import SYMBOL_OF
from quotient_diffusion.data.qm9 import load_qm9
from quotient_diffusion.metrics.molecules import evaluate, flatten, stability, validity
from quotient_diffusion.tasks.conformers import canonical_no_stereo
from quotient_diffusion.tasks.molecules import qm9_molecules, qm9_reference_smiles

EDM_DATA = {"atom_stability": 0.990, "molecule_stability": 0.952, "validity": 0.977,
            "valid_unique": 0.977}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    qm9 = load_qm9()
    test = qm9.subset("test")
    if args.quick:
        test = test[:1000]
    train = qm9.subset("train")
    mols = qm9_molecules(qm9, test)
    reference = qm9_molecules(qm9, np.random.RandomState(0).permutation(train)[:5000])
    out = {"test": evaluate(mols, train_smiles=qm9_reference_smiles("train"),
                            reference=reference, xyz2mol=True)}
    # where the table rule fails: (element, valence) of unstable atoms
    z, pos, batch = flatten(mols)
    stab = stability(z, pos, batch)
    bad = ~stab["atom_stable"]
    out["unstable_atoms"] = {f"{SYMBOL_OF[a]} valence {v}": c for (a, v), c in collections.Counter(
        zip(z[bad].tolist(), stab["valence"][bad].tolist())).most_common()}
    charged = np.array([("+" in qm9.smiles[i]) or ("-" in qm9.smiles[i]) for i in test])
    out["charged_molecules"] = float(charged.mean())
    out["molecule_stability_uncharged"] = float(stab["molecule_stable"][~charged].mean())
    perceived = validity(mols)["smiles"]
    same = [s is not None and s == canonical_no_stereo(qm9.smiles[i])
            for s, i in zip(perceived, test)]
    out["perceived_smiles_equal_qm9"] = float(np.mean(same))
    if not args.quick:
        zt, pt, bt = flatten(qm9_molecules(qm9, train))
        st = stability(zt, pt, bt)
        out["train"] = {"atom_stability": float(st["atom_stable"].mean()),
                        "molecule_stability": float(st["molecule_stable"].mean())}
    out["seconds"] = time.perf_counter() - t0
    out["command"] = "OMP_NUM_THREADS=1 python benchmarks/qm9_data_metrics.py" + (
        " --quick" if args.quick else "")
    tag = "denovo_qm9_data_quick" if args.quick else "denovo_qm9_data"
    write_json(RESULTS / f"{tag}.json", out)
    t = out["test"]
    rows = [("atom stability", "atom_stability"), ("molecule stability", "molecule_stability"),
            ("validity (EDM table + sanitize)", "validity"), ("valid x unique", "valid_unique")]
    lines = [f"Command: `{out['command']}` ({len(test)} QM9 test molecules)", "",
             "| metric | ours, QM9 test | EDM, QM9 data |", "|---|---|---|"]
    lines += [f"| {name} | {100 * t[key]:.1f} | {100 * EDM_DATA[key]:.1f} |" for name, key in rows]
    lines += [f"| validity (RDKit xyz2mol) | {100 * t['validity_xyz2mol']:.1f} | — |",
              f"| valid and connected | {100 * t['connected']:.1f} | — |",
              f"| novelty vs training split | {100 * t['novelty']:.1f} | — |",
              f"| perceived SMILES = QM9 SMILES | {100 * out['perceived_smiles_equal_qm9']:.1f} "
              "| — |",
              f"| atom-type TV vs 5,000 training molecules | {t['atom_type_tv']:.4f} | — |",
              f"| bond-length W1 vs training (Å) | {t['bond_length_w1']:.4f} | — |"]
    if "train" in out:
        lines += [f"| atom / molecule stability, training split | "
                  f"{100 * out['train']['atom_stability']:.1f} / "
                  f"{100 * out['train']['molecule_stability']:.1f} | — |"]
    lines += ["", "Unstable atoms (element, valence by the table): " + ", ".join(
        f"{k}: {v}" for k, v in out["unstable_atoms"].items())]
    write_text(RESULTS / f"{tag}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
