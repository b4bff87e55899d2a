// Softmax over one axis, the tensor viewed as [outer, axis, inner]; subtracts the max first.

// Parameters mirror the Rust structs of the same name (src/ops/softmax.rs, src/gpu/backward.rs).
// rows: outer * inner; len: the axis length.
struct SoftmaxParams { rows: u32, len: u32, inner: u32 }
struct ProbSeedParams { rows: u32, k: u32 }
@group(0) @binding(0) var<uniform> softmax_p: SoftmaxParams;
@group(0) @binding(0) var<uniform> seed_p: ProbSeedParams;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
// Backward only: the output gradient (softmax_bwd) or the targets (softmax_prob_seed).
@group(0) @binding(3) var<storage, read> aux: array<f32>;

@compute @workgroup_size(256)
fn softmax(@builtin(local_invocation_index) li: u32,
           @builtin(workgroup_id) wg: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>) {
    let total = softmax_p.rows;
    let len = softmax_p.len;
    let inner = softmax_p.inner;
    for (var i = wg.x * 256u + li; i < total; i += nwg.x * 256u) {
        let base = (i / inner) * len * inner + i % inner;
        var mx = -3.402823e38;
        for (var j = 0u; j < len; j++) { mx = max(mx, src[base + j * inner]); }
        var sum = 0.0;
        for (var j = 0u; j < len; j++) {
            let e = exp(src[base + j * inner] - mx);
            dst[base + j * inner] = e;
            sum += e;
        }
        let inv = 1.0 / sum;
        for (var j = 0u; j < len; j++) { dst[base + j * inner] *= inv; }
    }
}

// Input gradient of softmax: dx = y * (dy - sum(dy * y)) along the axis. src: forward output y,
// aux: dy.
@compute @workgroup_size(256)
fn softmax_bwd(@builtin(local_invocation_index) li: u32,
               @builtin(workgroup_id) wg: vec3<u32>,
               @builtin(num_workgroups) nwg: vec3<u32>) {
    let total = softmax_p.rows;
    let len = softmax_p.len;
    let inner = softmax_p.inner;
    for (var i = wg.x * 256u + li; i < total; i += nwg.x * 256u) {
        let base = (i / inner) * len * inner + i % inner;
        var dot = 0.0;
        for (var j = 0u; j < len; j++) {
            let o = base + j * inner;
            dot += aux[o] * src[o];
        }
        for (var j = 0u; j < len; j++) {
            let o = base + j * inner;
            dst[o] = src[o] * (aux[o] - dot);
        }
    }
}

// The seed d p_t / d logits = p_t (e_t - p) for each row of logits [rows, K]. src: logits,
// aux: target class per row (as f32, exact below 2^24).
@compute @workgroup_size(256)
fn softmax_prob_seed(@builtin(local_invocation_index) li: u32,
                     @builtin(workgroup_id) wg: vec3<u32>,
                     @builtin(num_workgroups) nwg: vec3<u32>) {
    let rows = seed_p.rows;
    let k = seed_p.k;
    for (var i = wg.x * 256u + li; i < rows; i += nwg.x * 256u) {
        let base = i * k;
        let t = u32(aux[i]);
        var mx = -3.402823e38;
        for (var j = 0u; j < k; j++) { mx = max(mx, src[base + j]); }
        var sum = 0.0;
        for (var j = 0u; j < k; j++) { sum += exp(src[base + j] - mx); }
        let pt = exp(src[base + t] - mx) / sum;
        for (var j = 0u; j < k; j++) {
            let p = exp(src[base + j] - mx) / sum;
            dst[base + j] = pt * (select(0.0, 1.0, j == t) - p);
        }
    }
}
