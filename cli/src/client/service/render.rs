//! What `service ls`, `service ps`, `node ps` and `service inspect --pretty` print: pure
//! functions of the objects (and of the current time), so they are tested without a daemon.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use proto::service_spec::Mode;
use proto::{
    FailureAction, MountType, PortConfig, PortProtocol, PublishMode, ResolutionMode,
    RestartCondition, Service, ServiceSpec, Task, TaskState, UpdateConfig, UpdateOrder,
};

use crate::client::duration::format_ms;
use crate::client::format::{format_bytes, format_cpus, format_time, human_duration};
use crate::client::table::Table;

/// Longest ERROR cell `service ps` prints without `--no-trunc` (as Docker).
const MAX_ERR_LEN: usize = 30;

/// The service's ID.
pub fn service_id(s: &Service) -> &str {
    s.meta.as_ref().map(|m| m.id.as_str()).unwrap_or("")
}

/// The service's name.
pub fn service_name(s: &Service) -> &str {
    s.spec.as_ref().map(|s| s.name.as_str()).unwrap_or("")
}

/// When the task was made (Unix ms).
pub fn created_at(t: &Task) -> i64 {
    t.meta.as_ref().map(|m| m.created_at).unwrap_or(0)
}

/// The task's observed state.
pub fn state(t: &Task) -> TaskState {
    t.status.as_ref().map(|s| s.state()).unwrap_or_default()
}

/// The task's error, trimmed.
pub fn task_err(t: &Task) -> &str {
    t.status.as_ref().map(|s| s.err.trim()).unwrap_or("")
}

/// The image a task (or a spec) runs.
pub fn task_image(t: &Task) -> &str {
    t.spec
        .as_ref()
        .and_then(|s| s.container.as_ref())
        .map(|c| c.image.as_str())
        .unwrap_or("")
}

/// The image of a service spec.
pub fn spec_image(spec: &ServiceSpec) -> &str {
    spec.task_template
        .as_ref()
        .and_then(|t| t.container.as_ref())
        .map(|c| c.image.as_str())
        .unwrap_or("")
}

/// An image without its `@sha256:...` digest (Docker's tables drop it unless `--no-trunc`).
pub fn short_image(image: &str) -> &str {
    image.split_once('@').map(|(i, _)| i).unwrap_or(image)
}

/// First 12 characters of an ID.
pub fn short_id(id: &str) -> &str {
    &id[..id.len().min(12)]
}

/// A task state as Docker capitalises it in tables (`Running`, `Shutdown`).
pub fn state_title(s: TaskState) -> &'static str {
    match s {
        TaskState::New => "New",
        TaskState::Pending => "Pending",
        TaskState::Assigned => "Assigned",
        TaskState::Accepted => "Accepted",
        TaskState::Preparing => "Preparing",
        TaskState::Ready => "Ready",
        TaskState::Starting => "Starting",
        TaskState::Running => "Running",
        TaskState::Complete => "Complete",
        TaskState::Shutdown => "Shutdown",
        TaskState::Failed => "Failed",
        TaskState::Rejected => "Rejected",
        TaskState::Remove => "Remove",
        TaskState::Orphaned => "Orphaned",
    }
}

/// A task state in lower case, as the progress display and the filters write it.
pub fn state_word(s: TaskState) -> &'static str {
    match s {
        TaskState::New => "new",
        TaskState::Pending => "pending",
        TaskState::Assigned => "assigned",
        TaskState::Accepted => "accepted",
        TaskState::Preparing => "preparing",
        TaskState::Ready => "ready",
        TaskState::Starting => "starting",
        TaskState::Running => "running",
        TaskState::Complete => "complete",
        TaskState::Shutdown => "shutdown",
        TaskState::Failed => "failed",
        TaskState::Rejected => "rejected",
        TaskState::Remove => "remove",
        TaskState::Orphaned => "orphaned",
    }
}

/// `s` cut to `max` characters, the last one an ellipsis when cut.
fn ellipsis(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

// ---------------------------------------------------------------------------------------
// service ls
// ---------------------------------------------------------------------------------------

/// MODE column: `replicated`, `global`, `replicated job`, `global job`.
pub fn mode_name(spec: Option<&ServiceSpec>) -> &'static str {
    match spec.and_then(|s| s.mode.as_ref()) {
        Some(Mode::Global(_)) => "global",
        Some(Mode::ReplicatedJob(_)) => "replicated job",
        Some(Mode::GlobalJob(_)) => "global job",
        Some(Mode::Replicated(_)) | None => "replicated",
    }
}

/// Whether the task's desired state says it should still run (or, for jobs, complete).
pub fn is_live(t: &Task) -> bool {
    t.desired_state < TaskState::Shutdown as i32
}

/// REPLICAS column: `running/desired`; replicated services add `(max N per node)`; jobs add
/// `(completed/total completed)`. `tasks` are the service's tasks (history included).
pub fn replicas_cell(service: &Service, tasks: &[&Task]) -> String {
    let running = tasks
        .iter()
        .filter(|t| is_live(t) && state(t) == TaskState::Running)
        .count() as u64;
    let live = tasks.iter().filter(|t| is_live(t)).count() as u64;
    let spec = service.spec.as_ref();
    let iteration = service.job_status.as_ref().map(|j| j.job_iteration);
    let completed = || {
        tasks
            .iter()
            .filter(|t| state(t) == TaskState::Complete)
            .filter(|t| iteration.is_none_or(|i| t.job_iteration == i))
            .count() as u64
    };
    let max_per_node = spec
        .and_then(|s| s.task_template.as_ref())
        .and_then(|t| t.placement.as_ref())
        .map(|p| p.max_replicas)
        .unwrap_or(0);
    match spec.and_then(|s| s.mode.as_ref()) {
        Some(Mode::Replicated(r)) => {
            if max_per_node > 0 {
                format!("{running}/{} (max {max_per_node} per node)", r.replicas)
            } else {
                format!("{running}/{}", r.replicas)
            }
        }
        Some(Mode::Global(_)) => format!("{running}/{live}"),
        Some(Mode::ReplicatedJob(j)) => {
            let done = completed();
            let desired = j
                .max_concurrent
                .max(1)
                .min(j.total_completions.saturating_sub(done));
            format!(
                "{running}/{desired} ({done}/{} completed)",
                j.total_completions
            )
        }
        Some(Mode::GlobalJob(_)) => {
            let done = completed();
            let total = tasks
                .iter()
                .filter(|t| iteration.is_none_or(|i| t.job_iteration == i))
                .filter(|t| is_live(t) || state(t) == TaskState::Complete)
                .count() as u64;
            let desired = total.saturating_sub(done);
            format!("{running}/{desired} ({done}/{total} completed)")
        }
        None => format!("{running}/0"),
    }
}

/// A port protocol as Docker prints it (`tcp`, `udp`, `sctp`).
pub fn protocol_name(p: PortProtocol) -> &'static str {
    match p {
        PortProtocol::Tcp => "tcp",
        PortProtocol::Udp => "udp",
        PortProtocol::Sctp => "sctp",
    }
}

/// Ports as Docker prints them, consecutive ones folded into ranges:
/// `*:8080->80/tcp, *:9000-9001->90-91/udp`. Ports not yet given a published port show
/// `*:0`.
pub fn format_ports(ports: &[PortConfig]) -> String {
    let mut sorted: Vec<&PortConfig> = ports.iter().collect();
    sorted.sort_by_key(|p| (p.protocol, p.published_port, p.target_port));
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let first = sorted[i];
        let mut last = first;
        let mut j = i + 1;
        while j < sorted.len() {
            let p = sorted[j];
            if p.protocol == last.protocol
                && p.published_port != 0
                && p.published_port == last.published_port + 1
                && p.target_port == last.target_port + 1
            {
                last = p;
                j += 1;
            } else {
                break;
            }
        }
        let proto = protocol_name(first.protocol());
        if std::ptr::eq(first, last) {
            out.push(format!(
                "*:{}->{}/{proto}",
                first.published_port, first.target_port
            ));
        } else {
            out.push(format!(
                "*:{}-{}->{}-{}/{proto}",
                first.published_port, last.published_port, first.target_port, last.target_port
            ));
        }
        i = j;
    }
    out.join(", ")
}

/// PORTS column of `service ls`: the ingress ports, as allocated (else as asked for).
pub fn service_ports(service: &Service) -> String {
    let allocated = service
        .endpoint
        .as_ref()
        .map(|e| e.ports.as_slice())
        .unwrap_or(&[]);
    let asked = service
        .spec
        .as_ref()
        .and_then(|s| s.endpoint.as_ref())
        .map(|e| e.ports.as_slice())
        .unwrap_or(&[]);
    let ports = if allocated.is_empty() {
        asked
    } else {
        allocated
    };
    let ingress: Vec<PortConfig> = ports
        .iter()
        .filter(|p| p.publish_mode() == PublishMode::Ingress)
        .cloned()
        .collect();
    format_ports(&ingress)
}

/// The `service ls` table; `tasks` are every task of the listed services.
pub fn services_table(services: &[Service], tasks: &[Task]) -> Table {
    let mut by_service: HashMap<&str, Vec<&Task>> = HashMap::new();
    for t in tasks {
        by_service.entry(t.service_id.as_str()).or_default().push(t);
    }
    let mut t = Table::new(&["ID", "NAME", "MODE", "REPLICAS", "IMAGE", "PORTS"]);
    for s in services {
        let mine = by_service
            .get(service_id(s))
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        t.push([
            short_id(service_id(s)).to_string(),
            service_name(s).to_string(),
            mode_name(s.spec.as_ref()).to_string(),
            replicas_cell(s, mine),
            s.spec
                .as_ref()
                .map(|sp| short_image(spec_image(sp)).to_string())
                .unwrap_or_default(),
            service_ports(s),
        ]);
    }
    t
}

/// Sorts services as `service ls` shows them: by name, then ID.
pub fn sort_services(services: &mut [Service]) {
    services
        .sort_by(|a, b| (service_name(a), service_id(a)).cmp(&(service_name(b), service_id(b))));
}

// ---------------------------------------------------------------------------------------
// service ps / node ps
// ---------------------------------------------------------------------------------------

/// The service name a task shows (its own record of it, else its service's short ID).
pub fn task_service_name(t: &Task) -> &str {
    if t.service_name.is_empty() {
        short_id(&t.service_id)
    } else {
        &t.service_name
    }
}

/// NAME of a task: `service.slot`, or `service.nodeID` for a global service's task.
pub fn task_name(t: &Task) -> String {
    if t.slot != 0 {
        format!("{}.{}", task_service_name(t), t.slot)
    } else {
        format!("{}.{}", task_service_name(t), t.node_id)
    }
}

/// Sorts tasks as `ps` shows them: by service name, then slot (or node, for a global
/// service), newest first. A slot's tasks may have run on different nodes: the node must not
/// split them.
pub fn sort_tasks(tasks: &mut [Task]) {
    let node_of_global = |t: &Task| {
        if t.slot == 0 {
            t.node_id.clone()
        } else {
            String::new()
        }
    };
    tasks.sort_by(|a, b| {
        task_service_name(a)
            .cmp(task_service_name(b))
            .then(a.service_id.cmp(&b.service_id))
            .then(a.slot.cmp(&b.slot))
            .then(node_of_global(a).cmp(&node_of_global(b)))
            .then(created_at(b).cmp(&created_at(a)))
            .then(a.id().cmp(b.id()))
    });
}

/// The NAME cells of sorted tasks: the newest task of a slot gets the name, the older ones
/// below it ` \_ name` (Docker's history indentation).
pub fn history_names(sorted: &[Task]) -> Vec<String> {
    let mut prev: Option<(String, &str)> = None;
    sorted
        .iter()
        .map(|t| {
            let name = task_name(t);
            let same = prev
                .as_ref()
                .is_some_and(|(n, sid)| *n == name && *sid == t.service_id);
            prev = Some((name.clone(), &t.service_id));
            if same {
                format!(" \\_ {name}")
            } else {
                name
            }
        })
        .collect()
}

/// CURRENT STATE: `Running 5 seconds ago`.
pub fn current_state(t: &Task, now_ms: i64) -> String {
    let title = state_title(state(t));
    match t.status.as_ref().map(|s| s.timestamp).unwrap_or(0) {
        0 => title.to_string(),
        ts => format!("{title} {} ago", human_duration(now_ms - ts)),
    }
}

/// The `service ps` / `node ps` table of sorted tasks; `hostnames` maps node IDs to names.
pub fn tasks_table(
    sorted: &[Task],
    hostnames: &HashMap<String, String>,
    now_ms: i64,
    no_trunc: bool,
) -> Table {
    let mut table = Table::new(&[
        "ID",
        "NAME",
        "IMAGE",
        "NODE",
        "DESIRED STATE",
        "CURRENT STATE",
        "ERROR",
        "PORTS",
    ]);
    let names = history_names(sorted);
    for (t, name) in sorted.iter().zip(names) {
        let id = if no_trunc { t.id() } else { short_id(t.id()) };
        let image = if no_trunc {
            task_image(t)
        } else {
            short_image(task_image(t))
        };
        let node = match hostnames.get(&t.node_id) {
            Some(h) if !h.is_empty() => h.clone(),
            _ => short_id(&t.node_id).to_string(),
        };
        let err = task_err(t);
        let err = match (err.is_empty(), no_trunc) {
            (true, _) => String::new(),
            (false, true) => format!("\"{err}\""),
            (false, false) => format!("\"{}\"", ellipsis(err, MAX_ERR_LEN)),
        };
        let ports = t
            .status
            .as_ref()
            .map(|s| format_ports(&s.ports))
            .unwrap_or_default();
        table.push([
            id.to_string(),
            name,
            image.to_string(),
            node,
            state_title(t.desired_state()).to_string(),
            current_state(t, now_ms),
            err,
            ports,
        ]);
    }
    table
}

// ---------------------------------------------------------------------------------------
// service inspect --pretty
// ---------------------------------------------------------------------------------------

fn failure_action(a: FailureAction) -> &'static str {
    match a {
        FailureAction::Pause => "pause",
        FailureAction::Continue => "continue",
        FailureAction::Rollback => "rollback",
    }
}

fn order(o: UpdateOrder) -> &'static str {
    match o {
        UpdateOrder::StopFirst => "stop-first",
        UpdateOrder::StartFirst => "start-first",
    }
}

fn write_update(s: &mut String, title: &str, u: &UpdateConfig) {
    let _ = writeln!(s, "{title}:");
    let _ = writeln!(s, " Parallelism:\t{}", u.parallelism.unwrap_or(1));
    if u.delay_ms > 0 {
        let _ = writeln!(s, " Delay:\t\t{}", format_ms(u.delay_ms));
    }
    let _ = writeln!(s, " On failure:\t{}", failure_action(u.failure_action()));
    let _ = writeln!(
        s,
        " Monitoring Period: {}",
        format_ms(u.monitor_ms.unwrap_or(5_000))
    );
    let _ = writeln!(s, " Max failure ratio: {}", u.max_failure_ratio);
    let _ = writeln!(s, " Update order:      {}", order(u.order()));
}

/// A section of `inspect --pretty` for secrets or configs: (name, target inside the task or
/// the target as written when it is not valid, uid, gid, mode) each.
fn file_references<'a>(
    s: &mut String,
    title: &str,
    references: impl Iterator<Item = (&'a str, Result<std::path::PathBuf, String>, u32, u32, u32)>,
) {
    let mut references = references.peekable();
    if references.peek().is_none() {
        return;
    }
    let _ = writeln!(s, "{title}:");
    for (name, target, uid, gid, mode) in references {
        let target = target.map_or_else(|t| t, |t| t.display().to_string());
        let _ = writeln!(s, " Source:\t{name}");
        let _ = writeln!(s, "  Target:\t{target}");
        let _ = writeln!(s, "  UID:\t\t{uid}  GID: {gid}  Mode: {mode:04o}");
    }
}

/// What `service inspect --pretty` prints for one service.
/// The container options of `--pretty`, each only when set.
fn container_options(s: &mut String, c: &proto::ContainerSpec) {
    let list = |name: &str, values: &[String], s: &mut String| {
        if !values.is_empty() {
            let _ = writeln!(s, " {name}{}", values.join(", "));
        }
    };
    if c.init {
        let _ = writeln!(s, " Init:\t\ttrue");
    }
    if c.tty {
        let _ = writeln!(s, " TTY:\t\ttrue");
    }
    list("CapAdd:\t\t", &c.cap_add, s);
    list("CapDrop:\t", &c.cap_drop, s);
    let ulimits: Vec<String> = c
        .ulimits
        .iter()
        .map(proto::container_options::format_ulimit)
        .collect();
    list("Ulimits:\t", &ulimits, s);
    let mut sysctls: Vec<String> = c.sysctls.iter().map(|(k, v)| format!("{k}={v}")).collect();
    sysctls.sort();
    list("Sysctls:\t", &sysctls, s);
    if let Some(d) = &c.dns_config {
        list("DNS:\t\t", &d.nameservers, s);
        list("DNSSearch:\t", &d.search, s);
        list("DNSOptions:\t", &d.options, s);
    }
    list("Hosts:\t\t", &c.hosts, s);
    list("Groups:\t\t", &c.groups, s);
    if c.oom_score_adj != 0 {
        let _ = writeln!(s, " OomScoreAdj:\t{}", c.oom_score_adj);
    }
}

pub fn pretty(service: &Service) -> String {
    let mut s = String::new();
    let meta = service.meta.clone().unwrap_or_default();
    let spec = service.spec.clone().unwrap_or_default();
    let _ = writeln!(s, "ID:\t\t{}", meta.id);
    let _ = writeln!(s, "Name:\t\t{}", spec.name);
    if !spec.labels.is_empty() {
        let _ = writeln!(s, "Labels:");
        for (k, v) in spec.labels.iter().collect::<BTreeMap<_, _>>() {
            let _ = writeln!(s, " {k}={v}");
        }
    }
    match &spec.mode {
        Some(Mode::Replicated(r)) => {
            let _ = writeln!(s, "Service Mode:\tReplicated");
            let _ = writeln!(s, " Replicas:\t{}", r.replicas);
        }
        Some(Mode::Global(_)) => {
            let _ = writeln!(s, "Service Mode:\tGlobal");
        }
        Some(Mode::ReplicatedJob(j)) => {
            let _ = writeln!(s, "Service Mode:\tReplicated Job");
            let _ = writeln!(s, " Max Concurrent:\t{}", j.max_concurrent);
            let _ = writeln!(s, " Total Completions:\t{}", j.total_completions);
        }
        Some(Mode::GlobalJob(_)) => {
            let _ = writeln!(s, "Service Mode:\tGlobal Job");
        }
        None => {}
    }
    if let Some(u) = &service.update_status {
        if u.state != 0 {
            let state = proto::UpdateState::try_from(u.state)
                .map(|s| {
                    s.as_str_name()
                        .trim_start_matches("UPDATE_STATE_")
                        .to_ascii_lowercase()
                })
                .unwrap_or_default();
            let _ = writeln!(s, "UpdateStatus:");
            let _ = writeln!(s, " State:\t\t{state}");
            if u.started_at > 0 {
                let _ = writeln!(s, " Started:\t{}", format_time(u.started_at));
            }
            if u.completed_at > 0 {
                let _ = writeln!(s, " Completed:\t{}", format_time(u.completed_at));
            }
            if !u.message.is_empty() {
                let _ = writeln!(s, " Message:\t{}", u.message);
            }
        }
    }
    let task = spec.task_template.clone().unwrap_or_default();
    if let Some(p) = &task.placement {
        let _ = writeln!(s, "Placement:");
        if !p.constraints.is_empty() {
            let _ = writeln!(s, " Constraints:\t[{}]", p.constraints.join(" "));
        }
        for pref in &p.preferences {
            let _ = writeln!(s, " Preferences:\tspread={}", pref.spread);
        }
        if p.max_replicas > 0 {
            let _ = writeln!(s, " Max Replicas Per Node:\t{}", p.max_replicas);
        }
    }
    if let Some(u) = &spec.update_config {
        write_update(&mut s, "UpdateConfig", u);
    }
    if let Some(u) = &spec.rollback_config {
        write_update(&mut s, "RollbackConfig", u);
    }
    let c = task.container.clone().unwrap_or_default();
    let _ = writeln!(s, "ContainerSpec:");
    let _ = writeln!(s, " Image:\t\t{}", c.image);
    if !c.command.is_empty() {
        let _ = writeln!(s, " Command:\t{}", c.command.join(" "));
    }
    if !c.args.is_empty() {
        let _ = writeln!(s, " Args:\t\t{}", c.args.join(" "));
    }
    if !c.env.is_empty() {
        let _ = writeln!(s, " Env:\t\t{}", c.env.join(" "));
    }
    if !c.dir.is_empty() {
        let _ = writeln!(s, " Dir:\t\t{}", c.dir);
    }
    if !c.user.is_empty() {
        let _ = writeln!(s, " User:\t\t{}", c.user);
    }
    if !c.hostname.is_empty() {
        let _ = writeln!(s, " Hostname:\t{}", c.hostname);
    }
    if !c.stop_signal.is_empty() {
        let _ = writeln!(s, " StopSignal:\t{}", c.stop_signal);
    }
    if let Some(grace) = c.stop_grace_period_ms {
        let _ = writeln!(s, " StopGracePeriod: {}", format_ms(grace));
    }
    if let Some(h) = &c.healthcheck {
        let _ = writeln!(s, " Healthcheck:\t{}", h.test.join(" "));
    }
    container_options(&mut s, &c);
    if !c.mounts.is_empty() {
        let _ = writeln!(s, "Mounts:");
        for m in &c.mounts {
            let kind = match m.r#type() {
                MountType::Bind => "bind",
                MountType::Volume => "volume",
                MountType::Tmpfs => "tmpfs",
            };
            let _ = writeln!(s, " Target:\t{}", m.target);
            let _ = writeln!(s, "  Source:\t{}", m.source);
            let _ = writeln!(s, "  ReadOnly:\t{}", m.read_only);
            let _ = writeln!(s, "  Type:\t\t{kind}");
        }
    }
    // References only: a secret's data never reaches the CLI.
    let secrets = c.secrets.iter().map(|r| {
        let target = proto::task_files::secret_target(r).map_err(|_| r.target.clone());
        (r.secret_name.as_str(), target, r.uid, r.gid, r.mode)
    });
    file_references(&mut s, "Secrets", secrets);
    let configs = c.configs.iter().map(|r| {
        let target = proto::task_files::config_target(r).map_err(|_| r.target.clone());
        (r.config_name.as_str(), target, r.uid, r.gid, r.mode)
    });
    file_references(&mut s, "Configs", configs);
    if let Some(r) = &task.resources {
        let _ = writeln!(s, "Resources:");
        for (title, res) in [("Reservations", &r.reservations), ("Limits", &r.limits)] {
            if let Some(res) = res {
                let _ = writeln!(s, " {title}:");
                if res.nano_cpus > 0 {
                    let _ = writeln!(s, "  CPU:\t\t{}", format_cpus(res.nano_cpus));
                }
                if res.memory_bytes > 0 {
                    let _ = writeln!(s, "  Memory:\t{}", format_bytes(res.memory_bytes));
                }
                if res.pids > 0 {
                    let _ = writeln!(s, "  Pids:\t\t{}", res.pids);
                }
            }
        }
    }
    if let Some(r) = &task.restart {
        let condition = match r.condition() {
            RestartCondition::Any => "any",
            RestartCondition::OnFailure => "on-failure",
            RestartCondition::None => "none",
        };
        let _ = writeln!(s, "RestartPolicy:");
        let _ = writeln!(s, " Condition:\t{condition}");
        let _ = writeln!(s, " Delay:\t\t{}", format_ms(r.delay_ms.unwrap_or(0)));
        if r.max_attempts > 0 {
            let _ = writeln!(s, " Max Attempts:\t{}", r.max_attempts);
        }
        if r.window_ms > 0 {
            let _ = writeln!(s, " Window:\t{}", format_ms(r.window_ms));
        }
    }
    if !task.networks.is_empty() {
        let names: Vec<&str> = task.networks.iter().map(|n| n.target.as_str()).collect();
        let _ = writeln!(s, "Networks:\t{}", names.join(" "));
    }
    let endpoint = spec.endpoint.clone().unwrap_or_default();
    let mode = match endpoint.mode() {
        ResolutionMode::Vip => "vip",
        ResolutionMode::Dnsrr => "dnsrr",
    };
    let _ = writeln!(s, "Endpoint Mode:\t{mode}");
    let ports = match &service.endpoint {
        Some(e) if !e.ports.is_empty() => e.ports.clone(),
        _ => endpoint.ports.clone(),
    };
    if !ports.is_empty() {
        let _ = writeln!(s, "Ports:");
        for p in &ports {
            let _ = writeln!(s, " PublishedPort = {}", p.published_port);
            let _ = writeln!(s, "  Protocol = {}", protocol_name(p.protocol()));
            let _ = writeln!(s, "  TargetPort = {}", p.target_port);
            let mode = match p.publish_mode() {
                PublishMode::Ingress => "ingress",
                PublishMode::Host => "host",
            };
            let _ = writeln!(s, "  PublishMode = {mode}");
        }
    }
    if let Some(e) = &service.endpoint {
        for vip in &e.virtual_ips {
            let _ = writeln!(s, "Virtual IP:\t{} on {}", vip.addr, vip.network_id);
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::{
        Endpoint, EndpointSpec, GlobalService, JobStatus, Meta, Placement, ReplicatedJob,
        ReplicatedService, TaskSpec, TaskStatus,
    };

    pub fn task(
        id: &str,
        svc: &str,
        slot: u64,
        desired: TaskState,
        state: TaskState,
        at: i64,
    ) -> Task {
        Task {
            meta: Some(Meta {
                id: id.into(),
                created_at: at,
                ..Default::default()
            }),
            service_id: format!("{svc}-id"),
            service_name: svc.into(),
            slot,
            node_id: "node1".into(),
            spec: Some(
                TaskSpec {
                    container: Some(proto::ContainerSpec {
                        image: "nginx:alpine@sha256:abcdef".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }
                .into(),
            ),
            desired_state: desired as i32,
            status: Some(TaskStatus {
                state: state as i32,
                timestamp: at,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn service(name: &str, mode: Mode) -> Service {
        Service {
            meta: Some(Meta {
                id: format!("{name}-id0123456789"),
                ..Default::default()
            }),
            spec: Some(ServiceSpec {
                name: name.into(),
                mode: Some(mode),
                task_template: Some(TaskSpec {
                    container: Some(proto::ContainerSpec {
                        image: "nginx:alpine@sha256:abcdef".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn port(published: u32, target: u32, proto: PortProtocol, mode: PublishMode) -> PortConfig {
        PortConfig {
            name: String::new(),
            protocol: proto as i32,
            target_port: target,
            published_port: published,
            publish_mode: mode as i32,
        }
    }

    #[test]
    fn ports_rendering() {
        use PortProtocol::*;
        use PublishMode::*;
        assert_eq!(
            format_ports(&[port(8080, 80, Tcp, Ingress)]),
            "*:8080->80/tcp"
        );
        assert_eq!(
            format_ports(&[
                port(8001, 81, Tcp, Ingress),
                port(53, 53, Udp, Ingress),
                port(8000, 80, Tcp, Ingress),
                port(9000, 90, Tcp, Ingress),
            ]),
            "*:8000-8001->80-81/tcp, *:9000->90/tcp, *:53->53/udp"
        );
        assert_eq!(format_ports(&[]), "");
        // ls shows ingress ports, the allocated ones when there are.
        let mut s = service("web", Mode::Replicated(ReplicatedService { replicas: 1 }));
        s.spec.as_mut().unwrap().endpoint = Some(EndpointSpec {
            mode: 0,
            ports: vec![port(0, 80, Tcp, Ingress), port(5353, 53, Udp, Host)],
        });
        assert_eq!(service_ports(&s), "*:0->80/tcp");
        s.endpoint = Some(Endpoint {
            ports: vec![port(30000, 80, Tcp, Ingress), port(5353, 53, Udp, Host)],
            ..Default::default()
        });
        assert_eq!(service_ports(&s), "*:30000->80/tcp");
    }

    #[test]
    fn replicas_rendering() {
        use TaskState::*;
        let s = service("web", Mode::Replicated(ReplicatedService { replicas: 3 }));
        let tasks = [
            task("a", "web", 1, Running, Running, 1),
            task("b", "web", 2, Running, Running, 1),
            task("c", "web", 3, Running, Preparing, 1),
            task("d", "web", 3, Shutdown, Running, 0),
            task("e", "web", 2, Shutdown, Failed, 0),
        ];
        let refs: Vec<&Task> = tasks.iter().collect();
        assert_eq!(replicas_cell(&s, &refs), "2/3");
        let mut s2 = s.clone();
        s2.spec
            .as_mut()
            .unwrap()
            .task_template
            .as_mut()
            .unwrap()
            .placement = Some(Placement {
            max_replicas: 2,
            ..Default::default()
        });
        assert_eq!(replicas_cell(&s2, &refs), "2/3 (max 2 per node)");
        let g = service("mon", Mode::Global(GlobalService {}));
        assert_eq!(replicas_cell(&g, &refs), "2/3");
        let mut j = service(
            "job",
            Mode::ReplicatedJob(ReplicatedJob {
                max_concurrent: 2,
                total_completions: 5,
            }),
        );
        let jobs = [
            task("a", "job", 1, Complete, Complete, 1),
            task("b", "job", 2, Complete, Complete, 1),
            task("c", "job", 3, Complete, Complete, 1),
            task("d", "job", 4, Complete, Running, 1),
            task("e", "job", 5, Complete, Running, 1),
        ];
        let refs: Vec<&Task> = jobs.iter().collect();
        assert_eq!(replicas_cell(&j, &refs), "2/2 (3/5 completed)");
        // Only the current iteration counts.
        j.job_status = Some(JobStatus {
            job_iteration: 1,
            last_execution: 0,
        });
        assert_eq!(replicas_cell(&j, &refs), "2/2 (0/5 completed)");
    }

    #[test]
    fn ls_table() {
        use TaskState::*;
        let mut services = vec![
            service("web", Mode::Replicated(ReplicatedService { replicas: 2 })),
            service("agent", Mode::Global(GlobalService {})),
        ];
        services[0].endpoint = Some(Endpoint {
            ports: vec![port(8080, 80, PortProtocol::Tcp, PublishMode::Ingress)],
            ..Default::default()
        });
        sort_services(&mut services);
        let mut tasks = vec![
            task("a", "web", 1, Running, Running, 1),
            task("b", "agent", 0, Running, Running, 1),
        ];
        tasks[0].service_id = "web-id0123456789".into();
        tasks[1].service_id = "agent-id0123456789".into();
        assert_eq!(
            services_table(&services, &tasks).render(),
            "ID             NAME    MODE         REPLICAS   IMAGE          PORTS\n\
             agent-id0123   agent   global       1/1        nginx:alpine\n\
             web-id012345   web     replicated   1/2        nginx:alpine   *:8080->80/tcp\n"
        );
    }

    #[test]
    fn ps_history_is_grouped_and_indented() {
        use TaskState::*;
        let mut tasks = vec![
            task("old1aaaaaaaaaaaa", "web", 1, Shutdown, Failed, 1_000),
            task("new2aaaaaaaaaaaa", "web", 2, Running, Running, 5_000),
            task("new1aaaaaaaaaaaa", "web", 1, Running, Running, 9_000),
            task("older1aaaaaaaaaa", "web", 1, Shutdown, Shutdown, 500),
            task("api1aaaaaaaaaaaa", "api", 1, Running, Pending, 9_500),
        ];
        tasks[0].status.as_mut().unwrap().err =
            "task: non-zero exit (1): the process was killed by the OOM killer".into();
        tasks[4].node_id = String::new();
        // A slot's newer task on another node still comes first.
        tasks[2].node_id = "node9".into();
        sort_tasks(&mut tasks);
        let names = history_names(&tasks);
        assert_eq!(
            names,
            ["api.1", "web.1", " \\_ web.1", " \\_ web.1", "web.2"]
        );
        let hosts: HashMap<String, String> = [("node1".to_string(), "host-1".to_string())].into();
        let text = tasks_table(&tasks, &hosts, 10_000, false).render();
        assert_eq!(
            text,
            "ID             NAME        IMAGE          NODE     DESIRED STATE   CURRENT STATE                    ERROR                              PORTS\n\
             api1aaaaaaaa   api.1       nginx:alpine            Running         Pending Less than a second ago\n\
             new1aaaaaaaa   web.1       nginx:alpine   node9    Running         Running 1 second ago\n\
             old1aaaaaaaa    \\_ web.1   nginx:alpine   host-1   Shutdown        Failed 9 seconds ago             \"task: non-zero exit (1): the …\"\n\
             older1aaaaaa    \\_ web.1   nginx:alpine   host-1   Shutdown        Shutdown 9 seconds ago\n\
             new2aaaaaaaa   web.2       nginx:alpine   host-1   Running         Running 5 seconds ago\n"
        );
        let full = tasks_table(&tasks, &HashMap::new(), 10_000, true).render();
        assert!(full.contains("OOM killer\""), "{full}");
        assert!(full.contains("new1aaaaaaaaaaaa"), "{full}");
        assert!(full.contains("nginx:alpine@sha256:abcdef"), "{full}");
        // Unknown hostname: the node's short ID.
        assert!(full.contains("   node1   "), "{full}");
    }

    #[test]
    fn global_task_names_use_the_node() {
        let mut t = task("x", "mon", 0, TaskState::Running, TaskState::Running, 1);
        t.node_id = "abcdefabcdefabcdefabcdefa".into();
        assert_eq!(task_name(&t), "mon.abcdefabcdefabcdefabcdefa");
        t.service_name.clear();
        t.service_id = "0123456789abcdef".into();
        t.slot = 4;
        assert_eq!(task_name(&t), "0123456789ab.4");
    }

    #[test]
    fn pretty_summary() {
        let mut s = service("web", Mode::Replicated(ReplicatedService { replicas: 3 }));
        s.spec.as_mut().unwrap().update_config = Some(UpdateConfig {
            parallelism: Some(1),
            monitor_ms: Some(5_000),
            ..Default::default()
        });
        let text = pretty(&s);
        assert!(text.contains("Name:\t\tweb\n"), "{text}");
        assert!(text.contains(" Replicas:\t3\n"), "{text}");
        assert!(text.contains(" Monitoring Period: 5s\n"), "{text}");
        assert!(
            text.contains(" Image:\t\tnginx:alpine@sha256:abcdef\n"),
            "{text}"
        );
        assert!(text.contains("Endpoint Mode:\tvip\n"), "{text}");
        assert!(
            !text.contains("Ulimits"),
            "unset options are not shown: {text}"
        );

        let c = s
            .spec
            .as_mut()
            .unwrap()
            .task_template
            .as_mut()
            .unwrap()
            .container
            .as_mut()
            .unwrap();
        c.init = true;
        c.cap_add = vec!["CAP_NET_ADMIN".into()];
        c.ulimits = vec![proto::Ulimit {
            name: "nofile".into(),
            soft: 10,
            hard: 20,
        }];
        c.hosts = vec!["10.0.0.5 db".into()];
        c.oom_score_adj = -5;
        let text = pretty(&s);
        for line in [
            " Init:\t\ttrue\n",
            " CapAdd:\t\tCAP_NET_ADMIN\n",
            " Ulimits:\tnofile=10:20\n",
            " Hosts:\t\t10.0.0.5 db\n",
            " OomScoreAdj:\t-5\n",
        ] {
            assert!(text.contains(line), "{line:?} in {text}");
        }
    }
}
