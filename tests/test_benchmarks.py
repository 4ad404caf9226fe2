"""The pieces of benchmarks/ that numbers on the docs pages rest on.

* ``throughput.PaddedEGNN``, the EDM-pattern network the throughput page compares against: its
  padding and masks must make it the same function of each molecule whatever the batch (else the
  comparison would time a different network), and it must be E(3)-equivariant as EDM's is.
* ``run_curve``: the snapshot of a run's curve keeps every record and column.
* ``denovo_bundled --quick`` runs end to end on a model trained here (g2 molecules, seconds),
  records its checkpoint, skips finished records on a rerun, and refuses a missing bundled model
  with exit status 2.
"""

from __future__ import annotations

import importlib.util
import json
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
        "task": {"name": "denovo_qm9", "options": {"source": "g2"}},
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
