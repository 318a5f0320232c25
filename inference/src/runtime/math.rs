//! Element-wise kernels written branch-free so the compiler vectorises them (libm's `expf`
//! is a scalar call per element, which would dominate the LSTM gates).

/// `exp(x)` to ~2 ulp for |x| <= 87, Cephes' `expf` polynomial with the rounding done by the
/// 1.5 * 2^23 trick (plain SSE2 has no packed round).
#[inline(always)]
fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 87.0);
    let n = (x * LOG2E + ROUND) - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.987_569_1e-4_f32;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 5e-1;
    let y = p * r * r + r + 1.0;
    // n is an integer in [-126, 126]: build 2^n from its exponent bits.
    y * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// Logistic sigmoid in place.
pub(crate) fn sigmoid(v: &mut [f32]) {
    for x in v {
        *x = 1.0 / (1.0 + exp(-*x));
    }
}

/// `tanh` in place, as `1 - 2 / (exp(2x) + 1)` (exact limits at +-inf, absolute error ~1e-7).
pub(crate) fn tanh(v: &mut [f32]) {
    for x in v {
        *x = 1.0 - 2.0 / (exp(2.0 * *x) + 1.0);
    }
}

/// `tanh` of `src` into `dst`.
pub(crate) fn tanh_into(src: &[f32], dst: &mut [f32]) {
    for (d, &x) in dst.iter_mut().zip(src) {
        *d = 1.0 - 2.0 / (exp(2.0 * x) + 1.0);
    }
}

/// `max(x, 0)` in place after adding `bias` (a per-row constant).
pub(crate) fn bias_relu(v: &mut [f32], bias: f32) {
    for x in v {
        *x = (*x + bias).max(0.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_sigmoid_tanh_match_libm() {
        let xs: Vec<f32> = (-4000..=4000).map(|i| i as f32 * 0.01).collect();
        for &x in &xs {
            let (want, got) = (x.exp(), exp(x));
            assert!(
                (got - want).abs() <= 4.0 * f32::EPSILON * want,
                "exp({x}): {got} vs {want}"
            );
        }
        let mut s = xs.clone();
        sigmoid(&mut s);
        let mut t = xs.clone();
        tanh(&mut t);
        for ((&x, &s), &t) in xs.iter().zip(&s).zip(&t) {
            let want_s = 1.0 / (1.0 + (-f64::from(x)).exp());
            assert!(
                (f64::from(s) - want_s).abs() < 1e-7,
                "sigmoid({x}): {s} vs {want_s}"
            );
            let want_t = f64::from(x).tanh();
            assert!(
                (f64::from(t) - want_t).abs() < 2e-7,
                "tanh({x}): {t} vs {want_t}"
            );
        }
        let mut extreme = [f32::INFINITY, f32::NEG_INFINITY, 1e30, -1e30];
        tanh(&mut extreme);
        assert_eq!(extreme, [1.0, -1.0, 1.0, -1.0]);
    }
}
