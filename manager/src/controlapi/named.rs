//! Secrets and configs: named blobs services refer to. Their rules are the same, so they
//! share the code; secrets never leave a manager in listings.

use std::collections::HashMap;

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
    /// The labels, to change.
    fn labels_mut(&mut self) -> &mut HashMap<String, String>;
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
    fn labels_mut(&mut self) -> &mut HashMap<String, String> {
        &mut self.spec.get_or_insert_with(Default::default).labels
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
    fn labels_mut(&mut self) -> &mut HashMap<String, String> {
        &mut self.spec.get_or_insert_with(Default::default).labels
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

/// `current` with the labels of a new spec: secrets and configs are immutable (tasks
/// already hold their data), so a new name or new data is refused, with what to do
/// instead; data left empty means unchanged. `None` when nothing changes, so an unchanged
/// spec writes nothing.
pub fn updated<T: Named + Clone>(
    current: &T,
    name: &str,
    labels: HashMap<String, String>,
    data: &[u8],
) -> Result<Option<T>, Status> {
    let (current_name, current_data) = current.parts();
    if name != current_name {
        return Err(invalid(format!(
            "a {} cannot be renamed; create one named {name} instead",
            T::WHAT
        )));
    }
    if !data.is_empty() && data != current_data {
        return Err(refused(format!(
            "{} {name} already exists with other data, and {}s cannot change; give the new data a new name (e.g. {name}_v2) and point the services at it",
            T::WHAT,
            T::WHAT
        )));
    }
    let mut next = current.clone();
    if *next.labels_mut() == labels {
        return Ok(None);
    }
    *next.labels_mut() = labels;
    Ok(Some(next))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(labels: &[(&str, &str)]) -> Secret {
        Secret::build(
            "s1".into(),
            SecretSpec {
                name: "db_password".into(),
                labels: labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                data: b"s3cret".to_vec(),
            },
        )
    }

    #[test]
    fn only_labels_change_and_an_unchanged_spec_writes_nothing() {
        let current = secret(&[("a", "1")]);
        let same = secret(&[("a", "1")]).spec.unwrap();
        assert_eq!(
            updated(&current, &same.name, same.labels, &same.data).unwrap(),
            None
        );
        // Empty data means the data stays.
        let labels: HashMap<_, _> = [("b".to_string(), "2".to_string())].into();
        let next = updated(&current, "db_password", labels.clone(), b"")
            .unwrap()
            .unwrap();
        assert_eq!(next.spec.as_ref().unwrap().labels, labels);
        assert_eq!(next.spec.unwrap().data, b"s3cret");
    }

    #[test]
    fn new_data_or_a_new_name_is_refused_with_what_to_do() {
        let current = secret(&[]);
        let e = updated(&current, "db_password", HashMap::new(), b"other").unwrap_err();
        assert!(
            e.message().contains("give the new data a new name"),
            "{}",
            e.message()
        );
        let e = updated(&current, "db_pass", HashMap::new(), b"").unwrap_err();
        assert!(e.message().contains("cannot be renamed"), "{}", e.message());
    }
}
