#!/usr/bin/env python3
"""An i-PI client serving any ASE calculator through ASE's own SocketClient.

agox-rs starts one of these per worker and keeps it alive between evaluations:

    [calculator]
    kind = "socket"
    command = "python examples/clients/ase_client.py --unix {unix} --structure {structure} --calculator gfn2-xtb"

The i-PI protocol sends positions and the cell, not the elements: the client
learns them (and the periodicity) from --structure, which agox-rs writes before it
starts the client ({structure}). Every structure it is then sent must have the same
elements in the same order.

--calculator names the calculator:
    emt                    ASE's EMT
    gfn2-xtb, gfn1-xtb     tblite's TBLite (pip install tblite)
    MODULE:FACTORY         any callable returning an ASE calculator, e.g.
                           gpaw:GPAW, mace.calculators:mace_mp,
                           tblite.ase:TBLite, ase.calculators.emt:EMT
--kwargs takes the calculator's keyword arguments as JSON, e.g.
    --calculator gpaw:GPAW --kwargs '{"mode": "lcao", "basis": "dzp", "xc": "PBE", "txt": "gpaw.txt"}'
    --calculator gfn2-xtb --kwargs '{"electronic_temperature": 5000.0}'

Run it under mpirun for MPI-parallel calculators (GPAW): ASE's SocketClient talks
on rank 0 and broadcasts to the other ranks.
"""

import argparse
import importlib
import json
import os
import sys

from ase.calculators.socketio import SocketClient
from ase.io import read

SHORTCUTS = {
    "emt": ("ase.calculators.emt:EMT", {}),
    "gfn2-xtb": ("tblite.ase:TBLite", {"method": "GFN2-xTB", "verbosity": 0}),
    "gfn1-xtb": ("tblite.ase:TBLite", {"method": "GFN1-xTB", "verbosity": 0}),
}


def make_calculator(spec, kwargs):
    """The ASE calculator named by `spec` (a shortcut or MODULE:FACTORY)."""
    target, defaults = SHORTCUTS.get(spec, (spec, {}))
    module_name, sep, factory_name = target.partition(":")
    if not sep or not factory_name:
        known = ", ".join(SHORTCUTS)
        sys.exit(f"ase_client: --calculator {spec!r} is neither a shortcut ({known}) "
                 f"nor MODULE:FACTORY")
    factory = getattr(importlib.import_module(module_name), factory_name)
    return factory(**{**defaults, **kwargs})


def main():
    env = os.environ.get
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    # Defaults from the environment agox-rs sets, so a wrapper script may omit them.
    p.add_argument("--unix", default=env("AGOX_IPI_UNIX"),
                   help="socket name; connects to /tmp/ipi_NAME ({unix})")
    p.add_argument("--port", type=int, default=env("AGOX_IPI_PORT"), help="TCP port ({port})")
    p.add_argument("--host", default=env("AGOX_IPI_HOST", "localhost"), help="TCP host")
    p.add_argument("--structure", default=env("AGOX_IPI_STRUCTURE"),
                   help="the structure file agox-rs wrote ({structure})")
    p.add_argument("--calculator", default="emt")
    p.add_argument("--kwargs", default="{}", help="calculator keyword arguments (JSON)")
    args = p.parse_args()
    if (args.unix is None) == (args.port is None):
        sys.exit("ase_client: give exactly one of --unix NAME and --port PORT")
    if args.structure is None:
        sys.exit("ase_client: give --structure FILE")
    unix, port, structure = args.unix, args.port, args.structure

    atoms = read(structure)
    atoms.calc = make_calculator(args.calculator, json.loads(args.kwargs))
    print(f"ase_client: {args.calculator} for {atoms.get_chemical_formula()}, "
          f"{'unix ' + unix if unix else f'tcp {args.host}:{port}'}",
          file=sys.stderr, flush=True)
    client = SocketClient(host=args.host, port=port, unixsocket=unix)
    # A virial (hence stress) for periodic structures, as ASE's own launcher does.
    client.run(atoms, use_stress=bool(atoms.pbc.any()))


if __name__ == "__main__":
    main()
