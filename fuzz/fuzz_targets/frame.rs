//! The frame decoder: arbitrary bytes, delivered in arbitrary pieces, through the
//! incremental `FrameReader` (the coordinator's) and the blocking `read_frame`
//! (the handshake's and the fork server's). Neither may panic, allocate beyond the
//! maximum, or disagree with the other about where frames end.
#![no_main]

use agox_wire::{read_frame, FrameReader, WireError, HEADER_LEN};
use libfuzzer_sys::fuzz_target;
use std::io::Read;

/// A reader that hands out its bytes in the piece sizes chosen by the input.
struct Pieces<'a> {
    data: &'a [u8],
    sizes: &'a [u8],
    turn: usize,
}

impl Read for Pieces<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let want = self
            .sizes
            .get(self.turn % self.sizes.len().max(1))
            .map_or(usize::MAX, |&s| usize::from(s) + 1);
        self.turn += 1;
        let n = want.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

fuzz_target!(|input: &[u8]| {
    // First byte: the maximum frame (small, so the limit is exercised); next 8:
    // piece sizes; the rest: the stream.
    if input.len() < 9 {
        return;
    }
    let max = 16 + usize::from(input[0]) * 8;
    let (sizes, data) = input[1..].split_at(8);

    // Incremental: collect body lengths until the stream ends or breaks.
    let mut reader = FrameReader::new(max);
    let mut src = Pieces {
        data,
        sizes,
        turn: 0,
    };
    let mut incremental: Vec<usize> = Vec::new();
    let mut broken = false;
    'outer: loop {
        match reader.fill_from(&mut src) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => panic!("reading from memory failed: {e}"),
        }
        loop {
            match reader.next_frame() {
                Ok(Some(body)) => {
                    assert!(body.len() <= max);
                    incremental.push(body.len());
                }
                Ok(None) => break,
                Err(WireError::TooLarge { len, max: m }) => {
                    assert!(len > m);
                    assert!(reader.oversized().is_some());
                    broken = true;
                    break 'outer;
                }
                Err(e) => panic!("unexpected frame error {e}"),
            }
        }
    }
    assert!(reader.pending() <= data.len());

    // Blocking: the same stream frame by frame (bodies are not messages, so read
    // raw bytes as a MessagePack-free type would not decode; compare boundaries).
    let mut rest = data;
    let mut blocking: Vec<usize> = Vec::new();
    loop {
        if rest.len() < HEADER_LEN {
            break;
        }
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        if len > max {
            assert!(broken, "incremental reader accepted an oversized frame");
            let err = read_frame::<serde_bytes::ByteBuf, _>(&mut &rest[..], max).unwrap_err();
            assert!(matches!(err, WireError::TooLarge { .. }), "{err}");
            break;
        }
        if rest.len() < HEADER_LEN + len {
            let err = read_frame::<serde_bytes::ByteBuf, _>(&mut &rest[..], max).unwrap_err();
            assert!(matches!(err, WireError::Truncated { .. }), "{err}");
            break;
        }
        // Decoding may fail (the body is arbitrary); it must not panic.
        let _ = read_frame::<serde_bytes::ByteBuf, _>(&mut &rest[..], max);
        blocking.push(len);
        rest = &rest[HEADER_LEN + len..];
    }
    assert_eq!(incremental, blocking);
});
