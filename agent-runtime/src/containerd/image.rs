//! Images on a node: pulled from registries into containerd's content store, recorded by
//! name in containerd's image service, and unpacked layer by layer into overlayfs snapshots
//! named by their chain ID (so images that share layers share snapshots).

use std::collections::HashMap;
use std::time::Duration;

use futures::TryStreamExt;
use oci_client::errors::OciDistributionError;
use serde::Deserialize;
use tonic::Code;

use super::api::{self, images, snapshots, Api, Descriptor, SNAPSHOTTER};
use super::content;
use crate::progress::{ProgressSender, PullProgress};
use crate::RuntimeError;
use proto::reference::ImageRef;

pub(crate) const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub(crate) const DOCKER_MANIFEST_LIST: &str =
    "application/vnd.docker.distribution.manifest.list.v2+json";
pub(crate) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub(crate) const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub(crate) const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub(crate) const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";

/// An image ready to run: its runtime configuration and the snapshot of its top layer.
#[derive(Debug, Clone)]
pub(crate) struct Image {
    /// The name containerd records it under.
    pub name: String,
    /// The image's runtime defaults.
    pub config: RunConfig,
    /// The chain ID of the top layer: the parent of a container's snapshot.
    pub chain_id: String,
}

/// The part of an image's config that says how to run it (`config` in the OCI config).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct RunConfig {
    #[serde(default)]
    pub env: Option<Vec<String>>,
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    #[serde(default)]
    pub working_dir: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub stop_signal: Option<String>,
    #[serde(default)]
    pub healthcheck: Option<ImageHealthcheck>,
}

/// A health check baked into an image (Docker's HEALTHCHECK; durations in nanoseconds).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ImageHealthcheck {
    #[serde(default)]
    pub test: Vec<String>,
    #[serde(default)]
    pub interval: u64,
    #[serde(default)]
    pub timeout: u64,
    #[serde(default)]
    pub start_period: u64,
    #[serde(default)]
    pub start_interval: u64,
    #[serde(default)]
    pub retries: u32,
}

#[derive(Deserialize)]
struct ConfigFile {
    #[serde(default)]
    config: Option<RunConfig>,
    rootfs: RootFs,
}

#[derive(Deserialize)]
struct RootFs {
    diff_ids: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Desc {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    pub size: i64,
    #[serde(default)]
    pub platform: Option<Platform>,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Platform {
    pub architecture: String,
    pub os: String,
}

/// A manifest or an index (they share the shape we read).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Manifest {
    #[serde(default)]
    pub media_type: String,
    #[serde(default)]
    pub config: Option<Desc>,
    #[serde(default)]
    pub layers: Vec<Desc>,
    #[serde(default)]
    pub manifests: Vec<Desc>,
}

impl Manifest {
    pub(crate) fn parse(bytes: &[u8], what: &str) -> Result<Manifest, RuntimeError> {
        serde_json::from_slice(bytes).map_err(|e| {
            RuntimeError::InvalidSpec(format!("{what} is not a valid image manifest: {e}"))
        })
    }

    fn is_index(&self) -> bool {
        self.media_type == OCI_INDEX
            || self.media_type == DOCKER_MANIFEST_LIST
            || (self.config.is_none() && !self.manifests.is_empty())
    }

    /// The manifest for this machine's platform in an index.
    fn for_this_platform(&self, image: &str) -> Result<&Desc, RuntimeError> {
        let arch = host_arch();
        self.manifests
            .iter()
            .find(|m| {
                m.platform
                    .as_ref()
                    .is_some_and(|p| p.os == "linux" && p.architecture == arch)
            })
            .ok_or_else(|| {
                RuntimeError::InvalidSpec(format!(
                    "image {image} has no variant for linux/{arch}; use an image built for this platform"
                ))
            })
    }
}

/// This machine's architecture in OCI terms.
fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        other => other,
    }
}

/// The chain IDs of a layer stack (OCI image spec: the first is the diff ID, then
/// `sha256(parent + " " + diff_id)`).
pub(crate) fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut chain: Vec<String> = Vec::with_capacity(diff_ids.len());
    for diff_id in diff_ids {
        let next = match chain.last() {
            None => diff_id.clone(),
            Some(parent) => content::digest_of(format!("{parent} {diff_id}").as_bytes()),
        };
        chain.push(next);
    }
    chain
}

/// The image recorded under `name`, unpacked (again if its snapshots were collected), or
/// `None` when the node does not have it.
pub(crate) async fn local(api: &Api, name: &str) -> Result<Option<Image>, RuntimeError> {
    let request = api.request(images::GetImageRequest { name: name.into() });
    let target = match api.images().get(request).await {
        Ok(r) => r.into_inner().image.and_then(|i| i.target),
        Err(s) if api::not_found(&s) => return Ok(None),
        Err(s) => return Err(api::error("asking containerd for an image", s)),
    };
    let Some(target) = target else {
        return Ok(None);
    };
    let mut manifest_digest = target.digest;
    let mut manifest = Manifest::parse(&content::read(api, &manifest_digest).await?, name)?;
    if manifest.is_index() {
        manifest_digest = manifest.for_this_platform(name)?.digest.clone();
        manifest = Manifest::parse(&content::read(api, &manifest_digest).await?, name)?;
    }
    let image = unpack(api, name, &manifest).await?;
    Ok(Some(image))
}

/// Unpacks a manifest's layers (those not unpacked already) and reads its config.
pub(crate) async fn unpack(
    api: &Api,
    name: &str,
    manifest: &Manifest,
) -> Result<Image, RuntimeError> {
    let config_desc = manifest.config.as_ref().ok_or_else(|| {
        RuntimeError::InvalidSpec(format!("image {name} has a manifest without a config"))
    })?;
    let config: ConfigFile =
        serde_json::from_slice(&content::read(api, &config_desc.digest).await?).map_err(|e| {
            RuntimeError::InvalidSpec(format!("image {name} has an unreadable config: {e}"))
        })?;
    if config.rootfs.diff_ids.len() != manifest.layers.len() {
        return Err(RuntimeError::InvalidSpec(format!(
            "image {name} is inconsistent: {} layers but {} diff IDs in its config",
            manifest.layers.len(),
            config.rootfs.diff_ids.len()
        )));
    }
    let chain = chain_ids(&config.rootfs.diff_ids);
    for (i, layer) in manifest.layers.iter().enumerate() {
        if snapshot_exists(api, &chain[i]).await? {
            continue;
        }
        let parent = if i == 0 {
            String::new()
        } else {
            chain[i - 1].clone()
        };
        apply_layer(
            api,
            name,
            layer,
            &config.rootfs.diff_ids[i],
            &parent,
            &chain[i],
        )
        .await?;
    }
    Ok(Image {
        name: name.to_owned(),
        config: config.config.unwrap_or_default(),
        chain_id: chain.last().cloned().unwrap_or_default(),
    })
}

pub(crate) async fn snapshot_exists(api: &Api, key: &str) -> Result<bool, RuntimeError> {
    let request = api.request(snapshots::StatSnapshotRequest {
        snapshotter: SNAPSHOTTER.into(),
        key: key.into(),
    });
    match api.snapshots().stat(request).await {
        Ok(_) => Ok(true),
        Err(s) if api::not_found(&s) => Ok(false),
        Err(s) => Err(api::error("asking containerd for a snapshot", s)),
    }
}

/// Prepare -> apply -> commit one layer as snapshot `chain_id` on top of `parent`.
async fn apply_layer(
    api: &Api,
    name: &str,
    layer: &Desc,
    diff_id: &str,
    parent: &str,
    chain_id: &str,
) -> Result<(), RuntimeError> {
    let key = format!("skiff-extract-{:016x}-{chain_id}", rand::random::<u64>());
    let prepare = snapshots::PrepareSnapshotRequest {
        snapshotter: SNAPSHOTTER.into(),
        key: key.clone(),
        parent: parent.into(),
        labels: HashMap::new(),
    };
    let mounts = api
        .snapshots()
        .prepare(api.leased(prepare))
        .await
        .map_err(|s| api::error(&format!("preparing a snapshot for a layer of {name}"), s))?
        .into_inner()
        .mounts;
    let result = async {
        let apply = api::diff::ApplyRequest {
            diff: Some(Descriptor {
                media_type: layer.media_type.clone(),
                digest: layer.digest.clone(),
                size: layer.size,
                annotations: HashMap::new(),
            }),
            mounts,
        };
        let applied = api
            .diff()
            .apply(api.leased(apply))
            .await
            .map_err(|s| api::error(&format!("unpacking a layer of {name}"), s))?
            .into_inner()
            .applied
            .map(|d| d.digest)
            .unwrap_or_default();
        if applied != diff_id {
            return Err(RuntimeError::InvalidSpec(format!(
                "image {name} is corrupt: layer {} unpacks to {applied}, its config says {diff_id}",
                layer.digest
            )));
        }
        let commit = snapshots::CommitSnapshotRequest {
            snapshotter: SNAPSHOTTER.into(),
            name: chain_id.into(),
            key: key.clone(),
            labels: HashMap::new(),
        };
        match api.snapshots().commit(api.leased(commit)).await {
            Ok(_) => Ok(()),
            // Another unpack of the same layer won the race.
            Err(s) if s.code() == Code::AlreadyExists => Ok(()),
            Err(s) => Err(api::error(&format!("committing a layer of {name}"), s)),
        }
    }
    .await;
    if result.is_err() {
        let remove = snapshots::RemoveSnapshotRequest {
            snapshotter: SNAPSHOTTER.into(),
            key,
        };
        let _ = api.snapshots().remove(api.request(remove)).await;
    }
    result
}

/// Records (or moves) the name `name` to point at `target`.
pub(crate) async fn record(api: &Api, name: &str, target: Descriptor) -> Result<(), RuntimeError> {
    let image = images::Image {
        name: name.into(),
        labels: HashMap::new(),
        target: Some(target),
    };
    let create = images::CreateImageRequest {
        image: Some(image.clone()),
    };
    match api.images().create(api.request(create)).await {
        Ok(_) => Ok(()),
        Err(s) if s.code() == Code::AlreadyExists => {
            let update = images::UpdateImageRequest {
                image: Some(image),
                update_mask: None,
            };
            api.images()
                .update(api.request(update))
                .await
                .map(|_| ())
                .map_err(|s| api::error(&format!("recording image {name}"), s))
        }
        Err(s) => Err(api::error(&format!("recording image {name}"), s)),
    }
}

/// How to reach registries.
#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    /// Registries (`HOST:PORT`) spoken to over plain HTTP.
    pub insecure: Vec<String>,
}

/// Registry credentials as Docker passes them with a task: base64 of
/// `{"username": ..., "password": ...}` (or an identity token).
fn registry_auth(encoded: &str) -> Result<oci_client::secrets::RegistryAuth, RuntimeError> {
    use base64::Engine as _;
    use oci_client::secrets::RegistryAuth;
    if encoded.is_empty() {
        return Ok(RegistryAuth::Anonymous);
    }
    #[derive(Deserialize)]
    struct Auth {
        #[serde(default)]
        username: String,
        #[serde(default)]
        password: String,
        #[serde(default, rename = "identitytoken")]
        identity_token: String,
    }
    let engines = [
        base64::engine::general_purpose::URL_SAFE,
        base64::engine::general_purpose::STANDARD,
        base64::engine::general_purpose::URL_SAFE_NO_PAD,
        base64::engine::general_purpose::STANDARD_NO_PAD,
    ];
    let json = engines
        .iter()
        .find_map(|e| e.decode(encoded.trim()).ok())
        .ok_or_else(|| {
            RuntimeError::InvalidSpec("the task's registry credentials are not base64".into())
        })?;
    let auth: Auth = serde_json::from_slice(&json).map_err(|e| {
        RuntimeError::InvalidSpec(format!(
            "the task's registry credentials are not valid JSON: {e}"
        ))
    })?;
    Ok(if !auth.identity_token.is_empty() {
        RegistryAuth::Bearer(auth.identity_token)
    } else if !auth.username.is_empty() {
        RegistryAuth::Basic(auth.username, auth.password)
    } else {
        RegistryAuth::Anonymous
    })
}

/// What a registry says of an image without pulling it: its top manifest (or index) and
/// the platforms it is built for (Docker's `GET /distribution/{name}/json`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Distribution {
    /// The media type of the manifest or index.
    pub media_type: String,
    /// Its digest.
    pub digest: String,
    /// Its size in bytes.
    pub size: i64,
    /// (OS, architecture) of each image an index lists; empty for a single manifest.
    pub platforms: Vec<(String, String)>,
}

/// Asks `image`'s registry for its manifest (with `auth`, Docker's base64 credentials, if
/// not empty) without pulling anything.
pub async fn inspect_distribution(
    image: &ImageRef,
    auth: &str,
    options: &RegistryOptions,
) -> Result<Distribution, RuntimeError> {
    let name = image.to_string();
    let auth = registry_auth(auth)?;
    let config = oci_client::client::ClientConfig {
        protocol: oci_client::client::ClientProtocol::HttpsExcept(options.insecure.clone()),
        read_timeout: Some(Duration::from_secs(30)),
        connect_timeout: Some(Duration::from_secs(10)),
        ..Default::default()
    };
    let client = oci_client::Client::new(config);
    let accepted = [
        OCI_INDEX,
        DOCKER_MANIFEST_LIST,
        OCI_MANIFEST,
        DOCKER_MANIFEST,
    ];
    let (bytes, digest) = client
        .pull_manifest_raw(&to_oci(image), &auth, &accepted)
        .await
        .map_err(|e| {
            RuntimeError::InvalidSpec(format!(
                "cannot read the manifest of {name} from its registry: {}",
                with_causes(&e)
            ))
        })?;
    let manifest = Manifest::parse(&bytes, &name)?;
    Ok(Distribution {
        media_type: if manifest.media_type.is_empty() {
            OCI_MANIFEST.into()
        } else {
            manifest.media_type.clone()
        },
        digest,
        size: bytes.len() as i64,
        platforms: manifest
            .manifests
            .iter()
            .filter_map(|m| m.platform.as_ref())
            .map(|p| (p.os.clone(), p.architecture.clone()))
            .collect(),
    })
}

/// Pulls `image` from its registry into containerd, records it and unpacks it; publishes
/// the bytes of its layers present so far on `progress`, if given.
pub(crate) async fn pull(
    api: &Api,
    image: &ImageRef,
    auth: &str,
    options: &RegistryOptions,
    progress: Option<&ProgressSender>,
) -> Result<Image, RuntimeError> {
    let name = image.to_string();
    let auth = registry_auth(auth)?;
    let config = oci_client::client::ClientConfig {
        protocol: oci_client::client::ClientProtocol::HttpsExcept(options.insecure.clone()),
        read_timeout: Some(Duration::from_secs(60)),
        connect_timeout: Some(Duration::from_secs(15)),
        ..Default::default()
    };
    let client = oci_client::Client::new(config);
    let anonymous = matches!(auth, oci_client::secrets::RegistryAuth::Anonymous);
    let pull_failed = |e: &OciDistributionError| {
        let cause = with_causes(e);
        let registry = &image.registry;
        let hint = match e {
            OciDistributionError::UnauthorizedError { .. }
            | OciDistributionError::AuthenticationFailure(_)
                if anonymous =>
            {
                format!("the registry wants credentials: run `docker login {registry}`, then create or update the service with --with-registry-auth")
            }
            OciDistributionError::UnauthorizedError { .. }
            | OciDistributionError::AuthenticationFailure(_) => {
                format!("the registry refused the service's credentials: run `docker login {registry}` again, then `skiff service update --with-registry-auth`")
            }
            _ if options.insecure.iter().any(|r| r == registry) => {
                format!("check the image name and that the registry {registry} is reachable")
            }
            _ => format!("check the image name and that the registry {registry} is reachable (a registry that speaks plain HTTP must be named with skiffd --insecure-registry {registry})"),
        };
        RuntimeError::InvalidSpec(format!("pulling image {name} failed: {cause}; {hint}"))
    };
    let accepted = [
        OCI_INDEX,
        DOCKER_MANIFEST_LIST,
        OCI_MANIFEST,
        DOCKER_MANIFEST,
    ];
    let reference = to_oci(image);
    let (bytes, digest) = client
        .pull_manifest_raw(&reference, &auth, &accepted)
        .await
        .map_err(|e| pull_failed(&e))?;
    let top = Manifest::parse(&bytes, &name)?;
    let target = Descriptor {
        media_type: if top.media_type.is_empty() {
            OCI_MANIFEST.into()
        } else {
            top.media_type.clone()
        },
        digest: digest.clone(),
        size: bytes.len() as i64,
        annotations: HashMap::new(),
    };
    // An index is stored as the registry sent it, after the manifest it points to.
    let mut index = None;
    let (manifest, manifest_bytes, manifest_digest) = if top.is_index() {
        let chosen = top.for_this_platform(&name)?.digest.clone();
        let pinned = to_oci(&image.with_digest(&chosen));
        let (platform_bytes, platform_digest) = client
            .pull_manifest_raw(&pinned, &auth, &[OCI_MANIFEST, DOCKER_MANIFEST])
            .await
            .map_err(|e| pull_failed(&e))?;
        index = Some(bytes.to_vec());
        let manifest = Manifest::parse(&platform_bytes, &name)?;
        (manifest, platform_bytes.to_vec(), platform_digest)
    } else {
        (top, bytes.to_vec(), digest.clone())
    };
    let config_desc = manifest.config.clone().ok_or_else(|| {
        RuntimeError::InvalidSpec(format!("image {name} has a manifest without a config"))
    })?;
    let mut config_bytes = Vec::new();
    client
        .pull_blob(&reference, &oci_desc(&config_desc), &mut config_bytes)
        .await
        .map_err(|e| pull_failed(&e))?;
    content::write_bytes(api, &config_desc.digest, config_bytes).await?;
    let total = manifest
        .layers
        .iter()
        .map(|l| u64::try_from(l.size).unwrap_or(0))
        .sum();
    let mut done = 0u64;
    let publish = |done: u64| {
        if let Some(p) = progress {
            p.send_replace(PullProgress { done, total });
        }
    };
    for layer in &manifest.layers {
        let size = u64::try_from(layer.size).unwrap_or(0);
        if content::exists(api, &layer.digest).await? {
            done += size;
            publish(done);
            continue;
        }
        let stream = client
            .pull_blob_stream(&reference, &oci_desc(layer))
            .await
            .map_err(|e| pull_failed(&e))?;
        // Counted as the bytes arrive from the registry, before containerd has them all:
        // what the pull has fetched, as Docker's "Downloading" shows it.
        let before = done;
        let mut fetched = 0u64;
        let sender = progress.cloned();
        let counted = stream.stream.map_ok(move |chunk| {
            fetched += chunk.len() as u64;
            if let Some(p) = &sender {
                p.send_replace(PullProgress {
                    done: before + fetched.min(size),
                    total,
                });
            }
            chunk
        });
        content::write(
            api,
            &layer.digest,
            layer.size,
            counted.map_err(std::io::Error::other),
        )
        .await?;
        done += size;
        publish(done);
    }
    content::write_bytes(api, &manifest_digest, manifest_bytes).await?;
    if let Some(index) = index {
        content::write_bytes(api, &target.digest, index).await?;
    }
    record(api, &name, target).await?;
    unpack(api, &name, &manifest).await
}

/// An error and its causes, on one line (the registry client's own message is often only
/// "error sending request").
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text = format!("{text}: {cause_text}");
        }
        source = cause.source();
    }
    text
}

fn oci_desc(desc: &Desc) -> oci_client::manifest::OciDescriptor {
    oci_client::manifest::OciDescriptor {
        media_type: desc.media_type.clone(),
        digest: desc.digest.clone(),
        size: desc.size,
        ..Default::default()
    }
}

/// The reference for the registry client.
fn to_oci(image: &ImageRef) -> oci_client::Reference {
    let (registry, repository) = (image.registry.clone(), image.repository.clone());
    match (&image.tag, &image.digest) {
        (_, Some(d)) => oci_client::Reference::with_digest(registry, repository, d.clone()),
        (Some(t), None) => oci_client::Reference::with_tag(registry, repository, t.clone()),
        (None, None) => oci_client::Reference::with_tag(registry, repository, "latest".into()),
    }
}
