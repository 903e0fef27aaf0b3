//! Modules on workers: per-worker state, deltas, interconnection, self-sync.

use super::common::{pool, Acquisitor, Counter, Model};
use agox::pool::Link;

#[test]
fn each_worker_keeps_its_own_copy() {
    let (pool, f) = pool(4);
    let c = pool.add_module("counter", Counter::default()).unwrap();
    assert_eq!(
        pool.broadcast(&f.read, &c.link()).unwrap(),
        vec![0, 0, 0, 0]
    );
    assert_eq!(pool.run_on(0, &f.incr, &c.link()).unwrap(), 1);
    assert_eq!(
        pool.broadcast(&f.read, &c.link()).unwrap(),
        vec![1, 0, 0, 0]
    );
    assert!(pool.run_on(9, &f.read, &c.link()).is_err());
    // The driver's copy is untouched by the workers.
    assert_eq!(c.lock().count, 0);
    pool.remove_module("counter").unwrap();
    let err = pool.broadcast(&f.read, &c.link()).unwrap_err().to_string();
    assert!(err.contains("no module 'counter'"), "{err}");
}

#[test]
fn only_changed_attributes_are_sent() {
    let (pool, f) = pool(2);
    let m = pool
        .add_module(
            "model",
            Model {
                weights: vec![1.0, 2.0],
                version: 1,
                bias: 0.5,
            },
        )
        .unwrap();
    // Nothing changed since add: nothing moves.
    let r = pool.synchronize().unwrap();
    assert_eq!((r.modules, r.attributes, r.bytes), (0, 0, 0), "{r}");

    m.lock().weights = vec![3.0, 4.0];
    let r = pool.synchronize().unwrap();
    assert_eq!(r.attributes, 1, "{r}");
    assert_eq!(r.names, vec!["model.weights".to_string()]);
    assert!(r.bytes >= 2 * 16, "{r}");
    assert_eq!(pool.map(&f.predict, [(m.link(), 1.0)]).unwrap(), vec![7.5]);

    // Unchanged again: not resent.
    let r = pool.synchronize().unwrap();
    assert_eq!(r.attributes, 0, "{r}");

    // Setting the same value is no change either.
    m.lock().weights = vec![3.0, 4.0];
    m.lock().version = 2;
    let r = pool.synchronize().unwrap();
    assert_eq!(r.names, vec!["model.version".to_string()], "{r}");

    // A static field is never synchronized: workers keep the value from `add`.
    m.lock().bias = 100.0;
    let r = pool.synchronize().unwrap();
    assert_eq!(r.attributes, 0);
    for state in pool.broadcast(&f.model_state, &m.link()).unwrap() {
        assert_eq!(
            state,
            Model {
                weights: vec![3.0, 4.0],
                version: 2,
                bias: 0.5
            }
        );
    }
    let totals = pool.stats().sync;
    assert_eq!(totals.syncs, 5);
    assert_eq!(totals.attributes, 2);
}

#[test]
fn linked_module_resolves_to_the_workers_copy() {
    let (pool, f) = pool(2);
    let m = pool
        .add_module("model", Model::new(vec![1.0], 0.0))
        .unwrap();
    let a = pool
        .add_module(
            "acq",
            Acquisitor {
                model: m.link(),
                kappa: 0.5,
            },
        )
        .unwrap();
    assert_eq!(
        pool.map(&f.acquire, vec![(a.link(), 2.0); 4]).unwrap(),
        vec![1.5; 4]
    );
    // Update the model only; the acquisitor on every worker sees the new model.
    m.lock().weights = vec![10.0];
    pool.synchronize().unwrap();
    assert_eq!(
        pool.map(&f.acquire, vec![(a.link(), 2.0); 4]).unwrap(),
        vec![19.5; 4]
    );
    // A link to a module that is not there is a clear task error.
    let ghost: Link<Model> = Link::new("ghost");
    let err = pool
        .map(&f.predict, [(ghost, 1.0)])
        .unwrap_err()
        .to_string();
    assert!(err.contains("no module 'ghost'"), "{err}");
}

#[test]
fn module_synchronizes_itself() {
    let (pool, f) = pool(2);
    let m = pool
        .add_module("model", Model::new(vec![1.0], 0.0))
        .unwrap();
    {
        let mut guard = m.lock();
        guard.weights = vec![2.0];
        guard.version = 9;
        // What a module does from inside its own method, with itself locked.
        let r = pool
            .synchronize_from("model", &*guard, Some(&["weights"]))
            .unwrap();
        assert_eq!(r.names, vec!["model.weights".to_string()]);
    }
    assert_eq!(pool.map(&f.predict, [(m.link(), 1.0)]).unwrap(), vec![2.0]);
    let err = pool
        .synchronize_module("model", Some(&["nope"]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("no dynamic attribute 'nope'"), "{err}");
    let err = pool
        .synchronize_module("missing", None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("no module 'missing'"), "{err}");
    let r = pool.synchronize_module("model", None).unwrap();
    assert_eq!(r.names, vec!["model.version".to_string()]);
}

#[test]
fn large_attribute_reaches_every_worker() {
    let (pool, f) = pool(2);
    let m = pool.add_module("model", Model::new(vec![], 0.0)).unwrap();
    m.lock().weights = (0..1_000_000).map(|i| i as f64 * 1e-6).collect();
    let r = pool.synchronize().unwrap();
    assert!(r.bytes >= 2 * 8_000_000, "{r}");
    let expect: f64 = m.lock().weights.iter().sum();
    for v in pool.broadcast(&f.predict, &(m.link(), 1.0)).unwrap() {
        assert_eq!(v, expect);
    }
    // A new value of the same size and one of another size (the coordinator reuses
    // the memory of the value it no longer needs), each seen by every worker.
    for n in [1_000_000usize, 300_000] {
        m.lock().weights = (0..n).map(|i| (i % 97) as f64).collect();
        m.lock().version += 1;
        let r = pool.synchronize().unwrap();
        assert_eq!(r.attributes, 2, "{r}");
        let expect: f64 = m.lock().weights.iter().sum();
        for state in pool.broadcast(&f.model_state, &m.link()).unwrap() {
            assert_eq!(state.weights.len(), n);
            assert_eq!(state.weights.iter().sum::<f64>(), expect);
        }
    }
}

#[test]
fn unregistered_module_type_is_refused() {
    use serde::{Deserialize, Serialize};
    #[derive(Serialize, Deserialize)]
    struct Stranger;
    impl agox::pool::Module for Stranger {
        const TYPE_NAME: &'static str = "Stranger";
    }
    let (pool, _f) = pool(1);
    let err = pool.add_module("s", Stranger).unwrap_err().to_string();
    assert!(err.contains("'Stranger' is not registered"), "{err}");
}

#[test]
fn self_synchronizing_module_is_skipped_and_pushes_itself() {
    use super::common::SelfSync;
    let (pool, f) = pool(2);
    let m = pool
        .add_module(
            "self",
            SelfSync {
                values: vec![1.0],
                key: "self".into(),
                pool: None,
            },
        )
        .unwrap();
    m.lock().pool = Some(pool.clone());
    assert_eq!(m.lock().seen_by_workers(&f.selfsync_sum), vec![1.0; 4]);

    // The end-of-iteration synchronization leaves a self-synchronizing module alone.
    m.lock().values = vec![5.0];
    let r = pool.synchronize().unwrap();
    assert_eq!(r.attributes, 0, "{r}");
    assert_eq!(m.lock().seen_by_workers(&f.selfsync_sum), vec![1.0; 4]);

    // It pushes itself, from inside its own method, while the driver copy is locked.
    let r = m.lock().update(vec![2.0, 3.0]);
    assert_eq!(r.names, vec!["self.values".to_string()], "{r}");
    assert_eq!(m.lock().seen_by_workers(&f.selfsync_sum), vec![5.0; 4]);
}
