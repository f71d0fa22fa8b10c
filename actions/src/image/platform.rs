//! Platforms (`os/arch[/variant]`) as OCI image indexes name them.

use std::fmt;

/// Architectures (Go's `GOARCH` names) an image may be built for.
const ARCHES: &[&str] = &[
    "amd64", "arm64", "arm", "386", "ppc64le", "s390x", "riscv64", "mips64le", "loong64",
];
/// Operating systems (Go's `GOOS` names).
const OSES: &[&str] = &["linux", "windows", "freebsd"];

/// One target platform.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Platform {
    /// `linux`.
    pub os: String,
    /// `amd64`, `arm64`, `arm`…
    pub arch: String,
    /// `v7` for `linux/arm/v7`.
    pub variant: Option<String>,
}

impl Platform {
    /// Parses `os/arch[/variant]`; the error says what is wrong.
    pub fn parse(s: &str) -> Result<Platform, String> {
        let parts: Vec<&str> = s.trim().split('/').collect();
        let (os, arch, variant) = match parts.as_slice() {
            [os, arch] => (*os, *arch, None),
            [os, arch, v] => (*os, *arch, Some(*v)),
            _ => {
                return Err(format!(
                    "platform `{s}` is not `os/arch[/variant]` (e.g. `linux/amd64`, `linux/arm/v7`)"
                ));
            }
        };
        if !OSES.contains(&os) {
            return Err(format!(
                "platform `{s}`: unknown os `{os}` (known: {})",
                OSES.join(", ")
            ));
        }
        if !ARCHES.contains(&arch) {
            return Err(format!(
                "platform `{s}`: unknown architecture `{arch}` (known: {})",
                ARCHES.join(", ")
            ));
        }
        if let Some(v) = variant {
            let ok = match arch {
                "arm" => matches!(v, "v5" | "v6" | "v7" | "v8"),
                "arm64" => matches!(v, "v8" | "v9"),
                "amd64" => matches!(v, "v1" | "v2" | "v3" | "v4"),
                _ => false,
            };
            if !ok {
                return Err(format!(
                    "platform `{s}`: `{v}` is not a variant of `{arch}`"
                ));
            }
        }
        Ok(Platform {
            os: os.to_owned(),
            arch: arch.to_owned(),
            variant: variant.map(str::to_owned),
        })
    }

    /// The platform of the machine pipe runs on.
    pub fn host() -> Platform {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            "riscv64" => "riscv64",
            "s390x" => "s390x",
            other => other,
        };
        Platform {
            os: "linux".to_owned(),
            arch: arch.to_owned(),
            variant: None,
        }
    }

    /// A name for tags and file names: `amd64`, `arm64`, `arm-v7`.
    pub fn suffix(&self) -> String {
        match &self.variant {
            Some(v) => format!("{}-{v}", self.arch),
            None => self.arch.clone(),
        }
    }

    /// The uname -m a process sees on this platform (for messages and tests).
    pub fn machine(&self) -> &'static str {
        match self.arch.as_str() {
            "amd64" => "x86_64",
            "arm64" => "aarch64",
            "arm" => "armv7l",
            "386" => "i686",
            "ppc64le" => "ppc64le",
            "s390x" => "s390x",
            "riscv64" => "riscv64",
            _ => "unknown",
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.arch)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms_parse_and_print_back() {
        for s in [
            "linux/amd64",
            "linux/arm64",
            "linux/arm/v7",
            "linux/arm64/v8",
        ] {
            assert_eq!(Platform::parse(s).expect("valid").to_string(), s);
        }
        let p = Platform::parse("linux/arm/v7").expect("valid");
        assert_eq!(p.variant.as_deref(), Some("v7"));
        assert_eq!(p.suffix(), "arm-v7");
    }

    #[test]
    fn invalid_platforms_say_why() {
        for (s, why) in [
            ("linux", "is not `os/arch"),
            ("linux/amd64/v7/x", "is not `os/arch"),
            ("plan9/amd64", "unknown os `plan9`"),
            ("linux/x86_64", "unknown architecture `x86_64`"),
            ("linux/arm/v9", "`v9` is not a variant of `arm`"),
            ("linux/386/v2", "not a variant"),
        ] {
            let e = Platform::parse(s).expect_err(s);
            assert!(e.contains(why), "{s}: {e}");
        }
    }

    proptest::proptest! {
        /// Parsing never panics, and what parses prints back the same.
        #[test]
        fn parse_is_total_and_round_trips(s in "[a-z0-9/]{0,20}") {
            if let Ok(p) = Platform::parse(&s) {
                proptest::prop_assert_eq!(p.to_string(), s);
            }
        }
    }
}
