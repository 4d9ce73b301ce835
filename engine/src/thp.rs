//! Transparent huge pages off for the gateway's process, unless the
//! configuration keeps them (`transparent_huge_pages`).

/// Turns transparent huge pages off for this process (all its mappings,
/// present and future): see `GatewayConfig::transparent_huge_pages`.
#[allow(unsafe_code)]
pub(crate) fn disable_transparent_huge_pages() -> std::io::Result<()> {
    let on: libc::c_ulong = 1;
    let unused: libc::c_ulong = 0;
    // SAFETY: PR_SET_THP_DISABLE takes integer arguments only; no pointer
    // is passed, so no memory of ours is read or written. It sets a flag on
    // the process's address space. Exercised by every gateway start with the
    // default config; cli/tests/gateway_process.rs reads the flag back from
    // /proc/<pid>/status.
    let rc = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, on, unused, unused, unused) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
