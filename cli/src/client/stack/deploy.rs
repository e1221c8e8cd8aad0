//! A stack's deploy as a plan of changes, checked whole before the first one is made, so a
//! refused deploy leaves the stack as it was: external objects exist, every service spec
//! passes the manager's own defaults and validation, and the manager's own checks against
//! the cluster (networks and secrets resolve, no port another service or the cluster
//! itself uses) on a copy of the cluster with the stack's new objects in it, no service
//! changes its mode, no two services publish one port. Then [`execute`] makes the changes.
//!
//! A redeploy is declarative: new objects are created, existing services are sent their
//! spec again (keeping `force_update`, so an unchanged task template starts no rollout:
//! the manager rolls a service only when its template changed), and with `--prune` the
//! stack's services no longer in the file are removed. Secrets and configs are immutable:
//! an existing one is sent its spec through `UpdateSecret`/`UpdateConfig`, which change
//! labels only and refuse other data; those go first, so a refusal comes before anything
//! is created.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::Context as _;
use manager::controlapi::service::{
    check_against_store, check_mode_change, validate, with_defaults,
};
use manager::store::{create, ObjectStore};
use proto::{
    Config, ConfigSpec, CreateConfigRequest, CreateNetworkRequest, CreateSecretRequest,
    CreateServiceRequest, Network, NetworkSpec, PublishMode, RemoveServiceRequest, Secret,
    SecretSpec, Service, ServiceSpec, UpdateConfigRequest, UpdateSecretRequest,
    UpdateServiceRequest, UpdateState,
};

use super::translate::{Desired, NAMESPACE_LABEL};
use crate::client::service::{progress, render};
use crate::client::{out, Client, Reply as _};

/// The cluster as it is, as far as a deploy cares.
#[derive(Debug, Default, Clone)]
pub struct Current {
    pub services: Vec<Service>,
    pub networks: Vec<Network>,
    pub secrets: Vec<Secret>,
    pub configs: Vec<Config>,
    /// The nodes and the cluster object: their ports are not for services to publish.
    pub nodes: Vec<proto::Node>,
    pub cluster: Option<proto::Cluster>,
}

/// An object to update: its ID, the version read, and the new spec.
#[derive(Debug, Clone, PartialEq)]
pub struct Update<T> {
    pub id: String,
    pub version: u64,
    pub spec: T,
}

/// The changes of one deploy, in the order [`execute`] makes them.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Plan {
    pub update_secrets: Vec<Update<SecretSpec>>,
    pub update_configs: Vec<Update<ConfigSpec>>,
    /// Services of the stack no longer in the file (`--prune`): ID and name.
    pub remove_services: Vec<(String, String)>,
    pub create_networks: Vec<NetworkSpec>,
    pub create_secrets: Vec<SecretSpec>,
    pub create_configs: Vec<ConfigSpec>,
    pub create_services: Vec<ServiceSpec>,
    pub update_services: Vec<Update<ServiceSpec>>,
}

fn meta(m: &Option<proto::Meta>) -> (String, u64) {
    m.as_ref()
        .map(|m| (m.id.clone(), m.version))
        .unwrap_or_default()
}

fn short<'a>(stack: &str, name: &'a str) -> &'a str {
    name.strip_prefix(&format!("{stack}_")).unwrap_or(name)
}

/// Plans the deploy of `desired` as stack `stack` onto `current`; refuses, with what to
/// do, anything that would fail halfway.
pub fn plan(
    stack: &str,
    desired: &Desired,
    current: &Current,
    prune: bool,
) -> Result<Plan, String> {
    let mut plan = Plan::default();
    let network_names: BTreeSet<&str> = current
        .networks
        .iter()
        .filter_map(|n| n.spec.as_ref().map(|s| s.name.as_str()))
        .collect();
    for name in &desired.external_networks {
        if !network_names.contains(name.as_str()) {
            return Err(format!(
                "network {name} is declared external but does not exist; create it first with `skiff network create -d overlay {name}`"
            ));
        }
    }
    for n in &desired.networks {
        if !network_names.contains(n.name.as_str()) {
            plan.create_networks.push(n.clone());
        }
    }
    let secret = |name: &str| {
        current
            .secrets
            .iter()
            .find(|s| s.spec.as_ref().is_some_and(|s| s.name == name))
    };
    for name in &desired.external_secrets {
        if secret(name).is_none() {
            return Err(format!(
                "secret {name} is declared external but does not exist; create it first with `skiff secret create {name} FILE`"
            ));
        }
    }
    for s in &desired.secrets {
        match secret(&s.name) {
            Some(found) => {
                let (id, version) = meta(&found.meta);
                plan.update_secrets.push(Update {
                    id,
                    version,
                    spec: s.clone(),
                });
            }
            None => plan.create_secrets.push(s.clone()),
        }
    }
    let config = |name: &str| {
        current
            .configs
            .iter()
            .find(|c| c.spec.as_ref().is_some_and(|c| c.name == name))
    };
    for name in &desired.external_configs {
        if config(name).is_none() {
            return Err(format!(
                "config {name} is declared external but does not exist; create it first with `skiff config create {name} FILE`"
            ));
        }
    }
    for c in &desired.configs {
        match config(&c.name) {
            Some(found) => {
                let (id, version) = meta(&found.meta);
                plan.update_configs.push(Update {
                    id,
                    version,
                    spec: c.clone(),
                });
            }
            None => plan.create_configs.push(c.clone()),
        }
    }
    let service = |name: &str| {
        current
            .services
            .iter()
            .find(|s| render::service_name(s) == name)
    };
    for spec in &desired.services {
        let key = short(stack, &spec.name);
        let full = with_defaults(spec.clone());
        validate(&full).map_err(|e| format!("services.{key}: {}", e.message()))?;
        match service(&spec.name) {
            Some(existing) => {
                let old = existing.spec.clone().unwrap_or_default();
                check_mode_change(&old, &full)
                    .map_err(|e| format!("services.{key}: {}", e.message()))?;
                let mut spec = spec.clone();
                // The same force_update, so an unchanged template starts no rollout.
                if let (Some(t), Some(old)) =
                    (spec.task_template.as_mut(), old.task_template.as_ref())
                {
                    t.force_update = old.force_update;
                }
                let (id, version) = meta(&existing.meta);
                plan.update_services.push(Update { id, version, spec });
            }
            None => plan.create_services.push(spec.clone()),
        }
    }
    let desired_names: BTreeSet<&str> = desired.services.iter().map(|s| s.name.as_str()).collect();
    let in_stack = |s: &Service| {
        s.spec
            .as_ref()
            .and_then(|s| s.labels.get(NAMESPACE_LABEL))
            .is_some_and(|ns| ns == stack)
    };
    if prune {
        for s in current.services.iter().filter(|s| in_stack(s)) {
            let name = render::service_name(s);
            if !desired_names.contains(name) {
                plan.remove_services
                    .push((meta(&s.meta).0, name.to_string()));
            }
        }
    }
    check_ports(stack, desired, current, &plan)?;
    check_as_the_manager_will(stack, current, &plan)?;
    Ok(plan)
}

/// Runs the manager's checks of each service against the cluster (`check_against_store`)
/// on a copy of the cluster as the deploy will leave it: the stack's new networks, secrets
/// and configs in it, the services it updates or prunes out of it, and each service in it
/// once checked, so the next one is checked against it.
fn check_as_the_manager_will(stack: &str, current: &Current, plan: &Plan) -> Result<(), String> {
    let mut actions = Vec::new();
    actions.extend(current.cluster.iter().cloned().map(create));
    actions.extend(current.nodes.iter().cloned().map(create));
    actions.extend(current.networks.iter().cloned().map(create));
    actions.extend(current.secrets.iter().cloned().map(create));
    actions.extend(current.configs.iter().cloned().map(create));
    let leaving: BTreeSet<&str> = plan
        .update_services
        .iter()
        .map(|u| u.id.as_str())
        .chain(plan.remove_services.iter().map(|(id, _)| id.as_str()))
        .collect();
    actions.extend(
        current
            .services
            .iter()
            .filter(|s| !leaving.contains(meta(&s.meta).0.as_str()))
            .cloned()
            .map(create),
    );
    let planned = |i: usize| {
        Some(proto::Meta {
            id: format!("planned-by-stack-deploy-{i}"),
            ..Default::default()
        })
    };
    let mut n = 0;
    for spec in &plan.create_networks {
        n += 1;
        actions.push(create(Network {
            meta: planned(n),
            spec: Some(spec.clone()),
            ..Default::default()
        }));
    }
    for spec in &plan.create_secrets {
        n += 1;
        actions.push(create(Secret {
            meta: planned(n),
            spec: Some(spec.clone()),
        }));
    }
    for spec in &plan.create_configs {
        n += 1;
        actions.push(create(Config {
            meta: planned(n),
            spec: Some(spec.clone()),
        }));
    }
    let mut mirror = ObjectStore::default();
    let mut index = 1;
    mirror
        .apply(
            &proto::StoreBatch {
                actions,
                ..Default::default()
            },
            index,
        )
        .map_err(|e| format!("cannot check the deploy against the cluster: {e}"))?;
    let specs = plan
        .update_services
        .iter()
        .map(|u| (u.id.clone(), &u.spec))
        .chain(plan.create_services.iter().map(|s| {
            n += 1;
            (format!("planned-by-stack-deploy-{n}"), s)
        }));
    for (id, spec) in specs {
        let mut full = with_defaults(spec.clone());
        check_against_store(&mirror, &mut full, &id)
            .map_err(|e| format!("services.{}: {}", short(stack, &spec.name), e.message()))?;
        index += 1;
        let service = Service {
            meta: Some(proto::Meta {
                id,
                ..Default::default()
            }),
            spec: Some(full),
            ..Default::default()
        };
        mirror
            .apply(
                &proto::StoreBatch {
                    actions: vec![create(service)],
                    ..Default::default()
                },
                index,
            )
            .map_err(|e| format!("cannot check the deploy against the cluster: {e}"))?;
    }
    Ok(())
}

/// Refuses a published port two services of the stack ask for, or one a service outside
/// the deploy already publishes (unless both publish it in host mode).
fn check_ports(
    stack: &str,
    desired: &Desired,
    current: &Current,
    plan: &Plan,
) -> Result<(), String> {
    let host = PublishMode::Host as i32;
    let mut seen: Vec<(u32, i32, i32, &str)> = Vec::new();
    for spec in &desired.services {
        for p in spec
            .endpoint
            .iter()
            .flat_map(|e| &e.ports)
            .filter(|p| p.published_port != 0)
        {
            if let Some((.., other)) = seen.iter().find(|(port, proto, mode, _)| {
                *port == p.published_port
                    && *proto == p.protocol
                    && !(*mode == host && p.publish_mode == host)
            }) {
                return Err(format!(
                    "services.{} and services.{} both publish port {}/{}; give each its own published port",
                    short(stack, other),
                    short(stack, &spec.name),
                    p.published_port,
                    render::protocol_name(p.protocol())
                ));
            }
            seen.push((p.published_port, p.protocol, p.publish_mode, &spec.name));
        }
    }
    let replaced: BTreeSet<&str> = desired
        .services
        .iter()
        .map(|s| s.name.as_str())
        .chain(plan.remove_services.iter().map(|(_, n)| n.as_str()))
        .collect();
    for other in current
        .services
        .iter()
        .filter(|s| !replaced.contains(render::service_name(s)))
    {
        let asked = other
            .spec
            .iter()
            .flat_map(|s| &s.endpoint)
            .flat_map(|e| &e.ports);
        let given = other.endpoint.iter().flat_map(|e| &e.ports);
        for p in asked.chain(given).filter(|p| p.published_port != 0) {
            if let Some((.., mine)) = seen.iter().find(|(port, proto, mode, _)| {
                *port == p.published_port
                    && *proto == p.protocol
                    && !(*mode == host && p.publish_mode == host)
            }) {
                return Err(format!(
                    "services.{}: port {}/{} is already published by service {}; choose another published port",
                    short(stack, mine),
                    p.published_port,
                    render::protocol_name(p.protocol()),
                    render::service_name(other)
                ));
            }
        }
    }
    Ok(())
}

/// Reads what a deploy needs to know of the cluster.
pub async fn current(client: &Client) -> anyhow::Result<Current> {
    let mut control = client.control();
    Ok(Current {
        services: control
            .list_services(proto::ListServicesRequest::default())
            .await
            .reply(client)?
            .services,
        networks: control
            .list_networks(proto::ListNetworksRequest {})
            .await
            .reply(client)?
            .networks,
        secrets: control
            .list_secrets(proto::ListSecretsRequest {})
            .await
            .reply(client)?
            .secrets,
        configs: control
            .list_configs(proto::ListConfigsRequest {})
            .await
            .reply(client)?
            .configs,
        nodes: control
            .list_nodes(proto::ListNodesRequest::default())
            .await
            .reply(client)?
            .nodes,
        cluster: control
            .get_cluster(proto::GetClusterRequest {})
            .await
            .reply(client)?
            .cluster,
    })
}

/// How long a service update is tried again while the manager's own loops (allocator,
/// orchestrator, updater) keep writing the service between our read and our write.
const UPDATE_RETRY_FOR: Duration = Duration::from_secs(30);

/// Sends service `u.id` its new spec, with the version and `force_update` of a fresh read;
/// a conflict (the manager wrote the service meanwhile) reads again and retries, for at
/// most [`UPDATE_RETRY_FOR`]. Returns the service before and after.
async fn update_service(
    client: &Client,
    u: &Update<ServiceSpec>,
) -> anyhow::Result<(Service, Service)> {
    let name = &u.spec.name;
    let deadline = tokio::time::Instant::now() + UPDATE_RETRY_FOR;
    loop {
        let before = client
            .control()
            .get_service(proto::GetServiceRequest {
                service: u.id.clone(),
            })
            .await
            .reply(client)?
            .service
            .with_context(|| format!("service {name} vanished during the deploy; deploy again"))?;
        let mut spec = u.spec.clone();
        let old = before.spec.as_ref().and_then(|s| s.task_template.as_ref());
        if let (Some(t), Some(old)) = (spec.task_template.as_mut(), old) {
            t.force_update = old.force_update;
        }
        let sent = client
            .control()
            .update_service(UpdateServiceRequest {
                service: u.id.clone(),
                version: meta(&before.meta).1,
                spec: Some(spec),
                rollback: false,
            })
            .await;
        match sent {
            Ok(r) => {
                let updated = r.into_inner().service.with_context(|| {
                    format!("the daemon updated service {name} but did not return it")
                })?;
                return Ok((before, updated));
            }
            Err(s)
                if s.code() == tonic::Code::Aborted && tokio::time::Instant::now() < deadline =>
            {
                let pause = rand::Rng::gen_range(&mut rand::thread_rng(), 10..=100);
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
            Err(s) => return Err(client.error(s)),
        }
    }
}

/// A service the deploy created or updated, to wait for.
struct Changed {
    id: String,
    name: String,
    /// Whether the update started a rollout (else wait for convergence).
    rolling: bool,
    since_ms: i64,
}

/// Makes the planned changes, printing each as Docker does; with `wait`, then follows
/// each service until it converged or its rollout ended.
pub async fn execute(client: &Client, plan: Plan, wait: bool, quiet: bool) -> anyhow::Result<()> {
    let mut control = client.control();
    for u in plan.update_secrets {
        control
            .update_secret(UpdateSecretRequest {
                secret: u.id,
                version: u.version,
                spec: Some(u.spec),
            })
            .await
            .reply(client)?;
    }
    for u in plan.update_configs {
        control
            .update_config(UpdateConfigRequest {
                config: u.id,
                version: u.version,
                spec: Some(u.spec),
            })
            .await
            .reply(client)?;
    }
    for (id, name) in plan.remove_services {
        out(format!("Removing service {name}"));
        control
            .remove_service(RemoveServiceRequest { service: id })
            .await
            .reply(client)?;
    }
    for spec in plan.create_networks {
        out(format!("Creating network {}", spec.name));
        control
            .create_network(CreateNetworkRequest { spec: Some(spec) })
            .await
            .reply(client)?;
    }
    for spec in plan.create_secrets {
        out(format!("Creating secret {}", spec.name));
        control
            .create_secret(CreateSecretRequest { spec: Some(spec) })
            .await
            .reply(client)?;
    }
    for spec in plan.create_configs {
        out(format!("Creating config {}", spec.name));
        control
            .create_config(CreateConfigRequest { spec: Some(spec) })
            .await
            .reply(client)?;
    }
    let mut changed = Vec::new();
    for u in plan.update_services {
        out(format!("Updating service {} (id: {})", u.spec.name, u.id));
        let (before, updated) = update_service(client, &u).await?;
        let rolling = updated.update_status != before.update_status
            && updated
                .update_status
                .as_ref()
                .is_some_and(|s| s.state() == UpdateState::Updating);
        changed.push(Changed {
            id: u.id,
            name: u.spec.name,
            rolling,
            since_ms: updated.meta.as_ref().map_or(0, |m| m.updated_at),
        });
    }
    for spec in plan.create_services {
        out(format!("Creating service {}", spec.name));
        let name = spec.name.clone();
        let created = control
            .create_service(CreateServiceRequest { spec: Some(spec) })
            .await
            .reply(client)?
            .service
            .with_context(|| format!("the daemon created service {name} but did not return it"))?;
        changed.push(Changed {
            id: render::service_id(&created).to_string(),
            name,
            rolling: false,
            since_ms: 0,
        });
    }
    if wait {
        for c in changed {
            if c.rolling {
                progress::wait_rollout(client, &c.id, &c.name, false, quiet).await?;
            } else {
                progress::wait(client, &c.id, &c.name, c.since_ms, quiet).await?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::service_spec::Mode;
    use proto::{
        ContainerSpec, EndpointSpec, GlobalService, PortConfig, ReplicatedService, TaskSpec,
    };

    fn spec(name: &str, ports: &[(u32, PublishMode)]) -> ServiceSpec {
        ServiceSpec {
            name: name.into(),
            labels: [(NAMESPACE_LABEL.to_string(), "app".to_string())].into(),
            task_template: Some(TaskSpec {
                container: Some(ContainerSpec {
                    image: "busybox".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            mode: Some(Mode::Replicated(ReplicatedService { replicas: 1 })),
            endpoint: (!ports.is_empty()).then(|| EndpointSpec {
                ports: ports
                    .iter()
                    .map(|(p, m)| PortConfig {
                        published_port: *p,
                        target_port: 80,
                        publish_mode: *m as i32,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn existing(id: &str, spec: ServiceSpec) -> Service {
        Service {
            meta: Some(proto::Meta {
                id: id.into(),
                version: 7,
                ..Default::default()
            }),
            spec: Some(with_defaults(spec)),
            ..Default::default()
        }
    }

    fn desired(services: Vec<ServiceSpec>) -> Desired {
        Desired {
            services,
            ..Default::default()
        }
    }

    #[test]
    fn a_redeploy_updates_what_exists_keeping_force_update_and_creates_the_rest() {
        let mut old = spec("app_web", &[]);
        old.task_template.as_mut().unwrap().force_update = 3;
        let current = Current {
            services: vec![existing("w1", old)],
            secrets: vec![Secret {
                meta: Some(proto::Meta {
                    id: "s1".into(),
                    version: 4,
                    ..Default::default()
                }),
                spec: Some(SecretSpec {
                    name: "app_key".into(),
                    ..Default::default()
                }),
            }],
            ..Default::default()
        };
        let mut d = desired(vec![spec("app_web", &[]), spec("app_db", &[])]);
        d.secrets = vec![
            SecretSpec {
                name: "app_key".into(),
                data: b"k".to_vec(),
                ..Default::default()
            },
            SecretSpec {
                name: "app_new".into(),
                data: b"n".to_vec(),
                ..Default::default()
            },
        ];
        d.networks = vec![NetworkSpec {
            name: "app_default".into(),
            ..Default::default()
        }];
        let p = plan("app", &d, &current, false).unwrap();
        assert_eq!(p.update_services.len(), 1);
        let u = &p.update_services[0];
        assert_eq!((u.id.as_str(), u.version), ("w1", 7));
        assert_eq!(u.spec.task_template.as_ref().unwrap().force_update, 3);
        assert_eq!(
            p.create_services
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>(),
            ["app_db"]
        );
        assert_eq!(p.update_secrets[0].id, "s1");
        assert_eq!(p.create_secrets[0].name, "app_new");
        assert_eq!(p.create_networks[0].name, "app_default");
        assert!(p.remove_services.is_empty(), "no --prune");
    }

    #[test]
    fn prune_removes_only_the_stack_s_services_gone_from_the_file() {
        let mut other_stack = spec("other_web", &[]);
        other_stack
            .labels
            .insert(NAMESPACE_LABEL.into(), "other".into());
        let current = Current {
            services: vec![
                existing("a", spec("app_web", &[])),
                existing("b", spec("app_gone", &[])),
                existing("c", other_stack),
                existing(
                    "d",
                    ServiceSpec {
                        labels: Default::default(),
                        ..spec("app_unlabelled", &[])
                    },
                ),
            ],
            ..Default::default()
        };
        let p = plan("app", &desired(vec![spec("app_web", &[])]), &current, true).unwrap();
        assert_eq!(
            p.remove_services,
            [("b".to_string(), "app_gone".to_string())]
        );
    }

    #[test]
    fn what_would_fail_halfway_is_refused_before_anything() {
        let host = PublishMode::Host;
        let ingress = PublishMode::Ingress;
        let mut global = spec("app_web", &[]);
        global.mode = Some(Mode::Global(GlobalService {}));
        let mut bad_image = spec("app_web", &[]);
        bad_image
            .task_template
            .as_mut()
            .unwrap()
            .container
            .as_mut()
            .unwrap()
            .image = "UPPER/Case".into();
        let cluster = Current {
            services: vec![
                existing("w", spec("app_web", &[])),
                existing("o", spec("other", &[(8080, ingress)])),
            ],
            ..Default::default()
        };
        let mut external = desired(vec![]);
        external.external_networks = vec!["shared".into()];
        let mut external_secret = desired(vec![]);
        external_secret.external_secrets = vec!["tls".into()];
        let cases: Vec<(Desired, &str)> = vec![
            (
                desired(vec![global]),
                "services.web: a service's mode cannot change",
            ),
            (desired(vec![bad_image]), "services.web: "),
            (
                desired(vec![
                    spec("app_a", &[(80, ingress)]),
                    spec("app_b", &[(80, ingress)]),
                ]),
                "services.a and services.b both publish port 80/tcp",
            ),
            (
                desired(vec![spec("app_a", &[(8080, ingress)])]),
                "services.a: port 8080/tcp is already published by service other",
            ),
            (
                desired(vec![spec("app_a", &[(2377, ingress)])]),
                "services.a: port 2377/tcp is a cluster port",
            ),
            (
                external,
                "network shared is declared external but does not exist",
            ),
            (
                external_secret,
                "secret tls is declared external but does not exist",
            ),
        ];
        for (d, want) in cases {
            let e = plan("app", &d, &cluster, false).unwrap_err();
            assert!(e.starts_with(want), "want {want:?}, got {e:?}");
        }
        // Host-mode ports may be shared: each task binds its own node's.
        plan(
            "app",
            &desired(vec![
                spec("app_a", &[(80, host)]),
                spec("app_b", &[(80, host)]),
            ]),
            &cluster,
            false,
        )
        .unwrap();
    }
}
