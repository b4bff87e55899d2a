// One strided gather/scatter for every layout op (Transpose, Slice, Concat, Pad). It walks an
// iteration shape; per axis the source coordinate is start + i*step (out of [0, in_dim):
// the pad value), the source offset is in_base + sum(src_d * in_stride_d) and the destination
// offset out_base + sum(i_d * out_stride_d). Rank is padded to 6 on the host.

struct Params { w: array<vec4<u32>, 16> }
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

fn pu(i: u32) -> u32 { return P.w[i >> 2u][i & 3u]; }

// params: 0 total, 1 in_base, 2 out_base, 3 pad value, 4..9 shape, 10..15 start (i32),
// 16..21 step (i32), 22..27 in_dim, 28..33 in_stride, 34..39 out_stride
@compute @workgroup_size(256)
fn gather(@builtin(local_invocation_index) li: u32,
          @builtin(workgroup_id) wg: vec3<u32>,
          @builtin(num_workgroups) nwg: vec3<u32>) {
    let total = pu(0u);
    let in_base = pu(1u);
    let out_base = pu(2u);
    let pad = bitcast<f32>(pu(3u));
    for (var i = wg.x * 256u + li; i < total; i += nwg.x * 256u) {
        var rest = i;
        var so = in_base;
        var doff = out_base;
        var inside = true;
        for (var d = 5; d >= 0; d--) {
            let du = u32(d);
            let n = pu(4u + du);
            let c = rest % n;
            rest = rest / n;
            let s = bitcast<i32>(pu(10u + du)) + i32(c) * bitcast<i32>(pu(16u + du));
            if (s < 0 || s >= i32(pu(22u + du))) {
                inside = false;
            } else {
                so += u32(s) * pu(28u + du);
            }
            doff += c * pu(34u + du);
        }
        var v = pad;
        if (inside) { v = src[so]; }
        dst[doff] = v;
    }
}

// Input gradient of Slice, gathered from the input side: dx at coordinate c is dy at
// (c - start) / step where that is a whole in-range index on every axis, else 0. Transpose,
// Pad and Concat need no kernel of their own: their gradients are plain `gather`s.
// params: 0 total, 4..9 x shape, 10..15 start (i32), 16..21 step (i32), 22..27 dy shape,
// 28..33 dy strides
@compute @workgroup_size(256)
fn slice_bwd(@builtin(local_invocation_index) li: u32,
             @builtin(workgroup_id) wg: vec3<u32>,
             @builtin(num_workgroups) nwg: vec3<u32>) {
    let total = pu(0u);
    for (var i = wg.x * 256u + li; i < total; i += nwg.x * 256u) {
        var rest = i;
        var so = 0u;
        var inside = true;
        for (var d = 5; d >= 0; d--) {
            let du = u32(d);
            let n = pu(4u + du);
            let c = i32(rest % n);
            rest = rest / n;
            let num = c - bitcast<i32>(pu(10u + du));
            let step = bitcast<i32>(pu(16u + du));
            let q = num / step;
            if (q * step != num || q < 0 || q >= i32(pu(22u + du))) {
                inside = false;
            } else {
                so += u32(q) * pu(28u + du);
            }
        }
        var v = 0.0;
        if (inside) { v = src[so]; }
        dst[i] = v;
    }
}
