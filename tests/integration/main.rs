//! Integration tests that drive the real `pipe` binary.
mod scan;
