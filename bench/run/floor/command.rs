//! The floor of the one-job benchmark in Rust: start `bash -e script.sh` with
//! `std::process::Command` and wait. Nothing else: no workflow, no record, no captured output.
//! bench/run/bench.sh times it beside `pipe run` and the script itself.
fn main() {
    let code = match std::process::Command::new("bash")
        .args(["-e", "script.sh"])
        .status()
    {
        Ok(status) => status.code().unwrap_or(1),
        Err(_) => 127,
    };
    std::process::exit(code);
}
