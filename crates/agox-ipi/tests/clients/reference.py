"""References computed without agox-rs: reads a JSON request on stdin, prints JSON.

Request: {"calculator": "emt" | "gfn2-xtb", "mode": "direct" | "socketio",
          "structures": [{"numbers", "positions", "cell", "pbc"}, ...],
          "client": path of examples/clients/ase_client.py (socketio mode)}

direct:   one calculator object evaluates the structures in order (so a calculator
          that reuses its previous solution, as tblite does, sees the same history
          as a client that served the same sequence).
socketio: ASE's SocketIOCalculator (the server) drives the template client, which
          serves the calculator: the same client, ASE's server.

Output: [{"energy", "forces", "stress" (periodic only)}, ...], floats as repr.
"""

import json
import os
import subprocess
import sys
import tempfile

import numpy as np
from ase import Atoms
from ase.io import write


def make(name):
    if name == "emt":
        from ase.calculators.emt import EMT
        return EMT()
    if name == "gfn2-xtb":
        from tblite.ase import TBLite
        return TBLite(method="GFN2-xTB", verbosity=0)
    raise SystemExit(f"reference.py: unknown calculator {name}")


def main():
    req = json.load(sys.stdin)
    structures = [Atoms(numbers=s["numbers"], positions=s["positions"], cell=s["cell"],
                        pbc=s["pbc"]) for s in req["structures"]]
    out = []
    if req["mode"] == "direct":
        calc = make(req["calculator"])
        for atoms in structures:
            atoms.calc = calc
            out.append(result(atoms))
    else:
        from ase.calculators.socketio import SocketIOCalculator
        with tempfile.TemporaryDirectory() as tmp:
            name = f"agox_ref_{os.getpid()}"
            path = os.path.join(tmp, "structure.xyz")
            write(path, structures[0], format="extxyz")
            with SocketIOCalculator(unixsocket=name) as calc:
                client = subprocess.Popen([sys.executable, req["client"], "--unix", name,
                                           "--structure", path,
                                           "--calculator", req["calculator"]])
                for atoms in structures:
                    atoms.calc = calc
                    out.append(result(atoms))
                calc.server.protocol.end()
            client.wait(timeout=30)
    json.dump(out, sys.stdout)


def result(atoms):
    r = {"energy": float(atoms.get_potential_energy()),
         "forces": atoms.get_forces().tolist()}
    if atoms.pbc.any() and atoms.cell.rank == 3:
        r["stress"] = atoms.get_stress().tolist()
    return r


if __name__ == "__main__":
    main()
