//! Secrets and configs: named blobs services refer to. Their rules are the same, so they
//! share the code; secrets never leave a manager in listings.

use proto::{Config, ConfigSpec, Secret, SecretSpec, Service};
use tonic::Status;

use crate::status::{invalid, refused};
use crate::store::{ObjectStore, StoredObject};

/// Docker's limit for a secret or config.
pub const MAX_DATA_BYTES: usize = 500 * 1024;

/// A secret or a config.
pub trait Named: StoredObject {
    /// "secret" or "config".
    const WHAT: &'static str;
    /// The name and payload.
    fn parts(&self) -> (&str, &[u8]);
    /// A new object with this ID from a spec.
    fn build(id: String, spec: Self::Spec) -> Self;
    /// The spec type.
    type Spec;
    /// Whether `service` refers to the object with this ID.
    fn used_by(service: &Service, id: &str) -> bool;
}

impl Named for Secret {
    const WHAT: &'static str = "secret";
    type Spec = SecretSpec;
    fn parts(&self) -> (&str, &[u8]) {
        self.spec
            .as_ref()
            .map_or(("", &[]), |s| (s.name.as_str(), s.data.as_slice()))
    }
    fn build(id: String, spec: SecretSpec) -> Self {
        Secret {
            meta: Some(proto::Meta {
                id,
                ..Default::default()
            }),
            spec: Some(spec),
        }
    }
    fn used_by(service: &Service, id: &str) -> bool {
        container(service).is_some_and(|c| c.secrets.iter().any(|r| r.secret_id == id))
    }
}

impl Named for Config {
    const WHAT: &'static str = "config";
    type Spec = ConfigSpec;
    fn parts(&self) -> (&str, &[u8]) {
        self.spec
            .as_ref()
            .map_or(("", &[]), |s| (s.name.as_str(), s.data.as_slice()))
    }
    fn build(id: String, spec: ConfigSpec) -> Self {
        Config {
            meta: Some(proto::Meta {
                id,
                ..Default::default()
            }),
            spec: Some(spec),
        }
    }
    fn used_by(service: &Service, id: &str) -> bool {
        container(service).is_some_and(|c| c.configs.iter().any(|r| r.config_id == id))
    }
}

fn container(service: &Service) -> Option<&proto::ContainerSpec> {
    service
        .spec
        .as_ref()?
        .task_template
        .as_ref()?
        .container
        .as_ref()
}

/// Checks a new object's name and size.
pub fn validate<T: Named>(object: &T) -> Result<(), Status> {
    let (name, data) = object.parts();
    let name_ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if !name_ok {
        return Err(invalid(format!(
            "invalid {} name {name:?}: use 1 to 64 letters, digits, '-', '_' or '.', starting with a letter or digit",
            T::WHAT
        )));
    }
    if data.is_empty() || data.len() > MAX_DATA_BYTES {
        return Err(invalid(format!(
            "a {} must hold between 1 byte and {} KiB, not {} bytes",
            T::WHAT,
            MAX_DATA_BYTES / 1024,
            data.len()
        )));
    }
    Ok(())
}

/// Refuses removing an object a service still uses, naming every such service.
pub fn check_unused<T: Named>(store: &ObjectStore, object: &T) -> Result<(), Status> {
    let users: Vec<&str> = store
        .list::<Service>()
        .filter(|s| T::used_by(s, object.id()))
        .map(|s| s.name().unwrap_or_default())
        .collect();
    if !users.is_empty() {
        return Err(refused(format!(
            "{} {} is in use by service {}; remove it from {} first (service update --{}-rm)",
            T::WHAT,
            object.parts().0,
            users.join(", "),
            if users.len() == 1 { "it" } else { "them" },
            T::WHAT
        )));
    }
    Ok(())
}

/// A secret as listings show it: without its data.
pub fn without_data(mut secret: Secret) -> Secret {
    if let Some(spec) = secret.spec.as_mut() {
        spec.data.clear();
    }
    secret
}
