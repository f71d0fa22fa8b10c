//! Deterministic layers: a directory (or one file) becomes a tar at a target path with sorted
//! entries, one fixed mtime, uid/gid 0 and no user or group names, gzip-compressed without a
//! timestamp or file name. The tar's sha256 (`diff_id`), the blob's sha256 (`digest`) and its
//! size come out of the same streaming pass that writes the blob.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use super::ImageError;

/// Where one layer's content comes from and where it goes in the image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerSource {
    /// A directory (its content goes below `target`) or a file (it becomes `target`, or
    /// `target/<name>` when `target` ends with `/`).
    pub src: PathBuf,
    /// An absolute path in the image (`/` by default).
    pub target: String,
}

/// How layer blobs are compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Compression {
    /// gzip (every engine and tool reads it).
    #[default]
    Gzip,
    /// zstd (opt-in: Docker 20.10 and umoci 0.4.7 cannot read it).
    Zstd,
}

impl Compression {
    /// The layer media type.
    pub fn media_type(self) -> &'static str {
        match self {
            Compression::Gzip => super::layout::MT_LAYER_GZIP,
            Compression::Zstd => super::layout::MT_LAYER_ZSTD,
        }
    }
}

/// How layers are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayerOptions {
    /// The mtime of every entry (`SOURCE_DATE_EPOCH`, else 0).
    pub mtime: u64,
    /// gzip level 0–9 (zstd: the zstd level, 0 meaning its default).
    pub level: u32,
    /// gzip or zstd.
    pub compression: Compression,
}

impl Default for LayerOptions {
    fn default() -> Self {
        LayerOptions {
            mtime: 0,
            level: 1,
            compression: Compression::Gzip,
        }
    }
}

/// A gzip (no timestamp, no name, OS unknown) or zstd (single-threaded, so deterministic)
/// encoder.
enum Encoder<W: Write> {
    Gzip(flate2::write::GzEncoder<W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

impl<W: Write> Encoder<W> {
    fn new(w: W, opts: LayerOptions) -> io::Result<Encoder<W>> {
        Ok(match opts.compression {
            Compression::Gzip => Encoder::Gzip(
                flate2::GzBuilder::new()
                    .mtime(0)
                    .operating_system(255)
                    .write(w, flate2::Compression::new(opts.level.min(9))),
            ),
            Compression::Zstd => Encoder::Zstd(zstd::stream::write::Encoder::new(
                w,
                opts.level.min(19) as i32,
            )?),
        })
    }

    fn finish(self) -> io::Result<W> {
        match self {
            Encoder::Gzip(g) => g.finish(),
            Encoder::Zstd(z) => z.finish(),
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::Gzip(g) => g.write(buf),
            Encoder::Zstd(z) => z.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::Gzip(g) => g.flush(),
            Encoder::Zstd(z) => z.flush(),
        }
    }
}

/// What a written layer is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerBlob {
    /// `sha256:<hex>` of the compressed blob.
    pub digest: String,
    /// `sha256:<hex>` of the uncompressed tar.
    pub diff_id: String,
    /// Bytes of the compressed blob.
    pub size: u64,
}

/// The kind of one tar entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A directory.
    Dir,
    /// A regular file of this many bytes, read from `from`.
    File {
        /// Where the bytes come from.
        from: PathBuf,
        /// Its length.
        size: u64,
    },
    /// A symbolic link to this target.
    Symlink(PathBuf),
}

/// One entry of a layer, in archive order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Relative path in the image (no leading `/`).
    pub path: String,
    /// Permission bits (`0o7777`).
    pub mode: u32,
    /// What it is.
    pub kind: Kind,
    /// Stat fields of the source that decide whether a cached layer can be reused
    /// (mtime ns, ctime ns, inode, device); zero for synthesized parent folders.
    pub stamp: [i64; 4],
}

/// Normalises a target path: absolute, no `..`, no empty or `.` parts; returns its parts.
pub fn target_parts(target: &str) -> Result<Vec<String>, String> {
    if !target.starts_with('/') {
        return Err(format!(
            "the target path `{target}` must be absolute (e.g. `/usr/local/bin`)"
        ));
    }
    let mut parts = Vec::new();
    for p in target.split('/') {
        match p {
            "" | "." => {}
            ".." => return Err(format!("the target path `{target}` must not contain `..`")),
            p => parts.push(p.to_owned()),
        }
    }
    Ok(parts)
}

/// The entries of one layer, sorted so that every folder comes before what it holds.
pub fn entries(source: &LayerSource) -> Result<Vec<Entry>, ImageError> {
    let parts = target_parts(&source.target).map_err(ImageError::Input)?;
    let meta = std::fs::symlink_metadata(&source.src).map_err(|e| {
        ImageError::Input(format!(
            "cannot read the layer source `{}`: {e}",
            source.src.display()
        ))
    })?;
    let mut out = Vec::new();
    let mut prefix: Vec<String> = Vec::new();
    let (parents, base): (&[String], Vec<String>) = if meta.is_dir() {
        (&parts, parts.clone())
    } else {
        // A file: `target/` puts it in that folder, otherwise it is the target.
        let name = source
            .src
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut full = parts.clone();
        if source.target.ends_with('/') || parts.is_empty() {
            full.push(name);
        }
        let n = full.len() - 1;
        (&parts[..n.min(parts.len())], full)
    };
    // Parent folders of the target (the last one is the source folder itself).
    for (i, p) in parents.iter().enumerate() {
        prefix.push(p.clone());
        let own = meta.is_dir() && i + 1 == parents.len();
        out.push(Entry {
            path: prefix.join("/"),
            mode: if own {
                meta.permissions().mode() & 0o7777
            } else {
                0o755
            },
            kind: Kind::Dir,
            stamp: if own { stamp(&meta) } else { [0; 4] },
        });
    }
    if meta.is_dir() {
        walk(&source.src, &base, &mut out)?;
    } else {
        out.push(entry_for(&source.src, &meta, base.join("/"))?);
    }
    out.retain(|e| !e.path.is_empty());
    out.sort_by(|a, b| a.path.split('/').cmp(b.path.split('/')));
    out.dedup_by(|a, b| a.path == b.path);
    Ok(out)
}

fn stamp(m: &std::fs::Metadata) -> [i64; 4] {
    [
        m.mtime() * 1_000_000_000 + m.mtime_nsec(),
        m.ctime() * 1_000_000_000 + m.ctime_nsec(),
        m.ino() as i64,
        m.dev() as i64,
    ]
}

fn entry_for(path: &Path, meta: &std::fs::Metadata, rel: String) -> Result<Entry, ImageError> {
    let ft = meta.file_type();
    let kind = if ft.is_dir() {
        Kind::Dir
    } else if ft.is_symlink() {
        Kind::Symlink(std::fs::read_link(path).map_err(|e| ImageError::io(path, e))?)
    } else if ft.is_file() {
        Kind::File {
            from: path.to_path_buf(),
            size: meta.len(),
        }
    } else {
        return Err(ImageError::Input(format!(
            "`{}` is not a file, folder or symlink (devices, sockets and fifos cannot go into a layer)",
            path.display()
        )));
    };
    Ok(Entry {
        path: rel,
        mode: meta.permissions().mode() & 0o7777,
        kind,
        stamp: stamp(meta),
    })
}

fn walk(dir: &Path, rel: &[String], out: &mut Vec<Entry>) -> Result<(), ImageError> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| ImageError::io(dir, e))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .map_err(|e| ImageError::io(dir, e))?;
    names.sort();
    for name in names {
        let path = dir.join(&name);
        let Some(n) = name.to_str() else {
            return Err(ImageError::Input(format!(
                "`{}` is not valid UTF-8 (layer paths must be)",
                path.display()
            )));
        };
        let meta = std::fs::symlink_metadata(&path).map_err(|e| ImageError::io(&path, e))?;
        let mut child = rel.to_vec();
        child.push(n.to_owned());
        out.push(entry_for(&path, &meta, child.join("/"))?);
        if meta.is_dir() {
            walk(&path, &child, out)?;
        }
    }
    Ok(())
}

/// A writer that hashes and counts what goes through it.
pub struct HashingWriter<W> {
    inner: W,
    hash: Sha256,
    count: u64,
}

impl<W: Write> HashingWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hash: Sha256::new(),
            count: 0,
        }
    }

    /// The inner writer, `sha256:<hex>` and the byte count.
    pub fn finish(self) -> (W, String, u64) {
        let d = format!("sha256:{}", hex::encode(self.hash.finalize()));
        (self.inner, d, self.count)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Writes the tar of `entries` through gzip into `out`, hashing both streams on the way.
pub fn write_layer<W: Write>(
    entries: &[Entry],
    opts: LayerOptions,
    out: W,
) -> Result<(W, LayerBlob), ImageError> {
    let gz = Encoder::new(HashingWriter::new(out), opts)
        .map_err(|e| ImageError::Io(format!("cannot start the compressor: {e}")))?;
    let tar_stream = HashingWriter::new(gz);
    let mut tar = tar::Builder::new(tar_stream);
    tar.mode(tar::HeaderMode::Deterministic);
    for e in entries {
        super::check_cancel()?;
        let mut h = tar::Header::new_gnu();
        h.set_mtime(opts.mtime);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mode(e.mode);
        let written = match &e.kind {
            Kind::Dir => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_size(0);
                tar.append_data(&mut h, format!("{}/", e.path), io::empty())
            }
            Kind::Symlink(to) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_size(0);
                tar.append_link(&mut h, &e.path, to)
            }
            Kind::File { from, size } => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(*size);
                let f = File::open(from).map_err(|err| ImageError::io(from, err))?;
                let mut exact = ExactReader {
                    inner: f.take(*size),
                    left: *size,
                    path: from,
                };
                tar.append_data(&mut h, &e.path, &mut exact)
            }
        };
        written.map_err(|err| {
            if super::cancelled() {
                ImageError::Interrupted
            } else {
                ImageError::Io(format!("cannot pack `{}`: {err}", e.path))
            }
        })?;
    }
    let tar_stream = tar
        .into_inner()
        .map_err(|e| ImageError::Io(format!("cannot finish the layer: {e}")))?;
    let (gz, diff_id, _) = tar_stream.finish();
    let hashed = gz
        .finish()
        .map_err(|e| ImageError::Io(format!("cannot finish the layer: {e}")))?;
    let (out, digest, size) = hashed.finish();
    Ok((
        out,
        LayerBlob {
            digest,
            diff_id,
            size,
        },
    ))
}

/// Reads exactly the size a file had when it was listed, or fails naming it.
struct ExactReader<'a, R> {
    inner: R,
    left: u64,
    path: &'a Path,
}

impl<R: Read> Read for ExactReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if super::cancelled() {
            return Err(io::Error::other("interrupted"));
        }
        let n = self.inner.read(buf)?;
        if n == 0 && self.left > 0 && !buf.is_empty() {
            return Err(io::Error::other(format!(
                "`{}` shrank while it was being packed",
                self.path.display()
            )));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// Writes a layer blob into `blob_dir` (`blobs/sha256`) through a temporary file renamed to
/// its digest.
pub fn write_layer_blob(
    entries: &[Entry],
    opts: LayerOptions,
    blob_dir: &Path,
) -> Result<LayerBlob, ImageError> {
    let tmp = tempfile::NamedTempFile::new_in(blob_dir).map_err(|e| ImageError::io(blob_dir, e))?;
    let (w, blob) = write_layer(entries, opts, BufWriter::with_capacity(1 << 20, tmp))?;
    let tmp = w
        .into_inner()
        .map_err(|e| ImageError::Io(format!("cannot write the layer: {}", e.error())))?;
    let hex = blob.digest.trim_start_matches("sha256:");
    tmp.persist(blob_dir.join(hex))
        .map_err(|e| ImageError::io(blob_dir, e.error))?;
    Ok(blob)
}

/// Compresses an existing layer tar (a docker-save layer) into `blob_dir`: `diff_id` is the
/// tar's sha256, `digest` the blob's, from one pass.
pub fn compress_tar_file(
    tar_path: &Path,
    opts: LayerOptions,
    blob_dir: &Path,
) -> Result<LayerBlob, ImageError> {
    let mut src = File::open(tar_path).map_err(|e| ImageError::io(tar_path, e))?;
    let tmp = tempfile::NamedTempFile::new_in(blob_dir).map_err(|e| ImageError::io(blob_dir, e))?;
    let gz = Encoder::new(
        HashingWriter::new(BufWriter::with_capacity(1 << 20, tmp)),
        opts,
    )
    .map_err(|e| ImageError::io(tar_path, e))?;
    let mut raw = HashingWriter::new(gz);
    io::copy(&mut src, &mut raw).map_err(|e| ImageError::io(tar_path, e))?;
    let (gz, diff_id, _) = raw.finish();
    let hashed = gz.finish().map_err(|e| ImageError::io(tar_path, e))?;
    let (w, digest, size) = hashed.finish();
    let tmp = w
        .into_inner()
        .map_err(|e| ImageError::Io(format!("cannot write the layer: {}", e.error())))?;
    tmp.persist(blob_dir.join(digest.trim_start_matches("sha256:")))
        .map_err(|e| ImageError::io(blob_dir, e.error))?;
    Ok(LayerBlob {
        digest,
        diff_id,
        size,
    })
}

/// The key under which a layer built from `entries` with `opts` is remembered: it changes
/// when any entry's path, mode, size, link target or stat stamp does.
pub fn reuse_key(entries: &[Entry], opts: LayerOptions) -> String {
    let mut h = Sha256::new();
    h.update(format!(
        "pipe-layer-v1\0{}\0{}\0{:?}\0",
        opts.mtime, opts.level, opts.compression
    ));
    for e in entries {
        h.update(e.path.as_bytes());
        h.update([0]);
        h.update(e.mode.to_le_bytes());
        match &e.kind {
            Kind::Dir => h.update(b"d"),
            Kind::File { size, .. } => {
                h.update(b"f");
                h.update(size.to_le_bytes());
            }
            Kind::Symlink(t) => {
                h.update(b"l");
                h.update(t.as_os_str().as_encoded_bytes());
                h.update([0]);
            }
        }
        for s in e.stamp {
            h.update(s.to_le_bytes());
        }
    }
    hex::encode(h.finalize())
}

/// Whether any entry changed in the last 100 ms (its stamp cannot be trusted yet: a write in
/// the same tick of the kernel's coarse clock, at most 10 ms, would not change it).
const RACY_NS: i64 = 100_000_000;

/// (see [`RACY_NS`])
pub fn is_racy(entries: &[Entry]) -> bool {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(i64::MAX);
    entries
        .iter()
        .any(|e| e.stamp[0] > now - RACY_NS || e.stamp[1] > now - RACY_NS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn tree() -> tempfile::TempDir {
        let t = tempfile::tempdir().expect("tmp");
        let r = t.path();
        std::fs::create_dir_all(r.join("b/deep")).expect("mkdir");
        std::fs::write(r.join("b/deep/x.txt"), "x").expect("write");
        std::fs::write(r.join("a.sh"), "#!/bin/sh\necho hi\n").expect("write");
        std::fs::set_permissions(r.join("a.sh"), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        std::fs::write(r.join("a-b"), "ab").expect("write");
        symlink("a.sh", r.join("link")).expect("symlink");
        let long = "l".repeat(120);
        std::fs::write(r.join(&long), "long").expect("write");
        t
    }

    /// Path, type, mode, mtime, uid, gid and content (or link target) of each entry.
    type Listed = (String, tar::EntryType, u32, u64, u64, u64, Vec<u8>);

    fn listing(blob: &[u8]) -> Vec<Listed> {
        let gz = flate2::read::GzDecoder::new(blob);
        let mut a = tar::Archive::new(gz);
        let mut out = Vec::new();
        for e in a.entries().expect("entries") {
            let mut e = e.expect("entry");
            let h = e.header().clone();
            let mut data = Vec::new();
            e.read_to_end(&mut data).expect("read");
            let path = e.path().expect("path").to_string_lossy().into_owned();
            let data = if h.entry_type() == tar::EntryType::Symlink {
                e.link_name()
                    .expect("link")
                    .expect("some")
                    .to_string_lossy()
                    .into_owned()
                    .into_bytes()
            } else {
                data
            };
            out.push((
                path,
                h.entry_type(),
                h.mode().expect("mode"),
                h.mtime().expect("mtime"),
                h.uid().expect("uid"),
                h.gid().expect("gid"),
                data,
            ));
        }
        out
    }

    #[test]
    fn golden_entries_sorted_with_parents_fixed_mtime_and_root_owner() {
        let t = tree();
        let src = LayerSource {
            src: t.path().to_path_buf(),
            target: "/opt/app".to_owned(),
        };
        let es = entries(&src).expect("entries");
        let (blob, info) = write_layer(&es, LayerOptions::default(), Vec::new()).expect("layer");
        let got = listing(&blob);
        let names: Vec<&str> = got.iter().map(|e| e.0.as_str()).collect();
        let long = format!("opt/app/{}", "l".repeat(120));
        assert_eq!(
            names,
            [
                "opt/",
                "opt/app/",
                "opt/app/a-b",
                "opt/app/a.sh",
                "opt/app/b/",
                "opt/app/b/deep/",
                "opt/app/b/deep/x.txt",
                "opt/app/link",
                long.as_str(),
            ]
        );
        for e in &got {
            assert_eq!((e.3, e.4, e.5), (0, 0, 0), "{}", e.0);
        }
        let by = |n: &str| got.iter().find(|e| e.0 == n).expect(n);
        assert_eq!(by("opt/").2, 0o755);
        assert_eq!(by("opt/app/a.sh").2, 0o755);
        assert_eq!(by("opt/app/a.sh").6, b"#!/bin/sh\necho hi\n");
        assert_eq!(by("opt/app/link").1, tar::EntryType::Symlink);
        assert_eq!(by("opt/app/link").6, b"a.sh");
        assert_eq!(by(&long).6, b"long");
        // The digests describe the bytes.
        assert_eq!(info.size, blob.len() as u64);
        assert_eq!(
            info.digest,
            format!("sha256:{}", hex::encode(Sha256::digest(&blob)))
        );
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(&blob[..])
            .read_to_end(&mut raw)
            .expect("gunzip");
        assert_eq!(
            info.diff_id,
            format!("sha256:{}", hex::encode(Sha256::digest(&raw)))
        );
        // gzip header: no flags (so no file name), mtime 0, OS unknown.
        assert_eq!(&blob[3..8], &[0, 0, 0, 0, 0][..]);
        assert_eq!(blob[9], 255);
    }

    #[test]
    fn the_same_tree_gives_the_same_bytes_and_a_copy_too() {
        let t = tree();
        let src = |p: &Path| LayerSource {
            src: p.to_path_buf(),
            target: "/".to_owned(),
        };
        let one = write_layer(
            &entries(&src(t.path())).expect("e"),
            LayerOptions::default(),
            Vec::new(),
        )
        .expect("layer");
        let two = write_layer(
            &entries(&src(t.path())).expect("e"),
            LayerOptions::default(),
            Vec::new(),
        )
        .expect("layer");
        assert_eq!(one.0, two.0);
        // A copy made later (other inodes, mtimes) packs to the same bytes.
        let copy = tempfile::tempdir().expect("tmp");
        let status = std::process::Command::new("cp")
            .args(["-R"])
            .arg(format!("{}/.", t.path().display()))
            .arg(copy.path())
            .status()
            .expect("cp");
        assert!(status.success());
        let three = write_layer(
            &entries(&src(copy.path())).expect("e"),
            LayerOptions::default(),
            Vec::new(),
        )
        .expect("layer");
        assert_eq!(one.1, three.1);
        // SOURCE_DATE_EPOCH changes the bytes.
        let four = write_layer(
            &entries(&src(t.path())).expect("e"),
            LayerOptions {
                mtime: 1_700_000_000,
                ..LayerOptions::default()
            },
            Vec::new(),
        )
        .expect("layer");
        assert_ne!(one.1.diff_id, four.1.diff_id);
        assert!(listing(&four.0).iter().all(|e| e.3 == 1_700_000_000));
    }

    #[test]
    fn a_file_source_goes_to_its_target_or_into_a_folder() {
        let t = tree();
        let f = t.path().join("a.sh");
        let into = entries(&LayerSource {
            src: f.clone(),
            target: "/usr/bin/".to_owned(),
        })
        .expect("entries");
        let names: Vec<&str> = into.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(names, ["usr", "usr/bin", "usr/bin/a.sh"]);
        let renamed = entries(&LayerSource {
            src: f,
            target: "/hello".to_owned(),
        })
        .expect("entries");
        let names: Vec<&str> = renamed.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(names, ["hello"]);
    }

    #[test]
    fn bad_targets_are_refused() {
        assert!(
            target_parts("usr/bin")
                .expect_err("relative")
                .contains("absolute")
        );
        assert!(
            target_parts("/a/../b")
                .expect_err("dotdot")
                .contains("`..`")
        );
        assert_eq!(target_parts("/a//./b/").expect("ok"), ["a", "b"]);
    }

    #[test]
    fn the_reuse_key_follows_content_stamps() {
        let t = tree();
        let src = LayerSource {
            src: t.path().to_path_buf(),
            target: "/".to_owned(),
        };
        let k1 = reuse_key(&entries(&src).expect("e"), LayerOptions::default());
        assert_eq!(
            k1,
            reuse_key(&entries(&src).expect("e"), LayerOptions::default())
        );
        std::fs::write(t.path().join("a-b"), "changed").expect("write");
        let k2 = reuse_key(&entries(&src).expect("e"), LayerOptions::default());
        assert_ne!(k1, k2);
        let k3 = reuse_key(
            &entries(&src).expect("e"),
            LayerOptions {
                level: 9,
                ..LayerOptions::default()
            },
        );
        assert_ne!(k2, k3);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]

        /// Any tree packs to a tar that holds exactly its files (content and mode), twice the
        /// same bytes.
        #[test]
        fn random_trees_round_trip(
            files in proptest::collection::btree_map(
                "[a-z]{1,8}(/[a-z0-9_][a-z0-9._-]{0,11}){0,3}",
                (proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300), 0o400u32..0o1000),
                1..12,
            )
        ) {
            let t = tempfile::tempdir().expect("tmp");
            let mut want = std::collections::BTreeMap::new();
            for (path, (data, mode)) in &files {
                let p = t.path().join(path);
                // A path that is a prefix folder of another one stays a folder.
                if files.keys().any(|k| k.starts_with(&format!("{path}/"))) {
                    continue;
                }
                if p.ancestors().skip(1).any(|a| a.is_file()) {
                    continue;
                }
                std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
                std::fs::write(&p, data).expect("write");
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*mode)).expect("chmod");
                want.insert(format!("x/{path}"), (*mode, data.clone()));
            }
            let src = LayerSource { src: t.path().to_path_buf(), target: "/x".to_owned() };
            let es = entries(&src).expect("entries");
            let (one, info) = write_layer(&es, LayerOptions::default(), Vec::new()).expect("layer");
            let (two, _) = write_layer(&entries(&src).expect("entries"), LayerOptions::default(), Vec::new()).expect("layer");
            proptest::prop_assert_eq!(&one, &two);
            proptest::prop_assert_eq!(info.size, one.len() as u64);
            let got: std::collections::BTreeMap<String, (u32, Vec<u8>)> = listing(&one)
                .into_iter()
                .filter(|e| e.1 == tar::EntryType::Regular)
                .map(|e| (e.0, (e.2, e.6)))
                .collect();
            proptest::prop_assert_eq!(got, want);
        }
    }

    #[test]
    fn zstd_layers_hold_the_same_tar() {
        let t = tree();
        let es = entries(&LayerSource {
            src: t.path().to_path_buf(),
            target: "/".to_owned(),
        })
        .expect("entries");
        let zopts = LayerOptions {
            compression: Compression::Zstd,
            level: 3,
            ..LayerOptions::default()
        };
        let (gz, g) = write_layer(&es, LayerOptions::default(), Vec::new()).expect("gzip");
        let (zs, z) = write_layer(&es, zopts, Vec::new()).expect("zstd");
        assert_eq!(g.diff_id, z.diff_id);
        assert_ne!(g.digest, z.digest);
        assert_eq!(&zs[..4], &[0x28, 0xb5, 0x2f, 0xfd][..]);
        let raw = zstd::decode_all(&zs[..]).expect("unzstd");
        let mut raw_gz = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut raw_gz)
            .expect("gunzip");
        assert_eq!(raw, raw_gz);
        assert_eq!(write_layer(&es, zopts, Vec::new()).expect("again").0, zs);
        assert_ne!(
            reuse_key(&es, zopts),
            reuse_key(&es, LayerOptions::default())
        );
    }
}
