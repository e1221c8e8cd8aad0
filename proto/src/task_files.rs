//! Where a task's secrets and configs appear inside it, by Docker's rules: a secret's
//! target is a file name under `/run/secrets/` (its name when none is given) or an absolute
//! path; a config's is an absolute path (`/NAME` when none is given). The control API
//! refuses targets these rules reject, and the node places files where they say.

use std::path::{Path, PathBuf};

use crate::{ConfigReference, SecretReference};

/// Where secrets go unless their target is an absolute path.
pub const SECRETS_DIR: &str = "/run/secrets";
/// The mode of a secret or config file when the reference gives none (Docker's).
pub const DEFAULT_MODE: u32 = 0o444;

/// Why a target cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid target {target:?} for {what} {name}: use a file name (under /run/secrets for a secret) or an absolute path without '..'")]
pub struct TargetError {
    what: &'static str,
    name: String,
    target: String,
}

/// The path inside the task of the secret `reference` names.
pub fn secret_target(reference: &SecretReference) -> Result<PathBuf, TargetError> {
    let target = match reference.target.as_str() {
        "" => reference.secret_name.as_str(),
        t => t,
    };
    let path = if target.starts_with('/') {
        PathBuf::from(target)
    } else {
        Path::new(SECRETS_DIR).join(target)
    };
    checked(path, "secret", &reference.secret_name, target)
}

/// The path inside the task of the config `reference` names.
pub fn config_target(reference: &ConfigReference) -> Result<PathBuf, TargetError> {
    let target = match reference.target.as_str() {
        "" => format!("/{}", reference.config_name),
        t if t.starts_with('/') => t.to_owned(),
        // Docker takes a relative config target from the container's root.
        t => format!("/{t}"),
    };
    checked(
        PathBuf::from(&target),
        "config",
        &reference.config_name,
        &target,
    )
}

/// `path` if it names a file below `/`: no empty, `.` or `..` parts.
fn checked(
    path: PathBuf,
    what: &'static str,
    name: &str,
    target: &str,
) -> Result<PathBuf, TargetError> {
    let text = path.to_string_lossy();
    let parts: Vec<&str> = text.trim_start_matches('/').split('/').collect();
    if parts
        .iter()
        .any(|p| p.is_empty() || *p == "." || *p == "..")
    {
        return Err(TargetError {
            what,
            name: name.to_owned(),
            target: target.to_owned(),
        });
    }
    Ok(path)
}

/// The mode a reference asks for, or [`DEFAULT_MODE`].
pub fn mode(asked: u32) -> u32 {
    match asked {
        0 => DEFAULT_MODE,
        m => m & 0o7777,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(name: &str, target: &str) -> SecretReference {
        SecretReference {
            secret_name: name.into(),
            target: target.into(),
            ..Default::default()
        }
    }

    fn config(name: &str, target: &str) -> ConfigReference {
        ConfigReference {
            config_name: name.into(),
            target: target.into(),
            ..Default::default()
        }
    }

    #[test]
    fn targets_follow_docker() {
        assert_eq!(
            secret_target(&secret("db", "")).unwrap(),
            Path::new("/run/secrets/db")
        );
        assert_eq!(
            secret_target(&secret("db", "password")).unwrap(),
            Path::new("/run/secrets/password")
        );
        assert_eq!(
            secret_target(&secret("tls", "/etc/ssl/key.pem")).unwrap(),
            Path::new("/etc/ssl/key.pem")
        );
        assert_eq!(
            config_target(&config("nginx", "")).unwrap(),
            Path::new("/nginx")
        );
        assert_eq!(
            config_target(&config("nginx", "/etc/nginx/nginx.conf")).unwrap(),
            Path::new("/etc/nginx/nginx.conf")
        );
        for bad in ["../../etc/passwd", "/run/../x", "a/./b", "/", "dir/"] {
            assert!(secret_target(&secret("s", bad)).is_err(), "{bad}");
        }
        assert!(config_target(&config("c", "/etc/../x")).is_err());
        assert_eq!(mode(0), 0o444);
        assert_eq!(mode(0o400), 0o400);
    }
}
