//! The client's process: started through a small shell wrapper in a process group
//! of its own, its output appended to a log, stopped with escalating signals, and
//! never left behind.
//!
//! # Why a wrapper
//! The command is a shell command (`mpirun -n 4 pw.x --ipi {unix}:UNIX < pw.in`),
//! so it runs under `/bin/sh`. The shell is the group leader, started with a
//! parent-death signal (SIGHUP): if the owning process dies, even by SIGKILL, the
//! kernel hangs the wrapper up, and the wrapper sends SIGTERM to its whole group
//! (`mpirun` forwards it to its ranks), removes the socket directory once it sees
//! the owner gone, and SIGKILLs the group about a second later. Without it, only the
//! direct child would get the signal and `mpirun`'s ranks would live on.
//!
//! Linux sends the parent-death signal when the *thread* that forked the child
//! ends, not the process. Children are therefore forked by one thread per owner
//! (`Spawner`), which lives exactly as long as the owner, whichever threads the
//! owner is used from.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

/// The wrapper: `$1` is the socket directory (empty for TCP), `$2` the command.
const WRAPPER: &str = r#"
socket_dir=$1
owner=$PPID
hangup() {
    trap '' HUP TERM
    kill -TERM 0 2>/dev/null
    # The thread that started us has ended. If the whole owner is dying, we are
    # reparented within moments; if we are not, the owner lives on and keeps its
    # socket directory.
    ppid=$owner
    n=0
    while [ "$ppid" = "$owner" ] && [ $n -lt 10 ]; do
        sleep 0.1
        read -r _pid _comm _state ppid _rest < /proc/$$/stat 2>/dev/null
        n=$((n + 1))
    done
    if [ -n "$socket_dir" ] && [ "$ppid" != "$owner" ]; then
        rm -f "$socket_dir/sock"
        rmdir "$socket_dir" 2>/dev/null
    fi
    sleep 1
    kill -KILL 0
}
trap hangup HUP
eval "$2" &
wait $!
"#;

/// Forks client processes from a thread that lives as long as its owner.
pub(crate) struct Spawner {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<thread::JoinHandle<()>>,
}

struct Job {
    command: Command,
    reply: mpsc::SyncSender<io::Result<Child>>,
}

impl Spawner {
    pub(crate) fn new() -> io::Result<Spawner> {
        let (jobs, rx) = mpsc::channel::<Job>();
        let thread = thread::Builder::new()
            .name("agox-ipi-spawner".into())
            .spawn(move || {
                for mut job in rx {
                    // The requester waits for this reply; if it went away, the
                    // child is dropped unreaped, which cannot happen while the
                    // requester blocks in `spawn`.
                    let _ = job.reply.send(job.command.spawn());
                }
            })?;
        Ok(Spawner {
            jobs: Some(jobs),
            thread: Some(thread),
        })
    }

    fn spawn(&self, command: Command) -> io::Result<Child> {
        let gone = || io::Error::other("the spawner thread has ended");
        let (reply, answer) = mpsc::sync_channel(1);
        self.jobs
            .as_ref()
            .ok_or_else(gone)?
            .send(Job { command, reply })
            .map_err(|_| gone())?;
        answer.recv().map_err(|_| gone())?
    }
}

impl Drop for Spawner {
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitReason {
    /// It exited with this status.
    Code(i32),
    /// A signal ended it (the command itself, as the wrapper shell reports it,
    /// or the wrapper).
    Signal(i32),
}

impl ExitReason {
    fn of(status: ExitStatus) -> ExitReason {
        match (status.code(), status.signal()) {
            // The shell reports a child killed by signal n as status 128 + n.
            (Some(c), _) if (129..=192).contains(&c) => ExitReason::Signal(c - 128),
            (Some(c), _) => ExitReason::Code(c),
            (None, Some(s)) => ExitReason::Signal(s),
            (None, None) => ExitReason::Code(-1),
        }
    }
}

impl fmt::Display for ExitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ExitReason::Code(c) => write!(f, "exited with status {c}"),
            ExitReason::Signal(s) => match Signal::try_from(s) {
                Ok(sig) => write!(f, "was killed by signal {s} ({})", sig.as_str()),
                Err(_) => write!(f, "was killed by signal {s}"),
            },
        }
    }
}

/// The end of a client's log since it was started, to put in errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogTail {
    /// The log file.
    pub path: PathBuf,
    /// Its last lines (at most 25 lines, 4 KiB) written since the client started.
    pub text: String,
}

impl fmt::Display for LogTail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.text.trim().is_empty() {
            return write!(f, " (its log {} is empty)", self.path.display());
        }
        write!(f, "; the end of its log {}:", self.path.display())?;
        for line in self.text.lines() {
            write!(f, "\n    | {line}")?;
        }
        Ok(())
    }
}

const TAIL_BYTES: u64 = 4096;
const TAIL_LINES: usize = 25;

/// What a client process needs to start.
pub(crate) struct Launch<'a> {
    /// The rendered shell command.
    pub command: &'a str,
    /// Its working directory.
    pub dir: &'a Path,
    /// Extra environment.
    pub env: Vec<(&'static str, String)>,
    /// Where stdout and stderr go (appended).
    pub log: &'a Path,
    /// A line written to the log before the client starts.
    pub banner: String,
    /// The socket's private directory, which the wrapper removes if the owner dies.
    pub socket_dir: Option<&'a Path>,
}

/// A running (or ended, not yet stopped) client and its process group.
pub(crate) struct ClientProcess {
    child: Child,
    status: Option<ExitStatus>,
    /// True once the group has been seen empty: never signal it again (its id
    /// may be reused).
    group_gone: bool,
    log: PathBuf,
    log_start: u64,
}

impl ClientProcess {
    pub(crate) fn launch(
        spawner: &Spawner,
        spec: &Launch<'_>,
    ) -> Result<ClientProcess, LaunchError> {
        let log_err = |source| LaunchError::Log {
            path: spec.log.to_path_buf(),
            source,
        };
        if let Some(parent) = spec.log.parent() {
            std::fs::create_dir_all(parent).map_err(log_err)?;
        }
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(spec.log)
            .map_err(log_err)?;
        writeln!(log, "{}", spec.banner).map_err(log_err)?;
        let log_start = log.seek(SeekFrom::End(0)).map_err(log_err)?;
        let stderr = log.try_clone().map_err(log_err)?;

        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(WRAPPER)
            .arg("agox-ipi-client")
            .arg(spec.socket_dir.map(Path::as_os_str).unwrap_or_default())
            .arg(spec.command)
            .current_dir(spec.dir)
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr)
            .process_group(0);
        let owner = std::process::id();
        // SAFETY: the closure runs in the forked child before exec and calls only
        // async-signal-safe functions (prctl, sigaction, getppid); it allocates
        // nothing.
        #[allow(unsafe_code)]
        unsafe {
            cmd.pre_exec(move || child_setup(owner));
        }
        let child = spawner
            .spawn(cmd)
            .map_err(|source| LaunchError::Spawn { source })?;
        Ok(ClientProcess {
            child,
            status: None,
            group_gone: false,
            log: spec.log.to_path_buf(),
            log_start,
        })
    }

    /// The wrapper's pid, which is also the process group's id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    fn pgid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    /// How the client ended, if it has (reaps it).
    pub(crate) fn poll_exit(&mut self) -> Option<ExitReason> {
        if self.status.is_none() {
            // An error here means the child was already reaped, which only this
            // type does; treat it as still running until `stop` settles it.
            if let Ok(Some(s)) = self.child.try_wait() {
                self.status = Some(s);
            }
        }
        self.status.map(ExitReason::of)
    }

    /// Waits up to `limit` for the client to end.
    pub(crate) fn wait_exit(&mut self, limit: Duration) -> Option<ExitReason> {
        let t0 = Instant::now();
        loop {
            if let Some(r) = self.poll_exit() {
                return Some(r);
            }
            if t0.elapsed() >= limit {
                return None;
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Ends the whole group: SIGTERM, up to `grace` for it to go, then SIGKILL.
    /// Returns once the wrapper is reaped and the group is empty (or, for members
    /// that ignore even SIGKILL while stuck in the kernel, after another `grace`).
    pub(crate) fn stop(&mut self, grace: Duration) {
        if self.settled() {
            return;
        }
        self.signal(Signal::SIGTERM);
        let t0 = Instant::now();
        while t0.elapsed() < grace {
            if self.settled() {
                return;
            }
            thread::sleep(Duration::from_millis(5));
        }
        self.signal(Signal::SIGKILL);
        if self.status.is_none() {
            if let Ok(s) = self.child.wait() {
                self.status = Some(s);
            }
        }
        let t0 = Instant::now();
        while !self.settled() && t0.elapsed() < grace {
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// True once the wrapper is reaped and no live process remains in the group.
    fn settled(&mut self) -> bool {
        if self.poll_exit().is_none() {
            return false;
        }
        if !self.group_gone && group_is_empty(self.pgid()) {
            self.group_gone = true;
        }
        self.group_gone
    }

    fn signal(&self, sig: Signal) {
        if !self.group_gone {
            // ESRCH: the group is already empty.
            let _ = killpg(self.pgid(), sig);
        }
    }

    /// The end of what the client wrote since it started.
    pub(crate) fn tail(&self) -> LogTail {
        LogTail {
            path: self.log.clone(),
            text: read_tail(&self.log, self.log_start).unwrap_or_default(),
        }
    }
}

impl Drop for ClientProcess {
    fn drop(&mut self) {
        // Owners stop their client first; this is the safety net for panics.
        self.stop(Duration::ZERO);
    }
}

/// Why a client could not be started.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LaunchError {
    #[error("cannot open the client's log {}", path.display())]
    Log {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot start /bin/sh for the client")]
    Spawn {
        #[source]
        source: io::Error,
    },
}

/// In the child, between fork and exec.
fn child_setup(owner: u32) -> io::Result<()> {
    use nix::sys::signal::{signal, SigHandler};
    nix::sys::prctl::set_pdeathsig(Signal::SIGHUP)?;
    // An owner started under `nohup` ignores SIGHUP, and a shell cannot trap a
    // signal that was ignored when it started: restore the defaults.
    for sig in [Signal::SIGHUP, Signal::SIGTERM, Signal::SIGINT] {
        // SAFETY: setting a default disposition installs no handler.
        #[allow(unsafe_code)]
        unsafe {
            signal(sig, SigHandler::SigDfl)?;
        }
    }
    // The owner may have died between fork and prctl; then nobody will send the
    // hang-up, so do not start at all.
    if std::os::unix::process::parent_id() != owner {
        return Err(io::Error::from_raw_os_error(Errno::ESRCH as i32));
    }
    Ok(())
}

/// True when no live (non-zombie) process is in group `pgid`.
pub(crate) fn group_is_empty(pgid: Pid) -> bool {
    match nix::sys::signal::kill(Pid::from_raw(-pgid.as_raw()), None) {
        Err(Errno::ESRCH) => true,
        // Something is there; zombies awaiting their new parent's reaping count
        // as gone.
        _ => live_group_members(pgid.as_raw()).is_empty(),
    }
}

/// Pids of the live (not zombie) processes whose process group is `pgid`.
pub fn live_group_members(pgid: i32) -> Vec<i32> {
    live_processes()
        .filter(|(_, group)| *group == pgid)
        .map(|(pid, _)| pid)
        .collect()
}

/// Every live (not zombie) process visible in /proc, with its process group.
pub fn live_processes() -> impl Iterator<Item = (i32, i32)> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // After the command name (which may hold spaces): state, ppid, pgrp.
            let (_, rest) = stat.rsplit_once(") ")?;
            let mut fields = rest.split_whitespace();
            let state = fields.next()?;
            let pgrp = fields.nth(1)?.parse::<i32>().ok()?;
            (state != "Z" && state != "X").then_some((pid, pgrp))
        })
}

fn read_tail(path: &Path, start: u64) -> io::Result<String> {
    let mut f = File::open(path)?;
    let end = f.seek(SeekFrom::End(0))?;
    let from = start.max(end.saturating_sub(TAIL_BYTES));
    f.seek(SeekFrom::Start(from))?;
    let mut bytes = Vec::new();
    f.take(end - from).read_to_end(&mut bytes)?;
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().collect();
    let keep = &lines[lines.len().saturating_sub(TAIL_LINES)..];
    Ok(keep.join("\n"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn exit_reasons_read_the_shells_signal_convention() {
        assert_eq!(
            ExitReason::of(ExitStatus::from_raw(3 << 8)),
            ExitReason::Code(3)
        );
        assert_eq!(
            ExitReason::of(ExitStatus::from_raw(137 << 8)),
            ExitReason::Signal(9)
        );
        assert_eq!(
            ExitReason::of(ExitStatus::from_raw(9)),
            ExitReason::Signal(9)
        );
        assert_eq!(
            ExitReason::Signal(9).to_string(),
            "was killed by signal 9 (SIGKILL)"
        );
        assert_eq!(ExitReason::Code(3).to_string(), "exited with status 3");
    }

    #[test]
    fn the_tail_starts_at_this_clients_start_and_keeps_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let mut text = String::from("from an earlier client\n");
        let start = text.len() as u64;
        for i in 0..40 {
            text.push_str(&format!("line {i}\n"));
        }
        std::fs::write(&path, &text).unwrap();
        let tail = read_tail(&path, start).unwrap();
        assert_eq!(tail.lines().count(), TAIL_LINES);
        assert!(tail.starts_with("line 15") && tail.ends_with("line 39"));
        assert_eq!(read_tail(&path, text.len() as u64).unwrap(), "");
    }
}
