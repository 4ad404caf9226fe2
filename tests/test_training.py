"""Training infrastructure: config, EMA, atomic checkpoints, exact resume, 2-process DDP."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from quotient_diffusion.data import collate
from quotient_diffusion.diffusion import SamplerConfig
from quotient_diffusion.groups import get_group
from quotient_diffusion.scatter import scatter_mean
from quotient_diffusion.tasks import get_task, load_trained_model
from quotient_diffusion.training import EMA, TrainConfig, train
from quotient_diffusion.training.checkpoint import load_checkpoint, save_checkpoint

ROOT = Path(__file__).resolve().parents[1]


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


def test_pair_budget_keeps_the_longest_prefix_that_fits():
    from quotient_diffusion.data import Graph
    from quotient_diffusion.training.trainable import within_pair_budget

    graphs = [Graph(torch.zeros(n, 3), torch.zeros(n, 1)) for n in (4, 3, 5, 2)]  # 12 6 20 2 pairs
    assert within_pair_budget(graphs, None) == graphs
    assert [g.num_nodes for g in within_pair_budget(graphs, 18)] == [4, 3]
    assert [g.num_nodes for g in within_pair_budget(graphs, 40)] == [4, 3, 5, 2]
    assert [g.num_nodes for g in within_pair_budget(graphs, 37)] == [4, 3]  # 38 > 37: stop
    assert [g.num_nodes for g in within_pair_budget(graphs, 1)] == [4]  # never empty
    with pytest.raises(ValueError, match="optim.max_pairs"):
        TrainConfig.from_dict({"optim": {"max_pairs": 0}})


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


def assert_same_state(a: dict, b: dict, what: str) -> None:
    """Two (nested) state dicts hold bit-identical tensors and equal other values."""
    assert a.keys() == b.keys(), what
    for key, value in a.items():
        other = b[key]
        if isinstance(value, dict):
            assert_same_state(value, other, f"{what}.{key}")
        elif isinstance(value, torch.Tensor):
            assert torch.equal(value, other), f"{what}.{key}"
        else:
            assert value == other, f"{what}.{key}"


def test_resume_continues_exactly(tmp_path, single_thread):
    """A run stopped after its step-3 checkpoint and resumed ends bit-identical to the run that
    was never stopped: model, EMA and optimiser state (the thread count is restored after)."""
    straight = tiny_config(tmp_path / "a", steps=6)
    final = train(get_task(straight), straight, progress=False)
    ref = load_checkpoint(final)
    part = tiny_config(tmp_path / "b", steps=6)
    stopped = load_checkpoint(train(get_task(part), part, progress=False, until_step=3))
    assert stopped["step"] == 3
    assert any(not torch.equal(v, ref["model"][k]) for k, v in stopped["model"].items())
    resumed = load_checkpoint(train(get_task(part), part, resume=True, progress=False))
    assert resumed["step"] == ref["step"] == 6
    for key in ("model", "ema", "optim"):
        assert_same_state(ref[key], resumed[key], key)
    lines = (tmp_path / "a" / "run" / "metrics.jsonl").read_text().splitlines()
    assert any("val_loss" in json.loads(line) for line in lines)
    model, cfg = load_trained_model(final)
    assert cfg.model.treatment == "quotient" and not model.training


def test_export_keeps_the_weights_and_the_record_not_the_optimiser(tmp_path, single_thread):
    """`qdiff export` writes config, step, EMA weights and the run's history and curve; the
    exported model is the training checkpoint's EMA model."""
    from quotient_diffusion.training import export_weights

    config = tiny_config(tmp_path, steps=3)
    final = train(get_task(config), config, progress=False)
    export_weights(final, tmp_path / "slim.pt")
    full, slim = load_checkpoint(final), load_checkpoint(tmp_path / "slim.pt")
    assert set(slim) == {"version", "config", "step", "ema", "history", "curve", "elapsed_s"}
    assert slim["history"] == full["history"] and slim["history"][0]["end_step"] == 3
    assert slim["curve"] == full["curve"] and slim["curve"]
    assert_same_state(full["ema"], slim["ema"], "ema")


@pytest.mark.parametrize("group", ["SO2", "SO3", "SE3"])
def test_toy_trains_and_samples_with_the_group_of_its_config(tmp_path, single_thread, group):
    """configs/toy_so2.json shrunk to seconds, and the same with SO3 and SE3: the checkpoint
    records the group, the reloaded model quotients by it, its SDE samples are finite, and only
    a group with translations centres them."""
    data = json.loads((ROOT / "configs" / "toy_so2.json").read_text())
    assert data["model"]["group"] == "SO2"
    data["task"]["options"] = {"num_train": 16, "num_val": 4}
    data["model"].update(hidden=8, layers=1, group=group)
    data["optim"].update(steps=3, batch_size=8)
    data["run"].update(out_dir=str(tmp_path / "run"), checkpoint_every=3, validate_every=3)
    config = TrainConfig.from_dict(data)
    final = train(get_task(config), config, progress=False)
    assert load_checkpoint(final)["config"]["model"]["group"] == group
    model, cfg = load_trained_model(final)
    assert cfg.model.group == group and repr(model.group) == repr(get_group(group))
    graph = collate(get_task(cfg).datasets()[1])
    gen = torch.Generator().manual_seed(0)
    x, _ = model.sample(graph, SamplerConfig(steps=4, method="sde"), generator=gen)
    assert x.shape == graph.pos.shape and torch.isfinite(x).all()
    centroid = scatter_mean(x, graph.batch, graph.num_graphs, True)
    assert bool(centroid.abs().max() < 1e-5) == model.group.has_translations


def test_cli_train_reports_bad_config(tmp_path):
    from quotient_diffusion.cli import main

    bad = tmp_path / "bad.json"
    bad.write_text('{"optim": {"nope": 1}}')
    assert main(["train", "--config", str(bad)]) == 2


RANK_SCRIPT = """
import sys
import torch
from quotient_diffusion.tasks import get_task
from quotient_diffusion.training import TrainConfig, train

built = []
config = TrainConfig.load(sys.argv[1])
task = get_task(config)
build = task.build_model
task.build_model = lambda: built.append(build()) or built[-1]
train(task, config, progress=False)
rank = torch.distributed.get_rank()
torch.save({k: v.clone() for k, v in built[0].state_dict().items()}, f"{sys.argv[2]}/rank{rank}.pt")
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def two_rank_reference(config: TrainConfig, monkeypatch) -> dict:
    """Single process, loss = mean of the two ranks' losses on their own batches and noise.

    The loop draws rank r's batch and noise from ``step_generator(seed, step, r)``: its batch
    is ``randint(len(train), (batch_size,))`` from that generator, and the same generator then
    feeds the model's noise. DistributedDataParallel averages the two ranks' gradients, i.e.
    takes the gradient of (L_0 + L_1) / 2, which is what this single process optimises.
    """
    from quotient_diffusion.data import collate
    from quotient_diffusion.diffusion import DiffusionModel
    from quotient_diffusion.training import loop

    original = loop.step_generator
    current = {}

    def recording(seed, step, rank):
        current.update(seed=seed, step=step)
        return original(seed, step, rank)

    from quotient_diffusion.tasks import get_task

    task = get_task(config)
    train_set = task.datasets()[0]
    plain = DiffusionModel.forward

    def both_ranks(self, graph, generator=None):
        loss0, logs = plain(self, graph, generator)
        gen1 = original(current["seed"], current["step"], 1)
        idx = torch.randint(len(train_set), (config.optim.batch_size,), generator=gen1)
        loss1, _ = plain(self, collate([train_set[i] for i in idx.tolist()]), gen1)
        return 0.5 * (loss0 + loss1), logs

    monkeypatch.setattr(loop, "step_generator", recording)
    monkeypatch.setattr(DiffusionModel, "forward", both_ranks)
    return load_checkpoint(train(task, config, progress=False))


@pytest.mark.distributed
def test_two_process_data_parallel_training(tmp_path, monkeypatch, single_thread):
    """torchrun with 2 CPU processes (gloo): both ranks end with bit-identical weights, equal to
    rank 0's checkpoint, and equal (measured: bit-identical) to one process taking the gradient of
    the mean of the two ranks' losses on their own batches."""
    cfg = tiny_config(tmp_path, steps=4)
    cfg.save(tmp_path / "cfg.json")
    (tmp_path / "rank_script.py").write_text(RANK_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
           f"--master_port={free_port()}", str(tmp_path / "rank_script.py"),
           str(tmp_path / "cfg.json"), str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    state = load_checkpoint(tmp_path / "run" / "final.pt")
    assert state["step"] == 4
    ranks = [torch.load(tmp_path / f"rank{r}.pt", map_location="cpu", weights_only=True)
             for r in (0, 1)]
    assert_same_state(ranks[0], ranks[1], "rank0 vs rank1")
    assert_same_state(ranks[0], state["model"], "rank0 vs final.pt")
    initial = tiny_config(tmp_path / "init", steps=4)
    from quotient_diffusion.tasks import get_task

    torch.manual_seed(initial.run.seed)
    start = get_task(initial).build_model().state_dict()
    assert any(not torch.equal(start[k], v) for k, v in state["model"].items())  # it trained
    reference = two_rank_reference(tiny_config(tmp_path / "single", steps=4), monkeypatch)
    for key, value in reference["model"].items():
        torch.testing.assert_close(state["model"][key], value, rtol=1e-6, atol=1e-7, msg=key)
