#![allow(clippy::unwrap_used, clippy::expect_used)]

use agox_atoms::Atoms;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;
use crate::descriptor::{Descriptor, DescriptorError, FeatureSet};

/// A random compact Au8Cu4 cluster in a 12 Å box (what GOFEE sees).
pub(crate) fn au8cu4(seed: u64) -> Atoms {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut positions: Vec<[f64; 3]> = vec![[6.0, 6.0, 6.0]];
    while positions.len() < 12 {
        let base = positions[rng.gen_range(0..positions.len())];
        let dir: [f64; 3] = std::array::from_fn(|_| rng.gen_range(-1.0..1.0));
        let n = (dir[0] * dir[0] + dir[1] * dir[1] + dir[2] * dir[2]).sqrt();
        if !(0.2..=1.0).contains(&n) {
            continue;
        }
        let d = rng.gen_range(2.5..2.9);
        let p = [
            base[0] + d * dir[0] / n,
            base[1] + d * dir[1] / n,
            base[2] + d * dir[2] / n,
        ];
        let ok = positions.iter().all(|q| {
            let r2: f64 = (0..3).map(|k| (p[k] - q[k]).powi(2)).sum();
            r2 > 2.3 * 2.3
        });
        if ok {
            positions.push(p);
        }
    }
    let mut numbers = vec![79u8; 8];
    numbers.extend([29u8; 4]);
    Atoms::new(numbers, positions).unwrap().with_cell(
        [[12.0, 0.0, 0.0], [0.0, 12.0, 0.0], [0.0, 0.0, 12.0]],
        [false; 3],
    )
}

fn features(fp: &Fingerprint, a: &Atoms, gradient: bool) -> FeatureSet {
    let mut out = FeatureSet::new();
    fp.compute(a, gradient, &mut FingerprintWorkspace::default(), &mut out)
        .unwrap();
    out
}

#[test]
fn au8cu4_has_270_features_radial_first() {
    let a = au8cu4(1);
    let fp = Fingerprint::for_structure(FingerprintParams::default(), &a).unwrap();
    assert_eq!(fp.n_features(), 270);
    assert_eq!(fp.bond_types_2body().1, 3);
    assert_eq!(fp.bond_types_3body().1, 6);
    let radial_only = Fingerprint::for_structure(
        FingerprintParams {
            use_angular: false,
            ..Default::default()
        },
        &a,
    )
    .unwrap();
    let (full, radial) = (features(&fp, &a, false), features(&radial_only, &a, false));
    assert_eq!(radial.features(), &full.features()[..90]);
}

#[test]
fn features_are_invariant_and_gradients_sum_to_zero() {
    let a = au8cu4(2);
    let fp = Fingerprint::for_structure(FingerprintParams::default(), &a).unwrap();
    let base = features(&fp, &a, true);
    // Translation, and swapping two atoms of the same species.
    let mut b = a.clone();
    b.translate([0.3, -0.2, 0.1]);
    b.positions.swap(0, 5);
    let moved = features(&fp, &b, false);
    for (x, y) in base.features().iter().zip(moved.features()) {
        assert!((x - y).abs() < 1e-12, "{x} {y}");
    }
    // A translation changes nothing, so the gradient summed over atoms vanishes.
    for xyz in 0..3 {
        for f in 0..fp.n_features() {
            let s: f64 = (0..a.len())
                .map(|atom| base.gradient_row(0, atom, xyz)[f])
                .sum();
            assert!(s.abs() < 1e-10, "feature {f} xyz {xyz}: {s:e}");
        }
    }
}

#[test]
fn periodic_bulk_gradient_matches_finite_differences() {
    let mut a = Atoms::fcc_cubic(29, 3.61, [1, 1, 2]);
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for p in a.positions.iter_mut() {
        for x in p.iter_mut() {
            *x += rng.gen_range(-0.1..0.1);
        }
    }
    let fp = Fingerprint::for_structure(FingerprintParams::default(), &a).unwrap();
    let g = features(&fp, &a, true);
    let h = 1e-5;
    for atom in [0, 5] {
        for x in 0..3 {
            let mut p = a.clone();
            p.positions[atom][x] += h;
            let fp_plus = features(&fp, &p, false);
            p.positions[atom][x] -= 2.0 * h;
            let fp_minus = features(&fp, &p, false);
            for f in 0..fp.n_features() {
                let fd = (fp_plus.features()[f] - fp_minus.features()[f]) / (2.0 * h);
                let an = g.gradient_row(0, atom, x)[f];
                assert!(
                    (fd - an).abs() < 1e-7 * an.abs().max(1.0),
                    "atom {atom} x {x} f {f}: {an} vs {fd}"
                );
            }
        }
    }
}

#[test]
fn a_structure_unlike_the_environment_is_refused() {
    let a = au8cu4(4);
    let fp = Fingerprint::for_structure(FingerprintParams::default(), &a).unwrap();
    let mut ws = FingerprintWorkspace::default();
    let mut out = FeatureSet::new();
    let mut b = a.clone();
    b.numbers[0] = 29;
    let err = fp.compute(&b, false, &mut ws, &mut out).unwrap_err();
    assert!(
        err.to_string().contains("composition Au7Cu5") && err.to_string().contains("Au8Cu4"),
        "{err}"
    );
    let mut c = a.clone();
    c.pbc = [true; 3];
    assert!(matches!(
        fp.compute(&c, false, &mut ws, &mut out),
        Err(DescriptorError::Mismatch { .. })
    ));
    let mut d = a.clone();
    d.positions[3][1] = f64::NAN;
    assert!(matches!(
        fp.compute(&d, false, &mut ws, &mut out),
        Err(DescriptorError::Geometry { .. })
    ));
}

#[test]
fn bad_settings_are_refused_with_their_name() {
    let a = au8cu4(5);
    for (params, name) in [
        (
            FingerprintParams {
                rc1: 0.0,
                ..Default::default()
            },
            "rc1",
        ),
        (
            FingerprintParams {
                sigma2: 3.0,
                ..Default::default()
            },
            "sigma2",
        ),
        (
            FingerprintParams {
                nbins: 0,
                ..Default::default()
            },
            "nbins",
        ),
        (
            FingerprintParams {
                gamma: -1.0,
                ..Default::default()
            },
            "gamma",
        ),
    ] {
        let err = Fingerprint::for_structure(params, &a).unwrap_err();
        assert!(err.to_string().contains(name), "{err}");
    }
    let no_cell = Atoms {
        cell: [[0.0; 3]; 3],
        ..a
    };
    let err = Fingerprint::for_structure(FingerprintParams::default(), &no_cell).unwrap_err();
    assert!(err.to_string().contains("volume"), "{err}");
}

#[test]
fn serialized_form_is_the_spec_and_round_trips() {
    let a = au8cu4(6);
    let fp = Fingerprint::for_structure(FingerprintParams::default(), &a).unwrap();
    let bytes = rmp_serde::to_vec(&fp).unwrap();
    let back: Fingerprint = rmp_serde::from_slice(&bytes).unwrap();
    assert_eq!(back, fp);
    assert_eq!(features(&back, &a, true), features(&fp, &a, true));
    let mut bad = fp.spec().clone();
    bad.volume = -1.0;
    assert!(rmp_serde::from_slice::<Fingerprint>(&rmp_serde::to_vec(&bad).unwrap()).is_err());
}
