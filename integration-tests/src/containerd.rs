//! Real containers for tests: skiff's own containerd (started once per machine by
//! `deploy/containerd-test.sh`), a registry on loopback (Debian's `docker-registry`, one per
//! test process), and a tiny busybox image built here from Debian's `busybox-static`.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use sha2::Digest as _;

/// The socket of skiff's test containerd, started if needed.
pub fn socket() -> PathBuf {
    static SOCKET: OnceLock<PathBuf> = OnceLock::new();
    SOCKET
        .get_or_init(|| {
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/containerd-test.sh");
            let out = Command::new(&script)
                .output()
                .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
            assert!(
                out.status.success(),
                "the test containerd did not start: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let socket = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            sweep_dead_namespaces(&socket);
            socket
        })
        .clone()
}

/// Cleans the namespaces of test processes that died before cleaning up themselves
/// (`skiff-test-<what>-<pid>-<n>`).
fn sweep_dead_namespaces(socket: &Path) {
    let Ok(out) = Command::new("ctr")
        .arg("-a")
        .arg(socket)
        .args(["namespaces", "ls", "-q"])
        .output()
    else {
        return;
    };
    for namespace in String::from_utf8_lossy(&out.stdout).split_whitespace() {
        let Some(rest) = namespace.strip_prefix("skiff-test-") else {
            continue;
        };
        let pid = rest.rsplit('-').nth(1).and_then(|p| p.parse::<i32>().ok());
        let alive = pid.is_some_and(|pid| {
            // SAFETY: signal 0 only checks that the process exists.
            unsafe { libc::kill(pid, 0) == 0 }
        });
        if !alive && pid.is_some() {
            clean_namespace_at(socket, namespace);
        }
    }
}

/// A containerd namespace no other test uses.
pub fn unique_namespace(what: &str) -> String {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("skiff-test-{what}-{}-{n}", std::process::id())
}

fn ctr_at(socket: &Path, namespace: &str, args: &[&str]) -> std::process::Output {
    Command::new("ctr")
        .arg("-a")
        .arg(socket)
        .args(["-n", namespace])
        .args(args)
        .output()
        .expect("run ctr")
}

/// Kills and deletes every container in `namespace`, and the namespace's images (tests
/// call it on the way out, failed or not).
pub fn clean_namespace(namespace: &str) {
    clean_namespace_at(&socket(), namespace);
}

fn clean_namespace_at(socket: &Path, namespace: &str) {
    let ctr = |namespace: &str, args: &[&str]| ctr_at(socket, namespace, args);
    let listed = ctr(namespace, &["containers", "ls", "-q"]);
    for id in String::from_utf8_lossy(&listed.stdout).split_whitespace() {
        let _ = ctr(namespace, &["tasks", "kill", "-a", "-s", "SIGKILL", id]);
        for _ in 0..50 {
            if ctr(namespace, &["tasks", "rm", "-f", id]).status.success()
                || !String::from_utf8_lossy(&ctr(namespace, &["tasks", "ls", "-q"]).stdout)
                    .contains(id)
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = ctr(namespace, &["containers", "rm", id]);
    }
    let images = ctr(namespace, &["images", "ls", "-q"]);
    for name in String::from_utf8_lossy(&images.stdout).split_whitespace() {
        let _ = ctr(namespace, &["images", "rm", name]);
    }
    let _ = ctr(namespace, &["leases", "rm", "skiff-images"]);
    let _ = Command::new("ctr")
        .arg("-a")
        .arg(socket)
        .args(["namespaces", "rm", namespace])
        .output();
}

/// Removes a namespace's containers when dropped.
pub struct NamespaceGuard(pub String);

impl Drop for NamespaceGuard {
    fn drop(&mut self) {
        clean_namespace(&self.0);
    }
}

/// A registry on a loopback port, for this test process.
pub struct Registry {
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// `USER:PASSWORD` where the registry wants them.
    creds: Option<String>,
    _child: Child,
    _dir: tempfile::TempDir,
}

/// The user and password of the [`auth_registry`].
pub const REGISTRY_USER: &str = "skiff";
/// See [`REGISTRY_USER`].
pub const REGISTRY_PASSWORD: &str = "skiff-test-password";
/// `USER:PASSWORD` in base64, as `docker login` keeps it in `config.json`.
pub const REGISTRY_LOGIN: &str = "c2tpZmY6c2tpZmYtdGVzdC1wYXNzd29yZA==";
/// htpasswd's bcrypt of [`REGISTRY_PASSWORD`] (made once with the `bcrypt` crate, cost 4).
const REGISTRY_PASSWORD_BCRYPT: &str =
    "$2a$04$vHuZYAlCNAh5p0LV0PMR9O3zGFsXmHP/0DQWwFF1.ABsChkj1x91C";

/// The test process's registry, started on first use; it dies with the process.
pub fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| Registry::start(false))
}

/// The test process's registry that serves only [`REGISTRY_USER`] (HTTP basic auth).
pub fn auth_registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| Registry::start(true))
}

impl Registry {
    fn start(auth: bool) -> Registry {
        let dir = tempfile::tempdir().expect("registry dir");
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
            l.local_addr().expect("addr").port()
        };
        let addr = format!("127.0.0.1:{port}");
        let mut config = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n",
            dir.path().join("data").display()
        );
        if auth {
            let htpasswd = dir.path().join("htpasswd");
            std::fs::write(
                &htpasswd,
                format!("{REGISTRY_USER}:{REGISTRY_PASSWORD_BCRYPT}\n"),
            )
            .expect("htpasswd");
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: skiff-test\n    path: {}\n",
                htpasswd.display()
            ));
        }
        let config_file = dir.path().join("config.yml");
        std::fs::write(&config_file, config).expect("registry config");
        let mut command = Command::new("docker-registry");
        command
            .arg("serve")
            .arg(&config_file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: prctl in the child before exec touches nothing shared.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        // PR_SET_PDEATHSIG follows the thread that forked, not the process: fork from a
        // thread that lives as long as the process.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(command.spawn());
            loop {
                std::thread::park();
            }
        });
        let child = rx
            .recv()
            .expect("registry thread")
            .expect("start docker-registry (apt-get install docker-registry)");
        crate::wait_until(
            "the test registry to listen",
            Duration::from_secs(20),
            || std::net::TcpStream::connect(&addr).ok(),
        );
        Registry {
            addr,
            creds: auth.then(|| format!("{REGISTRY_USER}:{REGISTRY_PASSWORD}")),
            _child: child,
            _dir: dir,
        }
    }

    /// Pushes an OCI archive to this registry as `name:tag`; returns the reference.
    pub fn push(&self, archive: &Path, name_tag: &str) -> String {
        let reference = format!("{}/{name_tag}", self.addr);
        let mut command = Command::new("skopeo");
        command.args(["copy", "--quiet", "--dest-tls-verify=false"]);
        if let Some(creds) = &self.creds {
            command.arg("--dest-creds").arg(creds);
        }
        let out = command
            .arg(format!("oci-archive:{}", archive.display()))
            .arg(format!("docker://{reference}"))
            .output()
            .expect("run skopeo (apt-get install skopeo)");
        assert!(
            out.status.success(),
            "skopeo could not push {name_tag}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        reference
    }
}

fn tar_entry(builder: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8], mode: u32) {
    let mut header = tar::Header::new_ustar();
    header.set_size(data.len() as u64);
    header.set_mode(mode);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    builder
        .append_data(&mut header, path, data)
        .expect("tar entry");
}

fn tar_dir(builder: &mut tar::Builder<Vec<u8>>, path: &str, mode: u32) {
    let mut header = tar::Header::new_ustar();
    header.set_size(0);
    header.set_mode(mode);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Directory);
    builder
        .append_data(&mut header, path, std::io::empty())
        .expect("tar dir");
}

fn digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)))
}

/// Writes an OCI image layout archive of a busybox image named `name` (a full reference,
/// such as `docker.io/library/busybox:latest`) to `out`: `/bin/busybox` with its applets,
/// `/etc/passwd` (root, nobody, and `web` 1000:1000), `/www/index.html`; default command
/// `sh`. `config` is merged into the image config (Healthcheck, Env, ...).
pub fn busybox_image(out: &Path, name: &str, config: serde_json::Value) {
    let busybox =
        std::fs::read("/bin/busybox").expect("/bin/busybox (apt-get install busybox-static)");
    let applets = Command::new("/bin/busybox")
        .arg("--list")
        .output()
        .expect("busybox --list");
    let mut layer = tar::Builder::new(Vec::new());
    for dir in [
        "bin", "etc", "www", "proc", "sys", "dev", "root", "run", "var", "data",
    ] {
        tar_dir(&mut layer, dir, 0o755);
    }
    tar_dir(&mut layer, "tmp", 0o1777);
    tar_entry(&mut layer, "bin/busybox", &busybox, 0o755);
    for applet in String::from_utf8_lossy(&applets.stdout).split_whitespace() {
        if applet == "busybox" {
            continue;
        }
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_size(0);
        header.set_mode(0o777);
        header.set_mtime(0);
        layer
            .append_link(&mut header, format!("bin/{applet}"), "busybox")
            .expect("applet link");
    }
    tar_entry(
        &mut layer,
        "etc/passwd",
        b"root:x:0:0:root:/root:/bin/sh\nweb:x:1000:1000:web:/www:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
        0o644,
    );
    tar_entry(
        &mut layer,
        "etc/group",
        b"root:x:0:\nweb:x:1000:\nnogroup:x:65534:\n",
        0o644,
    );
    tar_entry(&mut layer, "www/index.html", b"hello from busybox\n", 0o644);
    let layer = layer.into_inner().expect("layer");
    let layer_digest = digest(&layer);
    let mut image_config = serde_json::json!({
        "Cmd": ["sh"], "Env": ["PATH=/bin"], "WorkingDir": "/"
    });
    if let (Some(base), Some(extra)) = (image_config.as_object_mut(), config.as_object()) {
        for (k, v) in extra {
            base.insert(k.clone(), v.clone());
        }
    }
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": image_config,
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
    });
    let config = serde_json::to_vec(&config).expect("config");
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest(&config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer.len()}],
    });
    let manifest = serde_json::to_vec(&manifest).expect("manifest");
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest(&manifest), "size": manifest.len(),
            "annotations": {"io.containerd.image.name": name, "org.opencontainers.image.ref.name": name.rsplit(':').next().unwrap_or("latest")},
        }],
    });
    let mut archive = tar::Builder::new(Vec::new());
    tar_entry(
        &mut archive,
        "oci-layout",
        br#"{"imageLayoutVersion":"1.0.0"}"#,
        0o644,
    );
    tar_entry(
        &mut archive,
        "index.json",
        &serde_json::to_vec(&index).expect("index"),
        0o644,
    );
    for blob in [&layer, &config, &manifest] {
        let d = digest(blob);
        tar_entry(
            &mut archive,
            &format!("blobs/sha256/{}", &d["sha256:".len()..]),
            blob,
            0o644,
        );
    }
    let mut file = std::fs::File::create(out).expect("image archive");
    file.write_all(&archive.into_inner().expect("archive"))
        .expect("write archive");
}

/// The busybox image (`docker.io/library/busybox:test`), pushed once to this process's
/// registry; returns its reference there.
pub fn busybox_in_registry() -> &'static str {
    static IMAGE: OnceLock<String> = OnceLock::new();
    IMAGE.get_or_init(|| push_busybox(registry()))
}

/// The busybox image pushed once to this process's [`auth_registry`]; its reference there.
pub fn busybox_in_auth_registry() -> &'static str {
    static IMAGE: OnceLock<String> = OnceLock::new();
    IMAGE.get_or_init(|| push_busybox(auth_registry()))
}

fn push_busybox(registry: &Registry) -> String {
    let dir = tempfile::tempdir().expect("dir");
    let archive = dir.path().join("busybox.tar");
    busybox_image(
        &archive,
        "docker.io/library/busybox:test",
        serde_json::json!({}),
    );
    registry.push(&archive, "busybox:test")
}

/// Rewrites the OCI archive at `oci` (from [`busybox_image`]) in `docker save`'s format:
/// `manifest.json` naming the config and the (uncompressed) layer tars, tagged `tag`.
pub fn docker_save_from_oci(oci: &Path, out: &Path, tag: &str) {
    let mut archive = tar::Archive::new(std::fs::File::open(oci).expect("oci archive"));
    let mut blobs = std::collections::HashMap::new();
    for entry in archive.entries().expect("entries") {
        let mut entry = entry.expect("entry");
        let path = entry.path().expect("path").to_string_lossy().into_owned();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut data).expect("read");
        blobs.insert(path, data);
    }
    let index: serde_json::Value = serde_json::from_slice(&blobs["index.json"]).expect("index");
    let blob =
        |digest: &str| blobs[&format!("blobs/sha256/{}", &digest["sha256:".len()..])].clone();
    let manifest: serde_json::Value =
        serde_json::from_slice(&blob(index["manifests"][0]["digest"].as_str().unwrap()))
            .expect("manifest");
    let config_digest = manifest["config"]["digest"].as_str().unwrap().to_owned();
    let layer_digest = manifest["layers"][0]["digest"].as_str().unwrap().to_owned();
    let config_name = format!("{}.json", &config_digest["sha256:".len()..]);
    let layer_name = format!("{}/layer.tar", &layer_digest["sha256:".len()..]);
    let saved =
        serde_json::json!([{"Config": config_name, "RepoTags": [tag], "Layers": [layer_name]}]);
    let mut builder = tar::Builder::new(Vec::new());
    tar_entry(
        &mut builder,
        "manifest.json",
        &serde_json::to_vec(&saved).unwrap(),
        0o644,
    );
    tar_entry(&mut builder, &config_name, &blob(&config_digest), 0o644);
    tar_entry(&mut builder, &layer_name, &blob(&layer_digest), 0o644);
    std::fs::write(out, builder.into_inner().expect("archive")).expect("write archive");
}
