//! `skiff service create`: the flags, and the [`ServiceSpec`](proto::ServiceSpec) they make
//! (built and validated here, before the daemon is contacted).
//!
//! The flags and the service modes are here; `create/spec.rs` turns the flags into a spec,
//! one function per part of it; `create/tests.rs` runs whole command lines through both.

pub(crate) mod spec;
#[cfg(test)]
mod tests;

use anyhow::bail;
use clap::Args;

pub use spec::build_spec;

/// `skiff service create`.
#[derive(Debug, Default, Args)]
pub struct CreateArgs {
    /// Service name
    #[arg(long)]
    pub name: Option<String>,
    /// replicated, global, replicated-job or global-job
    #[arg(long, value_name = "MODE")]
    pub mode: Option<String>,
    /// Number of tasks (replicated), or of completions (replicated-job); default 1
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub replicas: Option<String>,
    /// Tasks of a replicated job run at once (default: --replicas)
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub max_concurrent: Option<String>,
    /// Set an environment variable (KEY=VALUE, or KEY to pass this shell's value)
    #[arg(short = 'e', long, value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Service label
    #[arg(short = 'l', long, value_name = "KEY=VALUE")]
    pub label: Vec<String>,
    /// Read environment variables from a file: KEY=VALUE lines (KEY alone passes this
    /// shell's value; # starts a comment); --env wins over it
    #[arg(long, value_name = "FILE")]
    pub env_file: Vec<String>,
    /// Container label
    #[arg(long, value_name = "KEY=VALUE")]
    pub container_label: Vec<String>,
    /// Placement constraint, e.g. node.role==manager or node.labels.zone!=east
    #[arg(long, value_name = "EXPR")]
    pub constraint: Vec<String>,
    /// Placement preference: spread=node.labels.KEY
    #[arg(long, value_name = "PREF")]
    pub placement_pref: Vec<String>,
    /// Most tasks of this service on one node (default 0: no limit)
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub replicas_max_per_node: Option<String>,
    /// CPUs reserved for each task, e.g. 0.5
    #[arg(long, value_name = "CPUS", allow_negative_numbers = true)]
    pub reserve_cpu: Option<String>,
    /// Memory reserved for each task, e.g. 256M
    #[arg(long, value_name = "BYTES", allow_negative_numbers = true)]
    pub reserve_memory: Option<String>,
    /// Most CPUs a task may use
    #[arg(long, value_name = "CPUS", allow_negative_numbers = true)]
    pub limit_cpu: Option<String>,
    /// Most memory a task may use
    #[arg(long, value_name = "BYTES", allow_negative_numbers = true)]
    pub limit_memory: Option<String>,
    /// Most processes a task may run at once (default 0: no limit)
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub limit_pids: Option<String>,
    /// When to restart a task: none, on-failure or any (default any; on-failure for jobs)
    #[arg(long, value_name = "CONDITION")]
    pub restart_condition: Option<String>,
    /// Wait between restarts (default 5s)
    #[arg(long, value_name = "DURATION")]
    pub restart_delay: Option<String>,
    /// Restarts before giving up (default 0: no limit)
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub restart_max_attempts: Option<String>,
    /// Window in which restarts are counted (default: forever)
    #[arg(long, value_name = "DURATION")]
    pub restart_window: Option<String>,
    /// Container hostname
    #[arg(long)]
    pub hostname: Option<String>,
    /// Working directory inside the container
    #[arg(short = 'w', long, value_name = "DIR")]
    pub workdir: Option<String>,
    /// User to run as: NAME|UID[:GROUP|GID]
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Signal that stops a task (default SIGTERM)
    #[arg(long, value_name = "SIGNAL")]
    pub stop_signal: Option<String>,
    /// Wait before killing a task that does not stop (default 10s)
    #[arg(long, value_name = "DURATION")]
    pub stop_grace_period: Option<String>,
    /// Replace the image's entrypoint (the command the task runs)
    #[arg(long, value_name = "CMD", allow_hyphen_values = true)]
    pub entrypoint: Option<String>,
    /// Mount the container's root filesystem read-only
    #[arg(long)]
    pub read_only: bool,
    /// Resource limit: NAME=SOFT[:HARD], e.g. nofile=1024:2048 (-1 is unlimited)
    #[arg(long, value_name = "ULIMIT", allow_negative_numbers = true)]
    pub ulimit: Vec<String>,
    /// Add a Linux capability to Docker's default set: NET_ADMIN, CAP_SYS_PTRACE, ... or ALL
    #[arg(long, value_name = "CAP")]
    pub cap_add: Vec<String>,
    /// Drop a Linux capability from Docker's default set, or ALL
    #[arg(long, value_name = "CAP")]
    pub cap_drop: Vec<String>,
    /// Namespaced kernel parameter: NAME=VALUE (net.*, kernel.shm*, kernel.msg*,
    /// kernel.sem, fs.mqueue.*)
    #[arg(long, value_name = "NAME=VALUE")]
    pub sysctl: Vec<String>,
    /// Run an init as PID 1 that forwards signals and reaps processes (the node's tini,
    /// docker-init or catatonit)
    #[arg(long)]
    pub init: bool,
    /// DNS server for the task's resolv.conf
    #[arg(long, value_name = "IP")]
    pub dns: Vec<String>,
    /// DNS search domain for the task's resolv.conf
    #[arg(long, value_name = "DOMAIN")]
    pub dns_search: Vec<String>,
    /// DNS option for the task's resolv.conf, e.g. ndots:2
    #[arg(long, value_name = "OPTION")]
    pub dns_option: Vec<String>,
    /// Add a line to the task's /etc/hosts: NAME:IP
    #[arg(long = "host", value_name = "NAME:IP")]
    pub hosts: Vec<String>,
    /// Supplementary group for the task's user: a name from the image's /etc/group, or a GID
    #[arg(long, value_name = "GROUP")]
    pub group: Vec<String>,
    /// Give the task a terminal (TERM=xterm)
    #[arg(short = 't', long)]
    pub tty: bool,
    /// The task's OOM score adjustment, -1000 to 1000
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub oom_score_adj: Option<String>,
    /// When nodes pull the image: missing (default: only when the node lacks it), always,
    /// or never (load it with `skiff image load`)
    #[arg(long, value_name = "POLICY")]
    pub pull: Option<String>,
    /// Publish a port: PUBLISHED:TARGET[/PROTOCOL] or published=P,target=T[,protocol=udp][,mode=host]
    #[arg(short = 'p', long, value_name = "PORT")]
    pub publish: Vec<String>,
    /// vip (the default) or dnsrr
    #[arg(long, value_name = "MODE")]
    pub endpoint_mode: Option<String>,
    /// Attach to a network: NAME or name=NAME,alias=ALIAS; host shares the node's network
    #[arg(long, value_name = "NETWORK")]
    pub network: Vec<String>,
    /// Mount: type=bind|volume|tmpfs,source=SRC,target=/PATH[,readonly]
    #[arg(long, value_name = "MOUNT")]
    pub mount: Vec<String>,
    /// Logging driver: local, json-file, syslog, journald or none (default: the node's)
    #[arg(long, value_name = "DRIVER")]
    pub log_driver: Option<String>,
    /// Logging driver option KEY=VALUE (max-size, max-file, compress, syslog-address,
    /// syslog-facility, syslog-format, tag); repeat for several
    #[arg(long, value_name = "KEY=VALUE")]
    pub log_opt: Vec<String>,
    /// Give the tasks a secret: NAME or source=NAME,target=FILE,uid=0,gid=0,mode=0444 (a
    /// file under /run/secrets, or an absolute path)
    #[arg(long, value_name = "SECRET")]
    pub secret: Vec<String>,
    /// Give the tasks a config: NAME or source=NAME,target=/PATH,uid=0,gid=0,mode=0444
    /// (/NAME when no target is given)
    #[arg(long, value_name = "CONFIG")]
    pub config: Vec<String>,
    /// Health check command, run with /bin/sh -c
    #[arg(long, value_name = "CMD", allow_hyphen_values = true)]
    pub health_cmd: Option<String>,
    /// Time between health checks
    #[arg(long, value_name = "DURATION")]
    pub health_interval: Option<String>,
    /// Longest a health check may run
    #[arg(long, value_name = "DURATION")]
    pub health_timeout: Option<String>,
    /// Failed checks in a row that make a task unhealthy
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub health_retries: Option<String>,
    /// Time a task has to start before failed checks count
    #[arg(long, value_name = "DURATION")]
    pub health_start_period: Option<String>,
    /// Time between checks during the start period (default: --health-interval)
    #[arg(long, value_name = "DURATION")]
    pub health_start_interval: Option<String>,
    /// Disable the image's health check
    #[arg(long)]
    pub no_healthcheck: bool,
    /// Tasks updated at once (default 1; 0 updates all at once)
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub update_parallelism: Option<String>,
    /// Wait between updating groups of tasks (default 0s)
    #[arg(long, value_name = "DURATION")]
    pub update_delay: Option<String>,
    /// When an update fails: pause, continue or rollback (default pause)
    #[arg(long, value_name = "ACTION")]
    pub update_failure_action: Option<String>,
    /// Watch each updated task this long for a failure (default 5s)
    #[arg(long, value_name = "DURATION")]
    pub update_monitor: Option<String>,
    /// Share of failed tasks an update tolerates, 0 to 1 (default 0)
    #[arg(long, value_name = "RATIO")]
    pub update_max_failure_ratio: Option<String>,
    /// stop-first (the default) or start-first
    #[arg(long, value_name = "ORDER")]
    pub update_order: Option<String>,
    /// Tasks rolled back at once (default 1; 0 rolls back all at once)
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub rollback_parallelism: Option<String>,
    /// Wait between rolling back groups of tasks (default 0s)
    #[arg(long, value_name = "DURATION")]
    pub rollback_delay: Option<String>,
    /// When a rollback fails: pause or continue (default pause)
    #[arg(long, value_name = "ACTION")]
    pub rollback_failure_action: Option<String>,
    /// Watch each rolled-back task this long for a failure (default 5s)
    #[arg(long, value_name = "DURATION")]
    pub rollback_monitor: Option<String>,
    /// Share of failed tasks a rollback tolerates, 0 to 1 (default 0)
    #[arg(long, value_name = "RATIO")]
    pub rollback_max_failure_ratio: Option<String>,
    /// stop-first (the default) or start-first
    #[arg(long, value_name = "ORDER")]
    pub rollback_order: Option<String>,
    /// Send this client's registry credentials (from ~/.docker/config.json) to the nodes
    #[arg(long)]
    pub with_registry_auth: bool,
    /// Return at once instead of waiting for the service to converge
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Only print the service ID (and show no progress)
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// The image, then the command and its arguments (everything after the image)
    #[arg(
        value_name = "IMAGE [COMMAND [ARG...]]",
        required = true,
        num_args = 1..,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub image_and_command: Vec<String>,
}

/// The four service modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Replicated,
    Global,
    ReplicatedJob,
    GlobalJob,
}

impl Mode {
    /// Parses `--mode`.
    pub fn parse(value: &str) -> anyhow::Result<Mode> {
        match value.trim().to_ascii_lowercase().as_str() {
            "replicated" => Ok(Mode::Replicated),
            "global" => Ok(Mode::Global),
            "replicated-job" => Ok(Mode::ReplicatedJob),
            "global-job" => Ok(Mode::GlobalJob),
            _ => bail!(
                "invalid mode \"{value}\" for --mode: use replicated, global, replicated-job or global-job"
            ),
        }
    }

    /// Whether tasks run to completion.
    pub fn is_job(self) -> bool {
        matches!(self, Mode::ReplicatedJob | Mode::GlobalJob)
    }
}
