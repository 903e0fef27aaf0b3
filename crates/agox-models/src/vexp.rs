//! `exp` for the kernels' inner loops, written so the compiler can vectorize it:
//! no call, no table, no branch. In a loop compiled for AVX2 (pulp's run-time
//! dispatch, see `sgpr::dense`) it runs four lanes at a time; libm's `exp` is a
//! call per element. It covers the RBF's arguments, `x ≤ 0`:
//!
//! * `x = n·ln2 + r`, `|r| ≤ ln2/2`, with `n` rounded by adding 1.5·2⁵² and `ln 2`
//!   split in two (Cody–Waite: `n·ln2_hi` is exact);
//! * `eʳ` by its Taylor series to `r¹³/13!` (truncation below 4e-18), Horner;
//! * `2ⁿ` from `n`'s bits, which the rounding step leaves in the low mantissa.
//!
//! Within 2 ulp of libm's `exp` for `−708 ≤ x ≤ 0` (test); 0 below −708, where
//! `eˣ < 3.3e-308` (libm gives subnormals there).

/// 1.5·2⁵²: adding it rounds to an integer, kept in the low mantissa bits.
const SHIFT: f64 = 6_755_399_441_055_744.0;
const LOG2E: f64 = std::f64::consts::LOG2_E;
/// ln 2 in two parts (fdlibm's `ln2_hi`, `ln2_lo`): the first has 32 significant bits.
const LN2_HI: f64 = 6.931_471_803_691_238e-1;
const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;
/// Below this, 0.
const X_MIN: f64 = -708.0;

/// eˣ for `x ≤ 0` (see the module docs).
#[inline(always)]
pub(crate) fn exp_nonpositive(x: f64) -> f64 {
    let xc = x.max(X_MIN);
    let t = xc * LOG2E + SHIFT;
    let n = t - SHIFT;
    let r = (xc - n * LN2_HI) - n * LN2_LO;
    // Σ_{k ≤ 13} rᵏ/k!, Horner, written out (an unrolled loop in debug builds too).
    let p = 1.0 / 479_001_600.0 + r * (1.0 / 6_227_020_800.0);
    let p = 1.0 / 39_916_800.0 + r * p;
    let p = 1.0 / 3_628_800.0 + r * p;
    let p = 1.0 / 362_880.0 + r * p;
    let p = 1.0 / 40_320.0 + r * p;
    let p = 1.0 / 5_040.0 + r * p;
    let p = 1.0 / 720.0 + r * p;
    let p = 1.0 / 120.0 + r * p;
    let p = 1.0 / 24.0 + r * p;
    let p = 1.0 / 6.0 + r * p;
    let p = 0.5 + r * p;
    let p = 1.0 + r * p;
    let p = 1.0 + r * p;
    // t's bits are those of 1.5·2⁵² plus n; shifted, only n + 1023 remains in
    // the exponent field (1 ≤ n + 1023 ≤ 1023 here).
    let scale = f64::from_bits(t.to_bits().wrapping_add(1023) << 52);
    let y = p * scale;
    if x < X_MIN {
        0.0
    } else {
        y
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn within_two_ulp_of_libm_on_the_kernels_range() {
        let mut worst = 0.0f64;
        let n = 2_000_000;
        for i in 0..=n {
            let x = X_MIN * (i as f64 / n as f64).powi(3);
            let (ours, libm) = (exp_nonpositive(x), x.exp());
            worst = worst.max((ours - libm).abs() / libm);
        }
        assert!(worst <= 2.0 * f64::EPSILON, "{worst:e}");
        assert_eq!(exp_nonpositive(0.0), 1.0);
        assert_eq!(exp_nonpositive(-709.0), 0.0);
        assert_eq!(exp_nonpositive(f64::NEG_INFINITY), 0.0);
    }
}
