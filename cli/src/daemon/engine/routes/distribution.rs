//! `GET /distribution/{name}/json`: what the image's registry says of it (its manifest
//! digest and platforms), which `docker service create` and `docker stack deploy` pin the
//! image to, so every node runs the same image. Asked with the request's
//! `X-Registry-Auth` and skiffd's `--insecure-registry` list.

use axum::extract::Path;
use axum::http::HeaderMap;
use axum::response::Response;
use proto::reference::ImageRef;

use super::{ok, State};
use crate::daemon::engine::error::{ApiError, ApiResult};

/// The answer, as Docker's.
fn answer(d: &agent_runtime::containerd::Distribution) -> serde_json::Value {
    serde_json::json!({
        "Descriptor": {
            "mediaType": d.media_type,
            "digest": d.digest,
            "size": d.size,
        },
        "Platforms": d
            .platforms
            .iter()
            .map(|(os, arch)| serde_json::json!({ "architecture": arch, "os": os }))
            .collect::<Vec<_>>(),
    })
}

/// `GET /distribution/{name}/json` (the name may hold slashes and a registry's port).
pub async fn inspect(
    state: State,
    Path(rest): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let Some(name) = rest.strip_suffix("/json") else {
        return Err(ApiError::not_found(format!(
            "page not found: /distribution/{rest}; use /distribution/NAME/json"
        )));
    };
    let image = ImageRef::parse(name)
        .map_err(|e| ApiError::bad_request(format!("invalid image reference \"{name}\": {e}")))?;
    let auth = headers
        .get("X-Registry-Auth")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let distribution =
        agent_runtime::containerd::inspect_distribution(&image, auth, state.0.registries())
            .await
            .map_err(|e| {
                let message = e.to_string();
                if message.contains("unknown") || message.contains("not found") {
                    ApiError::not_found(message)
                } else {
                    ApiError::internal(message)
                }
            })?;
    ok(&answer(&distribution))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_is_dockers_descriptor_and_platforms() {
        let d = agent_runtime::containerd::Distribution {
            media_type: "application/vnd.oci.image.index.v1+json".into(),
            digest: "sha256:abc".into(),
            size: 9,
            platforms: vec![("linux".into(), "amd64".into())],
        };
        let json = answer(&d);
        assert_eq!(json["Descriptor"]["digest"], "sha256:abc");
        assert_eq!(json["Descriptor"]["size"], 9);
        assert_eq!(json["Platforms"][0]["architecture"], "amd64");
        assert_eq!(json["Platforms"][0]["os"], "linux");
    }
}
