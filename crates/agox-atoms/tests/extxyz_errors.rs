//! Malformed input gives a typed error naming the frame, the line and the field;
//! frames that cannot be represented are refused on write. One test per error kind.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use agox_atoms::extxyz::{self, Column, ColumnData, ErrorKind, ExtxyzError, Frame, WriteError};
use agox_atoms::{Atoms, InfoValue};

const GOOD: &str = "2\nLattice=\"3 0 0 0 3 0 0 0 3\" Properties=species:S:1:pos:R:3 pbc=\"T T T\"\nCu 0 0 0\nAu 1.5 1.5 1.5\n";

fn read_err(text: &str) -> ExtxyzError {
    match extxyz::read_str(text) {
        Err(e) => e,
        Ok(frames) => panic!("expected an error, read {} frames", frames.len()),
    }
}

#[test]
fn good_input_reads() {
    let f = extxyz::read_str(GOOD).unwrap();
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].atoms.numbers, vec![29, 79]);
}

#[test]
fn bad_value_names_frame_line_column_and_field() {
    let text =
        format!("{GOOD}{GOOD}3\nProperties=species:S:1:pos:R:3\nCu 0 0 0\nCu 1 abc 0\nCu 2 0 0\n");
    let e = read_err(&text);
    assert_eq!((e.frame, e.line), (2, 12));
    assert!(matches!(
        &e.kind,
        ErrorKind::BadValue { column: 3, field, expected: "a real number", found }
            if field == "pos y" && found == "abc"
    ));
    assert_eq!(
        e.to_string(),
        "frame 2, line 12: column 3 (pos y): expected a real number, found \"abc\""
    );
    // Integer and logical columns.
    let e = read_err("1\nProperties=species:S:1:pos:R:3:tags:I:1\nCu 0 0 0 1.5\n");
    assert!(
        matches!(&e.kind, ErrorKind::BadValue { column: 5, field, expected: "an integer", .. } if field == "tags")
    );
    let e = read_err("1\nProperties=species:S:1:pos:R:3:m:L:2\nCu 0 0 0 T X\n");
    assert!(matches!(&e.kind, ErrorKind::BadValue { column: 6, field, .. } if field == "m[1]"));
}

#[test]
fn bad_atom_count() {
    let e = read_err(&format!("{GOOD}two\n"));
    assert_eq!((e.frame, e.line), (1, 5));
    assert!(matches!(&e.kind, ErrorKind::BadAtomCount { found } if found == "two"));
    assert!(matches!(
        read_err("-1\n\n").kind,
        ErrorKind::BadAtomCount { .. }
    ));
}

#[test]
fn missing_comment_and_truncated_frames() {
    let e = read_err("3\n");
    assert!(matches!(e.kind, ErrorKind::MissingComment));
    assert_eq!((e.frame, e.line), (0, 1));
    let e = read_err("3\nProperties=species:S:1:pos:R:3\nCu 0 0 0\n");
    assert!(matches!(
        e.kind,
        ErrorKind::Truncated {
            expected: 3,
            found: 1
        }
    ));
    assert_eq!(e.line, 3);
}

#[test]
fn bad_comment_line() {
    let e = read_err("1\nlabel=\"unterminated Properties=species:S:1:pos:R:3\nCu 0 0 0\n");
    assert!(matches!(e.kind, ErrorKind::BadComment { .. }), "{e}");
    assert_eq!(e.line, 2);
}

#[test]
fn bad_keys() {
    let cases = [
        ("Lattice=\"1 0 0 0 1 0 0 0\"", "Lattice"),
        ("lattice=\"1 0 0 0 1 0 0 0 x\"", "lattice"),
        ("pbc=\"T X T\"", "pbc"),
        ("pbc=\"T T\"", "pbc"),
        ("energy=abc", "energy"),
        ("stress=\"1 2 3 4 5\"", "stress"),
        ("virial=\"1 2 3\"", "virial"),
    ];
    for (kv, key) in cases {
        let e = read_err(&format!(
            "1\n{kv} Properties=species:S:1:pos:R:3\nCu 0 0 0\n"
        ));
        assert!(
            matches!(&e.kind, ErrorKind::BadKey { key: k, .. } if k == key),
            "{kv}: {e}"
        );
    }
}

#[test]
fn bad_properties() {
    for spec in [
        "species:S:1",                     // no positions
        "pos:R:3",                         // no elements
        "species:S:1:pos:R",               // not triples
        "species:S:1:pos:X:3",             // unknown type
        "species:S:1:pos:R:0",             // zero columns
        "species:S:1:pos:R:2",             // pos must be R:3
        "species:S:1:pos:R:3:pos:R:3",     // duplicate
        "species:S:1:pos:R:3:forces:R:2",  // forces must be R:3
        "species:S:1:pos:R:3:tags:I:many", // bad count
    ] {
        let e = read_err(&format!("1\nProperties={spec}\nCu 0 0 0\n"));
        assert!(
            matches!(e.kind, ErrorKind::BadProperties { .. }),
            "{spec}: {e}"
        );
    }
}

#[test]
fn wrong_column_count() {
    let e = read_err("2\nProperties=species:S:1:pos:R:3\nCu 0 0 0\nCu 0 0\n");
    assert!(matches!(
        e.kind,
        ErrorKind::ColumnCount {
            expected: 4,
            found: 3
        }
    ));
    assert_eq!(e.line, 4);
    let e = read_err("1\nProperties=species:S:1:pos:R:3\nCu 0 0 0 7\n");
    assert!(matches!(
        e.kind,
        ErrorKind::ColumnCount {
            expected: 4,
            found: 5
        }
    ));
}

#[test]
fn unknown_elements() {
    let e = read_err("1\nProperties=species:S:1:pos:R:3\nQq 0 0 0\n");
    assert!(matches!(&e.kind, ErrorKind::UnknownElement { column: 1, found, .. } if found == "Qq"));
    let e = read_err("1\nProperties=Z:I:1:pos:R:3\n0 0 0 0\n");
    assert!(matches!(&e.kind, ErrorKind::UnknownElement { found, .. } if found == "0"));
    // Lower/upper case species are accepted, as ASE capitalizes them.
    let f = extxyz::read_str("2\nProperties=species:S:1:pos:R:3\nCU 0 0 0\nau 1 0 0\n").unwrap();
    assert_eq!(f[0].atoms.numbers, vec![29, 79]);
}

#[test]
fn io_error_for_non_utf8() {
    let bytes: &[u8] = b"1\nProperties=species:S:1:pos:R:3\nCu 0 0 \xff\n";
    let e = extxyz::read(bytes).unwrap_err();
    assert!(matches!(e.kind, ErrorKind::Io(_)));
    assert_eq!(e.line, 3);
    let e = extxyz::read_file("/nonexistent/dir/x.extxyz").unwrap_err();
    assert!(matches!(e.kind, ErrorKind::Io(_)));
}

#[test]
fn iterator_stops_after_error() {
    let text = format!("{GOOD}x\n{GOOD}");
    let items: Vec<_> = extxyz::Reader::new(text.as_bytes()).collect();
    assert_eq!(items.len(), 2);
    assert!(items[0].is_ok() && items[1].is_err());
}

#[test]
fn lenient_forms_ase_accepts() {
    // No Properties (default species+pos), bare keys, lowercase lattice, spaces around
    // '=', braces, CRLF line ends, blank lines between frames, Z instead of species.
    let text =
        "1\r\nlattice={2 0 0 0 2 0 0 0 2} have_energy tol = 0.5 pbc=\"T F T\"\r\nPt 0 0 0\r\n\n\
                1\nProperties=Z:I:1:pos:R:3\n78 1 2 3\n";
    let f = extxyz::read_str(text).unwrap();
    assert_eq!(f.len(), 2);
    assert_eq!(f[0].atoms.cell[2], [0.0, 0.0, 2.0]);
    assert_eq!(f[0].atoms.pbc, [true, false, true]);
    assert_eq!(
        f[0].atoms.info.get("have_energy"),
        Some(&InfoValue::Bool(true))
    );
    assert_eq!(f[0].atoms.info.get("tol"), Some(&InfoValue::Float(0.5)));
    assert_eq!(f[1].atoms.numbers, vec![78]);
    assert_eq!(f[1].atoms.pbc, [false; 3]);
    // A Lattice without pbc means periodic in all directions (ASE).
    assert_eq!(
        extxyz::read_str(GOOD.replace(" pbc=\"T T T\"", "").as_str()).unwrap()[0]
            .atoms
            .pbc,
        [true; 3]
    );
    // move_mask:L:3 (ASE FixCartesian): fully fixed atoms go to `fixed`, a partly fixed
    // one keeps the column.
    let f = extxyz::read_str(
        "2\nProperties=species:S:1:pos:R:3:move_mask:L:3\nCu 0 0 0 F F F\nCu 1 0 0 T F T\n",
    )
    .unwrap();
    assert_eq!(f[0].atoms.fixed, vec![0]);
    assert!(f[0].column("move_mask").is_some());
    let f = extxyz::read_str(
        "2\nProperties=species:S:1:pos:R:3:move_mask:L:3\nCu 0 0 0 F F F\nCu 1 0 0 T T T\n",
    )
    .unwrap();
    assert!(f[0].column("move_mask").is_none());
    // stress given in Voigt form (6 numbers).
    let f = extxyz::read_str("1\nstress=\"1 2 3 4 5 6\"\nCu 0 0 0\n").unwrap();
    assert_eq!(f[0].stress, Some([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]));
}

fn one_atom() -> Frame {
    Frame::new(Atoms::from_formula("Cu", vec![[0.0; 3]]).unwrap())
}

fn write_err(frame: &Frame) -> String {
    match extxyz::to_string([frame]) {
        Err(WriteError::Invalid { frame: 0, message }) => message,
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn unwritable_frames_are_refused() {
    let mut f = one_atom();
    f.forces = Some(vec![[0.0; 3]; 2]);
    assert!(write_err(&f).contains("force"));

    let mut f = one_atom();
    f.atoms.numbers[0] = 0;
    assert!(write_err(&f).contains("not an element"));

    let mut f = one_atom();
    f.atoms.positions.push([1.0; 3]);
    assert!(write_err(&f).contains("positions"));

    let mut f = one_atom();
    f.atoms.fixed = vec![3];
    assert!(write_err(&f).contains("fixed"));

    let mut f = one_atom();
    f.columns.push(Column {
        name: "label".into(),
        ncols: 1,
        data: ColumnData::Str(vec!["a b".into()]),
    });
    assert!(write_err(&f).contains("whitespace"));

    let mut f = one_atom();
    f.columns.push(Column {
        name: "tags".into(),
        ncols: 1,
        data: ColumnData::Int(vec![1, 2]),
    });
    assert!(write_err(&f).contains("tags"));

    let mut f = one_atom();
    f.columns.push(Column {
        name: "pos".into(),
        ncols: 3,
        data: ColumnData::Real(vec![0.0; 3]),
    });
    assert!(write_err(&f).contains("clashes"));

    for key in ["pbc", "Lattice", "Properties"] {
        let mut f = one_atom();
        f.atoms.info.insert(key.into(), InfoValue::Bool(true));
        assert!(write_err(&f).contains("clashes"), "{key}");
    }
    let mut f = one_atom();
    f.energy = Some(1.0);
    f.atoms.info.insert("energy".into(), InfoValue::Float(2.0));
    assert!(write_err(&f).contains("clashes"));

    let mut f = one_atom();
    f.atoms
        .info
        .insert("energy".into(), InfoValue::Str("high".into()));
    assert!(write_err(&f).contains("a number"));

    let mut f = one_atom();
    f.atoms
        .info
        .insert("note".into(), InfoValue::Str("two\nlines".into()));
    assert!(write_err(&f).contains("line breaks"));

    // Frame index in a multi-frame write.
    let good = one_atom();
    let mut bad = one_atom();
    bad.atoms.numbers[0] = 200;
    let mut out = Vec::new();
    match extxyz::write_frames(&mut out, [&good, &good, &bad]) {
        Err(WriteError::Invalid { frame, .. }) => assert_eq!(frame, 2),
        other => panic!("{other:?}"),
    }
    // The good frames before it were written completely.
    assert_eq!(extxyz::read(out.as_slice()).unwrap().len(), 2);
}

#[test]
fn info_energy_without_frame_energy_reads_back_as_energy() {
    let mut f = one_atom();
    f.atoms.info.insert("energy".into(), InfoValue::Float(-1.5));
    let back = extxyz::read_str(&extxyz::to_string([&f]).unwrap()).unwrap();
    assert_eq!(back[0].energy, Some(-1.5));
    assert!(back[0].atoms.info.is_empty());
}
