// ONNX LRN across channels of [N, C, ...]:
// y = x / (bias + alpha/size * sum_{c' in [c - floor((size-1)/2), c + ceil((size-1)/2)]} x[c']^2)^beta

struct Params { w: array<vec4<u32>, 16> }
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

fn pu(i: u32) -> u32 { return P.w[i >> 2u][i & 3u]; }
fn pf(i: u32) -> f32 { return bitcast<f32>(pu(i)); }

// params: 0 total, 1 C, 2 inner, 3 size, 4 alpha, 5 beta, 6 bias
@compute @workgroup_size(256)
fn lrn(@builtin(local_invocation_index) li: u32,
       @builtin(workgroup_id) wg: vec3<u32>,
       @builtin(num_workgroups) nwg: vec3<u32>) {
    let total = pu(0u);
    let c = i32(pu(1u));
    let inner = pu(2u);
    let size = pu(3u);
    let alpha = pf(4u);
    let beta = pf(5u);
    let bias = pf(6u);
    let lo_off = i32((size - 1u) / 2u);
    let hi_off = i32(size / 2u);
    for (var i = wg.x * 256u + li; i < total; i += nwg.x * 256u) {
        let ch = i32((i / inner) % u32(c));
        let plane0 = i - u32(ch) * inner;
        var sq = 0.0;
        for (var cc = max(ch - lo_off, 0); cc <= min(ch + hi_off, c - 1); cc++) {
            let v = src[plane0 + u32(cc) * inner];
            sq += v * v;
        }
        dst[i] = src[i] / pow(bias + alpha / f32(size) * sq, beta);
    }
}
