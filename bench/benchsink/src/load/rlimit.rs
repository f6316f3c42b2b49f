//! The open-files limit.

use std::io;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit and returns the new
/// soft limit. Every connection is a descriptor, and the usual soft default
/// (1024) would end an idle run of a thousand connections early with
/// EMFILE; raising up to the hard limit needs no privilege.
pub fn raise_nofile() -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct we pass, which we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: setrlimit only reads the struct we pass.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raw const lim) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(lim.rlim_cur)
}

#[cfg(test)]
mod tests {
    #[test]
    fn raises_to_hard_limit() {
        let soft = super::raise_nofile().unwrap();
        // Idempotent: a second call finds nothing left to raise.
        assert_eq!(super::raise_nofile().unwrap(), soft);
        assert!(soft >= 1024, "{soft}");
    }
}
