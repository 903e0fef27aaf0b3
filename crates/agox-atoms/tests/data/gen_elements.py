# Generates the tables at the top of src/elements.rs from ASE (run with a Python that has ASE:
#   python3 crates/agox-atoms/tests/data/gen_elements.py > /tmp/tables.rs
# and paste over the generated part; the lookup functions and tests follow it).
import ase
from ase.data import atomic_masses, covalent_radii, chemical_symbols
out = []
out.append("//! Element data: chemical symbols, atomic masses and covalent radii for Z = 1..=118.")
out.append("//!")
out.append("//! The tables are generated from ASE %s (`ase.data.chemical_symbols`," % ase.__version__)
out.append("//! `ase.data.atomic_masses`, `ase.data.covalent_radii`) so that masses and radii are")
out.append("//! bit-for-bit the values ASE uses (each number is Python's shortest round-trip `repr`).")
out.append("//! Index 0 is ASE's dummy element `X` (mass 1.0, radius 0.2); it is kept in the tables")
out.append("//! so that `TABLE[z]` indexes by atomic number, but the lookup functions reject Z = 0.")
out.append("//! ASE has no covalent radius for Pa (91) and Bk..Og (97..=118) and uses its")
out.append("//! placeholder value 2.0 Å there; we keep that placeholder so results agree with ASE.")
out.append("")
out.append("/// Largest atomic number in the tables (oganesson).")
out.append("pub const MAX_Z: u8 = 118;")
out.append("")
out.append("/// Atomic numbers whose covalent radius in ASE is the placeholder `ase.data.missing` (2.0 Å).")
miss=[i for i in range(1,119) if i==91 or i>=97]
out.append("pub const PLACEHOLDER_RADIUS_Z: [u8; %d] = [%s];" % (len(miss), ", ".join(map(str,miss))))
out.append("")
out.append("/// Chemical symbols indexed by atomic number (index 0 is ASE's dummy `X`).")
out.append("pub const SYMBOLS: [&str; 119] = [")
for i in range(0,119,10):
    out.append("    " + " ".join('"%s",' % s for s in chemical_symbols[i:i+10]))
out.append("];")
out.append("")
def fl(x):
    r = repr(float(x))
    return r
out.append("/// Atomic masses (u) indexed by atomic number, exactly as `ase.data.atomic_masses`.")
out.append("pub const ATOMIC_MASSES: [f64; 119] = [")
for i in range(119):
    out.append("    %s, // %s" % (fl(atomic_masses[i]), chemical_symbols[i]))
out.append("];")
out.append("")
out.append("/// Covalent radii (Å) indexed by atomic number, exactly as `ase.data.covalent_radii`.")
out.append("pub const COVALENT_RADII: [f64; 119] = [")
for i in range(119):
    out.append("    %s, // %s" % (fl(covalent_radii[i]), chemical_symbols[i]))
out.append("];")
print("\n".join(out))
