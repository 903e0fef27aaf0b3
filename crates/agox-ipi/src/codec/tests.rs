use super::*;
use proptest::prelude::*;

/// Little-endian bytes of a sequence of f64, written out independently of the encoder.
fn f64s(values: &[f64]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn decode_server(bytes: &[u8]) -> Result<ServerMessage, CodecError> {
    ServerMessage::read(&mut &bytes[..], &Limits::default())
}

fn decode_client(bytes: &[u8]) -> Result<ClientMessage, CodecError> {
    ClientMessage::read(&mut &bytes[..], &Limits::default())
}

fn encoded<M>(m: &M, enc: impl Fn(&M, &mut Vec<u8>) -> Result<(), CodecError>) -> Vec<u8> {
    let mut out = Vec::new();
    enc(m, &mut out).unwrap();
    out
}

#[test]
fn headers_are_space_padded_ascii() {
    let expect: [&[u8; 12]; 9] = [
        b"STATUS      ",
        b"READY       ",
        b"HAVEDATA    ",
        b"NEEDINIT    ",
        b"INIT        ",
        b"POSDATA     ",
        b"GETFORCE    ",
        b"FORCEREADY  ",
        b"EXIT        ",
    ];
    for (h, bytes) in Header::ALL.into_iter().zip(expect) {
        assert_eq!(&h.to_bytes(), bytes);
        assert_eq!(Header::parse(bytes).unwrap(), h);
    }
}

#[test]
fn bad_headers_are_rejected_and_shown_escaped() {
    for bad in [
        b"status      ",
        b"STATUS\0\0\0\0\0\0",
        b"      STATUS",
        b"STATUSX     ",
        b"\xff\xfe\x00garbage!!",
    ] {
        let e = Header::parse(bad).unwrap_err();
        assert!(
            matches!(e, CodecError::UnknownHeader(b) if &b == bad),
            "{e}"
        );
    }
    let e = Header::parse(b"STATUS\0\0\0\0\0\0").unwrap_err();
    assert_eq!(
        e.to_string(),
        r#"unknown header "STATUS\x00\x00\x00\x00\x00\x00""#
    );
}

#[test]
fn posdata_bytes_hold_the_cell_and_inverse_transposed_then_count_and_positions() {
    let pos = PosData {
        cell: [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]],
        inverse: [[-1.0, -2.0, -3.0], [-4.0, -5.0, -6.0], [-7.0, -8.0, -9.0]],
        positions: vec![[0.5, 1.5, 2.5], [3.5, 4.5, 5.5]],
    };
    let mut expect = b"POSDATA     ".to_vec();
    // Column-major: the wire's first row is the first component of every vector.
    expect.extend(f64s(&[1.0, 4.0, 7.0, 2.0, 5.0, 8.0, 3.0, 6.0, 9.0]));
    expect.extend(f64s(&[
        -1.0, -4.0, -7.0, -2.0, -5.0, -8.0, -3.0, -6.0, -9.0,
    ]));
    expect.extend(2i32.to_le_bytes());
    expect.extend(f64s(&[0.5, 1.5, 2.5, 3.5, 4.5, 5.5]));
    let bytes = encoded(&pos, PosData::encode);
    assert_eq!(bytes, expect);
    assert_eq!(decode_server(&bytes).unwrap(), ServerMessage::PosData(pos));
}

#[test]
fn forceready_as_ase_sends_it_decodes() {
    // ASE's SocketClient: FORCEREADY, energy, natoms, forces, virial.T, 1, b"\0".
    let mut bytes = b"FORCEREADY  ".to_vec();
    bytes.extend(f64s(&[-1.25]));
    bytes.extend(1i32.to_le_bytes());
    bytes.extend(f64s(&[0.1, -0.2, 0.3]));
    bytes.extend(f64s(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]));
    bytes.extend(1i32.to_le_bytes());
    bytes.push(0);
    let ClientMessage::ForceReady(data) = decode_client(&bytes).unwrap() else {
        panic!("not FORCEREADY")
    };
    assert_eq!(data.energy, -1.25);
    assert_eq!(data.forces, vec![[0.1, -0.2, 0.3]]);
    // ASE's server applies .T to what it receives.
    assert_eq!(
        data.virial,
        [[1.0, 4.0, 7.0], [2.0, 5.0, 8.0], [3.0, 6.0, 9.0]]
    );
    assert_eq!(data.extra, vec![0]);
    assert_eq!(
        encoded(&ClientMessage::ForceReady(data), ClientMessage::encode),
        bytes
    );
}

#[test]
fn init_bytes_are_ases_by_default() {
    let bytes = encoded(
        &ServerMessage::Init(InitData::default()),
        ServerMessage::encode,
    );
    let mut expect = b"INIT        ".to_vec();
    expect.extend(0i32.to_le_bytes());
    expect.extend(1i32.to_le_bytes());
    expect.push(0);
    assert_eq!(bytes, expect);
}

#[test]
fn empty_stream_is_closed_and_every_strict_prefix_is_truncated() {
    assert!(matches!(decode_client(&[]), Err(CodecError::Closed)));
    let msg = ClientMessage::ForceReady(ForceData {
        energy: 1.0,
        forces: vec![[1.0, 2.0, 3.0]; 3],
        virial: [[0.5; 3]; 3],
        extra: b"{\"a\": 1}".to_vec(),
    });
    let bytes = encoded(&msg, ClientMessage::encode);
    for cut in 1..bytes.len() {
        let e = decode_client(&bytes[..cut]).unwrap_err();
        assert!(
            matches!(e, CodecError::Truncated { .. }),
            "cut at {cut}: {e}"
        );
        assert!(e.is_closed());
    }
    assert_eq!(decode_client(&bytes).unwrap(), msg);
}

#[test]
fn negative_and_absurd_counts_fail_before_allocating() {
    let mut bytes = b"POSDATA     ".to_vec();
    bytes.extend(f64s(&[0.0; 18]));
    let mut negative = bytes.clone();
    negative.extend((-3i32).to_le_bytes());
    assert!(matches!(
        decode_server(&negative),
        Err(CodecError::Negative { value: -3, .. })
    ));

    let mut absurd = bytes.clone();
    absurd.extend(i32::MAX.to_le_bytes());
    let e = decode_server(&absurd).unwrap_err();
    assert!(
        matches!(e, CodecError::TooLarge { value, max, .. } if value == i32::MAX as usize && max == 1 << 22),
        "{e}"
    );

    // Even with no limit, 2³¹ announced atoms (48 GiB) and nothing behind them
    // cost one bounded chunk, then a truncation.
    let unlimited = Limits {
        max_atoms: usize::MAX,
        max_bytes: usize::MAX,
    };
    let e = ServerMessage::read(&mut &absurd[..], &unlimited).unwrap_err();
    assert!(
        matches!(e, CodecError::Truncated { expected, got: 0, .. } if expected == 24 * i32::MAX as usize),
        "{e}"
    );

    let mut extra = b"FORCEREADY  ".to_vec();
    extra.extend(f64s(&[0.0]));
    extra.extend(0i32.to_le_bytes());
    extra.extend(f64s(&[0.0; 9]));
    extra.extend(i32::MAX.to_le_bytes());
    assert!(matches!(
        decode_client(&extra),
        Err(CodecError::TooLarge {
            what: "extra byte count",
            ..
        })
    ));
}

#[test]
fn messages_of_the_other_direction_are_rejected() {
    assert!(matches!(
        decode_client(b"POSDATA     "),
        Err(CodecError::WrongDirection(Header::PosData))
    ));
    assert!(matches!(
        decode_server(b"READY       "),
        Err(CodecError::WrongDirection(Header::Ready))
    ));
}

// ---------------------------------------------------------------- properties

fn any_f64() -> impl Strategy<Value = f64> {
    // Every bit pattern, NaNs and infinities included: the codec carries bits.
    any::<u64>().prop_map(f64::from_bits)
}

fn any_vec3() -> impl Strategy<Value = Vec3> {
    [any_f64(), any_f64(), any_f64()]
}

fn any_mat3() -> impl Strategy<Value = Mat3> {
    [any_vec3(), any_vec3(), any_vec3()]
}

fn any_server() -> impl Strategy<Value = ServerMessage> {
    prop_oneof![
        Just(ServerMessage::Status),
        Just(ServerMessage::GetForce),
        Just(ServerMessage::Exit),
        (any::<i32>(), prop::collection::vec(any::<u8>(), 0..40))
            .prop_map(|(bead, data)| ServerMessage::Init(InitData { bead, data })),
        (
            any_mat3(),
            any_mat3(),
            prop::collection::vec(any_vec3(), 0..30)
        )
            .prop_map(
                |(cell, inverse, positions)| ServerMessage::PosData(PosData {
                    cell,
                    inverse,
                    positions
                })
            ),
    ]
}

fn any_client() -> impl Strategy<Value = ClientMessage> {
    prop_oneof![
        Just(ClientMessage::Ready),
        Just(ClientMessage::NeedInit),
        Just(ClientMessage::HaveData),
        (
            any_f64(),
            prop::collection::vec(any_vec3(), 0..30),
            any_mat3(),
            prop::collection::vec(any::<u8>(), 0..40)
        )
            .prop_map(|(energy, forces, virial, extra)| ClientMessage::ForceReady(
                ForceData {
                    energy,
                    forces,
                    virial,
                    extra
                }
            )),
    ]
}

proptest! {
    #[test]
    fn server_messages_round_trip_bit_for_bit(msgs in prop::collection::vec(any_server(), 1..5)) {
        let mut bytes = Vec::new();
        for m in &msgs {
            m.encode(&mut bytes).unwrap();
        }
        let mut r = &bytes[..];
        for m in &msgs {
            let back = ServerMessage::read(&mut r, &Limits::default()).unwrap();
            // Compare encodings: bit patterns, NaNs included.
            prop_assert_eq!(encoded(&back, ServerMessage::encode), encoded(m, ServerMessage::encode));
        }
        prop_assert!(matches!(ServerMessage::read(&mut r, &Limits::default()), Err(CodecError::Closed)));
    }

    #[test]
    fn client_messages_round_trip_bit_for_bit(msgs in prop::collection::vec(any_client(), 1..5)) {
        let mut bytes = Vec::new();
        for m in &msgs {
            m.encode(&mut bytes).unwrap();
        }
        let mut r = &bytes[..];
        for m in &msgs {
            let back = ClientMessage::read(&mut r, &Limits::default()).unwrap();
            prop_assert_eq!(encoded(&back, ClientMessage::encode), encoded(m, ClientMessage::encode));
        }
        prop_assert!(matches!(ClientMessage::read(&mut r, &Limits::default()), Err(CodecError::Closed)));
    }

    #[test]
    fn truncated_messages_never_decode(m in any_client(), cut in any::<prop::sample::Index>()) {
        let bytes = encoded(&m, ClientMessage::encode);
        let cut = 1 + cut.index(bytes.len());
        let r = ClientMessage::read(&mut &bytes[..cut], &Limits::default());
        if cut == bytes.len() {
            prop_assert!(r.is_ok());
        } else {
            prop_assert!(matches!(r, Err(CodecError::Truncated { .. })), "cut {} of {}", cut, bytes.len());
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_respect_limits(
        header in prop::sample::select(Header::ALL.to_vec()),
        tail in prop::collection::vec(any::<u8>(), 0..200),
    ) {
        let mut bytes = header.to_bytes().to_vec();
        bytes.extend(tail);
        let limits = Limits { max_atoms: 5, max_bytes: 5 };
        if let Ok(ServerMessage::PosData(p)) = ServerMessage::read(&mut &bytes[..], &limits) {
            prop_assert!(p.positions.len() <= 5);
        }
        if let Ok(ClientMessage::ForceReady(f)) = ClientMessage::read(&mut &bytes[..], &limits) {
            prop_assert!(f.forces.len() <= 5 && f.extra.len() <= 5);
        }
    }
}
