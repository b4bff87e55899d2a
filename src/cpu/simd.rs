//! Run-time choice of AVX2 code for the few loops the compiler vectorises itself: the crate is
//! built for baseline x86-64 (SSE2, 4 lanes), while nearly every x86 CPU in use has 8-lane AVX2.

/// Whether this CPU runs AVX2 and FMA (always false off x86-64). `std` caches the detection.
#[inline]
pub(crate) fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Defines `$name($args) -> $ret`, which runs `$body` compiled for AVX2+FMA when [`has_avx2`]
/// holds and for the baseline otherwise. The body is compiled twice from one source; Rust never
/// fuses or reorders float operations on its own (no `mul_add` in the bodies), so both paths give
/// bit-identical results, only in wider lanes.
macro_rules! avx2_dispatch {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn body($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma")]
            fn avx2($($arg: $ty),*) $(-> $ret)? {
                body($($arg),*)
            }
            #[cfg(target_arch = "x86_64")]
            if $crate::cpu::simd::has_avx2() {
                // SAFETY: the CPU was just checked for the features `avx2` is compiled with.
                return unsafe { avx2($($arg),*) };
            }
            body($($arg),*)
        }
    };
}
pub(crate) use avx2_dispatch;
