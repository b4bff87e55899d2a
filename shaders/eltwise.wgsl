// Element-wise kernels: unary activations by op code, per-channel affine, and binary ops with
// numpy broadcasting (rank padded to 6 on the host; broadcast axes have stride 0).

struct Params { w: array<vec4<u32>, 16> }
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> src0: array<f32>;
@group(0) @binding(2) var<storage, read> src1: array<f32>;
@group(0) @binding(3) var<storage, read> src2: array<f32>;
@group(0) @binding(4) var<storage, read_write> dst: array<f32>;

fn pu(i: u32) -> u32 { return P.w[i >> 2u][i & 3u]; }
fn pf(i: u32) -> f32 { return bitcast<f32>(pu(i)); }

// Op codes match `kernels::unary_code`; formulas match `Unary::apply`.
fn unary_op(op: u32, v: f32, a: f32, b: f32) -> f32 {
    switch op {
        case 0u: { return max(v, 0.0); }
        case 1u: { return select(a * v, v, v >= 0.0); }
        case 2u: { return min(max(v, a), b); }
        case 3u: { return 1.0 / (1.0 + exp(-v)); }
        case 4u: { return tanh(v); }
        case 5u: { return clamp(a * v + b, 0.0, 1.0); }
        case 6u: { return v * clamp(v / 6.0 + 0.5, 0.0, 1.0); }
        default: { return v; }
    }
}

// params: 0 total, 1 op, 2 a, 3 b
@compute @workgroup_size(256)
fn unary(@builtin(local_invocation_index) li: u32,
         @builtin(workgroup_id) wg: vec3<u32>,
         @builtin(num_workgroups) nwg: vec3<u32>) {
    let total = pu(0u);
    let op = pu(1u);
    let a = pf(2u);
    let b = pf(3u);
    for (var i = wg.x * 256u + li; i < total; i += nwg.x * 256u) {
        dst[i] = unary_op(op, src0[i], a, b);
    }
}

// params: 0 total, 1 channels, 2 inner (product of axes after 1)
@compute @workgroup_size(256)
fn channel_affine(@builtin(local_invocation_index) li: u32,
                  @builtin(workgroup_id) wg: vec3<u32>,
                  @builtin(num_workgroups) nwg: vec3<u32>) {
    let total = pu(0u);
    let c = pu(1u);
    let inner = pu(2u);
    for (var i = wg.x * 256u + li; i < total; i += nwg.x * 256u) {
        let ch = (i / inner) % c;
        dst[i] = src0[i] * src1[ch] + src2[ch];
    }
}

// params: 0 total, 1 op, 4..9 out shape, 10..15 lhs strides, 16..21 rhs strides
@compute @workgroup_size(256)
fn binary(@builtin(local_invocation_index) li: u32,
          @builtin(workgroup_id) wg: vec3<u32>,
          @builtin(num_workgroups) nwg: vec3<u32>) {
    let total = pu(0u);
    let op = pu(1u);
    for (var i = wg.x * 256u + li; i < total; i += nwg.x * 256u) {
        var rest = i;
        var oa = 0u;
        var ob = 0u;
        for (var d = 5; d >= 0; d--) {
            let du = u32(d);
            let n = pu(4u + du);
            let c = rest % n;
            rest = rest / n;
            oa += c * pu(10u + du);
            ob += c * pu(16u + du);
        }
        let a = src0[oa];
        let b = src1[ob];
        var v: f32;
        switch op {
            case 0u: { v = a + b; }
            case 1u: { v = a - b; }
            case 2u: { v = a * b; }
            default: { v = a / b; }
        }
        dst[i] = v;
    }
}

// ---- Backward (vector-Jacobian products) ----

// d unary_op / dv times g, with the ReLU-like rules (0 standard, 1 guided, 2 deconvnet).
// For Relu and Clip the host may pass the forward *output* as v: the masks v > 0 and
// lo < v < hi are the same on the input and the output, which lets Conv+Relu stay fused.
fn unary_grad(op: u32, rule: u32, v: f32, g: f32, a: f32, b: f32) -> f32 {
    if (rule == 2u && op <= 2u) { return max(g, 0.0); }
    var d = 0.0;
    switch op {
        case 0u: { d = select(0.0, 1.0, v > 0.0); }
        case 1u: { d = select(a, 1.0, v >= 0.0); }
        case 2u: { d = select(0.0, 1.0, v > a && v < b); }
        case 3u: { let s = 1.0 / (1.0 + exp(-v)); d = s * (1.0 - s); }
        case 4u: { let t = tanh(v); d = 1.0 - t * t; }
        case 5u: { let u = a * v + b; d = select(0.0, a, u > 0.0 && u < 1.0); }
        case 6u: {
            if (v >= 3.0) { d = 1.0; } else if (v > -3.0) { d = v / 3.0 + 0.5; }
        }
        default: { d = 1.0; }
    }
    if (rule == 1u && op <= 2u && g <= 0.0) { return 0.0; }
    return g * d;
}

// params: 0 total, 1 op, 2 a, 3 b, 4 rule. src0: forward value, src1: dy.
@compute @workgroup_size(256)
fn unary_bwd(@builtin(local_invocation_index) li: u32,
             @builtin(workgroup_id) wg: vec3<u32>,
             @builtin(num_workgroups) nwg: vec3<u32>) {
    let total = pu(0u);
    let op = pu(1u);
    let a = pf(2u);
    let b = pf(3u);
    let rule = pu(4u);
    for (var i = wg.x * 256u + li; i < total; i += nwg.x * 256u) {
        dst[i] = unary_grad(op, rule, src0[i], src1[i], a, b);
    }
}

// dx = dy * scale[channel]. params: 0 total, 1 channels, 2 inner
@compute @workgroup_size(256)
fn channel_scale_bwd(@builtin(local_invocation_index) li: u32,
                     @builtin(workgroup_id) wg: vec3<u32>,
                     @builtin(num_workgroups) nwg: vec3<u32>) {
    let total = pu(0u);
    let c = pu(1u);
    let inner = pu(2u);
    for (var i = wg.x * 256u + li; i < total; i += nwg.x * 256u) {
        dst[i] = src0[i] * src1[(i / inner) % c];
    }
}

// Gradient of one operand of `binary`, summed over the axes along which that operand was
// broadcast, so every dst element is written by exactly one thread (no atomics).
// params: 0 operand total, 1 op, 2 which (0 lhs, 1 rhs), 3 broadcast count,
// 4..9 out shape, 10..15 lhs strides, 16..21 rhs strides, 22..27 operand dims (rank 6, 1 on
// broadcast axes). src0: dy (out-shaped), src1: lhs, src2: rhs.
@compute @workgroup_size(256)
fn binary_bwd(@builtin(local_invocation_index) li: u32,
              @builtin(workgroup_id) wg: vec3<u32>,
              @builtin(num_workgroups) nwg: vec3<u32>) {
    let total = pu(0u);
    let op = pu(1u);
    let which = pu(2u);
    let count = pu(3u);
    for (var i = wg.x * 256u + li; i < total; i += nwg.x * 256u) {
        var jc: array<u32, 6>;
        var rest = i;
        for (var d = 5; d >= 0; d--) {
            let n = pu(22u + u32(d));
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
                let on = pu(4u + du);
                var c = jc[d];
                if (pu(22u + du) == 1u && on > 1u) {
                    c = rr % on;
                    rr = rr / on;
                }
                oo += c * ostride;
                ostride *= on;
                oa += c * pu(10u + du);
                ob += c * pu(16u + du);
            }
            let g = src0[oo];
            var v: f32;
            switch op {
                case 0u: { v = g; }
                case 1u: { v = select(-g, g, which == 0u); }
                case 2u: { v = g * select(src1[oa], src2[ob], which == 0u); }
                default: {
                    let bv = src2[ob];
                    v = select(-g * src1[oa] / (bv * bv), g / bv, which == 0u);
                }
            }
            acc += v;
        }
        dst[i] = acc;
    }
}

// dst += src0, for gradients of values read by several nodes. params: 0 total
@compute @workgroup_size(256)
fn accumulate(@builtin(local_invocation_index) li: u32,
              @builtin(workgroup_id) wg: vec3<u32>,
              @builtin(num_workgroups) nwg: vec3<u32>) {
    let total = pu(0u);
    for (var i = wg.x * 256u + li; i < total; i += nwg.x * 256u) {
        dst[i] += src0[i];
    }
}
