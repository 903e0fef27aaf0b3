//! One link's framing and buffered I/O, on the coordinator's side: frames in
//! (split from whatever bytes arrive, decoded), frames out (a batch being encoded,
//! then owned or shared chunks, written in as few system calls as the link takes).
//!
//! Stream transports write with `writev` straight from the queued chunks; message
//! transports (threads, MPI ranks) take the queue as one message.

use super::{Chunk, Connection, Event, LinkId};
use crate::events::LossCause;
use agox_wire::{decode, FrameReader, FromWorker};
use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::os::fd::AsRawFd;

pub(crate) struct Peer {
    reader: FrameReader,
    out: VecDeque<Chunk>,
    /// Bytes of `out.front()` already written.
    out_off: usize,
    /// Frames being encoded before they join `out`.
    pub batch: Vec<u8>,
}

impl Peer {
    pub fn new(max_frame: usize) -> Self {
        Peer {
            reader: FrameReader::new(max_frame),
            out: VecDeque::new(),
            out_off: 0,
            batch: Vec::new(),
        }
    }

    fn seal_batch(&mut self) {
        if !self.batch.is_empty() {
            let b = std::mem::take(&mut self.batch);
            self.out.push_back(Chunk::Own(b));
        }
    }

    /// Queues `chunks` after what is already queued (the batch included).
    pub fn queue(&mut self, chunks: &[Chunk]) {
        self.seal_batch();
        self.out.extend(chunks.iter().map(Chunk::for_another));
    }

    pub fn wants_write(&self) -> bool {
        !self.out.is_empty() || !self.batch.is_empty()
    }

    /// Writes as much queued output as the connection takes now.
    pub fn flush_stream(&mut self, conn: &mut dyn Connection) -> io::Result<()> {
        self.seal_batch();
        while !self.out.is_empty() {
            let result = match self.out.front() {
                // A descriptor rides on the first byte of its frame, sent alone.
                Some(Chunk::SharedFd(bytes, file)) if self.out_off == 0 => {
                    conn.send_with_fd(bytes, file.fd().as_raw_fd())
                }
                _ => {
                    let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(self.out.len().min(64));
                    for (i, c) in self.out.iter().take(64).enumerate() {
                        if i > 0 && matches!(c, Chunk::SharedFd(..)) {
                            break;
                        }
                        let b = c.bytes();
                        slices.push(IoSlice::new(if i == 0 { &b[self.out_off..] } else { b }));
                    }
                    conn.write_vectored(&slices)
                }
            };
            match result {
                Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "socket closed")),
                Ok(n) => self.consumed(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Drops `n` written bytes from the front of the queue.
    fn consumed(&mut self, mut n: usize) {
        while n > 0 {
            let Some(front) = self.out.front() else { break };
            let left = front.bytes().len() - self.out_off;
            if n >= left {
                n -= left;
                self.out.pop_front();
                self.out_off = 0;
            } else {
                self.out_off += n;
                n = 0;
            }
        }
    }

    /// Everything queued, as one message (message transports); `None` if empty.
    pub fn take_message(&mut self) -> Option<Vec<u8>> {
        self.seal_batch();
        if self.out.is_empty() {
            return None;
        }
        if self.out.len() == 1 {
            if let Some(Chunk::Own(v)) = self.out.front_mut() {
                let v = std::mem::take(v);
                self.out.clear();
                return Some(v);
            }
        }
        let len = self.out.iter().map(|c| c.bytes().len()).sum();
        let mut msg = Vec::with_capacity(len);
        for c in self.out.drain(..) {
            msg.extend_from_slice(c.bytes());
        }
        Some(msg)
    }

    /// Reads from a non-blocking stream until it would block, appending each
    /// message (and the link's end, if it ended) to `events`. Returns false once
    /// the link ended.
    pub fn read_stream(
        &mut self,
        conn: &mut dyn Connection,
        link: LinkId,
        events: &mut Vec<Event>,
    ) -> bool {
        loop {
            let lost = match self.reader.fill_from(conn) {
                Ok(0) => Some(LossCause::ConnectionClosed),
                Ok(_) => None,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => Some(LossCause::Io(format!("read failed: {e}"))),
            };
            if !self.frames(link, events) {
                return false;
            }
            if let Some(cause) = lost {
                events.push(Event::Lost { link, cause });
                return false;
            }
        }
        self.reader.shrink();
        true
    }

    /// Takes in one received message's bytes (message transports). Returns false
    /// once the link is lost to a protocol violation.
    pub fn feed(&mut self, mut bytes: &[u8], link: LinkId, events: &mut Vec<Event>) -> bool {
        while !bytes.is_empty() {
            match self.reader.fill_from(&mut bytes) {
                Ok(_) => {}
                Err(e) => {
                    events.push(Event::Lost {
                        link,
                        cause: LossCause::Io(e.to_string()),
                    });
                    return false;
                }
            }
            if !self.frames(link, events) {
                return false;
            }
        }
        self.reader.shrink();
        true
    }

    /// Decodes every complete frame buffered. False after a protocol violation
    /// (reported as the link's loss).
    fn frames(&mut self, link: LinkId, events: &mut Vec<Event>) -> bool {
        loop {
            match self.reader.next_frame() {
                Ok(Some(body)) => match decode::<FromWorker>(body) {
                    Ok(msg) => events.push(Event::Message { link, msg }),
                    Err(e) => {
                        events.push(Event::Lost {
                            link,
                            cause: LossCause::Protocol(e.to_string()),
                        });
                        return false;
                    }
                },
                Ok(None) => return true,
                Err(e) => {
                    events.push(Event::Lost {
                        link,
                        cause: LossCause::Protocol(e.to_string()),
                    });
                    return false;
                }
            }
        }
    }
}
