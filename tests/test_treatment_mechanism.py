"""benchmarks/treatment_mechanism.py (issue 18, item 2): its estimators and what it must find.

* The blocked trace-of-covariance estimator equals numpy's covariance, and its jackknife
  versions equal the estimate recomputed without each block.
* On the toy (float64, tiny sizes), at fixed freshly initialised parameters: the EGNN's output
  is horizontal to ~1e-4 while the conventional target's vertical fraction is of the order of
  3 / (3N - 3); the quotient loss's gradient variance is never above the conventional one
  beyond estimator noise; the transformer (rotation augmentation) outputs a vertical part, and
  there the quotient loss lowers the gradient variance clearly. The exact posterior mean is
  horizontal, so the optimum's residual is vertical only through x1.
* ``--quick`` runs end to end on tiny sizes and writes both result files.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.usefixtures("single_thread")

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def load_script(name: str) -> ModuleType:
    """Import ``benchmarks/<name>.py`` with the folder on ``sys.path`` (as when it runs)."""
    if str(BENCHMARKS) not in sys.path:
        sys.path.append(str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up while it is built
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def mech() -> ModuleType:
    return load_script("treatment_mechanism")


def test_block_moments_match_numpy(mech):
    gen = np.random.default_rng(0)
    g = gen.normal(size=(40, 7)) * np.arange(1, 8) + 3.0
    moments = mech.BlockMoments(8, 7)
    for k, row in enumerate(g):
        moments.add(k % 8, torch.as_tensor(row))
    full, loo = moments.trace_covs()
    assert full == pytest.approx(np.trace(np.cov(g.T)), rel=1e-12)
    for b in range(8):
        rest = g[np.arange(40) % 8 != b]
        assert loo[b] == pytest.approx(np.trace(np.cov(rest.T)), rel=1e-12)


@pytest.fixture(scope="module")
def toy_rows(mech):
    out = {}
    for net in ("egnn", "transformer"):
        case = mech.toy_case(6, net, hidden=16)
        out[net] = mech.measure_case(case, [0.3, 0.7], draws=32, optimum_samples=32)
    return out


def test_equivariant_network_output_is_horizontal_and_the_target_is_not(toy_rows):
    theory = 3 / (3 * 6 - 3)
    for row in toy_rows["egnn"]:
        assert row["theory"] == pytest.approx(theory)
        assert row["vertical_output"] < 1e-4, row
        assert 0.3 * theory < row["vertical_target"] < 3 * theory, row
        # the exact posterior mean is horizontal (importance-sampling error only), so the
        # optimum's residual E[x1|x_t] - x1 has a vertical part only through x1
        assert row["vertical_posterior_mean"] < 2e-2, row
        assert row["vertical_optimum_residual"] > 0.5 * theory, row


def test_quotient_gradient_variance_is_not_above_the_conventional_one(toy_rows):
    for net, rows in toy_rows.items():
        for row in rows:
            assert row["trcov_quotient"] <= row["trcov_conventional"] * (
                1 + 3 * row["reduction_se"]) + 1e-12, (net, row)
    for row in toy_rows["egnn"]:  # an output that is horizontal: the vertical term is inert
        assert abs(row["reduction"]) < 1e-2 and row["vertical_share"] < 1e-2, row
    for row in toy_rows["transformer"]:  # a vertical output: the quotient loss drops its noise
        assert row["vertical_output"] > 0.05, row
        assert row["reduction"] > 3 * row["reduction_se"] and row["reduction"] > 0.1, row


def test_quick_run_writes_both_files(mech, tmp_path):
    payload = mech.main(["--quick", "--points", "4", "--draws", "16", "--times", "0.5",
                         "--data", "--optimum-samples", "8", "--hidden", "8",
                         "--out", str(tmp_path)])
    stored = json.loads((tmp_path / "treatment_mechanism_quick.json").read_text())
    assert stored["summary"] == payload["summary"]
    assert [(s["dataset"], s["network"]) for s in stored["summary"]] == [
        ("toy N=4", "egnn"), ("toy N=4", "transformer")]
    table = (tmp_path / "treatment_mechanism_quick.md").read_text()
    assert "| toy N=4 | 4.0 | transformer (aug) | init |" in table
