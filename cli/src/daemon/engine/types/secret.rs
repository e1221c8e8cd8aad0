//! Secrets and configs: `Secret`, `Config` and their `Spec` (`Data` is base64, as Go encodes
//! bytes). A secret's data goes in at create and never comes out; a config's is shown.

use std::collections::HashMap;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{meta, Version};
use crate::daemon::engine::decode::refuse_unsupported;
use crate::daemon::engine::error::{ApiError, ApiResult};

/// `SecretSpec` / `ConfigSpec`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct BlobSpec {
    /// The name.
    pub name: String,
    /// Labels.
    pub labels: HashMap<String, String>,
    /// The data, base64 (absent when shown for a secret).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    /// Not supported (secret drivers): zero only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub driver: Option<Value>,
    /// Not supported (templating): zero only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub templating: Option<Value>,
}

impl BlobSpec {
    /// The name, labels and decoded data, refusing what skiff lacks.
    pub fn parts(&self) -> ApiResult<(String, HashMap<String, String>, Vec<u8>)> {
        refuse_unsupported(&[("Driver", &self.driver), ("Templating", &self.templating)])?;
        let data = base64::engine::general_purpose::STANDARD
            .decode(self.data.as_deref().unwrap_or(""))
            .map_err(|_| ApiError::bad_request("Data is not base64: encode the bytes as base64"))?;
        Ok((self.name.clone(), self.labels.clone(), data))
    }
}

/// `Secret` and `Config`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Blob {
    /// ID.
    #[serde(rename = "ID")]
    pub id: String,
    /// Version.
    pub version: Version,
    /// Created.
    pub created_at: String,
    /// Updated.
    pub updated_at: String,
    /// The spec.
    pub spec: BlobSpec,
}

impl Blob {
    /// The Docker view of a secret: never its data.
    pub fn from_secret(s: &proto::Secret) -> Self {
        let (id, version, created_at, updated_at) = meta(&s.meta);
        let spec = s.spec.clone().unwrap_or_default();
        Self {
            id,
            version,
            created_at,
            updated_at,
            spec: BlobSpec {
                name: spec.name,
                labels: spec.labels,
                ..Default::default()
            },
        }
    }

    /// The Docker view of a config, with its data.
    pub fn from_config(c: &proto::Config) -> Self {
        let (id, version, created_at, updated_at) = meta(&c.meta);
        let spec = c.spec.clone().unwrap_or_default();
        Self {
            id,
            version,
            created_at,
            updated_at,
            spec: BlobSpec {
                name: spec.name,
                labels: spec.labels,
                data: Some(base64::engine::general_purpose::STANDARD.encode(&spec.data)),
                ..Default::default()
            },
        }
    }
}

/// The answer of `POST /secrets/create` and `/configs/create`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Created {
    /// The new object's ID.
    #[serde(rename = "ID")]
    pub id: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::engine::decode;

    #[test]
    fn a_secret_round_trips_without_its_data() {
        let secret = proto::Secret {
            meta: Some(proto::Meta {
                id: "s1".into(),
                version: 3,
                ..Default::default()
            }),
            spec: Some(proto::SecretSpec {
                name: "pw".into(),
                labels: [("a".to_string(), "b".to_string())].into(),
                data: b"TOP-SECRET-BYTES".to_vec(),
            }),
        };
        let docker = Blob::from_secret(&secret);
        let text = serde_json::to_string(&docker).unwrap();
        assert!(!text.contains("TOP-SECRET-BYTES"), "{text}");
        let encoded = base64::engine::general_purpose::STANDARD.encode(b"TOP-SECRET-BYTES");
        assert!(!text.contains(&encoded), "{text}");
        assert!(!text.contains("Data"), "{text}");
        let back: Blob = decode::value_as(serde_json::from_str(&text).unwrap()).unwrap();
        assert_eq!(back, docker);
    }

    #[test]
    fn a_config_round_trips_with_its_data() {
        let config = proto::Config {
            meta: Some(proto::Meta {
                id: "c1".into(),
                ..Default::default()
            }),
            spec: Some(proto::ConfigSpec {
                name: "conf".into(),
                labels: Default::default(),
                data: b"hello".to_vec(),
            }),
        };
        let docker = Blob::from_config(&config);
        let json = serde_json::to_value(&docker).unwrap();
        assert_eq!(json["Spec"]["Data"], "aGVsbG8=");
        let back: Blob = decode::value_as(json).unwrap();
        let (name, _, data) = back.spec.parts().unwrap();
        assert_eq!(
            (name.as_str(), data.as_slice()),
            ("conf", b"hello".as_slice())
        );
    }

    #[test]
    fn drivers_templating_and_bad_base64_are_refused() {
        let spec: BlobSpec = decode::value_as(
            serde_json::json!({"Name": "x", "Data": "aGk=", "Driver": {"Name": "vault"}}),
        )
        .unwrap();
        assert!(spec.parts().unwrap_err().message.starts_with("Driver"));
        let spec: BlobSpec =
            decode::value_as(serde_json::json!({"Name": "x", "Data": "%%%"})).unwrap();
        assert!(spec.parts().unwrap_err().message.contains("base64"));
        let spec: BlobSpec = decode::value_as(
            serde_json::json!({"Name": "x", "Data": "aGk=", "Driver": null, "Templating": null}),
        )
        .unwrap();
        assert_eq!(spec.parts().unwrap().2, b"hi");
    }
}
