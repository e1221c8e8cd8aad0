//! `stack deploy --resolve-image`: pins each service's image to the digest its registry
//! gives now, so every node runs the same image even if the tag moves later (Docker's
//! default, `always`). `changed` asks the registry only for images the file changed since
//! the last deploy (by the [`IMAGE_LABEL`] the stack's services carry) and keeps the pinned
//! image of the others; `never` sends the images as written. An image the registry cannot
//! be asked about keeps its tag, with Docker's warning: nodes then pull it by tag.

use std::collections::BTreeMap;
use std::str::FromStr;

use proto::reference::ImageRef;
use proto::{Service, ServiceSpec};

use super::translate::IMAGE_LABEL;
use crate::client::Client;

/// When to ask registries for digests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ResolveImage {
    #[default]
    Always,
    Changed,
    Never,
}

impl FromStr for ResolveImage {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "always" => Ok(Self::Always),
            "changed" => Ok(Self::Changed),
            "never" => Ok(Self::Never),
            _ => Err(format!(
                "invalid value {s:?} for --resolve-image: use always, changed or never"
            )),
        }
    }
}

/// What to do for one service's image.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Choice {
    /// Send the image as written (or already pinned by the file).
    AsWritten,
    /// Keep the image the running service has (the file did not change it).
    Keep(String),
    /// Ask the registry for the digest of this image.
    Ask(String),
}

/// The image as written, from a desired spec (the label translation set).
fn written(spec: &ServiceSpec) -> Option<&str> {
    spec.labels.get(IMAGE_LABEL).map(String::as_str)
}

fn container_image(spec: &ServiceSpec) -> Option<&str> {
    Some(
        spec.task_template
            .as_ref()?
            .container
            .as_ref()?
            .image
            .as_str(),
    )
}

/// What `mode` means for `spec`, given the stack's running services.
fn choose(mode: ResolveImage, spec: &ServiceSpec, current: &[Service]) -> Choice {
    let Some(image) = written(spec) else {
        return Choice::AsWritten;
    };
    let pinned_by_file = ImageRef::parse(image).is_ok_and(|r| r.digest.is_some());
    if pinned_by_file || mode == ResolveImage::Never {
        return Choice::AsWritten;
    }
    if mode == ResolveImage::Changed {
        let running = current
            .iter()
            .filter_map(|s| s.spec.as_ref())
            .find(|s| s.name == spec.name);
        if let Some(running) = running.filter(|r| written(r) == Some(image)) {
            if let Some(kept) = container_image(running) {
                return Choice::Keep(kept.to_string());
            }
        }
    }
    Choice::Ask(image.to_string())
}

/// `image` pinned to `digest` as Docker writes it: `busybox:latest@sha256:…`.
fn pinned(image: &str, digest: &str) -> String {
    let last = image.rsplit('/').next().unwrap_or(image);
    if last.contains(':') {
        format!("{image}@{digest}")
    } else {
        format!("{image}:latest@{digest}")
    }
}

/// Docker's warning for an image whose digest could not be had.
fn unresolved_warning(image: &str, why: &str) -> String {
    format!(
        "image {image} could not be accessed on a registry to record its digest ({why}); \
         each node will access {image} independently, possibly leading to different nodes \
         running different versions of the image"
    )
}

/// Pins the images of `services` as `mode` says, asking the registries through the
/// daemon (once per image and credentials); returns the warnings to print.
pub async fn pin(
    client: &Client,
    mode: ResolveImage,
    services: Vec<&mut ServiceSpec>,
    current: &[Service],
) -> Vec<String> {
    let mut asked: BTreeMap<(String, String), Result<String, String>> = BTreeMap::new();
    let mut warnings = Vec::new();
    for spec in services {
        let choice = choose(mode, spec, current);
        let Some(container) = spec
            .task_template
            .as_mut()
            .and_then(|t| t.container.as_mut())
        else {
            continue;
        };
        match choice {
            Choice::AsWritten => {}
            Choice::Keep(image) => container.image = image,
            Choice::Ask(image) => {
                let key = (image.clone(), container.registry_auth.clone());
                if !asked.contains_key(&key) {
                    let answer = digest_of(client, &image, &container.registry_auth).await;
                    if let Err(why) = &answer {
                        warnings.push(unresolved_warning(&image, why));
                    }
                    asked.insert(key.clone(), answer);
                }
                if let Some(Ok(digest)) = asked.get(&key) {
                    container.image = pinned(&image, digest);
                }
            }
        }
    }
    warnings
}

/// The digest `image`'s registry gives, asked by the local daemon.
async fn digest_of(client: &Client, image: &str, registry_auth: &str) -> Result<String, String> {
    client
        .swarm()
        .inspect_distribution(proto::InspectDistributionRequest {
            image: image.to_string(),
            registry_auth: registry_auth.to_string(),
        })
        .await
        .map(|r| r.into_inner().digest)
        .map_err(|s| s.message().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::{ContainerSpec, TaskSpec};

    fn spec(name: &str, written: &str, image: &str) -> ServiceSpec {
        ServiceSpec {
            name: name.into(),
            labels: [(IMAGE_LABEL.to_string(), written.to_string())].into(),
            task_template: Some(TaskSpec {
                container: Some(ContainerSpec {
                    image: image.into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn running(name: &str, written: &str, image: &str) -> Service {
        Service {
            spec: Some(spec(name, written, image)),
            ..Default::default()
        }
    }

    #[test]
    fn the_three_modes_parse_and_anything_else_says_what_to_use() {
        assert_eq!("always".parse(), Ok(ResolveImage::Always));
        assert_eq!("changed".parse(), Ok(ResolveImage::Changed));
        assert_eq!("never".parse(), Ok(ResolveImage::Never));
        let err = "sometimes".parse::<ResolveImage>().unwrap_err();
        assert!(err.contains("use always, changed or never"), "{err}");
    }

    #[test]
    fn always_asks_for_every_image_the_file_does_not_pin() {
        let current = [running("app_web", "web:1", "web:1@sha256:old")];
        let web = spec("app_web", "web:1", "web:1");
        assert_eq!(
            choose(ResolveImage::Always, &web, &current),
            Choice::Ask("web:1".into())
        );
        let digest = format!("db@sha256:{}", "a".repeat(64));
        let fixed = spec("app_db", &digest, &digest);
        assert_eq!(choose(ResolveImage::Always, &fixed, &[]), Choice::AsWritten);
    }

    #[test]
    fn changed_keeps_the_running_pin_of_an_unchanged_image_and_asks_for_changed_or_new_ones() {
        let current = [running("app_web", "web:1", "web:1@sha256:old")];
        assert_eq!(
            choose(
                ResolveImage::Changed,
                &spec("app_web", "web:1", "web:1"),
                &current
            ),
            Choice::Keep("web:1@sha256:old".into())
        );
        assert_eq!(
            choose(
                ResolveImage::Changed,
                &spec("app_web", "web:2", "web:2"),
                &current
            ),
            Choice::Ask("web:2".into())
        );
        assert_eq!(
            choose(
                ResolveImage::Changed,
                &spec("app_api", "web:1", "web:1"),
                &current
            ),
            Choice::Ask("web:1".into())
        );
    }

    #[test]
    fn never_sends_the_image_as_written() {
        let current = [running("app_web", "web:1", "web:1@sha256:old")];
        assert_eq!(
            choose(
                ResolveImage::Never,
                &spec("app_web", "web:1", "web:1"),
                &current
            ),
            Choice::AsWritten
        );
    }

    #[test]
    fn a_pin_keeps_the_written_name_and_adds_dockers_default_tag() {
        assert_eq!(pinned("busybox", "sha256:a"), "busybox:latest@sha256:a");
        assert_eq!(pinned("busybox:1.36", "sha256:a"), "busybox:1.36@sha256:a");
        assert_eq!(
            pinned("127.0.0.1:5000/team/app", "sha256:a"),
            "127.0.0.1:5000/team/app:latest@sha256:a"
        );
        assert_eq!(
            pinned("127.0.0.1:5000/team/app:v2", "sha256:a"),
            "127.0.0.1:5000/team/app:v2@sha256:a"
        );
    }
}
