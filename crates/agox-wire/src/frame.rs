//! Frames: a 4-byte little-endian length, then that many bytes of MessagePack.

use serde::{de::DeserializeOwned, Serialize};
use std::io::{self, Read, Write};

/// Bytes in the length prefix.
pub const HEADER_LEN: usize = 4;

/// Default largest frame body accepted: 1 GiB.
pub const DEFAULT_MAX_FRAME: usize = 1 << 30;

/// What can go wrong moving frames.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The operating system refused a read or write.
    #[error("socket i/o: {0}")]
    Io(#[from] io::Error),
    /// The peer closed the connection at a frame boundary.
    #[error("connection closed by peer")]
    Closed,
    /// The peer closed the connection in the middle of a frame.
    #[error("connection closed in the middle of a frame ({got} of {expected} bytes)")]
    Truncated {
        /// Bytes received.
        got: usize,
        /// Bytes announced.
        expected: usize,
    },
    /// The length prefix announces more than the configured maximum.
    #[error("frame of {len} bytes exceeds the maximum of {max} bytes")]
    TooLarge {
        /// Announced body length.
        len: usize,
        /// Configured maximum.
        max: usize,
    },
    /// The body is not a valid message.
    #[error("malformed message: {0}")]
    Decode(#[from] rmp_serde::decode::Error),
    /// A message could not be encoded (a value serde cannot represent).
    #[error("cannot encode message: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
}

/// Encodes `msg` as one complete frame (prefix included), ready to be written.
pub fn encode_frame<T: Serialize>(msg: &T) -> Result<Vec<u8>, WireError> {
    let mut buf = Vec::with_capacity(64);
    encode_frame_into(msg, &mut buf)?;
    Ok(buf)
}

/// Appends one complete frame for `msg` to `buf`; several frames can share a buffer
/// so that one `write` system call sends them all.
pub fn encode_frame_into<T: Serialize>(msg: &T, buf: &mut Vec<u8>) -> Result<(), WireError> {
    let start = buf.len();
    buf.extend_from_slice(&[0u8; HEADER_LEN]);
    let res = rmp_serde::encode::write_named(buf, msg);
    if let Err(e) = res {
        buf.truncate(start);
        return Err(e.into());
    }
    let body = buf.len() - start - HEADER_LEN;
    let len = u32::try_from(body).map_err(|_| WireError::TooLarge {
        len: body,
        max: u32::MAX as usize,
    });
    match len {
        Ok(len) => {
            buf[start..start + HEADER_LEN].copy_from_slice(&len.to_le_bytes());
            Ok(())
        }
        Err(e) => {
            buf.truncate(start);
            Err(e)
        }
    }
}

/// Decodes a frame body (without its prefix).
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, WireError> {
    Ok(rmp_serde::from_slice(body)?)
}

/// Decodes a frame body into a type that may borrow from it (zero-copy bytes).
pub fn decode_borrowed<'a, T: serde::Deserialize<'a>>(body: &'a [u8]) -> Result<T, WireError> {
    Ok(rmp_serde::from_slice(body)?)
}

/// Writes one message as a frame (blocking).
pub fn write_frame<T: Serialize, W: Write>(w: &mut W, msg: &T) -> Result<(), WireError> {
    let buf = encode_frame(msg)?;
    w.write_all(&buf)?;
    Ok(())
}

/// Reads one frame and decodes it (blocking). Returns [`WireError::Closed`] on a clean
/// end of stream before the prefix.
pub fn read_frame<T: DeserializeOwned, R: Read>(r: &mut R, max: usize) -> Result<T, WireError> {
    let mut header = [0u8; HEADER_LEN];
    let mut got = 0;
    while got < HEADER_LEN {
        match r.read(&mut header[got..]) {
            Ok(0) if got == 0 => return Err(WireError::Closed),
            Ok(0) => {
                return Err(WireError::Truncated {
                    got,
                    expected: HEADER_LEN,
                })
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    let len = u32::from_le_bytes(header) as usize;
    if len > max {
        return Err(WireError::TooLarge { len, max });
    }
    let mut body = vec![0u8; len];
    let mut got = 0;
    while got < len {
        match r.read(&mut body[got..]) {
            Ok(0) => return Err(WireError::Truncated { got, expected: len }),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    decode(&body)
}

/// An incremental frame splitter for a byte stream: feed it whatever the socket
/// returned, take out complete frame bodies. Used on non-blocking sockets, where one
/// read may hold several frames or part of one.
///
/// Small frames share one reusable buffer. A frame larger than [`BIG_FRAME`] gets a
/// buffer of its own, read into directly and released once the frame is consumed,
/// so a large attribute costs one copy out of the kernel and no lasting memory.
#[derive(Debug)]
pub struct FrameReader {
    /// Initialised storage; bytes `start..end` are received but not yet consumed.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// A large frame being received: its whole frame buffer and how much is filled.
    big: Option<(BigBuf, usize)>,
    /// The large frame was handed out; drop it at the next call.
    big_done: bool,
    max: usize,
}

/// The buffer of one large frame. Fresh memory costs a page fault per 4 KiB page
/// when first written — about 5 ms for 8 MiB here, more than moving the bytes — so
/// large frames get a mapping aligned to 2 MiB and marked for transparent huge
/// pages, which cuts that to a handful of faults. Falls back to a plain vector where
/// the mapping cannot be made.
enum BigBuf {
    Mapped {
        base: *mut u8,
        map_len: usize,
        offset: usize,
        len: usize,
    },
    Heap(Vec<u8>),
}

// SAFETY: the mapping is owned exclusively by this value, like a Vec's allocation.
unsafe impl Send for BigBuf {}
unsafe impl Sync for BigBuf {}

const HUGE_PAGE: usize = 2 << 20;

impl BigBuf {
    fn new(len: usize) -> BigBuf {
        #[cfg(target_os = "linux")]
        {
            let map_len = len + HUGE_PAGE;
            // SAFETY: an anonymous private mapping; checked for failure below.
            let base = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    map_len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            if base != libc::MAP_FAILED {
                let base = base.cast::<u8>();
                let offset = (HUGE_PAGE - (base as usize) % HUGE_PAGE) % HUGE_PAGE;
                // SAFETY: `offset + len <= map_len`, inside the mapping; madvise is
                // only a hint and its failure is harmless.
                unsafe {
                    libc::madvise(base.add(offset).cast(), len, libc::MADV_HUGEPAGE);
                }
                return BigBuf::Mapped {
                    base,
                    map_len,
                    offset,
                    len,
                };
            }
        }
        BigBuf::Heap(vec![0u8; len])
    }

    fn len(&self) -> usize {
        match self {
            BigBuf::Mapped { len, .. } => *len,
            BigBuf::Heap(v) => v.len(),
        }
    }

    fn as_slice(&self) -> &[u8] {
        match self {
            // SAFETY: the range lies inside the live mapping, zero-initialised by the
            // kernel, and is only reachable through this value.
            BigBuf::Mapped {
                base, offset, len, ..
            } => unsafe { std::slice::from_raw_parts(base.add(*offset), *len) },
            BigBuf::Heap(v) => v,
        }
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        match self {
            // SAFETY: as in `as_slice`, with exclusive access through `&mut self`.
            BigBuf::Mapped {
                base, offset, len, ..
            } => unsafe { std::slice::from_raw_parts_mut(base.add(*offset), *len) },
            BigBuf::Heap(v) => v,
        }
    }
}

impl Drop for BigBuf {
    fn drop(&mut self) {
        if let BigBuf::Mapped { base, map_len, .. } = self {
            // SAFETY: unmapping exactly the mapping made in `new`, once.
            unsafe {
                libc::munmap(base.cast(), *map_len);
            }
        }
    }
}

impl std::fmt::Debug for BigBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BigBuf({} bytes)", self.len())
    }
}

/// Size of the read buffer kept between frames.
const READ_CHUNK: usize = 64 * 1024;

/// Frames at least this long (prefix included) are received into their own buffer.
pub const BIG_FRAME: usize = 1 << 20;

impl FrameReader {
    /// A reader refusing frames longer than `max` bytes.
    pub fn new(max: usize) -> Self {
        FrameReader {
            buf: vec![0u8; READ_CHUNK],
            start: 0,
            end: 0,
            big: None,
            big_done: false,
            max,
        }
    }

    fn release_big(&mut self) {
        if self.big_done {
            self.big = None;
            self.big_done = false;
        }
    }

    /// Reads once from `r` into the internal buffer. Returns the number of bytes read
    /// (0 means end of stream). `WouldBlock` and other errors are passed through.
    pub fn fill_from<R: Read + ?Sized>(&mut self, r: &mut R) -> io::Result<usize> {
        self.release_big();
        if let Some((big, filled)) = self.big.as_mut() {
            if *filled < big.len() {
                let n = r.read(&mut big.as_mut_slice()[*filled..])?;
                *filled += n;
                return Ok(n);
            }
            // Complete but not yet taken: later bytes go to the small buffer.
        }
        if let (None, Some(total)) = (&self.big, self.frame_total()) {
            let have = self.end - self.start;
            if total >= BIG_FRAME && have < total {
                let mut big = BigBuf::new(total);
                big.as_mut_slice()[..have].copy_from_slice(&self.buf[self.start..self.end]);
                self.start = 0;
                self.end = 0;
                let n = r.read(&mut big.as_mut_slice()[have..])?;
                self.big = Some((big, have + n));
                return Ok(n);
            }
        }
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        // Room for the whole frame at the head (when its size is known), else a chunk.
        let need = self.frame_total().unwrap_or(0).max(READ_CHUNK);
        if self.buf.len() - self.start < need {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            if self.buf.len() < need {
                self.buf.resize(need, 0);
            }
        } else if self.buf.len() - self.end < READ_CHUNK / 4 && self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            let len = self.buf.len();
            self.buf.resize(len + READ_CHUNK, 0);
        }
        let n = r.read(&mut self.buf[self.end..])?;
        self.end += n;
        Ok(n)
    }

    /// Prefix plus body length of the frame at the head, once its prefix is buffered.
    fn frame_total(&self) -> Option<usize> {
        if self.end - self.start < HEADER_LEN {
            return None;
        }
        let len = self.peek_len();
        if len > self.max {
            return None;
        }
        Some(HEADER_LEN + len)
    }

    fn peek_len(&self) -> usize {
        let mut h = [0u8; HEADER_LEN];
        h.copy_from_slice(&self.buf[self.start..self.start + HEADER_LEN]);
        u32::from_le_bytes(h) as usize
    }

    /// The next complete frame body, if the buffer holds one. A prefix announcing more
    /// than the maximum is an error at once, before the body arrives.
    pub fn next_frame(&mut self) -> Result<Option<&[u8]>, WireError> {
        self.release_big();
        if let Some((big, filled)) = &self.big {
            if *filled < big.len() {
                return Ok(None);
            }
            self.big_done = true;
            return Ok(self.big.as_ref().map(|(b, _)| &b.as_slice()[HEADER_LEN..]));
        }
        let avail = self.end - self.start;
        if avail < HEADER_LEN {
            return Ok(None);
        }
        let len = self.peek_len();
        if len > self.max {
            return Err(WireError::TooLarge { len, max: self.max });
        }
        if avail < HEADER_LEN + len {
            return Ok(None);
        }
        let body_start = self.start + HEADER_LEN;
        self.start = body_start + len;
        Ok(Some(&self.buf[body_start..body_start + len]))
    }

    /// The announced length of the frame at the head if it exceeds the maximum:
    /// such a stream is broken and must be closed.
    pub fn oversized(&self) -> Option<usize> {
        if self.big.is_some() || self.end - self.start < HEADER_LEN {
            return None;
        }
        let len = self.peek_len();
        (len > self.max).then_some(len)
    }

    /// True when a complete frame is buffered.
    pub fn has_frame(&self) -> bool {
        if let Some((big, filled)) = &self.big {
            return !self.big_done && *filled == big.len();
        }
        let avail = self.end - self.start;
        avail >= HEADER_LEN && avail >= HEADER_LEN + self.peek_len()
    }

    /// Bytes buffered but not yet returned as frames.
    pub fn pending(&self) -> usize {
        let big = match &self.big {
            Some((_, filled)) if !self.big_done => *filled,
            _ => 0,
        };
        big + self.end - self.start
    }

    /// Releases memory held after a large frame has been consumed, so a worker does
    /// not keep the memory of its largest message.
    pub fn shrink(&mut self) {
        self.release_big();
        if self.buf.len() > 4 * READ_CHUNK && self.end - self.start < READ_CHUNK {
            let mut small = vec![0u8; READ_CHUNK];
            let n = self.end - self.start;
            small[..n].copy_from_slice(&self.buf[self.start..self.end]);
            self.buf = small;
            self.start = 0;
            self.end = n;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversized_prefix_is_rejected_without_allocation() {
        let mut data = Vec::new();
        data.extend_from_slice(&u32::MAX.to_le_bytes());
        let err = read_frame::<u8, _>(&mut &data[..], 1024).unwrap_err();
        assert!(matches!(err, WireError::TooLarge { len, max: 1024 } if len == u32::MAX as usize));
        let mut fr = FrameReader::new(1024);
        fr.fill_from(&mut &data[..]).unwrap();
        assert!(matches!(fr.next_frame(), Err(WireError::TooLarge { .. })));
    }

    #[test]
    fn truncated_frame_is_an_error() {
        let mut frame = encode_frame(&"hello".to_string()).unwrap();
        frame.truncate(frame.len() - 2);
        let err = read_frame::<String, _>(&mut &frame[..], 1024).unwrap_err();
        assert!(matches!(err, WireError::Truncated { .. }), "{err}");
        let err = read_frame::<String, _>(&mut &[][..], 1024).unwrap_err();
        assert!(matches!(err, WireError::Closed));
        let err = read_frame::<String, _>(&mut &[1u8, 0][..], 1024).unwrap_err();
        assert!(matches!(
            err,
            WireError::Truncated {
                got: 2,
                expected: 4
            }
        ));
    }

    #[test]
    fn garbage_body_is_a_decode_error() {
        let mut data = vec![3, 0, 0, 0];
        data.extend_from_slice(&[0xc1, 0xff, 0x00]);
        let err = read_frame::<crate::ToWorker, _>(&mut &data[..], 1024).unwrap_err();
        assert!(matches!(err, WireError::Decode(_)), "{err}");
    }

    #[test]
    fn frame_reader_splits_a_stream_read_in_pieces() {
        let mut stream = Vec::new();
        for i in 0..50u32 {
            encode_frame_into(&vec![i; i as usize], &mut stream).unwrap();
        }
        let mut fr = FrameReader::new(1 << 20);
        let mut out: Vec<Vec<u32>> = Vec::new();
        for chunk in stream.chunks(7) {
            fr.fill_from(&mut &chunk[..]).unwrap();
            while let Some(body) = fr.next_frame().unwrap() {
                out.push(decode(body).unwrap());
            }
        }
        assert_eq!(out.len(), 50);
        for (i, v) in out.iter().enumerate() {
            assert_eq!(v, &vec![i as u32; i]);
        }
        assert_eq!(fr.pending(), 0);
    }

    #[test]
    fn big_frames_get_their_own_buffer_and_release_it() {
        let mut stream = Vec::new();
        encode_frame_into(&vec![1u8; 10], &mut stream).unwrap();
        let big = serde_bytes::ByteBuf::from(vec![7u8; 3 * BIG_FRAME]);
        encode_frame_into(&big, &mut stream).unwrap();
        encode_frame_into(&vec![2u8; 10], &mut stream).unwrap();
        let mut fr = FrameReader::new(1 << 30);
        let mut got: Vec<usize> = Vec::new();
        for chunk in stream.chunks(100_003) {
            let mut c = chunk;
            while !c.is_empty() {
                let n = fr.fill_from(&mut c).unwrap();
                assert!(n > 0);
                while let Some(body) = fr.next_frame().unwrap() {
                    got.push(body.len());
                }
            }
        }
        assert_eq!(got.len(), 3, "{got:?}");
        assert!(got[1] > 3 * BIG_FRAME);
        fr.shrink();
        assert!(fr.big.is_none());
        assert_eq!(fr.pending(), 0);
    }
}
