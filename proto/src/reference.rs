//! Image references normalised as Docker does: `busybox` is
//! `docker.io/library/busybox:latest`, `registry:5000/app` keeps its registry, and a
//! `@sha256:` digest pins the content whatever the tag says.
//!
//! Here rather than in the runtime because both sides must agree on the grammar: the
//! control API refuses a reference the nodes could never pull, where it is written.

use std::fmt;

/// Why a string is not an image reference; the message says what one looks like.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("image reference '{reference}' is not valid: {why} (for example busybox, busybox:1.36, registry.example.com:5000/team/app@sha256:<64 hex digits>)")]
pub struct ReferenceError {
    reference: String,
    why: &'static str,
}

/// A normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// The registry host (and port): `docker.io`, `10.0.0.1:5000`.
    pub registry: String,
    /// The repository path in the registry: `library/busybox`.
    pub repository: String,
    /// The tag, `latest` when neither a tag nor a digest was given.
    pub tag: Option<String>,
    /// The pinned digest (`sha256:...`), if any.
    pub digest: Option<String>,
}

const DEFAULT_REGISTRY: &str = "docker.io";

impl ImageRef {
    /// Parses and normalises a reference as `docker pull` would take it.
    pub fn parse(reference: &str) -> Result<ImageRef, ReferenceError> {
        let bad = |why: &'static str| ReferenceError {
            reference: reference.to_owned(),
            why,
        };
        if reference.is_empty() {
            return Err(bad("it is empty"));
        }
        if reference
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(bad("it contains whitespace"));
        }
        let (rest, digest) = match reference.split_once('@') {
            Some((rest, digest)) => {
                let hex = digest
                    .strip_prefix("sha256:")
                    .ok_or_else(|| bad("the digest must start with sha256:"))?;
                if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(bad("a sha256 digest has 64 hex digits"));
                }
                (rest, Some(digest.to_ascii_lowercase()))
            }
            None => (reference, None),
        };
        // A tag is after the last ':' that follows the last '/' (a ':' before it is a port).
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(tag) = tag {
            let ok = !tag.is_empty()
                && tag.len() <= 128
                && tag
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
                && !tag.starts_with(['.', '-']);
            if !ok {
                return Err(bad("a tag is 1-128 letters, digits, '_', '.' or '-'"));
            }
        }
        let (registry, path) = match name.split_once('/') {
            Some((first, path))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_owned(), path.to_owned())
            }
            _ => (DEFAULT_REGISTRY.to_owned(), name.to_owned()),
        };
        let path = if registry == DEFAULT_REGISTRY && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        let component_ok = |c: &str| {
            !c.is_empty()
                && c.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
                })
                && c.starts_with(|ch: char| ch.is_ascii_alphanumeric())
                && c.ends_with(|ch: char| ch.is_ascii_alphanumeric())
        };
        if !path.split('/').all(component_ok) {
            return Err(bad(
                "repository names are lowercase letters, digits and separators ('.', '_', '-') between '/'",
            ));
        }
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_owned()),
            (None, Some(_)) => None,
            (None, None) => Some("latest".to_owned()),
        };
        Ok(ImageRef {
            registry,
            repository: path,
            tag,
            digest,
        })
    }

    /// `registry/repository`, without tag or digest.
    pub fn repository_name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The same image pinned to `digest`, as a registry is asked for a platform's manifest.
    pub fn with_digest(&self, digest: &str) -> ImageRef {
        ImageRef {
            digest: Some(digest.to_owned()),
            ..self.clone()
        }
    }
}

/// The full name, as containerd records the image: `docker.io/library/busybox:latest`.
impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        ImageRef::parse(s).unwrap().to_string()
    }

    #[test]
    fn short_names_are_docker_hub_library_images() {
        assert_eq!(norm("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(norm("busybox:1.36"), "docker.io/library/busybox:1.36");
        assert_eq!(norm("team/app"), "docker.io/team/app:latest");
        assert_eq!(
            norm("docker.io/busybox"),
            "docker.io/library/busybox:latest"
        );
    }

    #[test]
    fn registries_with_ports_keep_them() {
        let r = ImageRef::parse("127.0.0.1:5000/demo/web:v2").unwrap();
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "demo/web");
        assert_eq!(r.tag.as_deref(), Some("v2"));
        assert_eq!(norm("localhost/app"), "localhost/app:latest");
        assert_eq!(norm("registry:5000/app"), "registry:5000/app:latest");
    }

    #[test]
    fn digests_pin_the_image() {
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            norm(&format!("busybox@{d}")),
            format!("docker.io/library/busybox@{d}")
        );
        assert_eq!(
            norm(&format!("busybox:1@{d}")),
            format!("docker.io/library/busybox:1@{d}")
        );
    }

    #[test]
    fn bad_references_are_refused_with_examples() {
        for bad in [
            "",
            "Busybox",
            "busy box",
            "busybox:",
            "busybox@sha256:abc",
            "a//b",
            "app:-x",
        ] {
            let e = ImageRef::parse(bad).unwrap_err().to_string();
            assert!(e.contains("for example"), "{bad}: {e}");
        }
    }
}
