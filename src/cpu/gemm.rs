//! A bounds-checked, optionally parallel front to `matrixmultiply::sgemm`.

use rayon::prelude::*;

/// A strided read-only matrix view: element `(i, j)` is `data[off + i * rs + j * cs]`.
#[derive(Clone, Copy)]
pub(crate) struct Mat<'a> {
    pub data: &'a [f32],
    pub off: usize,
    pub rs: usize,
    pub cs: usize,
}

impl<'a> Mat<'a> {
    pub fn new(data: &'a [f32], off: usize, rs: usize, cs: usize) -> Self {
        Mat { data, off, rs, cs }
    }
    /// Row-major `rows x cols` starting at `off`.
    pub fn rows(data: &'a [f32], off: usize, cols: usize) -> Self {
        Mat {
            data,
            off,
            rs: cols,
            cs: 1,
        }
    }
    fn fits(&self, rows: usize, cols: usize) -> bool {
        rows == 0
            || cols == 0
            || self.off + (rows - 1) * self.rs + (cols - 1) * self.cs < self.data.len()
    }
}

/// Raw pointer that may cross rayon's thread boundary; each task writes a disjoint block of C.
#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

impl SendPtr {
    // A method call makes closures capture the whole wrapper rather than its raw-pointer field.
    fn ptr(self) -> *mut f32 {
        self.0
    }
}

/// Below this many multiply-adds, splitting across threads costs more than it saves.
const PAR_MIN_WORK: usize = 1 << 18;

/// `C[m, n] = A[m, k] * B[k, n]` (`+ C` when `accumulate`), C row-major with leading dimension
/// `ldc` starting at `c[0]`. With `par`, C is split into row or column blocks across threads.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm(
    m: usize,
    k: usize,
    n: usize,
    a: Mat,
    b: Mat,
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
    par: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    // These guard the unsafe sgemm calls below; shapes were validated by the caller, so a failure
    // here is a bug in the CPU backend, not a user error.
    assert!(a.fits(m, k) && b.fits(k, n), "gemm operand out of bounds");
    assert!(
        ldc >= n && (m - 1) * ldc + n <= c.len(),
        "gemm output out of bounds"
    );
    let beta = if accumulate { 1.0 } else { 0.0 };
    let cp = SendPtr(c.as_mut_ptr());
    let threads = rayon::current_num_threads();
    let run = |i0: usize, i1: usize, j0: usize, j1: usize| {
        // SAFETY: the bounds checks above cover every (i, j) < (m, n); callers give each task a
        // disjoint [i0, i1) x [j0, j1) block of C, and A/B are only read.
        unsafe {
            matrixmultiply::sgemm(
                i1 - i0,
                k,
                j1 - j0,
                1.0,
                a.data.as_ptr().add(a.off + i0 * a.rs),
                a.rs as isize,
                a.cs as isize,
                b.data.as_ptr().add(b.off + j0 * b.cs),
                b.rs as isize,
                b.cs as isize,
                beta,
                cp.ptr().add(i0 * ldc + j0),
                ldc as isize,
                1,
            )
        }
    };
    if !par || threads < 2 || m * n * k < PAR_MIN_WORK {
        run(0, m, 0, n);
        return;
    }
    // Split the larger dimension so each block still amortises sgemm's packing.
    if n >= m {
        let step = n.div_ceil(threads).next_multiple_of(16).min(n);
        let blocks = n.div_ceil(step);
        (0..blocks)
            .into_par_iter()
            .for_each(|t| run(0, m, t * step, ((t + 1) * step).min(n)));
    } else {
        let step = m.div_ceil(threads).next_multiple_of(8).min(m);
        let blocks = m.div_ceil(step);
        (0..blocks)
            .into_par_iter()
            .for_each(|t| run(t * step, ((t + 1) * step).min(m), 0, n));
    }
}
