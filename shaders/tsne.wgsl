// Exact t-SNE on the device (src/gpu/tsne.rs; CPU twin: src/methods/tsne/{affinity,exact_cpu}.rs).
//
// P is stored as row blocks, each its own buffer within one storage binding: a kernel that
// touches P sees one block, rows r0 .. r0 + rows of the N×N matrix, as `P[(i − r0)·N + j]`, and
// is dispatched once per block (the shapes and r0 come as parameters).
//
// Affinities: tsne_dist writes the N×N dissimilarities into P, tsne_pcond turns each row into
// p_{j|i} in place (one workgroup per point runs the perplexity bisection), tsne_sym symmetrises
// a diagonal block in place and tsne_sym_pair an off-diagonal pair of blocks (P and PB). Per
// iteration: tsne_forces{2,3} (tiles of 256 embedding points through workgroup memory; P is read
// as P[j, i], which equals P[i, j] and is contiguous across the workgroup) and tsne_update
// (gains, momentum, step). tsne_kl runs only when the host asks for the KL.
//
// The forces and the KL sum over j, i.e. over the rows of P: each block's dispatch continues the
// sums the previous block left in acc / klout, so the sums run over j in the same order as with
// one block and the result does not depend on the split.
//
// acc holds 8 floats per point: the attractive sum (3), Σ_j w_ij, the repulsive sum (3), unused.
// state holds update | gains | gradient, N·dims each.

struct Params { w: array<vec4<u32>, 16> }
@group(0) @binding(0) var<uniform> U: Params;
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read_write> P: array<f32>;
@group(0) @binding(3) var<storage, read_write> Y: array<f32>;
@group(0) @binding(4) var<storage, read_write> acc: array<f32>;
@group(0) @binding(5) var<storage, read_write> state: array<f32>;
@group(0) @binding(6) var<storage, read_write> klout: array<f32>;
@group(0) @binding(7) var<storage, read_write> PB: array<f32>;

fn pu(i: u32) -> u32 { return U.w[i >> 2u][i & 3u]; }
fn pf(i: u32) -> f32 { return bitcast<f32>(pu(i)); }

const TILE: u32 = 16u;
var<workgroup> ta: array<array<f32, 16>, 16>;
var<workgroup> tb: array<array<f32, 16>, 16>;

// params: 0 N, 1 D, 2 scale, 3 r0, 4 rows. P[i, j] = scale · ‖x_i − x_j‖² (0 on the diagonal)
// for the block's rows; workgroup y walks the block's rows, x all columns.
@compute @workgroup_size(16, 16)
fn tsne_dist(@builtin(local_invocation_id) l: vec3<u32>,
             @builtin(workgroup_id) wg: vec3<u32>) {
    let n = pu(0u);
    let d = pu(1u);
    let scale = pf(2u);
    let r0 = pu(3u);
    let rows = pu(4u);
    let r = wg.y * TILE + l.y;
    let i = r0 + r;
    let j = wg.x * TILE + l.x;
    let rj = wg.x * TILE + l.y;
    var s = 0.0;
    for (var k0 = 0u; k0 < d; k0 += TILE) {
        let k = k0 + l.x;
        var a = 0.0;
        var b = 0.0;
        if (r < rows && k < d) { a = X[i * d + k]; }
        if (rj < n && k < d) { b = X[rj * d + k]; }
        ta[l.y][l.x] = a;
        tb[l.y][l.x] = b;
        workgroupBarrier();
        for (var kk = 0u; kk < TILE; kk++) {
            let diff = ta[l.y][kk] - tb[l.x][kk];
            s += diff * diff;
        }
        workgroupBarrier();
    }
    if (r < rows && j < n) {
        P[r * n + j] = select(scale * s, 0.0, i == j);
    }
}

const WG: u32 = 256u;
var<workgroup> ra: array<f32, 256>;
var<workgroup> rb: array<f32, 256>;
var<workgroup> shared_a: f32;
var<workgroup> shared_b: f32;

// Sums a and b over the workgroup into shared_a and shared_b.
fn reduce2(li: u32, a: f32, b: f32) {
    ra[li] = a;
    rb[li] = b;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (li < s) {
            ra[li] += ra[li + s];
            rb[li] += rb[li + s];
        }
        workgroupBarrier();
    }
    if (li == 0u) {
        shared_a = ra[0];
        shared_b = rb[0];
    }
}

// params: 0 N, 1 perplexity, 2 max steps, 3 entropy tolerance, 4 r0, 5 rows. Row i of P holds
// the dissimilarities on entry and p_{j|i} on exit. Distances are shifted by the row minimum (P is
// unchanged by it, exp no longer underflows).
@compute @workgroup_size(256)
fn tsne_pcond(@builtin(local_invocation_index) li: u32,
              @builtin(workgroup_id) wg: vec3<u32>,
              @builtin(num_workgroups) nwg: vec3<u32>) {
    let n = pu(0u);
    let target_h = log(pf(1u));
    let steps = pu(2u);
    let tol = pf(3u);
    let r0 = pu(4u);
    let rows = pu(5u);
    for (var r = wg.x; r < rows; r += nwg.x) {
        let i = r0 + r;
        let row = r * n;
        var m = 3.0e38;
        for (var j = li; j < n; j += WG) {
            if (j != i) { m = min(m, P[row + j]); }
        }
        ra[li] = m;
        workgroupBarrier();
        for (var s = WG / 2u; s > 0u; s >>= 1u) {
            if (li < s) { ra[li] = min(ra[li], ra[li + s]); }
            workgroupBarrier();
        }
        if (li == 0u) { shared_a = ra[0]; }
        let dmin = workgroupUniformLoad(&shared_a);
        var beta = 1.0;
        var lo = -1.0;  // -1: no lower bound yet
        var hi = -1.0;  // -1: no upper bound yet
        var sp = 1.0;
        for (var step = 0u; step <= steps; step++) {
            var a = 0.0;
            var b = 0.0;
            for (var j = li; j < n; j += WG) {
                if (j != i) {
                    let dd = P[row + j] - dmin;
                    let e = exp(-dd * beta);
                    a += e;
                    b += dd * e;
                }
            }
            reduce2(li, a, b);
            sp = workgroupUniformLoad(&shared_a);
            let sdp = workgroupUniformLoad(&shared_b);
            // The last pass only computes the normaliser for the final beta.
            if (step == steps) { break; }
            let diff = log(sp) + beta * sdp / sp - target_h;
            if (abs(diff) <= tol) { break; }
            if (diff > 0.0) {
                lo = beta;
                if (hi < 0.0) { beta = beta * 2.0; } else { beta = (beta + hi) * 0.5; }
            } else {
                hi = beta;
                if (lo < 0.0) { beta = beta * 0.5; } else { beta = (beta + lo) * 0.5; }
            }
        }
        for (var j = li; j < n; j += WG) {
            var v = 0.0;
            if (j != i) { v = exp(-(P[row + j] - dmin) * beta) / sp; }
            P[row + j] = v;
        }
        workgroupBarrier();
    }
}

// params: 0 N, 1 1/(2N), 2 floor, 3 r0, 4 rows. On the diagonal block (rows and columns
// r0 .. r0 + rows): P ← max((P + Pᵀ) / 2N, floor), zero diagonal; each pair is owned by the
// thread of its upper-triangle element.
@compute @workgroup_size(16, 16)
fn tsne_sym(@builtin(global_invocation_id) g: vec3<u32>) {
    let n = pu(0u);
    let r0 = pu(3u);
    let rows = pu(4u);
    let a = g.y;
    let b = g.x;
    if (a >= rows || b >= rows) { return; }
    let i = r0 + a;
    let j = r0 + b;
    if (a == b) {
        P[a * n + i] = 0.0;
    } else if (a < b) {
        let v = max((P[a * n + j] + P[b * n + i]) * pf(1u), pf(2u));
        P[a * n + j] = v;
        P[b * n + i] = v;
    }
}

// params: 0 N, 1 1/(2N), 2 floor, 3 r0 of block P, 4 its rows, 5 r0 of block PB (below P), 6 its
// rows. The same as tsne_sym for the pairs (i in P's rows, j in PB's rows): every such pair has
// i < j, and its thread owns both P[i, j] and PB[j, i].
@compute @workgroup_size(16, 16)
fn tsne_sym_pair(@builtin(global_invocation_id) g: vec3<u32>) {
    let n = pu(0u);
    let a = g.y;
    let b = g.x;
    if (a >= pu(4u) || b >= pu(6u)) { return; }
    let i = pu(3u) + a;
    let j = pu(5u) + b;
    let v = max((P[a * n + j] + PB[b * n + i]) * pf(1u), pf(2u));
    P[a * n + j] = v;
    PB[b * n + i] = v;
}

var<workgroup> sx: array<f32, 256>;
var<workgroup> sy: array<f32, 256>;
var<workgroup> sz: array<f32, 256>;

// params: 0 N, 1 r0, 2 rows, 3 first (1: the block starts the sums), 4 last (1: it ends them).
// 2-D embedding, Y is [N, 2]. Sums over j in the block's rows, for every i.
@compute @workgroup_size(256)
fn tsne_forces2(@builtin(local_invocation_index) li: u32,
                @builtin(workgroup_id) wg: vec3<u32>,
                @builtin(num_workgroups) nwg: vec3<u32>) {
    let n = pu(0u);
    let r0 = pu(1u);
    let r1 = r0 + pu(2u);
    let first = pu(3u) != 0u;
    let last = pu(4u) != 0u;
    for (var base = wg.x * WG; base < n; base += nwg.x * WG) {
        let i = base + li;
        let valid = i < n;
        var yi = vec2<f32>(0.0);
        if (valid) { yi = vec2<f32>(Y[2u * i], Y[2u * i + 1u]); }
        var attr = vec2<f32>(0.0);
        var rep = vec2<f32>(0.0);
        var z = 0.0;
        if (valid && !first) {
            attr = vec2<f32>(acc[8u * i], acc[8u * i + 1u]);
            z = acc[8u * i + 3u];
            rep = vec2<f32>(acc[8u * i + 4u], acc[8u * i + 5u]);
        }
        for (var j0 = r0; j0 < r1; j0 += WG) {
            let j = j0 + li;
            if (j < r1) {
                sx[li] = Y[2u * j];
                sy[li] = Y[2u * j + 1u];
            }
            workgroupBarrier();
            if (valid) {
                let cnt = min(WG, r1 - j0);
                var at = (j0 - r0) * n + i;
                for (var k = 0u; k < cnt; k++) {
                    let d = yi - vec2<f32>(sx[k], sy[k]);
                    let w = 1.0 / (1.0 + dot(d, d));
                    attr += (P[at] * w) * d;
                    rep += (w * w) * d;
                    z += w;
                    at += n;
                }
            }
            workgroupBarrier();
        }
        if (valid) {
            // The j = i term added w = 1 to z and nothing to the sums; taken off once the sum is
            // complete, so a split P subtracts it at the same point as an unsplit one.
            acc[8u * i] = attr.x;
            acc[8u * i + 1u] = attr.y;
            acc[8u * i + 2u] = 0.0;
            acc[8u * i + 3u] = select(z, z - 1.0, last);
            acc[8u * i + 4u] = rep.x;
            acc[8u * i + 5u] = rep.y;
            acc[8u * i + 6u] = 0.0;
        }
    }
}

// params as tsne_forces2. 3-D embedding, Y is [N, 3].
@compute @workgroup_size(256)
fn tsne_forces3(@builtin(local_invocation_index) li: u32,
                @builtin(workgroup_id) wg: vec3<u32>,
                @builtin(num_workgroups) nwg: vec3<u32>) {
    let n = pu(0u);
    let r0 = pu(1u);
    let r1 = r0 + pu(2u);
    let first = pu(3u) != 0u;
    let last = pu(4u) != 0u;
    for (var base = wg.x * WG; base < n; base += nwg.x * WG) {
        let i = base + li;
        let valid = i < n;
        var yi = vec3<f32>(0.0);
        if (valid) { yi = vec3<f32>(Y[3u * i], Y[3u * i + 1u], Y[3u * i + 2u]); }
        var attr = vec3<f32>(0.0);
        var rep = vec3<f32>(0.0);
        var z = 0.0;
        if (valid && !first) {
            attr = vec3<f32>(acc[8u * i], acc[8u * i + 1u], acc[8u * i + 2u]);
            z = acc[8u * i + 3u];
            rep = vec3<f32>(acc[8u * i + 4u], acc[8u * i + 5u], acc[8u * i + 6u]);
        }
        for (var j0 = r0; j0 < r1; j0 += WG) {
            let j = j0 + li;
            if (j < r1) {
                sx[li] = Y[3u * j];
                sy[li] = Y[3u * j + 1u];
                sz[li] = Y[3u * j + 2u];
            }
            workgroupBarrier();
            if (valid) {
                let cnt = min(WG, r1 - j0);
                var at = (j0 - r0) * n + i;
                for (var k = 0u; k < cnt; k++) {
                    let d = yi - vec3<f32>(sx[k], sy[k], sz[k]);
                    let w = 1.0 / (1.0 + dot(d, d));
                    attr += (P[at] * w) * d;
                    rep += (w * w) * d;
                    z += w;
                    at += n;
                }
            }
            workgroupBarrier();
        }
        if (valid) {
            acc[8u * i] = attr.x;
            acc[8u * i + 1u] = attr.y;
            acc[8u * i + 2u] = attr.z;
            acc[8u * i + 3u] = select(z, z - 1.0, last);
            acc[8u * i + 4u] = rep.x;
            acc[8u * i + 5u] = rep.y;
            acc[8u * i + 6u] = rep.z;
        }
    }
}

// params: 0 N, 1 dims, 2 exaggeration, 3 learning rate, 4 momentum, 5 restart (1: update 0,
// gains 1 before the step). Every workgroup sums Z itself (N reads, far below the forces' N²),
// so one dispatch does the whole step.
@compute @workgroup_size(256)
fn tsne_update(@builtin(local_invocation_index) li: u32,
               @builtin(workgroup_id) wg: vec3<u32>,
               @builtin(num_workgroups) nwg: vec3<u32>) {
    let n = pu(0u);
    let dims = pu(1u);
    let exag = pf(2u);
    let lr = pf(3u);
    let mom = pf(4u);
    let restart = pu(5u) != 0u;
    var s = 0.0;
    for (var k = li; k < n; k += WG) { s += acc[8u * k + 3u]; }
    reduce2(li, s, 0.0);
    let inv_z = 1.0 / workgroupUniformLoad(&shared_a);
    let nd = n * dims;
    for (var i = wg.x * WG + li; i < n; i += nwg.x * WG) {
        for (var c = 0u; c < dims; c++) {
            let e = i * dims + c;
            let g = exag * acc[8u * i + c] - acc[8u * i + 4u + c] * inv_z;
            var u = state[e];
            var gain = state[nd + e];
            if (restart) {
                u = 0.0;
                gain = 1.0;
            }
            gain = select(gain * 0.8, gain + 0.2, u * g < 0.0);
            gain = max(gain, 0.01);
            u = mom * u - lr * gain * g;
            Y[e] += u;
            state[e] = u;
            state[nd + e] = gain;
            state[2u * nd + e] = g;
        }
    }
}

// params: 0 N, 1 dims, 2 r0, 3 rows, 4 first (1: the block starts the sums). Per point:
// Σ_j p_ij (ln p_ij + ln(1 + d²_ij)) and Σ_j w_ij over j in the block's rows, continuing the
// previous block's; the host adds ln Σ w to the sum of the first to get KL(P‖Q).
@compute @workgroup_size(256)
fn tsne_kl(@builtin(local_invocation_index) li: u32,
           @builtin(workgroup_id) wg: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>) {
    let n = pu(0u);
    let dims = pu(1u);
    let r0 = pu(2u);
    let r1 = r0 + pu(3u);
    let first = pu(4u) != 0u;
    for (var base = wg.x * WG; base < n; base += nwg.x * WG) {
        let i = base + li;
        let valid = i < n;
        var yi = vec3<f32>(0.0);
        if (valid) {
            yi.x = Y[dims * i];
            yi.y = Y[dims * i + 1u];
            if (dims == 3u) { yi.z = Y[dims * i + 2u]; }
        }
        var s = 0.0;
        var z = 0.0;
        if (valid && !first) {
            s = klout[2u * i];
            z = klout[2u * i + 1u];
        }
        for (var j0 = r0; j0 < r1; j0 += WG) {
            let j = j0 + li;
            if (j < r1) {
                sx[li] = Y[dims * j];
                sy[li] = Y[dims * j + 1u];
                sz[li] = 0.0;
                if (dims == 3u) { sz[li] = Y[dims * j + 2u]; }
            }
            workgroupBarrier();
            if (valid) {
                let cnt = min(WG, r1 - j0);
                for (var k = 0u; k < cnt; k++) {
                    if (j0 + k != i) {
                        let d = yi - vec3<f32>(sx[k], sy[k], sz[k]);
                        let d2 = dot(d, d);
                        let p = P[(j0 - r0 + k) * n + i];
                        if (p > 0.0) { s += p * (log(p) + log(1.0 + d2)); }
                        z += 1.0 / (1.0 + d2);
                    }
                }
            }
            workgroupBarrier();
        }
        if (valid) {
            klout[2u * i] = s;
            klout[2u * i + 1u] = z;
        }
    }
}
