"""Training infrastructure: config, EMA, atomic checkpoints, exact resume, 2-process DDP."""

import json
import os
import subprocess
import sys

import pytest
import torch

from quotient_diffusion.training import EMA, TrainConfig, load_trained_model, train
from quotient_diffusion.training.checkpoint import load_checkpoint, save_checkpoint


def tiny_config(tmp_path, steps=6, **run) -> TrainConfig:
    cfg = TrainConfig.from_dict({
        "task": {"name": "toy", "options": {"num_train": 32, "num_val": 8}},
        "model": {"network": "egnn", "hidden": 16, "layers": 2, "treatment": "quotient"},
        "optim": {"batch_size": 8, "steps": steps, "lr": 1e-3, "ema_decay": 0.9},
        "run": {"out_dir": str(tmp_path / "run"), "checkpoint_every": 3, "validate_every": 3,
                "log_every": 1, **run},
    })
    return cfg


def test_config_round_trip_and_unknown_keys(tmp_path):
    cfg = tiny_config(tmp_path)
    cfg.save(tmp_path / "c.json")
    assert TrainConfig.load(tmp_path / "c.json") == cfg
    with pytest.raises(ValueError, match="unknown key"):
        TrainConfig.from_dict({"optim": {"learning_rate": 1.0}})
    with pytest.raises(ValueError, match="unknown config section"):
        TrainConfig.from_dict({"optimiser": {}})


def test_ema_is_the_exponential_average():
    lin = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        lin.weight.fill_(0.0)
    ema = EMA(lin, 0.5)
    for value in (1.0, 3.0):
        with torch.no_grad():
            lin.weight.fill_(value)
        ema.update(lin)
    # 0 -> 0.5*0 + 0.5*1 = 0.5 -> 0.5*0.5 + 0.5*3 = 1.75
    assert float(ema.shadow.weight) == pytest.approx(1.75)


def test_atomic_checkpoint_leaves_no_temporary(tmp_path):
    save_checkpoint(tmp_path / "a.pt", {"x": torch.arange(3)})
    assert load_checkpoint(tmp_path / "a.pt")["x"].tolist() == [0, 1, 2]
    assert not (tmp_path / "a.pt.tmp").exists()


def test_resume_continues_exactly(tmp_path):
    torch.set_num_threads(1)
    straight = tiny_config(tmp_path / "a", steps=6)
    final = train(straight, progress=False)
    ref = load_checkpoint(final)["model"]
    # the same run, "killed" after the checkpoint at step 3 and resumed
    part = tiny_config(tmp_path / "b", steps=6)
    assert train(part, progress=False, until_step=3).name == "last.pt"
    resumed = load_checkpoint(train(part, resume=True, progress=False))
    assert resumed["step"] == 6
    for key, value in ref.items():
        assert torch.allclose(value, resumed["model"][key]), key
    lines = (tmp_path / "a" / "run" / "metrics.jsonl").read_text().splitlines()
    assert any("val_loss" in json.loads(line) for line in lines)
    model, cfg = load_trained_model(final)
    assert cfg.model.treatment == "quotient" and not model.training


def test_cli_train_reports_bad_config(tmp_path):
    from quotient_diffusion.cli import main

    bad = tmp_path / "bad.json"
    bad.write_text('{"optim": {"nope": 1}}')
    assert main(["train", "--config", str(bad)]) == 2


@pytest.mark.distributed
def test_two_process_data_parallel_training(tmp_path):
    """torchrun with 2 CPU processes (gloo): both ranks finish with identical weights."""
    cfg = tiny_config(tmp_path, steps=4)
    cfg.save(tmp_path / "cfg.json")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
           "--master_port=29517", "-m", "quotient_diffusion.cli", "train",
           "--config", str(tmp_path / "cfg.json"), "--no-progress"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    state = load_checkpoint(tmp_path / "run" / "final.pt")
    assert state["step"] == 4
    assert all(torch.isfinite(v).all() for v in state["model"].values())
