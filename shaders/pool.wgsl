// 2-D max/average pooling over [N, C, H, W] and global pooling over H, W.

struct Params { w: array<vec4<u32>, 16> }
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
// Backward only: the output gradient.
@group(0) @binding(3) var<storage, read> gy: array<f32>;

fn pu(i: u32) -> u32 { return P.w[i >> 2u][i & 3u]; }

// params: 0 total (N*C*OH*OW), 1 H, 2 W, 3 OH, 4 OW, 5 KH, 6 KW, 7 SH, 8 SW, 9 DH, 10 DW,
// 11 pad top, 12 pad left, 13 pad bottom, 14 pad right,
// 15 kind: 0 max, 1 avg over in-bounds taps, 2 avg over taps inside the padded extent.
@compute @workgroup_size(256)
fn pool2d(@builtin(local_invocation_index) li: u32,
          @builtin(workgroup_id) wg: vec3<u32>,
          @builtin(num_workgroups) nwg: vec3<u32>) {
    let total = pu(0u);
    let h = i32(pu(1u));
    let w = i32(pu(2u));
    let oh = pu(3u);
    let ow = pu(4u);
    let kh = pu(5u);
    let kw = pu(6u);
    let sh = pu(7u);
    let sw = pu(8u);
    let dh = pu(9u);
    let dw = pu(10u);
    let pt = i32(pu(11u));
    let pl = i32(pu(12u));
    let pb = i32(pu(13u));
    let pr = i32(pu(14u));
    let kind = pu(15u);
    for (var i = wg.x * 256u + li; i < total; i += nwg.x * 256u) {
        let ox = i % ow;
        let oy = (i / ow) % oh;
        let plane = i / (ow * oh);
        let base = plane * u32(h * w);
        var mx = -3.402823e38;
        var sum = 0.0;
        var inb = 0u;
        var padded = 0u;
        for (var ky = 0u; ky < kh; ky++) {
            let iy = i32(oy * sh + ky * dh) - pt;
            let y_in_pad = iy >= -pt && iy < h + pb;
            let y_in = iy >= 0 && iy < h;
            for (var kx = 0u; kx < kw; kx++) {
                let ix = i32(ox * sw + kx * dw) - pl;
                if (y_in_pad && ix >= -pl && ix < w + pr) { padded += 1u; }
                if (y_in && ix >= 0 && ix < w) {
                    let v = src[base + u32(iy * w + ix)];
                    mx = max(mx, v);
                    sum += v;
                    inb += 1u;
                }
            }
        }
        var out = 0.0;
        if (kind == 0u) {
            if (inb > 0u) { out = mx; }
        } else if (kind == 1u) {
            if (inb > 0u) { out = sum / f32(inb); }
        } else {
            if (padded > 0u) { out = sum / f32(padded); }
        }
        dst[i] = out;
    }
}

// params: 0 planes (N*C), 1 H*W, 2 max?
@compute @workgroup_size(256)
fn global_pool(@builtin(local_invocation_index) li: u32,
               @builtin(workgroup_id) wg: vec3<u32>,
               @builtin(num_workgroups) nwg: vec3<u32>) {
    let planes = pu(0u);
    let hw = pu(1u);
    let is_max = pu(2u) != 0u;
    for (var i = wg.x * 256u + li; i < planes; i += nwg.x * 256u) {
        let base = i * hw;
        var mx = -3.402823e38;
        var sum = 0.0;
        for (var j = 0u; j < hw; j++) {
            let v = src[base + j];
            mx = max(mx, v);
            sum += v;
        }
        dst[i] = select(sum / f32(hw), mx, is_max);
    }
}

// ---- Backward ----

// Input gradient of pool2d, gathered from the output side so that no two threads write the
// same element: each input element sums over the windows that contain it (for max: only those
// whose first maximum in scan order is this element). Same params as pool2d except word 0,
// which counts input elements (N*C*H*W). src: forward input (unused for avg), gy: dy.
@compute @workgroup_size(256)
fn pool2d_bwd(@builtin(local_invocation_index) li: u32,
              @builtin(workgroup_id) wg: vec3<u32>,
              @builtin(num_workgroups) nwg: vec3<u32>) {
    let total = pu(0u);
    let h = i32(pu(1u));
    let w = i32(pu(2u));
    let oh = pu(3u);
    let ow = pu(4u);
    let kh = pu(5u);
    let kw = pu(6u);
    let sh = pu(7u);
    let sw = pu(8u);
    let dh = pu(9u);
    let dw = pu(10u);
    let pt = i32(pu(11u));
    let pl = i32(pu(12u));
    let pb = i32(pu(13u));
    let pr = i32(pu(14u));
    let kind = pu(15u);
    for (var i = wg.x * 256u + li; i < total; i += nwg.x * 256u) {
        let ix = i32(i % u32(w));
        let iy = i32((i / u32(w)) % u32(h));
        let plane = i / u32(h * w);
        let base = plane * u32(h * w);
        let obase = plane * oh * ow;
        var acc = 0.0;
        for (var ky = 0u; ky < kh; ky++) {
            let ny = iy + pt - i32(ky * dh);
            if (ny < 0 || u32(ny) % sh != 0u || u32(ny) / sh >= oh) { continue; }
            let oy = u32(ny) / sh;
            for (var kx = 0u; kx < kw; kx++) {
                let nx = ix + pl - i32(kx * dw);
                if (nx < 0 || u32(nx) % sw != 0u || u32(nx) / sw >= ow) { continue; }
                let ox = u32(nx) / sw;
                let g = gy[obase + oy * ow + ox];
                if (kind == 0u) {
                    var mx = -3.402823e38;
                    var best = -1;
                    for (var qy = 0u; qy < kh; qy++) {
                        let yy = i32(oy * sh + qy * dh) - pt;
                        if (yy < 0 || yy >= h) { continue; }
                        for (var qx = 0u; qx < kw; qx++) {
                            let xx = i32(ox * sw + qx * dw) - pl;
                            if (xx < 0 || xx >= w) { continue; }
                            let v = src[base + u32(yy * w + xx)];
                            if (best < 0 || v > mx) {
                                mx = v;
                                best = yy * w + xx;
                            }
                        }
                    }
                    if (best == iy * w + ix) { acc += g; }
                } else {
                    var cnt = 0u;
                    for (var qy = 0u; qy < kh; qy++) {
                        let yy = i32(oy * sh + qy * dh) - pt;
                        for (var qx = 0u; qx < kw; qx++) {
                            let xx = i32(ox * sw + qx * dw) - pl;
                            if (kind == 1u) {
                                if (yy >= 0 && yy < h && xx >= 0 && xx < w) { cnt += 1u; }
                            } else if (yy >= -pt && yy < h + pb && xx >= -pl && xx < w + pr) {
                                cnt += 1u;
                            }
                        }
                    }
                    if (cnt > 0u) { acc += g / f32(cnt); }
                }
            }
        }
        dst[i] = acc;
    }
}

// Input gradient of global_pool: one thread per plane (mean spreads dy evenly; max sends it
// to the first maximum). params: 0 planes, 1 H*W, 2 max?
@compute @workgroup_size(256)
fn global_pool_bwd(@builtin(local_invocation_index) li: u32,
                   @builtin(workgroup_id) wg: vec3<u32>,
                   @builtin(num_workgroups) nwg: vec3<u32>) {
    let planes = pu(0u);
    let hw = pu(1u);
    let is_max = pu(2u) != 0u;
    for (var i = wg.x * 256u + li; i < planes; i += nwg.x * 256u) {
        let base = i * hw;
        let g = gy[i];
        if (is_max) {
            var best = 0u;
            var mx = src[base];
            for (var j = 1u; j < hw; j++) {
                let v = src[base + j];
                if (v > mx) { mx = v; best = j; }
            }
            for (var j = 0u; j < hw; j++) { dst[base + j] = select(0.0, g, j == best); }
        } else {
            let v = g / f32(hw);
            for (var j = 0u; j < hw; j++) { dst[base + j] = v; }
        }
    }
}
