//! Docker API benchmark: `service create --replicas 50` to converged through skiffd's Engine
//! API (the `docker` client), through skiff's own CLI, and through dockerd's own swarm mode,
//! each a one-node swarm running real containers (skiffd on skiff's test containerd, dockerd
//! on the containerd it starts itself), the image pulled from the test's registry on
//! loopback; and the API's cost per request, `GET /services` over HTTP against
//! `Control.ListServices` over gRPC, both on the node's unix sockets with one kept-alive
//! connection.
//!
//! Run (as root, with containerd, docker.io and docker-registry installed):
//! `cargo build --bins && cargo bench --profile dev -p integration-tests --bench docker_api`
//! (`SKIFF_DOCKER` picks the docker client). dockerd runs with its own data root, exec
//! root and socket in a temporary directory, no bridge and no iptables rules, and is
//! stopped with its containers at the end; tests never start it.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use integration_tests::{wait_until, Cluster};

const REPLICAS: &str = "50";
const REQUESTS: usize = 300;

fn docker_bin() -> String {
    std::env::var("SKIFF_DOCKER").unwrap_or_else(|_| {
        ["/usr/local/bin/docker", "/usr/bin/docker"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("no docker client: install docker.io or set SKIFF_DOCKER")
            .to_string()
    })
}

/// Runs the docker client against `host` (a `DOCKER_HOST`), with a config of the bench's
/// own in `config`.
fn docker_at(host: &str, config: &Path, args: &[&str]) -> String {
    let out = Command::new(docker_bin())
        .env("DOCKER_HOST", host)
        .env("DOCKER_CONFIG", config)
        .args(args)
        .output()
        .expect("run docker");
    assert!(
        out.status.success(),
        "docker {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn docker(cluster: &Cluster, args: &[&str]) -> String {
    docker_at(
        &cluster.host(1).docker_host(),
        &cluster.dir().join("docker-config"),
        args,
    )
}

/// dockerd in swarm mode, everything of its own in a temporary directory; stopped, with
/// its services and containers, on drop.
struct Dockerd {
    dir: tempfile::TempDir,
    child: Child,
}

/// A port no one listens on now, on loopback.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

impl Dockerd {
    fn start(insecure_registry: &str) -> Self {
        // Under /tmp: dockerd's sockets live below its exec root and unix paths are short.
        let dir = tempfile::Builder::new()
            .prefix("skiff-dockerd")
            .tempdir_in("/tmp")
            .expect("dockerd dir");
        let d = dir.path();
        let log = std::fs::File::create(d.join("dockerd.log")).expect("log");
        let child = Command::new("dockerd")
            .arg("--data-root")
            .arg(d.join("root"))
            .arg("--exec-root")
            .arg(d.join("exec"))
            .arg("--pidfile")
            .arg(d.join("dockerd.pid"))
            .arg("-H")
            .arg(format!("unix://{}", d.join("docker.sock").display()))
            .args([
                "--bridge",
                "none",
                "--iptables=false",
                "--ip6tables=false",
                "--storage-driver",
                "vfs",
                "--insecure-registry",
                insecure_registry,
            ])
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("dockerd (install docker.io)");
        let dockerd = Self { dir, child };
        wait_until("dockerd to answer", Duration::from_secs(60), || {
            Command::new(docker_bin())
                .env("DOCKER_HOST", dockerd.host())
                .env("DOCKER_CONFIG", dockerd.config())
                .arg("version")
                .output()
                .ok()
                .filter(|o| o.status.success())
        });
        dockerd.docker(&[
            "swarm",
            "init",
            "--advertise-addr",
            "127.0.0.1",
            "--listen-addr",
            &format!("127.0.0.1:{}", free_port()),
            "--data-path-port",
            &free_port().to_string(),
        ]);
        dockerd
    }

    fn host(&self) -> String {
        format!("unix://{}", self.dir.path().join("docker.sock").display())
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("docker-config")
    }

    fn docker(&self, args: &[&str]) -> String {
        docker_at(&self.host(), &self.config(), args)
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let run = |args: &[&str]| {
            Command::new(docker_bin())
                .env("DOCKER_HOST", self.host())
                .env("DOCKER_CONFIG", self.config())
                .args(args)
                .output()
                .ok()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default()
        };
        for id in run(&["service", "ls", "-q"]).lines() {
            run(&["service", "rm", id]);
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while !run(&["ps", "-aq"]).trim().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
        }
        run(&["swarm", "leave", "--force"]);
        // SAFETY: a signal to the dockerd this bench started.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Seconds from `create` to every replica of `name` running, polled the same way for all
/// (the docker client against `host`).
fn converge(host: &str, config: &Path, name: &str, create: impl FnOnce()) -> f64 {
    let start = Instant::now();
    create();
    wait_until(
        &format!("{name} to converge"),
        Duration::from_secs(180),
        || {
            let out = docker_at(
                host,
                config,
                &[
                    "service",
                    "ls",
                    "--filter",
                    &format!("name={name}"),
                    "--format",
                    "{{.Replicas}}",
                ],
            );
            (out.trim() == format!("{REPLICAS}/{REPLICAS}")).then_some(())
        },
    );
    start.elapsed().as_secs_f64()
}

/// Mean microseconds of `GET /v1.50/services` on one kept-alive connection.
fn http_per_request(socket: &str) -> f64 {
    let stream = std::os::unix::net::UnixStream::connect(socket).expect("connect");
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut writer = stream;
    let start = Instant::now();
    for _ in 0..REQUESTS {
        writer
            .write_all(b"GET /v1.50/services HTTP/1.1\r\nHost: docker\r\n\r\n")
            .expect("write");
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).expect("read header");
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().expect("length");
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).expect("body");
    }
    start.elapsed().as_secs_f64() * 1e6 / REQUESTS as f64
}

/// Mean microseconds of `Control.ListServices` on one channel to the local socket.
fn grpc_per_request(host: &str) -> f64 {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let host: cli::client::Host = host.parse().expect("host");
        let client = cli::client::Client::connect(&host, std::path::Path::new(""))
            .await
            .expect("connect");
        let mut control = client.control();
        let start = Instant::now();
        for _ in 0..REQUESTS {
            control
                .list_services(proto::ListServicesRequest::default())
                .await
                .expect("list");
        }
        start.elapsed().as_secs_f64() * 1e6 / REQUESTS as f64
    })
}

/// `docker service create --detach --replicas 50 IMAGE sleep 600` through the client.
fn create_args<'a>(name: &'a str, image: &'a str) -> Vec<&'a str> {
    vec![
        "service",
        "create",
        "--detach",
        "--name",
        name,
        "--replicas",
        REPLICAS,
        image,
        "sleep",
        "600",
    ]
}

fn main() {
    use integration_tests::containerd::{busybox_in_registry, registry};
    let image = busybox_in_registry();
    let mut cluster = Cluster::new(1).with_containerd();
    cluster.form(1);
    let dockerd = Dockerd::start(&registry().addr);
    let skiff_host = cluster.host(1).docker_host();
    let skiff_config = cluster.dir().join("docker-config");
    println!(
        "skiff Docker API benchmark: one-node swarms on loopback running containers of {image} \
         (the test registry on loopback): skiffd on skiff's test containerd; dockerd {} on its own",
        dockerd
            .docker(&["version", "--format", "{{.Server.Version}}"])
            .trim()
    );
    println!();
    // The image is pulled once on each before anything is timed.
    let warm = |host: &str, config: &Path, name: &str| {
        converge(host, config, name, || {
            docker_at(host, config, &create_args(name, image));
        });
        docker_at(host, config, &["service", "rm", name]);
    };
    warm(&skiff_host, &skiff_config, "warm");
    warm(&dockerd.host(), &dockerd.config(), "warm");

    let cli = converge(&skiff_host, &skiff_config, "by-skiff", || {
        cluster.ok(1, &create_args("by-skiff", image));
    });
    let api = converge(&skiff_host, &skiff_config, "by-docker", || {
        docker(&cluster, &create_args("by-docker", image));
    });
    let http = http_per_request(skiff_host.strip_prefix("unix://").expect("unix"));
    let grpc = grpc_per_request(&cluster.host(1).host_arg());
    for name in ["by-skiff", "by-docker"] {
        docker(&cluster, &["service", "rm", name]);
    }
    wait_until("skiff's tasks to stop", Duration::from_secs(120), || {
        docker(&cluster, &["ps", "-q"])
            .trim()
            .is_empty()
            .then_some(())
    });
    let by_dockerd = converge(&dockerd.host(), &dockerd.config(), "by-dockerd", || {
        dockerd.docker(&create_args("by-dockerd", image));
    });
    drop(dockerd);

    println!(
        "{:<52} {:>10}",
        "service create --replicas 50 to converged", "seconds"
    );
    for (what, seconds) in [
        ("  skiff CLI -> skiffd (gRPC, local socket)", cli),
        ("  docker client -> skiffd (Engine API)", api),
        ("  docker client -> dockerd (swarm mode)", by_dockerd),
    ] {
        println!("{what:<52} {seconds:>10.2}");
    }
    println!();
    println!(
        "{:<52} {:>10}",
        "list 2 services, mean of 300 on one connection", "µs"
    );
    println!("{:<52} {:>10.0}", "  Control.ListServices (gRPC)", grpc);
    println!(
        "{:<52} {:>10.0}",
        "  GET /services (Engine API, which calls the above)", http
    );
    println!("{:<52} {:>10.0}", "  overhead per request", http - grpc);
}
