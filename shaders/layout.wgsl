// One strided gather/scatter for every layout op (Transpose, Slice, Concat, Pad). It walks an
// iteration shape; per axis the source coordinate is start + i*step (out of [0, in_dim):
// the pad value), the source offset is in_base + sum(src_d * in_stride_d) and the destination
// offset out_base + sum(i_d * out_stride_d). Rank is padded to 6 on the host.

// Parameters mirror the Rust structs of the same name (src/gpu/ops.rs, src/ops/layout.rs);
// per-axis lists are rank 6 in two vec4s, axis d at a[d >> 2u][d & 3u].
struct GatherParams {
    total: u32, in_base: u32, out_base: u32, pad: f32,
    shape: array<vec4<u32>, 2>,
    start: array<vec4<i32>, 2>,
    step: array<vec4<i32>, 2>,
    in_dim: array<vec4<u32>, 2>,
    in_stride: array<vec4<u32>, 2>,
    out_stride: array<vec4<u32>, 2>,
}
// shape: x's; dy_shape, dy_strides: dy's.
struct SliceBwdParams {
    total: u32, _pad0: u32, _pad1: u32, _pad2: u32,
    shape: array<vec4<u32>, 2>,
    start: array<vec4<i32>, 2>,
    step: array<vec4<i32>, 2>,
    dy_shape: array<vec4<u32>, 2>,
    dy_strides: array<vec4<u32>, 2>,
}
@group(0) @binding(0) var<uniform> gather_p: GatherParams;
@group(0) @binding(0) var<uniform> slice_p: SliceBwdParams;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(256)
fn gather(@builtin(local_invocation_index) li: u32,
          @builtin(workgroup_id) wg: vec3<u32>,
          @builtin(num_workgroups) nwg: vec3<u32>) {
    let total = gather_p.total;
    let in_base = gather_p.in_base;
    let out_base = gather_p.out_base;
    let pad = gather_p.pad;
    for (var i = wg.x * 256u + li; i < total; i += nwg.x * 256u) {
        var rest = i;
        var so = in_base;
        var doff = out_base;
        var inside = true;
        for (var d = 5; d >= 0; d--) {
            let du = u32(d);
            let a = du >> 2u;
            let k = du & 3u;
            let n = gather_p.shape[a][k];
            let c = rest % n;
            rest = rest / n;
            let s = gather_p.start[a][k] + i32(c) * gather_p.step[a][k];
            if (s < 0 || s >= i32(gather_p.in_dim[a][k])) {
                inside = false;
            } else {
                so += u32(s) * gather_p.in_stride[a][k];
            }
            doff += c * gather_p.out_stride[a][k];
        }
        var v = pad;
        if (inside) { v = src[so]; }
        dst[doff] = v;
    }
}

// Input gradient of Slice, gathered from the input side: dx at coordinate c is dy at
// (c - start) / step where that is a whole in-range index on every axis, else 0. Transpose,
// Pad and Concat need no kernel of their own: their gradients are plain `gather`s.
@compute @workgroup_size(256)
fn slice_bwd(@builtin(local_invocation_index) li: u32,
             @builtin(workgroup_id) wg: vec3<u32>,
             @builtin(num_workgroups) nwg: vec3<u32>) {
    let total = slice_p.total;
    for (var i = wg.x * 256u + li; i < total; i += nwg.x * 256u) {
        var rest = i;
        var so = 0u;
        var inside = true;
        for (var d = 5; d >= 0; d--) {
            let du = u32(d);
            let a = du >> 2u;
            let k = du & 3u;
            let n = slice_p.shape[a][k];
            let c = i32(rest % n);
            rest = rest / n;
            let num = c - slice_p.start[a][k];
            let step = slice_p.step[a][k];
            let q = num / step;
            if (q * step != num || q < 0 || q >= i32(slice_p.dy_shape[a][k])) {
                inside = false;
            } else {
                so += u32(q) * slice_p.dy_strides[a][k];
            }
        }
        var v = 0.0;
        if (inside) { v = src[so]; }
        dst[i] = v;
    }
}
