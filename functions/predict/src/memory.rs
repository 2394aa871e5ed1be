//! How the function keeps its resident memory near what the model needs (glibc's
//! allocator; elsewhere these do nothing).
//!
//! glibc gives each thread that meets contention an arena of its own, up to 8 per core,
//! and memory freed in one arena serves only that arena's threads. A version is decoded
//! on several threads, so its freed buffers end up spread over arenas where they stay
//! resident: at a million users 20 to 50 MB of the process (docs/scaling.md).

/// Caps the allocator's arenas at one per core, unless `MALLOC_ARENA_MAX` or a
/// `glibc.malloc.arena_max` in `GLIBC_TUNABLES` says otherwise. Call it before any thread
/// is started.
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let tuned = std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("arena_max"));
        if tuned || std::env::var_os("MALLOC_ARENA_MAX").is_some() {
            return;
        }
        const M_ARENA_MAX: std::ffi::c_int = -8;
        unsafe extern "C" {
            fn mallopt(param: std::ffi::c_int, value: std::ffi::c_int) -> std::ffi::c_int;
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        // SAFETY: glibc's tuning call; M_ARENA_MAX only bounds arenas created later.
        unsafe {
            mallopt(M_ARENA_MAX, cores.min(64) as std::ffi::c_int);
        }
    }
}

/// Hands the memory freed while a version was decoded (its artifacts' bytes, the profiles
/// and 32-bit points dropped) back to the kernel. glibc otherwise keeps freed blocks that
/// lie between live ones inside its heaps, where they still count as resident.
pub(crate) fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            fn malloc_trim(pad: usize) -> std::ffi::c_int;
        }
        // SAFETY: glibc's own maintenance call, safe at any time from any thread; it only
        // returns free pages to the kernel.
        unsafe {
            malloc_trim(0);
        }
    }
}
