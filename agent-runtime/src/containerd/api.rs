//! The containerd gRPC client: generated stubs for the API subset in `proto/containerd`,
//! one connection over containerd's unix socket, and the headers every call carries
//! (the containerd namespace, and the lease that keeps new content from the collector).

use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Status};

use crate::RuntimeError;

#[allow(clippy::all, missing_docs, rust_2018_idioms)]
pub(crate) mod containerd {
    pub mod types {
        tonic::include_proto!("containerd.types");
    }
    pub mod v1 {
        pub mod types {
            tonic::include_proto!("containerd.v1.types");
        }
    }
    pub mod services {
        pub mod containers {
            pub mod v1 {
                tonic::include_proto!("containerd.services.containers.v1");
            }
        }
        pub mod content {
            pub mod v1 {
                tonic::include_proto!("containerd.services.content.v1");
            }
        }
        pub mod diff {
            pub mod v1 {
                tonic::include_proto!("containerd.services.diff.v1");
            }
        }
        pub mod images {
            pub mod v1 {
                tonic::include_proto!("containerd.services.images.v1");
            }
        }
        pub mod leases {
            pub mod v1 {
                tonic::include_proto!("containerd.services.leases.v1");
            }
        }
        pub mod snapshots {
            pub mod v1 {
                tonic::include_proto!("containerd.services.snapshots.v1");
            }
        }
        pub mod tasks {
            pub mod v1 {
                tonic::include_proto!("containerd.services.tasks.v1");
            }
        }
        pub mod version {
            pub mod v1 {
                tonic::include_proto!("containerd.services.version.v1");
            }
        }
    }
}

pub(crate) use containerd::services::containers::v1 as containers;
pub(crate) use containerd::services::content::v1 as content;
pub(crate) use containerd::services::diff::v1 as diff;
pub(crate) use containerd::services::images::v1 as images;
pub(crate) use containerd::services::leases::v1 as leases;
pub(crate) use containerd::services::snapshots::v1 as snapshots;
pub(crate) use containerd::services::tasks::v1 as tasks;
pub(crate) use containerd::types::{Descriptor, Mount};
pub(crate) use containerd::v1::types::Status as ProcessStatus;

/// The snapshotter images are unpacked with and containers run on.
pub(crate) const SNAPSHOTTER: &str = "overlayfs";

/// The lease that holds every image blob and layer snapshot skiff pulled or loaded, so
/// containerd's collector leaves them alone (containers hold their own snapshots).
pub(crate) const IMAGES_LEASE: &str = "skiff-images";

/// A connection to containerd, scoped to one containerd namespace.
#[derive(Clone)]
pub(crate) struct Api {
    channel: Channel,
    namespace: String,
}

impl Api {
    /// Connects to containerd's socket and checks that it answers.
    pub(crate) async fn connect(socket: &Path, namespace: &str) -> Result<Api, RuntimeError> {
        let unreachable = |e: &dyn std::fmt::Display| {
            RuntimeError::Unavailable(format!(
                "containerd does not answer on {} ({e}); install it (apt-get install containerd runc) \
                 and start it, or point --containerd-socket at its socket",
                socket.display()
            ))
        };
        if !socket.exists() {
            return Err(unreachable(&"no such socket"));
        }
        let path: PathBuf = socket.to_path_buf();
        // The URI is a placeholder: the connector ignores it.
        let channel = Endpoint::try_from("http://[::]:50051")
            .map_err(|e| unreachable(&e))?
            .connect_timeout(Duration::from_secs(5))
            .connect_with_connector(tower::service_fn(move |_| {
                let path = path.clone();
                async move {
                    let stream = tokio::net::UnixStream::connect(&path).await?;
                    Ok::<_, std::io::Error>(TokioIo::new(stream))
                }
            }))
            .await
            .map_err(|e| unreachable(&e))?;
        let api = Api {
            channel,
            namespace: namespace.to_owned(),
        };
        let mut version =
            containerd::services::version::v1::version_client::VersionClient::new(api.channel());
        version
            .version(api.request(()))
            .await
            .map_err(|e| unreachable(&e.message()))?;
        Ok(api)
    }

    pub(crate) fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// A request in this API's containerd namespace.
    pub(crate) fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        if let Ok(value) = MetadataValue::try_from(self.namespace.as_str()) {
            request.metadata_mut().insert("containerd-namespace", value);
        }
        request
    }

    /// A request whose new content and snapshots the images lease holds.
    pub(crate) fn leased<T>(&self, message: T) -> Request<T> {
        let mut request = self.request(message);
        request
            .metadata_mut()
            .insert("containerd-lease", MetadataValue::from_static(IMAGES_LEASE));
        request
    }

    pub(crate) fn tasks(&self) -> tasks::tasks_client::TasksClient<Channel> {
        tasks::tasks_client::TasksClient::new(self.channel())
    }

    pub(crate) fn containers(&self) -> containers::containers_client::ContainersClient<Channel> {
        containers::containers_client::ContainersClient::new(self.channel())
    }

    pub(crate) fn content(&self) -> content::content_client::ContentClient<Channel> {
        content::content_client::ContentClient::new(self.channel())
            .max_decoding_message_size(64 << 20)
    }

    pub(crate) fn snapshots(&self) -> snapshots::snapshots_client::SnapshotsClient<Channel> {
        snapshots::snapshots_client::SnapshotsClient::new(self.channel())
    }

    pub(crate) fn diff(&self) -> diff::diff_client::DiffClient<Channel> {
        diff::diff_client::DiffClient::new(self.channel())
    }

    pub(crate) fn images(&self) -> images::images_client::ImagesClient<Channel> {
        images::images_client::ImagesClient::new(self.channel())
    }

    /// Makes sure the images lease exists (it never expires).
    pub(crate) async fn ensure_images_lease(&self) -> Result<(), RuntimeError> {
        let mut leases = leases::leases_client::LeasesClient::new(self.channel());
        let create = leases::CreateRequest {
            id: IMAGES_LEASE.into(),
            labels: Default::default(),
        };
        match leases.create(self.request(create)).await {
            Ok(_) => Ok(()),
            Err(s) if s.code() == Code::AlreadyExists => Ok(()),
            Err(s) => Err(error("creating the images lease in containerd", s)),
        }
    }
}

/// True when containerd said the object does not exist.
pub(crate) fn not_found(status: &Status) -> bool {
    status.code() == Code::NotFound
}

/// A containerd error as a runtime error: an unreachable containerd is worth retrying;
/// anything else it refused is not.
pub(crate) fn error(context: &str, status: Status) -> RuntimeError {
    match status.code() {
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown
            if status.message().contains("transport") || status.code() != Code::Unknown =>
        {
            RuntimeError::io(
                context,
                std::io::Error::other(format!("containerd: {}", status.message())),
            )
        }
        Code::NotFound => RuntimeError::InvalidState(format!("{context}: {}", status.message())),
        _ => RuntimeError::InvalidState(format!("{context}: {}", status.message())),
    }
}
