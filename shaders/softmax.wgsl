// Softmax over one axis, the tensor viewed as [outer, axis, inner]; subtracts the max first.

struct Params { w: array<vec4<u32>, 16> }
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

fn pu(i: u32) -> u32 { return P.w[i >> 2u][i & 3u]; }

// params: 0 outer*inner, 1 axis length, 2 inner
@compute @workgroup_size(256)
fn softmax(@builtin(local_invocation_index) li: u32,
           @builtin(workgroup_id) wg: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>) {
    let total = pu(0u);
    let len = pu(1u);
    let inner = pu(2u);
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
