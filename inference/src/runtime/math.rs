//! Element-wise kernels written branch-free so the compiler vectorises them.

/// `max(x, 0)` in place after adding `bias` (a per-row constant).
pub(crate) fn bias_relu(v: &mut [f32], bias: f32) {
    for x in v {
        *x = (*x + bias).max(0.0);
    }
}
