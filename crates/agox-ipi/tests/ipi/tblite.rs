//! tblite's GFN2-xTB through the template client equals tblite called directly.

use agox_atoms::Calculator;
use agox_ipi::SocketCalculator;

use crate::support::{
    ase_command, assert_agree, config, rattled, reference, water_trimer, workdir, Tolerance, Traces,
};

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
