//! Networks: `Network` as `GET /networks` shows it and `POST /networks/create`'s request;
//! swarm-scoped overlays only.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::time;
use crate::daemon::engine::decode::refuse_unsupported;
use crate::daemon::engine::error::{ApiError, ApiResult};

/// `IPAM.Config[]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct IpamConfig {
    /// CIDR.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub subnet: String,
    /// CIDR of the range addresses come from.
    #[serde(rename = "IPRange", skip_serializing_if = "String::is_empty")]
    pub ip_range: String,
    /// The gateway.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub gateway: String,
    /// Not supported: zero only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auxiliary_addresses: Option<Value>,
}

/// `IPAM`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Ipam {
    /// "default".
    pub driver: String,
    /// Subnets.
    pub config: Vec<IpamConfig>,
    /// Not supported: zero only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub options: Option<Value>,
}

/// `Network`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Network {
    /// The name.
    pub name: String,
    /// The ID.
    #[serde(rename = "Id")]
    pub id: String,
    /// When it was created.
    pub created: String,
    /// "swarm".
    pub scope: String,
    /// "overlay".
    pub driver: String,
    /// Always false.
    #[serde(rename = "EnableIPv6")]
    pub enable_ipv6: bool,
    /// Subnets.
    #[serde(rename = "IPAM")]
    pub ipam: Ipam,
    /// No way out.
    pub internal: bool,
    /// Standalone containers may attach (kept, for compatibility).
    pub attachable: bool,
    /// The routing mesh's network.
    pub ingress: bool,
    /// Always false.
    pub config_only: bool,
    /// Containers on this node (none shown).
    pub containers: HashMap<String, Value>,
    /// Driver options.
    pub options: HashMap<String, String>,
    /// Labels.
    pub labels: HashMap<String, String>,
}

impl Network {
    /// The Docker view of a network: the allocated subnets when there are, else the asked.
    pub fn from_proto(n: &proto::Network) -> Self {
        let meta = n.meta.clone().unwrap_or_default();
        let spec = n.spec.clone().unwrap_or_default();
        let ipam = if n.ipam.is_empty() {
            &spec.ipam
        } else {
            &n.ipam
        };
        Self {
            name: spec.name.clone(),
            id: meta.id,
            created: time(meta.created_at),
            scope: "swarm".into(),
            driver: if spec.driver.is_empty() {
                "overlay".into()
            } else {
                spec.driver.clone()
            },
            enable_ipv6: false,
            ipam: Ipam {
                driver: "default".into(),
                config: ipam
                    .iter()
                    .map(|c| IpamConfig {
                        subnet: c.subnet.clone(),
                        ip_range: c.range.clone(),
                        gateway: c.gateway.clone(),
                        auxiliary_addresses: None,
                    })
                    .collect(),
                options: None,
            },
            internal: spec.internal,
            attachable: spec.attachable,
            ingress: spec.ingress,
            config_only: false,
            containers: Default::default(),
            options: options(n, &spec),
            labels: spec.labels.clone(),
        }
    }
}

/// Docker's option naming an overlay network's VXLAN ID, once one is allocated.
pub const VXLAN_ID_OPTION: &str = "com.docker.network.driver.overlay.vxlanid_list";

/// The driver options, plus the allocated VXLAN ID under Docker's name for it, as
/// `docker network inspect` shows an overlay network's.
fn options(n: &proto::Network, spec: &proto::NetworkSpec) -> HashMap<String, String> {
    let mut options = spec.driver_opts.clone();
    if n.vni != 0 {
        options.insert(VXLAN_ID_OPTION.to_string(), n.vni.to_string());
    }
    options
}

/// `POST /networks/create`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct CreateRequest {
    /// The name.
    pub name: String,
    /// Deprecated; names are always checked.
    pub check_duplicate: Option<bool>,
    /// "overlay" (or empty).
    pub driver: String,
    /// "swarm" (or empty).
    pub scope: String,
    /// Only true or unset.
    #[serde(rename = "EnableIPv4")]
    pub enable_ipv4: Option<bool>,
    /// Not supported: zero only.
    #[serde(rename = "EnableIPv6")]
    pub enable_ipv6: Option<Value>,
    /// Subnets.
    #[serde(rename = "IPAM")]
    pub ipam: Option<Ipam>,
    /// No way out.
    pub internal: bool,
    /// Standalone containers may attach.
    pub attachable: bool,
    /// The routing mesh's network.
    pub ingress: bool,
    /// Not supported: zero only.
    pub config_only: Option<Value>,
    /// Not supported: zero only.
    pub config_from: Option<Value>,
    /// Driver options.
    pub options: HashMap<String, String>,
    /// Labels.
    pub labels: HashMap<String, String>,
}

impl CreateRequest {
    /// skiff's network spec.
    pub fn to_proto(&self) -> ApiResult<proto::NetworkSpec> {
        refuse_unsupported(&[
            ("EnableIPv6", &self.enable_ipv6),
            ("ConfigOnly", &self.config_only),
            ("ConfigFrom", &self.config_from),
        ])?;
        if self.enable_ipv4 == Some(false) {
            return Err(ApiError::bad_request(
                "EnableIPv4 false is not supported by skiff: overlays are IPv4",
            ));
        }
        if !matches!(self.driver.as_str(), "" | "overlay") {
            return Err(ApiError::bad_request(format!(
                "network driver \"{}\" is not supported by skiff: create swarm networks with -d overlay",
                self.driver
            )));
        }
        if !matches!(self.scope.as_str(), "" | "swarm") {
            return Err(ApiError::bad_request(format!(
                "network scope \"{}\" is not supported by skiff: its networks are swarm-scoped",
                self.scope
            )));
        }
        let ipam = self.ipam.clone().unwrap_or_default();
        refuse_unsupported(&[("IPAM.Options", &ipam.options)])?;
        if !matches!(ipam.driver.as_str(), "" | "default") {
            return Err(ApiError::bad_request(format!(
                "IPAM driver \"{}\" is not supported by skiff; leave it out",
                ipam.driver
            )));
        }
        let mut configs = Vec::new();
        for (i, c) in ipam.config.iter().enumerate() {
            refuse_unsupported(&[(
                &format!("IPAM.Config[{i}].AuxiliaryAddresses"),
                &c.auxiliary_addresses,
            )])?;
            configs.push(proto::IpamConfig {
                subnet: c.subnet.clone(),
                gateway: c.gateway.clone(),
                range: c.ip_range.clone(),
            });
        }
        Ok(proto::NetworkSpec {
            name: self.name.clone(),
            labels: self.labels.clone(),
            driver: "overlay".into(),
            attachable: self.attachable,
            ingress: self.ingress,
            internal: self.internal,
            ipam: configs,
            driver_opts: self.options.clone(),
        })
    }
}

/// The answer of `POST /networks/create`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Created {
    /// The new network's ID.
    #[serde(rename = "Id")]
    pub id: String,
    /// Always empty.
    pub warning: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::engine::decode;

    #[test]
    fn a_network_round_trips_through_dockers_json() {
        let spec = proto::NetworkSpec {
            name: "front".into(),
            labels: [("com.docker.stack.namespace".to_string(), "s".to_string())].into(),
            driver: "overlay".into(),
            attachable: true,
            ipam: vec![proto::IpamConfig {
                subnet: "10.9.0.0/24".into(),
                gateway: "10.9.0.1".into(),
                range: String::new(),
            }],
            ..Default::default()
        };
        let network = proto::Network {
            meta: Some(proto::Meta {
                id: "n1".into(),
                ..Default::default()
            }),
            spec: Some(spec.clone()),
            ..Default::default()
        };
        let docker = Network::from_proto(&network);
        let json = serde_json::to_value(&docker).unwrap();
        assert_eq!(json["Scope"], "swarm");
        assert_eq!(json["IPAM"]["Config"][0]["Subnet"], "10.9.0.0/24");
        assert!(json["Options"].get(VXLAN_ID_OPTION).is_none());
        let back: Network = decode::value_as(json.clone()).unwrap();
        assert_eq!(back, docker);
        // The same JSON as a create request gives the same spec.
        let mut request = json;
        let object = request.as_object_mut().unwrap();
        for key in ["Id", "Created", "Containers"] {
            object.remove(key);
        }
        let create: CreateRequest = decode::value_as(request).unwrap();
        assert_eq!(create.to_proto().unwrap(), spec);
    }

    #[test]
    fn an_allocated_vni_shows_under_dockers_option_name() {
        let network = proto::Network {
            vni: 4097,
            ..Default::default()
        };
        let json = serde_json::to_value(Network::from_proto(&network)).unwrap();
        assert_eq!(json["Options"][VXLAN_ID_OPTION], "4097");
    }

    #[test]
    fn other_drivers_and_ipv6_are_refused() {
        let create: CreateRequest =
            decode::value_as(serde_json::json!({"Name": "n", "Driver": "bridge"})).unwrap();
        assert!(create.to_proto().unwrap_err().message.contains("bridge"));
        let create: CreateRequest =
            decode::value_as(serde_json::json!({"Name": "n", "EnableIPv6": true})).unwrap();
        assert!(create
            .to_proto()
            .unwrap_err()
            .message
            .starts_with("EnableIPv6"));
    }
}
