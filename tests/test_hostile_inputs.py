"""Hostile and careless inputs (issue 12): checkpoints that are not ours, outputs that are not
regular files, bad arguments and configs, Ctrl-C. Every failure must be one line on stderr with
exit code 2 (no traceback), checked before any sampling; nothing may run code from a checkpoint,
replace a special file or leave a temporary file behind.

Exit codes are checked through a real ``python -m quotient_diffusion.cli`` process; tiny
untrained models keep the file fast.
"""

from __future__ import annotations

import io
import os
import pathlib
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from quotient_diffusion.cli import main
from quotient_diffusion.output import OutputError, check_output, open_output
from quotient_diffusion.tasks import get_task, load_trained_model
from quotient_diffusion.training import (
    CheckpointError,
    ConfigError,
    TrainConfig,
    load_checkpoint,
    save_checkpoint,
)
from quotient_diffusion.training.loop import CHECKPOINT_VERSION
from quotient_diffusion.training.validation import check_section

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------ helpers
def qdiff(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run ``qdiff ARGS`` in a fresh Python process."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "quotient_diffusion.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300, env=env)


def assert_clean_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    """Exit code 2, exactly one line on stderr, no traceback, each needle in that line."""
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


class _TouchOnLoad:
    """Unpickling this object calls ``Path.touch(marker)``: a stand-in for ``os.system``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def hostile_checkpoint(path: Path, marker: Path) -> Path:
    torch.save({"version": CHECKPOINT_VERSION, "config": _TouchOnLoad(marker), "ema": {}}, path)
    return path


def tiny_checkpoint(path: Path, task: dict) -> Path:
    """An untrained one-layer model of ``task``, saved as `qdiff train` would."""
    cfg = TrainConfig.from_dict({"task": task,
                                 "model": {"network": "egnn", "hidden": 8, "layers": 1}})
    torch.manual_seed(0)
    model = get_task(cfg).build_model()
    save_checkpoint(path, {"version": CHECKPOINT_VERSION, "config": cfg.to_dict(), "step": 0,
                           "ema": model.state_dict()})
    return path


@pytest.fixture(scope="module")
def molecules_ckpt(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("models") / "molecules.pt"
    return tiny_checkpoint(path, {"name": "molecules", "options": {"source": "g2"}})


@pytest.fixture(scope="module")
def backbones_ckpt(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("models") / "backbones.pt"
    return tiny_checkpoint(path, {"name": "backbones", "options": {"neighbours": 4, "window": 2}})


def sample_molecules(ckpt: Path, output: str | Path, *extra: str) -> list[str]:
    return ["sample", "molecules", "--checkpoint", str(ckpt), "-n", "3", "--num-atoms", "4",
            "--steps", "2", "-o", str(output), *extra]


def sdf_records(text: str) -> int:
    return text.count("$$$$")


# -------------------------------------------------------------------------------- checkpoints
def test_every_torch_load_in_the_repository_is_weights_only():
    """No code path may unpickle arbitrary objects (a regression guard over the sources; this
    file's deliberate unsafe load of a harmless payload excepted)."""
    offenders = []
    for folder in ("quotient_diffusion", "benchmarks", "tests"):
        for path in (ROOT / folder).rglob("*.py"):
            if path == Path(__file__).resolve():
                continue
            for k, line in enumerate(path.read_text().splitlines()):
                if "torch.load(" in line and "weights_only=True" not in line:
                    offenders.append(f"{path.relative_to(ROOT)}:{k + 1}")
    assert not offenders


@pytest.mark.parametrize("name", ["backbones.pt", "conformers_qm9.pt"])
def test_bundled_checkpoints_are_plain_data(name):
    path = ROOT / "quotient_diffusion" / "checkpoints" / name
    state = torch.load(path, map_location="cpu", weights_only=True)
    assert isinstance(state["config"], dict)
    load_trained_model(path)


def test_hostile_pickle_is_refused_without_running(tmp_path):
    control = hostile_checkpoint(tmp_path / "control.pt", tmp_path / "control-ran")
    torch.load(control, weights_only=False)  # the payload is live: an unsafe load runs it
    assert (tmp_path / "control-ran").exists()
    marker = tmp_path / "ran"
    evil = hostile_checkpoint(tmp_path / "evil.pt", marker)
    with pytest.raises(CheckpointError, match="refusing to load"):
        load_checkpoint(evil)
    from quotient_diffusion.sets import load_set_model

    with pytest.raises(CheckpointError):
        load_set_model(evil)
    assert not marker.exists()


@pytest.mark.parametrize("command", [
    ["conformers", "CCO", "-n", "1", "--checkpoint", "{evil}", "-o", "x.sdf"],
    ["sample", "molecules", "--checkpoint", "{evil}", "-n", "1", "-o", "x.sdf"],
])
def test_cli_refuses_a_hostile_checkpoint(tmp_path, command):
    marker = tmp_path / "ran"
    evil = hostile_checkpoint(tmp_path / "evil.pt", marker)
    proc = qdiff(*[a.format(evil=evil) for a in command], cwd=tmp_path)
    assert_clean_error(proc, "cannot load the model", "refusing")
    assert not marker.exists() and not (tmp_path / "x.sdf").exists()


def _damaged(kind: str, path: Path, good: Path) -> Path:
    if kind == "random":
        path.write_bytes(os.urandom(4096))
    elif kind == "truncated":
        data = good.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("model weights: see attachment\n")
    elif kind == "directory":
        path.mkdir()
    elif kind == "tensor":
        torch.save(torch.zeros(3), path)
    elif kind == "no weights":
        state = load_checkpoint(good)
        save_checkpoint(path, {k: v for k, v in state.items() if k != "ema"})
    elif kind == "wrong weights":
        state = load_checkpoint(good)
        save_checkpoint(path, {**state, "ema": {"w": torch.zeros(2)}})
    return path


DAMAGE = ["random", "truncated", "empty", "text", "directory", "tensor", "no weights",
          "wrong weights", "missing"]


@pytest.mark.parametrize("kind", DAMAGE)
def test_damaged_checkpoint_is_one_checkpoint_error(tmp_path, molecules_ckpt, kind):
    path = _damaged(kind, tmp_path / "bad.pt", molecules_ckpt)
    with pytest.raises(CheckpointError) as info:
        load_trained_model(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


@pytest.mark.parametrize("kind, command", [
    ("random", ["sample", "molecules", "--checkpoint", "{ckpt}", "-o", "x.sdf"]),
    ("truncated", ["sample", "backbones", "--length", "9", "--checkpoint", "{ckpt}", "-o", "o"]),
    ("empty", ["sets", "sample", "--checkpoint", "{ckpt}", "-o", "x.json"]),
    ("text", ["export", "{ckpt}", "slim.pt"]),
])
def test_cli_reports_a_damaged_checkpoint(tmp_path, molecules_ckpt, kind, command):
    ckpt = _damaged(kind, tmp_path / "bad.pt", molecules_ckpt)
    proc = qdiff(*[a.format(ckpt=ckpt) for a in command], cwd=tmp_path)
    assert_clean_error(proc, "cannot load the model")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.pt"]


# -------------------------------------------------------------------------------------- output
def test_check_output_refuses_unwritable_paths(tmp_path):
    regular = tmp_path / "file.txt"
    regular.write_text("x")
    check_output("-")
    check_output(tmp_path / "new" / "deeper" / "out.sdf")
    check_output(tmp_path / "runs" / "a", "dir")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt"]  # nothing created
    for path, kind in [(tmp_path, "file"), (regular / "x.sdf", "file"), (regular, "dir"),
                       ("/proc/x.sdf", "file"), ("-", "dir")]:
        with pytest.raises(OutputError) as info:
            check_output(path, kind)
        assert "\n" not in str(info.value)


def test_open_output_keeps_the_old_file_on_interrupt_and_its_mode(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    target.chmod(0o640)
    with pytest.raises(KeyboardInterrupt):
        with open_output(target) as fh:
            fh.write("half")
            raise KeyboardInterrupt
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["out.txt"]
    with open_output(target) as fh:
        fh.write("new")
    assert target.read_text() == "new" and os.listdir(tmp_path) == ["out.txt"]
    assert stat.S_IMODE(target.stat().st_mode) == 0o640


@pytest.mark.skipif(not os.access("/dev/null", os.W_OK), reason="/dev/null not writable")
def test_dev_null_stays_a_device():
    with open_output("/dev/null") as fh:
        fh.write("discarded")
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_fifo_output_is_streamed_not_replaced(tmp_path, molecules_ckpt):
    fifo = tmp_path / "out.sdf"
    os.mkfifo(fifo)
    received = io.StringIO()
    reader = threading.Thread(target=lambda: received.write(fifo.read_text()), daemon=True)
    reader.start()
    assert main(sample_molecules(molecules_ckpt, fifo)) == 0
    reader.join(timeout=60)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert sdf_records(received.getvalue()) == 3
    assert os.listdir(tmp_path) == ["out.sdf"]


def test_symlink_output_writes_through_to_its_target(tmp_path, molecules_ckpt):
    (tmp_path / "data").mkdir()
    target = tmp_path / "data" / "real.sdf"
    target.write_text("old")
    link = tmp_path / "latest.sdf"
    link.symlink_to(target)
    assert main(sample_molecules(molecules_ckpt, link)) == 0
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert sdf_records(target.read_text()) == 3
    assert os.listdir(tmp_path / "data") == ["real.sdf"]


def test_dash_writes_to_stdout(tmp_path, molecules_ckpt):
    proc = qdiff(*sample_molecules(molecules_ckpt, "-"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert sdf_records(proc.stdout) == 3 and "wrote 3 molecules" in proc.stderr
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("command", [
    ["sample", "molecules", "--checkpoint", "{molecules}", "-o", "/proc/qd/x.sdf"],
    ["sample", "molecules", "--checkpoint", "{molecules}", "-o", "{regular}/x.sdf"],
    ["sample", "backbones", "--length", "900", "--checkpoint", "{backbones}", "-o", "/proc/qd"],
    ["sets", "sample", "--checkpoint", "{molecules}", "-o", "/sys/qd.json"],
])
def test_unwritable_output_fails_fast_without_sampling(tmp_path, molecules_ckpt,
                                                       backbones_ckpt, command):
    regular = tmp_path / "regular"
    regular.write_text("a file, not a folder")
    names = {"molecules": molecules_ckpt, "backbones": backbones_ckpt, "regular": regular}
    args = [a.format(**names) for a in command] + ["-n", "1000"]
    if command[0] == "sample":
        args += ["--steps", "1000"]  # hours of work, if it were to start
    start = time.perf_counter()
    proc = qdiff(*args, cwd=tmp_path)
    assert time.perf_counter() - start < 5
    assert_clean_error(proc, "cannot write")
    assert os.listdir(tmp_path) == ["regular"]


# ----------------------------------------------------------------------------------- Ctrl-C
def _interrupt_after_first(module, name: str, monkeypatch) -> None:
    """Make the batch iterator ``module.name`` raise KeyboardInterrupt after one batch."""
    original = getattr(module, name)

    def interrupted(*args, **kwargs):
        batches = original(*args, **kwargs)
        yield next(batches)
        raise KeyboardInterrupt

    monkeypatch.setattr(module, name, interrupted)


def test_ctrl_c_while_sampling_molecules_writes_finished_ones(tmp_path, molecules_ckpt,
                                                              monkeypatch, capsys):
    import quotient_diffusion.tasks as tasks

    _interrupt_after_first(tasks, "generate", monkeypatch)
    out = tmp_path / "out.sdf"
    args = sample_molecules(molecules_ckpt, out)
    assert main(args[:4] + ["-n", "4", "--batch-size", "2"] + args[6:]) == 130
    assert "interrupted: wrote 2 of 4 molecules" in capsys.readouterr().err
    assert sdf_records(out.read_text()) == 2 and os.listdir(tmp_path) == ["out.sdf"]


def test_ctrl_c_while_sampling_backbones_keeps_finished_files(tmp_path, backbones_ckpt,
                                                              monkeypatch, capsys):
    import quotient_diffusion.tasks as tasks

    _interrupt_after_first(tasks, "generate", monkeypatch)
    out = tmp_path / "out"
    assert main(["sample", "backbones", "--length", "6", "-n", "4", "--batch-size", "2",
                 "--steps", "2", "--checkpoint", str(backbones_ckpt), "-o", str(out)]) == 130
    assert "interrupted: wrote 2 of 4 backbones" in capsys.readouterr().err
    assert sorted(os.listdir(out)) == ["backbone_L6_0.pdb", "backbone_L6_1.pdb"]


def test_ctrl_c_in_sets_training_checkpoints_the_last_step(tmp_path, monkeypatch, capsys):
    from quotient_diffusion.sets import SetVAE

    original, calls = SetVAE.loss, []

    def loss(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(SetVAE, "loss", loss)
    out = tmp_path / "run"
    assert main(["sets", "train", "--dataset", "synthetic", "--num-sets", "20", "--dim", "8",
                 "--layers", "1", "--batch-size", "2", "--steps", "10", "--out", str(out),
                 "--threads", str(torch.get_num_threads()), "--no-progress"]) == 130
    assert "at step 2 of 10" in capsys.readouterr().err
    assert load_checkpoint(out / "last.pt")["step"] == 2
    assert os.listdir(out) == ["last.pt"]


# -------------------------------------------------------------------------------- arguments
BAD_ARGUMENTS = [
    ["sample", "molecules", "--checkpoint", "m.pt", "-o", "x.sdf", "--steps", "0"],
    ["sample", "molecules", "--checkpoint", "m.pt", "-o", "x.sdf", "--method", "sde",
     "--noise-scale", "-1"],
    ["sample", "molecules", "--checkpoint", "m.pt", "-o", "x.sdf", "--threads", "-1"],
    ["sample", "molecules", "--checkpoint", "m.pt", "-o", "x.sdf", "--seed", str(2**63)],
    ["sample", "molecules", "--checkpoint", "m.pt", "-o", "x.sdf", "--seed", "-1"],
    ["sample", "molecules", "--checkpoint", "m.pt", "-o", "x.sdf", "-n", "0"],
    ["sample", "backbones", "--length", "20", "-o", "out", "--batch-size", "0"],
    ["sample", "backbones", "--length", "20", "-o", "out", "--batch-size", "-1"],
    ["conformers", "CCO", "-o", "x.sdf", "--steps", "0"],
    ["sets", "sample", "--checkpoint", "m.pt", "-o", "x.json", "-n", "0"],
    ["sets", "train", "--out", "run", "--batch-size", "0"],
    ["sets", "train", "--out", "run", "--limit", "0"],
    ["sets", "train", "--out", "run", "--dim", "0"],
    ["sets", "train", "--out", "run", "--checkpoint-every", "0"],
    ["train", "--config", "c.json", "--steps", "0"],
]


@pytest.mark.parametrize("args", BAD_ARGUMENTS, ids=lambda a: " ".join(a[:2] + a[-2:]))
def test_bad_argument_is_a_one_line_usage_error(tmp_path, args):
    proc = qdiff(*args, cwd=tmp_path)
    assert_clean_error(proc, "error: argument")
    assert os.listdir(tmp_path) == []


def test_sets_resume_without_a_checkpoint_refuses(tmp_path):
    proc = qdiff("sets", "train", "--dataset", "synthetic", "--out", "run", "--resume",
                 cwd=tmp_path)
    assert_clean_error(proc, "--resume", "no checkpoint")


# ---------------------------------------------------------------------------------- configs
def toy_config(tmp_path: Path, **model) -> dict:
    return {"task": {"name": "toy", "options": {"num_train": 8, "num_val": 2}},
            "model": {"network": "egnn", "hidden": 8, "layers": 1, **model},
            "optim": {"steps": 2, "batch_size": 2},
            "run": {"out_dir": str(tmp_path / "run"), "checkpoint_every": 1}}


@pytest.mark.parametrize("edit, message", [
    ({"optim": {"lr": "0.001"}}, "optim.lr: expected a number, got str"),
    ({"optim": {"steps": True}}, "optim.steps: expected an integer, got bool"),
    ({"optim": {"steps": -5}}, "optim.steps: must be positive"),
    ({"optim": {"batch_size": 0}}, "optim.batch_size: must be positive"),
    ({"optim": {"lr": -1e-3}}, "optim.lr: must be positive"),
    ({"run": {"checkpoint_every": 0}}, "run.checkpoint_every: must be positive"),
    ({"run": {"validate_every": 0}}, "run.validate_every"),
    ({"run": {"log_every": 0}}, "run.log_every"),
    ({"model": {"hidden": 0}}, "model.hidden: must be positive"),
    ({"model": {"layers": 0}}, "model.layers"),
    ({"model": {"hiden": 8}}, "'hiden'"),
    ({"model": {"network_options": {"num_rfb": 4}}}, "model.network_options: unknown"),
    ({"model": {"network_options": {"k": "4"}}}, "model.network_options.k"),
    ({"model": {"network_options": {"hidden": 4}}}, "'hidden'"),
    ({"task": {"options": {"num_trian": 8}}}, "task.options: unknown option(s) for task 'toy'"),
    ({"task": {"options": {"num_val": 2.5}}}, "task.options.num_val: expected an integer"),
    ({"model": {"network": "egn"}}, "model.network: unknown name 'egn'"),
    ({"model": {"treatment": "quotent"}}, "model.treatment"),
    ({"model": {"group": "se3"}}, "model.group: unknown name 'se3'"),
    ({"task": {"name": "toys"}}, "task.name"),
    ({"run": []}, "run: expected an object"),
])
def test_bad_config_names_the_key(tmp_path, edit, message):
    """Refused when the config is read, or (its task section) when its task is built."""
    data = toy_config(tmp_path)
    for section, values in edit.items():
        data[section] = values if not isinstance(values, dict) else {**data[section], **values}
    with pytest.raises(ConfigError) as info:
        get_task(TrainConfig.from_dict(data))
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_top_level_list_is_refused():
    with pytest.raises(ConfigError, match="JSON object"):
        TrainConfig.from_dict([{"task": {}}])


def test_types_come_from_the_annotations_of_any_field():
    """A field added to a section is checked without touching the validation code."""
    from dataclasses import dataclass

    @dataclass
    class Section:
        count: int = 1
        ratio: float | None = None
        flag: bool = False

    check_section("new", Section, {"count": 3, "ratio": 1, "flag": True})
    for values, key in [({"count": 1.5}, "new.count"), ({"ratio": "x"}, "new.ratio"),
                        ({"flag": 1}, "new.flag")]:
        with pytest.raises(ConfigError, match=key):
            check_section("new", Section, values)


@pytest.mark.parametrize("text, message", [
    ('{"optim": {"lr": "0.001"}}', "optim.lr"),
    ('{"model": {"group": "nonsense"}}',
     "model.group: unknown name 'nonsense'; choose one of SE3, SO2, SO3, T3"),
], ids=["type", "group"])
def test_cli_bad_config_exits_2(tmp_path, text, message):
    bad = tmp_path / "c.json"
    bad.write_text(text)
    assert_clean_error(qdiff("train", "--config", str(bad), cwd=tmp_path), message)


def test_resume_refuses_a_different_model_or_no_checkpoint(tmp_path, capsys):
    import json

    saved = TrainConfig.from_dict(toy_config(tmp_path))
    model = get_task(saved).build_model()
    save_checkpoint(tmp_path / "run" / "last.pt", {"version": CHECKPOINT_VERSION,
                    "config": saved.to_dict(), "step": 1, "model": model.state_dict()})
    other = tmp_path / "other.json"
    other.write_text(json.dumps(toy_config(tmp_path, hidden=16, treatment="conventional")))
    proc = qdiff("train", "--config", str(other), "--resume", "--no-progress", cwd=tmp_path)
    assert_clean_error(proc, "model.hidden", "model.treatment")
    assert main(["train", "--config", str(other), "--resume", "--out-dir",
                 str(tmp_path / "elsewhere")]) == 2
    assert "--resume: cannot load the model: no checkpoint at" in capsys.readouterr().err
