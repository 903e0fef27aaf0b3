"""Reference values of AGOX 3.11.1's repulsive prior and GPR for agox-models' tests.

Run with a Python that has agox==3.11.1 and ase installed (see README.md):

    python make_fixtures.py            # writes repulsive.json and gpr.json here

Everything is drawn from fixed numpy seeds; rerunning reproduces the files bit for bit.
Floats are written with repr() (round-trip exact).
"""

import importlib.metadata
import json
import pathlib
import sys

import numpy as np
import ase
import ase.constraints
import ase.constraints.constraint as _constraint

# AGOX 3.11.1 imports these two names from ase.constraints, which ASE 3.29 keeps
# only in ase.constraints.constraint. Re-export them; nothing else is patched.
for _name in ("IndexedConstraint", "slice2enlist"):
    if not hasattr(ase.constraints, _name):
        setattr(ase.constraints, _name, getattr(_constraint, _name))

import scipy  # noqa: E402
from ase import Atoms  # noqa: E402
from ase.build import bulk, fcc111  # noqa: E402
from ase.calculators.emt import EMT  # noqa: E402
from ase.calculators.singlepoint import SinglePointCalculator  # noqa: E402
from ase.data import covalent_radii  # noqa: E402
from ase.optimize import BFGS  # noqa: E402

from agox.environments import Environment  # noqa: E402
from agox.models.descriptors.fingerprint import Fingerprint  # noqa: E402
from agox.models.GPR import GPR  # noqa: E402
from agox.models.GPR.kernels import RBF, Constant as C, Noise  # noqa: E402
from agox.models.GPR.priors import Repulsive  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent
VERSIONS = {
    "python": sys.version.split()[0],
    "ase": ase.__version__,
    "agox": importlib.metadata.version("agox"),
    "numpy": np.__version__,
    "scipy": scipy.__version__,
}


def record(atoms):
    return {
        "numbers": [int(z) for z in atoms.numbers],
        "positions": atoms.positions.tolist(),
        "cell": atoms.cell.array.tolist(),
        "pbc": [bool(p) for p in atoms.pbc],
    }


def compact_cluster(symbols, rng, box, bond=(2.45, 2.85), min_dist=2.25):
    """Atoms added one at a time next to a random existing atom."""
    positions = [np.full(3, box / 2)]
    while len(positions) < len(symbols):
        base = positions[rng.integers(len(positions))]
        d = rng.normal(size=3)
        p = base + rng.uniform(*bond) * d / np.linalg.norm(d)
        if all(np.linalg.norm(p - q) > min_dist for q in positions):
            positions.append(p)
    atoms = Atoms(symbols, positions=positions, cell=[box] * 3, pbc=False)
    return atoms


def repulsive_pairs_independent(atoms, rcut=3.0, ratio=0.7, shells=4):
    """The prior's energy by brute force over many images (a check on AGOX's image list)."""
    cell = atoms.cell.array
    ranges = [range(-shells, shells + 1) if p else [0] for p in atoms.pbc]
    e = 0.0
    for i, a in enumerate(atoms):
        for j, b in enumerate(atoms):
            for n0 in ranges[0]:
                for n1 in ranges[1]:
                    for n2 in ranges[2]:
                        v = b.position + np.dot([n0, n1, n2], cell) - a.position
                        r = np.linalg.norm(v)
                        if 1e-5 < r < rcut:
                            rmin = ratio * (covalent_radii[a.number] + covalent_radii[b.number])
                            e += (r + 1 - rmin) ** -12
    return e / 2


def repulsive_fixture():
    rng = np.random.default_rng(7001)
    structures = []
    a = compact_cluster(["Au"] * 8 + ["Cu"] * 4, rng, 12.0, bond=(2.1, 2.7), min_dist=1.9)
    structures.append(("Au8Cu4 compact cluster, close contacts (seed 7001)", a))
    b = compact_cluster(["Ag", "Pt", "Ni", "Al", "Au"], rng, 10.0, bond=(1.8, 2.6), min_dist=1.7)
    structures.append(("AgPtNiAlAu cluster, five species (seed 7001)", b))
    c = bulk("Cu", "fcc", a=3.3).repeat((2, 2, 2))
    c.positions += rng.normal(scale=0.08, size=c.positions.shape)
    structures.append(("compressed rattled Cu fcc 2x2x2 primitive, pbc True (seed 7001)", c))
    d = fcc111("Au", size=(2, 2, 3), vacuum=8.0)
    top = d.positions[:, 2].max()
    for k in range(3):
        d.append(ase.Atom("Cu", (1.0 + 2.2 * k, 1.2 + 0.9 * k, top + 2.1 + 0.2 * k)))
    structures.append(("Au(111) 2x2x3 slab with a Cu3 adsorbate, pbc (T,T,F)", d))
    entries = []
    for description, atoms in structures:
        prior = Repulsive(rcut=3.0, ratio=0.7)
        energy = prior.predict_energy(atoms)  # also prepares the image list
        forces = prior.predict_forces(atoms)
        entries.append(
            {
                "description": description,
                **record(atoms),
                "energy": float(energy),
                "forces": np.asarray(forces).tolist(),
                "energy_brute_force_images": float(repulsive_pairs_independent(atoms)),
            }
        )
    return {
        "meta": {
            "generated_by": "make_fixtures.py",
            "versions": VERSIONS,
            "prior": "agox.models.GPR.priors.Repulsive(rcut=3.0, ratio=0.7): predict_energy, predict_forces",
            "energy_brute_force_images": "the same sum evaluated in numpy over +-4 image shells",
        },
        "entries": entries,
    }


def gofee_kernel():
    # As agox/algorithms/factory/model_factory.py builds GOFEE's kernel.
    return C(5000, (1, 1e5)) * (
        C(0.01, (0.01, 0.01)) * RBF() + C(0.99, (0.99, 0.99)) * RBF()
    ) + Noise(0.01, (0.01, 0.01))


def emt_structure(atoms, rng, relax_steps):
    atoms = atoms.copy()
    atoms.calc = EMT()
    if relax_steps:
        BFGS(atoms, logfile=None).run(fmax=0.05, steps=relax_steps)
    e = atoms.get_potential_energy()
    out = atoms.copy()
    out.calc = SinglePointCalculator(out, energy=e)
    return out, float(e)


def hyperparameter_optimize(model, theta0):
    """GPR._hyperparameter_optimize (and ray_hyperparameter_optimize) as written,
    except that log P, which AGOX returns as a 1-element array, is reduced to a
    scalar first: numpy 2.4 refuses float() of a 1-element array, which makes AGOX's
    own function raise TypeError here."""
    from scipy.optimize import fmin_l_bfgs_b

    def f(theta):
        P, grad_P = model._log_marginal_likelihood_gradient(theta)
        P = np.ravel(P)[0]
        if np.isnan(P):
            return np.inf, np.zeros_like(theta, dtype="float64")
        return -float(P), -np.asarray(grad_P, dtype="float64")

    bounds = model.kernel.bounds
    theta_min, fmin, _ = fmin_l_bfgs_b(
        f,
        np.asarray(theta0, dtype="float64"),
        bounds=np.asarray(bounds, dtype="float64"),
        maxiter=model.optimizer_maxiter,
    )
    return theta_min, fmin


def gpr_fixture():
    rng = np.random.default_rng(7002)
    box = 12.0
    symbols = ["Au"] * 8 + ["Cu"] * 4
    train, energies = [], []
    for k in range(30):
        a = compact_cluster(symbols, rng, box)
        s, e = emt_structure(a, rng, relax_steps=[0, 3, 10, 40][k % 4])
        train.append(s)
        energies.append(e)
    tests = []
    for k in range(5):
        a = compact_cluster(symbols, rng, box)
        s, e = emt_structure(a, rng, relax_steps=[0, 5][k % 2])
        tests.append((s, e))

    template = Atoms(cell=[box] * 3, pbc=False)
    env = Environment(template=template, symbols="Au8Cu4", print_report=False)
    descriptor = Fingerprint(environment=env)
    kernel = gofee_kernel()
    model = GPR(descriptor=descriptor, kernel=kernel, prior=Repulsive(), n_optimize=0, use_ray=False)

    theta_fit = np.array([np.log(3000.0), np.log(0.01), np.log(2.5), np.log(0.99), np.log(30.0), np.log(0.01)])
    model.kernel.theta = theta_fit
    model.train(train)
    assert np.allclose(model.kernel.theta, theta_fit)

    thetas = [
        model.kernel.theta.copy(),
        np.array([8.5172, np.log(0.01), 0.0, np.log(0.99), 0.0, np.log(0.01)]),
        np.array([5.0, np.log(0.01), 4.0, np.log(0.99), 1.5, np.log(0.01)]),
    ]
    lml = []
    for t in thetas:
        value, grad = model._log_marginal_likelihood_gradient(t)
        lml.append({"theta": t.tolist(), "lml": float(np.ravel(value)[0]), "gradient": np.asarray(grad).tolist()})

    optimized = []
    starts = [
        np.array(gofee_kernel().theta),
        np.array([2.0, np.log(0.01), 1.0, np.log(0.99), 3.0, np.log(0.01)]),
        np.array([10.0, np.log(0.01), -1.0, np.log(0.99), 5.0, np.log(0.01)]),
    ]
    for t0 in starts:
        theta_min, fmin = hyperparameter_optimize(model, t0)
        optimized.append({"theta0": t0.tolist(), "theta": np.asarray(theta_min).tolist(), "neg_lml": float(fmin)})

    predictions = []
    for s, e in tests:
        predictions.append(
            {
                **record(s),
                "emt_energy": e,
                "energy": float(model.predict_energy(s)),
                "forces": np.asarray(model.predict_forces(s)).tolist(),
                "sigma": float(model.predict_uncertainty(s)),
                "sigma_forces": np.asarray(model.predict_uncertainty_forces(s)).tolist(),
                "prior_energy": float(Repulsive().predict_energy(s)),
            }
        )

    return {
        "meta": {
            "generated_by": "make_fixtures.py",
            "versions": VERSIONS,
            "descriptor": "Fingerprint(environment=Environment(template=Atoms(cell=[12]*3, pbc=False), symbols='Au8Cu4')), defaults",
            "kernel": "C(5000,(1,1e5)) * (C(0.01,(0.01,0.01))*RBF() + C(0.99,(0.99,0.99))*RBF()) + Noise(0.01,(0.01,0.01))",
            "model": "agox.models.GPR.GPR(descriptor, kernel, prior=Repulsive(), n_optimize=0, use_ray=False), "
            "kernel.theta set to theta_fit before train()",
            "training": "30 random compact Au8Cu4 clusters in a 12 A box (seed 7002), EMT energies after 0/3/10/40 BFGS steps",
            "K": "model.K, full matrix (noise on the diagonal)",
            "lml": "model._log_marginal_likelihood_gradient(theta) at three theta",
            "optimized": "AGOX's _hyperparameter_optimize: scipy fmin_l_bfgs_b(maxiter=100) on -log P (see hyperparameter_optimize)",
            "predictions": "predict_energy, predict_forces, predict_uncertainty, predict_uncertainty_forces (= -dsigma/dr)",
        },
        "training": [{**record(s), "energy": e} for s, e in zip(train, energies)],
        "theta_fit": theta_fit.tolist(),
        "mean_energy": float(model.mean_energy),
        "K": np.asarray(model.K).tolist(),
        "alpha": np.asarray(model.alpha).ravel().tolist(),
        "lml": lml,
        "optimized": optimized,
        "predictions": predictions,
    }


def main():
    for name, make in (("repulsive.json", repulsive_fixture), ("gpr.json", gpr_fixture)):
        data = make()
        (HERE / name).write_text(json.dumps(data, indent=1) + "\n")
        print(f"wrote {name}")


if __name__ == "__main__":
    main()
