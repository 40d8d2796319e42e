//! Process measurements: peak RSS (`VmHWM`), current RSS and CPU time (`getrusage`).

use std::time::Duration;

/// `VmHWM` (peak resident set size) of this process in KiB, from `/proc/self/status`.
pub fn peak_rss_kib() -> Option<u64> {
    status_field("VmHWM:")
}

/// Start a new peak: `VmHWM` becomes the current RSS (`/proc/self/clear_refs` with 5, Linux
/// 4.0+), so a phase's peak is its own. False where that is not possible.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Hand heap memory that earlier phases freed back to the kernel (glibc's `malloc_trim(0)`,
/// every arena), so that the next phase's RSS starts from what is live, not from what the
/// allocator kept. False where there is no such call.
pub fn release_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            /// malloc_trim(3) from the glibc the standard library already links.
            fn malloc_trim(pad: usize) -> i32;
        }
        // SAFETY: malloc_trim takes no pointers and only returns unused pages to the kernel.
        unsafe { malloc_trim(0) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// `VmRSS` (current resident set size) of this process in KiB.
pub fn rss_kib() -> Option<u64> {
    status_field("VmRSS:")
}

fn status_field(name: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    text.lines()
        .find(|l| l.starts_with(name))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// User and system CPU time of this process (all threads) so far.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CpuTime {
    pub user: Duration,
    pub system: Duration,
}

impl CpuTime {
    pub fn total(&self) -> Duration {
        self.user + self.system
    }

    pub fn since(&self, earlier: &CpuTime) -> CpuTime {
        CpuTime {
            user: self.user.saturating_sub(earlier.user),
            system: self.system.saturating_sub(earlier.system),
        }
    }
}

#[cfg(all(target_os = "linux", target_pointer_width = "64"))]
mod ffi {
    /// `struct timeval` on 64-bit Linux.
    #[repr(C)]
    #[derive(Default)]
    pub struct Timeval {
        pub tv_sec: i64,
        pub tv_usec: i64,
    }

    /// `struct rusage` on 64-bit Linux: two timevals and fourteen `long`s.
    #[repr(C)]
    #[derive(Default)]
    pub struct Rusage {
        pub ru_utime: Timeval,
        pub ru_stime: Timeval,
        pub rest: [i64; 14],
    }

    pub const RUSAGE_SELF: i32 = 0;

    unsafe extern "C" {
        /// getrusage(2) from the C library the standard library already links.
        pub fn getrusage(who: i32, usage: *mut Rusage) -> i32;
    }
}

/// CPU time of this process from `getrusage(RUSAGE_SELF)` (Linux), else from `/proc/self/stat`.
pub fn cpu_time() -> CpuTime {
    #[cfg(all(target_os = "linux", target_pointer_width = "64"))]
    {
        let mut usage = ffi::Rusage::default();
        // SAFETY: `usage` is a valid, exclusively borrowed `struct rusage` of the 64-bit Linux
        // layout; getrusage only writes into it.
        let rc = unsafe { ffi::getrusage(ffi::RUSAGE_SELF, &mut usage) };
        if rc == 0 {
            let tv = |t: &ffi::Timeval| {
                Duration::from_secs(t.tv_sec.max(0) as u64)
                    + Duration::from_micros(t.tv_usec.max(0) as u64)
            };
            return CpuTime {
                user: tv(&usage.ru_utime),
                system: tv(&usage.ru_stime),
            };
        }
    }
    proc_stat_cpu().unwrap_or_default()
}

/// Fields 14 and 15 of `/proc/self/stat` (clock ticks, USER_HZ = 100 on Linux).
fn proc_stat_cpu() -> Option<CpuTime> {
    let text = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after = text.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| -> Option<Duration> {
        let t: u64 = fields.get(i)?.parse().ok()?;
        Some(Duration::from_millis(t * 10))
    };
    // After the command name, field 3 (state) is index 0, so utime (14) is index 11.
    Some(CpuTime {
        user: ticks(11)?,
        system: ticks(12)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measurements_are_available_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(peak_rss_kib().unwrap() >= rss_kib().unwrap() / 2);
            let mut x = 0u64;
            for i in 0..2_000_000u64 {
                x = x.wrapping_mul(31).wrapping_add(i);
            }
            assert!(x != 1);
            let t = cpu_time();
            assert!(t.total() > Duration::ZERO);
            assert!(proc_stat_cpu().is_some());
        }
    }
}
