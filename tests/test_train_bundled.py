"""benchmarks/train_bundled.py (one command that trains every bundled model) and ``run.device``.

* ``--quick`` on the CPU (about 40 s) trains every bundled model but the drug-like one, chains
  the conformer stages (each warm-started from the previous stage's checkpoint inside ``--out``)
  and exports each model where the library's loader reads it; a stage stopped by a time bound is
  resumed by the rerun, a finished one is skipped, and a rerun with other settings is refused.
  Where the CCD set is cached, ``--quick --stages conformers,druglike`` then trains the drug-like
  stage (without the MMFF relaxation) from the conformer chain's last stage.
* The drug-like model: its stage is the bundled checkpoint's config, warm-started from another
  model's stage (across models, on toy stages too); ``--stages druglike`` alone is refused and
  the models train after the ones they need.
* Bad arguments and output paths are one line and exit status 2.
* ``run.device`` takes auto / cpu / cuda only, and on a CPU machine 'auto' trains bit for bit
  as 'cpu' does.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

from quotient_diffusion.tasks import get_task, load_trained_model
from quotient_diffusion.training import ConfigError, TrainConfig, load_checkpoint, train
from quotient_diffusion.training.loop import resolve_device

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "train_bundled.py"
NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")


@pytest.fixture(scope="module")
def script() -> ModuleType:
    """``benchmarks/train_bundled.py`` imported as a module (the folder is not a package), with
    the folder on ``sys.path`` as when the script runs (it imports ``benchmarks/_results.py``)."""
    if str(SCRIPT.parent) not in sys.path:
        sys.path.append(str(SCRIPT.parent))
    spec = importlib.util.spec_from_file_location("train_bundled", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def require_qm9() -> None:
    """QM9 comes from the qm9pack wheel (the [qm9] extra): skipped where it is missing, failed
    under CI, which installs it."""
    if importlib.util.find_spec("qm9pack") is None:
        if os.environ.get("CI"):
            pytest.fail("CI is set but qm9pack (the [qm9] extra) is not installed")
        pytest.skip("QM9 needs the qm9pack package")


def data_available(relative: str) -> bool:
    """Whether the shared data hold ``relative``."""
    from quotient_diffusion.data.paths import data_root

    try:
        data_root(required=relative)
    except FileNotFoundError:
        return False
    return True


def ccd_cached() -> bool:
    """Whether the CCD set's cache exists (building it takes minutes)."""
    if not data_available("druglike/evaluation_ccd_codes.txt"):
        return False
    from quotient_diffusion.data.ccd import cache_path

    return cache_path().exists()


def exit_code(script: ModuleType, argv: list[str]) -> int:
    """``main(argv)``, with argparse's own exits (SystemExit) turned into their status."""
    try:
        return script.main(argv)
    except SystemExit as done:
        return int(done.code)


def test_quick_trains_chains_resumes_and_exports_the_bundled_models(
        script, tmp_path, single_thread, capsys):
    require_qm9()
    models = "conformers,molecules,backbones"
    if not data_available("proteins/db5.5_structures.tar.gz"):
        models = "conformers,molecules"
    out = tmp_path / "out"
    # a time bound stops the first stage after one step (exit 3), and the later ones wait
    assert exit_code(script, ["--quick", "--out", str(out), "--stages", "conformers",
                              "--no-progress", "--hours-per-stage", "1e-6"]) == 3
    bounded = json.loads((out / "train_bundled.json").read_text())["models"]["conformers"]
    assert [s["status"] for s in bounded["stages"]] == [
        "stopped: out of time", "waiting for conformers_qm9", "waiting for conformers_qm9_stereo"]
    assert bounded["stages"][0]["step"] == 1 and bounded["export"] is None
    # the rerun resumes it from its last.pt, trains the rest of the chain and the other models
    assert exit_code(script, ["--quick", "--out", str(out), "--stages", models,
                              "--no-progress"]) == 0
    runs = out / "runs"
    summary = json.loads((out / "train_bundled.json").read_text())
    assert list(summary["models"]) == models.split(",")
    assert summary["device"] == str(resolve_device("auto"))
    stages = summary["models"]["conformers"]["stages"]
    assert [s["stage"] for s in stages] == ["conformers_qm9", "conformers_qm9_stereo",
                                            "conformers_qm9_chiral"]
    assert [s["start_step"] for s in stages] == [1, 0, 0]
    # each later stage started from the previous stage's checkpoint inside --out
    for previous, stage in zip(stages, stages[1:]):
        state = load_checkpoint(runs / stage["stage"] / "final.pt", ("history",))
        source = runs / previous["stage"] / "final.pt"
        assert state["history"][0]["init_from"] == str(source)
        assert state["history"][0]["init_from_step"] == script.QUICK_STEPS
    # every model: trained, exported to <out>/<model>.pt, read by the library's loader
    for name, entry in summary["models"].items():
        assert all(s["status"] == "trained" and s["step"] == script.QUICK_STEPS
                   for s in entry["stages"])
        assert "val_loss" in entry["stages"][-1]["final_val"]
        assert entry["export"]["path"] == str(out / script.MODELS[name].export)
        _, config = load_trained_model(entry["export"]["path"])
        assert config.task.name == entry["export"]["task"]
    # the conformer export is the last stage's EMA
    model, config = load_trained_model(out / "conformers_qm9.pt")
    assert config.model.network_options["chirality_push"] and config.task.options["stereo"]
    final = load_checkpoint(runs / "conformers_qm9_chiral" / "final.pt", ("ema",))["ema"]
    assert all(torch.equal(value, final[name]) for name, value in model.state_dict().items())

    # a rerun skips every finished stage
    capsys.readouterr()
    assert exit_code(script, ["--quick", "--out", str(out), "--stages", "conformers",
                              "--no-progress"]) == 0
    rerun = json.loads((out / "train_bundled.json").read_text())
    assert {s["status"] for s in rerun["models"]["conformers"]["stages"]} == {"done earlier"}
    # the same folder with other settings (the full configs) is refused before any training
    assert exit_code(script, ["--out", str(out), "--stages", "conformers",
                              "--steps", "conformers_qm9=20"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "trained with other settings" in err

    # the drug-like model, where the CCD set is cached (building it takes minutes): its stage
    # warm-starts from the conformer chain's last stage, which is skipped as finished
    if importlib.util.find_spec("biotite") is None or not ccd_cached():
        return
    assert exit_code(script, ["--quick", "--out", str(out), "--stages", "druglike,conformers",
                              "--no-progress"]) == 0
    summary = json.loads((out / "train_bundled.json").read_text())
    assert list(summary["models"]) == ["conformers", "druglike"]
    assert {s["status"] for s in summary["models"]["conformers"]["stages"]} == {"done earlier"}
    (stage,) = summary["models"]["druglike"]["stages"]
    assert stage["status"] == "trained" and stage["step"] == script.QUICK_STEPS
    source = runs / "conformers_qm9_chiral" / "final.pt"
    assert stage["init_from"] == str(source)
    state = load_checkpoint(runs / "conformers_ccd" / "final.pt", ("history", "config"))
    assert state["history"][0]["init_from"] == str(source)
    assert state["config"]["task"]["options"]["relaxed_targets"] is False
    model, config = load_trained_model(out / "conformers_druglike.pt")
    assert config.task.options["source"] == "ccd" and len(config.task.options["elements"]) == 8


@pytest.mark.parametrize("argv, message", [
    (["--stages", "conformers,ligands"], "unknown model(s) 'ligands'"),
    (["--stages", "druglike"], "druglike warm-starts from conformers_qm9_chiral of model(s) "
     "conformers: name them too, e.g. --stages conformers,druglike"),
    (["--quick", "--stages", "molecules,druglike"], "--stages conformers,druglike"),
    (["--steps", "conformers_qm9=0"], "must be at least 1"),
    (["--steps", "toy=5"], "expected STAGE=N"),
    (["--steps", "denovo_qm9=many"], "not an integer"),
    (["--hours", "-1"], "must be a positive finite number"),
    (["--hours-per-stage", "nan"], "must be a positive finite number"),
    (["--device", "gpu"], "invalid choice: 'gpu'"),
    (["--quick", "--scale", "0.5"], "--quick sets the steps itself"),
])
def test_bad_arguments_are_one_line_and_exit_2(script, tmp_path, capsys, argv, message):
    assert exit_code(script, [*argv, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err
    assert not (tmp_path / "o").exists()


def test_the_druglike_model_is_the_bundled_one_and_trains_after_the_conformers(script, tmp_path):
    from quotient_diffusion.conformers import BUNDLED_MODELS
    from quotient_diffusion.tasks import checkpoint_config
    from quotient_diffusion.tasks.loading import bundled_checkpoint

    # every bundled conformer model of the library is made here
    exports = {model.export for model in script.MODELS.values()}
    assert set(BUNDLED_MODELS.values()) <= exports
    (stage,) = script.MODELS["druglike"].stages
    assert (stage.name, stage.config, stage.init_from) == (
        "conformers_ccd", "conformers_ccd.json", "conformers_qm9_chiral")
    assert script.MODELS["druglike"].export == BUNDLED_MODELS["druglike"]
    assert script.MODELS["conformers"].stages[-1].name == stage.init_from
    assert script.needed_models("druglike") == ["conformers"]
    # the full stage is the config the bundled model was trained with, to the step it reached,
    # warm-started from the bundled QM9 model (the conformer chain's last stage, exported)
    out = str(tmp_path / "o")
    config, end = script.stage_config(stage, script.parse_args(["--out", out]))
    bundled = load_checkpoint(bundled_checkpoint(BUNDLED_MODELS["druglike"]))
    assert script._comparable(config.to_dict()) == script._comparable(
        checkpoint_config(bundled).to_dict())
    assert end == bundled["step"] == 40_000 and config.task.options["relaxed_targets"]
    assert Path(bundled["history"][0]["init_from"]).name == BUNDLED_MODELS["qm9"]
    # --quick: a tiny validation and no restrained MMFF relaxation
    config, end = script.stage_config(stage, script.parse_args(["--quick", "--out", out]))
    assert end == script.QUICK_STEPS and config.task.options["num_val"] == 8
    assert config.task.options["relaxed_targets"] is False
    assert config.task.options["source"] == "ccd"
    # which models run, in which order
    for argv, models in [
            ([], "conformers,druglike,molecules,backbones"),
            (["--quick"], "conformers,molecules,backbones"),
            (["--stages", "druglike,conformers"], "conformers,druglike"),
            (["--quick", "--stages", "backbones,druglike,molecules,conformers"],
             "backbones,conformers,druglike,molecules")]:
        assert script.parse_args([*argv, "--out", out]).models == models.split(","), argv
    assert not (tmp_path / "o").exists()


def test_a_stage_warm_starts_from_another_models_stage(script, tmp_path, monkeypatch,
                                                       single_thread):
    """Toy stages (no data): model ``b``'s stage starts from model ``a``'s last stage."""
    configs = tmp_path / "configs"
    configs.mkdir()
    toy = {"task": {"name": "toy", "options": {"num_train": 32, "num_val": 8}},
           "model": {"hidden": 16, "layers": 2}, "optim": {"batch_size": 8, "steps": 4},
           "run": {"out_dir": "unused"}}
    (configs / "toy.json").write_text(json.dumps(toy))
    models = {"a": script.BundledModel("a.pt", (script.Stage("a1", "toy.json"),
                                                script.Stage("a2", "toy.json", init_from="a1"))),
              "b": script.BundledModel("b.pt", (script.Stage("b1", "toy.json", init_from="a2"),))}
    monkeypatch.setattr(script, "CONFIGS", configs)
    monkeypatch.setattr(script, "MODELS", models)
    monkeypatch.setattr(script, "STAGE_MODEL", {"a1": "a", "a2": "a", "b1": "b"})
    monkeypatch.setattr(script, "QUICK_MODELS", ["a"])
    out = tmp_path / "out"
    with pytest.raises(script.UsageError, match="b warm-starts from a2 of model"):
        script.parse_args(["--quick", "--out", str(out), "--stages", "b"])
    assert script.run(script.parse_args(["--quick", "--out", str(out), "--stages", "b,a",
                                         "--no-progress"])) == 0
    summary = json.loads((out / "train_bundled.json").read_text())
    assert list(summary["models"]) == ["a", "b"]
    (stage,) = summary["models"]["b"]["stages"]
    source = out / "runs" / "a2" / "final.pt"
    assert stage["status"] == "trained" and stage["init_from"] == str(source)
    state = load_checkpoint(out / "runs" / "b1" / "final.pt", ("history",))
    assert state["history"][0]["init_from"] == str(source)
    assert summary["models"]["b"]["export"]["path"] == str(out / "b.pt")


def test_output_paths_that_are_not_folders_are_refused(script, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    for out in (tmp_path / "file", Path("/dev/null"), tmp_path / "file" / "below"):
        assert exit_code(script, ["--out", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "train_bundled.py: error:" in err
    assert exit_code(script, []) == 2  # --out is required without --quick
    assert "--out is required" in capsys.readouterr().err


def test_run_device_is_validated_with_one_line():
    with pytest.raises(ConfigError, match=r"^run\.device: unknown device 'gpu'; choose one of "
                       r"auto, cpu, cuda$"):
        TrainConfig.from_dict({"run": {"device": "gpu"}})
    with pytest.raises(ConfigError, match="run.device: expected a string"):
        TrainConfig.from_dict({"run": {"device": 0}})
    assert TrainConfig.from_dict({}).run.device == "auto"
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ConfigError, match="unknown device 'tpu'"):
        resolve_device("tpu")


@NO_CUDA
def test_cuda_without_a_device_is_refused_and_auto_is_the_cpu(script, tmp_path, capsys):
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(ConfigError, match="torch sees no CUDA device"):
        resolve_device("cuda")
    assert exit_code(script, ["--quick", "--device", "cuda", "--out", str(tmp_path)]) == 2
    assert "no CUDA device" in capsys.readouterr().err
    from quotient_diffusion.cli import main

    config = tmp_path / "cuda.json"
    config.write_text(json.dumps({"run": {"device": "cuda", "out_dir": str(tmp_path / "r")}}))
    assert main(["train", "--config", str(config), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no CUDA device" in err
    assert not (tmp_path / "r").exists()


@NO_CUDA
def test_auto_device_trains_bit_for_bit_as_the_cpu(tmp_path, single_thread):
    def run(device: str) -> dict:
        config = TrainConfig.from_dict({
            "task": {"name": "toy", "options": {"num_train": 32, "num_val": 8}},
            "model": {"hidden": 16, "layers": 2},
            "optim": {"batch_size": 8, "steps": 6},
            "run": {"out_dir": str(tmp_path / device), "device": device,
                    "checkpoint_every": 3, "validate_every": 3},
        })
        return load_checkpoint(train(get_task(config), config, progress=False))

    auto, cpu = run("auto"), run("cpu")
    for key in ("model", "ema"):
        assert all(torch.equal(value, cpu[key][name]) for name, value in auto[key].items())
    assert auto["history"][0]["device"] == "cpu"
    assert [r["val_loss"] for r in auto["curve"]] == [r["val_loss"] for r in cpu["curve"]]
