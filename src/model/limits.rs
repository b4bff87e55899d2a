//! Size limits and window arithmetic for values, shared by the importer (which enforces them
//! on untrusted files) and the backends' kernels and tests: all of it checked arithmetic.

/// The most elements one sample of any value may hold: 2^28, i.e. 1 GiB of f32. The largest
/// activation of the shipped models is under 2^22 (MobileNetV2's 96×112×112 at 224²), so this
/// leaves room for much larger inputs (a 4096² RGB image is 2^25.6) while keeping one buffer per
/// sample allocatable on an ordinary machine and every per-sample offset far inside the i32/u32
/// words of the GPU kernels. Anything larger in a file is a corrupted or hostile attribute, and
/// is refused at import instead of aborting in an allocation later.
pub const MAX_SAMPLE_ELEMS: usize = 1 << 28;

/// Checks a per-sample shape: every dimension at least 1 and the element count within
/// [`MAX_SAMPLE_ELEMS`] (computed with checked arithmetic). Returns the element count, or why not.
pub fn check_sample_shape(shape: &[usize]) -> std::result::Result<usize, String> {
    if let Some(d) = shape.iter().position(|&d| d == 0) {
        return Err(format!("dimension {} is 0", d + 1));
    }
    shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= MAX_SAMPLE_ELEMS)
        .ok_or_else(|| {
            format!("more than {MAX_SAMPLE_ELEMS} (2^28) elements per sample, netlens' limit")
        })
}

/// Output size of a pooling/conv window along one axis: `ceil_mode` lets the last window start
/// inside the input even if it runs past the end (never starting inside the right pad only).
/// `None` when the window does not fit the padded input (ONNX needs at least one output), when
/// the kernel or stride is 0, or when the extents overflow: attributes come from untrusted files.
pub fn window_out_len(
    input: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
    pad_before: usize,
    pad_after: usize,
    ceil_mode: bool,
) -> Option<usize> {
    if kernel == 0 || stride == 0 {
        return None;
    }
    let eff = dilation.checked_mul(kernel - 1)?.checked_add(1)?;
    let padded = input.checked_add(pad_before)?.checked_add(pad_after)?;
    let span = padded.checked_sub(eff)?;
    let mut out = if ceil_mode {
        span.div_ceil(stride)
    } else {
        span / stride
    } + 1;
    // A start past usize::MAX is past the input too; `input + pad_before <= padded` fits.
    let last_start = (out - 1).checked_mul(stride);
    if ceil_mode && last_start.is_none_or(|s| s >= input + pad_before) {
        out -= 1;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceil_mode_drops_window_starting_in_pad() {
        // PyTorch: MaxPool2d(3, 2, ceil_mode=True) on 6 -> 3; on 5 -> 2.
        assert_eq!(window_out_len(6, 3, 2, 1, 0, 0, true), Some(3));
        assert_eq!(window_out_len(5, 3, 2, 1, 0, 0, true), Some(2));
        assert_eq!(window_out_len(6, 3, 2, 1, 0, 0, false), Some(2));
        assert_eq!(window_out_len(2, 3, 1, 1, 0, 0, false), None);
    }

    #[test]
    fn window_out_len_refuses_overflow_and_zero() {
        assert_eq!(window_out_len(7, 3, 0, 1, 1, 1, false), None);
        assert_eq!(window_out_len(7, 0, 1, 1, 1, 1, false), None);
        assert_eq!(window_out_len(7, 3, 1, 1, usize::MAX, 1, false), None);
        assert_eq!(window_out_len(7, 3, 1, usize::MAX, 1, 1, false), None);
        // A stride past the padded input is legal: one output.
        assert_eq!(window_out_len(7, 3, 9, 1, 1, 1, false), Some(1));
        assert_eq!(window_out_len(7, 3, usize::MAX, 1, 1, 1, true), Some(1));
    }
}
