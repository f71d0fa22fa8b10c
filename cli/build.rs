//! Links the `pipe` executable position-dependent (`-no-pie`) on Linux with glibc, with the
//! functions a run starts with laid out together (`cli/hot-symbols.txt`).
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
    // The unwinder linked in from GCC's static `libgcc_eh.a` instead of loading `libgcc_s.so.1`:
    // Rust needs only its 12 `_Unwind_*` functions (panics, backtraces). The shared library
    // costs every start of pipe an `open` and four mappings, its relocations, and its
    // constructor `__cpu_indicator_init`, which asks the CPU what it is with a dozen `cpuid`
    // instructions; under a hypervisor each of those traps, 7 to 10 µs here (2-vCPU
    // Firecracker). Listed as one of pipe's own libraries it comes before `-lgcc_s` on the link
    // line; the linker (LLD) takes the unwinder from it, and `--as-needed` then drops
    // `libgcc_s.so.1`, as `gcc -static-libgcc` would. `PIPE_STATIC_UNWIND=0` keeps the shared one.
    println!("cargo:rerun-if-env-changed=PIPE_STATIC_UNWIND");
    let unwind = std::env::var_os("PIPE_STATIC_UNWIND").is_none_or(|v| v != "0");
    if os == "linux" && env == "gnu" && unwind {
        println!("cargo:rustc-link-lib=static=gcc_eh");
    }
    // The functions a one-job run executes, laid out together at the start of `.text`: a
    // one-job run then takes about 95 fewer page faults (see bench/order/hot-symbols.sh, which
    // writes the list). The option is LLD's (and mold's and gold's), and LLD is Rust's default
    // linker on x86-64 Linux; `PIPE_SYMBOL_ORDER=0` leaves it out for another linker.
    println!("cargo:rerun-if-changed=cli/hot-symbols.txt");
    println!("cargo:rerun-if-env-changed=PIPE_SYMBOL_ORDER");
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let order = std::env::var_os("PIPE_SYMBOL_ORDER").is_none_or(|v| v != "0");
    if os == "linux" && env == "gnu" && arch == "x86_64" && order {
        let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
        let list = std::path::Path::new(&dir)
            .join("cli")
            .join("hot-symbols.txt");
        if list.is_file() {
            println!(
                "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
                list.display()
            );
            println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
        }
    }
}
