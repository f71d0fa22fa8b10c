//! Links the `pipe` executable position-dependent (`-no-pie`) on Linux with glibc.
//!
//! A position-independent `pipe` carries about 54,000 relative relocations (vtables, panic
//! locations, clap's tables) that the dynamic loader applies at every start: it reads 1.3 MB
//! of relocation records and writes to every page of `.data.rel.ro` (65 % of the 416 start-up
//! page faults of `pipe --version`). Linked at a fixed address the linker resolves them once:
//! `pipe --version` drops to 173 page faults and from 3.6 to 2.4 ms, and every `pipe run` starts that
//! much sooner. Go links its executables the same way by default. The libraries, the heap
//! and the stacks are still placed at random; set `PIPE_PIE=1` when building to keep a PIE.

fn main() {
    println!("cargo:rerun-if-changed=cli/build.rs");
    println!("cargo:rerun-if-env-changed=PIPE_PIE");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    let pie = std::env::var_os("PIPE_PIE").is_some_and(|v| !v.is_empty() && v != "0");
    if os == "linux" && env == "gnu" && !pie {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
}
