//! [`SocketCalculator`]: an external client behind the [`Calculator`] interface,
//! so single points, BFGS and FIRE relaxations all use the same long-lived client.

use agox_atoms::{Atoms, CalcError, Calculator, Evaluation};

use crate::client::{Client, ClientConfig};
use crate::error::ClientError;
use crate::units;

/// A [`Calculator`] (name `"socket"`) whose energies and forces come from an i-PI
/// client process.
///
/// Stress, when asked for, is ASE's `-voigt(virial) / volume` for periodic cells of
/// rank 3 ([`units::stress_from_virial`]); it is only as good as the virial the
/// client sends (ASE's `SocketClient` sends one for periodic structures).
/// Per-atom energies are not part of the protocol.
///
/// [`Calculator::reset`] does nothing: the client keeps whatever it keeps between
/// structures (wavefunctions as a starting guess, say), which is the point of
/// keeping it alive. Results that depend on that history do so within the
/// client's own convergence thresholds.
pub struct SocketCalculator {
    client: Client,
}

impl SocketCalculator {
    /// A calculator over a new [`Client`] (nothing starts before the first
    /// calculation).
    pub fn new(config: ClientConfig) -> Result<Self, ClientError> {
        Ok(SocketCalculator {
            client: Client::new(config)?,
        })
    }

    /// The client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The client, e.g. to stop it early.
    pub fn client_mut(&mut self) -> &mut Client {
        &mut self.client
    }
}

impl Calculator for SocketCalculator {
    fn name(&self) -> &'static str {
        "socket"
    }

    fn calculate(&mut self, atoms: &Atoms, stress: bool) -> Result<Evaluation, CalcError> {
        let reply = self.client.evaluate(atoms)?;
        let stress = if stress {
            units::stress_from_virial(&reply.virial, &atoms.cell, atoms.pbc)
        } else {
            None
        };
        Ok(Evaluation {
            energy: reply.energy,
            forces: reply.forces,
            stress,
            energies: None,
        })
    }
}
