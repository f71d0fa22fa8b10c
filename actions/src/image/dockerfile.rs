//! Dockerfile builds for several platforms: the engine's build API (`POST /build`, the classic
//! builder, which needs no BuildKit) runs once per platform, foreign ones under qemu
//! (multi-stage Dockerfiles included); each result is exported (`GET /images/{id}/get`, a
//! docker-save tar), its layers are gzip-compressed into the layout (diff_ids kept), its
//! config is stored byte for byte (so its digest is the engine's image id), and the platforms
//! are joined in one index like any other build.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use bollard::Docker;
use futures_util::StreamExt;
use pipe_runner::executor::docker::endpoint;
use tokio::io::AsyncWriteExt;

use super::layout;
use super::{BuildSpec, Built, BuiltPlatform, ImageError, Platform};

/// The context tar: the folder's files (sorted, `.dockerignore` not read), plus the
/// Dockerfile as `.pipe.Dockerfile` when it lives outside the context.
fn context_tar(context: &Path, dockerfile: &Path) -> Result<(Vec<u8>, String), ImageError> {
    let mut tar = tar::Builder::new(Vec::new());
    tar.mode(tar::HeaderMode::Deterministic);
    tar.follow_symlinks(false);
    tar.append_dir_all(".", context).map_err(|e| {
        ImageError::Input(format!(
            "cannot read the build context `{}`: {e}",
            context.display()
        ))
    })?;
    let name = match dockerfile.strip_prefix(context) {
        Ok(rel) if dockerfile.exists() => rel.to_string_lossy().into_owned(),
        _ => {
            let bytes = std::fs::read(dockerfile).map_err(|e| {
                ImageError::Input(format!("cannot read `{}`: {e}", dockerfile.display()))
            })?;
            let mut h = tar::Header::new_gnu();
            h.set_size(bytes.len() as u64);
            h.set_mode(0o644);
            h.set_mtime(0);
            tar.append_data(&mut h, ".pipe.Dockerfile", &bytes[..])
                .map_err(|e| ImageError::Io(e.to_string()))?;
            ".pipe.Dockerfile".to_owned()
        }
    };
    let bytes = tar
        .into_inner()
        .map_err(|e| ImageError::Io(e.to_string()))?;
    Ok((bytes, name))
}

/// Runs one platform's build; returns the image id.
async fn build_one(
    docker: &Docker,
    p: &Platform,
    tag: &str,
    context: &[u8],
    dockerfile: &str,
    args: &HashMap<String, String>,
) -> Result<String, ImageError> {
    let opts = bollard::query_parameters::BuildImageOptionsBuilder::new()
        .dockerfile(dockerfile)
        .t(tag)
        .platform(&p.to_string())
        .rm(true)
        .forcerm(true)
        // The classic builder's cache ignores the platform (Docker 20.10 reuses an amd64 step
        // for arm64 and then fails): build every platform from scratch.
        .nocache(true)
        .buildargs(args)
        .version(bollard::query_parameters::BuilderVersion::BuilderV1)
        .build();
    let mut stream = docker.build_image(
        opts,
        None,
        Some(bollard::body_full(bytes::Bytes::copy_from_slice(context))),
    );
    let mut log: Vec<String> = Vec::new();
    let mut id = None;
    while let Some(item) = stream.next().await {
        super::check_cancel()?;
        let info = item.map_err(|e| {
            ImageError::Failed(format!(
                "the build for `{p}` failed: {}{}",
                endpoint::short_error(&e),
                tail(&log)
            ))
        })?;
        if let Some(err) = info.error_detail.and_then(|d| d.message) {
            let hint = if err.contains("does not match the specified platform") {
                "\n  hint: the engine's classic builder keeps the host platform after `FROM scratch` followed by `ARG`; declare `ARG` before `FROM`, or start from a per-platform image (`FROM base:${TARGETARCH}`)"
            } else {
                ""
            };
            return Err(ImageError::Failed(format!(
                "the build for `{p}` failed: {err}{}{hint}",
                tail(&log)
            )));
        }
        if let Some(s) = info.stream {
            log.extend(s.lines().map(str::to_owned));
        }
        if let Some(aux) = info.aux
            && let Some(i) = aux.id
        {
            id = Some(i);
        }
    }
    match id {
        Some(i) => Ok(i),
        None => docker
            .inspect_image(tag)
            .await
            .ok()
            .and_then(|i| i.id)
            .ok_or_else(|| {
                ImageError::Failed(format!(
                    "the build for `{p}` produced no image{}",
                    tail(&log)
                ))
            }),
    }
}

fn tail(log: &[String]) -> String {
    let last: Vec<&str> = log
        .iter()
        .rev()
        .filter(|l| !l.trim().is_empty())
        .take(5)
        .map(String::as_str)
        .collect();
    if last.is_empty() {
        String::new()
    } else {
        let mut l = last;
        l.reverse();
        format!("\n  {}", l.join("\n  "))
    }
}

/// Exports `image` into `dir` (a docker-save tar unpacked).
pub(crate) async fn export(
    docker: &Docker,
    image: &str,
    dir: &Path,
) -> Result<PathBuf, ImageError> {
    let tar_path = dir.join("save.tar");
    let mut f = tokio::fs::File::create(&tar_path)
        .await
        .map_err(|e| ImageError::io(&tar_path, e))?;
    let mut stream = docker.export_image(image);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            ImageError::Engine(format!(
                "cannot export `{image}` from the engine: {}",
                endpoint::short_error(&e)
            ))
        })?;
        f.write_all(&chunk)
            .await
            .map_err(|e| ImageError::io(&tar_path, e))?;
    }
    f.flush().await.map_err(|e| ImageError::io(&tar_path, e))?;
    let out = dir.join("save");
    let (tp, o) = (tar_path.clone(), out.clone());
    tokio::task::spawn_blocking(move || -> Result<(), ImageError> {
        let f = std::fs::File::open(&tp).map_err(|e| ImageError::io(&tp, e))?;
        let mut a = tar::Archive::new(f);
        std::fs::create_dir_all(&o).map_err(|e| ImageError::io(&o, e))?;
        for e in a.entries().map_err(|e| ImageError::io(&tp, e))? {
            let mut e = e.map_err(|e| ImageError::io(&tp, e))?;
            let kind = e.header().entry_type();
            if kind.is_file() || kind.is_dir() {
                e.unpack_in(&o).map_err(|e| ImageError::io(&tp, e))?;
            }
        }
        let _ = std::fs::remove_file(&tp);
        Ok(())
    })
    .await
    .map_err(|e| ImageError::Io(e.to_string()))??;
    Ok(out)
}

/// Builds `dockerfile` for every platform of `spec` and assembles one index.
pub async fn build(
    docker: &Docker,
    spec: &BuildSpec,
    dockerfile: &Path,
    context: &Path,
    args: &[(String, String)],
    warnings: &mut Vec<String>,
) -> Result<Built, ImageError> {
    super::check_name_tag(&spec.name, &spec.tag)?;
    if !context.is_dir() {
        return Err(ImageError::Input(format!(
            "the build context `{}` is not a folder",
            context.display()
        )));
    }
    if !spec.layers.is_empty() || spec.base.is_some() {
        warnings.push("`layers` and `base` are ignored in a Dockerfile build".to_owned());
    }
    let (ctx, df_name) = {
        let (c, d) = (context.to_path_buf(), dockerfile.to_path_buf());
        tokio::task::spawn_blocking(move || context_tar(&c, &d))
            .await
            .map_err(|e| ImageError::Io(e.to_string()))??
    };
    let args: HashMap<String, String> = args.iter().cloned().collect();
    let out = super::output_layout(spec)?;
    let work = tempfile::tempdir().map_err(|e| ImageError::Io(e.to_string()))?;
    let mut platforms: Vec<BuiltPlatform> = Vec::new();
    let mut written = 0;
    for p in &spec.platforms {
        let tmp_tag = format!(
            "pipe-build/{}:{}-{}",
            std::process::id(),
            spec.tag,
            p.suffix()
        );
        // What BuildKit sets on its own; the classic builder needs them as build arguments.
        let mut args = args.clone();
        for (k, v) in [
            ("TARGETPLATFORM", p.to_string()),
            ("TARGETOS", p.os.clone()),
            ("TARGETARCH", p.arch.clone()),
            ("TARGETVARIANT", p.variant.clone().unwrap_or_default()),
        ] {
            args.entry(k.to_owned()).or_insert(v);
        }
        let id = build_one(docker, p, &tmp_tag, &ctx, &df_name, &args).await;
        let id = match id {
            Ok(id) => id,
            Err(e) => {
                // A build that was cut short may still have tagged its image.
                let _ = docker
                    .remove_image(
                        &tmp_tag,
                        None::<bollard::query_parameters::RemoveImageOptions>,
                        None,
                    )
                    .await;
                return Err(e);
            }
        };
        let dir = work.path().join(p.suffix());
        std::fs::create_dir_all(&dir).map_err(|e| ImageError::io(&dir, e))?;
        let saved = export(docker, &tmp_tag, &dir).await;
        let _ = docker
            .remove_image(
                &tmp_tag,
                None::<bollard::query_parameters::RemoveImageOptions>,
                None,
            )
            .await;
        let saved = saved?;
        let (blob_out, opts) = (super::layout::Layout::open(out.root())?, spec.layer);
        let images =
            tokio::task::spawn_blocking(move || super::docker_save_images(&saved, &blob_out, opts))
                .await
                .map_err(|e| ImageError::Io(e.to_string()))??;
        let [img] = images.as_slice() else {
            return Err(ImageError::Corrupt(format!(
                "the engine exported {} images for `{tmp_tag}`",
                images.len()
            )));
        };
        if layout::sha256(&img.config_bytes) != id {
            warnings.push(format!(
                "the exported config of `{p}` hashes to {} but the engine called the image {id}",
                layout::sha256(&img.config_bytes)
            ));
        }
        let arch = img.config["architecture"].as_str().unwrap_or("");
        if arch != p.arch {
            return Err(ImageError::Failed(format!(
                "the engine built `{arch}` when asked for `{p}` (is the base image for that platform?)"
            )));
        }
        written += img.layers.len();
        let entry = super::add_platform(
            spec,
            &out,
            p,
            &img.config_bytes,
            img.layers.clone(),
            &platforms,
        )?;
        platforms.push(entry);
    }
    super::assemble(spec, &out, platforms, written, 0)
}
