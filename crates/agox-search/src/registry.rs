//! The registry of the `agox-coord` program.
//!
//! Workers find module types and functions by name, and the handshake compares
//! registry fingerprints, so every process taking part in a run must build the
//! **same** registry. [`build`] is that registry: the command line's driver, its
//! exec'd workers (`agox-coord worker`) and forked workers all call it. Register
//! every search module and function here, one `xxx::register(&mut reg)` line
//! each, and keep the returned handles in [`SearchFns`].

use agox_pool::Registry;

use crate::calculator::{self, CalcFns};
use crate::generators::{self, GenFns};
use crate::search::{pipeline, PipelineArgs, PipelineOutput};

/// Typed handles of every function in the program's registry.
#[derive(Debug, Clone)]
pub struct SearchFns {
    /// The calculator's functions (single points and relaxations).
    pub calculator: CalcFns,
    /// Candidate generation (generators and samplers on the pool).
    pub generators: GenFns,
    /// Generation and relaxation of one candidate as one task (the loop's step 1+2).
    pub generate_relax: agox_pool::FnHandle<PipelineArgs, PipelineOutput>,
}

/// Builds the program's registry and returns it with the function handles.
pub fn build() -> (Registry, SearchFns) {
    let mut reg = Registry::new();
    let calculator = calculator::register(&mut reg);
    let generators = generators::register(&mut reg);
    let generate_relax = pipeline::register(&mut reg);
    (
        reg,
        SearchFns {
            calculator,
            generators,
            generate_relax,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_build_is_the_same_registry() {
        let (a, fa) = build();
        let (b, _) = build();
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert!(a.has_module(<calculator::CalculatorModule as agox_pool::Module>::TYPE_NAME));
        assert!(a.has_function(fa.calculator.evaluate.name()));
        assert!(a.has_function(fa.calculator.relax.name()));
    }
}
