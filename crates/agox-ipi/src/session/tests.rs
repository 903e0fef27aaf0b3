use super::*;
use std::io::Cursor;

/// A stream that replays a scripted client and records what the server wrote.
struct Scripted {
    input: Cursor<Vec<u8>>,
    output: Vec<u8>,
    /// Error kind every read returns once the script is exhausted (instead of EOF).
    after_script: Option<io::ErrorKind>,
    /// Error kind every write returns.
    write_error: Option<io::ErrorKind>,
}

impl Scripted {
    fn new(input: Vec<u8>) -> Self {
        Scripted {
            input: Cursor::new(input),
            output: Vec::new(),
            after_script: None,
            write_error: None,
        }
    }
}

impl Read for Scripted {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.input.read(buf)?;
        match (n, self.after_script) {
            (0, Some(kind)) if !buf.is_empty() => Err(kind.into()),
            _ => Ok(n),
        }
    }
}

impl Write for Scripted {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(kind) = self.write_error {
            return Err(kind.into());
        }
        self.output.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn f64s(values: &[f64]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn pos2() -> PosData {
    PosData {
        cell: [[10.0, 0.0, 0.0], [1.0, 11.0, 0.0], [0.0, 0.0, 12.0]],
        inverse: [[0.1, 0.0, 0.0], [-0.01, 0.09, 0.0], [0.0, 0.0, 0.08]],
        positions: vec![[0.0, 0.0, 0.0], [1.0, 2.0, 3.0]],
    }
}

/// POSDATA for [`pos2`], written out by hand.
fn posdata_bytes() -> Vec<u8> {
    let mut b = b"POSDATA     ".to_vec();
    b.extend(f64s(&[10.0, 1.0, 0.0, 0.0, 11.0, 0.0, 0.0, 0.0, 12.0]));
    b.extend(f64s(&[0.1, -0.01, 0.0, 0.0, 0.09, 0.0, 0.0, 0.0, 0.08]));
    b.extend(2i32.to_le_bytes());
    b.extend(f64s(&[0.0, 0.0, 0.0, 1.0, 2.0, 3.0]));
    b
}

/// FORCEREADY for `n` atoms with energy `e`.
fn forceready(e: f64, n: i32) -> Vec<u8> {
    let mut b = b"FORCEREADY  ".to_vec();
    b.extend(f64s(&[e]));
    b.extend(n.to_le_bytes());
    for i in 0..n {
        b.extend(f64s(&[i as f64, -(i as f64), 0.5]));
    }
    b.extend(f64s(&[0.0; 9]));
    b.extend(1i32.to_le_bytes());
    b.push(0);
    b
}

fn script(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

#[test]
fn one_evaluation_writes_exactly_ases_byte_sequence() {
    let input = script(&[b"READY       ", b"HAVEDATA    ", &forceready(-2.5, 2)]);
    let mut s = Session::new(Scripted::new(input), InitData::default());
    let data = s.evaluate(&pos2()).unwrap();
    assert_eq!(data.energy, -2.5);
    assert_eq!(data.forces, vec![[0.0, -0.0, 0.5], [1.0, -1.0, 0.5]]);
    assert_eq!(data.extra, vec![0]);
    let expect = script(&[
        b"STATUS      ",
        &posdata_bytes(),
        b"STATUS      ",
        b"GETFORCE    ",
    ]);
    assert_eq!(s.stream_mut().output, expect);
    assert!(s.is_usable());
}

#[test]
fn needinit_is_answered_with_ases_init_then_status() {
    let input = script(&[
        b"NEEDINIT    ",
        b"READY       ",
        b"HAVEDATA    ",
        &forceready(1.0, 2),
    ]);
    let mut s = Session::new(Scripted::new(input), InitData::default());
    s.evaluate(&pos2()).unwrap();
    let mut init = b"INIT        ".to_vec();
    init.extend(0i32.to_le_bytes());
    init.extend(1i32.to_le_bytes());
    init.push(0);
    let expect = script(&[
        b"STATUS      ",
        &init,
        b"STATUS      ",
        &posdata_bytes(),
        b"STATUS      ",
        b"GETFORCE    ",
    ]);
    assert_eq!(s.stream_mut().output, expect);
}

#[test]
fn consecutive_evaluations_share_the_connection() {
    let one = script(&[b"READY       ", b"HAVEDATA    ", &forceready(1.0, 2)]);
    let two = script(&[b"READY       ", b"HAVEDATA    ", &forceready(2.0, 2)]);
    let mut s = Session::new(Scripted::new([one, two].concat()), InitData::default());
    assert_eq!(s.evaluate(&pos2()).unwrap().energy, 1.0);
    assert_eq!(s.evaluate(&pos2()).unwrap().energy, 2.0);
}

#[test]
fn the_rules_accept_exactly_the_five_valid_answers() {
    let stages = [Stage::Status, Stage::Init, Stage::Compute, Stage::Forces];
    let mut valid = Vec::new();
    for stage in stages {
        for h in Header::ALL {
            match advance(stage, h) {
                Ok(a) => valid.push((stage, h, a)),
                Err(e) => assert!(
                    matches!(e, SessionError::Unexpected { stage: s, got } if s == stage && got == h)
                ),
            }
        }
    }
    assert_eq!(
        valid,
        vec![
            (Stage::Status, Header::Ready, Action::SendPositions),
            (Stage::Status, Header::NeedInit, Action::SendInit),
            (Stage::Init, Header::Ready, Action::SendPositions),
            (Stage::Compute, Header::HaveData, Action::GetForce),
            (Stage::Forces, Header::ForceReady, Action::ReadForces),
        ]
    );
}

#[test]
fn stale_data_at_the_start_is_a_violation_and_breaks_the_session() {
    let mut s = Session::new(Scripted::new(b"HAVEDATA    ".to_vec()), InitData::default());
    let e = s.evaluate(&pos2()).unwrap_err();
    assert!(
        matches!(
            e,
            SessionError::Unexpected {
                stage: Stage::Status,
                got: Header::HaveData
            }
        ),
        "{e}"
    );
    assert_eq!(
        e.to_string(),
        "the client answered HAVEDATA while answering STATUS before the structure was sent \
         (expected READY or NEEDINIT)"
    );
    assert!(!s.is_usable());
    assert!(matches!(s.evaluate(&pos2()), Err(SessionError::Broken)));
}

#[test]
fn needinit_twice_is_a_violation() {
    let input = script(&[b"NEEDINIT    ", b"NEEDINIT    "]);
    let mut s = Session::new(Scripted::new(input), InitData::default());
    let e = s.evaluate(&pos2()).unwrap_err();
    assert!(matches!(
        e,
        SessionError::Unexpected {
            stage: Stage::Init,
            got: Header::NeedInit
        }
    ));
}

#[test]
fn a_closed_connection_names_the_stage() {
    let mut idle = Session::new(Scripted::new(Vec::new()), InitData::default());
    let e = idle.evaluate(&pos2()).unwrap_err();
    assert!(matches!(
        e,
        SessionError::Closed {
            stage: Stage::Status
        }
    ));
    assert!(!e.stage().unwrap().positions_sent());

    let mut busy = Session::new(Scripted::new(b"READY       ".to_vec()), InitData::default());
    let e = busy.evaluate(&pos2()).unwrap_err();
    assert!(matches!(
        e,
        SessionError::Closed {
            stage: Stage::Compute
        }
    ));
    assert!(e.stage().unwrap().positions_sent());

    // Cut inside the result.
    let mut input = script(&[b"READY       ", b"HAVEDATA    ", &forceready(1.0, 2)]);
    input.truncate(input.len() - 30);
    let mut cut = Session::new(Scripted::new(input), InitData::default());
    assert!(matches!(
        cut.evaluate(&pos2()),
        Err(SessionError::Closed {
            stage: Stage::Forces
        })
    ));
}

#[test]
fn write_and_read_failures_are_classified() {
    let mut pipe = Scripted::new(Vec::new());
    pipe.write_error = Some(io::ErrorKind::BrokenPipe);
    let e = Session::new(pipe, InitData::default())
        .evaluate(&pos2())
        .unwrap_err();
    assert!(matches!(
        e,
        SessionError::Closed {
            stage: Stage::Status
        }
    ));

    let mut slow = Scripted::new(b"READY       ".to_vec());
    slow.after_script = Some(io::ErrorKind::WouldBlock);
    let e = Session::new(slow, InitData::default())
        .evaluate(&pos2())
        .unwrap_err();
    assert!(
        matches!(
            e,
            SessionError::TimedOut {
                stage: Stage::Compute
            }
        ),
        "{e}"
    );
    assert!(e.is_timeout());

    let mut odd = Scripted::new(Vec::new());
    odd.after_script = Some(io::ErrorKind::PermissionDenied);
    let e = Session::new(odd, InitData::default())
        .evaluate(&pos2())
        .unwrap_err();
    assert!(
        matches!(
            e,
            SessionError::Codec {
                stage: Stage::Status,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn results_for_the_wrong_atom_count_are_rejected() {
    for n in [1, 3, 1000] {
        let input = script(&[b"READY       ", b"HAVEDATA    ", &forceready(1.0, n)]);
        let e = Session::new(Scripted::new(input), InitData::default())
            .evaluate(&pos2())
            .unwrap_err();
        assert!(
            matches!(e, SessionError::AtomCount { sent: 2, got } if got == n as usize),
            "{n}: {e}"
        );
    }
}

#[test]
fn non_finite_results_are_rejected() {
    for (e, what) in [(f64::NAN, "energy"), (f64::INFINITY, "energy")] {
        let input = script(&[b"READY       ", b"HAVEDATA    ", &forceready(e, 2)]);
        let err = Session::new(Scripted::new(input), InitData::default())
            .evaluate(&pos2())
            .unwrap_err();
        assert!(matches!(err, SessionError::NonFinite { what: w } if w == what));
    }
    let mut input = script(&[b"READY       ", b"HAVEDATA    ", &forceready(0.0, 2)]);
    // The first force component sits after the header, energy and count.
    let at = 24 + 12 + 8 + 4;
    input[at..at + 8].copy_from_slice(&f64::NAN.to_le_bytes());
    let err = Session::new(Scripted::new(input), InitData::default())
        .evaluate(&pos2())
        .unwrap_err();
    assert!(matches!(err, SessionError::NonFinite { what: "force" }));
}

#[test]
fn exit_sends_the_header_and_ends_the_session() {
    let mut s = Session::new(Scripted::new(Vec::new()), InitData::default());
    s.exit().unwrap();
    assert_eq!(s.stream_mut().output, b"EXIT        ");
    assert!(!s.is_usable());
}
