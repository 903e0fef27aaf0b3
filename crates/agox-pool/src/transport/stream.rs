//! Stream transports (Unix sockets, TCP): a listening endpoint, the door where new
//! connections greet, one [`Peer`] per greeted connection, and the launcher
//! whose exit notifications are polled beside the sockets — all readiness found by
//! one `poll(2)`.

use super::peer::Peer;
use super::{poll_fds, Bulk, Chunk, Connection, Endpoint, Event, LinkId, Transport};
use crate::error::PoolError;
use crate::events::{LossCause, WorkerExit};
use crate::handshake::{refuse, welcome, Admission, Door, ACCEPTS_PER_TURN};
use crate::launch::{Launcher, SpawnError};
use crate::sched::IdHash;
use agox_wire::{encode_frame, ToWorker};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// Pause in accepting after a full burst of [`ACCEPTS_PER_TURN`] connections: at
/// most 16 new connections per millisecond take the loop's time.
const ACCEPT_PAUSE: Duration = Duration::from_millis(1);

/// A greeted connection.
struct Link {
    conn: Box<dyn Connection>,
    peer: Peer,
    /// Welcomed (else greeted and waiting for the coordinator's verdict).
    welcomed: bool,
}

/// Who a polled descriptor belongs to.
#[derive(Clone, Copy)]
enum Owner {
    Link(LinkId),
    Waiting,
    Door,
    Launcher,
}

pub(crate) struct StreamTransport {
    /// Dropped last: the launcher's shutdown and the links go first.
    endpoint: Option<Box<dyn Endpoint>>,
    launcher: Option<Launcher>,
    door: Door,
    links: HashMap<LinkId, Link, IdHash>,
    next_link: LinkId,
    /// New connections are not accepted before this instant: after a full burst
    /// the door closes for a moment, so a flood costs the loop a bounded share.
    next_accept: Instant,
    my_uid: u32,
    /// Processes launched and not greeted yet: their connections are never pushed
    /// out of the door by a crowd of strangers.
    expecting: HashSet<u32>,
    bulk: Bulk,
    /// A worker whose slot is lost may connect again on its own (nobody launches
    /// them here).
    external: bool,
    max_frame: usize,
    fds: Vec<libc::pollfd>,
    owners: Vec<Owner>,
}

impl StreamTransport {
    pub fn new(
        endpoint: Box<dyn Endpoint>,
        launcher: Option<Launcher>,
        handshake_timeout: Duration,
        max_frame: usize,
        bulk: Bulk,
    ) -> Self {
        StreamTransport {
            endpoint: Some(endpoint),
            external: launcher.is_none(),
            launcher,
            door: Door::new(handshake_timeout),
            links: HashMap::default(),
            next_link: 0,
            next_accept: Instant::now(),
            my_uid: nix::unistd::geteuid().as_raw(),
            expecting: HashSet::new(),
            bulk,
            max_frame,
            fds: Vec::new(),
            owners: Vec::new(),
        }
    }

    /// Accepts waiting connections (a bounded number per turn) into the door, and
    /// reads their greeting at once.
    fn accept(&mut self, events: &mut Vec<Event>) {
        for _ in 0..ACCEPTS_PER_TURN {
            let Some(endpoint) = self.endpoint.as_ref() else {
                return;
            };
            let Ok(Some(conn)) = endpoint.accept() else {
                return;
            };
            let ours = conn
                .peer_pid()
                .is_some_and(|pid| self.expecting.contains(&pid));
            let fd = conn.raw_fd();
            for refusal in self.door.admit(conn, self.my_uid, ours) {
                events.push(Event::Refused(refusal));
            }
            // A worker greets right after connecting, and a flood's connections
            // are often closed already: read at once instead of a poll later.
            if let Some(fd) = fd.filter(|&fd| self.door.holds(fd)) {
                self.greeting(fd, events);
            }
        }
        // A full burst: more are probably waiting. They wait in the backlog (a
        // flooder's connect blocks there) while the loop serves its workers.
        self.next_accept = Instant::now() + ACCEPT_PAUSE;
    }

    /// Reads a waiting connection's greeting.
    fn greeting(&mut self, fd: i32, events: &mut Vec<Event>) {
        match self.door.readable(fd) {
            None => {}
            Some(Admission::Refused(r)) => events.push(Event::Refused(r)),
            Some(Admission::Greeted(hello, conn)) => {
                let link = self.next_link;
                self.next_link += 1;
                self.expecting.remove(&hello.pid);
                self.links.insert(
                    link,
                    Link {
                        conn,
                        peer: Peer::new(self.max_frame),
                        welcomed: false,
                    },
                );
                events.push(Event::Hello { link, hello });
            }
        }
    }

    fn read_link(&mut self, link: LinkId, events: &mut Vec<Event>) {
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        if !l.welcomed {
            return;
        }
        if !l.peer.read_stream(&mut *l.conn, link, events) {
            self.links.remove(&link);
        }
    }

    fn gather_exits(&mut self, events: &mut Vec<Event>) {
        let Some(launcher) = self.launcher.as_mut() else {
            return;
        };
        launcher.collect();
        for (pid, exit) in launcher.take_exits() {
            self.expecting.remove(&pid);
            events.push(Event::Exited { pid, exit });
        }
        // Forked workers die with the fork server (parent-death signal), and no
        // replacement can be launched.
        if let Some(why) = launcher.gone() {
            events.push(Event::LauncherGone(why.to_string()));
        }
    }
}

impl Transport for StreamTransport {
    fn address(&self) -> Option<String> {
        self.endpoint.as_ref().map(|e| e.address())
    }

    fn bulk(&self) -> Bulk {
        self.bulk
    }

    fn replaceable(&self) -> bool {
        true
    }

    fn launches(&self) -> bool {
        !self.external
    }

    fn spawn(&mut self, worker: u32) -> Result<u32, SpawnError> {
        let launcher = self
            .launcher
            .as_mut()
            .ok_or_else(|| SpawnError::Gone("workers are started outside the pool".to_string()))?;
        let pid = launcher.spawn(worker)?;
        self.expecting.insert(pid);
        Ok(pid)
    }

    fn kill(&mut self, pid: u32, timeout: Duration) -> Option<WorkerExit> {
        self.expecting.remove(&pid);
        let launcher = self.launcher.as_mut()?;
        launcher.kill(pid);
        launcher.wait_exit(pid, timeout)
    }

    fn wait(&mut self, timeout: Duration, events: &mut Vec<Event>) -> Result<(), PoolError> {
        self.fds.clear();
        self.owners.clear();
        let (fds, owners) = (&mut self.fds, &mut self.owners);
        let mut watch = |fd, events, owner| {
            fds.push(libc::pollfd {
                fd,
                events,
                revents: 0,
            });
            owners.push(owner);
        };
        for (&id, l) in &self.links {
            if let Some(fd) = l.conn.raw_fd() {
                let mut ev = libc::POLLIN;
                if l.peer.wants_write() {
                    ev |= libc::POLLOUT;
                }
                watch(fd, ev, Owner::Link(id));
            }
        }
        for fd in self.door.fds() {
            watch(fd, libc::POLLIN, Owner::Waiting);
        }
        let now = Instant::now();
        if now >= self.next_accept {
            if let Some(e) = &self.endpoint {
                watch(e.raw_fd(), libc::POLLIN, Owner::Door);
            }
        }
        if let Some(l) = &self.launcher {
            l.each_poll_fd(|fd| watch(fd, libc::POLLIN, Owner::Launcher));
        }
        // Exits gathered while waiting for another worker's are already here.
        let queued_exits = self.launcher.as_ref().is_some_and(|l| l.has_exits());
        let timeout = if queued_exits {
            Duration::ZERO
        } else {
            timeout
        };
        poll_fds(&mut self.fds, timeout).map_err(|e| PoolError::io("poll", e))?;
        let mut door = false;
        let mut exits = queued_exits;
        let ready: Vec<(i32, i16, Owner)> = self
            .fds
            .iter()
            .zip(self.owners.iter())
            .filter(|(p, _)| p.revents != 0)
            .map(|(p, o)| (p.fd, p.revents, *o))
            .collect();
        for (fd, revents, owner) in ready {
            match owner {
                Owner::Link(link) => {
                    if revents & libc::POLLOUT != 0 {
                        if let Err(e) = self.flush(link) {
                            self.links.remove(&link);
                            events.push(Event::Lost {
                                link,
                                cause: LossCause::Io(e),
                            });
                            continue;
                        }
                    }
                    if revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
                        self.read_link(link, events);
                    }
                }
                Owner::Waiting => self.greeting(fd, events),
                Owner::Door => door = true,
                Owner::Launcher => exits = true,
            }
        }
        // Waiting connections were served first: a flood of new ones cannot push
        // out a worker whose greeting has arrived.
        if door {
            self.accept(events);
        }
        if exits || self.launcher.as_ref().is_some_and(Launcher::needs_polling) {
            self.gather_exits(events);
        }
        for refusal in self.door.expire(Instant::now()) {
            events.push(Event::Refused(refusal));
        }
        Ok(())
    }

    fn drain(&mut self, link: LinkId, events: &mut Vec<Event>) {
        self.read_link(link, events);
    }

    fn next_deadline(&self) -> Option<Instant> {
        let now = Instant::now();
        let mut next = self.door.next_deadline();
        let mut at = |t: Instant| next = Some(next.map_or(t, |n: Instant| n.min(t)));
        if self.next_accept > now {
            at(self.next_accept);
        }
        if !self.expecting.is_empty() && self.launcher.as_ref().is_some_and(Launcher::needs_polling)
        {
            at(now + Duration::from_millis(5));
        }
        next
    }

    fn welcome(&mut self, link: LinkId, pool_size: usize) -> Result<(), String> {
        let l = self
            .links
            .get_mut(&link)
            .ok_or_else(|| "the connection is gone".to_string())?;
        if let Err(e) = welcome(&mut *l.conn, pool_size) {
            self.links.remove(&link);
            return Err(e);
        }
        l.welcomed = true;
        Ok(())
    }

    fn refuse(&mut self, link: LinkId, reason: &str) {
        if let Some(l) = self.links.remove(&link) {
            refuse(l.conn, reason);
        }
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
        match self.links.get_mut(&link) {
            Some(l) if l.peer.wants_write() => l
                .peer
                .flush_stream(&mut *l.conn)
                .map_err(|e| format!("write failed: {e}")),
            _ => Ok(()),
        }
    }

    fn shutdown(&mut self, grace: Duration) {
        // A polite goodbye where the socket takes it now; the launcher kills
        // whoever is left (a stopped worker must not stall the driver's exit).
        if let Ok(frame) = encode_frame(&ToWorker::Shutdown) {
            let bye = [Chunk::Own(frame)];
            for l in self.links.values_mut() {
                if l.welcomed && !l.peer.wants_write() {
                    l.peer.queue(&bye);
                    let _ = l.peer.flush_stream(&mut *l.conn);
                }
            }
        }
        self.links.clear();
        if let Some(mut l) = self.launcher.take() {
            l.shutdown(grace);
        }
        self.endpoint = None;
    }
}

impl Drop for StreamTransport {
    fn drop(&mut self) {
        self.shutdown(Duration::from_secs(2));
    }
}
