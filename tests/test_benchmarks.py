"""The pieces of benchmarks/ that numbers on the docs pages rest on.

* ``throughput.PaddedEGNN``, the EDM-pattern network the throughput page compares against: its
  padding and masks must make it the same function of each molecule whatever the batch (else the
  comparison would time a different network), and it must be E(3)-equivariant as EDM's is.
* ``run_curve``: the snapshot of a run's curve keeps every record and column.
* ``denovo_bundled --quick`` runs end to end on a model trained here (g2 molecules, seconds),
  records its checkpoint, skips finished records on a rerun, and refuses a missing bundled model
  with exit status 2.
* ``bound_pose --quick`` scores ETKDG, ETKDG + MMFF, the bundled QM9 model (refusing what it
  cannot take) and a drug-vocabulary model on the Genentech sets (and the CCD test split where
  its cache is built), resumes from its stored passes, and answers bad input with one line and
  exit status 2; its RMSD is symmetry-aware and blind to rigid motions.
* ``toy_recovery --points``: the learning part at several N writes every N, network, treatment,
  budget and seed, with finite quotient / conventional ratios beside the theory's 3/(3N-3).
* ``backbone_geometry --quick``: the bundled backbone model's rows beside the natural test
  chains' (natural CA-CA within 0.2 A of 3.80 A, no clashes), and bad input (a missing, broken
  or other task's checkpoint, an unwritable folder, no data) refused with exit status 2 before
  any sampling.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path
from types import ModuleType

import torch

from quotient_diffusion.nn.testing import assert_equivariant

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def load_script(name: str) -> ModuleType:
    """Import ``benchmarks/<name>.py`` (the folder is not a package), with the folder on
    ``sys.path`` as when the script runs (it imports ``benchmarks/_results.py``)."""
    if str(BENCHMARKS) not in sys.path:
        sys.path.append(str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def padded_net(throughput: ModuleType) -> torch.nn.Module:
    torch.manual_seed(0)
    net = throughput.PaddedEGNN(in_features=3, out_features=3, hidden=16, layers=2).double()
    # EDM initialises the last coordinate layer near zero; make the coordinate path visible
    for mlp in net.coord_mlps:
        torch.nn.init.normal_(mlp[-1].weight, std=0.3)
    return net


def test_padded_egnn_is_equivariant_and_molecules_are_isolated():
    throughput = load_script("throughput")
    net = padded_net(throughput)
    gen = torch.Generator().manual_seed(1)
    batch = torch.tensor([0] * 4 + [1] * 7 + [2] * 2)
    pos = torch.randn(len(batch), 3, generator=gen, dtype=torch.float64)
    attr = torch.randn(len(batch), 3, generator=gen, dtype=torch.float64)
    t = torch.rand(3, generator=gen, dtype=torch.float64)
    assert_equivariant(net, pos, attr, batch, t, generator=gen)


def test_padded_egnn_output_does_not_depend_on_the_padding():
    """A molecule alone (no padding) and beside a larger one (padded to its size) agree."""
    throughput = load_script("throughput")
    net = padded_net(throughput)
    gen = torch.Generator().manual_seed(2)
    small = torch.randn(3, 3, generator=gen, dtype=torch.float64)
    large = torch.randn(8, 3, generator=gen, dtype=torch.float64)
    attr = torch.randn(11, 3, generator=gen, dtype=torch.float64)
    t = torch.tensor([0.3, 0.8], dtype=torch.float64)
    with torch.no_grad():
        alone_vec, alone_feat = net(small, attr[:3], torch.zeros(3, dtype=torch.long), t[:1])
        vec, feat = net(torch.cat([small, large]), attr, torch.tensor([0] * 3 + [1] * 8), t)
    assert torch.allclose(vec[:3], alone_vec, atol=1e-12)
    assert torch.allclose(feat[:3], alone_feat, atol=1e-12)
    assert alone_vec.abs().max() > 1e-3  # the coordinate path is not trivially zero


def test_run_curve_snapshot_keeps_every_record(tmp_path):
    run_curve = load_script("run_curve")
    run = tmp_path / "my_run"
    run.mkdir()
    config = {
        "model": {"network": "egnn", "hidden": 8, "layers": 2, "treatment": "quotient"},
        "optim": {"steps": 20, "batch_size": 4, "lr": 1e-3, "ema_decay": 0.99},
    }
    curve = [
        {"step": 10, "hours": 0.01, "val_loss": 0.5, "val_bond_mae": 0.04},
        {"step": 20, "hours": 0.02, "val_loss": 0.4, "val_bond_mae": 0.03},
    ]
    (run / "config.json").write_text(json.dumps(config))
    (run / "curve.json").write_text(json.dumps(curve))
    run_curve.main(["--run", str(run), "--out", str(tmp_path / "results")])
    snap = json.loads((tmp_path / "results" / "run_curve_my_run.json").read_text())
    assert snap["curve"] == curve and snap["config"] == config
    table = (tmp_path / "results" / "run_curve_my_run.md").read_text()
    assert "| 20 | 0.02 | 0.4 | 0.03 |" in table
    assert "val_mse_t0.90" not in table  # columns the run does not record are left out


def test_run_curve_of_a_staged_model_counts_steps_from_the_source_checkpoint(tmp_path):
    """Stage 2 warm-started from stage 1 at step 20 (init_from_step in its history): its
    records continue at total step 20 + step, and a plot is written."""
    from quotient_diffusion.training.checkpoint import save_checkpoint

    run_curve = load_script("run_curve")
    config = {
        "model": {"network": "egnn", "hidden": 8, "layers": 2, "treatment": "quotient"},
        "optim": {"steps": 30, "batch_size": 4, "lr": 1e-3, "ema_decay": 0.99},
    }
    stages = []
    for name, steps, history in (
        ("one", (10, 30), [{"start_step": 0, "end_step": 30}]),
        ("two", (10,), [{"start_step": 0, "end_step": 10, "init_from": "one/last.pt",
                         "init_from_step": 20}]),
    ):
        run = tmp_path / name
        run.mkdir()
        (run / "config.json").write_text(json.dumps(config))
        (run / "curve.json").write_text(json.dumps([{"step": s, "val_loss": 1 / s,
                                                     "val_chiral_ok": 0.5} for s in steps]))
        save_checkpoint(run / "last.pt", {"history": history})
        stages += ["--run", str(run)]
    out = tmp_path / "results"
    run_curve.main([*stages, "--name", "staged", "--out", str(out)])
    snap = json.loads((out / "run_curve_staged.json").read_text())
    assert [(r["stage"], r["total_step"]) for r in snap["curve"]] == [(1, 10), (1, 30), (2, 30)]
    assert (out / "run_curve_staged.png").stat().st_size > 0
    assert "| 2 | 30 | 10 |" in (out / "run_curve_staged.md").read_text()


def test_denovo_bundled_quick_runs_resumes_and_needs_a_model(tmp_path, monkeypatch, capsys):
    from rdkit import Chem

    from quotient_diffusion.tasks import get_task
    from quotient_diffusion.training import TrainConfig, train

    monkeypatch.syspath_prepend(str(BENCHMARKS))  # it imports its sibling scripts
    bench = load_script("denovo_bundled")
    cfg = TrainConfig.from_dict({
        "task": {"name": "molecules", "options": {"source": "g2"}},
        "model": {"network": "egnn", "hidden": 8, "layers": 1, "treatment": "quotient"},
        "optim": {"batch_size": 8, "steps": 6, "lr": 2e-3, "ema_decay": 0.9},
        "run": {"out_dir": str(tmp_path / "run"), "checkpoint_every": 1000,
                "validate_every": 1000, "log_every": 10, "seed": 0},
    })
    final = train(get_task(cfg), cfg, progress=False)
    out = tmp_path / "results"
    argv = ["--quick", "--checkpoint", str(final), "--out", str(out), "--name", "t", "--sdf", "3"]
    assert bench.main(argv) == 0
    payload = json.loads((out / "t.json").read_text())
    assert payload["checkpoint"]["step"] == 6 and payload["checkpoint"]["planned_steps"] == 6
    assert payload["machine"]["torch_threads"] == 1 and "--quick" in payload["command"]
    assert [r["sampler"] for r in payload["main"]] == ["dpm2m-power2-20"]  # DEFAULT_SAMPLER
    assert [r["sampler"] for r in payload["samplers"]] == ["euler-uniform-10", "sde-uniform-20"]
    for record in payload["main"] + payload["samplers"]:
        assert record["samples"] == 12
        assert set(bench.METRICS) | {"ms_per_molecule"} <= set(record["metrics"])
    table = (out / "t.md").read_text()
    assert "| EDM (published) | — | 10,000 | 98.7 | 82.0 | 91.9 | 90.7 |" in table
    assert "| GeoLDM (published) | — | 10,000 | 98.9 | 89.4 | 93.8 | 92.7 |" in table
    assert "| sde-uniform-20 | sde | 20 |" in table
    assert len(Chem.SDMolSupplier(str(out / "t.sdf"), sanitize=False, removeHs=False)) == 3

    def fail(*args, **kwargs):
        raise AssertionError("a finished record was sampled again")

    monkeypatch.setattr(bench, "score_samples", fail)
    assert bench.main(argv) == 0
    assert json.loads((out / "t.json").read_text())["samplers"] == payload["samplers"]

    import quotient_diffusion.tasks.loading as loading

    monkeypatch.setattr(loading, "bundled_checkpoint", lambda name: tmp_path / "absent.pt")
    capsys.readouterr()
    assert bench.main(["--quick", "--out", str(out)]) == 2
    assert "no bundled de novo model" in capsys.readouterr().err
    assert bench.main(["--quick", "--checkpoint", str(final), "--out", str(out / "t.md")]) == 2


def _drug_conformer_checkpoint(path: Path) -> Path:
    """An untrained conformer model with the drug-like CCD vocabulary (H C N O F S Cl Br),
    saved as ``train`` would: no data needed."""
    from quotient_diffusion.tasks import get_task
    from quotient_diffusion.training import TrainConfig
    from quotient_diffusion.training.checkpoint import save_checkpoint
    from quotient_diffusion.training.loop import CHECKPOINT_VERSION

    cfg = TrainConfig.from_dict({
        "task": {"name": "conformers", "options": {
            "source": "ccd", "stereo": True,
            "elements": ["H", "C", "N", "O", "F", "S", "Cl", "Br"]}},
        "model": {"network": "egnn", "hidden": 16, "layers": 2, "treatment": "quotient"}})
    torch.manual_seed(0)
    model = get_task(cfg).build_model()
    save_checkpoint(path, {"version": CHECKPOINT_VERSION, "config": cfg.to_dict(), "step": 0,
                           "model": model.state_dict(), "ema": model.state_dict(), "optim": {}})
    return path


def test_bound_pose_rmsd_is_symmetry_aware_and_blind_to_rigid_motions():
    from rdkit import Chem
    from rdkit.Chem import AllChem
    from scipy.spatial.transform import Rotation

    bench = load_script("bound_pose")
    mol = Chem.AddHs(Chem.MolFromSmiles("OC(=O)c1ccc(C(F)(F)F)cc1"))
    AllChem.EmbedMolecule(mol, randomSeed=7)
    ligand = bench.Ligand("t", mol, mol.GetNumHeavyAtoms())
    scorer = bench.PoseScorer(ligand)
    pos = mol.GetConformer().GetPositions()
    moved = pos @ Rotation.from_euler("xyz", [0.3, -1.1, 2.0]).as_matrix().T + [4.0, -2.0, 1.0]
    swapped = pos.copy()  # the carboxyl oxygens (atoms 0 and 2) and two fluorines exchanged
    swapped[[0, 2]] = pos[[2, 0]]
    swapped[[8, 9]] = pos[[9, 8]]
    bent = pos.copy()
    bent[0] += [0.5, 0.0, 0.0]
    rmsd = scorer.rmsds([moved, swapped, bent])
    assert rmsd[0] < 1e-4 and rmsd[1] < 1e-4 and rmsd[2] > 0.05
    assert not scorer.capped
    assert bench.best_by_count(rmsd, (1, 3)) == {"1": 0.0, "3": 0.0}


def test_bound_pose_quick_runs_resumes_and_refuses_bad_input(tmp_path, monkeypatch, capsys):
    from conftest import require_data

    root = require_data("druglike/genentech_pdb_ligands_charged.sdf")
    from quotient_diffusion.data.ccd import cache_path

    bench = load_script("bound_pose")
    model = _drug_conformer_checkpoint(tmp_path / "drug.pt")
    sets = ["genentech_neutral", "genentech_charged"]
    if cache_path().exists():  # building the CCD set takes minutes: only where it is cached
        sets.append("ccd_test")
    out = tmp_path / "results"
    argv = ["--quick", "--molecules", "3", "--counts", "4", "2", "--sets", *sets, "--bundled",
            "--checkpoint", str(model), "--model-name", "drug", "--out", str(out)]
    assert bench.main(argv) == 0
    payload = json.loads((out / "bound_pose_quick.json").read_text())
    assert payload["settings"]["counts"] == [2, 4] and list(payload["sets"]) == sets
    assert payload["sets"]["genentech_charged"]["info"]["hydrogens_added"] > 0
    for data in payload["sets"].values():
        assert set(data["methods"]) == {"etkdg", "etkdg+mmff", "bundled_qm9", "drug"}
        for method, m in data["methods"].items():
            assert m["molecules"] == 3 and m["accepted"] + m["refused"] + m["failed"] == 3
            best = data["per_molecule"][method]["best_rmsd"]
            for two, four in zip(best["2"], best["4"]):  # the first 4 include the first 2
                assert (two is None) == (four is None) and (two is None or four <= two)
        assert data["methods"]["etkdg"]["accepted"] == 3
        assert data["methods"]["drug"]["conformers"] == 4 * data["methods"]["drug"]["accepted"]
        bundled = data["methods"]["bundled_qm9"]
        assert sum(bundled.get("refusals", {}).values()) == bundled["refused"]
    table = (out / "bound_pose_quick.md").read_text()
    assert "| etkdg | 3 | 3 | 4 |" in table and "## genentech_charged" in table
    assert (out / "bound_pose_quick.png").stat().st_size > 0

    def fail(*args, **kwargs):
        raise AssertionError("a stored pass was computed again")

    monkeypatch.setattr(bench, "etkdg_records", fail)
    monkeypatch.setattr(bench, "model_records", fail)
    assert bench.main(argv) == 0
    again = json.loads((out / "bound_pose_quick.json").read_text())
    assert again["sets"]["genentech_neutral"]["per_molecule"] == \
        payload["sets"]["genentech_neutral"]["per_molecule"]

    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    empty = tmp_path / "no_data"
    empty.mkdir()
    capsys.readouterr()
    for bad, message in (
            (["--checkpoint", str(tmp_path / "absent.pt")], "no such file"),
            (["--checkpoint", str(garbage)], "cannot load the model"),
            (["--data-dir", str(empty)], "set genentech_neutral: data not found"),
            (["--out", str(root / "druglike" / "README.md")], "not a directory"),
            (["--counts", "0"], "--counts must be at least 1")):
        assert bench.main(["--quick", "--sets", "genentech_neutral", "--out", str(out),
                           *bad]) == 2
        err = capsys.readouterr().err
        assert err.startswith("bound_pose: ") and message in err and err.count("\n") == 1


def test_toy_recovery_at_several_point_counts_writes_every_run_and_finite_ratios(tmp_path):
    toy = load_script("toy_recovery")
    points, networks, treatments = [4, 5], ["egnn", "transformer"], ["conventional", "quotient"]
    toy.main(["--quick", "--threads", "1", "--points", *map(str, points), "--network", *networks,
              "--treatments", *treatments, "--seeds", "3", "--budgets", "2", "1",
              "--num-samples", "20", "--out", str(tmp_path)])
    stem = tmp_path / "toy_recovery_quick_egnn-transformer_points4-5_learning"
    payload = json.loads(stem.with_suffix(".json").read_text())
    assert payload["config"]["budgets"] == [1, 2] and "--points 4 5" in payload["command"]
    for n in points:
        for net in networks:
            by_treatment = payload["learning"][str(n)][net]
            assert list(by_treatment) == treatments
            for tname in treatments:
                for rows in by_treatment[tname].values():
                    assert len(rows) == 3  # one per seed
                    for row in rows:
                        assert all(math.isfinite(v) for v in row.values())
                        if tname == "quotient":  # its error is already horizontal
                            assert row["horizontal_error"] == row["denoiser_error"]
                curve = payload["curves"][str(n)][net][tname]
                assert curve["steps"] == [1, 2] and len(curve["rg"]["std"]) == 2
            ratios = payload["ratios"][str(n)][net]
            assert ratios["steps"] == 2 and ratios["theory"] == 3 / (3 * n - 3)
            for key in ("horizontal_error", "rg", "logdetK", "pair"):
                assert len(ratios[key]["per_seed"]) == 3
                assert all(math.isfinite(r) and r > 0 for r in ratios[key]["per_seed"])
    table = stem.with_suffix(".md").read_text()
    assert "| 5 | transformer | 0.250 |" in table and "N = 4, egnn:" in table
    assert stem.with_suffix(".png").stat().st_size > 0


def test_backbone_geometry_quick_reports_natural_and_model_rows_and_refuses_bad_input(
        tmp_path, monkeypatch, capsys):
    from conftest import require_data

    require_data("proteins/db5.5_structures.tar.gz")
    bench = load_script("backbone_geometry")
    out = tmp_path / "results"
    assert bench.main(["--quick", "--out", str(out), "--name", "t"]) == 0
    payload = json.loads((out / "t.json").read_text())
    assert payload["checkpoint"]["step"] > 0 and len(payload["checkpoint"]["sha256"]) == 64
    assert payload["sampler"]["label"] == "euler-uniform-20"
    assert len(payload["machine"]["load_average_at_start"]) == 3 and payload["wall_time_s"] > 0
    rows = payload["rows"]
    for part in ("at_length", "all_lengths"):
        natural, model = rows[part]["natural"], rows[part]["model"]
        assert natural["ca_ca_within_0.2"] > 0.9 and abs(natural["ca_ca_mean"] - 3.8) < 0.05
        assert natural["clash_pair_fraction"] == 0.0
        for r in (natural, model):
            assert 0 <= r["ca_ca_within_0.1"] <= r["ca_ca_within_0.2"] <= 1
            assert 0 <= r["helix_fraction"] + r["strand_fraction"] <= 1
            assert 0 < r["pairwise_tm"] <= 1 and r["rg_ratio_mean"] > 0
        assert math.isfinite(model["bond_angle_w1"]) and math.isfinite(model["dihedral_w1"])
    assert rows["at_length"]["model"]["min_length"] == rows["at_length"]["model"]["max_length"] \
        == 100 and rows["at_length"]["model"]["chains"] == 2
    assert rows["all_lengths"]["natural"]["dihedral_w1"] == \
        payload["w1_floor_halves"]["dihedral_w1"]["mean"]
    assert "| L = 100 | model | 2 | 100-100 |" in (out / "t.md").read_text()
    assert (out / "t.png").stat().st_size > 0

    def fail(*args, **kwargs):
        raise AssertionError("sampled before the input was checked")

    monkeypatch.setattr(bench, "sample", fail)
    conformer = _drug_conformer_checkpoint(tmp_path / "drug.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    capsys.readouterr()
    for bad, message in (
            (["--checkpoint", str(tmp_path / "absent.pt")], "no such file"),
            (["--checkpoint", str(garbage)], "cannot load the model"),
            (["--checkpoint", str(conformer)], "not 'backbones'"),
            (["--out", str(garbage)], "not a directory"),
            (["--data-dir", str(tmp_path)], "data not found"),
            (["--per-length", "0"], "--per-length must be at least 1")):
        assert bench.main(["--quick", "--out", str(out), *bad]) == 2
        err = capsys.readouterr().err
        assert err.startswith("backbone_geometry: ") and message in err and err.count("\n") == 1
