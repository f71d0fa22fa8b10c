//! Dockerfile builds, once per platform, through the engine's build API.

use std::path::Path;

use bollard::Docker;

use super::{BuildSpec, Built, ImageError};

/// Builds `dockerfile` for every platform of `spec` and assembles one index.
pub async fn build(
    _docker: &Docker,
    _spec: &BuildSpec,
    _dockerfile: &Path,
    _context: &Path,
    _args: &[(String, String)],
    _warnings: &mut Vec<String>,
) -> Result<Built, ImageError> {
    Err(ImageError::Input(
        "`dockerfile` builds are not available yet".to_owned(),
    ))
}
