//! Docker API benchmark: `service create --replicas 50` to converged through skiffd's Engine
//! API (the `docker` client) against the same through skiff's own CLI, on one loopback
//! cluster (1 manager, 2 workers, runtime `process`); and the API's cost per request,
//! `GET /services` over HTTP against `Control.ListServices` over gRPC, both on the node's
//! unix sockets with one kept-alive connection.
//!
//! Run: `cargo build --bins && cargo bench --profile dev -p integration-tests --bench docker_api`
//! (`SKIFF_DOCKER` picks the docker client). dockerd's own swarm mode is not started here:
//! this machine's tests never start dockerd.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::process::Command;
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

fn docker(cluster: &Cluster, args: &[&str]) -> String {
    let out = Command::new(docker_bin())
        .env("DOCKER_HOST", cluster.host(1).docker_host())
        .env("DOCKER_CONFIG", cluster.dir().join("docker-config"))
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

/// Seconds from `create` to every replica of `name` running, polled the same way for both.
fn converge(cluster: &Cluster, name: &str, create: impl FnOnce()) -> f64 {
    let start = Instant::now();
    create();
    wait_until(
        &format!("{name} to converge"),
        Duration::from_secs(120),
        || {
            let out = docker(
                cluster,
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

fn main() {
    let mut cluster = Cluster::new(3);
    cluster.form(1);
    println!("skiff Docker API benchmark: 1 manager + 2 workers on loopback, runtime process");
    println!();
    let cli = converge(&cluster, "by-skiff", || {
        cluster.ok(
            1,
            &[
                "service",
                "create",
                "--detach",
                "--name",
                "by-skiff",
                "--replicas",
                REPLICAS,
                "busybox",
                "sleep",
                "600",
            ],
        );
    });
    let api = converge(&cluster, "by-docker", || {
        docker(
            &cluster,
            &[
                "service",
                "create",
                "--detach",
                "--name",
                "by-docker",
                "--replicas",
                REPLICAS,
                "busybox",
                "sleep",
                "600",
            ],
        );
    });
    println!(
        "{:<52} {:>10}",
        "service create --replicas 50 to converged", "seconds"
    );
    println!("{:<52} {:>10.2}", "  skiff CLI (gRPC, local socket)", cli);
    println!(
        "{:<52} {:>10.2}",
        "  docker client (Engine API, docker.sock)", api
    );
    println!();
    let socket = cluster.host(1).docker_host();
    let http = http_per_request(socket.strip_prefix("unix://").expect("unix"));
    let grpc = grpc_per_request(&cluster.host(1).host_arg());
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
