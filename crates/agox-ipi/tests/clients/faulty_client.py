"""A test client: ASE's SocketClient serving ASE's EMT, which misbehaves on its
Nth evaluation in one chosen way. With --once FILE it misbehaves only if FILE does
not exist yet (and creates it), so its replacement behaves.

    --crash-on N     SIGKILL itself during evaluation N
    --fail-on N      report an error on stderr and exit with status 3
    --close-on N     report an error, close the socket, keep running
    --hang-on N      never finish evaluation N
    --garbage-on N   answer STATUS with an unknown header instead of HAVEDATA
    --exit-at-start  report an error and exit 2 before connecting
    --needinit       start in state NEEDINIT (the server must send INIT)
    --sleep S        take S seconds per evaluation
"""

import argparse
import os
import signal
import sys
import time

from ase.calculators.emt import EMT
from ase.calculators.socketio import SocketClient
from ase.io import read


class Faulty(EMT):
    def __init__(self, args, client_ref):
        super().__init__()
        self.args = args
        self.count = 0
        self.client_ref = client_ref

    def armed(self, n):
        if n is None or self.count != n:
            return False
        if self.args.once:
            if os.path.exists(self.args.once):
                return False
            open(self.args.once, "w").close()
        return True

    def calculate(self, atoms=None, properties=("energy",), system_changes=()):
        self.count += 1
        if self.args.sleep:
            time.sleep(self.args.sleep)
        if self.armed(self.args.crash_on):
            print(f"faulty_client: crashing in evaluation {self.count}", file=sys.stderr, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        if self.armed(self.args.fail_on):
            print(f"faulty_client: SCF did not converge in evaluation {self.count}",
                  file=sys.stderr, flush=True)
            sys.exit(3)
        if self.armed(self.args.close_on):
            print(f"faulty_client: giving up on evaluation {self.count}", file=sys.stderr, flush=True)
            self.client_ref[0].protocol.socket.close()
            time.sleep(3600)
        if self.armed(self.args.hang_on):
            print(f"faulty_client: hanging in evaluation {self.count}", file=sys.stderr, flush=True)
            time.sleep(3600)
        if self.armed(self.args.garbage_on):
            # Where the server awaits the answer to STATUS.
            self.client_ref[0].protocol.socket.sendall(b"GARBAGE     ")
        super().calculate(atoms, properties, system_changes)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--unix")
    p.add_argument("--structure", required=True)
    for flag in ("crash", "fail", "close", "hang", "garbage"):
        p.add_argument(f"--{flag}-on", type=int)
    p.add_argument("--once")
    p.add_argument("--exit-at-start", action="store_true")
    p.add_argument("--needinit", action="store_true")
    p.add_argument("--sleep", type=float, default=0.0)
    args = p.parse_args()
    if args.exit_at_start:
        print("faulty_client: license server unreachable", file=sys.stderr, flush=True)
        sys.exit(2)
    atoms = read(args.structure)
    client_ref = [None]
    atoms.calc = Faulty(args, client_ref)
    client = SocketClient(unixsocket=args.unix)
    client_ref[0] = client
    if args.needinit:
        client.state = "NEEDINIT"
    client.run(atoms, use_stress=bool(atoms.pbc.any()))


if __name__ == "__main__":
    main()
