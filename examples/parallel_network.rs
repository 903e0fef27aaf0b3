//! A small neural network on every worker. Its `weights` are a dynamic attribute:
//! after changing them and synchronizing, parallel forward passes still match the
//! serial ones. Its `bias` is not dynamic: changing it on the driver is NOT seen by
//! the workers, so the results stop matching — the documented way to get a mismatch.
//!
//! `cargo run --example parallel_network`

use agox::pool::{
    dynamic_attributes, Link, Module, Pool, PoolConfig, Registry, TaskContext, TaskError,
};
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Clone)]
struct Network {
    inputs: usize,
    hidden: usize,
    /// Hidden-layer weights (hidden × inputs, row-major) then output weights (hidden).
    weights: Vec<f64>,
    /// Output bias: an ordinary field, not synchronized.
    bias: f64,
}

impl Module for Network {
    const TYPE_NAME: &'static str = "Network";
    dynamic_attributes!(weights);
}

impl Network {
    fn random(inputs: usize, hidden: usize, seed: u64) -> Self {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let weights = (0..hidden * inputs + hidden)
            .map(|_| rng.gen_range(-1.0..1.0))
            .collect();
        Network {
            inputs,
            hidden,
            weights,
            bias: 0.0,
        }
    }

    fn forward(&self, x: &[f64]) -> f64 {
        let (w1, w2) = self.weights.split_at(self.hidden * self.inputs);
        let hidden = w1
            .chunks(self.inputs)
            .map(|row| row.iter().zip(x).map(|(w, x)| w * x).sum::<f64>().tanh());
        hidden.zip(w2).map(|(h, w)| h * w).sum::<f64>() + self.bias
    }
}

fn forward(ctx: &TaskContext, (net, x): (Link<Network>, Vec<f64>)) -> Result<f64, TaskError> {
    Ok(ctx.module(&net)?.forward(&x))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut registry = Registry::new();
    registry.module::<Network>();
    let f = registry.function("forward", forward);
    let pool = Pool::start(registry, PoolConfig::with_workers(2))?;

    let net = pool.add_module("net", Network::random(4, 16, 1))?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
    let inputs: Vec<Vec<f64>> = (0..10)
        .map(|_| (0..4).map(|_| rng.gen()).collect())
        .collect();
    let args = || {
        inputs
            .iter()
            .map(|x| (net.link(), x.clone()))
            .collect::<Vec<_>>()
    };
    let serial = |n: &Network| inputs.iter().map(|x| n.forward(x)).collect::<Vec<_>>();

    let parallel = pool.map(&f, args())?;
    println!(
        "1. fresh network:             parallel == serial: {}",
        parallel == serial(&net.lock())
    );

    *net.lock() = Network {
        bias: 0.0,
        ..Network::random(4, 16, 3)
    };
    let report = pool.synchronize()?;
    let parallel = pool.map(&f, args())?;
    println!(
        "2. new weights, synchronized: parallel == serial: {}  ({report})",
        parallel == serial(&net.lock())
    );

    net.lock().bias = 0.5;
    let report = pool.synchronize()?;
    let parallel = pool.map(&f, args())?;
    let matches = parallel == serial(&net.lock());
    println!("3. new bias, synchronized:    parallel == serial: {matches}  ({report})");
    println!(
        "   `bias` is not a dynamic attribute, so synchronize() did not send it: the workers \
         still use the bias they received when the module was added (0.0), the driver uses 0.5."
    );
    if matches {
        return Err("expected a mismatch after changing a non-dynamic field".into());
    }
    Ok(())
}
