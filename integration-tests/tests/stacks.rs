//! `skiff stack` end to end on a loopback cluster (`process` runtime): every kind of bad
//! input refused with nothing created; a deploy waited for with `--detach=false`; an
//! unchanged redeploy that changes nothing; a changed `.env` variable rolling only the
//! service that uses it; a changed secret refused; `--prune`; and `stack rm` leaving
//! nothing behind. Then on two test hosts with containerd: a stack serving through the
//! routing mesh, its services reaching each other by their short names.

use std::path::Path;
use std::time::Duration;

use integration_tests::{wait_until, Cluster};
use serde_json::Value;

const CONVERGE: Duration = Duration::from_secs(40);

/// What the cluster holds besides the ingress network: services, networks, secrets and
/// configs, by name.
fn objects(cluster: &Cluster) -> Vec<String> {
    let mut all = Vec::new();
    for (kind, args) in [
        ("service", &["service", "ls", "--format", "json"][..]),
        ("network", &["network", "ls", "--format", "json"][..]),
        ("secret", &["secret", "ls", "--format", "json"][..]),
        ("config", &["config", "ls", "--format", "json"][..]),
    ] {
        let out = cluster.ok(1, args);
        let items: Vec<Value> =
            serde_json::from_str(&out).unwrap_or_else(|e| panic!("{kind} ls: {e}: {out}"));
        for item in items {
            let name = item["spec"]["name"]
                .as_str()
                .or_else(|| item["Name"].as_str())
                .or_else(|| item["name"].as_str())
                .unwrap_or_default()
                .to_string();
            if name != "ingress" {
                all.push(format!("{kind} {name}"));
            }
        }
    }
    all.sort();
    all
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// Service `service` as skiff's own JSON (`spec_version` included, which Docker's JSON
/// that `service inspect` prints has no field for): `service ls --format json`'s entry.
/// `stack deploy ARGS` asking no registry for digests (no registry holds `busybox` here).
fn deploy<'a>(args: &[&'a str]) -> Vec<&'a str> {
    let mut all = vec!["stack", "deploy", "--resolve-image", "never"];
    all.extend_from_slice(args);
    all
}

fn inspect(cluster: &Cluster, service: &str) -> Value {
    let filter = format!("name={service}");
    let out = cluster.ok(
        1,
        &["service", "ls", "--format", "json", "--filter", &filter],
    );
    let v: Vec<Value> = serde_json::from_str(&out).unwrap();
    v.into_iter()
        .find(|s| s["spec"]["name"] == service)
        .unwrap_or_else(|| panic!("service {service} listed: {out}"))
}

/// The IDs of the running tasks of `service`, sorted.
fn running_ids(cluster: &Cluster, service: &str) -> Vec<String> {
    let mut ids: Vec<String> = cluster
        .tasks(1, service)
        .iter()
        .filter(|t| integration_tests::task_state(t, "desired") == "TASK_STATE_RUNNING")
        .map(|t| t["meta"]["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

const STACK: &str = "
services:
  web:
    image: busybox
    command: [sleep, '600']
    environment:
      COLOR: ${COLOR:?set COLOR in .env}
    ports: ['18080:80']
    networks: [front]
    secrets: [token]
    configs: [settings]
    deploy:
      replicas: 2
      update_config: {parallelism: 2, order: start-first}
  api:
    image: busybox
    command: [sleep, '601']
    networks: [front, back]
    restart: always
  worker:
    image: busybox
    command: [sleep, '602']
    networks: [back]
    deploy:
      mode: global
networks:
  front: {}
  back: {}
secrets:
  token:
    file: ./token.txt
configs:
  settings:
    file: ./settings.conf
";

#[test]
fn a_stack_deploys_redeploys_declaratively_and_goes_away_whole() {
    let mut cluster = Cluster::new(1);
    cluster.form(1);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let file = write(d, "compose.yml", STACK);
    write(d, ".env", "COLOR=blue\n");
    write(d, "token.txt", "t0ken\n");
    write(d, "settings.conf", "level=1\n");

    let out = cluster.skiff(1, &deploy(&["--detach=false", "-q", "-c", &file, "app"]));
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "Ignoring unsupported options: restart\n"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    for line in [
        "Creating network app_back",
        "Creating network app_front",
        "Creating secret app_token",
        "Creating config app_settings",
        "Creating service app_web",
    ] {
        assert!(stdout.contains(line), "{line}: {stdout}");
    }
    // --detach=false waited: everything runs already.
    assert_eq!(running_ids(&cluster, "app_web").len(), 2);
    assert_eq!(running_ids(&cluster, "app_api").len(), 1);
    assert_eq!(running_ids(&cluster, "app_worker").len(), 1);
    let web = inspect(&cluster, "app_web");
    assert_eq!(web["spec"]["labels"]["com.docker.stack.namespace"], "app");
    let env = &web["spec"]["task_template"]["container"]["env"];
    assert_eq!(env, &serde_json::json!(["COLOR=blue"]));
    assert_eq!(
        web["spec"]["task_template"]["networks"][0]["aliases"],
        serde_json::json!(["web"])
    );
    let ls = cluster.ok(1, &["stack", "ls"]);
    assert_eq!(ls, "NAME   SERVICES\napp    3\n");
    let services = cluster.ok(1, &["stack", "services", "app"]);
    assert!(services.starts_with("ID "), "{services}");
    assert!(
        services.contains("app_web") && services.contains("2/2"),
        "{services}"
    );
    let ps = cluster.ok(1, &["stack", "ps", "app"]);
    assert!(ps.contains("app_web.1") && ps.contains("app_api.1"), "{ps}");

    // An unchanged redeploy changes nothing: same spec versions, same tasks.
    let before: Vec<(u64, Vec<String>)> = ["app_web", "app_api", "app_worker"]
        .iter()
        .map(|s| {
            (
                inspect(&cluster, s)["spec_version"].as_u64().unwrap(),
                running_ids(&cluster, s),
            )
        })
        .collect();
    cluster.ok(1, &deploy(&["-c", &file, "app"]));
    let after: Vec<(u64, Vec<String>)> = ["app_web", "app_api", "app_worker"]
        .iter()
        .map(|s| {
            (
                inspect(&cluster, s)["spec_version"].as_u64().unwrap(),
                running_ids(&cluster, s),
            )
        })
        .collect();
    assert_eq!(before, after);

    // A changed variable rolls only the service that uses it.
    write(d, ".env", "COLOR=green\n");
    cluster.ok(1, &deploy(&["--detach=false", "-q", "-c", &file, "app"]));
    let web = inspect(&cluster, "app_web");
    assert_eq!(web["spec_version"].as_u64(), Some(before[0].0 + 1));
    assert_eq!(
        web["spec"]["task_template"]["container"]["env"],
        serde_json::json!(["COLOR=green"])
    );
    let web_tasks = wait_until("app_web's new tasks", CONVERGE, || {
        let ids = running_ids(&cluster, "app_web");
        (ids.len() == 2 && ids.iter().all(|id| !before[0].1.contains(id))).then_some(ids)
    });
    assert_eq!(web_tasks.len(), 2);
    for (i, s) in ["app_api", "app_worker"].iter().enumerate() {
        let now = (
            inspect(&cluster, s)["spec_version"].as_u64().unwrap(),
            running_ids(&cluster, s),
        );
        assert_eq!(now, before[i + 1], "{s} untouched");
    }

    // Secrets are immutable: new data under the same name is refused, nothing changes.
    write(d, "token.txt", "n3w\n");
    let err = cluster.fails(1, &deploy(&["-c", &file, "app"]));
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("Error: ")).collect();
    assert_eq!(errors.len(), 1, "one sentence: {err}");
    assert!(errors[0].contains("give the new data a new name"), "{err}");
    assert_eq!(
        inspect(&cluster, "app_web")["spec_version"].as_u64(),
        Some(before[0].0 + 1),
        "nothing changed"
    );
    write(d, "token.txt", "t0ken\n");

    // --prune removes what the file no longer has; without it, it stays.
    let smaller = write(
        d,
        "smaller.yml",
        &STACK.replace("  worker:\n    image: busybox\n    command: [sleep, '602']\n    networks: [back]\n    deploy:\n      mode: global\n", ""),
    );
    cluster.ok(1, &deploy(&["-c", &smaller, "app"]));
    assert!(cluster
        .ok(1, &["stack", "services", "app"])
        .contains("app_worker"));
    let out = cluster.ok(1, &deploy(&["--prune", "-c", &smaller, "app"]));
    assert!(out.contains("Removing service app_worker"), "{out}");
    let services = cluster.ok(1, &["stack", "services", "-q", "app"]);
    assert_eq!(services.lines().count(), 2, "{services}");

    // stack rm leaves nothing: no service, network, secret or config.
    let out = cluster.ok(1, &["stack", "rm", "app"]);
    assert!(out.contains("Removing network app_back"), "{out}");
    assert_eq!(objects(&cluster), Vec::<String>::new());
    let err = cluster.fails(1, &["stack", "services", "app"]);
    assert_eq!(err, "Error: nothing found in stack app\n");
}

#[test]
fn bad_input_is_refused_before_anything_is_created() {
    let mut cluster = Cluster::new(1);
    cluster.form(1);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "token.txt", "t0ken\n");
    // Something the stack must not clash with.
    cluster.ok(
        1,
        &[
            "service", "create", "--detach", "--name", "other", "-p", "18081:80", "busybox",
            "sleep", "600",
        ],
    );
    let good_head = "services:\n  web:\n    image: busybox\n    command: [sleep, '600']\n";
    let cases: Vec<(String, &str)> = vec![
        ("services:\n  web:\n    image: [busybox\n".into(), "compose.yml, line "),
        (format!("{good_head}    deploy:\n      replicaz: 2\n"), "services.web.deploy.replicaz: unknown key"),
        (format!("{good_head}    networks: [back]\n"), "services.web.networks: network back is not declared"),
        (format!("{good_head}    secrets: [token]\n"), "services.web.secrets: secret token is not declared"),
        ("services:\n  web:\n    command: [sleep, '1']\n".into(), "services.web.image: a service needs the image"),
        (format!("{good_head}    stop_grace_period: 10 parsecs\n"), "services.web.stop_grace_period: invalid duration"),
        (format!("{good_head}    deploy:\n      resources:\n        limits:\n          memory: lots\n"), "services.web.deploy.resources.limits.memory: invalid memory size"),
        (format!("{good_head}    networks: [shared]\nnetworks:\n  shared:\n    external: true\n"), "network shared is declared external but does not exist"),
        (format!("{good_head}    ports: ['18081:80']\nsecrets:\n  token:\n    file: ./token.txt\n"), "services.web: port 18081/tcp is already published by service other"),
        (format!("{good_head}    ports: ['18082:80']\n  api:\n    image: busybox\n    ports: ['18082:81']\n"), "services.api and services.web both publish port 18082/tcp"),
        (format!("{good_head}    image: UPPER/Case\n").replace("    image: busybox\n", ""), "services.web: "),
        ("services:\n  web:\n    image: busybox:${TAG:?give the release tag}\n".into(), "services.web.image: required variable TAG"),
        (format!("{good_head}    ports: ['2377:80']\n"), "services.web: port 2377/tcp is a cluster port"),
        (
            format!("{good_head}    secrets: [{{source: token, target: t}}]\n    configs: [{{source: conf, target: /run/secrets/t}}]\nsecrets:\n  token: {{file: ./token.txt}}\nconfigs:\n  conf: {{file: ./token.txt}}\n"),
            "services.web: two secrets or configs would be written to /run/secrets/t",
        ),
    ];
    for (text, want) in &cases {
        let file = write(d, "compose.yml", text);
        let err = cluster.fails(1, &deploy(&["-c", &file, "app"]));
        let line = err.trim_end();
        assert_eq!(err.lines().count(), 1, "one sentence: {err}");
        let line = line.strip_prefix("Error: ").unwrap_or(line);
        let line = line.strip_prefix(&format!("{file}: ")).unwrap_or(line);
        assert!(
            line.starts_with(want) || line.contains(want),
            "want {want:?}, got {line:?}"
        );
        assert_eq!(
            objects(&cluster),
            ["service other"],
            "nothing created for {want:?}"
        );
    }
    // A mode change on redeploy is refused too, with the stack as it was.
    let file = write(
        d,
        "compose.yml",
        &format!("{good_head}    deploy:\n      replicas: 1\n"),
    );
    cluster.ok(1, &deploy(&["-c", &file, "app"]));
    let before = inspect(&cluster, "app_web");
    let file = write(
        d,
        "compose.yml",
        &format!("{good_head}    deploy:\n      mode: global\n"),
    );
    let err = cluster.fails(1, &deploy(&["-c", &file, "app"]));
    assert!(
        err.contains("services.web: a service's mode cannot change"),
        "{err}"
    );
    let after = inspect(&cluster, "app_web");
    assert_eq!(after["spec"], before["spec"]);
    assert_eq!(after["spec_version"], before["spec_version"]);
    let err = cluster.fails(1, &deploy(&["-c", &file, "bad.name"]));
    assert!(err.contains("invalid stack name"), "{err}");
    let err = cluster.fails(
        1,
        &[
            "stack",
            "deploy",
            "--resolve-image",
            "sometimes",
            "-c",
            &file,
            "app",
        ],
    );
    assert!(err.contains("use always, changed or never"), "{err}");
}

/// `--resolve-image`: `always` (the default) pins each image to the digest its registry
/// gives (here the test's own registry on loopback) and leaves an image no registry can
/// say anything of as written, with Docker's warning; `changed` keeps the running pin of an
/// image the file did not change and asks no registry; `never` sends the image as written.
#[test]
fn stack_deploy_pins_images_to_the_digests_their_registries_give() {
    use integration_tests::containerd::{busybox_in_registry, registry};
    let image = busybox_in_registry();
    let missing = format!("{}/nosuch:1", registry().addr);
    let mut cluster =
        Cluster::new(1).with_daemon_args(1, &["--insecure-registry", &registry().addr]);
    cluster.form(1);
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "compose.yml",
        &format!(
            "services:\n  web:\n    image: {image}\n    command: [sleep, '600']\n  \
             api:\n    image: {missing}\n    command: [sleep, '600']\n"
        ),
    );
    let image_of = |service: &str| {
        let spec = &inspect(&cluster, service)["spec"];
        let image = spec["task_template"]["container"]["image"]
            .as_str()
            .unwrap();
        (image.to_string(), spec.clone())
    };

    let out = cluster.skiff(1, &["stack", "deploy", "-c", &file, "app"]);
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "image {missing} could not be accessed on a registry to record its digest"
        )),
        "{stderr}"
    );
    assert!(!stderr.contains(image), "{stderr}");
    let (web, _) = image_of("app_web");
    let digest = web
        .strip_prefix(&format!("{image}@sha256:"))
        .unwrap_or_else(|| panic!("{web} is not {image} pinned"));
    assert!(
        digest.len() == 64 && digest.chars().all(|c| c.is_ascii_hexdigit()),
        "{web}"
    );
    assert_eq!(image_of("app_api").0, missing);

    // The file did not change the image: the pin stays, no registry is asked (no warning
    // for the missing one either), and the spec is the same.
    let (_, before) = image_of("app_web");
    let out = cluster.skiff(
        1,
        &[
            "stack",
            "deploy",
            "--resolve-image",
            "changed",
            "-c",
            &file,
            "app",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    assert!(!String::from_utf8_lossy(&out.stderr).contains("could not be accessed"));
    assert_eq!(image_of("app_web"), (web.clone(), before));

    cluster.ok(1, &deploy(&["-c", &file, "app"]));
    assert_eq!(image_of("app_web").0, image);
}

/// Three services on two networks, with a secret, a config, a global service and a
/// start-first rollout: `web` serves a page made of `$GREETING` (from `.env`) and its
/// config through the mesh, `api` serves on the overlay only, `agent` runs on every node.
const MESH_STACK: &str = r#"
services:
  web:
    image: busybox:test
    command: ["sh", "-c", "echo \"$$GREETING $$(cat /etc/page.conf)\" > /www/index.html && test -s /run/secrets/token && exec httpd -f -p 80 -h /www"]
    environment:
      GREETING: ${GREETING}
    ports: ["8080:80"]
    networks: [front]
    secrets: [token]
    configs:
      - source: page
        target: /etc/page.conf
    stop_grace_period: 1s
    deploy:
      replicas: 2
      update_config:
        parallelism: 1
        order: start-first
  api:
    image: busybox:test
    command: ["sh", "-c", "echo api here > /www/index.html && exec httpd -f -p 80 -h /www"]
    networks: [front, back]
    stop_grace_period: 1s
    deploy:
      resources:
        limits: {pids: 50}
  agent:
    image: busybox:test
    command: ["sh", "-c", "while true; do sleep 1; done"]
    networks: [back]
    stop_grace_period: 1s
    deploy:
      mode: global
networks:
  front:
  back:
secrets:
  token:
    file: ./token.txt
configs:
  page:
    file: ./page.conf
"#;

#[test]
fn a_stack_of_containers_serves_through_the_mesh_and_by_short_names() {
    let mut cluster = Cluster::on_network(2).with_containerd();
    cluster.form(1);
    // Test hosts cannot reach the registry on the machine's loopback: load the image.
    let archive = cluster.dir().join("busybox.tar");
    integration_tests::containerd::busybox_image(
        &archive,
        "docker.io/library/busybox:test",
        serde_json::json!({}),
    );
    for i in 1..=2 {
        cluster.ok(i, &["image", "load", archive.to_str().unwrap()]);
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let file = write(d, "compose.yml", MESH_STACK);
    write(d, ".env", "GREETING=hello\n");
    write(d, "token.txt", "t0ken\n");
    write(d, "page.conf", "from the config\n");
    cluster.ok(1, &deploy(&["--detach=false", "-q", "-c", &file, "shop"]));
    let agents = cluster.running_tasks(1, "shop_agent");
    assert_eq!(agents.len(), 2, "one agent per node");

    let page = |want: &str| {
        for host in 1..=2 {
            let to = format!(
                "{}:8080",
                integration_tests::netns::TestNetwork::address(host)
            )
            .parse()
            .unwrap();
            wait_until(
                &format!("{want:?} through host {host}'s mesh"),
                CONVERGE,
                || {
                    let pages: std::collections::BTreeSet<String> =
                        (0..6).filter_map(|_| cluster.http_get(host, to)).collect();
                    (pages.len() == 1 && pages.contains(want)).then_some(())
                },
            );
        }
    };
    page("hello from the config");

    // From an agent (network back), api answers by its short name.
    let agent = &agents[0];
    let reply = wait_until("api by its short name from an agent", CONVERGE, || {
        let out = std::process::Command::new("ctr")
            .arg("-a")
            .arg(integration_tests::containerd::socket())
            .args([
                "-n",
                &cluster.containerd_namespace(agent.host),
                "tasks",
                "exec",
            ])
            .args([
                "--exec-id",
                &format!("short{}", std::process::id()),
                &agent.id,
            ])
            .args([
                "sh",
                "-c",
                "nslookup api >/dev/null && printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 api 80",
            ])
            .output()
            .expect("ctr exec");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.contains("api here").then_some(text)
    });
    assert!(reply.contains("200 OK"), "{reply}");
    // deploy.resources.limits.pids reached api's cgroup.
    let api = &cluster.running_tasks(1, "shop_api")[0];
    let pids = std::fs::read_to_string(format!("/sys/fs/cgroup/pids/skiff/{}/pids.max", api.id))
        .or_else(|_| std::fs::read_to_string(format!("/sys/fs/cgroup/skiff/{}/pids.max", api.id)))
        .expect("api's pids cgroup");
    assert_eq!(pids.trim(), "50");

    // Unchanged: nothing restarts.
    let state = |s: &str| {
        (
            inspect(&cluster, s)["spec_version"].as_u64().unwrap(),
            running_ids(&cluster, s),
        )
    };
    let before: Vec<_> = ["shop_web", "shop_api", "shop_agent"]
        .iter()
        .map(|s| state(s))
        .collect();
    cluster.ok(1, &deploy(&["-c", &file, "shop"]));
    let after: Vec<_> = ["shop_web", "shop_api", "shop_agent"]
        .iter()
        .map(|s| state(s))
        .collect();
    assert_eq!(before, after);

    // A changed variable rolls web alone, start-first, and the mesh serves the new page.
    write(d, ".env", "GREETING=welcome\n");
    cluster.ok(1, &deploy(&["--detach=false", "-q", "-c", &file, "shop"]));
    page("welcome from the config");
    assert_eq!(state("shop_web").0, before[0].0 + 1);
    assert!(state("shop_web")
        .1
        .iter()
        .all(|id| !before[0].1.contains(id)));
    assert_eq!(state("shop_api"), before[1]);
    assert_eq!(state("shop_agent"), before[2]);

    // --prune, then stack rm: nothing left.
    let without_agent = MESH_STACK.replace(
        "  agent:\n    image: busybox:test\n    command: [\"sh\", \"-c\", \"while true; do sleep 1; done\"]\n    networks: [back]\n    stop_grace_period: 1s\n    deploy:\n      mode: global\n",
        "",
    );
    assert_ne!(without_agent, MESH_STACK);
    let smaller = write(d, "smaller.yml", &without_agent);
    let out = cluster.ok(1, &deploy(&["--prune", "-c", &smaller, "shop"]));
    assert!(out.contains("Removing service shop_agent"), "{out}");
    cluster.ok(1, &["stack", "rm", "shop"]);
    assert_eq!(objects(&cluster), Vec::<String>::new());
}
