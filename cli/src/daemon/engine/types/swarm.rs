//! The swarm: `Swarm` (`GET /swarm`), its `Spec`, and the init, join and unlock requests.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{meta, millis, nanos, Version};
use crate::daemon::engine::decode::refuse_unsupported;
use crate::daemon::engine::error::{ApiError, ApiResult};

/// Docker's swarm `Spec`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct SwarmSpec {
    /// Always "default" in Docker; skiff keeps the name it was given at init.
    pub name: String,
    /// Labels.
    pub labels: HashMap<String, String>,
    /// Task history.
    pub orchestration: Orchestration,
    /// Raft settings.
    pub raft: RaftSpec,
    /// Heartbeats.
    pub dispatcher: Dispatcher,
    /// Certificates.
    #[serde(rename = "CAConfig")]
    pub ca_config: CaConfig,
    /// Autolock.
    pub encryption_config: EncryptionConfig,
    /// Not supported: zero only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_defaults: Option<Value>,
}

/// `Spec.Orchestration`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Orchestration {
    /// Old tasks kept per slot.
    pub task_history_retention_limit: Option<i64>,
}

/// `Spec.Raft`. Docker counts in ticks, skiff in milliseconds: the ticks are shown as zero
/// and only zero is taken.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct RaftSpec {
    /// Entries between snapshots.
    pub snapshot_interval: u64,
    /// Not supported: zero only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_old_snapshots: Option<Value>,
    /// Entries kept behind a snapshot.
    pub log_entries_for_slow_followers: u64,
    /// Not supported: zero only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub election_tick: Option<Value>,
    /// Not supported: zero only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heartbeat_tick: Option<Value>,
}

/// `Spec.Dispatcher`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Dispatcher {
    /// Nanoseconds.
    pub heartbeat_period: i64,
}

/// `Spec.CAConfig`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct CaConfig {
    /// Nanoseconds.
    pub node_cert_expiry: i64,
    /// Not supported: zero only.
    #[serde(rename = "ExternalCAs", skip_serializing_if = "Option::is_none")]
    pub external_cas: Option<Value>,
    /// Not supported (root rotation): zero only.
    #[serde(rename = "SigningCACert", skip_serializing_if = "Option::is_none")]
    pub signing_ca_cert: Option<Value>,
    /// Not supported (root rotation): zero only. Never shown.
    #[serde(rename = "SigningCAKey", skip_serializing_if = "Option::is_none")]
    pub signing_ca_key: Option<Value>,
    /// Not supported (root rotation): zero only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub force_rotate: Option<Value>,
}

/// `Spec.EncryptionConfig`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct EncryptionConfig {
    /// Autolock.
    pub auto_lock_managers: bool,
}

impl SwarmSpec {
    /// The Docker view of skiff's cluster settings.
    pub fn from_proto(spec: &proto::ClusterSpec) -> Self {
        let raft = spec.raft.unwrap_or_default();
        Self {
            name: spec.name.clone(),
            labels: spec.labels.clone(),
            orchestration: Orchestration {
                task_history_retention_limit: spec
                    .orchestration
                    .map(|o| o.task_history_retention_limit as i64),
            },
            raft: RaftSpec {
                snapshot_interval: raft.snapshot_interval,
                log_entries_for_slow_followers: raft.log_entries_for_slow_followers,
                ..Default::default()
            },
            dispatcher: Dispatcher {
                heartbeat_period: nanos(spec.dispatcher.map_or(0, |d| d.heartbeat_period_ms)),
            },
            ca_config: CaConfig {
                node_cert_expiry: nanos(spec.ca_config.map_or(0, |c| c.node_cert_expiry_ms)),
                ..Default::default()
            },
            encryption_config: EncryptionConfig {
                auto_lock_managers: spec.autolock,
            },
            task_defaults: None,
        }
    }

    /// Refuses what skiff cannot do.
    fn check(&self) -> ApiResult<()> {
        refuse_unsupported(&[
            ("Spec.Raft.KeepOldSnapshots", &self.raft.keep_old_snapshots),
            ("Spec.Raft.ElectionTick", &self.raft.election_tick),
            ("Spec.Raft.HeartbeatTick", &self.raft.heartbeat_tick),
            ("Spec.CAConfig.ExternalCAs", &self.ca_config.external_cas),
            (
                "Spec.CAConfig.SigningCACert",
                &self.ca_config.signing_ca_cert,
            ),
            ("Spec.CAConfig.SigningCAKey", &self.ca_config.signing_ca_key),
            ("Spec.CAConfig.ForceRotate", &self.ca_config.force_rotate),
            ("Spec.TaskDefaults", &self.task_defaults),
        ])
    }

    /// This spec laid over `base` (skiff's current settings, or none at init): what Docker
    /// leaves at zero keeps the base's value, as dockerd fills defaults.
    pub fn to_proto(&self, base: proto::ClusterSpec) -> ApiResult<proto::ClusterSpec> {
        self.check()?;
        let mut spec = base;
        if !self.name.is_empty() && !spec.name.is_empty() && self.name != spec.name {
            return Err(ApiError::bad_request(format!(
                "the swarm's name is \"{}\" and cannot be changed",
                spec.name
            )));
        }
        if !self.name.is_empty() {
            spec.name = self.name.clone();
        }
        spec.labels = self.labels.clone();
        if let Some(limit) = self.orchestration.task_history_retention_limit {
            if limit < 0 {
                return Err(ApiError::bad_request(
                    "Spec.Orchestration.TaskHistoryRetentionLimit cannot be negative",
                ));
            }
            spec.orchestration
                .get_or_insert_with(Default::default)
                .task_history_retention_limit = limit as u64;
        }
        let raft = spec.raft.get_or_insert_with(Default::default);
        if self.raft.snapshot_interval != 0 {
            raft.snapshot_interval = self.raft.snapshot_interval;
        }
        if self.raft.log_entries_for_slow_followers != 0 {
            raft.log_entries_for_slow_followers = self.raft.log_entries_for_slow_followers;
        }
        if self.dispatcher.heartbeat_period != 0 {
            spec.dispatcher
                .get_or_insert_with(Default::default)
                .heartbeat_period_ms = millis(
                "Spec.Dispatcher.HeartbeatPeriod",
                self.dispatcher.heartbeat_period,
            )?;
        }
        if self.ca_config.node_cert_expiry != 0 {
            spec.ca_config
                .get_or_insert_with(Default::default)
                .node_cert_expiry_ms = millis(
                "Spec.CAConfig.NodeCertExpiry",
                self.ca_config.node_cert_expiry,
            )?;
        }
        spec.autolock = self.encryption_config.auto_lock_managers;
        Ok(spec)
    }
}

/// `Swarm.JoinTokens`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct JoinTokens {
    /// The worker token.
    pub worker: String,
    /// The manager token.
    pub manager: String,
}

/// `Swarm.TLSInfo`: the root certificate (never its key).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct TlsInfo {
    /// The root CA certificate, PEM.
    pub trust_root: String,
    /// Not known to skiff: empty.
    pub cert_issuer_subject: String,
    /// Not known to skiff: empty.
    pub cert_issuer_public_key: String,
}

/// `GET /swarm`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Swarm {
    /// The cluster ID.
    #[serde(rename = "ID")]
    pub id: String,
    /// Its version.
    pub version: Version,
    /// Created.
    pub created_at: String,
    /// Updated.
    pub updated_at: String,
    /// Settings.
    pub spec: SwarmSpec,
    /// The root certificate.
    #[serde(rename = "TLSInfo")]
    pub tls_info: TlsInfo,
    /// Always false (no root rotation).
    pub root_rotation_in_progress: bool,
    /// Overlay address pools.
    pub default_addr_pool: Vec<String>,
    /// Their subnet length.
    pub subnet_size: u32,
    /// The VXLAN port.
    pub data_path_port: u32,
    /// Join tokens (managers only see them).
    pub join_tokens: JoinTokens,
}

impl Swarm {
    /// The Docker view of the cluster object. The CA key and the unlock key are not read,
    /// whatever the object holds.
    pub fn from_proto(cluster: &proto::Cluster) -> Self {
        let (id, version, created_at, updated_at) = meta(&cluster.meta);
        let spec = cluster.spec.clone().unwrap_or_default();
        let tokens = cluster.join_tokens.clone().unwrap_or_default();
        Self {
            id,
            version,
            created_at,
            updated_at,
            spec: SwarmSpec::from_proto(&spec),
            tls_info: TlsInfo {
                trust_root: cluster
                    .root_ca
                    .as_ref()
                    .map(|r| r.cert_pem.clone())
                    .unwrap_or_default(),
                ..Default::default()
            },
            root_rotation_in_progress: false,
            default_addr_pool: spec.default_addr_pool.clone(),
            subnet_size: spec.subnet_size,
            data_path_port: spec.data_path_port,
            join_tokens: JoinTokens {
                worker: tokens.worker,
                manager: tokens.manager,
            },
        }
    }
}

/// `POST /swarm/init`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct InitRequest {
    /// The cluster port's address.
    pub listen_addr: String,
    /// The address others reach this node at.
    pub advertise_addr: String,
    /// Not supported: zero only.
    pub data_path_addr: Option<Value>,
    /// The VXLAN port.
    pub data_path_port: u32,
    /// Overlay address pools.
    pub default_addr_pool: Vec<String>,
    /// Start a new cluster from this manager's data.
    pub force_new_cluster: bool,
    /// Their subnet length.
    pub subnet_size: u32,
    /// Settings.
    pub spec: SwarmSpec,
    /// Autolock.
    pub auto_lock_managers: bool,
    /// Only "active" (or empty).
    pub availability: String,
}

fn check_availability(availability: &str) -> ApiResult<()> {
    match availability {
        "" | "active" => Ok(()),
        other => Err(ApiError::bad_request(format!(
            "Availability \"{other}\" at init or join is not supported by skiff; join as active, then `docker node update --availability {other}`"
        ))),
    }
}

impl InitRequest {
    /// skiff's init request.
    pub fn to_proto(&self) -> ApiResult<proto::InitRequest> {
        refuse_unsupported(&[("DataPathAddr", &self.data_path_addr)])?;
        check_availability(&self.availability)?;
        let mut spec = self.spec.to_proto(proto::ClusterSpec::default())?;
        spec.autolock = spec.autolock || self.auto_lock_managers;
        spec.data_path_port = self.data_path_port;
        spec.default_addr_pool = self.default_addr_pool.clone();
        spec.subnet_size = self.subnet_size;
        Ok(proto::InitRequest {
            listen_addr: self.listen_addr.clone(),
            advertise_addr: self.advertise_addr.clone(),
            force_new_cluster: self.force_new_cluster,
            spec: Some(spec),
        })
    }
}

/// `POST /swarm/join`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct JoinRequest {
    /// The cluster port's address.
    pub listen_addr: String,
    /// The address others reach this node at.
    pub advertise_addr: String,
    /// Not supported: zero only.
    pub data_path_addr: Option<Value>,
    /// Managers to join through (the first is used).
    pub remote_addrs: Vec<String>,
    /// The join token.
    pub join_token: String,
    /// Only "active" (or empty).
    pub availability: String,
}

impl JoinRequest {
    /// skiff's join request.
    pub fn to_proto(&self) -> ApiResult<proto::JoinRequest> {
        refuse_unsupported(&[("DataPathAddr", &self.data_path_addr)])?;
        check_availability(&self.availability)?;
        let Some(remote) = self.remote_addrs.first() else {
            return Err(ApiError::bad_request(
                "RemoteAddrs is empty: give the address of a manager to join through",
            ));
        };
        Ok(proto::JoinRequest {
            token: self.join_token.clone(),
            remote_addr: remote.clone(),
            listen_addr: self.listen_addr.clone(),
            advertise_addr: self.advertise_addr.clone(),
        })
    }
}

/// `POST /swarm/unlock`, and the answer of `GET /swarm/unlockkey`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct UnlockKey {
    /// The key.
    pub unlock_key: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::engine::decode;

    fn cluster() -> proto::Cluster {
        let spec = manager::settings::default_spec(Some(proto::ClusterSpec {
            autolock: true,
            ..Default::default()
        }));
        proto::Cluster {
            meta: Some(proto::Meta {
                id: "c1".into(),
                version: 7,
                created_at: 1_700_000_000_000,
                updated_at: 1_700_000_001_000,
            }),
            spec: Some(spec),
            join_tokens: Some(proto::JoinTokens {
                worker: "W".into(),
                manager: "M".into(),
            }),
            root_ca: Some(proto::RootCa {
                cert_pem: "CERT".into(),
                key_pem: "SECRET-CA-KEY".into(),
                digest: "d".into(),
            }),
            removed_nodes: Default::default(),
            unlock_key: "SECRET-UNLOCK-KEY".into(),
        }
    }

    #[test]
    fn a_swarm_round_trips_through_dockers_json() {
        let c = cluster();
        let swarm = Swarm::from_proto(&c);
        assert_eq!(swarm.version.index, 7);
        assert_eq!(swarm.spec.dispatcher.heartbeat_period, 1_000_000_000);
        let json = serde_json::to_value(&swarm).unwrap();
        assert_eq!(json["JoinTokens"]["Worker"], "W");
        assert_eq!(json["Spec"]["EncryptionConfig"]["AutoLockManagers"], true);
        let back: Swarm = decode::value_as(json).unwrap();
        assert_eq!(back, swarm);
        // The spec read back is the spec skiff has.
        let spec = back.spec.to_proto(c.spec.clone().unwrap()).unwrap();
        assert_eq!(Some(spec), c.spec);
    }

    #[test]
    fn the_ca_key_and_the_unlock_key_are_never_shown() {
        let text = serde_json::to_string(&Swarm::from_proto(&cluster())).unwrap();
        assert!(!text.contains("SECRET-CA-KEY"), "{text}");
        assert!(!text.contains("SECRET-UNLOCK-KEY"), "{text}");
    }

    #[test]
    fn settings_skiff_lacks_are_refused_by_name() {
        let base = cluster().spec.unwrap();
        let spec: SwarmSpec =
            decode::value_as(serde_json::json!({"Raft": {"ElectionTick": 3}})).unwrap();
        let e = spec.to_proto(base.clone()).unwrap_err();
        assert!(e.message.contains("Spec.Raft.ElectionTick"), "{e}");
        let spec: SwarmSpec =
            decode::value_as(serde_json::json!({"CAConfig": {"SigningCAKey": "k"}})).unwrap();
        assert!(spec.to_proto(base.clone()).is_err());
        let spec: SwarmSpec = decode::value_as(
            serde_json::json!({"CAConfig": {"ExternalCAs": null, "ForceRotate": 0}, "TaskDefaults": {}}),
        )
        .unwrap();
        spec.to_proto(base).unwrap();
    }

    #[test]
    fn init_and_join_requests_translate() {
        let init: InitRequest = decode::value_as(serde_json::json!({
            "ListenAddr": "0.0.0.0:2377", "AdvertiseAddr": "10.0.0.1", "DataPathAddr": "",
            "DataPathPort": 0, "ForceNewCluster": false, "Spec": {"Labels": null},
            "AutoLockManagers": true, "Availability": "active"
        }))
        .unwrap();
        let req = init.to_proto().unwrap();
        assert_eq!(req.advertise_addr, "10.0.0.1");
        assert!(req.spec.unwrap().autolock);
        let join: JoinRequest = decode::value_as(serde_json::json!({
            "ListenAddr": "0.0.0.0:2377", "RemoteAddrs": ["10.0.0.1:2377"], "JoinToken": "T",
            "Availability": "drain"
        }))
        .unwrap();
        assert!(join.to_proto().unwrap_err().message.contains("drain"));
    }
}
