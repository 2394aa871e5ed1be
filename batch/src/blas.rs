//! How training uses the linked OpenBLAS (the `openblas-system` library of
//! ndarray-linalg): on the calling thread only. Its kernels are its own choice (or
//! `OPENBLAS_CORETYPE`'s, read when it loads); [`kernels`] names them in the logs.

use std::ffi::{CStr, c_char, c_int};

unsafe extern "C" {
    /// OpenBLAS's size of its own thread pool.
    fn openblas_set_num_threads(threads: c_int);
    /// Stops and joins OpenBLAS's pool threads (what OpenBLAS itself calls before a fork).
    fn blas_thread_shutdown_() -> c_int;
    /// The processor type whose kernels OpenBLAS chose when it loaded.
    fn openblas_get_corename() -> *const c_char;
}

/// Makes OpenBLAS compute on the calling thread only. Training spreads its work over
/// its own `--threads` threads, each of which calls BLAS (the smoothing's matrix
/// products); OpenBLAS's pool on top of them oversubscribes the cores. Measured on
/// 10k users on 2 cores: smoothing 0.47 s with OpenBLAS's pool, 0.32 s without; the
/// decomposition 0.32 s and 0.22 s. Called once; its effect lasts for the process.
pub fn on_calling_thread() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    // SAFETY: a plain setter of the linked OpenBLAS.
    ONCE.call_once(|| unsafe { openblas_set_num_threads(1) });
}

/// [`on_calling_thread`], and OpenBLAS's pool threads stopped: OpenBLAS starts them when
/// it is loaded, and each spins on `sched_yield` for about 0.1 s before it sleeps, taking
/// a core from whatever runs first. Called first thing in `kindred-batch`, it took the
/// 10k-user read from 0.159 to 0.126 s (medians of 7). (`blas_thread_shutdown_` is in
/// OpenBLAS's pthread and OpenMP builds, which Debian's `libopenblas0-pthread` is, as
/// batch/Dockerfile installs; not in its serial build.)
///
/// # Safety
///
/// No other thread of the process may be in a BLAS call: the shutdown joins the pool's
/// threads, and a threaded call in flight would wait for them forever. Call it before
/// the process starts any other thread.
pub unsafe fn stop_pool() {
    on_calling_thread();
    // SAFETY: the pool is OpenBLAS's own, stopped as it stops it before a fork; with one
    // thread set above, no later call restarts it.
    unsafe {
        blas_thread_shutdown_();
    }
}

/// The kernels OpenBLAS chose when this process loaded it ("Haswell", "SkylakeX", ...).
pub fn kernels() -> String {
    // SAFETY: OpenBLAS returns a pointer to a static, NUL-terminated name.
    unsafe { CStr::from_ptr(openblas_get_corename()) }
        .to_string_lossy()
        .into_owned()
}
