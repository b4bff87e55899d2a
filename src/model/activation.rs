//! The numerics of the element-wise activations beside the IR's `Unary`: the GPU op code of
//! each, and the functions without a `std` spelling (erf, GELU) that `Unary::apply`, the CPU
//! oracle, evaluates. Kept apart from `ir.rs` so that file stays a readable list of ops.

/// The GPU op code of a `Unary` (`Unary::code`): the `op` field of the `unary` and
/// `unary_bwd` kernels' parameters, whose WGSL twins are the `UNARY_OP_*` constants of
/// `eltwise.wgsl` (pinned by the GPU contract test).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, bytemuck::NoUninit)]
pub(crate) enum UnaryCode {
    Relu = 0,
    LeakyRelu = 1,
    Clip = 2,
    Sigmoid = 3,
    Tanh = 4,
    HardSigmoid = 5,
    HardSwish = 6,
    Erf = 7,
    Exp = 8,
    Neg = 9,
    Sqrt = 10,
    Reciprocal = 11,
    GeluErf = 12,
    GeluTanh = 13,
    Pow = 14,
}

impl UnaryCode {
    /// Every variant, for the contract test.
    #[cfg(test)]
    pub(crate) const ALL: [UnaryCode; 15] = [
        UnaryCode::Relu,
        UnaryCode::LeakyRelu,
        UnaryCode::Clip,
        UnaryCode::Sigmoid,
        UnaryCode::Tanh,
        UnaryCode::HardSigmoid,
        UnaryCode::HardSwish,
        UnaryCode::Erf,
        UnaryCode::Exp,
        UnaryCode::Neg,
        UnaryCode::Sqrt,
        UnaryCode::Reciprocal,
        UnaryCode::GeluErf,
        UnaryCode::GeluTanh,
        UnaryCode::Pow,
    ];
}

/// The error function at f32 precision (absolute error below 1e-7; the CPU oracle of the GPU's
/// approximation). Sums Abramowitz & Stegun 7.1.6,
/// `erf(x) = 2/√π · e^(-x²) · Σₙ 2ⁿ x^(2n+1) / (1·3·…·(2n+1))`, in f64: every term is positive, so
/// nothing cancels. Past |x| = 4, `1 - |erf(x)| < 1.6e-8` and the f32 result is ±1.
pub fn erf(x: f32) -> f32 {
    let a = f64::from(x).abs();
    if a.is_nan() {
        return x;
    }
    if a >= 4.0 {
        return 1f32.copysign(x);
    }
    let x2 = a * a;
    let (mut term, mut sum) = (a, a);
    let mut n = 0.0;
    // Terms grow while 2x² > 2n + 3, then shrink geometrically; at |x| < 4 this stops by n ≈ 100.
    while term > sum * 1e-17 {
        n += 1.0;
        term *= 2.0 * x2 / (2.0 * n + 1.0);
        sum += term;
    }
    let v = std::f64::consts::FRAC_2_SQRT_PI * (-x2).exp() * sum;
    (v as f32).copysign(x)
}

/// `√(2/π)`, the slope of GELU's tanh form at 0.
pub(crate) const GELU_TANH_K: f32 = 0.797_884_6;
/// The cubic coefficient of GELU's tanh form.
pub(crate) const GELU_TANH_C: f32 = 0.044_715;

/// GELU at f32 precision, evaluated in f64 (the CPU oracle of the GPU's form); see
/// `Unary::Gelu`.
pub(crate) fn gelu(x: f32, tanh: bool) -> f32 {
    let v = f64::from(x);
    let phi2 = if tanh {
        let (k, c) = (f64::from(GELU_TANH_K), f64::from(GELU_TANH_C));
        1.0 + (k * (v + c * v * v * v)).tanh()
    } else {
        // erf's argument rounded to f32 moves the result by under one f32 ulp.
        1.0 + f64::from(erf((v * std::f64::consts::FRAC_1_SQRT_2) as f32))
    };
    (0.5 * v * phi2) as f32
}
