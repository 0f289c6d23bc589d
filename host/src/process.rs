//! Protections of the whole process. Data keys, the Vault token and plaintext records
//! live in this process's memory; a core dump would write them to disk, where whoever
//! reads crash dumps (often more people than read Vault) could take them.

/// Turns core dumps off for this process (and stops other processes of the same user
/// from attaching a debugger to it): `RLIMIT_CORE` 0 and `PR_SET_DUMPABLE` 0 on Linux,
/// `RLIMIT_CORE` 0 elsewhere on Unix. `kafka-transit --core-dumps` skips this.
pub fn disable_core_dumps() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let none = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: plain system calls with valid arguments.
        if unsafe { libc::setrlimit(libc::RLIMIT_CORE, &none) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        #[cfg(target_os = "linux")]
        // SAFETY: as above.
        if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #[test]
    fn no_core_dumps_once_disabled() {
        super::disable_core_dumps().unwrap();
        // SAFETY: plain system calls with valid arguments.
        let dumpable = unsafe { libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0) };
        assert_eq!(dumpable, 0);
        let mut limit = libc::rlimit {
            rlim_cur: 1,
            rlim_max: 1,
        };
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_CORE, &mut limit) }, 0);
        assert_eq!((limit.rlim_cur, limit.rlim_max), (0, 0));
    }
}
