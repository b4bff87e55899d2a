// Log-softmax over one axis, the tensor viewed as [outer, len, inner]: y = x - max - log Σ e^(x-max).
// One thread per row along the axis, as softmax.wgsl does.

// The mirror of Rust `LogSoftmaxParams` (src/ops/logsoftmax.rs). rows: outer * inner.
struct LogSoftmaxParams { rows: u32, len: u32, inner: u32 }
@group(0) @binding(0) var<uniform> lsm_p: LogSoftmaxParams;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
// Backward only: the output gradient.
@group(0) @binding(3) var<storage, read> gy: array<f32>;

@compute @workgroup_size(256)
fn log_softmax(@builtin(local_invocation_index) li: u32,
               @builtin(workgroup_id) wg: vec3<u32>,
               @builtin(num_workgroups) nwg: vec3<u32>) {
    let len = lsm_p.len;
    let inner = lsm_p.inner;
    for (var i = wg.x * 256u + li; i < lsm_p.rows; i += nwg.x * 256u) {
        let base = (i / inner) * len * inner + i % inner;
        var mx = -3.402823e38;
        for (var j = 0u; j < len; j++) { mx = max(mx, src[base + j * inner]); }
        var sum = 0.0;
        for (var j = 0u; j < len; j++) { sum += exp(src[base + j * inner] - mx); }
        let lse = log(sum);
        for (var j = 0u; j < len; j++) {
            let o = base + j * inner;
            dst[o] = src[o] - mx - lse;
        }
    }
}

// Input gradient: dx = dy - exp(y) Σ dy along the axis. src: forward output y.
@compute @workgroup_size(256)
fn log_softmax_bwd(@builtin(local_invocation_index) li: u32,
                   @builtin(workgroup_id) wg: vec3<u32>,
                   @builtin(num_workgroups) nwg: vec3<u32>) {
    let len = lsm_p.len;
    let inner = lsm_p.inner;
    for (var i = wg.x * 256u + li; i < lsm_p.rows; i += nwg.x * 256u) {
        let base = (i / inner) * len * inner + i % inner;
        var s = 0.0;
        for (var j = 0u; j < len; j++) { s += gy[base + j * inner]; }
        for (var j = 0u; j < len; j++) {
            let o = base + j * inner;
            dst[o] = gy[o] - exp(src[o]) * s;
        }
    }
}
