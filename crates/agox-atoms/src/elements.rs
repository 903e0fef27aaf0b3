//! Element data: chemical symbols, atomic masses and covalent radii for Z = 1..=118.
//!
//! The tables are generated from ASE 3.29.0 (`ase.data.chemical_symbols`,
//! `ase.data.atomic_masses`, `ase.data.covalent_radii`) so that masses and radii are
//! bit-for-bit the values ASE uses (each number is Python's shortest round-trip `repr`).
//! Index 0 is ASE's dummy element `X` (mass 1.0, radius 0.2); it is kept in the tables
//! so that `TABLE[z]` indexes by atomic number, but the lookup functions reject Z = 0.
//! ASE has no covalent radius for Pa (91) and Bk..Og (97..=118) and uses its
//! placeholder value 2.0 Å there; we keep that placeholder so results agree with ASE.

/// Largest atomic number in the tables (oganesson).
pub const MAX_Z: u8 = 118;

/// Atomic numbers whose covalent radius in ASE is the placeholder `ase.data.missing` (2.0 Å).
pub const PLACEHOLDER_RADIUS_Z: [u8; 23] = [
    91, 97, 98, 99, 100, 101, 102, 103, 104, 105, 106, 107, 108, 109, 110, 111, 112, 113, 114, 115,
    116, 117, 118,
];

/// Chemical symbols indexed by atomic number (index 0 is ASE's dummy `X`).
pub const SYMBOLS: [&str; 119] = [
    "X", "H", "He", "Li", "Be", "B", "C", "N", "O", "F", "Ne", "Na", "Mg", "Al", "Si", "P", "S",
    "Cl", "Ar", "K", "Ca", "Sc", "Ti", "V", "Cr", "Mn", "Fe", "Co", "Ni", "Cu", "Zn", "Ga", "Ge",
    "As", "Se", "Br", "Kr", "Rb", "Sr", "Y", "Zr", "Nb", "Mo", "Tc", "Ru", "Rh", "Pd", "Ag", "Cd",
    "In", "Sn", "Sb", "Te", "I", "Xe", "Cs", "Ba", "La", "Ce", "Pr", "Nd", "Pm", "Sm", "Eu", "Gd",
    "Tb", "Dy", "Ho", "Er", "Tm", "Yb", "Lu", "Hf", "Ta", "W", "Re", "Os", "Ir", "Pt", "Au", "Hg",
    "Tl", "Pb", "Bi", "Po", "At", "Rn", "Fr", "Ra", "Ac", "Th", "Pa", "U", "Np", "Pu", "Am", "Cm",
    "Bk", "Cf", "Es", "Fm", "Md", "No", "Lr", "Rf", "Db", "Sg", "Bh", "Hs", "Mt", "Ds", "Rg", "Cn",
    "Nh", "Fl", "Mc", "Lv", "Ts", "Og",
];

/// Atomic masses (u) indexed by atomic number, exactly as `ase.data.atomic_masses`.
pub const ATOMIC_MASSES: [f64; 119] = [
    1.0,          // X
    1.008,        // H
    4.002602,     // He
    6.94,         // Li
    9.0121831,    // Be
    10.81,        // B
    12.011,       // C
    14.007,       // N
    15.999,       // O
    18.998403163, // F
    20.1797,      // Ne
    22.98976928,  // Na
    24.305,       // Mg
    26.9815385,   // Al
    28.085,       // Si
    30.973761998, // P
    32.06,        // S
    35.45,        // Cl
    39.948,       // Ar
    39.0983,      // K
    40.078,       // Ca
    44.955908,    // Sc
    47.867,       // Ti
    50.9415,      // V
    51.9961,      // Cr
    54.938044,    // Mn
    55.845,       // Fe
    58.933194,    // Co
    58.6934,      // Ni
    63.546,       // Cu
    65.38,        // Zn
    69.723,       // Ga
    72.63,        // Ge
    74.921595,    // As
    78.971,       // Se
    79.904,       // Br
    83.798,       // Kr
    85.4678,      // Rb
    87.62,        // Sr
    88.90584,     // Y
    91.224,       // Zr
    92.90637,     // Nb
    95.95,        // Mo
    97.90721,     // Tc
    101.07,       // Ru
    102.9055,     // Rh
    106.42,       // Pd
    107.8682,     // Ag
    112.414,      // Cd
    114.818,      // In
    118.71,       // Sn
    121.76,       // Sb
    127.6,        // Te
    126.90447,    // I
    131.293,      // Xe
    132.90545196, // Cs
    137.327,      // Ba
    138.90547,    // La
    140.116,      // Ce
    140.90766,    // Pr
    144.242,      // Nd
    144.91276,    // Pm
    150.36,       // Sm
    151.964,      // Eu
    157.25,       // Gd
    158.92535,    // Tb
    162.5,        // Dy
    164.93033,    // Ho
    167.259,      // Er
    168.93422,    // Tm
    173.054,      // Yb
    174.9668,     // Lu
    178.49,       // Hf
    180.94788,    // Ta
    183.84,       // W
    186.207,      // Re
    190.23,       // Os
    192.217,      // Ir
    195.084,      // Pt
    196.966569,   // Au
    200.592,      // Hg
    204.38,       // Tl
    207.2,        // Pb
    208.9804,     // Bi
    208.98243,    // Po
    209.98715,    // At
    222.01758,    // Rn
    223.01974,    // Fr
    226.02541,    // Ra
    227.02775,    // Ac
    232.0377,     // Th
    231.03588,    // Pa
    238.02891,    // U
    237.04817,    // Np
    244.06421,    // Pu
    243.06138,    // Am
    247.07035,    // Cm
    247.07031,    // Bk
    251.07959,    // Cf
    252.083,      // Es
    257.09511,    // Fm
    258.09843,    // Md
    259.101,      // No
    262.11,       // Lr
    267.122,      // Rf
    268.126,      // Db
    271.134,      // Sg
    270.133,      // Bh
    269.1338,     // Hs
    278.156,      // Mt
    281.165,      // Ds
    281.166,      // Rg
    285.177,      // Cn
    286.182,      // Nh
    289.19,       // Fl
    289.194,      // Mc
    293.204,      // Lv
    293.208,      // Ts
    294.214,      // Og
];

/// Covalent radii (Å) indexed by atomic number, exactly as `ase.data.covalent_radii`.
pub const COVALENT_RADII: [f64; 119] = [
    0.2,  // X
    0.31, // H
    0.28, // He
    1.28, // Li
    0.96, // Be
    0.84, // B
    0.76, // C
    0.71, // N
    0.66, // O
    0.57, // F
    0.58, // Ne
    1.66, // Na
    1.41, // Mg
    1.21, // Al
    1.11, // Si
    1.07, // P
    1.05, // S
    1.02, // Cl
    1.06, // Ar
    2.03, // K
    1.76, // Ca
    1.7,  // Sc
    1.6,  // Ti
    1.53, // V
    1.39, // Cr
    1.39, // Mn
    1.32, // Fe
    1.26, // Co
    1.24, // Ni
    1.32, // Cu
    1.22, // Zn
    1.22, // Ga
    1.2,  // Ge
    1.19, // As
    1.2,  // Se
    1.2,  // Br
    1.16, // Kr
    2.2,  // Rb
    1.95, // Sr
    1.9,  // Y
    1.75, // Zr
    1.64, // Nb
    1.54, // Mo
    1.47, // Tc
    1.46, // Ru
    1.42, // Rh
    1.39, // Pd
    1.45, // Ag
    1.44, // Cd
    1.42, // In
    1.39, // Sn
    1.39, // Sb
    1.38, // Te
    1.39, // I
    1.4,  // Xe
    2.44, // Cs
    2.15, // Ba
    2.07, // La
    2.04, // Ce
    2.03, // Pr
    2.01, // Nd
    1.99, // Pm
    1.98, // Sm
    1.98, // Eu
    1.96, // Gd
    1.94, // Tb
    1.92, // Dy
    1.92, // Ho
    1.89, // Er
    1.9,  // Tm
    1.87, // Yb
    1.87, // Lu
    1.75, // Hf
    1.7,  // Ta
    1.62, // W
    1.51, // Re
    1.44, // Os
    1.41, // Ir
    1.36, // Pt
    1.36, // Au
    1.32, // Hg
    1.45, // Tl
    1.46, // Pb
    1.48, // Bi
    1.4,  // Po
    1.5,  // At
    1.5,  // Rn
    2.6,  // Fr
    2.21, // Ra
    2.15, // Ac
    2.06, // Th
    2.0,  // Pa
    1.96, // U
    1.9,  // Np
    1.87, // Pu
    1.8,  // Am
    1.69, // Cm
    2.0,  // Bk
    2.0,  // Cf
    2.0,  // Es
    2.0,  // Fm
    2.0,  // Md
    2.0,  // No
    2.0,  // Lr
    2.0,  // Rf
    2.0,  // Db
    2.0,  // Sg
    2.0,  // Bh
    2.0,  // Hs
    2.0,  // Mt
    2.0,  // Ds
    2.0,  // Rg
    2.0,  // Cn
    2.0,  // Nh
    2.0,  // Fl
    2.0,  // Mc
    2.0,  // Lv
    2.0,  // Ts
    2.0,  // Og
];

/// Chemical symbol of atomic number `z`, or `None` outside 1..=118.
pub fn symbol(z: u8) -> Option<&'static str> {
    if (1..=MAX_Z).contains(&z) {
        Some(SYMBOLS[usize::from(z)])
    } else {
        None
    }
}

/// Atomic number of a chemical symbol (case-sensitive, as ASE: `"Au"`, not `"AU"`),
/// or `None` when the symbol is not an element. The dummy `X` is rejected.
pub fn number(symbol: &str) -> Option<u8> {
    // 118 entries: a linear scan is fast enough and keeps the table the single source.
    SYMBOLS
        .iter()
        .enumerate()
        .skip(1)
        .find(|(_, s)| **s == symbol)
        .and_then(|(z, _)| u8::try_from(z).ok())
}

/// Atomic number of a symbol written in any letter case (`"AU"`, `"au"` → 79), the way
/// ASE's extxyz reader capitalizes species before looking them up.
pub fn number_ignore_case(symbol: &str) -> Option<u8> {
    let mut chars = symbol.chars();
    let first = chars.next()?;
    let canonical: String = first
        .to_uppercase()
        .chain(chars.flat_map(|c| c.to_lowercase()))
        .collect();
    number(&canonical)
}

/// Standard atomic mass (u) of element `z` as ASE has it, or `None` outside 1..=118.
pub fn mass(z: u8) -> Option<f64> {
    symbol(z).map(|_| ATOMIC_MASSES[usize::from(z)])
}

/// Covalent radius (Å) of element `z` as ASE has it, or `None` outside 1..=118.
///
/// For the elements listed in [`PLACEHOLDER_RADIUS_Z`] this is ASE's placeholder 2.0 Å.
pub fn covalent_radius(z: u8) -> Option<f64> {
    symbol(z).map(|_| COVALENT_RADII[usize::from(z)])
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn symbols_and_numbers_round_trip() {
        for z in 1..=MAX_Z {
            let s = symbol(z).expect("valid z");
            assert_eq!(number(s), Some(z), "{s}");
            assert_eq!(number_ignore_case(&s.to_uppercase()), Some(z), "{s}");
            assert_eq!(number_ignore_case(&s.to_lowercase()), Some(z), "{s}");
        }
        assert_eq!(symbol(0), None);
        assert_eq!(symbol(119), None);
        assert_eq!(number("X"), None);
        assert_eq!(number("AU"), None);
        assert_eq!(number(""), None);
        assert_eq!(number_ignore_case(""), None);
        assert_eq!(number("Uuo"), None);
    }

    #[test]
    fn values_match_ase() {
        // Values printed by ASE 3.29.0: ase.data.atomic_masses / covalent_radii.
        assert_eq!(symbol(79), Some("Au"));
        assert_eq!(number("Cu"), Some(29));
        assert_eq!(mass(1), Some(1.008));
        assert_eq!(mass(29), Some(63.546));
        assert_eq!(mass(79), Some(196.966569));
        assert_eq!(mass(78), Some(195.084));
        assert_eq!(mass(94), Some(244.06421));
        assert_eq!(covalent_radius(1), Some(0.31));
        assert_eq!(covalent_radius(6), Some(0.76));
        assert_eq!(covalent_radius(29), Some(1.32));
        assert_eq!(covalent_radius(79), Some(1.36));
        assert_eq!(covalent_radius(91), Some(2.0));
        assert_eq!(mass(0), None);
        assert_eq!(covalent_radius(200), None);
    }
}
