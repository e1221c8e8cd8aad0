//! The secrets and configs each node is sent: those its assigned tasks refer to, and no
//! others, with their data; a node stops holding one when its last task needing it is no
//! longer its business. This is Docker's promise that a secret reaches only the nodes that
//! run a task using it.

use std::collections::BTreeMap;

use proto::{Config, Secret, Task};

use super::assignments::assigned_to;
use crate::store::ObjectStore;

/// What one node holds.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct SecretsView {
    /// Secrets by ID.
    pub secrets: BTreeMap<String, Secret>,
    /// Configs by ID.
    pub configs: BTreeMap<String, Config>,
}

/// The secrets and configs the tasks assigned to `node_id` refer to.
pub fn view(store: &ObjectStore, node_id: &str) -> SecretsView {
    let mut out = SecretsView::default();
    let containers = store
        .tasks_on_node(node_id)
        .filter(|t| assigned_to(t, node_id))
        .filter_map(|t| t.spec.as_ref()?.container.as_ref());
    for container in containers {
        for r in &container.secrets {
            if let Some(secret) = store.get::<Secret>(&r.secret_id) {
                out.secrets.insert(r.secret_id.clone(), secret.clone());
            }
        }
        for r in &container.configs {
            if let Some(config) = store.get::<Config>(&r.config_id) {
                out.configs.insert(r.config_id.clone(), config.clone());
            }
        }
    }
    out
}

impl SecretsView {
    /// Whether the node holds no secret and no config.
    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty() && self.configs.is_empty()
    }
}

/// Whether `task` refers to a secret or a config.
pub fn refers(task: &Task) -> bool {
    task.spec
        .as_ref()
        .and_then(|s| s.container.as_ref())
        .is_some_and(|c| !c.secrets.is_empty() || !c.configs.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::create;
    use proto::{
        ContainerSpec, Meta, SecretReference, SecretSpec, StoreBatch, TaskSpec, TaskState,
        TaskStatus,
    };

    fn secret(id: &str) -> Secret {
        Secret {
            meta: Some(Meta {
                id: id.into(),
                ..Default::default()
            }),
            spec: Some(SecretSpec {
                name: id.into(),
                data: format!("{id}-bytes").into_bytes(),
                ..Default::default()
            }),
        }
    }

    fn task(
        id: &str,
        node: &str,
        secrets: &[&str],
        desired: TaskState,
        observed: TaskState,
    ) -> Task {
        Task {
            meta: Some(Meta {
                id: id.into(),
                ..Default::default()
            }),
            node_id: node.into(),
            desired_state: desired as i32,
            status: Some(TaskStatus {
                state: observed as i32,
                ..Default::default()
            }),
            spec: Some(
                TaskSpec {
                    container: Some(ContainerSpec {
                        secrets: secrets
                            .iter()
                            .map(|s| SecretReference {
                                secret_id: (*s).into(),
                                secret_name: (*s).into(),
                                ..Default::default()
                            })
                            .collect(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }
                .into(),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn a_node_gets_only_the_secrets_of_its_own_tasks_while_they_are_its_business() {
        use TaskState::*;
        let mut store = ObjectStore::default();
        let actions = vec![
            create(secret("db")),
            create(secret("tls")),
            create(secret("unused")),
            create(task("t1", "n1", &["db"], Running, Running)),
            create(task("t2", "n2", &["tls"], Running, Running)),
            // Ended and told to stay ended: no longer n3's business.
            create(task("t3", "n3", &["db"], Shutdown, Complete)),
            // Not placed yet.
            create(task("t4", "", &["tls"], Running, Pending)),
        ];
        store
            .apply(
                &StoreBatch {
                    actions,
                    ..Default::default()
                },
                1,
            )
            .unwrap();
        let held = |node: &str| view(&store, node).secrets.into_keys().collect::<Vec<_>>();
        assert_eq!(held("n1"), ["db"]);
        assert_eq!(held("n2"), ["tls"]);
        assert!(held("n3").is_empty(), "its last task needing it ended");
        assert!(
            held("n4").is_empty(),
            "a node without such a task gets nothing"
        );
        let sent = view(&store, "n1");
        assert_eq!(sent.secrets["db"].spec.as_ref().unwrap().data, b"db-bytes");
    }
}
