"""The de novo ``molecules`` task: features, every treatment trains and samples, end to end
through `qdiff sample molecules` (with ``--checkpoint``, and without: the bundled model, or exit 2
where it is absent); checkpoints and configs of its former name ``denovo_qm9`` still load, train
and resume.

Uses the H/C/N/O/F molecules of ASE's g2 collection (``source='g2'``): no QM9 download."""

import numpy as np
import pytest
import torch

from quotient_diffusion.cli import main
from quotient_diffusion.data import collate
from quotient_diffusion.diffusion import TREATMENTS, SamplerConfig
from quotient_diffusion.metrics.molecules import ATOMIC_NUMBERS
from quotient_diffusion.tasks import get_task, load_trained_model
from quotient_diffusion.tasks.molecules import draw_atom_counts, generate_molecules
from quotient_diffusion.training import TrainConfig, load_checkpoint, save_checkpoint, train


def config(tmp_path, treatment="quotient", steps=30, name="molecules", **options) -> TrainConfig:
    return TrainConfig.from_dict({
        "task": {"name": name, "options": {"source": "g2", **options}},
        "model": {"network": "egnn", "hidden": 16, "layers": 2, "treatment": treatment},
        "optim": {"batch_size": 8, "steps": steps, "lr": 2e-3, "ema_decay": 0.9},
        "run": {"out_dir": str(tmp_path / treatment), "checkpoint_every": 1000,
                "validate_every": 1000, "log_every": 10, "seed": 0},
    })


def test_features_are_scaled_one_hot_types(tmp_path):
    task = get_task(config(tmp_path, charges=True))
    train_set, val_set = task.datasets()
    assert len(train_set) > 50 and len(val_set) > 0 and task.feature_dim() == 6
    z, _ = train_set.molecule(0)
    g = train_set[0]
    feats = g.extras["features"]
    assert g.node_attr.shape == (len(z), 0) and feats.shape == (len(z), 6)
    assert torch.equal(feats[:, :5].argmax(1), torch.as_tensor(
        [ATOMIC_NUMBERS.index(int(a)) for a in z]))
    assert torch.allclose(feats[:, :5].sum(1), torch.full((len(z),), 0.25))
    assert torch.allclose(feats[:, 5], torch.as_tensor(z, dtype=torch.float32) / 10)
    hist = task.atom_count_histogram()
    assert hist.sum() == pytest.approx(1.0) and hist[0] == 0 and hist[1] == 0
    counts = draw_atom_counts(hist, 200, seed=1)
    assert (hist[counts] > 0).all()


@pytest.mark.parametrize("treatment", sorted(TREATMENTS))
def test_every_treatment_trains_and_samples(tmp_path, treatment):
    torch.manual_seed(0)
    task = get_task(config(tmp_path, treatment))
    train_set, _ = task.datasets()
    model = task.build_model()
    graph = collate(train_set[:6])
    loss, logs = model.training_loss(graph, torch.Generator().manual_seed(0))
    loss.backward()
    assert torch.isfinite(loss) and "feature_loss" in logs
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    for method, steps in (("ode", 4), ("sde", 6)):
        mols = generate_molecules(model, [2, 3, 9], SamplerConfig(steps=steps, method=method))
        assert [len(z) for z, _ in mols] == [2, 3, 9]
        for z, pos in mols:
            assert set(z.tolist()) <= set(ATOMIC_NUMBERS) and np.isfinite(pos).all()
            assert np.abs(pos.mean(0)).max() < 1e-5


def test_train_then_sample_end_to_end(tmp_path, capsys, monkeypatch):
    from ase.io import read
    from rdkit import Chem

    cfg = config(tmp_path, steps=40)
    final = train(get_task(cfg), cfg, progress=False)
    model, loaded = load_trained_model(final)
    assert loaded.task.name == "molecules"
    # the trained model's loss is below the untrained one's on the same noise
    fresh = get_task(cfg).build_model()
    graph = collate(get_task(cfg).datasets()[0][:32])
    trained_loss = model.training_loss(graph, torch.Generator().manual_seed(3))[0]
    fresh_loss = fresh.training_loss(graph, torch.Generator().manual_seed(3))[0]
    assert trained_loss < fresh_loss

    sdf, xyz = tmp_path / "out.sdf", tmp_path / "out.xyz"
    base = ["sample", "molecules", "--checkpoint", str(final), "-n", "5", "--steps", "8"]
    assert main(base + ["-o", str(sdf)]) == 0
    assert "wrote 5 molecules" in capsys.readouterr().out
    records = list(Chem.SDMolSupplier(str(sdf), sanitize=False, removeHs=False))
    assert len(records) == 5 and all(m is not None for m in records)
    assert all(m.HasProp("stable") and m.HasProp("valid") for m in records)
    assert main(base + ["-o", str(xyz), "--num-atoms", "7", "--method", "sde"]) == 0
    frames = read(str(xyz), index=":")
    assert len(frames) == 5 and all(len(f) == 7 for f in frames)
    assert np.isfinite(np.concatenate([f.get_positions() for f in frames])).all()
    assert main(base + ["-o", str(tmp_path / "bad.pdb")]) == 2
    assert main(["sample", "molecules", "--checkpoint", str(tmp_path / "none.pt"), "-n", "2",
                 "-o", str(sdf)]) == 2

    # without --checkpoint: the bundled model, looked up where the package keeps its models
    import quotient_diffusion.tasks.loading as loading

    bundled = tmp_path / "bundled"
    bundled.mkdir()
    monkeypatch.setattr(loading, "bundled_checkpoint", lambda name: bundled / name)
    capsys.readouterr()
    default = ["sample", "molecules", "-n", "5", "--steps", "8", "--seed", "3"]
    assert main(default + ["-o", str(tmp_path / "none.sdf")]) == 2
    err = capsys.readouterr().err.strip()
    assert "no bundled de novo model" in err and "pass --checkpoint" in err
    assert len(err.splitlines()) == 1 and not (tmp_path / "none.sdf").exists()
    (bundled / "denovo_qm9.pt").write_bytes(final.read_bytes())
    assert main(default + ["-o", str(tmp_path / "bundled.xyz")]) == 0
    assert main(default + ["--checkpoint", str(final), "-o", str(tmp_path / "named.xyz")]) == 0
    assert (tmp_path / "bundled.xyz").read_text() == (tmp_path / "named.xyz").read_text()


def test_help_shows_the_default_sampler():
    from quotient_diffusion.commands import sample_molecules as command
    from quotient_diffusion.diffusion import samplers
    from quotient_diffusion.tasks.molecules import DEFAULT_SAMPLER as d

    assert d.method == "ode" and d.rho is None
    rho = samplers.DEFAULT_RHO.get(d.schedule)
    assert command.ODE_DEFAULT == (f"{d.steps} steps of the {d.solver} solver, {d.schedule} grid"
                                   + (f", rho {rho:g}" if rho else ""))


def test_the_former_task_name_still_loads_trains_and_resumes(tmp_path, capsys):
    """A checkpoint (and a config) that records ``denovo_qm9``, the task's name before the
    rename, is read as ``molecules``: tasks.load under either name, `qdiff sample molecules`
    with the same molecules as today's name, and `qdiff train --resume` with today's config."""
    import json

    from quotient_diffusion.tasks import RENAMED_TASKS, TASKS, checkpoint_config, load

    assert RENAMED_TASKS == {"denovo_qm9": "molecules"} and "denovo_qm9" not in TASKS
    old_config = config(tmp_path, steps=4, name="denovo_qm9")
    task = get_task(old_config)  # a user's config with the former name
    assert task.name == old_config.task.name == "molecules"
    cfg = config(tmp_path, steps=4)
    final = train(get_task(cfg), cfg, progress=False)
    state = load_checkpoint(final)
    state["config"]["task"]["name"] = "denovo_qm9"  # as every checkpoint before the rename
    old = tmp_path / "old" / "last.pt"
    old.parent.mkdir()
    save_checkpoint(old, state)
    assert checkpoint_config(load_checkpoint(old)).task.name == "molecules"
    for expected in (None, "molecules", "denovo_qm9"):
        task, model = load(old, expected)
        assert task.name == task.config.task.name == "molecules"
    sampled = {}
    for name, path in (("new", final), ("old", old)):
        out = tmp_path / f"{name}.xyz"
        assert main(["sample", "molecules", "--checkpoint", str(path), "-n", "3", "--steps", "4",
                     "-o", str(out)]) == 0
        sampled[name] = out.read_bytes()
    assert sampled["old"] == sampled["new"]
    # --resume: today's config on the old checkpoint (the model is the same)
    data = cfg.to_dict()
    data["run"]["out_dir"] = str(old.parent)
    data["optim"]["steps"] = 6
    (tmp_path / "resume.json").write_text(json.dumps(data))
    capsys.readouterr()
    assert main(["train", "--config", str(tmp_path / "resume.json"), "--resume",
                 "--no-progress"]) == 0, capsys.readouterr().err
    resumed = load_checkpoint(old.parent / "final.pt", ("config", "step"))
    assert resumed["step"] == 6 and resumed["config"]["task"]["name"] == "molecules"
