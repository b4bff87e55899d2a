// Sum/Mean/Max over an arbitrary set of axes (rank padded to 6; a bit mask marks reduced
// axes). Output elements enumerate the kept axes in order, which is the layout with or
// without keepdims.

// The mirror of Rust `ReduceParams` (src/gpu/ops.rs), read by both entry points: `total` output
// elements, each over `count` inputs; `mask` bit d marks reduced axis d; the input's shape and
// strides are rank 6 in two vec4s, axis d at a[d >> 2u][d & 3u].
struct ReduceParams {
    total: u32, count: u32, kind: u32, mask: u32,
    shape: array<vec4<u32>, 2>,
    strides: array<vec4<u32>, 2>,
}
@group(0) @binding(0) var<uniform> reduce_p: ReduceParams;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
// Backward only: the output gradient.
@group(0) @binding(3) var<storage, read> gy: array<f32>;

// Rust `ReduceCode` (gpu/ops.rs).
const REDUCE_CODE_SUM: u32 = 0u;
const REDUCE_CODE_MEAN: u32 = 1u;
const REDUCE_CODE_MAX: u32 = 2u;

fn dim(d: u32) -> u32 { return reduce_p.shape[d >> 2u][d & 3u]; }
fn stride(d: u32) -> u32 { return reduce_p.strides[d >> 2u][d & 3u]; }

@compute @workgroup_size(256)
fn reduce(@builtin(local_invocation_index) li: u32,
          @builtin(workgroup_id) wg: vec3<u32>,
          @builtin(num_workgroups) nwg: vec3<u32>) {
    let total = reduce_p.total;
    let count = reduce_p.count;
    let kind = reduce_p.kind;
    let mask = reduce_p.mask;
    for (var i = wg.x * 256u + li; i < total; i += nwg.x * 256u) {
        var rest = i;
        var base = 0u;
        for (var d = 5; d >= 0; d--) {
            let du = u32(d);
            if ((mask & (1u << du)) == 0u) {
                let n = dim(du);
                base += (rest % n) * stride(du);
                rest = rest / n;
            }
        }
        var sum = 0.0;
        var mx = -3.402823e38;
        for (var r = 0u; r < count; r++) {
            var rr = r;
            var off = base;
            for (var d = 5; d >= 0; d--) {
                let du = u32(d);
                if ((mask & (1u << du)) != 0u) {
                    let n = dim(du);
                    off += (rr % n) * stride(du);
                    rr = rr / n;
                }
            }
            let v = src[off];
            sum += v;
            mx = max(mx, v);
        }
        var out = sum;
        if (kind == REDUCE_CODE_MEAN) { out = sum / f32(count); }
        if (kind == REDUCE_CODE_MAX) { out = mx; }
        dst[i] = out;
    }
}

// Input gradient of `reduce`: one thread per output element writes its whole reduction group
// (sum: dy, mean: dy / count, max: dy at the first maximum, 0 elsewhere).
@compute @workgroup_size(256)
fn reduce_bwd(@builtin(local_invocation_index) li: u32,
              @builtin(workgroup_id) wg: vec3<u32>,
              @builtin(num_workgroups) nwg: vec3<u32>) {
    let total = reduce_p.total;
    let count = reduce_p.count;
    let kind = reduce_p.kind;
    let mask = reduce_p.mask;
    for (var i = wg.x * 256u + li; i < total; i += nwg.x * 256u) {
        var rest = i;
        var base = 0u;
        for (var d = 5; d >= 0; d--) {
            let du = u32(d);
            if ((mask & (1u << du)) == 0u) {
                let n = dim(du);
                base += (rest % n) * stride(du);
                rest = rest / n;
            }
        }
        let g = gy[i];
        var best = 0u;
        if (kind == REDUCE_CODE_MAX) {
            var mx = 0.0;
            for (var r = 0u; r < count; r++) {
                let v = src[group_offset(base, mask, r)];
                if (r == 0u || v > mx) { mx = v; best = r; }
            }
        }
        for (var r = 0u; r < count; r++) {
            var v = g;
            if (kind == REDUCE_CODE_MEAN) { v = g / f32(count); }
            if (kind == REDUCE_CODE_MAX && r != best) { v = 0.0; }
            dst[group_offset(base, mask, r)] = v;
        }
    }
}

fn group_offset(base: u32, mask: u32, r: u32) -> u32 {
    var rr = r;
    var off = base;
    for (var d = 5; d >= 0; d--) {
        let du = u32(d);
        if ((mask & (1u << du)) != 0u) {
            let n = dim(du);
            off += (rr % n) * stride(du);
            rr = rr / n;
        }
    }
    return off;
}
