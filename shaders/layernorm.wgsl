// Layer normalisation over rows of `len` contiguous elements (ONNX LayerNormalization over the
// trailing axes): y = (x - mean) / sqrt(var + eps) * scale + bias. One workgroup per row (grid-
// striding over rows when there are more rows than workgroups); the 256 threads stride along the
// row and combine their partial sums by a tree in workgroup memory. The variance takes a second
// pass over (x - mean)² (see `row_stats`), as the CPU oracle (src/cpu/layernorm.rs) does, instead
// of E[x²] - mean².

// The mirror of Rust `LayerNormParams` (src/ops/layernorm.rs), read by both entry points.
struct LayerNormParams { rows: u32, len: u32, eps: f32, has_bias: u32 }
@group(0) @binding(0) var<uniform> ln_p: LayerNormParams;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
// Forward: scale and (when has_bias is 1) bias, `len` elements each.
@group(0) @binding(3) var<storage, read> scale: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;
// Backward: the output gradient (scale stays at binding 3).
@group(0) @binding(5) var<storage, read> gy: array<f32>;

var<workgroup> red_a: array<f32, 256>;
var<workgroup> red_b: array<f32, 256>;

// The workgroup's sums of `a` and `b` over its 256 threads, returned to every thread. Called in
// uniform control flow only (the row loop's bound is the same for the whole workgroup).
fn sum2(li: u32, a: f32, b: f32) -> vec2<f32> {
    red_a[li] = a;
    red_b[li] = b;
    for (var s = 128u; s > 0u; s >>= 1u) {
        workgroupBarrier();
        if (li < s) {
            red_a[li] += red_a[li + s];
            red_b[li] += red_b[li + s];
        }
    }
    workgroupBarrier();
    let r = vec2<f32>(red_a[0], red_b[0]);
    // Nobody writes the arrays again before everyone has read the result.
    workgroupBarrier();
    return r;
}

// (m, c, r) of the row starting at `base`: its mean is m + c, where m is the f32 mean and c the
// mean of (x - m), which puts back the rounding of m (the "corrected two-pass" algorithm), and
// r = 1 / sqrt(var + eps). Each element's deviation is then ((x - m) - c). This matters to the
// VJP: on a row of small spread its terms of size r·g cancel down to far smaller results, and
// m's rounding alone (up to half an ulp of the mean) was seen to move those by 1e-3 relative.
fn row_stats(li: u32, base: u32) -> vec3<f32> {
    let len = ln_p.len;
    var s = 0.0;
    for (var j = li; j < len; j += 256u) { s += src[base + j]; }
    let m = sum2(li, s, 0.0).x / f32(len);
    var a = 0.0;
    var q = 0.0;
    for (var j = li; j < len; j += 256u) {
        let d = src[base + j] - m;
        a += d;
        q += d * d;
    }
    let t = sum2(li, a, q) / f32(len);
    let var_ = max(t.y - t.x * t.x, 0.0);
    return vec3<f32>(m, t.x, 1.0 / sqrt(var_ + ln_p.eps));
}

@compute @workgroup_size(256)
fn layer_norm(@builtin(local_invocation_index) li: u32,
              @builtin(workgroup_id) wg: vec3<u32>,
              @builtin(num_workgroups) nwg: vec3<u32>) {
    let len = ln_p.len;
    for (var row = wg.x; row < ln_p.rows; row += nwg.x) {
        let base = row * len;
        let st = row_stats(li, base);
        for (var j = li; j < len; j += 256u) {
            var b = 0.0;
            if (ln_p.has_bias != 0u) { b = bias[j]; }
            dst[base + j] = ((src[base + j] - st.x) - st.y) * st.z * scale[j] + b;
        }
    }
}

// Input gradient: with g = dy * scale and x̂ = (x - mean) r,
// dx = r (g - mean(g) - x̂ mean(g x̂)). Recomputes mean and r from x. src: x.
@compute @workgroup_size(256)
fn layer_norm_bwd(@builtin(local_invocation_index) li: u32,
                  @builtin(workgroup_id) wg: vec3<u32>,
                  @builtin(num_workgroups) nwg: vec3<u32>) {
    let len = ln_p.len;
    for (var row = wg.x; row < ln_p.rows; row += nwg.x) {
        let base = row * len;
        let st = row_stats(li, base);
        var a = 0.0;
        var b = 0.0;
        for (var j = li; j < len; j += 256u) {
            let g = gy[base + j] * scale[j];
            a += g;
            b += g * ((src[base + j] - st.x) - st.y) * st.z;
        }
        let m = sum2(li, a, b) / f32(len);
        for (var j = li; j < len; j += 256u) {
            let g = gy[base + j] * scale[j];
            let xh = ((src[base + j] - st.x) - st.y) * st.z;
            dst[base + j] = st.z * (g - m.x - xh * m.y);
        }
    }
}
