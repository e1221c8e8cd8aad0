//! `skiff image load`: images from a `docker save` archive or an OCI image layout archive
//! into containerd, recorded by name and unpacked, as if pulled.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use serde::Deserialize;
use serde_json::json;

use super::api::{Api, Descriptor};
use super::content;
use super::image::{self, Manifest, DOCKER_CONFIG, DOCKER_LAYER, DOCKER_MANIFEST};
use crate::RuntimeError;
use proto::reference::ImageRef;

/// Where each file's bytes are in the archive.
type Entries = HashMap<String, (u64, u64)>;

fn unreadable(path: &Path, why: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::InvalidSpec(format!(
        "{} is not an image archive skiff can load ({why}); use the output of `docker save` or an OCI image layout tar",
        path.display()
    ))
}

fn list_entries(path: &Path) -> Result<Entries, RuntimeError> {
    let file = std::fs::File::open(path)
        .map_err(|e| RuntimeError::io(format!("opening {}", path.display()), e))?;
    let mut archive = tar::Archive::new(file);
    let mut entries = Entries::new();
    for entry in archive.entries().map_err(|e| unreadable(path, e))? {
        let entry = entry.map_err(|e| unreadable(path, e))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry.path().map_err(|e| unreadable(path, e))?;
        let name = name.to_string_lossy().trim_start_matches("./").to_owned();
        entries.insert(name, (entry.raw_file_position(), entry.size()));
    }
    Ok(entries)
}

fn read_entry(path: &Path, (offset, size): (u64, u64)) -> Result<Vec<u8>, RuntimeError> {
    let mut file = std::fs::File::open(path)
        .map_err(|e| RuntimeError::io(format!("opening {}", path.display()), e))?;
    file.seek(SeekFrom::Start(offset))
        .map_err(|e| RuntimeError::io(format!("reading {}", path.display()), e))?;
    let mut data = Vec::with_capacity(size as usize);
    file.take(size)
        .read_to_end(&mut data)
        .map_err(|e| RuntimeError::io(format!("reading {}", path.display()), e))?;
    Ok(data)
}

/// The sha256 digest of an archive entry, read in chunks.
fn digest_entry(path: &Path, (offset, size): (u64, u64)) -> Result<String, RuntimeError> {
    use sha2::Digest as _;
    let mut file = std::fs::File::open(path)
        .map_err(|e| RuntimeError::io(format!("opening {}", path.display()), e))?;
    file.seek(SeekFrom::Start(offset))
        .map_err(|e| RuntimeError::io(format!("reading {}", path.display()), e))?;
    let mut hasher = sha2::Sha256::new();
    std::io::copy(&mut file.take(size), &mut hasher)
        .map_err(|e| RuntimeError::io(format!("reading {}", path.display()), e))?;
    Ok(format!("sha256:{}", hex::encode(hasher.finalize())))
}

/// An archive entry as a stream of chunks, for the content store.
fn entry_stream(
    path: PathBuf,
    (offset, size): (u64, u64),
) -> impl futures::Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::task::spawn_blocking(move || {
        let result = (|| {
            let mut file = std::fs::File::open(&path)?;
            file.seek(SeekFrom::Start(offset))?;
            let mut left = size;
            while left > 0 {
                let mut buf = vec![0u8; left.min(1 << 20) as usize];
                file.read_exact(&mut buf)?;
                left -= buf.len() as u64;
                if tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
                    return Ok(());
                }
            }
            Ok::<(), std::io::Error>(())
        })();
        if let Err(e) = result {
            let _ = tx.blocking_send(Err(e));
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, RuntimeError> + Send + 'static,
) -> Result<T, RuntimeError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| RuntimeError::io("reading the image archive", std::io::Error::other(e)))?
}

/// Loads every image in the archive at `path`; returns the names recorded.
pub(crate) async fn load(api: &Api, path: &Path) -> Result<Vec<String>, RuntimeError> {
    let archive = path.to_path_buf();
    let entries = {
        let archive = archive.clone();
        blocking(move || list_entries(&archive)).await?
    };
    if let Some(&index) = entries.get("index.json") {
        load_oci(api, &archive, &entries, index).await
    } else if let Some(&manifest) = entries.get("manifest.json") {
        load_docker(api, &archive, &entries, manifest).await
    } else {
        Err(unreadable(
            path,
            "it has neither index.json nor manifest.json",
        ))
    }
}

async fn read_json_entry<T: for<'de> Deserialize<'de>>(
    archive: &Path,
    entry: (u64, u64),
    what: &str,
) -> Result<T, RuntimeError> {
    let path = archive.to_path_buf();
    let bytes = blocking(move || read_entry(&path, entry)).await?;
    serde_json::from_slice(&bytes)
        .map_err(|e| unreadable(archive, format!("its {what} is not valid: {e}")))
}

async fn load_oci(
    api: &Api,
    archive: &Path,
    entries: &Entries,
    index: (u64, u64),
) -> Result<Vec<String>, RuntimeError> {
    #[derive(Deserialize)]
    struct Index {
        manifests: Vec<IndexEntry>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct IndexEntry {
        media_type: String,
        digest: String,
        size: i64,
        #[serde(default)]
        annotations: HashMap<String, String>,
    }
    let index: Index = read_json_entry(archive, index, "index.json").await?;
    // Every blob goes in: what the manifests need is among them, and the store skips what
    // it has.
    for (name, &region) in entries {
        let Some(hex) = name.strip_prefix("blobs/sha256/") else {
            continue;
        };
        let digest = format!("sha256:{hex}");
        content::write(
            api,
            &digest,
            region.1 as i64,
            entry_stream(archive.to_path_buf(), region),
        )
        .await?;
    }
    let mut names = Vec::new();
    for entry in index.manifests {
        let name = entry
            .annotations
            .get("io.containerd.image.name")
            .or_else(|| {
                entry
                    .annotations
                    .get("org.opencontainers.image.ref.name")
                    .filter(|n| n.contains('/') || n.contains(':'))
            })
            .ok_or_else(|| {
                unreadable(
                    archive,
                    "an image in its index.json has no name (annotation io.containerd.image.name)",
                )
            })?;
        let name = ImageRef::parse(name)?.to_string();
        let target = Descriptor {
            media_type: entry.media_type,
            digest: entry.digest,
            size: entry.size,
            annotations: HashMap::new(),
        };
        image::record(api, &name, target).await?;
        image::local(api, &name).await?;
        names.push(name);
    }
    Ok(names)
}

async fn load_docker(
    api: &Api,
    archive: &Path,
    entries: &Entries,
    manifest: (u64, u64),
) -> Result<Vec<String>, RuntimeError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct SavedImage {
        config: String,
        #[serde(default)]
        repo_tags: Option<Vec<String>>,
        layers: Vec<String>,
    }
    let saved: Vec<SavedImage> = read_json_entry(archive, manifest, "manifest.json").await?;
    let entry = |name: &str| {
        entries
            .get(name.trim_start_matches("./"))
            .copied()
            .ok_or_else(|| {
                unreadable(
                    archive,
                    format!("it lacks {name}, which its manifest.json names"),
                )
            })
    };
    let mut names = Vec::new();
    for image in saved {
        let config_region = entry(&image.config)?;
        let config = {
            let path = archive.to_path_buf();
            blocking(move || read_entry(&path, config_region)).await?
        };
        let config_digest = content::digest_of(&config);
        let config_size = config.len();
        content::write_bytes(api, &config_digest, config).await?;
        let mut layers = Vec::new();
        for layer in &image.layers {
            let region = entry(layer)?;
            let digest = {
                let path = archive.to_path_buf();
                blocking(move || digest_entry(&path, region)).await?
            };
            content::write(
                api,
                &digest,
                region.1 as i64,
                entry_stream(archive.to_path_buf(), region),
            )
            .await?;
            layers.push(json!({"mediaType": DOCKER_LAYER, "digest": digest, "size": region.1}));
        }
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": {"mediaType": DOCKER_CONFIG, "digest": config_digest, "size": config_size},
            "layers": layers,
        });
        let manifest_bytes = serde_json::to_vec(&manifest).unwrap_or_default();
        let manifest_digest = content::digest_of(&manifest_bytes);
        let parsed = Manifest::parse(&manifest_bytes, "the archive's image")?;
        let target = Descriptor {
            media_type: DOCKER_MANIFEST.into(),
            digest: manifest_digest.clone(),
            size: manifest_bytes.len() as i64,
            annotations: HashMap::new(),
        };
        content::write_bytes(api, &manifest_digest, manifest_bytes).await?;
        let tags = image.repo_tags.unwrap_or_default();
        if tags.is_empty() {
            return Err(unreadable(
                archive,
                "an image in it has no tag (save it with `docker save NAME:TAG`)",
            ));
        }
        for tag in tags {
            let name = ImageRef::parse(&tag)?.to_string();
            image::record(api, &name, target.clone()).await?;
            image::unpack(api, &name, &parsed).await?;
            names.push(name);
        }
    }
    Ok(names)
}
