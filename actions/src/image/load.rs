//! `load: true`: imports the archive (OCI layout + docker-save `manifest.json`) into the job's
//! Docker engine through `POST /images/load` (bollard, API version negotiated; the engine is
//! found by `pipe_runner::executor::docker::endpoint`), then checks that each platform's image
//! id equals its config digest.

use std::path::Path;

use bollard::Docker;
use futures_util::StreamExt;
use pipe_runner::executor::docker::endpoint;

use super::{Built, ImageError};

/// One image the engine now has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Loaded {
    /// `linux/arm64`.
    pub platform: String,
    /// Its names.
    pub tags: Vec<String>,
    /// The engine's image id (= the config digest).
    pub id: String,
}

/// Connects to the engine the way the Docker executor does.
pub async fn connect() -> Result<Docker, ImageError> {
    endpoint::connect(&endpoint::ProcessEnv)
        .await
        .map(|(d, _)| d)
        .map_err(|e| ImageError::Engine(e.to_string()))
}

/// Streams `archive` into the engine and checks the loaded ids.
pub async fn load(
    docker: &Docker,
    archive: &Path,
    built: &Built,
) -> Result<Vec<Loaded>, ImageError> {
    let file = tokio::fs::File::open(archive)
        .await
        .map_err(|e| ImageError::io(archive, e))?;
    let body = tokio_util::io::ReaderStream::with_capacity(file, 1 << 20);
    let opts = bollard::query_parameters::ImportImageOptionsBuilder::new()
        .quiet(true)
        .build();
    let mut stream = docker.import_image_stream(opts, body, None);
    while let Some(item) = stream.next().await {
        let info = item.map_err(|e| {
            ImageError::Engine(format!(
                "the engine could not load `{}`: {}",
                archive.display(),
                endpoint::short_error(&e)
            ))
        })?;
        if let Some(err) = info.error_detail.and_then(|d| d.message) {
            return Err(ImageError::Engine(format!(
                "the engine could not load `{}`: {err}",
                archive.display()
            )));
        }
    }
    let mut out = Vec::new();
    for p in &built.platforms {
        let Some(tag) = p.repo_tags.first() else {
            continue;
        };
        let img = docker.inspect_image(tag).await.map_err(|e| {
            ImageError::Engine(format!(
                "`{tag}` is not in the engine after the load: {}",
                endpoint::short_error(&e)
            ))
        })?;
        let id = img.id.unwrap_or_default();
        if id != p.config.digest {
            return Err(ImageError::Corrupt(format!(
                "the engine loaded `{tag}` as `{id}`, not as its config digest `{}`",
                p.config.digest
            )));
        }
        out.push(Loaded {
            platform: p.platform.to_string(),
            tags: p.repo_tags.clone(),
            id,
        });
    }
    Ok(out)
}
