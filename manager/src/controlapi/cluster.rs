//! The cluster object: validation and join tokens (its defaults are `crate::settings`).

use std::time::Duration;

use proto::token::JoinToken;
use proto::{Cluster, ClusterSpec};
use tonic::Status;

use crate::status::invalid;

/// The shortest certificate lifetime accepted: renewal starts halfway through.
const MIN_CERT_EXPIRY: Duration = Duration::from_secs(3600);

/// Refuses settings the cluster cannot run with, saying which and why.
pub fn validate_spec(spec: &ClusterSpec) -> Result<(), Status> {
    let raft = spec.raft.unwrap_or_default();
    if raft.snapshot_interval == 0 {
        return Err(invalid("the snapshot interval must be at least 1 entry"));
    }
    let period = spec
        .dispatcher
        .as_ref()
        .map_or(0, |d| d.heartbeat_period_ms);
    if !(100..=3_600_000).contains(&period) {
        return Err(invalid(format!(
            "the heartbeat period must be between 100ms and 1h, not {period}ms"
        )));
    }
    let expiry = spec.ca_config.as_ref().map_or(0, |c| c.node_cert_expiry_ms);
    if expiry < MIN_CERT_EXPIRY.as_millis() as u64 {
        return Err(invalid(format!(
            "the certificate expiry must be at least 1h, not {}",
            humanize(Duration::from_millis(expiry))
        )));
    }
    for pool in &spec.default_addr_pool {
        if !is_cidr(pool) {
            return Err(invalid(format!(
                "invalid address pool {pool:?}: use CIDR notation such as 10.0.0.0/8"
            )));
        }
    }
    if !(16..=29).contains(&spec.subnet_size) {
        return Err(invalid(format!(
            "the subnet size must be between /16 and /29, not /{}",
            spec.subnet_size
        )));
    }
    if !(1024..=65535).contains(&spec.data_path_port) {
        return Err(invalid(format!(
            "the data path port must be between 1024 and 65535, not {}",
            spec.data_path_port
        )));
    }
    Ok(())
}

fn is_cidr(s: &str) -> bool {
    let Some((addr, len)) = s.split_once('/') else {
        return false;
    };
    addr.parse::<std::net::Ipv4Addr>().is_ok() && len.parse::<u8>().is_ok_and(|l| l <= 32)
}

fn humanize(d: Duration) -> String {
    format!("{}s", d.as_secs())
}

/// The cluster as clients may see it: never the CA key.
pub fn redacted(mut cluster: Cluster) -> Cluster {
    if let Some(root) = cluster.root_ca.as_mut() {
        root.key_pem.clear();
    }
    cluster.unlock_key.clear();
    cluster
}

/// Gives the cluster an unlock key when its spec turns autolock on (a fresh one when asked
/// to rotate it), and takes it away when autolock is off; each manager then seals its keys
/// by it, or by a key file again (the daemon's `autolock` loop).
pub fn apply_autolock(cluster: &mut Cluster, rotate: bool) -> Result<(), Status> {
    let autolock = cluster.spec.as_ref().is_some_and(|s| s.autolock);
    if rotate && !autolock {
        return Err(crate::status::refused(
            "the cluster is not autolocked, so it has no unlock key to rotate; turn autolock on with `skiff swarm update --autolock=true`",
        ));
    }
    if autolock && (rotate || cluster.unlock_key.is_empty()) {
        cluster.unlock_key = crate::raft::at_rest::generate_unlock_key()
            .map_err(|e| Status::internal(e.to_string()))?;
    } else if !autolock {
        cluster.unlock_key.clear();
    }
    Ok(())
}

/// The role a join token grants in `cluster`, or why it grants none.
pub fn role_for_token(cluster: &Cluster, token: &str) -> Result<proto::NodeRole, Status> {
    let parsed: JoinToken = token
        .parse()
        .map_err(|e: proto::token::TokenError| invalid(e.to_string()))?;
    let digest = cluster.root_ca.as_ref().map_or("", |r| r.digest.as_str());
    if parsed.ca_digest != digest {
        return Err(Status::permission_denied(
            "this join token belongs to another cluster (its CA digest does not match this cluster's root CA); get a token from a manager of this cluster with `skiff swarm join-token`",
        ));
    }
    let tokens = cluster.join_tokens.clone().unwrap_or_default();
    if token == tokens.manager {
        Ok(proto::NodeRole::Manager)
    } else if token == tokens.worker {
        Ok(proto::NodeRole::Worker)
    } else {
        Err(Status::permission_denied(
            "the join token is not valid for this cluster: it may have been rotated; get the current one with `skiff swarm join-token worker` (or `manager`) on a manager",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::default_spec;

    #[test]
    fn defaults_are_valid_and_bad_settings_are_refused() {
        let spec = default_spec(None);
        validate_spec(&spec).unwrap();
        assert_eq!(
            spec.orchestration
                .as_ref()
                .unwrap()
                .task_history_retention_limit,
            5
        );

        let mut bad = spec.clone();
        bad.dispatcher.as_mut().unwrap().heartbeat_period_ms = 10;
        assert!(validate_spec(&bad)
            .unwrap_err()
            .message()
            .contains("heartbeat period"));
        let mut bad = spec.clone();
        bad.default_addr_pool = vec!["10.0.0.0".into()];
        assert!(validate_spec(&bad).unwrap_err().message().contains("CIDR"));
        let mut bad = spec;
        bad.ca_config.as_mut().unwrap().node_cert_expiry_ms = 1000;
        assert!(validate_spec(&bad)
            .unwrap_err()
            .message()
            .contains("expiry"));
    }

    #[test]
    fn tokens_grant_roles_and_foreign_or_rotated_tokens_are_refused() {
        let digest = "ab".repeat(32);
        let worker = JoinToken::generate(&digest).to_string();
        let manager = JoinToken::generate(&digest).to_string();
        let cluster = Cluster {
            root_ca: Some(proto::RootCa {
                digest: digest.clone(),
                ..Default::default()
            }),
            join_tokens: Some(proto::JoinTokens {
                worker: worker.clone(),
                manager: manager.clone(),
            }),
            ..Default::default()
        };
        assert_eq!(
            role_for_token(&cluster, &worker).unwrap(),
            proto::NodeRole::Worker
        );
        assert_eq!(
            role_for_token(&cluster, &manager).unwrap(),
            proto::NodeRole::Manager
        );
        let rotated = JoinToken::generate(&digest).to_string();
        assert!(role_for_token(&cluster, &rotated)
            .unwrap_err()
            .message()
            .contains("rotated"));
        let foreign = JoinToken::generate(&"cd".repeat(32)).to_string();
        assert!(role_for_token(&cluster, &foreign)
            .unwrap_err()
            .message()
            .contains("another cluster"));
        assert_eq!(
            role_for_token(&cluster, "SKTKN-1-xyz").unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
    }
}
