// 2-D max/average pooling over [N, C, H, W] and global pooling over H, W.

// Parameters mirror the Rust structs of the same name (src/ops/pool.rs). Window: `total` output
// elements (N*C*OH*OW; for pool2d_bwd, input elements N*C*H*W), input H, W, output OH, OW,
// kernel, strides, dilations, pads (top, left, bottom, right), kind.
struct Pool2dParams {
    total: u32, h: u32, w: u32, oh: u32, ow: u32, kh: u32, kw: u32, sh: u32, sw: u32,
    dh: u32, dw: u32, pt: u32, pl: u32, pb: u32, pr: u32, kind: u32,
}
// planes: N*C; hw: H*W.
struct GlobalPoolParams { planes: u32, hw: u32, kind: u32 }
@group(0) @binding(0) var<uniform> pool_p: Pool2dParams;
@group(0) @binding(0) var<uniform> global_p: GlobalPoolParams;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
// Backward only: the output gradient.
@group(0) @binding(3) var<storage, read> gy: array<f32>;

// Rust `PoolCode` (ops/pool.rs): AVG divides by the in-bounds taps, AVG_INCLUDE_PAD by the taps
// inside the padded extent.
const POOL_CODE_MAX: u32 = 0u;
const POOL_CODE_AVG: u32 = 1u;
const POOL_CODE_AVG_INCLUDE_PAD: u32 = 2u;
// Rust `GlobalPoolCode` (ops/pool.rs).
const GLOBAL_POOL_CODE_AVG: u32 = 0u;
const GLOBAL_POOL_CODE_MAX: u32 = 1u;

@compute @workgroup_size(256)
fn pool2d(@builtin(local_invocation_index) li: u32,
          @builtin(workgroup_id) wg: vec3<u32>,
          @builtin(num_workgroups) nwg: vec3<u32>) {
    let total = pool_p.total;
    let h = i32(pool_p.h);
    let w = i32(pool_p.w);
    let oh = pool_p.oh;
    let ow = pool_p.ow;
    let kh = pool_p.kh;
    let kw = pool_p.kw;
    let sh = pool_p.sh;
    let sw = pool_p.sw;
    let dh = pool_p.dh;
    let dw = pool_p.dw;
    let pt = i32(pool_p.pt);
    let pl = i32(pool_p.pl);
    let pb = i32(pool_p.pb);
    let pr = i32(pool_p.pr);
    let kind = pool_p.kind;
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
        if (kind == POOL_CODE_MAX) {
            if (inb > 0u) { out = mx; }
        } else if (kind == POOL_CODE_AVG) {
            if (inb > 0u) { out = sum / f32(inb); }
        } else {
            if (padded > 0u) { out = sum / f32(padded); }
        }
        dst[i] = out;
    }
}

@compute @workgroup_size(256)
fn global_pool(@builtin(local_invocation_index) li: u32,
               @builtin(workgroup_id) wg: vec3<u32>,
               @builtin(num_workgroups) nwg: vec3<u32>) {
    let planes = global_p.planes;
    let hw = global_p.hw;
    let is_max = global_p.kind == GLOBAL_POOL_CODE_MAX;
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
// whose first maximum in scan order is this element). Its `total` counts input elements.
// src: forward input (unused for avg), gy: dy.
@compute @workgroup_size(256)
fn pool2d_bwd(@builtin(local_invocation_index) li: u32,
              @builtin(workgroup_id) wg: vec3<u32>,
              @builtin(num_workgroups) nwg: vec3<u32>) {
    let total = pool_p.total;
    let h = i32(pool_p.h);
    let w = i32(pool_p.w);
    let oh = pool_p.oh;
    let ow = pool_p.ow;
    let kh = pool_p.kh;
    let kw = pool_p.kw;
    let sh = pool_p.sh;
    let sw = pool_p.sw;
    let dh = pool_p.dh;
    let dw = pool_p.dw;
    let pt = i32(pool_p.pt);
    let pl = i32(pool_p.pl);
    let pb = i32(pool_p.pb);
    let pr = i32(pool_p.pr);
    let kind = pool_p.kind;
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
                if (kind == POOL_CODE_MAX) {
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
                            if (kind == POOL_CODE_AVG) {
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
// to the first maximum).
@compute @workgroup_size(256)
fn global_pool_bwd(@builtin(local_invocation_index) li: u32,
                   @builtin(workgroup_id) wg: vec3<u32>,
                   @builtin(num_workgroups) nwg: vec3<u32>) {
    let planes = global_p.planes;
    let hw = global_p.hw;
    let is_max = global_p.kind == GLOBAL_POOL_CODE_MAX;
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
