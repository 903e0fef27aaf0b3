//! A client that crashes, fails, closes, hangs, babbles or never starts: typed
//! errors with its own words, restarts within the budget, and nothing left behind.

use std::time::{Duration, Instant};

use agox_atoms::emt::Emt;
use agox_atoms::{CalcError, Calculator, ExternalFailure};
use agox_ipi::{Client, ClientError, ExitReason, SocketCalculator};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use crate::support::{
    ase_command, assert_agree, assert_no_clients_under, cluster, config, faulty_command, rattled,
    workdir, Tolerance, Traces,
};

#[test]
fn a_client_killed_mid_evaluation_is_restarted_and_the_retry_gives_the_same_result() {
    let dir = workdir();
    let once = dir.path().join("crashed");
    let command = faulty_command(&format!("--crash-on 2 --once {}", once.display()));
    let mut calc = SocketCalculator::new(config(command, &dir.path().join("c"))).unwrap();
    let a = cluster(&[79, 29], 8, 1);
    let b = cluster(&[79, 29], 8, 2);
    calc.calculate(&a, false).unwrap();
    let mut traces = Traces::of(calc.client());
    let first_pid = calc.client().pid();

    let e = calc.calculate(&b, false).unwrap_err();
    let CalcError::External { kind, message, .. } = &e else {
        panic!("{e}")
    };
    assert_eq!(*kind, ExternalFailure::Killed, "{message}");
    assert!(kind.is_retryable());
    assert!(
        message.contains("was killed by signal 9 (SIGKILL) during the evaluation"),
        "{message}"
    );
    assert!(
        message.contains("faulty_client: crashing in evaluation 2"),
        "{message}"
    );
    assert!(calc.client().pid().is_none(), "the crashed client is gone");

    // The caller retries: a new client, the same numbers as a healthy one.
    let retried = calc.calculate(&b, false).unwrap();
    traces.note(calc.client());
    assert_ne!(calc.client().pid(), first_pid);
    let stats = calc.client().stats();
    assert_eq!((stats.starts, stats.restarts_in_a_row), (2, 0));
    let want = Emt::new().calculate(&b, false).unwrap();
    assert_agree(
        "retried",
        (retried.energy, &retried.forces),
        (want.energy, &want.forces),
        Tolerance::Relative(1e-10),
    );

    let mut healthy =
        SocketCalculator::new(config(ase_command("emt"), &dir.path().join("h"))).unwrap();
    healthy.calculate(&a, false).unwrap();
    let clean = healthy.calculate(&b, false).unwrap();
    traces.note(healthy.client());
    assert_agree(
        "retried vs a healthy client",
        (retried.energy, &retried.forces),
        (clean.energy, &clean.forces),
        Tolerance::Bits,
    );
    drop((calc, healthy));
    traces.assert_gone();
    assert_no_clients_under(dir.path());
}

#[test]
fn a_client_that_reports_an_error_and_exits_fails_that_evaluation_with_its_message() {
    let dir = workdir();
    let mut client = Client::new(config(faulty_command("--fail-on 1"), dir.path())).unwrap();
    let atoms = cluster(&[29], 6, 3);
    let e = client.evaluate(&atoms).unwrap_err();
    assert!(
        matches!(
            e,
            ClientError::Ended {
                exit: ExitReason::Code(3),
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(e.kind(), ExternalFailure::Failed);
    let message = e.to_string();
    assert!(
        message.contains("SCF did not converge in evaluation 1"),
        "{message}"
    );
    assert!(
        message.contains(&dir.path().join("client.log").display().to_string()),
        "{message}"
    );
    let calc_error = CalcError::from(e);
    assert!(calc_error
        .to_string()
        .starts_with("socket: the client exited with status 3"));
    assert!(client.pid().is_none());
    assert_no_clients_under(dir.path());
}

#[test]
fn a_client_that_closes_the_connection_but_lingers_is_stopped() {
    let dir = workdir();
    let cfg = config(faulty_command("--close-on 1"), dir.path()).grace(Duration::from_millis(300));
    let mut client = Client::new(cfg).unwrap();
    let atoms = cluster(&[29], 6, 4);
    let e = client.evaluate(&atoms).unwrap_err();
    assert!(matches!(e, ClientError::Closed { .. }), "{e}");
    assert_eq!(e.kind(), ExternalFailure::Failed);
    assert!(e.to_string().contains("giving up on evaluation 1"), "{e}");
    assert!(client.pid().is_none());
    assert_no_clients_under(dir.path());
}

#[test]
fn an_evaluation_past_its_timeout_kills_the_client_and_the_next_one_restarts_it() {
    let dir = workdir();
    let once = dir.path().join("hung");
    let command = faulty_command(&format!("--hang-on 2 --once {}", once.display()));
    let cfg = config(command, &dir.path().join("c")).timeout(Duration::from_secs(2));
    let mut client = Client::new(cfg).unwrap();
    // Distinct structures: ASE's calculators skip a structure they have just computed.
    let a = cluster(&[79], 6, 5);
    let b = rattled(&a, 0.05, 5);
    client.evaluate(&a).unwrap();
    let mut traces = Traces::of(&client);
    let t0 = Instant::now();
    let e = client.evaluate(&b).unwrap_err();
    assert!(e.is_timeout(), "{e}");
    assert_eq!(e.kind(), ExternalFailure::TimedOut);
    assert!(e.to_string().contains("hanging in evaluation 2"), "{e}");
    assert!(t0.elapsed() < Duration::from_secs(8), "{:?}", t0.elapsed());
    traces.assert_no_processes();
    let again = client.evaluate(&b).unwrap();
    traces.note(&client);
    let want = Emt::new().calculate(&b, false).unwrap();
    assert_agree(
        "after the restart",
        (again.energy, &again.forces),
        (want.energy, &want.forces),
        Tolerance::Relative(1e-10),
    );
    assert_eq!(client.stats().starts, 2);
    drop(client);
    traces.assert_gone();
}

#[test]
fn garbage_from_the_client_is_a_protocol_error() {
    let dir = workdir();
    let mut client = Client::new(config(faulty_command("--garbage-on 1"), dir.path())).unwrap();
    let e = client.evaluate(&cluster(&[29], 4, 6)).unwrap_err();
    assert!(matches!(e, ClientError::Protocol { .. }), "{e}");
    assert_eq!(e.kind(), ExternalFailure::Protocol);
    assert!(
        e.to_string().contains(r#"unknown header "GARBAGE     ""#),
        "{e}"
    );
    assert_no_clients_under(dir.path());
}

#[test]
fn a_client_that_cannot_start_exhausts_its_restarts_with_its_message() {
    let dir = workdir();
    let cfg = config(faulty_command("--exit-at-start"), dir.path()).max_restarts(2);
    let mut client = Client::new(cfg).unwrap();
    let e = client.evaluate(&cluster(&[29], 4, 7)).unwrap_err();
    let ClientError::RestartLimit { restarts, last } = &e else {
        panic!("{e}")
    };
    assert_eq!(*restarts, 2);
    assert!(
        last.contains("exited with status 2 before connecting"),
        "{last}"
    );
    assert!(last.contains("license server unreachable"), "{last}");
    assert_eq!(client.stats().starts, 3);
    assert_eq!(e.kind(), ExternalFailure::Start);
    // Spent: later evaluations fail at once, starting nothing.
    assert!(matches!(
        client.evaluate(&cluster(&[29], 4, 7)),
        Err(ClientError::RestartLimit { .. })
    ));
    assert_eq!(client.stats().starts, 3);

    let cfg = config(
        "/nonexistent/dft-code --ipi {unix}".into(),
        &dir.path().join("n"),
    )
    .max_restarts(0);
    let mut client = Client::new(cfg).unwrap();
    let e = client.evaluate(&cluster(&[29], 4, 7)).unwrap_err();
    assert!(
        e.to_string()
            .contains("exited with status 127 before connecting"),
        "{e}"
    );
    assert!(e.to_string().contains("not found"), "{e}");
    assert_no_clients_under(dir.path());
}

#[test]
fn a_client_that_never_connects_times_out_and_is_stopped() {
    let dir = workdir();
    let cfg = config("sleep 30 # {unix}".into(), dir.path())
        .connect_timeout(Duration::from_millis(500))
        .max_restarts(0);
    let mut client = Client::new(cfg).unwrap();
    let t0 = Instant::now();
    let e = client.evaluate(&cluster(&[29], 4, 8)).unwrap_err();
    assert!(
        e.to_string()
            .contains("did not connect to unix socket /tmp/ipi_agox."),
        "{e}"
    );
    assert!(t0.elapsed() < Duration::from_secs(5));
    // The `sleep` was stopped with its wrapper.
    assert_no_clients_under(dir.path());
}

#[test]
fn a_client_that_died_while_idle_is_replaced_without_failing_the_evaluation() {
    let dir = workdir();
    let mut client = Client::new(config(ase_command("emt"), dir.path())).unwrap();
    let atoms = cluster(&[46], 7, 9);
    let first = client.evaluate(&atoms).unwrap();
    let mut traces = Traces::of(&client);
    let pgid = client.pid().unwrap();
    killpg(Pid::from_raw(pgid as i32), Signal::SIGKILL).unwrap();
    traces.assert_no_processes();
    let second = client.evaluate(&atoms).unwrap();
    traces.note(&client);
    assert_eq!(first.energy.to_bits(), second.energy.to_bits());
    assert_eq!(client.stats().starts, 2);
    assert_eq!(client.stats().failures, 0);
    drop(client);
    traces.assert_gone();
}

#[test]
fn a_structure_of_another_composition_is_refused() {
    let dir = workdir();
    let mut client = Client::new(config(ase_command("emt"), dir.path())).unwrap();
    client.evaluate(&cluster(&[79, 29], 6, 1)).unwrap();
    let e = client.evaluate(&cluster(&[29, 79], 6, 1)).unwrap_err();
    assert!(matches!(e, ClientError::Composition { .. }));
    assert_eq!(
        e.to_string(),
        "this client serves [Au Cu Au Cu Au Cu] with pbc F F F, but the structure is \
         [Cu Au Cu Au Cu Au] with pbc F F F: the i-PI protocol sends no element list, so \
         one client serves one composition in one atom order"
    );
    assert!(matches!(CalcError::from(e), CalcError::Invalid { .. }));
    // The client is still fine.
    client.evaluate(&cluster(&[79, 29], 6, 2)).unwrap();
    drop(client);
    assert_no_clients_under(dir.path());
}
