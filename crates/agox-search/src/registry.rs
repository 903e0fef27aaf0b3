//! The registry of the `agox-coord` program.
//!
//! Workers find module types and functions by name, and the handshake compares
//! registry fingerprints, so every process taking part in a run must build the
//! **same** registry. [`build`] is that registry: the command line's driver, its
//! exec'd workers (`agox-coord worker`) and forked workers all call it. The search's
//! module types and functions are registered in [`crate::tasks::register`]; add new
//! ones there.

use agox_pool::Registry;

pub use crate::tasks::SearchFns;

/// Builds the program's registry and returns it with the function handles.
pub fn build() -> (Registry, SearchFns) {
    let mut reg = Registry::new();
    let fns = crate::tasks::register(&mut reg);
    (reg, fns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calculator::CalculatorModule;
    use crate::relax_model::RelaxModel;
    use agox_pool::Module;

    #[test]
    fn every_build_is_the_same_registry() {
        let (a, fa) = build();
        let (b, _) = build();
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert!(a.has_module(CalculatorModule::TYPE_NAME));
        assert!(a.has_module(RelaxModel::TYPE_NAME));
        assert!(a.has_function(fa.calculator.evaluate.name()));
        assert!(a.has_function(fa.calculator.relax.name()));
        assert!(a.has_function(fa.generate_relax.name()));
        // The loop's handles name the registered functions.
        let h = crate::tasks::handles();
        assert_eq!(h.generate_relax.name(), fa.generate_relax.name());
    }
}
