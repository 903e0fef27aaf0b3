//! Where the socket lives, what reaches the client, and that the client's whole
//! process group ends with its owner, however the owner ends.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use agox_ipi::{live_group_members, Address, Client};

use crate::support::{ase_command, cluster, config, eventually, workdir, Traces};

fn socket_path(client: &Client) -> PathBuf {
    match client.address() {
        Address::Unix { path, .. } => path.clone(),
        Address::Tcp { .. } => panic!("not a unix socket"),
    }
}

#[test]
fn the_socket_lives_in_a_private_directory_under_the_ipi_prefix() {
    let dir = workdir();
    let client = Client::new(config(ase_command("emt"), dir.path())).unwrap();
    let Address::Unix { name, path } = client.address().clone() else {
        panic!("unix is the default")
    };
    assert_eq!(path, Path::new(&format!("/tmp/ipi_{name}")));
    assert!(
        name.starts_with("agox.") && name.ends_with("/sock"),
        "{name}"
    );
    let private = path.parent().unwrap().to_path_buf();
    let mode = std::fs::metadata(&private).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700, "{mode:o}");
    assert!(client
        .rendered_command()
        .contains(&format!("--unix {name} ")));
    drop(client);
    assert!(!private.exists());
}

#[test]
fn the_client_runs_in_its_directory_with_the_placeholders_and_logs_its_output() {
    let dir = workdir();
    let work = dir.path().join("worker 3");
    let command = format!(
        "echo cwd=\"$(pwd)\" dir={{dir}} worker={{worker}} env=\"$AGOX_IPI_WORKER,$AGOX_IPI_UNIX\"; {}",
        ase_command("emt")
    );
    let log = dir.path().join("logs/client-3.log");
    let mut client = Client::new(config(command, &work).worker(3).log(&log)).unwrap();
    client.evaluate(&cluster(&[29], 4, 1)).unwrap();
    let traces = Traces::of(&client);
    let Address::Unix { name, .. } = client.address().clone() else {
        panic!()
    };
    drop(client);
    traces.assert_gone();
    let text = std::fs::read_to_string(&log).unwrap();
    let work = work.display().to_string();
    assert!(
        text.contains("=== agox-ipi: start 1 of the client (worker 3)"),
        "{text}"
    );
    assert!(
        text.contains(&format!("cwd={work} dir={work} worker=3 env=3,{name}")),
        "{text}"
    );
    assert!(text.contains("ase_client: emt for Cu4"), "{text}");
    // The structure the client was started with, readable by ASE.
    assert!(Path::new(&work).join(agox_ipi::STRUCTURE_FILE).exists());
}

#[test]
fn dropping_the_client_ends_children_that_ignore_sigterm() {
    let dir = workdir();
    // A stand-in for an MPI launcher's helper: in the group, deaf to SIGTERM.
    let command = format!("(trap '' TERM; exec sleep 300) & {}", ase_command("emt"));
    let cfg = config(command, dir.path()).grace(Duration::from_millis(500));
    let mut client = Client::new(cfg).unwrap();
    client.evaluate(&cluster(&[29], 4, 2)).unwrap();
    let traces = Traces::of(&client);
    let pgid = client.pid().unwrap() as i32;
    assert!(
        live_group_members(pgid).len() >= 3,
        "{:?}",
        live_group_members(pgid)
    );
    let t0 = Instant::now();
    drop(client);
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    traces.assert_gone();
}

/// The owner's side of the next test, run in a child process of this binary.
#[test]
#[ignore = "an owner process for an_owner_killed_by_sigkill_takes_its_clients_group_and_socket_along"]
fn owner_process() {
    let dir = PathBuf::from(std::env::var("AGOX_IPI_OWNER_DIR").unwrap());
    let command = format!("(trap '' TERM; exec sleep 300) & {}", ase_command("emt"));
    let mut client = Client::new(config(command, &dir.join("client"))).unwrap();
    client.evaluate(&cluster(&[29], 4, 3)).unwrap();
    let report = format!(
        "{}\n{}\n",
        client.pid().unwrap(),
        socket_path(&client).display()
    );
    std::fs::write(dir.join("owner.tmp"), report).unwrap();
    std::fs::rename(dir.join("owner.tmp"), dir.join("owner.txt")).unwrap();
    std::thread::sleep(Duration::from_secs(120));
}

#[test]
fn an_owner_killed_by_sigkill_takes_its_clients_group_and_socket_along() {
    let dir = workdir();
    let mut owner = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "lifecycle::owner_process",
            "--nocapture",
        ])
        .env("AGOX_IPI_OWNER_DIR", dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let report = dir.path().join("owner.txt");
    let ready = eventually(Duration::from_secs(60), || report.exists());
    if !ready {
        owner.kill().unwrap();
        owner.wait().unwrap();
        panic!("the owner did not start its client");
    }
    let text = std::fs::read_to_string(&report).unwrap();
    let mut lines = text.lines();
    let pgid: i32 = lines.next().unwrap().parse().unwrap();
    let socket = PathBuf::from(lines.next().unwrap());
    assert!(live_group_members(pgid).len() >= 3);
    assert!(socket.exists());

    owner.kill().unwrap();
    owner.wait().unwrap();
    assert!(
        eventually(Duration::from_secs(10), || live_group_members(pgid)
            .is_empty()),
        "left behind: {:?}",
        live_group_members(pgid)
    );
    assert!(
        eventually(Duration::from_secs(2), || !socket
            .parent()
            .unwrap()
            .exists()),
        "{} left behind; the client's log:\n{}",
        socket.display(),
        std::fs::read_to_string(dir.path().join("client/client.log")).unwrap_or_default()
    );
}
