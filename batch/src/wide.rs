//! Loops compiled for AVX-512 where the CPU has it, chosen when they are called.
//!
//! The release build targets baseline x86-64, so a loop over a row's columns takes SSE's
//! 4 single-precision lanes a step. A function defined by [`wide!`] runs its body
//! compiled for AVX-512 (16 lanes) when the CPU has it, else as built (the body is an
//! `#[inline(always)]` function called from both). Each lane does
//! the same operations either way (Rust does not fuse a multiply and an add unless told
//! to), so both give the same results, bit for bit.

/// `wide! { fn name(args) -> Ret { body } }` defines `name`, whose body runs compiled for
/// AVX-512 where the CPU has it, else as built.
macro_rules! wide {
    ($(#[$doc:meta])* fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$doc])*
        fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn body($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx512f") {
                #[target_feature(enable = "avx512f")]
                fn wide($($arg: $ty),*) $(-> $ret)? {
                    body($($arg),*)
                }
                // SAFETY: the CPU feature `wide` is compiled for was detected.
                return unsafe { wide($($arg),*) };
            }
            body($($arg),*)
        }
    };
}

pub(crate) use wide;
