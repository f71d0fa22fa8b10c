//! The heap's use of transparent huge pages.
//!
//! mimalloc (v2) reserves a 1 GiB arena at the first allocation and advises it for
//! transparent huge pages (`MADV_HUGEPAGE`), so every 2 MiB of heap that pipe touches first
//! is one huge page the kernel clears. For a small run that is pure cost: three or four huge
//! pages, about 1 ms of a 7 ms one-job run. For a large workflow it pays: a dry run of a
//! 868 KB, 1,000-job workflow is about 13 % faster with huge pages than with 4 KiB faults.
//! So pipe starts without them and gives them back to every command but `run`, which takes
//! them only for large workflows ([`huge_pages`]).
//!
//! mimalloc's own switch (`MIMALLOC_ALLOW_THP=0`) is not used: it calls
//! `prctl(PR_SET_THP_DISABLE)`, which step processes would inherit across `exec`. The advice
//! set here belongs to pipe's own mappings and ends with them.

/// Workflows with this much text or more get huge pages back. Measured on 2026-11-27 (2 vCPU
/// KVM, THP in `madvise` mode): without them a one-job run took 6.6 ms instead of 7.5 ms, a
/// 1,000-job workflow of 229 KB ran the same either way, and the dry run of an 868 KB one
/// took 13 % longer.
pub const LARGE_WORKFLOW_BYTES: u64 = 512 * 1024;

/// Turns huge pages on when the workflows about to be loaded are large.
pub fn for_workflows(bytes: u64) {
    if bytes >= LARGE_WORKFLOW_BYTES {
        huge_pages(true);
    }
}

/// Advises the arenas mimalloc has reserved so far for transparent huge pages, or against
/// them. Pages already faulted in stay as they are. Best effort: errors are ignored.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub fn huge_pages(on: bool) {
    use std::ffi::{c_int, c_void};
    // Public mimalloc API (`mimalloc.h`), linked in statically by `libmimalloc-sys`, which does
    // not declare it. Arena ids count from 1; an id past the last arena gives a null start.
    unsafe extern "C" {
        fn mi_arena_area(arena_id: c_int, size: *mut usize) -> *mut c_void;
    }
    let advice = if on {
        libc::MADV_HUGEPAGE
    } else {
        libc::MADV_NOHUGEPAGE
    };
    for id in 1..=64 {
        let mut size = 0usize;
        // SAFETY: `mi_arena_area` only reads mimalloc's arena table and writes `size`.
        let start = unsafe { mi_arena_area(id, &mut size) };
        if start.is_null() || size == 0 {
            break;
        }
        // SAFETY: the range is a mapping mimalloc owns for the life of the process; changing
        // its huge-page advice does not change its contents or protection.
        let _ = unsafe { libc::madvise(start, size, advice) };
    }
}

/// Elsewhere the kernel decides alone.
#[cfg(not(target_os = "linux"))]
pub fn huge_pages(_on: bool) {}
