//! The containerd runtime against a real containerd and runc: images from a registry on
//! loopback and from archives, the container spec reaching the process, limits, stop grace,
//! mounts, commands run inside (health checks), logs with rotation, and adoption by a new
//! runtime after a restart.

use std::time::{Duration, Instant};

use agent_runtime::containerd::{ContainerdConfig, ContainerdRuntime, RegistryOptions};
use agent_runtime::{Runtime, RuntimeError, RuntimeState};
use futures::StreamExt;
use integration_tests::containerd::{
    busybox_image, busybox_in_registry, docker_save_from_oci, registry, socket, unique_namespace,
    NamespaceGuard,
};

struct Fixture {
    runtime: ContainerdRuntime,
    config: ContainerdConfig,
    _namespace: NamespaceGuard,
    dir: tempfile::TempDir,
}

impl Fixture {
    /// The same node after a restart of its daemon: this runtime dropped, a new one over the
    /// same containerd namespace and state directory.
    async fn restarted(self) -> Fixture {
        let Fixture {
            runtime,
            config,
            _namespace,
            dir,
        } = self;
        drop(runtime);
        let runtime = ContainerdRuntime::connect(config.clone())
            .await
            .expect("reconnect");
        Fixture {
            runtime,
            config,
            _namespace,
            dir,
        }
    }
}

async fn fixture(log_max_bytes: u64) -> Fixture {
    cli::tls::install_crypto_provider();
    let dir = tempfile::tempdir().expect("state dir");
    let namespace = unique_namespace("rt");
    let config = ContainerdConfig {
        socket: socket(),
        namespace: namespace.clone(),
        state_dir: dir.path().join("containers"),
        log: agent_runtime::LogDefaults::local(log_max_bytes),
        registries: RegistryOptions {
            insecure: vec![registry().addr.clone()],
        },
        logger: integration_tests::bin("skiffd"),
    };
    let runtime = ContainerdRuntime::connect(config.clone())
        .await
        .expect("connect to containerd");
    Fixture {
        runtime,
        config,
        _namespace: NamespaceGuard(namespace),
        dir,
    }
}

fn pushed_image() -> &'static str {
    busybox_in_registry()
}

fn task(
    id: &str,
    container: proto::ContainerSpec,
    limits: Option<proto::Resources>,
) -> proto::Task {
    proto::Task {
        meta: Some(proto::Meta {
            id: id.into(),
            ..Default::default()
        }),
        spec: Some(
            proto::TaskSpec {
                container: Some(container),
                resources: limits.map(|l| proto::ResourceRequirements {
                    limits: Some(l),
                    reservations: None,
                }),
                ..Default::default()
            }
            .into(),
        ),
        ..Default::default()
    }
}

fn shell(image: &str, script: &str) -> proto::ContainerSpec {
    proto::ContainerSpec {
        image: image.into(),
        command: vec!["sh".into(), "-c".into(), script.into()],
        ..Default::default()
    }
}

/// A task ID no other test (or earlier run) uses: the cgroup and containers are
/// machine-wide.
fn task_id(name: &str) -> String {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{name}-{}-{n}", std::process::id())
}

async fn run_to_end(rt: &ContainerdRuntime, task: &proto::Task) -> agent_runtime::Exit {
    let id = task.meta.as_ref().unwrap().id.clone();
    rt.prepare(task).await.expect("prepare");
    rt.start(&id).await.expect("start");
    tokio::time::timeout(Duration::from_secs(60), rt.wait(&id))
        .await
        .expect("the task ends")
        .expect("wait")
}

async fn log_text(rt: &ContainerdRuntime, id: &str) -> String {
    let lines: Vec<_> = rt.logs(id, None, true).await.expect("logs").collect().await;
    lines
        .iter()
        .map(|l| String::from_utf8_lossy(&l.data).into_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pulled_image_runs_with_the_container_spec() {
    let f = fixture(0).await;
    let id = task_id("spec");
    let mut c = shell(
        pushed_image(),
        "id -u; id -g; pwd; hostname; echo $GREETING; exit 3",
    );
    c.env = vec!["GREETING=hello".into()];
    c.dir = "/www".into();
    c.user = "web".into();
    c.hostname = "myhost".into();
    let exit = run_to_end(&f.runtime, &task(&id, c, None)).await;
    assert_eq!(exit.code, 3, "{exit:?}");
    assert!(!exit.oom_killed);
    let out = log_text(&f.runtime, &id).await;
    assert_eq!(out, "1000\n1000\n/www\nmyhost\nhello\n");
    f.runtime.remove(&id).await.expect("remove");
    assert!(f.runtime.list().await.unwrap().is_empty());
}

/// Loads `archive`, expects it to name `full`, and runs `short` with pull policy never: the
/// image's own command prints its line.
async fn load_and_run(f: &Fixture, archive: &std::path::Path, full: &str, short: &str) {
    let names = f.runtime.load_image(archive).await.expect("load");
    assert_eq!(names, [full]);
    let id = task_id("loaded");
    let c = proto::ContainerSpec {
        image: short.into(),
        pull_policy: proto::PullPolicy::Never as i32,
        ..Default::default()
    };
    let exit = run_to_end(&f.runtime, &task(&id, c, None)).await;
    assert_eq!(exit.code, 0, "{exit:?}");
    assert_eq!(log_text(&f.runtime, &id).await, "from the image cmd\n");
    f.runtime.remove(&id).await.expect("remove");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_loaded_image_runs_with_pull_policy_never() {
    let f = fixture(0).await;
    let archive = f.dir.path().join("loaded.tar");
    busybox_image(
        &archive,
        "docker.io/library/loaded:1",
        serde_json::json!({"Cmd": ["echo", "from the image cmd"]}),
    );
    load_and_run(&f, &archive, "docker.io/library/loaded:1", "loaded:1").await;

    // The same image as `docker save` writes it.
    let saved = f.dir.path().join("saved.tar");
    docker_save_from_oci(&archive, &saved, "saved/app:3");
    load_and_run(&f, &saved, "docker.io/saved/app:3", "saved/app:3").await;

    let garbage = f.dir.path().join("garbage.tar");
    std::fs::write(&garbage, b"not a tar at all").unwrap();
    let e = f
        .runtime
        .load_image(&garbage)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("docker save"), "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_image_fails_with_a_clear_error() {
    let f = fixture(0).await;
    let missing = format!("{}/nothing/here:v1", registry().addr);
    let e = f
        .runtime
        .prepare(&task(&task_id("missing"), shell(&missing, "true"), None))
        .await
        .unwrap_err();
    assert!(e.is_permanent());
    let e = e.to_string();
    assert!(
        e.contains("pulling image") && e.contains("nothing/here"),
        "{e}"
    );
    let never = proto::ContainerSpec {
        pull_policy: proto::PullPolicy::Never as i32,
        ..shell("absent:1", "true")
    };
    let e = f
        .runtime
        .prepare(&task(&task_id("never"), never, None))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("not on this node") && e.contains("skiff image load"),
        "{e}"
    );
    let e = f
        .runtime
        .prepare(&task(&task_id("bad"), shell("Not A Ref", "true"), None))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("not valid"), "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_memory_limit_is_enforced_as_oom_and_cpu_and_pids_limits_reach_the_cgroup() {
    let f = fixture(0).await;
    let id = task_id("oom");
    let limits = proto::Resources {
        nano_cpus: 500_000_000,
        memory_bytes: 16 << 20,
        pids: 64,
    };
    let c = shell(
        pushed_image(),
        "sleep 2; a=xxxxxxxxxxxxxxxx; while true; do a=$a$a; done",
    );
    let t = task(&id, c, Some(limits));
    f.runtime.prepare(&t).await.expect("prepare");
    f.runtime.start(&id).await.expect("start");
    let quota = std::fs::read_to_string(format!("/sys/fs/cgroup/cpu/skiff/{id}/cpu.cfs_quota_us"))
        .or_else(|_| std::fs::read_to_string(format!("/sys/fs/cgroup/skiff/{id}/cpu.max")))
        .expect("the task's cpu cgroup");
    assert!(
        quota.trim() == "50000" || quota.starts_with("50000 "),
        "{quota}"
    );
    let pids = std::fs::read_to_string(format!("/sys/fs/cgroup/pids/skiff/{id}/pids.max"))
        .or_else(|_| std::fs::read_to_string(format!("/sys/fs/cgroup/skiff/{id}/pids.max")))
        .expect("the task's pids cgroup");
    assert_eq!(pids.trim(), "64");
    let exit = tokio::time::timeout(Duration::from_secs(60), f.runtime.wait(&id))
        .await
        .expect("ends")
        .expect("wait");
    assert!(exit.oom_killed, "{exit:?}");
    assert!(exit.message.contains("OOM"), "{exit:?}");
    f.runtime.remove(&id).await.expect("remove");
}

#[tokio::test(flavor = "multi_thread")]
async fn stop_kills_a_task_that_ignores_sigterm_after_the_grace_period() {
    let f = fixture(0).await;
    let id = task_id("grace");
    let t = task(
        &id,
        shell(pushed_image(), "trap '' TERM; while true; do sleep 1; done"),
        None,
    );
    f.runtime.prepare(&t).await.expect("prepare");
    f.runtime.start(&id).await.expect("start");
    let started = Instant::now();
    f.runtime
        .stop(&id, Some(Duration::from_secs(2)))
        .await
        .expect("stop");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(2),
        "stopped after {took:?}, before the grace period"
    );
    let exit = f.runtime.wait(&id).await.expect("wait");
    assert_eq!(exit.signal, Some(9), "{exit:?}");
    f.runtime.remove(&id).await.expect("remove");
}

#[tokio::test(flavor = "multi_thread")]
async fn bind_volume_and_tmpfs_mounts_work_and_a_volume_keeps_its_data() {
    let f = fixture(0).await;
    let host_dir = f.dir.path().join("host");
    std::fs::create_dir_all(&host_dir).unwrap();
    std::fs::write(host_dir.join("in.txt"), "from the host\n").unwrap();
    let volume = format!("vol{}", std::process::id());
    let mount = |t: proto::MountType, source: &str, target: &str, ro: bool| proto::Mount {
        r#type: t as i32,
        source: source.into(),
        target: target.into(),
        read_only: ro,
        tmpfs_size_bytes: 0,
    };
    let mut c = shell(
        pushed_image(),
        "cat /in/in.txt; echo kept > /data/f; grep -c ' /scratch tmpfs' /proc/mounts; touch /in/x 2>/dev/null || echo read-only",
    );
    c.mounts = vec![
        mount(
            proto::MountType::Bind,
            host_dir.to_str().unwrap(),
            "/in",
            true,
        ),
        mount(proto::MountType::Volume, &volume, "/data", false),
        mount(proto::MountType::Tmpfs, "", "/scratch", false),
    ];
    let first = task_id("mounts");
    let exit = run_to_end(&f.runtime, &task(&first, c.clone(), None)).await;
    assert_eq!(exit.code, 0, "{exit:?}");
    let out = log_text(&f.runtime, &first).await;
    assert!(out.starts_with("from the host\n1\n"), "{out}");
    assert!(out.contains("read-only"), "{out}");
    f.runtime.remove(&first).await.expect("remove");

    let second = task_id("mounts2");
    let mut c2 = shell(pushed_image(), "cat /data/f");
    c2.mounts = vec![mount(proto::MountType::Volume, &volume, "/data", false)];
    run_to_end(&f.runtime, &task(&second, c2, None)).await;
    assert_eq!(log_text(&f.runtime, &second).await, "kept\n");
    f.runtime.remove(&second).await.expect("remove");
}

#[tokio::test(flavor = "multi_thread")]
async fn commands_run_inside_and_logs_rotate_within_bounds() {
    let max = 4096u64;
    let f = fixture(max).await;
    let id = task_id("exec");
    let t = task(
        &id,
        shell(
            pushed_image(),
            "i=0; while [ $i -lt 2000 ]; do echo line $i; i=$((i+1)); done; sleep 1000",
        ),
        None,
    );
    f.runtime.prepare(&t).await.expect("prepare");
    f.runtime.start(&id).await.expect("start");
    let out = f
        .runtime
        .exec(
            &id,
            &["sh".into(), "-c".into(), "echo inside; exit 4".into()],
            Duration::from_secs(10),
        )
        .await
        .expect("exec");
    assert_eq!(out.code, 4);
    assert_eq!(out.output, "inside\n");
    let timed_out = f
        .runtime
        .exec(
            &id,
            &["sleep".into(), "30".into()],
            Duration::from_millis(300),
        )
        .await
        .expect("exec");
    assert_eq!(timed_out.code, -1, "{timed_out:?}");

    let task_dir = f.config.state_dir.join("tasks").join(&id);
    integration_tests::wait_until("the last line is logged", Duration::from_secs(20), || {
        let text = std::fs::read_to_string(task_dir.join("task.log")).unwrap_or_default();
        text.contains("line 1999").then_some(())
    });
    let size = |name: &str| std::fs::metadata(task_dir.join(name)).map_or(0, |m| m.len());
    assert!(
        size("task.log") <= max && size("task.log.1") <= max,
        "{} {}",
        size("task.log"),
        size("task.log.1")
    );
    assert!(size("task.log.1") > 0, "the log never rotated");
    let tail: Vec<_> = f
        .runtime
        .logs(&id, Some(1), false)
        .await
        .expect("logs")
        .collect()
        .await;
    assert_eq!(tail[0].data, b"line 1999\n");
    f.runtime
        .stop(&id, Some(Duration::ZERO))
        .await
        .expect("stop");
    f.runtime.remove(&id).await.expect("remove");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_runtime_adopts_running_containers() {
    let f = fixture(0).await;
    let id = task_id("adopt");
    f.runtime
        .prepare(&task(
            &id,
            shell(pushed_image(), "echo up; while true; do sleep 1; done"),
            None,
        ))
        .await
        .expect("prepare");
    f.runtime.start(&id).await.expect("start");
    let before = f.runtime.list().await.expect("list");
    let f = f.restarted().await;
    let again = &f.runtime;
    let after = again.list().await.expect("list");
    assert_eq!(before, after);
    assert!(
        matches!(after[0].state, RuntimeState::Running { pid: Some(_) }),
        "{after:?}"
    );
    again
        .stop(&id, Some(Duration::from_secs(1)))
        .await
        .expect("stop");
    assert!(matches!(
        again.list().await.unwrap()[0].state,
        RuntimeState::Exited(_)
    ));
    assert_eq!(log_text(again, &id).await, "up\n");
    again.remove(&id).await.expect("remove");
}

/// True while `pid` is a process that has not ended (a zombie has).
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        let state = stat.rsplit_once(')').map(|(_, rest)| rest.trim_start());
        !state.is_some_and(|s| s.starts_with('Z') || s.starts_with('X'))
    })
}

/// The logger's PID, from the file it writes in its task directory.
fn logger_pid(task_dir: &std::path::Path) -> i32 {
    std::fs::read_to_string(task_dir.join("logger.pid"))
        .expect("the logger wrote its PID")
        .trim()
        .parse()
        .expect("a PID")
}

/// A logger program that leaves a writer of the container's stdout pipe behind before it
/// runs skiffd's logger: what a shim does that keeps the pipes after a failed create (one
/// containerd's cleanup gave up on). The writer is killed when this is dropped.
struct LeakingLogger {
    program: std::path::PathBuf,
    writer_pid: std::path::PathBuf,
}

impl LeakingLogger {
    fn new(dir: &std::path::Path) -> LeakingLogger {
        use std::os::unix::fs::PermissionsExt as _;
        let program = dir.join("leaking-logger");
        let writer_pid = dir.join("leaked-writer.pid");
        // The shim runs `<program> logger <task dir>`; fd 3 is the read end of the
        // container's stdout pipe, and opening it through /proc for writing gives a writer.
        // The writer closes fd 5, so the shim still sees the logger ready.
        let script = format!(
            "#!/bin/sh\nsleep 600 </dev/null >/proc/self/fd/3 2>&1 3>&- 4>&- 5>&- &\necho $! >'{}'\nexec '{}' \"$@\"\n",
            writer_pid.display(),
            integration_tests::bin("skiffd").display()
        );
        std::fs::write(&program, script).expect("write the logger program");
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755))
            .expect("make it executable");
        LeakingLogger {
            program,
            writer_pid,
        }
    }

    fn writer(&self) -> Option<i32> {
        std::fs::read_to_string(&self.writer_pid)
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

impl Drop for LeakingLogger {
    fn drop(&mut self) {
        if let Some(pid) = self.writer() {
            // SAFETY: kill has no memory effects; the PID is the sleep this test started.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_create_leaves_no_logger_behind_though_its_pipes_stay_open() {
    let f = fixture(0).await;
    let leaking = LeakingLogger::new(f.dir.path());
    let config = ContainerdConfig {
        logger: leaking.program.clone(),
        ..f.config.clone()
    };
    let rt = ContainerdRuntime::connect(config.clone())
        .await
        .expect("connect to containerd");
    let id = task_id("nocreate");
    let c = proto::ContainerSpec {
        image: pushed_image().into(),
        command: vec!["/no/such/program".into()],
        ..Default::default()
    };
    rt.prepare(&task(&id, c, None)).await.expect("prepare");
    // runc fails the create, after containerd's shim started the logger.
    let e = rt.start(&id).await.unwrap_err();
    assert!(matches!(e, RuntimeError::StartFailed(_)), "{e}");
    let writer = leaking.writer().expect("the leaked writer started");
    assert!(alive(writer), "the leaked writer holds the logger's pipe");
    let dir = config.state_dir.join("tasks").join(&id);
    let logger = logger_pid(&dir);
    integration_tests::wait_until("the logger to exit", Duration::from_secs(20), || {
        (!alive(logger)).then_some(())
    });
    // What runc wrote to the container's stderr is logged, and the log is complete, so
    // following it ends.
    let text = tokio::time::timeout(Duration::from_secs(20), log_text(&rt, &id))
        .await
        .expect("the log of a task that did not start ends");
    assert!(text.contains("/no/such/program"), "{text}");
    rt.remove(&id).await.expect("remove");
    assert!(!dir.exists());
}

/// The snapshots containerd keeps in `namespace`, by key.
fn snapshots(namespace: &str) -> String {
    let out = std::process::Command::new("ctr")
        .arg("-a")
        .arg(socket())
        .args(["-n", namespace, "snapshots", "ls"])
        .output()
        .expect("run ctr");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_runtime_lists_containers_of_removed_tasks_and_removes_them() {
    // Small log files: a logger still at work when its task is removed rotates them.
    let f = fixture(4096).await;
    // What a skiffd leaves behind when it stops: a task that runs, one that ended, and one
    // prepared but never started.
    let running = task_id("left-running");
    let ended = task_id("left-ended");
    let unstarted = task_id("left-unstarted");
    let mut c = shell(
        pushed_image(),
        // Much output on its way out, as the task is stopped just before it is removed.
        "trap 'seq 20000; exit 0' TERM; echo up; while true; do sleep 1; done",
    );
    c.stop_grace_period_ms = Some(20_000);
    f.runtime
        .prepare(&task(&running, c, None))
        .await
        .expect("prepare");
    f.runtime.start(&running).await.expect("start");
    run_to_end(
        &f.runtime,
        &task(&ended, shell(pushed_image(), "echo done"), None),
    )
    .await;
    f.runtime
        .prepare(&task(&unstarted, shell(pushed_image(), "true"), None))
        .await
        .expect("prepare");
    let tasks_dir = f.config.state_dir.join("tasks");
    let loggers: Vec<i32> = [&running, &ended]
        .iter()
        .map(|id| logger_pid(&tasks_dir.join(id)))
        .collect();
    // After a restart, the agent adopts what its saved assignments name (none here) and
    // cleans up the rest: stop, then remove.
    let f = f.restarted().await;
    let (again, config) = (&f.runtime, &f.config);
    let mut listed = again.list().await.expect("list");
    listed.sort_by(|a, b| a.task_id.cmp(&b.task_id));
    let states: Vec<_> = listed
        .iter()
        .map(|t| (t.task_id.as_str(), &t.state))
        .collect();
    assert!(
        matches!(
            states[..],
            [
                (e, RuntimeState::Exited(_)),
                (r, RuntimeState::Running { pid: Some(_) }),
                (u, RuntimeState::Created),
            ] if e == ended && r == running && u == unstarted
        ),
        "{listed:?}"
    );
    let before = snapshots(&config.namespace);
    for id in [&running, &ended, &unstarted] {
        assert!(
            before.contains(id.as_str()),
            "no snapshot for {id}: {before}"
        );
    }
    for task in &listed {
        let _ = again.stop(&task.task_id, None).await;
        again.remove(&task.task_id).await.expect("remove");
    }

    assert!(again.list().await.expect("list").is_empty());
    let left = snapshots(&config.namespace);
    for id in [&running, &ended, &unstarted] {
        assert!(!tasks_dir.join(id).exists(), "{id}'s directory is left");
        assert!(
            !left.contains(id.as_str()),
            "{id}'s snapshot is left: {left}"
        );
    }
    for pid in loggers {
        integration_tests::wait_until("the logger to exit", Duration::from_secs(20), || {
            (!alive(pid)).then_some(())
        });
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_containerd_socket_says_how_to_get_one() {
    let dir = tempfile::tempdir().expect("dir");
    let config = ContainerdConfig {
        socket: dir.path().join("no-such.sock"),
        namespace: "skiff".into(),
        state_dir: dir.path().join("state"),
        log: agent_runtime::LogDefaults::local(0),
        registries: RegistryOptions::default(),
        logger: integration_tests::bin("skiffd"),
    };
    let e = ContainerdRuntime::connect(config)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("apt-get install containerd") && e.contains("--containerd-socket"),
        "{e}"
    );
}
