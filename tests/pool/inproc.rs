//! The scheduling and synchronization tests again, on in-process workers: threads
//! of this process speaking the same frames through channels. The assertions are
//! those of the process tests, word for word; only the transport differs.

mod common {
    pub use crate::common::*;
    use agox::pool::{Pool, PoolConfig, TransportConfig};

    pub fn pool(workers: usize) -> (Pool, Fns) {
        pool_with(PoolConfig::with_workers(workers).seed(7))
    }

    pub fn pool_with(cfg: PoolConfig) -> (Pool, Fns) {
        crate::common::pool_with(cfg.transport(TransportConfig::InProcess))
    }
}

#[path = "scheduling.rs"]
mod scheduling;
#[path = "state.rs"]
mod state;
