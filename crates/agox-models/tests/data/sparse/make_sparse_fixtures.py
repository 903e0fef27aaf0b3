"""Reference values of AGOX 3.11.1's SparseGPR for agox-models' tests.

Run by hand, outside the tests, with a Python that has agox==3.11.1 and ase 3.29 installed
(see README.md next to this file):

    python make_sparse_fixtures.py          # writes the *.json files next to this script

Everything is drawn from fixed seeds (numpy.random.default_rng for the structures,
numpy.random.seed for AGOX's own draws: CUR and the hyperparameter search), BLAS is
pinned to one thread, so rerunning reproduces the files bit for bit on the same machine.
Floats are written with repr() (round-trip exact); non-finite values as the strings
"+inf" / "-inf". Every fixture is checked for internal consistency against an
independent numpy implementation before it is written (the asserts below); the
measured agreements are stored in each file's meta.checks.
"""

import os

# One BLAS thread: a fixed reduction order, so the files are reproducible. Must precede numpy.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import atexit  # noqa: E402
import contextlib  # noqa: E402
import importlib.metadata  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import pathlib  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402

import numpy as np  # noqa: E402
import scipy  # noqa: E402

# AGOX 3.11.1 imports these two names from ase.constraints, which ASE 3.29 keeps only in
# ase.constraints.constraint. Re-export them, here and (through a sitecustomize.py, see
# main) in the Ray worker processes AGOX starts; nothing else of AGOX or ASE is touched.
ASE_REEXPORT = """
import ase.constraints
import ase.constraints.constraint as _constraint
for _name in ("IndexedConstraint", "slice2enlist"):
    if not hasattr(ase.constraints, _name):
        setattr(ase.constraints, _name, getattr(_constraint, _name))
"""
exec(ASE_REEXPORT)

from ase import Atoms  # noqa: E402
from ase.calculators.emt import EMT  # noqa: E402
from ase.calculators.singlepoint import SinglePointCalculator  # noqa: E402
from ase.optimize import BFGS  # noqa: E402
from scipy.linalg import cho_factor, cho_solve, solve_triangular  # noqa: E402

from agox.environments import Environment  # noqa: E402
from agox.models.descriptors import Fingerprint, SimpleFingerprint  # noqa: E402
from agox.models.GPR import SparseGPR  # noqa: E402
from agox.models.GPR.kernels import RBF  # noqa: E402
from agox.models.GPR.kernels import Constant as C  # noqa: E402
from agox.models.GPR.priors import Repulsive  # noqa: E402
from agox.utils.ray.pool_startup import configure_ray_pool  # noqa: E402
from agox.utils.sparsifiers import CUR  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent


def _versions():
    out = {"python": sys.version.split()[0]}
    for dist in ("agox", "ase", "numpy", "scipy", "scikit-learn", "ase-ga", "ray"):
        out[dist] = importlib.metadata.version(dist)
    blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
    out["blas"] = f"{blas['name']} {blas['version']} (1 thread)"
    return out


VERSIONS = _versions()

BOX = 12.0
SYMBOLS = ["Au"] * 8 + ["Cu"] * 4
# The pair distances where something is cut off: the Repulsive prior (3 Å) and
# SimpleFingerprint (r_cut + 4 width = 3.8 Å). Finite differences must not straddle them.
CUTOFFS = (3.0, 3.8)
FD_MARGIN = 2e-3


# ---------------------------------------------------------------------------------------
# Structures
# ---------------------------------------------------------------------------------------


def record(atoms):
    return {
        "numbers": [int(z) for z in atoms.numbers],
        "positions": atoms.positions.tolist(),
        "cell": atoms.cell.array.tolist(),
        "pbc": [bool(p) for p in atoms.pbc],
    }


def compact_cluster(rng, bond=(2.45, 2.85), min_dist=2.25, trials=25):
    """Au8Cu4 grown one atom at a time: of `trials` random sites at a bond length from an
    existing atom (and farther than min_dist from all), keep the most coordinated.
    Centred in the 12 Å box."""
    positions = [np.zeros(3)]
    while len(positions) < len(SYMBOLS):
        placed = np.array(positions)
        best, best_n = None, -1
        for _ in range(trials):
            base = placed[rng.integers(len(placed))]
            d = rng.normal(size=3)
            p = base + rng.uniform(*bond) * d / np.linalg.norm(d)
            r = np.linalg.norm(placed - p, axis=1)
            if r.min() <= min_dist:
                continue
            n = int(np.sum(r < 1.2 * bond[1]))
            if n > best_n:
                best, best_n = p, n
        if best is not None:
            positions.append(best)
    atoms = Atoms(SYMBOLS, positions=positions, cell=[BOX] * 3, pbc=False)
    atoms.positions += BOX / 2 - atoms.positions.mean(axis=0)
    return atoms


def far_from_cutoffs(atoms, margin=FD_MARGIN):
    d = atoms.get_all_distances()[np.triu_indices(len(atoms), 1)]
    return all(np.abs(d - rc).min() > margin for rc in CUTOFFS)


def emt_dataset(rng, n, relax_steps, require_fd_safe=False):
    """n clusters, each relaxed with ASE BFGS (EMT) for a number of steps drawn from
    relax_steps; energy and forces frozen in a SinglePointCalculator."""
    out = []
    while len(out) < n:
        atoms = compact_cluster(rng)
        steps = int(rng.choice(relax_steps))
        atoms.calc = EMT()
        if steps:
            BFGS(atoms, logfile=None).run(fmax=0.05, steps=steps)
        if require_fd_safe and not far_from_cutoffs(atoms):
            continue
        e = atoms.get_potential_energy()
        f = atoms.get_forces()
        frozen = Atoms(atoms.symbols, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
        frozen.calc = SinglePointCalculator(frozen, energy=e, forces=f)
        frozen.info["relax_steps"] = steps
        out.append(frozen)
    return out


def structure_entry(atoms, forces=True):
    out = {**record(atoms), "relax_steps": atoms.info["relax_steps"], "energy": float(atoms.get_potential_energy())}
    if forces:
        out["forces"] = atoms.get_forces().tolist()
    return out


def pristine(atoms):
    """A calculator-less copy. AGOX's central-difference feature gradient moves an atom by
    -δ, +2δ, -δ in place, which leaves positions changed by rounding; every AGOX call gets
    its own copy so the exported positions are exactly the ones predicted on."""
    return Atoms(atoms.symbols, positions=atoms.positions.copy(), cell=atoms.cell.copy(), pbc=atoms.pbc.copy())


def environment():
    template = Atoms(cell=[BOX] * 3, pbc=False)
    return Environment(template=template, symbols="Au8Cu4", print_report=False)


# ---------------------------------------------------------------------------------------
# AGOX helpers
# ---------------------------------------------------------------------------------------


def train_quietly(model, data):
    with contextlib.redirect_stdout(io.StringIO()):
        model.train(data)


def inducing_indices(model):
    """Xm is Xn[indices] (CUR copies rows); AGOX does not keep the indices, so recover
    them by exact row match, in the order of Xm (the order of α)."""
    rows = {model.Xn[i].tobytes(): i for i in range(len(model.Xn))}
    assert len(rows) == len(model.Xn), "duplicate environments: indices would be ambiguous"
    idx = [rows[x.tobytes()] for x in model.Xm]
    assert np.array_equal(model.Xn[idx], model.Xm)
    return idx


def agox_normal_equations(model):
    """The matrix and right-hand side SparseGPR._train_model solves, by its own
    expressions (AGOX does not keep them); checked by re-solving with AGOX's _solve."""
    LK_nm = model.L @ model.K_nm
    A = model.K_mm + LK_nm.T @ model.sigma_inv @ LK_nm + model.jitter * np.eye(model.K_mm.shape[0])
    A = model._symmetrize(A)
    b = LK_nm.T @ model.sigma_inv @ model.Y
    assert np.array_equal(model._solve(A, b), model.alpha)
    return A, b[:, 0]


def cur_scores(X):
    """CUR.sparsify's leverage scores, as written (full SVD, first min(shape) columns)."""
    U, s, _ = scipy.linalg.svd(X)
    fd = np.min(X.shape)
    return np.sum(U[:, :fd] ** 2, axis=1) / fd, s


def lml_entries(model, thetas):
    return [{"theta": list(map(float, t)), "lml": jfloat(model._log_marginal_likelihood(np.array(t)))} for t in thetas]


def jfloat(x):
    """A float for JSON: finite as is, non-finite as a string (JSON has no infinities)."""
    x = float(x)
    if np.isfinite(x):
        return x
    if np.isnan(x):
        return "nan"
    return "+inf" if x > 0 else "-inf"


# ---------------------------------------------------------------------------------------
# Independent numpy implementation, for the consistency checks
# ---------------------------------------------------------------------------------------


def rbf(theta, X, Y):
    """C*RBF: c exp(-|x-y|^2 / (2 l^2)), θ = [ln c, ln l]; rows of X against rows of Y."""
    c, ell = np.exp(theta)
    out = np.empty((len(X), len(Y)))
    for s in range(0, len(X), 256):
        d2 = ((X[s : s + 256, None, :] - Y[None, :, :]) ** 2).sum(-1)
        out[s : s + 256] = c * np.exp(-0.5 * d2 / ell**2)
    return out


def rbf_grad_query(theta, Xm, x):
    """d k(Xm_m, x) / d x  for one query row x: [M, F]."""
    ell = np.exp(theta[1])
    k = rbf(theta, Xm, x[None, :])[:, 0]
    return k[:, None] * (Xm - x[None, :]) / ell**2


def project(K, n_centers, n_force_atoms):
    """L K with AGOX's L, without forming L: per-structure sums of the environment rows,
    then for each force structure the (J - I) block: every row becomes the sum of all 3a
    rows of its structure minus itself."""
    out = []
    start = 0
    for n in n_centers:
        out.append(K[start : start + n].sum(axis=0))
        start += n
    rows = [np.array(out)]
    for a in n_force_atoms:
        block = K[start : start + 3 * a]
        rows.append(block.sum(axis=0)[None, :] - block)
        start += 3 * a
    assert start == len(K)
    return np.vstack(rows)


def independent_solve(K_mm, LK, sigma_inv_diag, y, jitter):
    A = K_mm + LK.T @ (sigma_inv_diag[:, None] * LK) + jitter * np.eye(len(K_mm))
    A = 0.5 * (A + A.T)
    b = LK.T @ (sigma_inv_diag * y)
    return cho_solve(cho_factor(A, lower=True), b), A, b


def independent_uncertainty_factors(K_mm, K_nm, local_sigma2, unc_jitter):
    M = len(K_mm)
    kmm = cho_factor(K_mm + unc_jitter * np.eye(M), lower=True)
    Cm = K_mm + K_nm.T @ (K_nm / local_sigma2[:, None]) + unc_jitter * np.eye(M)
    cm = cho_factor(0.5 * (Cm + Cm.T), lower=True)
    return kmm, cm


def independent_sigma(theta, Xm, x, kmm, cm):
    k = rbf(theta, Xm, x)
    k0 = rbf(theta, x, x)
    cov = k0 - k.T @ cho_solve(kmm, k) + k.T @ cho_solve(cm, k)
    return float(np.sqrt(cov.sum()))


def independent_lml(K_mm, LK, noise_var, y, unc_jitter):
    """AGOX's sparse likelihood via Cholesky: K~ = LK (K_mm + uj I)^-1 (LK)^T + diag(noise)."""
    lm = np.linalg.cholesky(K_mm + unc_jitter * np.eye(len(K_mm)))
    V = solve_triangular(lm, LK.T, lower=True)
    Kt = V.T @ V + np.diag(noise_var)
    lt = np.linalg.cholesky(Kt)
    a = cho_solve((lt, True), y)
    return float(-np.sum(np.log(np.diag(lt))) - 0.5 * y @ a - 0.5 * len(y) * np.log(2 * np.pi))


def rel(a, b):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def fd5(f, x0, h):
    """Five-point central difference of the scalar/array function f along each coordinate
    of the array x0 (error O(h^4))."""
    x0 = np.array(x0, dtype=float)
    g = None
    for i in np.ndindex(x0.shape):
        vals = []
        for s in (-2, -1, 1, 2):
            x = x0.copy()
            x[i] += s * h
            vals.append(np.asarray(f(x), dtype=float))
        d = (vals[0] - 8 * vals[1] + 8 * vals[2] - vals[3]) / (12 * h)
        if g is None:
            g = np.zeros(x0.shape + d.shape)
        g[i] = d
    return g


def fd_step_check(model, atoms, forces_fd):
    """forces_fd (five-point, h = 1e-3 Å) against the same with h = 5e-4 Å."""
    half = -fd5(lambda p: model_energy_at(model, atoms, p), atoms.positions, 5e-4)
    return rel(half, forces_fd)


def model_energy_at(model, atoms, positions):
    a = atoms.copy()
    a.positions = positions
    return model.predict_energy(a)


# ---------------------------------------------------------------------------------------
# A and B: global Fingerprint, 50 structures, without and with force training
# ---------------------------------------------------------------------------------------

GLOBAL_SEED_DATA = 1201
GLOBAL_SEED_AGOX = 1202
GLOBAL_M = 30
GLOBAL_THETAS = [[0.0, float(np.log(20.0))], [float(np.log(10.0)), float(np.log(5.0))], [float(np.log(0.5)), float(np.log(60.0))]]


def global_data():
    rng = np.random.default_rng(GLOBAL_SEED_DATA)
    train = emt_dataset(rng, 50, relax_steps=[0, 2, 5, 10, 20, 40])
    test = emt_dataset(rng, 20, relax_steps=[0, 5, 15], require_fd_safe=True)
    return train, test


def global_kernel():
    # As agox/test/model_tests/test_global_sparse_gpr.py writes it.
    return C(1.0) * RBF(length_scale=np.exp(np.log(20.0)))


def global_model(descriptor, forces, **extra):
    kwargs = dict(
        descriptor=descriptor,
        kernel=global_kernel(),
        prior=Repulsive(),
        noise=0.2,
        jitter=5e-3,
        sparsifier=CUR(GLOBAL_M),
        train_uncertainty=True,
        use_ray=False,
    )
    if forces:
        # sigma_F= would be ignored (sGPR.py:108 tests noise_F); noise_F= is what works.
        # σ_F = 0.3 eV/Å: with 30 inducing structures a tighter σ_F (0.05) cannot be met
        # (-LML ~ 1e5) and drags the test energies ~3 eV off.
        kwargs.update(force_data_filter="all", noise_F=0.3)
    kwargs.update(extra)
    return SparseGPR(**kwargs)


def global_fixture(forces):
    train, test = global_data()
    env = environment()
    descriptor = Fingerprint(environment=env)
    model = global_model(descriptor, forces)
    assert model.sigma_E == 0.2 and model.sigma_F == (0.3 if forces else 0.2)
    np.random.seed(GLOBAL_SEED_AGOX)
    train_quietly(model, train)
    theta = model.kernel.theta.copy()
    idx = inducing_indices(model)

    if forces:
        # AGOX's bug: the sigma_F keyword is dropped, σ_F falls back to sigma.
        probe = SparseGPR(descriptor=descriptor, kernel=global_kernel(), sigma=0.2, sigma_F=0.3, use_ray=False)
        assert probe.sigma_F == 0.2

    n = len(train)
    n_force_atoms = [len(a) for a in train] if forces else []
    y = model.Y[:, 0]
    sigma_inv_diag = np.diag(model.sigma_inv).copy()
    checks = {}

    # --- the L structure and Σ⁻¹ are what the README says
    LK_agox = model.L @ model.K_nm
    LK = project(model.K_nm, [1] * n, n_force_atoms)
    checks["LK_projection_rel"] = rel(LK, LK_agox)
    assert checks["LK_projection_rel"] < 1e-13
    expected_noise = np.concatenate([np.full(n, 0.2**2), np.full(3 * sum(n_force_atoms), model.sigma_F**2)])
    assert np.array_equal(sigma_inv_diag, 1 / expected_noise)
    assert np.count_nonzero(model.sigma_inv - np.diag(sigma_inv_diag)) == 0

    # --- kernel matrices from the exported features
    X = model.Xn
    Xm = X[idx]
    assert np.array_equal(Xm, model.Xm)
    checks["K_mm_rel"] = rel(rbf(theta, Xm, Xm), model.K_mm)
    checks["K_nm_energy_rel"] = rel(rbf(theta, X, Xm), model.K_nm[:n])
    assert checks["K_mm_rel"] < 1e-13 and checks["K_nm_energy_rel"] < 1e-13
    if forces:
        jac = []
        for x, dx in zip(model.Xf, model.dXf_dr):
            # Σ_c dX_c/dr · dk(Xm, x_c)/dx_c  → [3a, M], row 3*atom + xyz
            g = rbf_grad_query(theta, Xm, x[0])  # [M, F]
            jac.append(np.einsum("adf,mf->adm", dx[0], g).reshape(-1, len(Xm)))
        jac = np.vstack(jac)
        checks["K_nm_force_rel"] = rel(jac, model.K_nm[n:])
        assert checks["K_nm_force_rel"] < 1e-12
        # (J - I) K_F equals -K_F when the descriptor is translation invariant
        checks["force_block_JminusI_vs_minus_I_rel"] = rel(LK[n:], -model.K_nm[n:])
        assert checks["force_block_JminusI_vs_minus_I_rel"] < 1e-10
        # Y's force part: EMT forces minus the prior's
        prior_f = np.concatenate([model.prior.predict_forces(a).reshape(-1) for a in train])
        emt_f = np.concatenate([a.get_forces().reshape(-1) for a in train])
        assert np.array_equal(y[n:], emt_f - prior_f)

    # --- Y (energies): E - Σ sae - prior - mean
    prior_e = np.array([model.prior.predict_energy(a) for a in train])
    emt_e = np.array([a.get_potential_energy() for a in train])
    assert model.centralize is False and model.mean_energy == 0
    checks["Y_energy_rel"] = rel(emt_e - prior_e, y[:n])
    assert checks["Y_energy_rel"] < 1e-14

    # --- α by an independent Cholesky solve
    A, b = agox_normal_equations(model)
    alpha_chol, A_ours, b_ours = independent_solve(model.K_mm, LK, sigma_inv_diag, y, model.jitter)
    checks["normal_matrix_rel"] = rel(A_ours, A)
    checks["rhs_rel"] = rel(b_ours, b)
    alpha = model.alpha[:, 0]
    checks["alpha_cholesky_rel"] = rel(alpha_chol, alpha)
    checks["normal_matrix_cond"] = float(np.linalg.cond(A))
    assert checks["alpha_cholesky_rel"] < (1e-7 if forces else 1e-9)

    # --- uncertainty factors
    local_sigma2 = np.concatenate([np.full(n, 0.2**2), np.full(3 * sum(n_force_atoms), model.sigma_F**2)])
    kmm, cm = independent_uncertainty_factors(model.K_mm, model.K_nm, local_sigma2, model.unc_jitter)
    checks["Kmm_inv_rel"] = rel(cho_solve(kmm, np.eye(GLOBAL_M)), model.Kmm_inv)
    checks["C_inv_rel"] = rel(cho_solve(cm, np.eye(GLOBAL_M)), model.C_inv)

    # --- likelihood at three θ
    lml = lml_entries(model, GLOBAL_THETAS)
    checks["lml_rel"] = []
    for entry in lml:
        t = np.array(entry["theta"])
        K_nm_t = rbf(t, X, Xm)
        if forces:
            jac_t = np.vstack(
                [np.einsum("adf,mf->adm", dx[0], rbf_grad_query(t, Xm, x[0])).reshape(-1, len(Xm)) for x, dx in zip(model.Xf, model.dXf_dr)]
            )
            K_nm_t = np.vstack([K_nm_t, jac_t])
        ours = independent_lml(rbf(t, Xm, Xm), project(K_nm_t, [1] * n, n_force_atoms), 1 / sigma_inv_diag, y, model.unc_jitter)
        checks["lml_rel"].append(abs(ours - entry["lml"]) / abs(ours))
    assert max(checks["lml_rel"]) < 1e-8

    # --- predictions on the test structures
    predictions = []
    worst = {"energy": 0.0, "forces": 0.0, "sigma": 0.0, "forces_vs_fd": 0.0}
    for a in test:
        positions = a.positions.copy()
        x = descriptor.get_features(pristine(a))  # [1, F]
        dx = descriptor.get_feature_gradient(pristine(a))  # [1, atoms, 3, F]
        e = float(model.predict_energy(pristine(a)))
        f = np.asarray(model.predict_forces(pristine(a)))
        s = float(model.predict_uncertainty(pristine(a)))
        pe = float(model.prior.predict_energy(pristine(a)))
        pf = np.asarray(model.prior.predict_forces(pristine(a)))
        # independent: E = Σ kα + prior + mean, F = -dX/dr · (Σ_m α_m dk/dx) + prior
        e_ours = float(rbf(theta, Xm, x) [:, 0] @ alpha_chol) + pe + model.mean_energy
        g = rbf_grad_query(theta, Xm, x[0]).T @ alpha_chol  # [F]
        f_ours = -np.einsum("adf,f->ad", dx[0], g) + pf
        s_ours = independent_sigma(theta, Xm, x, kmm, cm)
        f_fd = -fd5(lambda p: model_energy_at(model, a, p), a.positions, 1e-3)
        worst["energy"] = max(worst["energy"], abs(e_ours - e) / abs(e))
        worst["forces"] = max(worst["forces"], rel(f_ours, f))
        worst["sigma"] = max(worst["sigma"], abs(s_ours - s) / s)
        worst["forces_vs_fd"] = max(worst["forces_vs_fd"], rel(f, f_fd))
        assert np.array_equal(a.positions, positions)
        predictions.append(
            {
                **structure_entry(a),
                "features": x[0].tolist(),
                "prior_energy": pe,
                "prior_forces": pf.tolist(),
                "energy_pred": e,
                "forces_pred": f.tolist(),
                "sigma_pred": s,
                "forces_fd": f_fd.tolist(),
            }
        )
    checks["independent_vs_agox_max_rel"] = worst
    checks["forces_fd_step_halved_max_rel"] = fd_step_check(model, test[0], predictions[0]["forces_fd"])
    checks["test_energy_mae_vs_emt"] = float(np.mean([abs(p["energy_pred"] - p["energy"]) for p in predictions]))
    assert worst["energy"] < 1e-9 and worst["forces"] < (1e-7 if forces else 1e-8) and worst["sigma"] < 1e-7
    # AGOX's forces use its analytic Fingerprint gradient, which is off in the clipped
    # edge bins; the five-point difference of AGOX's own energy is the true -dE/dr.
    assert worst["forces_vs_fd"] < 1e-2

    data = {
        "meta": {
            "generated_by": "make_sparse_fixtures.py",
            "versions": VERSIONS,
            "fixture": "B: global Fingerprint, 50 structures, energy and force training"
            if forces
            else "A: global Fingerprint, 50 structures, energy training only",
            "checks": checks,
        },
        "settings": {
            "agox_constructor": "SparseGPR(descriptor=Fingerprint(environment=env), kernel=C(1.0)*RBF(length_scale=np.exp(np.log(20.0))), "
            "prior=Repulsive(), noise=0.2, jitter=5e-3, sparsifier=CUR(30), train_uncertainty=True, use_ray=False"
            + (", force_data_filter='all', noise_F=0.3)" if forces else ")"),
            "environment": {"template_cell": [[BOX, 0, 0], [0, BOX, 0], [0, 0, BOX]], "template_pbc": [False] * 3, "symbols": "Au8Cu4"},
            "descriptor": {
                "name": "Fingerprint",
                **dict(rc1=6, rc2=4, binwidth=0.2, Nbins=30, sigma1=0.2, sigma2=0.2, gamma=2, eta=20, use_angular=True),
                "n_features": int(X.shape[1]),
            },
            "kernel": "C(1.0) * RBF(20.0): k(x, y) = c exp(-|x - y|^2 / (2 l^2))",
            "theta": theta.tolist(),
            "constant_value": float(model.kernel.k1.constant_value),
            "length_scale": float(model.kernel.k2.length_scale),
            "theta_bounds": model.kernel.bounds.tolist(),
            "sigma_E": model.sigma_E,
            "sigma_F": model.sigma_F if forces else None,
            "jitter": model.jitter,
            "unc_jitter": model.unc_jitter,
            "centralize": False,
            "single_atom_energies": "zeros (AGOX default)",
            "prior": {"name": "Repulsive", "rcut": 3.0, "ratio": 0.7},
            "m_points": GLOBAL_M,
            "numpy_seed_before_train": GLOBAL_SEED_AGOX,
        },
        "training": [structure_entry(a) for a in train],
        "inducing_indices": idx,
        "n_centers": [1] * n,
        "force_structures": list(range(n)) if forces else [],
        "prior_energy": prior_e.tolist(),
        "mean_energy": float(model.mean_energy),
        "Y": y.tolist(),
        "sigma_inv_diag": sigma_inv_diag.tolist(),
        "K_mm": model.K_mm.tolist(),
        "K_nm": model.K_nm.tolist(),
        "normal_matrix": A.tolist(),
        "rhs": b.tolist(),
        "alpha": alpha.tolist(),
        "Kmm_inv": model.Kmm_inv.tolist(),
        "C_inv": model.C_inv.tolist(),
        "lml": lml,
        "test": predictions,
    }
    if not forces:
        data["features"] = X.tolist()
    return data


# ---------------------------------------------------------------------------------------
# C: SimpleFingerprint (local), 200 structures
# ---------------------------------------------------------------------------------------

LOCAL_SEED_DATA = 1203
LOCAL_SEED_AGOX = 1204
LOCAL_M = 500
LOCAL_ELL = 0.3
LOCAL_THETAS = [[0.0, float(np.log(LOCAL_ELL))], [float(np.log(4.0)), float(np.log(0.6))], [float(np.log(0.3)), float(np.log(0.15))]]


def local_data():
    rng = np.random.default_rng(LOCAL_SEED_DATA)
    train = emt_dataset(rng, 200, relax_steps=[0, 2, 5, 10, 20, 40])
    test = emt_dataset(rng, 20, relax_steps=[0, 5, 15], require_fd_safe=True)
    return train, test


def isolated_atom_energy(symbol):
    a = Atoms(symbol, positions=[[BOX / 2] * 3], cell=[BOX] * 3)
    a.calc = EMT()
    return float(a.get_potential_energy())


def simple_fingerprint_numpy(atoms, species, nbins=30, width=0.2, r_cut=3.0):
    """SimpleFingerprint written from its description, and its analytic gradient
    [centre, atom, xyz, feature]."""
    n = len(atoms)
    ns = len(species)
    s_of = [species.index(s) for s in atoms.get_chemical_symbols()]
    bins = np.linspace(0, r_cut, nbins)
    feat = np.zeros((n, ns, ns, nbins))
    grad = np.zeros((n, n, 3, ns, ns, nbins))
    pos = atoms.positions
    for i in range(n):
        for j in range(n):
            if i == j:
                continue
            v = pos[i] - pos[j]
            r = np.linalg.norm(v)
            if r > r_cut + 4 * width:
                continue
            g = np.exp(-0.5 * ((bins - r) / width) ** 2)
            feat[i, s_of[i], s_of[j]] += 0.5 * g / r**2
            dfdr = 0.5 * (g * (bins - r) / width**2 / r**2 - 2 * g / r**3)
            u = v / r
            grad[i, i, :, s_of[i], s_of[j]] += u[:, None] * dfdr[None, :]
            grad[i, j, :, s_of[i], s_of[j]] -= u[:, None] * dfdr[None, :]
    return feat.reshape(n, -1), grad.reshape(n, n, 3, -1)


def local_fixture():
    train, test = local_data()
    env = environment()
    descriptor = SimpleFingerprint(environment=env)
    species = [str(s) for s in env.get_species()]
    assert species == ["Au", "Cu"], species  # sorted by symbol, not by Z
    sae = {79: isolated_atom_energy("Au"), 29: isolated_atom_energy("Cu")}
    model = SparseGPR(
        descriptor=descriptor,
        kernel=C(1.0) * RBF(LOCAL_ELL),
        prior=Repulsive(),
        single_atom_energies=sae,
        noise=0.05,
        jitter=0.1,
        unc_jitter=1e-3,
        centralize=True,
        sparsifier=CUR(LOCAL_M),
        train_uncertainty=True,
        use_ray=False,
    )
    np.random.seed(LOCAL_SEED_AGOX)
    train_quietly(model, train)
    theta = model.kernel.theta.copy()
    idx = inducing_indices(model)
    X = model.Xn
    Xm = X[idx]
    n_centers = [len(a) for a in train]
    y = model.Y[:, 0]
    sigma_inv_diag = np.diag(model.sigma_inv).copy()
    scores, singular_values = cur_scores(X)
    checks = {}

    # Σ⁻¹ is per structure σ_E² · n_centers
    assert np.array_equal(sigma_inv_diag, 1 / (0.05**2 * np.array(n_centers, dtype=float)))
    LK = project(model.K_nm, n_centers, [])
    checks["LK_projection_rel"] = rel(LK, model.L @ model.K_nm)
    checks["K_mm_rel"] = rel(rbf(theta, Xm, Xm), model.K_mm)
    checks["K_nm_rel"] = rel(rbf(theta, X, Xm), model.K_nm)
    assert max(checks["LK_projection_rel"], checks["K_mm_rel"], checks["K_nm_rel"]) < 1e-13

    # features: AGOX's against the numpy description
    checks["features_numpy_max_abs"] = 0.0
    for a in train[:20] + test:
        ours, _ = simple_fingerprint_numpy(a, species)
        checks["features_numpy_max_abs"] = max(checks["features_numpy_max_abs"], float(np.abs(ours - descriptor.get_features(a)).max()))
    assert checks["features_numpy_max_abs"] < 1e-15

    # Y: E - Σ sae(Z) - prior - mean
    prior_e = np.array([model.prior.predict_energy(a) for a in train])
    emt_e = np.array([a.get_potential_energy() for a in train])
    sae_sum = np.array([sum(sae[int(z)] for z in a.numbers) for a in train])
    assert model.mean_energy == np.mean(emt_e - sae_sum - prior_e)
    checks["Y_rel"] = rel(emt_e - sae_sum - prior_e - model.mean_energy, y)
    assert checks["Y_rel"] < 1e-14

    A, b = agox_normal_equations(model)
    alpha_chol, A_ours, b_ours = independent_solve(model.K_mm, LK, sigma_inv_diag, y, model.jitter)
    checks["normal_matrix_rel"] = rel(A_ours, A)
    checks["rhs_rel"] = rel(b_ours, b)
    alpha = model.alpha[:, 0]
    checks["alpha_cholesky_rel"] = rel(alpha_chol, alpha)
    checks["normal_matrix_cond"] = float(np.linalg.cond(A))
    checks["K_mm_cond"] = float(np.linalg.cond(model.K_mm))
    assert checks["alpha_cholesky_rel"] < 1e-5

    kmm, cm = independent_uncertainty_factors(model.K_mm, model.K_nm, np.full(len(X), 0.05**2), model.unc_jitter)

    # CUR's leverage scores use all min(N, F) left singular vectors. X is numerically
    # rank deficient (bins near r = 0 hold values like 1e-40), so the trailing ones are
    # fixed by the Householder sweep over X as given: other drivers and a thin SVD or QR
    # of the same X agree, but a 1e-15 relative perturbation or a column permutation
    # of X gives different scores.
    fd = X.shape[1]
    variants = {
        "gesvd": scipy.linalg.svd(X, lapack_driver="gesvd")[0][:, :fd],
        "thin_gesdd": scipy.linalg.svd(X, full_matrices=False)[0],
        "qr": np.linalg.qr(X)[0],
        "X_times_1_plus_1e-15_noise": scipy.linalg.svd(X * (1 + 1e-15 * np.random.default_rng(0).standard_normal(X.shape)))[0][:, :fd],
        "columns_permuted": scipy.linalg.svd(X[:, np.random.default_rng(1).permutation(fd)])[0][:, :fd],
    }
    checks["cur_scores_vs_variants_max_rel"] = {k: rel(np.sum(U**2, axis=1) / fd, scores) for k, U in variants.items()}
    rank = int(np.sum(singular_values > singular_values[0] * len(X) * np.finfo(float).eps))
    checks["cur_numerical_rank"] = rank
    U_thin = variants["thin_gesdd"]
    checks["cur_scores_vs_variants_max_rel"]["rank_truncated"] = rel(np.sum(U_thin[:, :rank] ** 2, axis=1) / fd, scores)
    assert max(checks["cur_scores_vs_variants_max_rel"][k] for k in ("gesvd", "thin_gesdd", "qr")) < 1e-13
    checks["agox_defaults_regime"] = agox_defaults_regime(train, test, sae)

    lml = lml_entries(model, LOCAL_THETAS)
    checks["lml_rel"] = []
    for entry in lml:
        t = np.array(entry["theta"])
        ours = independent_lml(rbf(t, Xm, Xm), project(rbf(t, X, Xm), n_centers, []), 1 / sigma_inv_diag, y, model.unc_jitter)
        checks["lml_rel"].append(abs(ours - entry["lml"]) / abs(ours))
    assert max(checks["lml_rel"]) < 1e-7

    predictions = []
    worst = {"energy": 0.0, "local_energies": 0.0, "forces": 0.0, "sigma": 0.0, "forces_vs_fd": 0.0}
    for a in test:
        positions = a.positions.copy()
        x = descriptor.get_features(pristine(a))  # [12, F]
        e = float(model.predict_energy(pristine(a)))
        le = np.asarray(model.predict_local_energy(pristine(a)))
        f = np.asarray(model.predict_forces(pristine(a)))  # AGOX's gradient: central difference, δ = 1e-4
        s = float(model.predict_uncertainty(pristine(a)))
        pe = float(model.prior.predict_energy(pristine(a)))
        pf = np.asarray(model.prior.predict_forces(pristine(a)))
        sae_atoms = np.array([sae[int(z)] for z in a.numbers])
        k = rbf(theta, Xm, x)  # [M, 12]
        le_ours = k.T @ alpha_chol + sae_atoms
        e_ours = float(np.sum(k.T @ alpha_chol)) + pe + sae_atoms.sum() + model.mean_energy
        _, dx_exact = simple_fingerprint_numpy(a, species)
        gsum = np.array([rbf_grad_query(theta, Xm, x[c]).T @ alpha_chol for c in range(len(x))])  # [12, F]
        f_ours = -np.einsum("cadf,cf->ad", dx_exact, gsum) + pf
        s_ours = independent_sigma(theta, Xm, x, kmm, cm)
        f_fd = -fd5(lambda p: model_energy_at(model, a, p), a.positions, 1e-3)
        worst["energy"] = max(worst["energy"], abs(e_ours - e) / abs(e))
        worst["local_energies"] = max(worst["local_energies"], rel(le_ours, le))
        # Local energies carry sae but neither the prior nor the mean.
        assert abs(le.sum() + pe + model.mean_energy - e) < 1e-12 * abs(e)
        worst["forces"] = max(worst["forces"], rel(f_ours, f))
        worst["sigma"] = max(worst["sigma"], abs(s_ours - s) / s)
        worst["forces_vs_fd"] = max(worst["forces_vs_fd"], rel(f, f_fd))
        assert np.array_equal(a.positions, positions)
        predictions.append(
            {
                **structure_entry(a),
                "prior_energy": pe,
                "prior_forces": pf.tolist(),
                "energy_pred": e,
                "local_energies_pred": le.tolist(),
                "forces_pred": f.tolist(),
                "sigma_pred": s,
                "forces_fd": f_fd.tolist(),
            }
        )
    checks["independent_vs_agox_max_rel"] = worst
    checks["forces_fd_step_halved_max_rel"] = fd_step_check(model, test[0], predictions[0]["forces_fd"])
    checks["test_energy_mae_vs_emt"] = float(np.mean([abs(p["energy_pred"] - p["energy"]) for p in predictions]))
    assert worst["energy"] < 1e-8 and worst["local_energies"] < 1e-7 and worst["forces"] < 1e-6 and worst["sigma"] < 1e-6
    assert worst["forces_vs_fd"] < 1e-6

    sparse = {
        "meta": {
            "generated_by": "make_sparse_fixtures.py",
            "versions": VERSIONS,
            "fixture": "C: SimpleFingerprint (local), 200 structures, energy training",
            "checks": checks,
        },
        "settings": {
            "agox_constructor": f"SparseGPR(descriptor=SimpleFingerprint(environment=env), kernel=C(1.0)*RBF({LOCAL_ELL}), prior=Repulsive(), "
            "single_atom_energies={79: E_EMT(Au atom), 29: E_EMT(Cu atom)}, noise=0.05, jitter=0.1, unc_jitter=1e-3, centralize=True, "
            f"sparsifier=CUR({LOCAL_M}), train_uncertainty=True, use_ray=False)",
            "environment": {"template_cell": [[BOX, 0, 0], [0, BOX, 0], [0, 0, BOX]], "template_pbc": [False] * 3, "symbols": "Au8Cu4"},
            "descriptor": {
                "name": "SimpleFingerprint",
                **dict(Nbins=30, width=0.2, r_cut=3.0, separate_center_species=True),
                "species": species,
                "n_features": int(X.shape[1]),
            },
            "kernel": f"C(1.0) * RBF({LOCAL_ELL}): k(x, y) = c exp(-|x - y|^2 / (2 l^2))",
            "theta": theta.tolist(),
            "constant_value": float(model.kernel.k1.constant_value),
            "length_scale": float(model.kernel.k2.length_scale),
            "theta_bounds": model.kernel.bounds.tolist(),
            "sigma_E": model.sigma_E,
            "jitter": model.jitter,
            "unc_jitter": model.unc_jitter,
            "centralize": True,
            "single_atom_energies": {str(z): e for z, e in sae.items()},
            "prior": {"name": "Repulsive", "rcut": 3.0, "ratio": 0.7},
            "m_points": LOCAL_M,
            "numpy_seed_before_train": LOCAL_SEED_AGOX,
        },
        "training": [structure_entry(a, forces=False) for a in train],
        "n_centers": n_centers,
        "inducing_indices": idx,
        "cur_leverage_scores": scores.tolist(),
        "cur_singular_values": singular_values.tolist(),
        "prior_energy": prior_e.tolist(),
        "mean_energy": float(model.mean_energy),
        "Y": y.tolist(),
        "sigma_inv_diag": sigma_inv_diag.tolist(),
        "rhs": b.tolist(),
        "alpha": alpha.tolist(),
        "lml": lml,
        "test": predictions,
    }
    return sparse, simple_fingerprint_fixture(descriptor, species, train, test)


def agox_defaults_regime(train, test, sae):
    """The same data at SparseGPR's defaults (σ 0.01, jitter 1e-8, unc_jitter 1e-5,
    CUR(1000)): how far apart two solves of the same normal equations predict."""
    model = SparseGPR(
        descriptor=SimpleFingerprint(environment=environment()),
        kernel=C(1.0) * RBF(LOCAL_ELL),
        prior=Repulsive(),
        single_atom_energies=sae,
        centralize=True,
        train_uncertainty=False,
        use_ray=False,
    )
    assert (model.sigma_E, model.jitter, model.unc_jitter, model.sparsifier.m_points) == (0.01, 1e-8, 1e-5, 1000)
    np.random.seed(LOCAL_SEED_AGOX)
    train_quietly(model, train)
    A, b = agox_normal_equations(model)
    try:
        cho_factor(A)
        cholesky = True
    except np.linalg.LinAlgError:
        cholesky = False
    alpha_lu = np.linalg.solve(A, b)
    X_test = [model._get_features(pristine(a)) for a in test]
    e_agox = np.array([np.sum(model.kernel(model.Xm, x).T @ model.alpha) for x in X_test])
    e_lu = np.array([np.sum(model.kernel(model.Xm, x).T @ alpha_lu) for x in X_test])
    e_total = np.array([model.predict_energy(pristine(a)) for a in test])
    return {
        "settings": "SparseGPR(SimpleFingerprint, C(1)*RBF(0.3), Repulsive(), sae, centralize=True), defaults otherwise",
        "normal_matrix_cond": float(np.linalg.cond(A)),
        "normal_matrix_min_eigenvalue": float(np.linalg.eigvalsh(A)[0]),
        "cholesky_succeeds": cholesky,
        "test_energy_qr_lstsq_vs_lu_max_abs_eV": float(np.max(np.abs(e_agox - e_lu))),
        "test_energy_qr_lstsq_vs_lu_max_rel": float(np.max(np.abs(e_agox - e_lu) / np.abs(e_total))),
    }


def simple_fingerprint_fixture(descriptor, species, train, test):
    """Per-centre features of three structures; gradients of two."""
    checks = {"agox_gradient_vs_numpy_analytic_max_abs": 0.0, "fd5_vs_numpy_analytic_max_abs": 0.0}
    feature_entries = []
    for name, a in (("training[0]", train[0]), ("test[0]", test[0]), ("test[1]", test[1])):
        feature_entries.append({"source": name, **record(a), "features": descriptor.get_features(pristine(a)).tolist()})
    gradient_entries = []
    for name, a in (("test[0]", test[0]), ("test[1]", test[1])):
        assert far_from_cutoffs(a)
        agox = descriptor.get_feature_gradient(pristine(a))  # AGOX: central difference, δ = 1e-4 Å
        fd = fd5(lambda p: descriptor.get_features(Atoms(a.symbols, positions=p, cell=a.cell, pbc=a.pbc)), a.positions, 1e-4)
        fd = np.moveaxis(fd, (0, 1), (1, 2))  # [atom, xyz, centre, F] -> [centre, atom, xyz, F]
        _, exact = simple_fingerprint_numpy(a, species)
        for key, value in (("agox_gradient_vs_numpy_analytic_max_abs", agox), ("fd5_vs_numpy_analytic_max_abs", fd)):
            checks[key] = max(checks[key], float(np.abs(value - exact).max()))
        gradient_entries.append({"source": name, **record(a), "gradient_agox": agox.tolist(), "gradient_fd5": fd.tolist()})
    assert checks["fd5_vs_numpy_analytic_max_abs"] < 1e-10
    assert checks["agox_gradient_vs_numpy_analytic_max_abs"] < 1e-6
    return {
        "meta": {
            "generated_by": "make_sparse_fixtures.py",
            "versions": VERSIONS,
            "descriptor": "SimpleFingerprint(environment=Environment(template=Atoms(cell=[12]*3, pbc=False), symbols='Au8Cu4')), defaults",
            "species": species,
            "checks": checks,
        },
        "features": feature_entries,
        "gradients": gradient_entries,
    }


# ---------------------------------------------------------------------------------------
# Hyperparameter search: the pooled search on fixture A's data, and AGOX's +inf case
# ---------------------------------------------------------------------------------------

SEARCH_N_OPTIMIZE = 8
INF_SEED_AGOX = 1205
# Probed in this order for a θ where AGOX's likelihood is +inf (upper bounds: ln 1e5, ln 1e3).
INF_GRID_LOG_C = [11.5, 11.0, 10.0, 9.0]
INF_GRID_LOG_L = [6.9, 6.5, 6.0, 5.5, 5.0]


def search_fixture(fixture_a_indices):
    train, test = global_data()
    env = environment()

    # 1. AGOX's parallel search, on real Ray actors (use_ray=True), fixture A's model.
    model = global_model(Fingerprint(environment=env), forces=False, use_ray=True, n_optimize=SEARCH_N_OPTIMIZE)
    calls = []
    original_pool_map = model.pool_map

    def recording_pool_map(fn, modules, args, kwargs):
        out = original_pool_map(fn, modules, args, kwargs)
        calls.append({"fn": fn.__name__, "args": args, "kwargs": kwargs, "outputs": out})
        return out

    model.pool_map = recording_pool_map
    theta0 = model.kernel.theta.copy()
    np.random.seed(GLOBAL_SEED_AGOX)
    train_quietly(model, train)
    assert len(calls) == 1 and calls[0]["fn"] == "ray_hyperparameter_optimize"
    # AGOX's pool adds a per-task seed drawn from the driver's np.random (pool.py:143).
    assert all(k["relax"] is False and set(k) == {"relax", "pool_internal_seed"} for k in calls[0]["kwargs"])
    starts = [np.asarray(a[0]) for a in calls[0]["args"]]
    assert np.array_equal(starts[0], theta0)
    nlml = [float(o[1]) for o in calls[0]["outputs"]]
    assert all(np.array_equal(o[0], s) for o, s in zip(calls[0]["outputs"], starts))
    chosen = int(np.argmin(nlml))
    assert np.array_equal(model.kernel.theta, starts[chosen]) and model._nlml == nlml[chosen]
    # The same values in this process
    main = [-model._log_marginal_likelihood(t) for t in starts]
    checks = {"actor_vs_main_process_nlml_max_rel": max(abs(a - b) / abs(b) for a, b in zip(nlml, main))}
    assert inducing_indices(model) == fixture_a_indices
    pooled = {
        "agox_call": "SparseGPR(... as fixture A ..., use_ray=True, n_optimize=8); np.random.seed(1202); model.train(training)",
        "inducing_indices": fixture_a_indices,
        "theta_starts": [s.tolist() for s in starts],
        "neg_lml": nlml,
        "chosen_index": chosen,
        "chosen_theta": model.kernel.theta.tolist(),
        "alpha_at_chosen_theta": model.alpha[:, 0].tolist(),
        "test_energy_pred_at_chosen_theta": [float(model.predict_energy(pristine(a))) for a in test],
    }

    # 2. AGOX's +inf: with a tiny noise, K~ is numerically indefinite at some θ; where
    # slogdet's sign comes out -1, _log_marginal_likelihood returns +inf, -LML = -inf is
    # the minimum and AGOX's serial search (use_ray=False) selects it. Find such a θ on a
    # fixed grid (long length scales, large amplitudes), then run AGOX's search from it.
    probe = global_model(Fingerprint(environment=env), forces=False, noise=1e-6)
    np.random.seed(INF_SEED_AGOX)
    with np.errstate(all="ignore"):
        train_quietly(probe, train)
    theta_inf = None
    for log_c in INF_GRID_LOG_C:
        for log_l in INF_GRID_LOG_L:
            if probe._log_marginal_likelihood(np.array([log_c, log_l])) == np.inf:
                theta_inf = [log_c, log_l]
                break
        if theta_inf is not None:
            break
    assert theta_inf is not None, "no theta on the grid makes AGOX's likelihood +inf"

    model = global_model(Fingerprint(environment=env), forces=False, noise=1e-6, n_optimize=3)
    model.kernel.theta = np.array(theta_inf)
    evaluated = []
    original_lml = model._log_marginal_likelihood

    def recording_lml(theta=None):
        value = original_lml(theta)
        evaluated.append((np.array(theta), value))
        return value

    model._log_marginal_likelihood = recording_lml
    np.random.seed(INF_SEED_AGOX)
    with np.errstate(all="ignore"):
        train_quietly(model, train)
    assert len(evaluated) == 3 and np.array_equal(evaluated[0][0], theta_inf)
    assert evaluated[0][1] == np.inf and model._nlml == -np.inf
    assert np.array_equal(model.kernel.theta, theta_inf)
    positive_definite = []
    for t, _ in evaluated:
        model.kernel.theta = t
        K_nm = model.kernel(model.Xn, model.Xm)
        Kmm_inv = model._solve(model.kernel(model.Xm) + model.unc_jitter * np.eye(len(model.Xm)))
        Kt = K_nm @ Kmm_inv @ K_nm.T + np.diag(1 / np.diag(model.sigma_inv))
        try:
            np.linalg.cholesky(Kt)
            positive_definite.append(True)
        except np.linalg.LinAlgError:
            positive_definite.append(False)
    inf_case = {
        "agox_call": "SparseGPR(... as fixture A ..., noise=1e-6, n_optimize=3, use_ray=False); kernel.theta = theta_starts[0]; "
        "np.random.seed(1205); model.train(training)  -> monte_carlo_hyperparameter_search",
        "sigma_E": 1e-6,
        "theta_starts": [t.tolist() for t, _ in evaluated],
        "lml": [jfloat(v) for _, v in evaluated],
        "neg_lml": [jfloat(-v) for _, v in evaluated],
        "K_tilde_cholesky_succeeds": positive_definite,
        "agox_chosen_theta": list(theta_inf),
        "agox_nlml": jfloat(model._nlml),
    }
    assert positive_definite[0] is False

    return {
        "meta": {
            "generated_by": "make_sparse_fixtures.py",
            "versions": VERSIONS,
            "training": "fixture A's 50 training structures (sparse_global.json)",
            "checks": checks,
        },
        "pooled": pooled,
        "inf_case": inf_case,
    }


# ---------------------------------------------------------------------------------------


def write(name, data):
    text = json.dumps(data, indent=None, separators=(",", ":"), allow_nan=False) + "\n"
    (HERE / name).write_text(text)
    print(f"wrote {name}: {len(text) / 1e6:.2f} MB; checks: {json.dumps(data['meta']['checks'])}", flush=True)


def main():
    # AGOX starts Ray whenever a GPR is built (RayPoolUser.__init__), even with
    # use_ray=False; keep its session files out of the repository.
    # Its workers are new Python processes: they get the ASE re-export from a
    # sitecustomize.py on their PYTHONPATH (inherited from this process).
    scratch = pathlib.Path(tempfile.mkdtemp(prefix="agox-sparse-"))
    atexit.register(shutil.rmtree, scratch, True)
    (scratch / "site").mkdir()
    (scratch / "site" / "sitecustomize.py").write_text(ASE_REEXPORT)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(scratch / "site"), os.environ.get("PYTHONPATH")]))
    with contextlib.redirect_stdout(io.StringIO()):
        configure_ray_pool(cpu_count=2, tmp_dir=str(scratch / "ray"))

    fixture_a = global_fixture(forces=False)
    write("sparse_global.json", fixture_a)
    fixture_b = global_fixture(forces=True)
    assert fixture_b["inducing_indices"] == fixture_a["inducing_indices"]
    assert fixture_b["training"] == fixture_a["training"] and fixture_b["test"][0]["positions"] == fixture_a["test"][0]["positions"]
    write("sparse_global_forces.json", fixture_b)
    sparse, fingerprint = local_fixture()
    write("sparse_local.json", sparse)
    write("simple_fingerprint.json", fingerprint)
    write("sparse_search.json", search_fixture(fixture_a["inducing_indices"]))


if __name__ == "__main__":
    main()
