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
