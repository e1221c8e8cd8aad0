//! `GET /distribution/{name}/json`: what the image's registry says of it (its manifest
//! digest and platforms), which `docker service create` and `docker stack deploy` pin the
//! image to, so every node runs the same image. Asked through the daemon's
//! `InspectDistribution`, with the request's `X-Registry-Auth`.

use axum::extract::Path;
use axum::http::HeaderMap;
use axum::response::Response;

use super::{ok, State};
use crate::daemon::engine::error::{ApiError, ApiResult};

/// The answer, as Docker's.
fn answer(d: &proto::InspectDistributionResponse) -> serde_json::Value {
    serde_json::json!({
        "Descriptor": {
            "mediaType": d.media_type,
            "digest": d.digest,
            "size": d.size,
        },
        "Platforms": d
            .platforms
            .iter()
            .map(|p| serde_json::json!({ "architecture": p.arch, "os": p.os }))
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
    let registry_auth = headers
        .get("X-Registry-Auth")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let distribution = state
        .0
        .backend()
        .swarm()
        .await?
        .inspect_distribution(proto::InspectDistributionRequest {
            image: name.to_string(),
            registry_auth,
        })
        .await
        .map_err(|s| ApiError::from_status(&s))?
        .into_inner();
    ok(&answer(&distribution))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_is_dockers_descriptor_and_platforms() {
        let d = proto::InspectDistributionResponse {
            media_type: "application/vnd.oci.image.index.v1+json".into(),
            digest: "sha256:abc".into(),
            size: 9,
            platforms: vec![proto::Platform {
                os: "linux".into(),
                arch: "amd64".into(),
            }],
        };
        let json = answer(&d);
        assert_eq!(json["Descriptor"]["digest"], "sha256:abc");
        assert_eq!(json["Descriptor"]["size"], 9);
        assert_eq!(json["Platforms"][0]["architecture"], "amd64");
        assert_eq!(json["Platforms"][0]["os"], "linux");
    }
}
