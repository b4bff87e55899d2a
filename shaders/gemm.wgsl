// Linear: y[r, o] = sum_k x[r, k] * W[o, k] + b[o]; rows span everything but the last axis,
// batch included. Same 64x64 / 4x4 / K16 tiling as conv_gemm, without the im2col index maths.

// Parameters mirror the Rust structs of the same name (src/ops/linear.rs): x is [rows, k], W
// [outs, k]; has_bias is 0 or 1.
struct LinearParams { rows: u32, outs: u32, k: u32, has_bias: u32 }
struct LinearBwdParams { rows: u32, outs: u32, k: u32 }
@group(0) @binding(0) var<uniform> linear_p: LinearParams;
@group(0) @binding(0) var<uniform> linear_bwd_p: LinearBwdParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> wt: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

var<workgroup> As: array<f32, 1024>;
var<workgroup> Bs: array<f32, 1024>;

@compute @workgroup_size(256)
fn linear(@builtin(local_invocation_index) li: u32,
          @builtin(workgroup_id) wg: vec3<u32>,
          @builtin(num_workgroups) nwg: vec3<u32>) {
    let rows = linear_p.rows;
    let outs = linear_p.outs;
    let big_k = linear_p.k;
    let has_bias = linear_p.has_bias;
    let n0 = wg.y * 64u;
    let tx = li % 16u;
    let ty = li / 16u;
    let tiles_m = (rows + 63u) / 64u;
    for (var tm = wg.x; tm < tiles_m; tm += nwg.x) {
        let m0 = tm * 64u;
        var acc: array<vec4<f32>, 4>;
        for (var k0 = 0u; k0 < big_k; k0 += 16u) {
            for (var t = 0u; t < 4u; t++) {
                let idx = li + t * 256u;
                let kk = idx / 64u;
                let mm = idx % 64u;
                let k = k0 + kk;
                var v = 0.0;
                if (m0 + mm < rows && k < big_k) { v = x[(m0 + mm) * big_k + k]; }
                As[idx] = v;
                var wv = 0.0;
                if (n0 + mm < outs && k < big_k) { wv = wt[(n0 + mm) * big_k + k]; }
                Bs[idx] = wv;
            }
            workgroupBarrier();
            for (var kk = 0u; kk < 16u; kk++) {
                let ab = kk * 64u + ty * 4u;
                let bb = kk * 64u + tx * 4u;
                let b = vec4<f32>(Bs[bb], Bs[bb + 1u], Bs[bb + 2u], Bs[bb + 3u]);
                acc[0] += As[ab] * b;
                acc[1] += As[ab + 1u] * b;
                acc[2] += As[ab + 2u] * b;
                acc[3] += As[ab + 3u] * b;
            }
            workgroupBarrier();
        }
        for (var i = 0u; i < 4u; i++) {
            let m = m0 + ty * 4u + i;
            if (m < rows) {
                for (var j = 0u; j < 4u; j++) {
                    let o = n0 + tx * 4u + j;
                    if (o < outs) {
                        var v = acc[i][j];
                        if (has_bias != 0u) { v += bias[o]; }
                        y[m * outs + o] = v;
                    }
                }
            }
        }
    }
}

// Backward of `linear` (input gradient): dx[r, k] = sum_o dy[r, o] * W[o, k]. `x` holds dy
// ([rows, outs]) and `y` receives dx ([rows, big_k]); same tiling, B tile read untransposed.
@compute @workgroup_size(256)
fn linear_bwd(@builtin(local_invocation_index) li: u32,
              @builtin(workgroup_id) wg: vec3<u32>,
              @builtin(num_workgroups) nwg: vec3<u32>) {
    let rows = linear_bwd_p.rows;
    let outs = linear_bwd_p.outs;
    let big_k = linear_bwd_p.k;
    let n0 = wg.y * 64u;
    let tx = li % 16u;
    let ty = li / 16u;
    let tiles_m = (rows + 63u) / 64u;
    for (var tm = wg.x; tm < tiles_m; tm += nwg.x) {
        let m0 = tm * 64u;
        var acc: array<vec4<f32>, 4>;
        for (var o0 = 0u; o0 < outs; o0 += 16u) {
            for (var t = 0u; t < 4u; t++) {
                let idx = li + t * 256u;
                let kk = idx / 64u;
                let mm = idx % 64u;
                let o = o0 + kk;
                var v = 0.0;
                if (m0 + mm < rows && o < outs) { v = x[(m0 + mm) * outs + o]; }
                As[idx] = v;
                var wv = 0.0;
                if (n0 + mm < big_k && o < outs) { wv = wt[o * big_k + n0 + mm]; }
                Bs[idx] = wv;
            }
            workgroupBarrier();
            for (var kk = 0u; kk < 16u; kk++) {
                let ab = kk * 64u + ty * 4u;
                let bb = kk * 64u + tx * 4u;
                let b = vec4<f32>(Bs[bb], Bs[bb + 1u], Bs[bb + 2u], Bs[bb + 3u]);
                acc[0] += As[ab] * b;
                acc[1] += As[ab + 1u] * b;
                acc[2] += As[ab + 2u] * b;
                acc[3] += As[ab + 3u] * b;
            }
            workgroupBarrier();
        }
        for (var i = 0u; i < 4u; i++) {
            let m = m0 + ty * 4u + i;
            if (m < rows) {
                for (var j = 0u; j < 4u; j++) {
                    let n = n0 + tx * 4u + j;
                    if (n < big_k) { y[m * big_k + n] = acc[i][j]; }
                }
            }
        }
    }
}
