// Perturbed copies of one image, written straight into the batch on the device so that no
// occluded image is ever built on the host. `wins` holds the per-channel fill value (f32 bits)
// then four i32 per window (top, left, height, width); windows may reach past the border and
// are clipped here, and an empty window leaves its sample unchanged.

struct Params { w: array<vec4<u32>, 16> }
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> img: array<f32>;
@group(0) @binding(2) var<storage, read> wins: array<i32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;

fn pu(i: u32) -> u32 { return P.w[i >> 2u][i & 3u]; }

// params: 0 total (batch elements), 1 C, 2 H, 3 W
@compute @workgroup_size(256)
fn occlude(@builtin(local_invocation_index) li: u32,
           @builtin(workgroup_id) wg: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>) {
    let total = pu(0u);
    let c = pu(1u);
    let h = pu(2u);
    let w = pu(3u);
    let hw = h * w;
    let chw = c * hw;
    for (var i = wg.x * 256u + li; i < total; i += nwg.x * 256u) {
        let s = i / chw;
        let r = i % chw;
        let ch = r / hw;
        let y = i32((r % hw) / w);
        let x = i32(r % w);
        let m = c + 4u * s;
        let top = wins[m];
        let left = wins[m + 1u];
        let inside = y >= top && y < top + wins[m + 2u] && x >= left && x < left + wins[m + 3u];
        var v = img[r];
        if (inside) { v = bitcast<f32>(wins[ch]); }
        dst[i] = v;
    }
}
