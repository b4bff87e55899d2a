// Element-wise kernels: unary activations by op code, per-channel affine, and binary ops with
// numpy broadcasting (rank padded to 6 on the host; broadcast axes have stride 0).

// Each entry point reads its own parameter struct at binding 0, the mirror of the Rust struct of
// the same name (src/gpu/ops.rs, src/ops/{unary,affine,binary}.rs, src/gpu/backward.rs; the
// reflection test checks them). Per-axis lists are rank 6 in two vec4s (a uniform array needs a
// 16-byte stride): axis d is a[d >> 2u][d & 3u].
struct UnaryParams { total: u32, op: u32, a: f32, b: f32 }
struct UnaryBwdParams { total: u32, op: u32, a: f32, b: f32, rule: u32 }
struct ChannelParams { total: u32, channels: u32, inner: u32 }
struct BinaryParams {
    total: u32, op: u32, _pad0: u32, _pad1: u32,
    shape: array<vec4<u32>, 2>,
    lhs_strides: array<vec4<u32>, 2>,
    rhs_strides: array<vec4<u32>, 2>,
}
struct BinaryBwdParams {
    total: u32, op: u32, which: u32, count: u32,
    shape: array<vec4<u32>, 2>,
    lhs_strides: array<vec4<u32>, 2>,
    rhs_strides: array<vec4<u32>, 2>,
    dims: array<vec4<u32>, 2>,
}
struct AccumulateParams { total: u32 }
@group(0) @binding(0) var<uniform> unary_p: UnaryParams;
@group(0) @binding(0) var<uniform> unary_bwd_p: UnaryBwdParams;
@group(0) @binding(0) var<uniform> channel_p: ChannelParams;
@group(0) @binding(0) var<uniform> binary_p: BinaryParams;
@group(0) @binding(0) var<uniform> binary_bwd_p: BinaryBwdParams;
@group(0) @binding(0) var<uniform> accumulate_p: AccumulateParams;
@group(0) @binding(1) var<storage, read> src0: array<f32>;
@group(0) @binding(2) var<storage, read> src1: array<f32>;
@group(0) @binding(3) var<storage, read> src2: array<f32>;
@group(0) @binding(4) var<storage, read_write> dst: array<f32>;

// Rust `UnaryCode` (model/ir.rs, from `Unary::code`).
const UNARY_CODE_RELU: u32 = 0u;
const UNARY_CODE_LEAKY_RELU: u32 = 1u;
const UNARY_CODE_CLIP: u32 = 2u;
const UNARY_CODE_SIGMOID: u32 = 3u;
const UNARY_CODE_TANH: u32 = 4u;
const UNARY_CODE_HARD_SIGMOID: u32 = 5u;
const UNARY_CODE_HARD_SWISH: u32 = 6u;
const UNARY_CODE_ERF: u32 = 7u;
const UNARY_CODE_EXP: u32 = 8u;
const UNARY_CODE_NEG: u32 = 9u;
const UNARY_CODE_SQRT: u32 = 10u;
const UNARY_CODE_RECIPROCAL: u32 = 11u;
const UNARY_CODE_GELU_ERF: u32 = 12u;
const UNARY_CODE_GELU_TANH: u32 = 13u;
const UNARY_CODE_POW: u32 = 14u;
// Rust `ReluRule` (ops/unary.rs).
const RELU_RULE_STANDARD: u32 = 0u;
const RELU_RULE_GUIDED: u32 = 1u;
const RELU_RULE_DECONVNET: u32 = 2u;
// Rust `BinaryCode` (gpu/ops.rs).
const BINARY_CODE_ADD: u32 = 0u;
const BINARY_CODE_SUB: u32 = 1u;
const BINARY_CODE_MUL: u32 = 2u;
const BINARY_CODE_DIV: u32 = 3u;
// Rust `Operand` (ops/binary.rs).
const OPERAND_LHS: u32 = 0u;
const OPERAND_RHS: u32 = 1u;

// WGSL has no erf: Abramowitz & Stegun 7.1.26, |error| <= 1.5e-7 (the CPU's `erf` is exact to
// f32 rounding).
fn erf_approx(v: f32) -> f32 {
    let a = abs(v);
    let t = 1.0 / (1.0 + 0.3275911 * a);
    let p = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741
        + t * (-1.453152027 + t * 1.061405429))));
    return sign(v) * (1.0 - p * exp(-a * a));
}

// GELU's tanh form: tanh(√(2/π) (v + 0.044715 v³)). The argument is clamped to ±10, where
// tanh is ±1 in f32 anyway, so a tanh built from exp cannot overflow to inf/inf.
fn gelu_t(v: f32) -> f32 {
    return tanh(clamp(0.7978846 * (v + 0.044715 * v * v * v), -10.0, 10.0));
}

// v^p as IEEE pow (Rust `powf`) does it. WGSL's pow is exp2(p log2 v): undefined for v < 0 and
// for v = 0 with p <= 0, and not exact for p = 2. So: the exponents LayerNorm uses (2, 0.5) and
// the trivial ones directly; otherwise |v|^p with the sign of an odd integer power, NaN for a
// negative base with a non-integer exponent, and 0^p as 0 or inf.
fn pow_op(v: f32, p: f32) -> f32 {
    if (p == 2.0) { return v * v; }
    if (p == 1.0) { return v; }
    if (p == 0.0) { return 1.0; }
    if (p == 0.5) { return sqrt(v); }
    if (v == 0.0) { return select(bitcast<f32>(0x7f800000u), 0.0, p > 0.0); }
    let m = pow(abs(v), p);
    if (v > 0.0) { return m; }
    if (fract(p) != 0.0) { return bitcast<f32>(0x7fc00000u); }
    return select(m, -m, fract(p * 0.5) != 0.0);
}

// Formulas match `Unary::apply`.
fn unary_op(op: u32, v: f32, a: f32, b: f32) -> f32 {
    switch op {
        case UNARY_CODE_RELU: { return max(v, 0.0); }
        case UNARY_CODE_LEAKY_RELU: { return select(a * v, v, v >= 0.0); }
        case UNARY_CODE_CLIP: { return min(max(v, a), b); }
        case UNARY_CODE_SIGMOID: { return 1.0 / (1.0 + exp(-v)); }
        case UNARY_CODE_TANH: { return tanh(v); }
        case UNARY_CODE_HARD_SIGMOID: { return clamp(a * v + b, 0.0, 1.0); }
        case UNARY_CODE_HARD_SWISH: { return v * clamp(v / 6.0 + 0.5, 0.0, 1.0); }
        case UNARY_CODE_ERF: { return erf_approx(v); }
        case UNARY_CODE_EXP: { return exp(v); }
        case UNARY_CODE_NEG: { return -v; }
        case UNARY_CODE_SQRT: { return sqrt(v); }
        case UNARY_CODE_RECIPROCAL: { return 1.0 / v; }
        case UNARY_CODE_GELU_ERF: { return 0.5 * v * (1.0 + erf_approx(v * 0.70710678)); }
        case UNARY_CODE_GELU_TANH: { return 0.5 * v * (1.0 + gelu_t(v)); }
        case UNARY_CODE_POW: { return pow_op(v, a); }
        default: { return v; }
    }
}

@compute @workgroup_size(256)
fn unary(@builtin(local_invocation_index) li: u32,
         @builtin(workgroup_id) wg: vec3<u32>,
         @builtin(num_workgroups) nwg: vec3<u32>) {
    let total = unary_p.total;
    let op = unary_p.op;
    let a = unary_p.a;
    let b = unary_p.b;
    for (var i = wg.x * 256u + li; i < total; i += nwg.x * 256u) {
        dst[i] = unary_op(op, src0[i], a, b);
    }
}

// inner: the product of the axes after 1
@compute @workgroup_size(256)
fn channel_affine(@builtin(local_invocation_index) li: u32,
                  @builtin(workgroup_id) wg: vec3<u32>,
                  @builtin(num_workgroups) nwg: vec3<u32>) {
    let total = channel_p.total;
    let c = channel_p.channels;
    let inner = channel_p.inner;
    for (var i = wg.x * 256u + li; i < total; i += nwg.x * 256u) {
        let ch = (i / inner) % c;
        dst[i] = src0[i] * src1[ch] + src2[ch];
    }
}

@compute @workgroup_size(256)
fn binary(@builtin(local_invocation_index) li: u32,
          @builtin(workgroup_id) wg: vec3<u32>,
          @builtin(num_workgroups) nwg: vec3<u32>) {
    let total = binary_p.total;
    let op = binary_p.op;
    for (var i = wg.x * 256u + li; i < total; i += nwg.x * 256u) {
        var rest = i;
        var oa = 0u;
        var ob = 0u;
        for (var d = 5; d >= 0; d--) {
            let du = u32(d);
            let n = binary_p.shape[du >> 2u][du & 3u];
            let c = rest % n;
            rest = rest / n;
            oa += c * binary_p.lhs_strides[du >> 2u][du & 3u];
            ob += c * binary_p.rhs_strides[du >> 2u][du & 3u];
        }
        let a = src0[oa];
        let b = src1[ob];
        var v: f32;
        switch op {
            case BINARY_CODE_ADD: { v = a + b; }
            case BINARY_CODE_SUB: { v = a - b; }
            case BINARY_CODE_MUL: { v = a * b; }
            default: { v = a / b; }
        }
        dst[i] = v;
    }
}

// ---- Backward (vector-Jacobian products) ----

// d unary_op / dv times g, with the ReLU-like rules.
// For Relu and Clip the host may pass the forward *output* as v: the masks v > 0 and
// lo < v < hi are the same on the input and the output, which lets Conv+Relu stay fused.
fn unary_grad(op: u32, rule: u32, v: f32, g: f32, a: f32, b: f32) -> f32 {
    // Relu, LeakyRelu and Clip: the ops `Unary::is_relu_like` names.
    let relu_like = op == UNARY_CODE_RELU || op == UNARY_CODE_LEAKY_RELU || op == UNARY_CODE_CLIP;
    if (rule == RELU_RULE_DECONVNET && relu_like) { return max(g, 0.0); }
    var d = 0.0;
    switch op {
        case UNARY_CODE_RELU: { d = select(0.0, 1.0, v > 0.0); }
        case UNARY_CODE_LEAKY_RELU: { d = select(a, 1.0, v >= 0.0); }
        case UNARY_CODE_CLIP: { d = select(0.0, 1.0, v > a && v < b); }
        case UNARY_CODE_SIGMOID: { let s = 1.0 / (1.0 + exp(-v)); d = s * (1.0 - s); }
        case UNARY_CODE_TANH: { let t = tanh(v); d = 1.0 - t * t; }
        case UNARY_CODE_HARD_SIGMOID: {
            let u = a * v + b;
            d = select(0.0, a, u > 0.0 && u < 1.0);
        }
        case UNARY_CODE_HARD_SWISH: {
            if (v >= 3.0) { d = 1.0; } else if (v > -3.0) { d = v / 3.0 + 0.5; }
        }
        case UNARY_CODE_ERF: { d = 1.1283791670955126 * exp(-v * v); }
        // From the input, as the GPU saves it for every op but Relu and Clip.
        case UNARY_CODE_EXP: { d = exp(v); }
        case UNARY_CODE_NEG: { d = -1.0; }
        case UNARY_CODE_SQRT: { d = 0.5 / sqrt(v); }
        case UNARY_CODE_RECIPROCAL: { d = -1.0 / (v * v); }
        // Φ(v) + v φ(v).
        case UNARY_CODE_GELU_ERF: {
            d = 0.5 * (1.0 + erf_approx(v * 0.70710678)) + v * 0.39894228 * exp(-0.5 * v * v);
        }
        case UNARY_CODE_GELU_TANH: {
            let t = gelu_t(v);
            d = 0.5 * (1.0 + t) + 0.5 * v * (1.0 - t * t) * 0.7978846 * (1.0 + 0.134145 * v * v);
        }
        // p v^(p-1); 0 for p = 0, as on the CPU.
        case UNARY_CODE_POW: { d = select(a * pow_op(v, a - 1.0), 0.0, a == 0.0); }
        default: { d = 1.0; }
    }
    if (rule == RELU_RULE_GUIDED && relu_like && g <= 0.0) { return 0.0; }
    return g * d;
}

// src0: forward value, src1: dy.
@compute @workgroup_size(256)
fn unary_bwd(@builtin(local_invocation_index) li: u32,
             @builtin(workgroup_id) wg: vec3<u32>,
             @builtin(num_workgroups) nwg: vec3<u32>) {
    let total = unary_bwd_p.total;
    let op = unary_bwd_p.op;
    let a = unary_bwd_p.a;
    let b = unary_bwd_p.b;
    let rule = unary_bwd_p.rule;
    for (var i = wg.x * 256u + li; i < total; i += nwg.x * 256u) {
        dst[i] = unary_grad(op, rule, src0[i], src1[i], a, b);
    }
}

// dx = dy * scale[channel].
@compute @workgroup_size(256)
fn channel_scale_bwd(@builtin(local_invocation_index) li: u32,
                     @builtin(workgroup_id) wg: vec3<u32>,
                     @builtin(num_workgroups) nwg: vec3<u32>) {
    let total = channel_p.total;
    let c = channel_p.channels;
    let inner = channel_p.inner;
    for (var i = wg.x * 256u + li; i < total; i += nwg.x * 256u) {
        dst[i] = src0[i] * src1[(i / inner) % c];
    }
}

// Gradient of one operand of `binary`, summed over the axes along which that operand was
// broadcast, so every dst element is written by exactly one thread (no atomics).
// total: the operand's elements; count: the dy elements each sums; dims: the operand's shape
// (1 on broadcast axes). src0: dy (out-shaped), src1: lhs, src2: rhs.
@compute @workgroup_size(256)
fn binary_bwd(@builtin(local_invocation_index) li: u32,
              @builtin(workgroup_id) wg: vec3<u32>,
              @builtin(num_workgroups) nwg: vec3<u32>) {
    let total = binary_bwd_p.total;
    let op = binary_bwd_p.op;
    let lhs = binary_bwd_p.which == OPERAND_LHS;
    let count = binary_bwd_p.count;
    for (var i = wg.x * 256u + li; i < total; i += nwg.x * 256u) {
        var jc: array<u32, 6>;
        var rest = i;
        for (var d = 5; d >= 0; d--) {
            let du = u32(d);
            let n = binary_bwd_p.dims[du >> 2u][du & 3u];
            jc[d] = rest % n;
            rest = rest / n;
        }
        var acc = 0.0;
        for (var r = 0u; r < count; r++) {
            var rr = r;
            var oo = 0u;
            var ostride = 1u;
            var oa = 0u;
            var ob = 0u;
            for (var d = 5; d >= 0; d--) {
                let du = u32(d);
                let on = binary_bwd_p.shape[du >> 2u][du & 3u];
                var c = jc[d];
                if (binary_bwd_p.dims[du >> 2u][du & 3u] == 1u && on > 1u) {
                    c = rr % on;
                    rr = rr / on;
                }
                oo += c * ostride;
                ostride *= on;
                oa += c * binary_bwd_p.lhs_strides[du >> 2u][du & 3u];
                ob += c * binary_bwd_p.rhs_strides[du >> 2u][du & 3u];
            }
            let g = src0[oo];
            var v: f32;
            switch op {
                case BINARY_CODE_ADD: { v = g; }
                case BINARY_CODE_SUB: { v = select(-g, g, lhs); }
                case BINARY_CODE_MUL: { v = g * select(src1[oa], src2[ob], lhs); }
                default: {
                    let bv = src2[ob];
                    v = select(-g * src1[oa] / (bv * bv), g / bv, lhs);
                }
            }
            acc += v;
        }
        dst[i] = acc;
    }
}

// dst += src0, for gradients of values read by several nodes.
@compute @workgroup_size(256)
fn accumulate(@builtin(local_invocation_index) li: u32,
              @builtin(workgroup_id) wg: vec3<u32>,
              @builtin(num_workgroups) nwg: vec3<u32>) {
    let total = accumulate_p.total;
    for (var i = wg.x * 256u + li; i < total; i += nwg.x * 256u) {
        dst[i] += src0[i];
    }
}
