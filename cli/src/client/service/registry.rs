//! `--with-registry-auth`: the credentials `docker login` stored for the image's registry,
//! encoded as Docker sends them to a swarm (base64url of `{"username", "password",
//! "serveraddress"}`), so the nodes can pull a private image.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail};
use serde_json::Value;

/// Docker Hub's key in `config.json`.
const DOCKER_HUB: &str = "https://index.docker.io/v1/";

/// The registry host an image reference names (`docker.io` when it names none).
pub fn registry_of(image: &str) -> String {
    match image.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            if first == "index.docker.io" || first == "registry-1.docker.io" {
                "docker.io".into()
            } else {
                first.to_string()
            }
        }
        _ => "docker.io".into(),
    }
}

/// Where `docker login` keeps credentials: `$DOCKER_CONFIG/config.json`, else
/// `~/.docker/config.json`.
pub fn config_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
        return Some(Path::new(&dir).join("config.json"));
    }
    std::env::var_os("HOME").map(|h| Path::new(&h).join(".docker").join("config.json"))
}

/// The host a `config.json` key names (`https://index.docker.io/v1/` -> `docker.io`).
fn key_host(key: &str) -> String {
    let k = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = k.split('/').next().unwrap_or(k);
    match host {
        "index.docker.io" | "registry-1.docker.io" => "docker.io".into(),
        h => h.to_string(),
    }
}

/// The encoded credentials for `image` from the Docker config text `config` (read from
/// `path`, named in errors).
pub fn auth_from_config(image: &str, config: &str, path: &Path) -> anyhow::Result<String> {
    let shown = path.display();
    let registry = registry_of(image);
    let json: Value = serde_json::from_str(config)
        .map_err(|e| anyhow!("cannot read {shown} for --with-registry-auth: {e}"))?;
    let entry = json
        .get("auths")
        .and_then(Value::as_object)
        .and_then(|auths| auths.iter().find(|(k, _)| key_host(k) == registry))
        .map(|(_, v)| v);
    let Some(entry) = entry else {
        if json.get("credsStore").is_some() || json.get("credHelpers").is_some() {
            bail!(
                "no credentials for registry {registry} in {shown}: skiff cannot read docker credential helpers (credsStore); log in without one, or drop --with-registry-auth"
            );
        }
        bail!(
            "no credentials for registry {registry} in {shown}: run `docker login {registry}` first, or drop --with-registry-auth"
        );
    };
    let field = |k: &str| {
        entry
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let (mut username, mut password) = (field("username"), field("password"));
    let auth = field("auth");
    if !auth.is_empty() {
        let decoded = base64_decode(&auth)
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| anyhow!("the credentials for {registry} in {shown} are not valid base64; run `docker login {registry}` again"))?;
        let (u, p) = decoded.split_once(':').ok_or_else(|| {
            anyhow!("the credentials for {registry} in {shown} are not USER:PASSWORD; run `docker login {registry}` again")
        })?;
        username = u.to_string();
        password = p.to_string();
    }
    let mut out = serde_json::json!({
        "username": username,
        "password": password,
        "serveraddress": if registry == "docker.io" { DOCKER_HUB.to_string() } else { registry.clone() },
    });
    let token = field("identitytoken");
    if !token.is_empty() {
        out["identitytoken"] = Value::String(token);
    }
    if username.is_empty() && password.is_empty() && out.get("identitytoken").is_none() {
        bail!("the entry for {registry} in {shown} holds no credentials; run `docker login {registry}` again");
    }
    Ok(base64_url(out.to_string().as_bytes()))
}

/// Reads this user's Docker config and returns the credentials for `image`.
pub fn registry_auth(image: &str) -> anyhow::Result<String> {
    let path = config_path().ok_or_else(|| {
        anyhow!("cannot find the docker config for --with-registry-auth: set HOME or DOCKER_CONFIG")
    })?;
    let text = std::fs::read_to_string(&path).map_err(|e| {
        anyhow!(
            "cannot read {} for --with-registry-auth ({e}); run `docker login {}` first",
            path.display(),
            registry_of(image)
        )
    })?;
    auth_from_config(image, &text, &path)
}

const STD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// URL-safe base64 with padding (Go's `base64.URLEncoding`).
fn base64_url(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                let c = STD[((n >> (18 - 6 * i)) & 63) as usize];
                out.push(match c {
                    b'+' => '-',
                    b'/' => '_',
                    c => c as char,
                });
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Standard or URL-safe base64, padded or not.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut acc: u32 = 0;
    let mut bits = 0;
    for c in s.trim().bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b'=' => break,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registries() {
        assert_eq!(registry_of("nginx"), "docker.io");
        assert_eq!(registry_of("library/nginx:1"), "docker.io");
        assert_eq!(registry_of("ghcr.io/org/app:1"), "ghcr.io");
        assert_eq!(registry_of("localhost:5000/app"), "localhost:5000");
        assert_eq!(registry_of("localhost/app"), "localhost");
        assert_eq!(key_host("https://index.docker.io/v1/"), "docker.io");
        assert_eq!(key_host("ghcr.io"), "ghcr.io");
    }

    #[test]
    fn base64_round_trip() {
        for s in [
            "",
            "f",
            "fo",
            "foo",
            "foob",
            "fooba",
            "foobar",
            "user:pa>>?ss",
        ] {
            assert_eq!(
                base64_decode(&base64_url(s.as_bytes())).unwrap(),
                s.as_bytes()
            );
        }
        assert_eq!(base64_url(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64_url(b"fo"), "Zm8=");
        assert_eq!(base64_url(&[0xfb, 0xff]), "-_8=");
        assert_eq!(base64_decode("dXNlcjpwYXNz").unwrap(), b"user:pass");
        assert!(base64_decode("a*b").is_none());
    }

    #[test]
    fn credentials_from_config() {
        let path = Path::new("/home/u/.docker/config.json");
        let config = r#"{"auths":{"https://index.docker.io/v1/":{"auth":"dXNlcjpwYXNz"},"ghcr.io":{"username":"me","password":"tok"}}}"#;
        let decode =
            |s: String| -> Value { serde_json::from_slice(&base64_decode(&s).unwrap()).unwrap() };
        let v = decode(auth_from_config("nginx", config, path).unwrap());
        assert_eq!(v["username"], "user");
        assert_eq!(v["password"], "pass");
        assert_eq!(v["serveraddress"], DOCKER_HUB);
        let v = decode(auth_from_config("ghcr.io/me/app", config, path).unwrap());
        assert_eq!(v["username"], "me");
        assert_eq!(v["serveraddress"], "ghcr.io");
        let e = auth_from_config("quay.io/x/y", config, path)
            .unwrap_err()
            .to_string();
        assert!(e.contains("run `docker login quay.io` first"), "{e}");
        let e = auth_from_config("quay.io/x/y", r#"{"credsStore":"desktop"}"#, path)
            .unwrap_err()
            .to_string();
        assert!(e.contains("credential helpers"), "{e}");
        assert!(auth_from_config("nginx", "not json", path).is_err());
    }
}
