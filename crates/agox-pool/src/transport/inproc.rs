//! The in-process transport: each worker is a thread of this process running the
//! same [`serve`](crate::serve) loop as a worker process, and the same frames move
//! through channels instead of sockets. The scheduler, the handshake and the
//! synchronization run unchanged on it, with no process to start — which is what
//! makes it the fast transport for testing them (as ipc-channel's in-process
//! backend is for its users).
//!
//! What it cannot do: kill a thread. A "killed" worker's channel is closed; the
//! thread ends when it next reads (a thread stuck in a long task finishes it
//! first). Its state is its own (each thread has its own module copies), but it
//! shares the process's memory, so `worker_memory_mb` does not apply.

use super::peer::Peer;
use super::{Bulk, Chunk, Connection, Event, LinkId, Transport};
use crate::error::PoolError;
use crate::events::{LossCause, WorkerExit};
use crate::launch::SpawnError;
use crate::registry::Registry;
use crate::sched::IdHash;
use crate::worker::{self, WorkerIdentity};
use agox_wire::{encode_frame, ToWorker};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a worker thread sends.
enum Incoming {
    Bytes(Vec<u8>),
    /// The thread ended, with the exit code a process would have.
    Ended(i32),
}

/// The worker thread's end of its link.
struct ThreadEnd {
    link: LinkId,
    from_coordinator: Receiver<Vec<u8>>,
    to_coordinator: Sender<(LinkId, Incoming)>,
    buf: Vec<u8>,
    pos: usize,
}

impl Read for ThreadEnd {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.buf.len() {
            match self.from_coordinator.recv() {
                Ok(msg) => {
                    self.buf = msg;
                    self.pos = 0;
                }
                // The coordinator closed the link: end of stream.
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl Write for ThreadEnd {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.to_coordinator
            .send((self.link, Incoming::Bytes(bytes.to_vec())))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "coordinator gone"))?;
        Ok(bytes.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Connection for ThreadEnd {
    fn raw_fd(&self) -> Option<RawFd> {
        None
    }
    fn set_nonblocking(&self, _on: bool) -> io::Result<()> {
        Ok(())
    }
}

/// One worker thread, as the coordinator sees it (dropped to close its channel).
struct ThreadLink {
    to_worker: Sender<Vec<u8>>,
    peer: Peer,
    welcomed: bool,
}

pub(crate) struct InProcess {
    registry: Arc<Registry>,
    token: String,
    max_frame: usize,
    inbox: Receiver<(LinkId, Incoming)>,
    inbox_tx: Sender<(LinkId, Incoming)>,
    links: HashMap<LinkId, ThreadLink, IdHash>,
    /// Messages received while waiting for one thread's end.
    backlog: VecDeque<(LinkId, Incoming)>,
    /// Threads that ended, and how (a thread number is its link).
    ended: HashMap<u32, i32>,
    threads: Vec<std::thread::JoinHandle<()>>,
    next: LinkId,
}

impl InProcess {
    pub fn new(registry: Arc<Registry>, token: String, max_frame: usize) -> Self {
        worker::install_panic_hook();
        let (inbox_tx, inbox) = crossbeam_channel::unbounded();
        InProcess {
            registry,
            token,
            max_frame,
            inbox,
            inbox_tx,
            links: HashMap::default(),
            backlog: VecDeque::new(),
            ended: HashMap::new(),
            threads: Vec::new(),
            next: 1,
        }
    }

    fn take_in(&mut self, link: LinkId, incoming: Incoming, events: &mut Vec<Event>) {
        match incoming {
            Incoming::Bytes(bytes) => {
                let Some(l) = self.links.get_mut(&link) else {
                    return;
                };
                let start = events.len();
                let alive = l.peer.feed(&bytes, link, events);
                if !l.welcomed {
                    // The first frame is the greeting.
                    let greeting: Vec<Event> = events
                        .drain(start..)
                        .map(|e| super::as_greeting(e, link))
                        .collect();
                    events.extend(greeting);
                }
                if !alive {
                    self.links.remove(&link);
                }
            }
            Incoming::Ended(code) => {
                self.ended.insert(link as u32, code);
                if let Some(l) = self.links.remove(&link) {
                    if l.welcomed {
                        events.push(Event::Lost {
                            link,
                            cause: LossCause::ConnectionClosed,
                        });
                    }
                }
                events.push(Event::Exited {
                    pid: link as u32,
                    exit: WorkerExit::Code(code),
                });
            }
        }
    }
}

impl Transport for InProcess {
    fn address(&self) -> Option<String> {
        None
    }

    fn bulk(&self) -> Bulk {
        Bulk::Inline
    }

    fn replaceable(&self) -> bool {
        true
    }

    fn launches(&self) -> bool {
        true
    }

    /// A worker thread runs in this process.
    fn process_of(&self, _handle: u32) -> u32 {
        std::process::id()
    }

    fn spawn(&mut self, worker: u32) -> Result<u32, SpawnError> {
        let link = self.next;
        self.next += 1;
        let (to_worker, from_coordinator) = crossbeam_channel::unbounded();
        let end = ThreadEnd {
            link,
            from_coordinator,
            to_coordinator: self.inbox_tx.clone(),
            buf: Vec::new(),
            pos: 0,
        };
        let registry = self.registry.clone();
        let id = WorkerIdentity {
            worker_id: worker,
            token: self.token.clone(),
            max_frame: self.max_frame,
        };
        let tx = self.inbox_tx.clone();
        let handle = std::thread::Builder::new()
            .name(format!("agox-worker-{worker}"))
            .spawn(move || {
                let code = match worker::serve(Box::new(end), &registry, &id) {
                    Ok(_) => 0,
                    Err(_) => 3,
                };
                // The coordinator may be gone already: nobody to tell.
                let _ = tx.send((link, Incoming::Ended(code)));
            })
            .map_err(|e| SpawnError::Failed(format!("cannot start a worker thread: {e}")))?;
        self.threads.retain(|t| !t.is_finished());
        self.threads.push(handle);
        self.links.insert(
            link,
            ThreadLink {
                to_worker,
                peer: Peer::new(self.max_frame),
                welcomed: false,
            },
        );
        Ok(link as u32)
    }

    fn kill(&mut self, pid: u32, timeout: Duration) -> Option<WorkerExit> {
        let link = LinkId::from(pid);
        // Closing its channel ends the thread at its next read.
        self.links.remove(&link);
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(code) = self.ended.remove(&pid) {
                return Some(WorkerExit::Code(code));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.inbox.recv_timeout(left) {
                Ok((l, Incoming::Ended(code))) if l == link => {
                    return Some(WorkerExit::Code(code));
                }
                Ok(other) => self.backlog.push_back(other),
                Err(_) => return None,
            }
        }
    }

    fn wait(&mut self, timeout: Duration, events: &mut Vec<Event>) -> Result<(), PoolError> {
        let start = events.len();
        while let Some((link, incoming)) = self.backlog.pop_front() {
            self.take_in(link, incoming, events);
        }
        if events.len() == start {
            match self.inbox.recv_timeout(timeout) {
                Ok((link, incoming)) => self.take_in(link, incoming, events),
                Err(RecvTimeoutError::Timeout) => return Ok(()),
                // The transport holds a sender itself: never disconnected.
                Err(RecvTimeoutError::Disconnected) => return Ok(()),
            }
        }
        // Whatever else arrived meanwhile, a bounded amount per turn.
        for _ in 0..1024 {
            match self.inbox.try_recv() {
                Ok((link, incoming)) => self.take_in(link, incoming, events),
                Err(_) => break,
            }
        }
        Ok(())
    }

    fn drain(&mut self, link: LinkId, events: &mut Vec<Event>) {
        let mut keep = VecDeque::new();
        while let Ok(m) = self.inbox.try_recv() {
            self.backlog.push_back(m);
        }
        while let Some((l, incoming)) = self.backlog.pop_front() {
            if l == link && matches!(incoming, Incoming::Bytes(_)) {
                self.take_in(l, incoming, events);
            } else {
                keep.push_back((l, incoming));
            }
        }
        self.backlog = keep;
    }

    fn next_deadline(&self) -> Option<Instant> {
        None
    }

    fn welcome(&mut self, link: LinkId, pool_size: usize) -> Result<(), String> {
        let frame = encode_frame(&ToWorker::Welcome {
            pool_size: pool_size as u32,
        })
        .map_err(|e| e.to_string())?;
        let l = self
            .links
            .get_mut(&link)
            .ok_or_else(|| "the worker thread is gone".to_string())?;
        l.welcomed = true;
        l.peer.queue(&[Chunk::Own(frame)]);
        self.flush(link)
    }

    fn refuse(&mut self, link: LinkId, reason: &str) {
        if let Ok(frame) = encode_frame(&ToWorker::Refused {
            reason: reason.to_string(),
        }) {
            if let Some(l) = self.links.get(&link) {
                // A thread that ended takes no refusal: nothing to do.
                let _ = l.to_worker.send(frame);
            }
        }
        self.links.remove(&link);
    }

    fn close(&mut self, link: LinkId) {
        self.links.remove(&link);
    }

    fn batch(&mut self, link: LinkId) -> Option<&mut Vec<u8>> {
        self.links.get_mut(&link).map(|l| &mut l.peer.batch)
    }

    fn queue(&mut self, link: LinkId, chunks: &[Chunk]) {
        if let Some(l) = self.links.get_mut(&link) {
            l.peer.queue(chunks);
        }
    }

    fn flush(&mut self, link: LinkId) -> Result<(), String> {
        let Some(l) = self.links.get_mut(&link) else {
            return Ok(());
        };
        let Some(msg) = l.peer.take_message() else {
            return Ok(());
        };
        l.to_worker
            .send(msg)
            .map_err(|_| "the worker thread is gone".to_string())
    }

    fn shutdown(&mut self, grace: Duration) {
        if let Ok(frame) = encode_frame(&ToWorker::Shutdown) {
            for l in self.links.values().filter(|l| l.welcomed) {
                // A thread that ended needs no goodbye.
                let _ = l.to_worker.send(frame.clone());
            }
        }
        self.links.clear();
        // Threads in the middle of a long task are left to finish it: a thread
        // cannot be killed.
        let deadline = Instant::now() + grace;
        while self.threads.iter().any(|t| !t.is_finished()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        for t in self.threads.drain(..) {
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        self.shutdown(Duration::from_secs(2));
    }
}
