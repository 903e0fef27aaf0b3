//! Property test: any frame we can write reads back identically (bit-for-bit).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use agox_atoms::extxyz::{self, Column, ColumnData, Frame};
use agox_atoms::{Atoms, InfoValue};
use proptest::prelude::*;

fn finite() -> impl Strategy<Value = f64> {
    prop::num::f64::ANY.prop_filter("finite", |x| x.is_finite())
}

fn vec3() -> impl Strategy<Value = [f64; 3]> {
    prop::array::uniform3(finite())
}

/// Strings that stay strings when read back (ASE types "12" or "T" as number/bool):
/// they start with 's'; the rest may hold spaces, quotes, backslashes, brackets, '='.
fn info_string() -> impl Strategy<Value = String> {
    "s[a-zA-Z0-9 _\"'\\\\{}\\[\\]=,.:-]{0,12}"
}

fn info_value() -> impl Strategy<Value = InfoValue> {
    prop_oneof![
        any::<i64>().prop_map(InfoValue::Int),
        finite().prop_map(InfoValue::Float),
        Just(InfoValue::Float(f64::INFINITY)),
        any::<bool>().prop_map(InfoValue::Bool),
        info_string().prop_map(InfoValue::Str),
        prop::collection::vec(finite(), 2..5).prop_map(InfoValue::Floats),
        prop::collection::vec(any::<i64>(), 2..5).prop_map(InfoValue::Ints),
        prop::collection::vec(any::<bool>(), 2..5).prop_map(InfoValue::Bools),
    ]
}

fn info_key() -> impl Strategy<Value = String> {
    "[a-z][a-zA-Z0-9_]{0,8}".prop_filter("reserved", |k| {
        !matches!(
            k.as_str(),
            "lattice" | "properties" | "pbc" | "energy" | "stress" | "virial" | "uid"
        )
    })
}

fn column(n: usize, name: String) -> impl Strategy<Value = Column> {
    (1usize..4).prop_flat_map(move |ncols| {
        let len = n * ncols;
        let name = name.clone();
        prop_oneof![
            prop::collection::vec(finite(), len).prop_map(ColumnData::Real),
            prop::collection::vec(any::<i64>(), len).prop_map(ColumnData::Int),
            prop::collection::vec(any::<bool>(), len).prop_map(ColumnData::Bool),
            prop::collection::vec("[A-Za-z0-9_.+-]{1,6}", len).prop_map(ColumnData::Str),
        ]
        .prop_map(move |data| Column {
            name: name.clone(),
            ncols,
            data,
        })
    })
}

fn frame() -> impl Strategy<Value = Frame> {
    (0usize..6).prop_flat_map(|n| {
        (
            prop::collection::vec(1u8..=118, n),
            prop::collection::vec(vec3(), n),
            prop_oneof![Just([[0.0; 3]; 3]), prop::array::uniform3(vec3())],
            prop::array::uniform3(any::<bool>()),
            prop::collection::vec(any::<bool>(), n),
            prop::option::of(finite()),
            prop::option::of(prop::collection::vec(vec3(), n)),
            prop::option::of(prop::array::uniform6(finite())),
            prop::collection::btree_map(info_key(), info_value(), 0..5),
            prop::collection::vec(0usize..4, 0..3).prop_flat_map(move |ids| {
                let mut ids = ids;
                ids.sort_unstable();
                ids.dedup();
                ids.into_iter()
                    .map(|i| column(n, format!("col{i}")))
                    .collect::<Vec<_>>()
            }),
        )
            .prop_map(
                |(numbers, positions, cell, pbc, fixed, energy, forces, stress, info, columns)| {
                    let fixed = fixed
                        .iter()
                        .enumerate()
                        .filter(|(_, f)| **f)
                        .map(|(i, _)| i)
                        .collect();
                    let info: BTreeMap<String, InfoValue> = info;
                    Frame {
                        atoms: Atoms {
                            numbers,
                            positions,
                            cell,
                            pbc,
                            fixed,
                            info,
                        },
                        energy,
                        forces,
                        stress,
                        columns,
                    }
                },
            )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn write_then_read_is_identity(frames in prop::collection::vec(frame(), 1..4)) {
        let text = extxyz::to_string(&frames).unwrap();
        let back = extxyz::read_str(&text).unwrap();
        prop_assert_eq!(back.len(), frames.len());
        for (a, b) in frames.iter().zip(&back) {
            // A cell that is all zeros reads back with pbc as written, and bit-level
            // float identity is checked through the text: writing again is identical.
            prop_assert_eq!(a, b, "text:\n{}", text);
        }
        prop_assert_eq!(extxyz::to_string(&back).unwrap(), text);
    }
}
