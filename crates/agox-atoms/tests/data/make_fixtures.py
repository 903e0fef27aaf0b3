"""Regenerate the ASE-written fixtures in this folder.

Run with a Python that has ASE (ASE 3.29.0 was used: `pip install ase==3.29.0`):
    python3 crates/agox-atoms/tests/data/make_fixtures.py
Every structure comes from a fixed numpy seed, so re-running reproduces the files.
"""
import json
import os

import numpy as np
import ase
from ase import Atoms
from ase.build import bulk, fcc111
from ase.calculators.emt import EMT
from ase.constraints import FixAtoms
from ase.data import atomic_masses, chemical_symbols, covalent_radii
from ase.io import write

HERE = os.path.dirname(os.path.abspath(__file__))


def path(name):
    return os.path.join(HERE, name)


def cluster(rng, n, symbols):
    pos = [np.zeros(3)]
    while len(pos) < n:
        p = pos[rng.integers(len(pos))] + rng.normal(size=3) * 1.6
        if all(np.linalg.norm(p - q) > 2.2 for q in pos):
            pos.append(p)
    return Atoms(symbols[:n], positions=pos)


def main():
    # --- element tables -------------------------------------------------------
    with open(path("ase_elements.json"), "w") as f:
        json.dump({"ase_version": ase.__version__,
                   "symbols": list(chemical_symbols),
                   "masses": [float(x) for x in atomic_masses],
                   "covalent_radii": [float(x) for x in covalent_radii]}, f)

    rng = np.random.default_rng(7)

    # --- extxyz: periodic cell with EMT energy/forces/stress, info keys, fixed atoms
    a = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 1, 1))
    a.symbols[[1, 5]] = "Au"
    a.rattle(0.05, seed=1)
    a.cell[1] += [0.3, 0.0, 0.0]
    a.set_constraint(FixAtoms(indices=[0, 3]))
    a.set_tags(np.arange(len(a)) % 3)
    a.info.update({"step": 7, "temperature": 300.5, "converged": True,
                   "label": "rattled CuAu cell", "vec": np.array([1.5, -2.25, 1e-20]),
                   "ids": np.array([3, 1, 4]), "name": "plain"})
    a.calc = EMT()
    a.get_potential_energy()
    a.get_stress()
    write(path("ase_periodic.extxyz"), a, format="extxyz")

    # --- extxyz: multi-frame with different sizes and energies ----------------
    frames = []
    for k, n in enumerate([3, 5, 4]):
        c = cluster(rng, n, ["Pt", "Au", "Cu", "Ag", "Pd"])
        c.center(vacuum=5.0)
        c.info["iteration"] = k
        c.calc = EMT()
        c.get_potential_energy()
        frames.append(c)
    write(path("ase_multi.extxyz"), frames, format="extxyz")

    # --- extxyz: bare non-periodic cluster, no cell, no calculator -------------
    c = cluster(rng, 6, ["Au"] * 6)
    write(path("ase_cluster.extxyz"), c, format="extxyz")

    # --- extxyz: slab, pbc T T F, per-atom energies from EMT --------------------
    s = fcc111("Au", (2, 2, 2), vacuum=6.0)
    s.set_constraint(FixAtoms(indices=[0, 1, 2, 3]))
    s.calc = EMT()
    s.get_potential_energies()
    s.get_forces()
    write(path("ase_slab.extxyz"), s, format="extxyz")

    # --- geometry reference values ---------------------------------------------
    cases = []
    skew = np.array([[4.0, 0.0, 0.0], [9.5, 3.5, 0.0], [-6.1, 7.3, 4.2]])
    g = Atoms("Cu4AuPt", positions=rng.uniform(-8, 12, size=(6, 3)), cell=skew, pbc=True)
    cases.append(("skewed_bulk", g))
    s2 = fcc111("Pt", (2, 2, 3), vacuum=7.0)
    s2.positions += rng.normal(scale=0.4, size=s2.positions.shape)
    s2.positions[0] += s2.cell[0] * 3 - s2.cell[1] * 2
    cases.append(("slab", s2))
    cl = cluster(rng, 7, ["Cu", "H", "C", "Ag", "H", "Au", "C"])
    cases.append(("cluster", cl))
    out = []
    for name, at in cases:
        e = {"name": name, "numbers": at.numbers.tolist(),
             "positions": at.positions.tolist(), "cell": at.cell.tolist(),
             "pbc": at.pbc.tolist(), "formula": at.get_chemical_formula(),
             "volume": float(abs(np.linalg.det(at.cell))) if at.cell.rank == 3 else 0.0,
             "distances_mic": at.get_all_distances(mic=True).tolist(),
             "distances": at.get_all_distances(mic=False).tolist()}
        if at.cell.rank == 3:
            e["scaled"] = at.get_scaled_positions(wrap=False).tolist()
        w = at.copy()
        w.wrap()
        e["wrapped"] = w.positions.tolist()
        c0 = at.copy()
        c0.center()
        e["centered"] = c0.positions.tolist()
        c1 = at.copy()
        c1.center(vacuum=4.5)
        e["centered_vacuum_positions"] = c1.positions.tolist()
        e["centered_vacuum_cell"] = c1.cell.tolist()
        out.append(e)
    with open(path("ase_geometry.json"), "w") as f:
        json.dump({"ase_version": ase.__version__, "cases": out}, f)


def read_back():
    """What ASE itself reads from each extxyz fixture, for the Rust tests to match."""
    from ase.constraints import FixAtoms
    from ase.io import read
    out = {}
    for name in ["ase_periodic.extxyz", "ase_multi.extxyz", "ase_cluster.extxyz",
                 "ase_slab.extxyz"]:
        frames = []
        for at in read(path(name), index=":", format="extxyz"):
            fixed = []
            for c in at.constraints:
                if isinstance(c, FixAtoms):
                    fixed += [int(i) for i in c.index]
            info = {}
            for k, v in at.info.items():
                if isinstance(v, (bool, np.bool_)):
                    info[k] = {"Bool": bool(v)}
                elif isinstance(v, (int, np.integer)):
                    info[k] = {"Int": int(v)}
                elif isinstance(v, (float, np.floating)):
                    info[k] = {"Float": float(v)}
                elif isinstance(v, str):
                    info[k] = {"Str": v}
                elif isinstance(v, np.ndarray) and v.dtype.kind == "i":
                    info[k] = {"Ints": v.tolist()}
                elif isinstance(v, np.ndarray) and v.dtype.kind == "f":
                    info[k] = {"Floats": v.tolist()}
            f = {"numbers": at.numbers.tolist(), "positions": at.positions.tolist(),
                 "cell": at.cell.tolist(), "pbc": at.pbc.tolist(), "fixed": sorted(fixed),
                 "info": info,
                 "arrays": {k: v.tolist() for k, v in at.arrays.items()
                            if k not in ("numbers", "positions")}}
            if at.calc is not None:
                r = at.calc.results
                for k in ("energy", "free_energy"):
                    if k in r:
                        f[k] = float(r[k])
                if "forces" in r:
                    f["forces"] = r["forces"].tolist()
                if "stress" in r:
                    f["stress"] = r["stress"].tolist()
                if "energies" in r:
                    f["energies"] = r["energies"].tolist()
            frames.append(f)
        out[name] = frames
    # Floats as repr() strings: serde_json's default float parser may be 1 ulp off,
    # while Rust's str::parse::<f64> is correctly rounded, so the test compares bits.
    def exact(x):
        if isinstance(x, float):
            return repr(x)
        if isinstance(x, list):
            return [exact(v) for v in x]
        if isinstance(x, dict):
            return {k: exact(v) for k, v in x.items()}
        return x

    with open(path("ase_read_back.json"), "w") as fh:
        json.dump(exact(out), fh)


if __name__ == "__main__":
    main()
    read_back()
