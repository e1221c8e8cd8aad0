//! The `containerd` backend: each task is a container run by containerd and runc, from an
//! OCI image pulled from a registry (or loaded from an archive), isolated by namespaces and
//! cgroups.
//!
//! containerd keeps the containers; skiff labels each with its task ID, so a skiffd that
//! restarts finds its tasks again through containerd ([`Runtime::list`]) and the containers
//! run on meanwhile under containerd's shims. The task's output goes to a small logger that
//! containerd's shim starts (`skiffd logger`, see [`logger_main`]), so it is logged even
//! while skiffd is down. What skiff keeps on the node's disk, per task: the files
//! bind-mounted into the container (`hosts`, `hostname`, `resolv.conf`), the log, and how
//! the task ended once known (`exit.json`, which outlives containerd's record of it).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tonic::Code;

use crate::progress::ProgressSender;
use crate::signal::{parse_signal, signal_name};
use crate::{
    check_task_id, ExecOutput, Exit, LogStream, Runtime, RuntimeError, RuntimeState, RuntimeTask,
};
use api::{containers, snapshots, tasks, Api, ProcessStatus, SNAPSHOTTER};

mod api;
mod archive;
mod content;
mod image;
mod logger;
mod node;
mod rootfs;
mod spec;

pub use image::{inspect_distribution, Distribution, RegistryOptions};
pub use logger::logger_main;
pub use proto::reference::ImageRef;

/// The label that marks a container as a skiff task's (its value is the task ID).
const LABEL_TASK: &str = "skiff.task.id";
/// The task's stop signal and grace period, kept with the container for `stop`.
/// Marks a container that joins skiffd's own network namespace (`--network host`).
const LABEL_HOST_NETWORK: &str = "skiff.host-network";
/// Placeholder of a host-network container's namespace path until `pin_netns` sets it.
const HOST_NETNS: &str = "/proc/self/ns/net";
const LABEL_STOP_SIGNAL: &str = "skiff.stop-signal";
const LABEL_STOP_GRACE_MS: &str = "skiff.stop-grace-ms";
/// The runtime containerd runs containers with.
const RUNC: &str = "io.containerd.runc.v2";
const SPEC_TYPE: &str = "types.containerd.io/opencontainers/runtime-spec/1/Spec";
const PROCESS_TYPE: &str = "types.containerd.io/opencontainers/runtime-spec/1/Process";

/// How a task ended, kept in its directory once known.
const EXIT: &str = "exit.json";
/// Present when the task was stopped before it ever started.
const STOPPED_UNSTARTED: &str = "stopped-before-start";
/// How long `stop` waits for a task to end after SIGKILL before it gives up.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);
/// How often `wait` looks for a task that has a container but no process yet.
const POLL: Duration = Duration::from_millis(100);
/// The most output of a health check kept for the task's status.
const EXEC_OUTPUT_MAX: usize = 4096;

/// How to reach containerd and where to keep the node's task files.
#[derive(Debug, Clone)]
pub struct ContainerdConfig {
    /// containerd's gRPC socket.
    pub socket: PathBuf,
    /// The containerd namespace this node's containers and images live in.
    pub namespace: String,
    /// Where task directories (`tasks/<id>`) and named volumes (`volumes/<name>`) live.
    pub state_dir: PathBuf,
    /// The logging driver of tasks that name none (`skiffd --log-driver`).
    pub log: crate::LogDefaults,
    /// Registry settings for pulls.
    pub registries: RegistryOptions,
    /// The logger program containerd's shim runs as `<program> logger <task dir>`.
    pub logger: PathBuf,
}

/// The default containerd socket.
pub const DEFAULT_SOCKET: &str = "/run/containerd/containerd.sock";
/// The default containerd namespace.
pub const DEFAULT_NAMESPACE: &str = "skiff";

/// The `containerd` backend.
pub struct ContainerdRuntime {
    api: Api,
    config: ContainerdConfig,
    /// containerd's PID, when its mount namespace is not skiffd's (see
    /// [`Runtime::mount_namespace_pid`]).
    other_mount_namespace: Option<u32>,
    /// One pull at a time per image name (a second waiter then finds it present).
    pulls: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// The PID of the process serving containerd's `socket` (the kernel's peer credentials
/// of a connection to it).
fn containerd_pid(socket: &std::path::Path) -> Option<u32> {
    let stream = std::os::unix::net::UnixStream::connect(socket).ok()?;
    let cred =
        nix::sys::socket::getsockopt(&stream, nix::sys::socket::sockopt::PeerCredentials).ok()?;
    u32::try_from(cred.pid()).ok()
}

/// A failed start as the task's error: about one of its container options (a sysctl value
/// the kernel refused, say), a spec this node cannot run (so the task is rejected, naming
/// the option); otherwise runc's own words, cleaned.
fn start_failure(message: &str) -> RuntimeError {
    let cleaned = clean_runc_error(message);
    match node::option_failure(&cleaned) {
        Some(reason) => RuntimeError::InvalidSpec(reason),
        None => RuntimeError::StartFailed(cleaned),
    }
}

/// This node's hostname (a `--network host` task's, as Docker gives it).
fn node_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

/// The mount namespace of process `pid` (`self` for this one), as its `/proc` link names it.
fn mount_namespace(pid: &str) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/ns/mnt")).ok()
}

impl std::fmt::Debug for ContainerdRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContainerdRuntime")
            .field("config", &self.config)
            .finish()
    }
}

/// Where a container's task stands in containerd.
enum Observed {
    /// No container: never prepared here, or removed.
    Unknown,
    /// A container without a process: prepared, not started.
    Prepared,
    /// A process created but not started (a start that was cut short).
    Created,
    Running(u32),
    Stopped(u32),
}

impl ContainerdRuntime {
    /// Connects to containerd (a clear error says how to install and start it when its
    /// socket does not answer).
    pub async fn connect(config: ContainerdConfig) -> Result<Self, RuntimeError> {
        let api = Api::connect(&config.socket, &config.namespace).await?;
        api.ensure_images_lease().await?;
        for dir in [
            config.state_dir.join("tasks"),
            config.state_dir.join("volumes"),
        ] {
            std::fs::create_dir_all(&dir)
                .map_err(|e| RuntimeError::io(format!("creating {}", dir.display()), e))?;
        }
        let other_mount_namespace = containerd_pid(&config.socket)
            .filter(|pid| mount_namespace(&pid.to_string()) != mount_namespace("self"));
        Ok(ContainerdRuntime {
            api,
            config,
            other_mount_namespace,
            pulls: Mutex::new(HashMap::new()),
        })
    }

    /// What the node's runtime can grant: containerd's privileges and limits.
    fn node_facts(&self) -> node::NodeFacts {
        node::NodeFacts::read(containerd_pid(&self.config.socket))
    }

    fn task_dir(&self, task_id: &str) -> PathBuf {
        self.config.state_dir.join("tasks").join(task_id)
    }

    fn volumes_dir(&self) -> PathBuf {
        self.config.state_dir.join("volumes")
    }

    /// Prepares `task` (see `Runtime::prepare`), publishing the pull's progress on
    /// `progress` when given.
    async fn prepare_task(
        &self,
        task: &proto::Task,
        progress: Option<&ProgressSender>,
    ) -> Result<(), RuntimeError> {
        let task_id = task
            .meta
            .as_ref()
            .map(|m| m.id.as_str())
            .unwrap_or_default();
        check_task_id(task_id)?;
        if self.container(task_id).await?.is_some() {
            return Ok(());
        }
        let spec = task.spec.as_deref();
        let container = spec
            .and_then(|s| s.container.as_ref())
            .ok_or_else(|| RuntimeError::InvalidSpec("the task has no container spec".into()))?;
        if container.image.is_empty() {
            return Err(RuntimeError::InvalidSpec(
                "the service names no image: the containerd runtime runs tasks from images".into(),
            ));
        }
        // What this node cannot run is rejected before anything is pulled or made.
        let capabilities = node::check(container, &self.node_facts(), node::kernel_has_sysctl)?;
        let init = container.init.then(node::find_init).transpose()?;
        let image = self.image_for(container, progress).await?;
        let dir = self.task_dir(task_id);
        std::fs::create_dir_all(&dir)
            .map_err(|e| RuntimeError::io(format!("creating {}", dir.display()), e))?;
        let host_network = spec.is_some_and(proto::container_options::uses_host_network);
        let netns = if host_network {
            // skiffd's own namespace, handed to runc at start (`pin_netns`): containerd may
            // run in another one (test hosts), where "no namespace" would mean its own.
            Some(PathBuf::from(HOST_NETNS))
        } else {
            let netns = crate::task_netns_path(task_id);
            netns.exists().then_some(netns)
        };
        let hostname = if host_network && container.hostname.is_empty() {
            node_hostname()
        } else {
            spec::hostname(task_id, container)
        };
        let network = match (&netns, task.networks.is_empty()) {
            _ if host_network => rootfs::TaskNetwork::Host,
            (None, _) => rootfs::TaskNetwork::Node,
            (Some(_), true) => rootfs::TaskNetwork::Bridge,
            (Some(_), false) => rootfs::TaskNetwork::Overlays,
        };
        rootfs::write_task_files(&dir, &hostname, network, container)?;
        crate::log_sink::configure(&dir, task, &self.config.log)?;

        // Under the lease: until the container record names it, nothing else keeps the
        // snapshot from containerd's collector (removing the task removes it explicitly).
        let prepare = self.api.leased(snapshots::PrepareSnapshotRequest {
            snapshotter: SNAPSHOTTER.into(),
            key: task_id.into(),
            parent: image.chain_id.clone(),
            labels: HashMap::new(),
        });
        let mounts = match self.api.snapshots().prepare(prepare).await {
            Ok(r) => r.into_inner().mounts,
            Err(s) if s.code() == Code::AlreadyExists => {
                let request = self.api.request(snapshots::MountsRequest {
                    snapshotter: SNAPSHOTTER.into(),
                    key: task_id.into(),
                });
                self.api
                    .snapshots()
                    .mounts(request)
                    .await
                    .map_err(|s| api::error("asking containerd for the task's root filesystem", s))?
                    .into_inner()
                    .mounts
            }
            Err(s) => return Err(api::error("preparing the task's root filesystem", s)),
        };
        let user_spec = if container.user.is_empty() {
            image.config.user.clone().unwrap_or_default()
        } else {
            container.user.clone()
        };
        let (user, additional_gids) =
            rootfs::resolve_user(&user_spec, &container.groups, &mounts, &dir).await?;
        let limits = spec
            .and_then(|s| s.resources.as_ref())
            .and_then(|r| r.limits.as_ref());
        let runtime_spec = spec::build(&spec::Inputs {
            task_id,
            container,
            limits,
            image: &image.config,
            user,
            netns,
            task_dir: &dir,
            volumes_dir: &self.volumes_dir(),
            cgroup: cgroup_name(task_id),
            capabilities,
            additional_gids,
            init,
            hostname: hostname.clone(),
        })?;

        let stop_signal = if container.stop_signal.is_empty() {
            image.config.stop_signal.clone().unwrap_or_default()
        } else {
            container.stop_signal.clone()
        };
        let stop_signal = parse_signal(&stop_signal)? as i32;
        let mut labels: HashMap<String, String> = container.labels.clone();
        labels.insert(LABEL_TASK.into(), task_id.into());
        if host_network {
            labels.insert(LABEL_HOST_NETWORK.into(), "true".into());
        }
        labels.insert(LABEL_STOP_SIGNAL.into(), stop_signal.to_string());
        labels.insert(
            LABEL_STOP_GRACE_MS.into(),
            crate::stop_grace_period(Some(container))
                .as_millis()
                .to_string(),
        );
        let create = self.api.request(containers::CreateContainerRequest {
            container: Some(containers::Container {
                id: task_id.into(),
                labels,
                image: image.name.clone(),
                runtime: Some(containers::container::Runtime {
                    name: RUNC.into(),
                    options: None,
                }),
                spec: Some(prost_types::Any {
                    type_url: SPEC_TYPE.into(),
                    value: serde_json::to_vec(&runtime_spec).unwrap_or_default(),
                }),
                snapshotter: SNAPSHOTTER.into(),
                snapshot_key: task_id.into(),
            }),
        });
        match self.api.containers().create(create).await {
            Ok(_) => Ok(()),
            Err(s) if s.code() == Code::AlreadyExists => Ok(()),
            Err(s) => Err(api::error("creating the task's container", s)),
        }
    }

    /// The image for a task, pulled or not as its pull policy says.
    async fn image_for(
        &self,
        container: &proto::ContainerSpec,
        progress: Option<&ProgressSender>,
    ) -> Result<image::Image, RuntimeError> {
        let reference = ImageRef::parse(&container.image)?;
        let name = reference.to_string();
        let lock = {
            let mut pulls = self.pulls.lock().unwrap_or_else(|e| e.into_inner());
            pulls.entry(name.clone()).or_default().clone()
        };
        let _one_at_a_time = lock.lock().await;
        let policy = proto::PullPolicy::try_from(container.pull_policy).unwrap_or_default();
        if policy != proto::PullPolicy::Always {
            if let Some(image) = image::local(&self.api, &name).await? {
                return Ok(image);
            }
            if policy == proto::PullPolicy::Never {
                return Err(RuntimeError::InvalidSpec(format!(
                    "image {name} is not on this node and the pull policy is never: load it with \
                     `skiff image load FILE` on this node, or allow pulls"
                )));
            }
        }
        image::pull(
            &self.api,
            &reference,
            &container.registry_auth,
            &self.config.registries,
            progress,
        )
        .await
    }

    async fn observe(&self, task_id: &str) -> Result<Observed, RuntimeError> {
        if let Some(exit) = read_exit(&self.task_dir(task_id).join(EXIT)) {
            return Ok(Observed::Stopped(exit.code as u32));
        }
        let request = self.api.request(tasks::GetRequest {
            container_id: task_id.into(),
            exec_id: String::new(),
        });
        match self.api.tasks().get(request).await {
            Ok(r) => {
                let process = r.into_inner().process.unwrap_or_default();
                Ok(match ProcessStatus::try_from(process.status) {
                    Ok(ProcessStatus::Stopped) => Observed::Stopped(process.exit_status),
                    Ok(ProcessStatus::Created) => Observed::Created,
                    _ => Observed::Running(process.pid),
                })
            }
            Err(s) if api::not_found(&s) => {
                let request = self
                    .api
                    .request(containers::GetContainerRequest { id: task_id.into() });
                match self.api.containers().get(request).await {
                    Ok(_) => Ok(Observed::Prepared),
                    Err(s) if api::not_found(&s) => Ok(Observed::Unknown),
                    Err(s) => Err(api::error("asking containerd for a container", s)),
                }
            }
            Err(s) => Err(api::error("asking containerd for a task", s)),
        }
    }

    async fn container(
        &self,
        task_id: &str,
    ) -> Result<Option<containers::Container>, RuntimeError> {
        let request = self
            .api
            .request(containers::GetContainerRequest { id: task_id.into() });
        match self.api.containers().get(request).await {
            Ok(r) => Ok(r.into_inner().container),
            Err(s) if api::not_found(&s) => Ok(None),
            Err(s) => Err(api::error("asking containerd for a container", s)),
        }
    }

    /// How the task ended, from its directory, or from containerd and its cgroup the first
    /// time (then kept).
    async fn exit_of(&self, task_id: &str, code: u32) -> Exit {
        let path = self.task_dir(task_id).join(EXIT);
        if let Some(exit) = read_exit(&path) {
            return exit;
        }
        let code = code as i32;
        let oom_killed = code != 0 && oom_kills(&cgroup_name(task_id)) > 0;
        let signal = (code > 128 && code < 128 + 65).then_some(code - 128);
        let message = if oom_killed {
            "killed by the kernel's OOM killer: the task exceeded its memory limit".to_owned()
        } else if let Some(signal) = signal {
            format!("killed by {}", signal_name(signal))
        } else {
            format!("exited with code {code}")
        };
        let exit = Exit {
            code,
            signal,
            oom_killed,
            message,
        };
        if let Ok(json) = serde_json::to_vec(&exit) {
            if std::fs::write(&path, json).is_ok() {
                // containerd's record of the ended process is no longer needed: deleting it
                // ends its shim and closes the logger's pipes, so the log is complete.
                let delete = self.api.request(tasks::DeleteTaskRequest {
                    container_id: task_id.into(),
                });
                let _ = self.api.tasks().delete(delete).await;
            }
        }
        exit
    }

    async fn kill(&self, task_id: &str, signal: i32, all: bool) -> Result<(), RuntimeError> {
        let request = self.api.request(tasks::KillRequest {
            container_id: task_id.into(),
            exec_id: String::new(),
            signal: signal as u32,
            all,
        });
        match self.api.tasks().kill(request).await {
            Ok(_) => Ok(()),
            Err(s) if api::not_found(&s) || s.code() == Code::FailedPrecondition => Ok(()),
            Err(s) => Err(api::error("signalling the task's container", s)),
        }
    }

    /// Waits for the task to end, up to `timeout`; true if it has.
    async fn ended_within(&self, task_id: &str, timeout: Duration) -> bool {
        tokio::time::timeout(timeout, self.wait(task_id))
            .await
            .is_ok()
    }

    /// Undoes a start that failed before the container's process ran: deletes containerd's
    /// record of the process, if any, and ends the task's logger.
    ///
    /// containerd's shim starts the logger before runc creates the container, so a failed
    /// create can leave one behind whose pipes are never closed (their write ends stay in a
    /// shim containerd's cleanup gave up on, under load), and which ignores SIGTERM: it would
    /// never end. Once containerd has no process for the task, nothing will write to that
    /// logger again (a later start creates a new process, with a logger of its own), and the
    /// container never ran, so there is no output to lose. While containerd cannot say (it
    /// does not answer), the logger is left alone, as a retried start may still start the
    /// process it logs; removing the task ends it then (see [`logger_main`]).
    async fn discard_unstarted(&self, task_id: &str, dir: &Path) {
        let delete = self.api.request(tasks::DeleteTaskRequest {
            container_id: task_id.into(),
        });
        match self.api.tasks().delete(delete).await {
            Ok(_) => {}
            Err(s) if api::not_found(&s) => {}
            Err(s) => {
                tracing::warn!(task = task_id, error = %s, "cannot delete a container's process that did not start");
                return;
            }
        }
        logger::end(dir);
    }

    /// Points the container's network namespace at `/proc/<skiffd>/fd/<n>`, a descriptor of
    /// the task's namespace that stays open as long as the returned file lives.
    /// A host-network container (`--network host`) gets skiffd's own namespace that way.
    /// Also says whether the container has a terminal (`--tty`), which its task must know.
    async fn pin_netns(
        &self,
        task_id: &str,
    ) -> Result<(Option<std::fs::File>, bool), RuntimeError> {
        let Some(mut container) = self.container(task_id).await? else {
            return Err(RuntimeError::NotFound(task_id.into()));
        };
        let netns = if container.labels.contains_key(LABEL_HOST_NETWORK) {
            PathBuf::from(HOST_NETNS)
        } else {
            crate::task_netns_path(task_id)
        };
        let Some(any) = container.spec.as_mut() else {
            return Ok((None, false));
        };
        let mut spec: serde_json::Value = serde_json::from_slice(&any.value).map_err(|e| {
            RuntimeError::InvalidState(format!("container {task_id} has an unreadable spec: {e}"))
        })?;
        let terminal = spec["process"]["terminal"] == true;
        let Some(namespaces) = spec["linux"]["namespaces"].as_array_mut() else {
            return Ok((None, terminal));
        };
        let Some(network) = namespaces
            .iter_mut()
            .find(|n| n["type"] == "network" && n["path"].is_string())
        else {
            return Ok((None, terminal));
        };
        let file = std::fs::File::open(&netns).map_err(|e| {
            RuntimeError::StartFailed(format!(
                "the task's network namespace {} is gone ({e}): its networks were torn down",
                netns.display()
            ))
        })?;
        use std::os::fd::AsRawFd as _;
        network["path"] = serde_json::json!(format!(
            "/proc/{}/fd/{}",
            std::process::id(),
            file.as_raw_fd()
        ));
        any.value = serde_json::to_vec(&spec).unwrap_or_default();
        let update = self.api.request(containers::UpdateContainerRequest {
            container: Some(container),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["spec".into()],
            }),
        });
        self.api
            .containers()
            .update(update)
            .await
            .map_err(|s| api::error("pointing the container at its network namespace", s))?;
        Ok((Some(file), terminal))
    }

    /// The logger URI containerd's shim runs for the task's output.
    fn logger_uri(&self, dir: &Path) -> String {
        format!(
            "binary://{}?logger={}",
            uri_escape(&self.config.logger.to_string_lossy()),
            uri_escape(&dir.to_string_lossy())
        )
    }

    /// Runs a command in the running task's container, as its main process runs.
    async fn run_exec(
        &self,
        task_id: &str,
        command: &[String],
        timeout: Duration,
    ) -> Result<ExecOutput, RuntimeError> {
        let container = self
            .container(task_id)
            .await?
            .ok_or_else(|| RuntimeError::NotFound(task_id.into()))?;
        let spec: serde_json::Value = container
            .spec
            .as_ref()
            .and_then(|s| serde_json::from_slice(&s.value).ok())
            .ok_or_else(|| {
                RuntimeError::InvalidState(format!("container {task_id} has no readable spec"))
            })?;
        let mut process = spec["process"].clone();
        process["args"] = serde_json::json!(command);
        process["terminal"] = serde_json::json!(false);
        let exec_id = format!("exec-{:08x}", rand::random::<u32>());
        let output = self.task_dir(task_id).join(format!("{exec_id}.out"));
        let uri = format!("file://{}", uri_escape(&output.to_string_lossy()));
        let request = self.api.request(tasks::ExecProcessRequest {
            container_id: task_id.into(),
            stdin: String::new(),
            stdout: uri.clone(),
            stderr: uri,
            terminal: false,
            spec: Some(prost_types::Any {
                type_url: PROCESS_TYPE.into(),
                value: serde_json::to_vec(&process).unwrap_or_default(),
            }),
            exec_id: exec_id.clone(),
        });
        self.api
            .tasks()
            .exec(request)
            .await
            .map_err(|s| api::error("running a command in the container", s))?;
        let result = async {
            let start = self.api.request(tasks::StartRequest {
                container_id: task_id.into(),
                exec_id: exec_id.clone(),
            });
            if let Err(s) = self.api.tasks().start(start).await {
                return Ok(ExecOutput {
                    code: 126,
                    output: clean_runc_error(s.message()),
                });
            }
            let wait = self.api.request(tasks::WaitRequest {
                container_id: task_id.into(),
                exec_id: exec_id.clone(),
            });
            match tokio::time::timeout(timeout, self.api.tasks().wait(wait)).await {
                Ok(Ok(r)) => {
                    let mut output = std::fs::read(&output).unwrap_or_default();
                    output.truncate(EXEC_OUTPUT_MAX);
                    Ok(ExecOutput {
                        code: r.into_inner().exit_status as i32,
                        output: String::from_utf8_lossy(&output).into_owned(),
                    })
                }
                Ok(Err(s)) => Err(api::error("waiting for a command in the container", s)),
                Err(_) => {
                    let kill = self.api.request(tasks::KillRequest {
                        container_id: task_id.into(),
                        exec_id: exec_id.clone(),
                        signal: libc::SIGKILL as u32,
                        all: false,
                    });
                    let _ = self.api.tasks().kill(kill).await;
                    Ok(ExecOutput {
                        code: -1,
                        output: format!("timed out after {}", humantime::format_duration(timeout)),
                    })
                }
            }
        }
        .await;
        let delete = self.api.request(tasks::DeleteProcessRequest {
            container_id: task_id.into(),
            exec_id,
        });
        let _ = self.api.tasks().delete_process(delete).await;
        let _ = std::fs::remove_file(&output);
        result
    }
}

#[async_trait::async_trait]
impl Runtime for ContainerdRuntime {
    fn mount_namespace_pid(&self) -> Option<u32> {
        self.other_mount_namespace
    }

    async fn prepare(&self, task: &proto::Task) -> Result<(), RuntimeError> {
        self.prepare_task(task, None).await
    }

    async fn prepare_with_progress(
        &self,
        task: &proto::Task,
        progress: &ProgressSender,
    ) -> Result<(), RuntimeError> {
        self.prepare_task(task, Some(progress)).await
    }

    async fn start(&self, task_id: &str) -> Result<(), RuntimeError> {
        check_task_id(task_id).map_err(|_| RuntimeError::NotFound(task_id.into()))?;
        let dir = self.task_dir(task_id);
        if dir.join(STOPPED_UNSTARTED).exists() {
            return Err(RuntimeError::InvalidState(format!(
                "task {task_id} was stopped before it started"
            )));
        }
        let prepared = match self.observe(task_id).await? {
            Observed::Unknown => return Err(RuntimeError::NotFound(task_id.into())),
            Observed::Running(_) | Observed::Stopped(_) => return Ok(()),
            Observed::Prepared => true,
            Observed::Created => false,
        };
        if prepared {
            // The task's network namespace is a mount skiffd made, which containerd may not
            // see (skiffd in a mount namespace of its own, as under `ip netns exec`): hand
            // runc the namespace through a descriptor skiffd holds while the task is created.
            let (_netns, terminal) = self.pin_netns(task_id).await?;
            let request = self.api.request(snapshots::MountsRequest {
                snapshotter: SNAPSHOTTER.into(),
                key: task_id.into(),
            });
            let rootfs = self
                .api
                .snapshots()
                .mounts(request)
                .await
                .map_err(|s| api::error("asking containerd for the task's root filesystem", s))?
                .into_inner()
                .mounts;
            let uri = self.logger_uri(&dir);
            let create = self.api.request(tasks::CreateTaskRequest {
                container_id: task_id.into(),
                rootfs,
                stdin: String::new(),
                stdout: uri.clone(),
                // With a terminal, both outputs are the one terminal's: stdout carries it.
                stderr: if terminal { String::new() } else { uri },
                terminal,
            });
            if let Err(s) = self.api.tasks().create(create).await {
                // AlreadyExists: another start created it, and it is not ours to undo.
                if s.code() != Code::AlreadyExists {
                    self.discard_unstarted(task_id, &dir).await;
                }
                return Err(match s.code() {
                    Code::Unavailable => api::error("starting the task's container", s),
                    _ => start_failure(s.message()),
                });
            }
        }
        let start = self.api.request(tasks::StartRequest {
            container_id: task_id.into(),
            exec_id: String::new(),
        });
        if let Err(s) = self.api.tasks().start(start).await {
            self.discard_unstarted(task_id, &dir).await;
            return Err(start_failure(s.message()));
        }
        Ok(())
    }

    async fn wait(&self, task_id: &str) -> Result<Exit, RuntimeError> {
        check_task_id(task_id).map_err(|_| RuntimeError::NotFound(task_id.into()))?;
        let dir = self.task_dir(task_id);
        loop {
            if let Some(exit) = read_exit(&dir.join(EXIT)) {
                return Ok(exit);
            }
            match self.observe(task_id).await? {
                Observed::Stopped(code) => return Ok(self.exit_of(task_id, code).await),
                Observed::Running(_) => {
                    let request = self.api.request(tasks::WaitRequest {
                        container_id: task_id.into(),
                        exec_id: String::new(),
                    });
                    if let Err(s) = self.api.tasks().wait(request).await {
                        if !api::not_found(&s) {
                            return Err(api::error("waiting for the task's container", s));
                        }
                    }
                }
                Observed::Prepared if dir.join(STOPPED_UNSTARTED).exists() => {
                    return Ok(Exit {
                        code: 0,
                        signal: None,
                        oom_killed: false,
                        message: "stopped before it started".into(),
                    })
                }
                Observed::Prepared | Observed::Created => tokio::time::sleep(POLL).await,
                Observed::Unknown => return Err(RuntimeError::NotFound(task_id.into())),
            }
        }
    }

    async fn stop(&self, task_id: &str, grace: Option<Duration>) -> Result<(), RuntimeError> {
        check_task_id(task_id).map_err(|_| RuntimeError::NotFound(task_id.into()))?;
        let Some(container) = self.container(task_id).await? else {
            return Err(RuntimeError::NotFound(task_id.into()));
        };
        let label = |key: &str| {
            container
                .labels
                .get(key)
                .and_then(|v| v.parse::<u64>().ok())
        };
        let grace = grace.unwrap_or_else(|| {
            label(LABEL_STOP_GRACE_MS).map_or(crate::DEFAULT_STOP_GRACE, Duration::from_millis)
        });
        let signal = label(LABEL_STOP_SIGNAL).map_or(libc::SIGTERM, |s| s as i32);
        match self.observe(task_id).await? {
            Observed::Unknown => return Err(RuntimeError::NotFound(task_id.into())),
            Observed::Stopped(_) => return Ok(()),
            Observed::Prepared => {
                let dir = self.task_dir(task_id);
                let _ = std::fs::create_dir_all(&dir);
                return std::fs::write(dir.join(STOPPED_UNSTARTED), b"")
                    .map_err(|e| RuntimeError::io("recording that the task was stopped", e));
            }
            Observed::Created => self.kill(task_id, libc::SIGKILL, true).await?,
            Observed::Running(_) => {
                if !grace.is_zero() {
                    self.kill(task_id, signal, false).await?;
                    if self.ended_within(task_id, grace).await {
                        return Ok(());
                    }
                }
                self.kill(task_id, libc::SIGKILL, true).await?;
            }
        }
        if self.ended_within(task_id, KILL_TIMEOUT).await {
            Ok(())
        } else {
            Err(RuntimeError::io(
                format!("stopping task {task_id}"),
                std::io::Error::other(format!(
                    "its container still runs {} after SIGKILL",
                    humantime::format_duration(KILL_TIMEOUT)
                )),
            ))
        }
    }

    async fn remove(&self, task_id: &str) -> Result<(), RuntimeError> {
        if check_task_id(task_id).is_err() {
            return Ok(());
        }
        if let Observed::Running(_) = self.observe(task_id).await? {
            return Err(RuntimeError::InvalidState(format!(
                "task {task_id} is still running: stop it before removing it"
            )));
        }
        let delete = self.api.request(tasks::DeleteTaskRequest {
            container_id: task_id.into(),
        });
        match self.api.tasks().delete(delete).await {
            Ok(_) => {}
            Err(s) if api::not_found(&s) => {}
            Err(s) => return Err(api::error("deleting the task's container process", s)),
        }
        let delete = self
            .api
            .request(containers::DeleteContainerRequest { id: task_id.into() });
        match self.api.containers().delete(delete).await {
            Ok(_) => {}
            Err(s) if api::not_found(&s) => {}
            Err(s) => return Err(api::error("deleting the task's container", s)),
        }
        let remove = self.api.request(snapshots::RemoveSnapshotRequest {
            snapshotter: SNAPSHOTTER.into(),
            key: task_id.into(),
        });
        match self.api.snapshots().remove(remove).await {
            Ok(_) => {}
            Err(s) if api::not_found(&s) => {}
            Err(s) => return Err(api::error("removing the task's root filesystem", s)),
        }
        let dir = self.task_dir(task_id);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(RuntimeError::io(format!("removing {}", dir.display()), e)),
        }
    }

    async fn list(&self) -> Result<Vec<RuntimeTask>, RuntimeError> {
        let request = self.api.request(containers::ListContainersRequest {
            filters: vec![format!("labels.\"{LABEL_TASK}\"")],
        });
        let found = self
            .api
            .containers()
            .list(request)
            .await
            .map_err(|s| api::error("listing containers in containerd", s))?
            .into_inner()
            .containers;
        let mut out = Vec::with_capacity(found.len());
        for container in found {
            let task_id = container.id;
            let dir = self.task_dir(&task_id);
            let state = match self.observe(&task_id).await? {
                Observed::Unknown => continue,
                Observed::Running(pid) => RuntimeState::Running {
                    pid: Some(pid as i32),
                },
                Observed::Stopped(code) => RuntimeState::Exited(self.exit_of(&task_id, code).await),
                Observed::Prepared if dir.join(STOPPED_UNSTARTED).exists() => {
                    RuntimeState::Exited(self.wait(&task_id).await?)
                }
                Observed::Prepared | Observed::Created => RuntimeState::Created,
            };
            out.push(RuntimeTask { task_id, state });
        }
        Ok(out)
    }

    async fn logs(
        &self,
        task_id: &str,
        tail: Option<usize>,
        follow: bool,
    ) -> Result<LogStream, RuntimeError> {
        check_task_id(task_id).map_err(|_| RuntimeError::NotFound(task_id.into()))?;
        let dir = self.task_dir(task_id);
        if !dir.is_dir() {
            return Err(RuntimeError::NotFound(task_id.into()));
        }
        let probe = dir.clone();
        let finished = move || output_finished(&probe);
        crate::log_file::open(dir, tail, follow, Box::new(finished)).await
    }

    async fn exec(
        &self,
        task_id: &str,
        command: &[String],
        timeout: Duration,
    ) -> Result<ExecOutput, RuntimeError> {
        check_task_id(task_id).map_err(|_| RuntimeError::NotFound(task_id.into()))?;
        self.run_exec(task_id, command, timeout).await
    }

    async fn load_image(&self, archive_path: &Path) -> Result<Vec<String>, RuntimeError> {
        archive::load(&self.api, archive_path).await
    }

    async fn image_healthcheck(&self, task_id: &str) -> Option<proto::HealthConfig> {
        let container = self.container(task_id).await.ok()??;
        let image = image::local(&self.api, &container.image).await.ok()??;
        let check = image.config.healthcheck?;
        if check.test.is_empty() {
            return None;
        }
        let ms = |ns: u64| ns / 1_000_000;
        Some(proto::HealthConfig {
            test: check.test,
            interval_ms: ms(check.interval),
            timeout_ms: ms(check.timeout),
            retries: check.retries,
            start_period_ms: ms(check.start_period),
            start_interval_ms: ms(check.start_interval),
        })
    }
}

/// The task's output has all been logged: the logger said so, or it is gone, or the task
/// never got one.
fn output_finished(dir: &Path) -> bool {
    if dir.join(logger::LOG_DONE).exists() {
        return true;
    }
    if dir.join(logger::LOGGER_PID).exists() {
        logger::running(dir).is_none()
    } else {
        dir.join(EXIT).exists() || dir.join(STOPPED_UNSTARTED).exists()
    }
}

fn read_exit(path: &Path) -> Option<Exit> {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
}

/// The cgroup (relative to each hierarchy's root) a task's container runs in.
fn cgroup_name(task_id: &str) -> String {
    format!("/skiff/{task_id}")
}

/// How many times the OOM killer struck in the task's memory cgroup (v1 or v2).
fn oom_kills(cgroup: &str) -> u64 {
    let rel = cgroup.trim_start_matches('/');
    let candidates = [
        (
            Path::new("/sys/fs/cgroup/memory")
                .join(rel)
                .join("memory.oom_control"),
            "oom_kill ",
        ),
        (
            Path::new("/sys/fs/cgroup").join(rel).join("memory.events"),
            "oom_kill ",
        ),
        (
            Path::new("/sys/fs/cgroup/unified")
                .join(rel)
                .join("memory.events"),
            "oom_kill ",
        ),
    ];
    candidates
        .iter()
        .filter_map(|(path, key)| {
            let text = std::fs::read_to_string(path).ok()?;
            text.lines().find_map(|l| {
                l.strip_prefix(key)
                    .and_then(|v| v.trim().parse::<u64>().ok())
            })
        })
        .max()
        .unwrap_or(0)
}

/// runc's errors come wrapped in several layers of context; the innermost cause is what a
/// person can act on ("exec: "nosuch": executable file not found in $PATH").
fn clean_runc_error(message: &str) -> String {
    let cause = message
        .rsplit_once("unable to start container process: ")
        .map_or(message, |(_, c)| c)
        .trim_end_matches(": unknown")
        .trim();
    format!("the container did not start: {cause}")
}

/// Escapes what a URI's path or query must not hold raw.
fn uri_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'/' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runc_errors_are_cut_to_their_cause() {
        let raw = "failed to create shim task: OCI runtime create failed: runc create failed: unable to start container process: exec: \"nosuch\": executable file not found in $PATH: unknown";
        assert_eq!(
            clean_runc_error(raw),
            "the container did not start: exec: \"nosuch\": executable file not found in $PATH"
        );
    }

    #[test]
    fn uris_escape_odd_paths() {
        assert_eq!(uri_escape("/var/lib/skiff/a b"), "/var/lib/skiff/a%20b");
        assert_eq!(uri_escape("/x?y&z"), "/x%3Fy%26z");
    }
}
