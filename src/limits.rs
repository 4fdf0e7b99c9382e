//! Process resource limits: servers that hold thousands of connections raise the open-file
//! soft limit to the hard limit at start, and say so; after a flood they give freed memory
//! back.

/// Raise RLIMIT_NOFILE's soft limit to its hard limit; returns the new soft limit.
pub fn raise_nofile() -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let lim = getrlimit(Resource::Nofile);
    let (cur, max) = (lim.current.unwrap_or(u64::MAX), lim.maximum);
    if let Some(max) = max {
        if cur < max {
            match setrlimit(
                Resource::Nofile,
                Rlimit {
                    current: Some(max),
                    maximum: Some(max),
                },
            ) {
                Ok(()) => {
                    tracing::info!(
                        from = cur,
                        to = max,
                        "raised the open-file limit (RLIMIT_NOFILE soft -> hard)"
                    );
                    return max;
                }
                Err(e) => {
                    tracing::warn!(error = %e, limit = cur, "cannot raise the open-file limit")
                }
            }
        }
    }
    cur
}

/// Give freed heap memory back to the system. After a flood of connections closes, glibc
/// keeps the freed chunks in its arenas (measured: RSS stayed at its peak); `malloc_trim`
/// returns whole free pages. A no-op on other C libraries.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn malloc_trim(pad: usize) -> std::ffi::c_int;
        }
        // SAFETY: malloc_trim takes no pointers and is thread-safe in glibc (it locks each
        // arena while trimming it).
        unsafe {
            malloc_trim(0);
        }
    }
}
