//! Blobs in containerd's content store: written under the images lease, read back whole
//! (manifests and configs are small; layers are only ever written, then applied by
//! containerd's diff service).

use bytes::Bytes;
use futures::{Stream, StreamExt};
use tonic::Code;

use super::api::{self, content, Api};
use crate::RuntimeError;

/// The most bytes sent in one write message.
const CHUNK: usize = 1 << 20;

/// True when the content store has the blob.
pub(crate) async fn exists(api: &Api, digest: &str) -> Result<bool, RuntimeError> {
    let request = api.request(content::InfoRequest {
        digest: digest.into(),
    });
    match api.content().info(request).await {
        Ok(_) => Ok(true),
        Err(s) if api::not_found(&s) => Ok(false),
        Err(s) => Err(api::error("asking containerd for a blob", s)),
    }
}

/// Reads a whole blob.
pub(crate) async fn read(api: &Api, digest: &str) -> Result<Vec<u8>, RuntimeError> {
    let request = api.request(content::ReadContentRequest {
        digest: digest.into(),
        offset: 0,
        size: 0,
    });
    let mut stream = api
        .content()
        .read(request)
        .await
        .map_err(|s| api::error(&format!("reading blob {digest} from containerd"), s))?
        .into_inner();
    let mut data = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|s| api::error(&format!("reading blob {digest}"), s))?;
        data.extend_from_slice(&chunk.data);
    }
    Ok(data)
}

/// Writes a blob of `size` bytes from `data`, checked against `digest` by containerd, unless
/// the store has it already.
pub(crate) async fn write<S>(
    api: &Api,
    digest: &str,
    size: i64,
    data: S,
) -> Result<(), RuntimeError>
where
    S: Stream<Item = std::io::Result<Bytes>> + Send + 'static,
{
    if exists(api, digest).await? {
        return Ok(());
    }
    // A fresh ref per attempt: a ref is locked while a write streams to it, and two pulls
    // may want the same layer at once (the second commit then finds it present).
    let reference = format!("skiff-{digest}-{:016x}", rand::random::<u64>());
    let (tx, rx) = tokio::sync::mpsc::channel::<content::WriteContentRequest>(4);
    let producer = {
        let reference = reference.clone();
        let digest = digest.to_owned();
        tokio::spawn(async move {
            let mut offset = 0i64;
            let mut data = Box::pin(data);
            while let Some(chunk) = data.next().await {
                let chunk = chunk?;
                for piece in chunk.chunks(CHUNK) {
                    let message = content::WriteContentRequest {
                        action: content::WriteAction::Write as i32,
                        r#ref: reference.clone(),
                        total: size,
                        expected: digest.clone(),
                        offset,
                        data: Bytes::copy_from_slice(piece).into(),
                        labels: Default::default(),
                    };
                    offset += piece.len() as i64;
                    if tx.send(message).await.is_err() {
                        return Ok(offset);
                    }
                }
            }
            let commit = content::WriteContentRequest {
                action: content::WriteAction::Commit as i32,
                r#ref: reference,
                total: size,
                expected: digest,
                offset,
                data: Default::default(),
                labels: Default::default(),
            };
            let _ = tx.send(commit).await;
            Ok::<i64, std::io::Error>(offset)
        })
    };
    let outcome = async {
        let mut responses = api
            .content()
            .write(api.leased(tokio_stream::wrappers::ReceiverStream::new(rx)))
            .await?
            .into_inner();
        while let Some(response) = responses.message().await? {
            if response.action == content::WriteAction::Commit as i32 {
                return Ok(true);
            }
        }
        Ok::<bool, tonic::Status>(false)
    }
    .await;
    let produced = producer
        .await
        .map_err(|e| RuntimeError::io("writing a blob to containerd", std::io::Error::other(e)))?;
    match (outcome, produced) {
        (Ok(true), _) => Ok(()),
        (Err(s), _) if s.code() == Code::AlreadyExists => Ok(()),
        (_, Err(e)) => Err(RuntimeError::io(format!("downloading blob {digest}"), e)),
        (Err(s), _) => Err(api::error(
            &format!("storing blob {digest} in containerd"),
            s,
        )),
        (Ok(false), Ok(n)) => Err(RuntimeError::io(
            format!("storing blob {digest} in containerd"),
            std::io::Error::other(format!(
                "the write ended after {n} of {size} bytes without a commit"
            )),
        )),
    }
}

/// Writes a blob held in memory.
pub(crate) async fn write_bytes(
    api: &Api,
    digest: &str,
    data: Vec<u8>,
) -> Result<(), RuntimeError> {
    let size = data.len() as i64;
    let stream = futures::stream::once(async move { Ok(Bytes::from(data)) });
    write(api, digest, size, stream).await
}

/// The `sha256:<hex>` digest of `data`.
pub(crate) fn digest_of(data: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)))
}
