//! FIRE (fast inertial relaxation engine) as ASE 3.29 `ase.optimize.FIRE` does it
//! with `downhill_check = False`.
//!
//! State carried between steps: the velocity `v` (3N), the time step `dt`, the
//! mixing `a` and the count `n` of steps since the last reset. On the first step
//! `v = 0`. On every later step, with `f` the forces: if `v·f > 0`, mix
//! `v = (1 − a) v + a f |v| / |f|`, then if `n > nmin` grow `dt = min(dt·finc, dtmax)`
//! and shrink `a *= fa`, then `n += 1`; otherwise reset `v = 0`, `a = astart`,
//! `dt *= fdec`, `n = 0`. Then always `v += dt f`, `dr = dt v`, and if the norm of
//! the **whole** 3N vector `dr` exceeds `maxstep`, rescale `dr` to that norm.

/// FIRE parameters (ASE defaults).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FireParams {
    /// Initial time step.
    pub dt: f64,
    /// Largest norm of the whole step vector (Å).
    pub maxstep: f64,
    /// Largest time step.
    pub dtmax: f64,
    /// Downhill steps to wait after a reset before growing `dt`.
    pub nmin: usize,
    /// Factor growing `dt`.
    pub finc: f64,
    /// Factor shrinking `dt` on an uphill step.
    pub fdec: f64,
    /// Mixing coefficient restored on a reset.
    pub astart: f64,
    /// Factor shrinking the mixing coefficient.
    pub fa: f64,
    /// Initial mixing coefficient.
    pub a: f64,
}

impl Default for FireParams {
    /// ASE's defaults: `dt 0.1, maxstep 0.2, dtmax 1.0, Nmin 5, finc 1.1, fdec 0.5,
    /// astart 0.1, fa 0.99, a 0.1`.
    fn default() -> Self {
        Self {
            dt: 0.1,
            maxstep: 0.2,
            dtmax: 1.0,
            nmin: 5,
            finc: 1.1,
            fdec: 0.5,
            astart: 0.1,
            fa: 0.99,
            a: 0.1,
        }
    }
}

/// State of one FIRE run over `n` degrees of freedom.
#[derive(Debug, Clone)]
pub struct Fire {
    params: FireParams,
    v: Vec<f64>,
    started: bool,
    dt: f64,
    a: f64,
    n_downhill: usize,
}

impl Fire {
    /// A fresh optimizer for `n_dof` degrees of freedom.
    pub fn new(params: FireParams, n_dof: usize) -> Self {
        Self {
            params,
            v: vec![0.0; n_dof],
            started: false,
            dt: params.dt,
            a: params.a,
            n_downhill: 0,
        }
    }

    /// Current time step.
    pub fn dt(&self) -> f64 {
        self.dt
    }

    /// Computes the step `dx` from the forces `f` (flat, 3 per atom).
    ///
    /// # Panics
    /// If a slice length differs from the `n_dof` given to [`Fire::new`].
    pub fn step(&mut self, f: &[f64], dx: &mut [f64]) {
        let p = &self.params;
        assert!(
            f.len() == self.v.len() && dx.len() == self.v.len(),
            "FIRE: slice lengths must equal n_dof"
        );
        if self.started {
            let vf: f64 = self.v.iter().zip(f).map(|(v, f)| v * f).sum();
            if vf > 0.0 {
                let f_norm = f.iter().map(|x| x * x).sum::<f64>().sqrt();
                let v_norm = self.v.iter().map(|x| x * x).sum::<f64>().sqrt();
                let a = self.a;
                for (v, fi) in self.v.iter_mut().zip(f) {
                    *v = (1.0 - a) * *v + a * fi / f_norm * v_norm;
                }
                if self.n_downhill > p.nmin {
                    self.dt = (self.dt * p.finc).min(p.dtmax);
                    self.a *= p.fa;
                }
                self.n_downhill += 1;
            } else {
                self.v.iter_mut().for_each(|v| *v = 0.0);
                self.a = p.astart;
                self.dt *= p.fdec;
                self.n_downhill = 0;
            }
        }
        self.started = true;
        let dt = self.dt;
        let mut norm2 = 0.0;
        for ((v, fi), d) in self.v.iter_mut().zip(f).zip(dx.iter_mut()) {
            *v += dt * fi;
            *d = dt * *v;
            norm2 += *d * *d;
        }
        let norm = norm2.sqrt();
        if norm > p.maxstep {
            dx.iter_mut().for_each(|d| *d = p.maxstep * *d / norm);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn first_steps_by_hand() {
        let mut fire = Fire::new(FireParams::default(), 3);
        let mut dx = [0.0; 3];
        // step 1: v = 0.1 f, dr = 0.01 f
        fire.step(&[1.0, 0.0, 0.0], &mut dx);
        assert!((dx[0] - 0.01).abs() < 1e-15);
        // step 2, downhill: v = 0.9*0.1 + 0.1*1*0.1 = 0.1, then v += 0.1 → 0.2, dr = 0.02
        fire.step(&[1.0, 0.0, 0.0], &mut dx);
        assert!((dx[0] - 0.02).abs() < 1e-15);
        // uphill: reset, dt halves: v = 0.05 * f, dr = 0.05 * 0.05 * f
        fire.step(&[-1.0, 0.0, 0.0], &mut dx);
        assert!((fire.dt() - 0.05).abs() < 1e-15);
        assert!((dx[0] + 0.0025).abs() < 1e-15);
    }

    #[test]
    fn global_norm_cap() {
        let mut fire = Fire::new(FireParams::default(), 6);
        let mut dx = [0.0; 6];
        fire.step(&[30.0, 0.0, 0.0, 0.0, 40.0, 0.0], &mut dx);
        // uncapped dr = 0.01 f = (0.3, 0.4): norm 0.5 → 0.2
        let norm = dx.iter().map(|x| x * x).sum::<f64>().sqrt();
        assert!((norm - 0.2).abs() < 1e-15);
        assert!((dx[0] - 0.12).abs() < 1e-15 && (dx[4] - 0.16).abs() < 1e-15);
    }

    #[test]
    fn dt_grows_after_nmin_downhill_steps() {
        let mut fire = Fire::new(FireParams::default(), 3);
        let mut dx = [0.0; 3];
        let f = [1e-3, 0.0, 0.0];
        for _ in 0..7 {
            fire.step(&f, &mut dx);
        }
        // calls 2..=7 are downhill with n = 0..=5: no growth yet
        assert!((fire.dt() - 0.1).abs() < 1e-15);
        fire.step(&f, &mut dx);
        assert!((fire.dt() - 0.11).abs() < 1e-15);
    }
}
