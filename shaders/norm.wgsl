// ONNX LRN across channels of [N, C, ...]:
// y = x / (bias + alpha/size * sum_{c' in [c - floor((size-1)/2), c + ceil((size-1)/2)]} x[c']^2)^beta

// The mirror of Rust `LrnParams` (src/ops/lrn.rs), read by both entry points: `total` elements
// of [N, C, inner], the window `size` and the ONNX alpha, beta, bias.
struct LrnParams { total: u32, c: u32, inner: u32, size: u32, alpha: f32, beta: f32, bias: f32 }
@group(0) @binding(0) var<uniform> lrn_p: LrnParams;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
// Backward only: the output gradient.
@group(0) @binding(3) var<storage, read> gy: array<f32>;


@compute @workgroup_size(256)
fn lrn(@builtin(local_invocation_index) li: u32,
       @builtin(workgroup_id) wg: vec3<u32>,
       @builtin(num_workgroups) nwg: vec3<u32>) {
    let total = lrn_p.total;
    let c = i32(lrn_p.c);
    let inner = lrn_p.inner;
    let size = lrn_p.size;
    let alpha = lrn_p.alpha;
    let beta = lrn_p.beta;
    let bias = lrn_p.bias;
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

fn lrn_denom(plane0: u32, ch: i32, c: i32, inner: u32, lo_off: i32, hi_off: i32, k: f32) -> f32 {
    var sq = 0.0;
    for (var cc = max(ch - lo_off, 0); cc <= min(ch + hi_off, c - 1); cc++) {
        let v = src[plane0 + u32(cc) * inner];
        sq += v * v;
    }
    return k * sq;
}

// Input gradient of lrn. With D_i = bias + alpha/size * sum_{win(i)} x^2 and y_i = x_i D_i^-beta:
// dx_j = dy_j D_j^-beta - 2 alpha beta / size * x_j * sum_{i : j in win(i)} dy_i x_i D_i^(-beta-1).
// Recomputes D from x rather than keeping it. src: x, gy: dy.
@compute @workgroup_size(256)
fn lrn_bwd(@builtin(local_invocation_index) li: u32,
           @builtin(workgroup_id) wg: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>) {
    let total = lrn_p.total;
    let c = i32(lrn_p.c);
    let inner = lrn_p.inner;
    let size = lrn_p.size;
    let alpha = lrn_p.alpha;
    let beta = lrn_p.beta;
    let bias = lrn_p.bias;
    let k = alpha / f32(size);
    let lo_off = i32((size - 1u) / 2u);
    let hi_off = i32(size / 2u);
    for (var j = wg.x * 256u + li; j < total; j += nwg.x * 256u) {
        let ch = i32((j / inner) % u32(c));
        let plane0 = j - u32(ch) * inner;
        let dj = bias + lrn_denom(plane0, ch, c, inner, lo_off, hi_off, k);
        var cross = 0.0;
        // i's window [i - lo_off, i + hi_off] contains j  <=>  i in [j - hi_off, j + lo_off].
        for (var ci = max(ch - hi_off, 0); ci <= min(ch + lo_off, c - 1); ci++) {
            let o = plane0 + u32(ci) * inner;
            let di = bias + lrn_denom(plane0, ci, c, inner, lo_off, hi_off, k);
            cross += gy[o] * src[o] * pow(di, -beta - 1.0);
        }
        dst[j] = gy[j] * pow(dj, -beta) - 2.0 * k * beta * src[j] * cross;
    }
}
