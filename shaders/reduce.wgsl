// Sum/Mean/Max over an arbitrary set of axes (rank padded to 6; a bit mask marks reduced
// axes). Output elements enumerate the kept axes in order, which is the layout with or
// without keepdims.

struct Params { w: array<vec4<u32>, 16> }
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
// Backward only: the output gradient.
@group(0) @binding(3) var<storage, read> gy: array<f32>;

fn pu(i: u32) -> u32 { return P.w[i >> 2u][i & 3u]; }

// params: 0 out total, 1 reduced count, 2 kind (0 sum, 1 mean, 2 max), 3 reduced-axis mask,
// 4..9 input shape, 10..15 input strides
@compute @workgroup_size(256)
fn reduce(@builtin(local_invocation_index) li: u32,
          @builtin(workgroup_id) wg: vec3<u32>,
          @builtin(num_workgroups) nwg: vec3<u32>) {
    let total = pu(0u);
    let count = pu(1u);
    let kind = pu(2u);
    let mask = pu(3u);
    for (var i = wg.x * 256u + li; i < total; i += nwg.x * 256u) {
        var rest = i;
        var base = 0u;
        for (var d = 5; d >= 0; d--) {
            let du = u32(d);
            if ((mask & (1u << du)) == 0u) {
                let n = pu(4u + du);
                base += (rest % n) * pu(10u + du);
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
                    let n = pu(4u + du);
                    off += (rr % n) * pu(10u + du);
                    rr = rr / n;
                }
            }
            let v = src[off];
            sum += v;
            mx = max(mx, v);
        }
        var out = sum;
        if (kind == 1u) { out = sum / f32(count); }
        if (kind == 2u) { out = mx; }
        dst[i] = out;
    }
}

// Input gradient of `reduce`: one thread per output element writes its whole reduction group
// (sum: dy, mean: dy / count, max: dy at the first maximum, 0 elsewhere). Same params.
@compute @workgroup_size(256)
fn reduce_bwd(@builtin(local_invocation_index) li: u32,
              @builtin(workgroup_id) wg: vec3<u32>,
              @builtin(num_workgroups) nwg: vec3<u32>) {
    let total = pu(0u);
    let count = pu(1u);
    let kind = pu(2u);
    let mask = pu(3u);
    for (var i = wg.x * 256u + li; i < total; i += nwg.x * 256u) {
        var rest = i;
        var base = 0u;
        for (var d = 5; d >= 0; d--) {
            let du = u32(d);
            if ((mask & (1u << du)) == 0u) {
                let n = pu(4u + du);
                base += (rest % n) * pu(10u + du);
                rest = rest / n;
            }
        }
        let g = gy[i];
        var best = 0u;
        if (kind == 2u) {
            var mx = 0.0;
            for (var r = 0u; r < count; r++) {
                let v = src[group_offset(base, mask, r)];
                if (r == 0u || v > mx) { mx = v; best = r; }
            }
        }
        for (var r = 0u; r < count; r++) {
            var v = g;
            if (kind == 1u) { v = g / f32(count); }
            if (kind == 2u && r != best) { v = 0.0; }
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
            let n = pu(4u + du);
            off += (rr % n) * pu(10u + du);
            rr = rr / n;
        }
    }
    return off;
}
