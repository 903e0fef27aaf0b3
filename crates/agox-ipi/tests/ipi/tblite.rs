//! tblite's GFN2-xTB through the template client equals tblite called directly.

use agox_atoms::{Atoms, Calculator};
use agox_ipi::SocketCalculator;

use crate::support::{
    ase_command, assert_agree, config, rattled, reference, workdir, Tolerance, Traces,
};

/// A cyclic water trimer (Å).
fn water_trimer() -> Atoms {
    Atoms::from_formula(
        "OH2OH2OH2",
        vec![
            [0.000, 1.600, 0.000],
            [0.000, 0.640, 0.050],
            [0.800, 1.950, 0.300],
            [1.390, -0.800, 0.000],
            [0.550, -1.250, 0.200],
            [1.900, -0.700, 0.800],
            [-1.390, -0.800, 0.000],
            [-1.450, 0.150, 0.100],
            [-2.250, -1.150, 0.250],
        ],
    )
    .unwrap()
}

#[test]
fn gfn2_xtb_water_trimer_matches_tblite_in_python() {
    let structures = vec![
        water_trimer(),
        rattled(&water_trimer(), 0.05, 1),
        rattled(&water_trimer(), 0.05, 2),
    ];
    let want = reference("gfn2-xtb", "direct", &structures);
    let dir = workdir();
    let mut calc = SocketCalculator::new(config(ase_command("gfn2-xtb"), dir.path())).unwrap();
    for (i, (atoms, want)) in structures.iter().zip(&want).enumerate() {
        let got = calc.calculate(atoms, false).unwrap();
        assert_agree(
            &format!("structure {i}"),
            (got.energy, &got.forces),
            (want.energy, &want.forces),
            Tolerance::Absolute(1e-8),
        );
    }
    // GFN2-xTB is not EMT: the numbers are the tight-binding ones.
    assert!(want[0].energy < -400.0, "{}", want[0].energy);
    let traces = Traces::of(calc.client());
    drop(calc);
    traces.assert_gone();
}
