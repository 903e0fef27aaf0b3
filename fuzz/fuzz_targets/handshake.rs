//! The coordinator's handshake: arbitrary bytes from a peer, arriving in arbitrary
//! pieces (with pauses), through the parser and judge the coordinator runs on
//! every new connection. It must never panic, never accept a peer without the
//! token, and every verdict must be one of the documented ones.
#![no_main]

use agox_wire::{encode_frame, FromWorker, Hello, PROTOCOL_VERSION};
use libfuzzer_sys::fuzz_target;

const TOKEN: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const FINGERPRINT: u64 = 0x7d18_387d_1255_1a5e;

fuzz_target!(|input: &[u8]| {
    let Some((&mode, rest)) = input.split_first() else {
        return;
    };
    if rest.len() < 4 {
        return;
    }
    let (pieces, data) = rest.split_at(4);
    // Half the inputs are raw bytes; the other half a real Hello built from the
    // input's fields, sometimes with the right token, then mangled by the rest.
    let owned;
    let bytes: &[u8] = if mode % 2 == 0 {
        data
    } else {
        let word = |i: usize| {
            data.get(i..i + 4)
                .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        };
        let hello = Hello {
            protocol: if mode & 2 == 0 {
                PROTOCOL_VERSION
            } else {
                word(0)
            },
            worker_id: word(4) % 4,
            pid: word(8),
            fingerprint: if mode & 4 == 0 {
                FINGERPRINT
            } else {
                u64::from(word(12))
            },
            token: if mode & 8 == 0 {
                TOKEN.to_string()
            } else {
                String::from_utf8_lossy(data.get(16..).unwrap_or_default()).into_owned()
            },
        };
        let mut frame = encode_frame(&FromWorker::Hello(hello)).expect("a Hello encodes");
        if mode & 16 != 0 {
            // Truncate or extend it.
            let cut = usize::from(mode >> 5) * 7;
            if cut < frame.len() {
                frame.truncate(frame.len() - cut);
            } else {
                frame.extend_from_slice(data);
            }
        }
        owned = frame;
        &owned
    };
    let verdict = agox_pool::fuzz_greeting(bytes, pieces, TOKEN, FINGERPRINT);
    if verdict.starts_with("welcome") {
        // Only a greeting holding the exact token, protocol and fingerprint.
        assert!(
            mode % 2 == 1 && mode & (2 | 4 | 8) == 0
                || bytes.windows(TOKEN.len()).any(|w| w == TOKEN.as_bytes()),
            "{verdict}"
        );
    }
    let known = [
        "welcome worker",
        "closed",
        "connection closed in the middle of its greeting",
        "greeting of",
        "expected Hello",
        "no valid Hello",
        "protocol version mismatch",
        "wrong pool token",
        "registry mismatch",
        "unexpected worker id",
        "still waiting",
    ];
    assert!(known.iter().any(|k| verdict.starts_with(k)), "{verdict}");
});
