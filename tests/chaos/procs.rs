//! A driver's processes, found through `/proc`: its fork server (its child) and the
//! workers (the fork server's children).

pub use super::proc::{eventually, process_alive as alive};

/// The children of `pid` (every thread's), zombies excluded.
pub fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut out: Vec<u32> = tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|s| {
            s.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .filter(|&p| alive(p))
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// The driver's fork server.
pub fn fork_server(driver: u32) -> Option<u32> {
    children(driver).into_iter().next()
}

/// The driver's live workers.
pub fn workers(driver: u32) -> Vec<u32> {
    children(driver).into_iter().flat_map(children).collect()
}

/// Every live process below `pid`.
pub fn descendants(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut todo = children(pid);
    while let Some(p) = todo.pop() {
        todo.extend(children(p));
        out.push(p);
    }
    out
}

/// Sends `signal` to `pid`; true when the process existed.
pub fn signal(pid: u32, signal: nix::sys::signal::Signal) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal).is_ok()
}
