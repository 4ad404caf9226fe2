"""Protein backbones: parsing real PDB chains, the split, the metrics, the PDB writer."""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np
import pytest
from conftest import require_data

from quotient_diffusion.data.paths import data_root
from quotient_diffusion.data.pdb import read_ca_pdb, write_ca_pdb
from quotient_diffusion.data.proteins import (
    DB55_FILE,
    ProteinChain,
    count_gaps,
    drop_duplicates,
    family_split,
    keep_chain,
    parse_pdb_chains,
)
from quotient_diffusion.metrics.proteins import (
    backbone_report,
    bond_angles,
    bond_statistics,
    clash_statistics,
    dihedrals,
    fit_rg_power_law,
    novelty,
    pairwise_tm,
    radius_of_gyration,
    secondary_structure,
    tm_score,
    wasserstein_circle,
)

FIXTURE = Path(__file__).parent / "fixtures" / "two_chains.pdb"


@pytest.fixture(scope="module")
def chains() -> dict[str, ProteinChain]:
    parsed = parse_pdb_chains(FIXTURE.read_text(), "FIX_l_u")
    return {c.name.split(":")[1]: c for c in parsed}


def ideal_helix(length: int) -> np.ndarray:
    """C-alpha trace of an ideal right-handed alpha helix (2.3 A radius, 100 deg, 1.5 A rise)."""
    i = np.arange(length)
    phase = np.radians(100.0) * i
    return np.stack([2.3 * np.cos(phase), 2.3 * np.sin(phase), 1.5 * i], -1)


# ------------------------------------------------------------------------------ parsing
def test_parse_real_chains(chains):
    assert sorted(chains) == ["A", "F"]  # water and zinc (HETATM) are dropped
    helix, strand = chains["A"], chains["F"]
    assert helix.name == "FIX_l_u:A" and helix.complex_id == "FIX"
    assert len(helix) == 61 and helix.coords.shape == (61, 4, 3)
    assert np.isfinite(helix.coords).all()  # N, CA, C, O all present
    assert helix.sequence.isalpha() and len(helix.sequence) == 61
    assert len(strand) == 58 and np.isfinite(strand.ca).all()
    assert np.isnan(strand.coords[:, [0, 2, 3]]).all()  # C-alpha only in the fixture
    # N-CA bonds of a real backbone: 1.46 A
    n_ca = np.linalg.norm(helix.coords[:, 1] - helix.coords[:, 0], axis=-1)
    assert abs(n_ca.mean() - 1.46) < 0.02


def test_gap_filter(chains):
    assert count_gaps(chains["A"].ca) == 0 and keep_chain(chains["A"])
    assert count_gaps(chains["F"].ca) == 1 and not keep_chain(chains["F"])  # 3 residues cut
    assert not keep_chain(chains["A"], min_length=62)


def test_family_split_and_duplicates():
    rng = np.random.default_rng(0)
    letters = np.array(list("ACDEFGHIKLMNPQRSTVWY"))
    seqs = ["".join(rng.choice(letters, 60)) for _ in range(12)]
    chains = []
    for k, s in enumerate(seqs):  # complex k: bound and unbound copies of protein k
        coords = np.zeros((len(s), 4, 3), np.float32)
        chains.append(ProteinChain(f"C{k:03d}_r_b.pdb:A", s, coords))
        chains.append(ProteinChain(f"C{k:03d}_r_u.pdb:A", s[:-2], coords[:-2]))
    # protein 0 appears again in complex 11 under a mutated copy: one family
    chains.append(ProteinChain("C011_l_b.pdb:B", seqs[0][:30] + seqs[0][31:], coords[:-1]))
    train, val, test = family_split(chains, fractions=(0.6, 0.2, 0.2), seed=1)
    assert len(train) + len(val) + len(test) == len(chains)
    sides = [{c.complex_id for c in part} for part in (train, val, test)]
    assert not (sides[0] & sides[1] or sides[0] & sides[2] or sides[1] & sides[2])
    same_side = [i for i, s in enumerate(sides) if {"C000", "C011"} <= s]
    assert len(same_side) == 1
    unique = drop_duplicates(train)
    assert len(unique) == len({c.complex_id for c in train} - {"C011"}) + (
        1 if "C011" in sides[0] else 0
    )
    assert all("_r_b" in c.name or "_l_b" in c.name for c in unique)  # the longer copy is kept


def test_missing_data_dir_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("QD_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="QD_DATA"):
        data_root(required=DB55_FILE)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        data_root(tmp_path / "nowhere")


def test_tarball_chains_are_natural():
    """The first structures of the real DB5.5 tarball (skipped where the data are absent,
    failed under CI)."""
    root = require_data(DB55_FILE)
    kept = []
    with tarfile.open(root / "proteins" / "db5.5_structures.tar.gz") as tar:
        for member in tar:
            if member.name.endswith(".pdb"):
                text = tar.extractfile(member).read().decode()
                kept += [c for c in parse_pdb_chains(text, Path(member.name).stem) if keep_chain(c)]
            if len(kept) >= 4:
                break
    stats = bond_statistics([c.ca for c in kept])
    assert abs(stats["ca_ca_mean"] - 3.80) < 0.05 and stats["ca_ca_ideal_fraction"] > 0.95


# ------------------------------------------------------------------------------ metrics
def test_metrics_on_natural_chain(chains):
    ca = chains["A"].ca
    stats = bond_statistics([ca])
    assert abs(stats["ca_ca_mean"] - 3.80) < 0.05 and stats["ca_ca_std"] < 0.1
    assert stats["ca_ca_ideal_fraction"] > 0.9
    assert clash_statistics([ca])["clash_chain_fraction"] == 0.0
    sse = secondary_structure([ca])
    assert sse["helix_fraction"] > 0.6  # a helical chain
    assert abs(sse["helix_fraction"] + sse["strand_fraction"] + sse["coil_fraction"] - 1) < 1e-9
    # alpha helix: CA virtual angle ~ 91 deg, virtual dihedral ~ +50 deg
    assert 85 < np.median(bond_angles(ca)) < 97
    assert 40 < np.median(dihedrals(ca)) < 60
    # against independent expectations, not the chain itself: the literature R_g law of
    # globular proteins, R_g ~ 2.2 N^0.38 A (Skolnick, Kolinski and Ortiz, JMB 1997; this
    # chain: 10.97 A against 10.49 A), and an ideal helix, whose angles are single values, so
    # that W1 to it is the mean absolute deviation from them (on the circle for dihedrals)
    helix = ideal_helix(len(ca))
    p0, p1, p2, p3 = helix[:4]
    b1, b2, b3 = p1 - p0, p2 - p1, p3 - p2
    ideal_angle = np.degrees(np.arccos(b1 @ -b2 / (b1 @ b1)))
    ideal_dihedral = np.degrees(np.arctan2(np.linalg.norm(b2) * b1 @ np.cross(b2, b3),
                                           np.cross(b1, b2) @ np.cross(b2, b3)))
    report = backbone_report([ca], [helix], rg_law=(2.2, 0.38), diversity=False)
    assert abs(report["rg_ratio_mean"] - 1) < 0.1
    angle_mad = np.abs(bond_angles(ca) - ideal_angle).mean()
    assert report["bond_angle_w1"] == pytest.approx(angle_mad, rel=1e-5)
    dihedral_mad = np.abs((dihedrals(ca) - ideal_dihedral + 180) % 360 - 180).mean()
    assert abs(report["dihedral_w1"] - dihedral_mad) < 1.0  # W1 on 1-degree bins


def test_angles_of_an_ideal_helix():
    x = ideal_helix(30)
    angle, dihedral = bond_angles(x), dihedrals(x)
    assert np.ptp(angle) < 1e-9 and np.ptp(dihedral) < 1e-9
    assert dihedral[0] > 0  # right-handed
    mirrored = x * np.array([1.0, 1.0, -1.0])
    assert np.allclose(dihedrals(mirrored), -dihedral) and np.allclose(bond_angles(mirrored), angle)


def test_clashes_and_rg():
    x = np.cumsum(np.full((10, 3), 3.8 / np.sqrt(3)), 0)  # a straight chain: no clash
    assert clash_statistics([x])["clashes_per_residue"] == 0
    folded = np.concatenate([x, x[3:4] + np.array([0.5, -0.5, 0.0])])  # 0.71 A from residue 3
    assert np.linalg.norm(folded[-1] - x[4]) > 3.0  # and not from its neighbours
    assert clash_statistics([folded])["clashes_per_residue"] == pytest.approx(1 / 11)
    assert radius_of_gyration(np.array([[1.0, 0, 0], [-1.0, 0, 0]])) == pytest.approx(1.0)
    lengths = np.array([50, 80, 120, 200])
    traces = [np.zeros((n, 3)) for n in lengths]
    for t, n in zip(traces, lengths):  # two points at +-R, R = 2.2 n^0.38, the rest centred
        t[0, 0], t[1, 0] = 2.2 * n**0.38 * np.sqrt(n / 2), -2.2 * n**0.38 * np.sqrt(n / 2)
    r0, nu = fit_rg_power_law(traces)
    assert r0 == pytest.approx(2.2) and nu == pytest.approx(0.38)


def test_circular_wasserstein():
    a, b = np.full(100, -175.0), np.full(100, 175.0)
    assert wasserstein_circle(a, b) == pytest.approx(10.0, abs=1.01)  # not 350 on the line
    rng = np.random.default_rng(0)
    u = rng.uniform(-180, 180, 5000)
    shifted = (u + 180 + 90) % 360 - 180
    assert wasserstein_circle(u, shifted) < 5  # a rotated uniform is still uniform


def test_tm_scores(chains):
    ca = chains["A"].ca
    assert tm_score(ca, ca) == pytest.approx((1.0, 1.0), abs=1e-6)
    assert pairwise_tm([ca, ca]) == pytest.approx(1.0, abs=1e-6)
    rng = np.random.default_rng(0)
    coil = np.cumsum(rng.normal(size=(61, 3)) * 2.2, 0)
    assert tm_score(coil, ca)[0] < 0.3
    nov = novelty([ca, coil], [ca])
    assert nov["novel_fraction"] == 0.5


# ------------------------------------------------------------------------------ PDB writer
def test_pdb_round_trip(tmp_path, chains):
    import biotite.structure as struc
    from biotite.structure.io.pdb import PDBFile

    rng = np.random.default_rng(0)
    x = rng.normal(scale=15.0, size=(100, 3))
    path = write_ca_pdb(tmp_path / "sub" / "trace.pdb", x)
    assert np.abs(read_ca_pdb(path) - x).max() < 1e-3
    atoms = PDBFile.read(str(path)).get_structure(model=1)
    assert struc.get_residue_count(atoms) == 100 and set(atoms.res_name) == {"GLY"}
    helix = chains["A"]
    path = write_ca_pdb(tmp_path / "helix.pdb", helix.ca, helix.sequence)
    atoms = PDBFile.read(str(path)).get_structure(model=1)
    assert np.abs(atoms.coord - helix.ca).max() < 1e-3
    assert secondary_structure([atoms.coord])["helix_fraction"] > 0.6
    with pytest.raises(ValueError, match="non-finite"):
        write_ca_pdb(tmp_path / "bad.pdb", np.full((3, 3), np.nan))


# ------------------------------------------------------------------------ model, training, CLI
def tiny_config(tmp_path, network: str = "egnn"):
    from quotient_diffusion.training import TrainConfig

    return TrainConfig.from_dict({
        "task": {"name": "backbones", "options": {"neighbours": 6, "window": 2}},
        "model": {"network": network, "hidden": 16, "layers": 2, "treatment": "quotient",
                  "augment_rotations": network == "transformer"},
        "optim": {"batch_size": 2, "steps": 6, "lr": 1e-3},
        "run": {"seed": 0, "out_dir": str(tmp_path / "run"), "checkpoint_every": 3,
                "validate_every": 3, "log_every": 3},
    })


def test_backbone_graph_edges():
    import torch

    from quotient_diffusion.data import collate
    from quotient_diffusion.tasks.backbones import (
        EDGE_FEATURES,
        backbone_graph,
        chain_edges,
        offset_features,
        residue_features,
    )

    feats = residue_features(40)
    assert feats.shape == (40, 18) and torch.isfinite(feats).all()
    assert feats[:, -1].eq(0.4).all() and feats[-1, -2] == 1  # length, relative position
    g = collate([backbone_graph(ideal_helix(12)), backbone_graph(None, 7)])
    edges = chain_edges(g.pos, g.batch, neighbours=3, window=2)
    source, target = edges
    assert (g.batch[source] == g.batch[target]).all() and (source != target).all()
    assert (target[1:] >= target[:-1]).all()
    pairs = set(zip(source.tolist(), target.tolist()))
    assert all((i + d, i) in pairs for i in range(2, 10) for d in (-2, -1, 1, 2))
    assert len(pairs) == edges.shape[1]  # no duplicate edge
    full = chain_edges(g.pos, g.batch, neighbours=0, window=2)
    assert full.shape[1] == 12 * 11 + 7 * 6
    onehot = offset_features(torch.tensor([[0, 5, 30], [1, 4, 0]]))
    assert onehot.shape == (3, EDGE_FEATURES)
    assert onehot.argmax(1).tolist() == [8, 10, EDGE_FEATURES - 1]  # -1, +1, clipped


def test_backbone_network_is_equivariant(tmp_path):
    import torch

    from quotient_diffusion.data import collate
    from quotient_diffusion.groups import random_rotations
    from quotient_diffusion.tasks import get_task
    from quotient_diffusion.tasks.backbones import backbone_graph

    torch.manual_seed(0)
    net = get_task(tiny_config(tmp_path)).build_network().double()
    g = collate([backbone_graph(ideal_helix(15) / 10), backbone_graph(ideal_helix(9) / 10)])
    pos, attr = g.pos.double(), g.node_attr.double()
    t = torch.tensor([0.3, 0.8], dtype=torch.float64)
    rot = random_rotations(1, torch.float64, torch.Generator().manual_seed(1))[0]
    vec, _ = net(pos, attr, g.batch, t)
    vec_rot, _ = net(pos @ rot.T, attr, g.batch, t)
    assert torch.allclose(vec_rot, vec @ rot.T, atol=1e-10)


@pytest.mark.parametrize("network", ["egnn", "transformer"])
def test_train_sample_and_cli(tmp_path, monkeypatch, chains, network):
    """A few training steps on the fixture chain, then `qdiff sample backbones` from the
    checkpoint: valid PDB files of the requested lengths."""
    from biotite.structure.io.pdb import PDBFile

    from quotient_diffusion.cli import main
    from quotient_diffusion.data.proteins import ProteinSplits
    from quotient_diffusion.tasks import get_task
    from quotient_diffusion.tasks.backbones import BackboneTask
    from quotient_diffusion.training import train

    helix = chains["A"]
    fixture_splits = ProteinSplits(train=[helix, helix], val=[helix], test=[helix], ts50=[])
    monkeypatch.setattr(BackboneTask, "splits", lambda self: fixture_splits)
    config = tiny_config(tmp_path, network)
    final = train(get_task(config), config, progress=False)
    out = tmp_path / "samples"
    code = main(["sample", "backbones", "--checkpoint", str(final), "--length", "30", "45",
                 "-n", "2", "-o", str(out), "--steps", "4", "--method", "sde", "--threads", "1"])
    assert code == 0
    files = sorted(p.name for p in out.iterdir())
    assert files == ["backbone_L30_0.pdb", "backbone_L30_1.pdb", "backbone_L45_0.pdb",
                     "backbone_L45_1.pdb"]
    atoms = PDBFile.read(str(out / "backbone_L45_1.pdb")).get_structure(model=1)
    assert len(atoms) == 45 and set(atoms.atom_name) == {"CA"} and np.isfinite(atoms.coord).all()
    assert np.abs(atoms.coord.mean(0)).max() < 0.01  # centred


def test_sample_command_errors(tmp_path, capsys):
    from quotient_diffusion.cli import main

    assert main(["sample", "backbones", "--length", "1", "-o", str(tmp_path)]) == 2
    missing = tmp_path / "nothing.pt"
    assert main(["sample", "backbones", "--length", "20", "-o", str(tmp_path),
                 "--checkpoint", str(missing)]) == 2
    assert "cannot load the model" in capsys.readouterr().err


def test_bundled_model_samples(tmp_path):
    """`qdiff sample backbones` with no --checkpoint uses the model shipped in the package."""
    from quotient_diffusion.cli import main
    from quotient_diffusion.tasks import checkpoint_path

    bundled = checkpoint_path(None, "backbones")
    assert bundled.exists(), f"bundled checkpoint missing: {bundled}"
    assert main(["sample", "backbones", "--length", "25", "-n", "1", "-o", str(tmp_path),
                 "--steps", "3", "--threads", "1"]) == 0
    assert read_ca_pdb(tmp_path / "backbone_L25_0.pdb").shape == (25, 3)
