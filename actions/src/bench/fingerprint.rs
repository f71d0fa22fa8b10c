//! The machine a measurement comes from. Timings from different fingerprints are never gated
//! against each other (promotion.md §2.3 point 11).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What identifies a machine for timing purposes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// `sha256:` of the fields below (load average excluded), shortened to 16 hex digits.
    pub id: String,
    /// CPU model name.
    pub cpu: String,
    /// Logical cores.
    pub cores: usize,
    /// `x86_64`, `aarch64`, …
    pub arch: String,
    /// `linux`, …
    pub os: String,
    /// Kernel release.
    pub kernel: String,
    /// CPU frequency governor, when the kernel exposes one.
    pub governor: Option<String>,
}

fn read_trim(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

impl Fingerprint {
    /// This machine's fingerprint.
    pub fn current() -> Fingerprint {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name") || l.starts_with("Model"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".to_string());
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let kernel =
            read_trim("/proc/sys/kernel/osrelease").unwrap_or_else(|| "unknown".to_string());
        let governor = read_trim("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor");
        Fingerprint::new(
            cpu,
            cores,
            std::env::consts::ARCH.to_string(),
            std::env::consts::OS.to_string(),
            kernel,
            governor,
        )
    }

    /// A fingerprint from its parts (the id is computed).
    pub fn new(
        cpu: String,
        cores: usize,
        arch: String,
        os: String,
        kernel: String,
        governor: Option<String>,
    ) -> Fingerprint {
        let mut h = Sha256::new();
        for part in [
            cpu.as_str(),
            &cores.to_string(),
            &arch,
            &os,
            &kernel,
            governor.as_deref().unwrap_or(""),
        ] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        let id = hex::encode(h.finalize())[..16].to_string();
        Fingerprint {
            id,
            cpu,
            cores,
            arch,
            os,
            kernel,
            governor,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_depends_on_every_part() {
        let a = Fingerprint::new("c".into(), 2, "x".into(), "l".into(), "6".into(), None);
        let b = Fingerprint::new("c".into(), 4, "x".into(), "l".into(), "6".into(), None);
        assert_ne!(a.id, b.id);
        assert_eq!(a.id.len(), 16);
        assert_eq!(Fingerprint::current().id, Fingerprint::current().id);
    }
}
