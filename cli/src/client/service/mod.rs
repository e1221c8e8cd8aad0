//! `skiff service create|ls|ps|inspect|logs|scale|update|rollback|rm`, and `skiff node ps`
//! (which shares the task table).
//!
//! Every flag is validated before the daemon is contacted. `create` and `scale` wait for
//! the service to converge, `update` and `rollback` for the rollout to end, showing Docker's
//! live progress, unless `--detach`.

pub mod container_flags;
pub mod create;
pub mod logs;
pub mod parse;
pub mod progress;
pub mod registry;
pub mod render;
mod rollout_flags;
pub mod update;

use std::collections::HashMap;

use anyhow::{anyhow, bail, Context as _};
use clap::{Args, Subcommand};
use proto::service_spec::Mode;
use proto::{
    CreateServiceRequest, GetNodeRequest, GetServiceRequest, InfoRequest, ListNodesRequest,
    ListServicesRequest, ListTasksRequest, RemoveServiceRequest, Service, Task, TaskState,
    UpdateServiceRequest,
};

use super::output::{Format, Rows};
use super::{docker, json, out, out_text, report, Client, GlobalOpts, Reply, Reported};
use create::CreateArgs;
use logs::LogsArgs;
use render::{service_id, service_name, short_id};
use update::{RollbackArgs, UpdateArgs};

/// `skiff service ...`.
#[derive(Debug, Subcommand)]
pub enum ServiceCommand {
    /// Create a service
    Create(Box<CreateArgs>),
    /// List services
    #[command(visible_alias = "list")]
    Ls(LsArgs),
    /// List the tasks of one or more services
    Ps(PsArgs),
    /// Show details of one or more services
    Inspect(InspectArgs),
    /// Show the logs of a service or a task
    Logs(LogsArgs),
    /// Change the number of replicas of one or more services
    Scale(ScaleArgs),
    /// Update a service, rolling the change through its tasks
    Update(Box<UpdateArgs>),
    /// Revert a service to its previous spec
    Rollback(RollbackArgs),
    /// Remove one or more services
    #[command(visible_alias = "remove")]
    Rm(RmArgs),
}

/// `skiff service ls`.
#[derive(Debug, Args)]
pub struct LsArgs {
    /// Only print service IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Output format: table (the default), json, a Go template ({{.Name}}) or table TEMPLATE
    #[arg(long)]
    pub format: Option<String>,
    /// Filter: name=NAME, id=ID, label=KEY[=VALUE], mode=replicated|global|replicated-job|global-job
    #[arg(short, long, value_name = "KEY=VALUE")]
    pub filter: Vec<String>,
}

/// Flags `service ps` and `node ps` share.
#[derive(Debug, Args)]
pub struct TaskListOpts {
    /// Show full IDs, images and errors
    #[arg(long)]
    pub no_trunc: bool,
    /// Only print task IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Output format: table (the default), json, a Go template ({{.Name}}) or table TEMPLATE
    #[arg(long)]
    pub format: Option<String>,
    /// Filter: desired-state=running|shutdown|accepted|ready|complete, node=NODE, id=ID, name=NAME
    #[arg(short, long, value_name = "KEY=VALUE")]
    pub filter: Vec<String>,
}

/// `skiff service ps`.
#[derive(Debug, Args)]
pub struct PsArgs {
    #[command(flatten)]
    pub opts: TaskListOpts,
    /// Service ID, ID prefix or name
    #[arg(value_name = "SERVICE", required = true)]
    pub services: Vec<String>,
}

/// `skiff node ps`.
#[derive(Debug, Args)]
pub struct NodePsArgs {
    #[command(flatten)]
    pub opts: TaskListOpts,
    /// Node ID, ID prefix or hostname ("self", the default, for this node)
    #[arg(value_name = "NODE")]
    pub nodes: Vec<String>,
}

/// `skiff service inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Print a readable summary instead of JSON
    #[arg(long, conflicts_with = "format")]
    pub pretty: bool,
    /// Output format: json (the default) or a Go template on Docker's JSON ({{.Spec.Name}})
    #[arg(short, long)]
    pub format: Option<String>,
    /// Service ID, ID prefix or name
    #[arg(value_name = "SERVICE", required = true)]
    pub services: Vec<String>,
}

/// `skiff service scale`.
#[derive(Debug, Args)]
pub struct ScaleArgs {
    /// Return at once instead of waiting for the services to converge
    #[arg(short, long)]
    pub detach: bool,
    /// SERVICE=REPLICAS, e.g. web=3
    #[arg(value_name = "SERVICE=REPLICAS", required = true)]
    pub scales: Vec<String>,
}

/// `skiff service rm`.
#[derive(Debug, Args)]
pub struct RmArgs {
    /// Service ID, ID prefix or name
    #[arg(value_name = "SERVICE", required = true)]
    pub services: Vec<String>,
}

/// Runs one `skiff service` command.
pub async fn run(global: &GlobalOpts, command: ServiceCommand) -> anyhow::Result<()> {
    match command {
        ServiceCommand::Create(args) => create(global, *args).await,
        ServiceCommand::Ls(args) => ls(global, args).await,
        ServiceCommand::Ps(args) => ps(global, args).await,
        ServiceCommand::Inspect(args) => inspect(global, args).await,
        ServiceCommand::Logs(args) => logs::logs(global, args).await,
        ServiceCommand::Scale(args) => scale(global, args).await,
        ServiceCommand::Update(args) => update(global, *args).await,
        ServiceCommand::Rollback(args) => rollback(global, args).await,
        ServiceCommand::Rm(args) => rm(global, args).await,
    }
}

/// Prints the errors of a command over several objects; fails if there were any.
fn finish(errors: Vec<anyhow::Error>) -> anyhow::Result<()> {
    if errors.is_empty() {
        return Ok(());
    }
    errors.iter().for_each(report);
    Err(Reported.into())
}

async fn get_service(client: &Client, name: &str) -> anyhow::Result<Service> {
    client
        .control()
        .get_service(GetServiceRequest {
            service: name.to_string(),
        })
        .await
        .reply(client)?
        .service
        .with_context(|| {
            format!("the daemon answered without service {name}; retry, and report a bug if this persists")
        })
}

/// Drops registry credentials (`--with-registry-auth`) from a task spec before printing.
fn redact_task_spec(spec: Option<&mut proto::TaskSpec>) {
    if let Some(c) = spec.and_then(|t| t.container.as_mut()) {
        if !c.registry_auth.is_empty() {
            c.registry_auth = "<redacted>".into();
        }
    }
}

/// A service as `inspect` and `ls --format json` print it: without registry credentials.
fn redacted_service(mut s: Service) -> Service {
    for spec in [s.spec.as_mut(), s.previous_spec.as_mut()]
        .into_iter()
        .flatten()
    {
        redact_task_spec(spec.task_template.as_mut());
    }
    s
}

/// A task as `ps --format json` prints it: without registry credentials.
fn redacted_task(mut t: Task) -> Task {
    redact_task_spec(t.spec.as_deref_mut());
    t
}

/// Node ID -> hostname, for the NODE column (empty if the daemon will not say).
async fn hostnames(client: &Client) -> HashMap<String, String> {
    client
        .control()
        .list_nodes(ListNodesRequest::default())
        .await
        .map(|r| r.into_inner().nodes)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|n| Some((n.meta?.id, n.description?.hostname)))
        .collect()
}

// ---------------------------------------------------------------------------------------
// create
// ---------------------------------------------------------------------------------------

async fn create(global: &GlobalOpts, args: CreateArgs) -> anyhow::Result<()> {
    let mut spec = create::build_spec(&args, |k| std::env::var(k).ok())?;
    if args.with_registry_auth {
        if let Some(c) = spec
            .task_template
            .as_mut()
            .and_then(|t| t.container.as_mut())
        {
            c.registry_auth = registry::registry_auth(&c.image)?;
        }
    }
    let client = global.connect().await?;
    let service = client
        .control()
        .create_service(CreateServiceRequest { spec: Some(spec) })
        .await
        .reply(&client)?
        .service
        .context("the daemon created the service but did not return it; see `skiff service ls`")?;
    let id = service_id(&service).to_string();
    out(&id);
    if args.detach {
        return Ok(());
    }
    let name = match service_name(&service) {
        "" => short_id(&id).to_string(),
        n => n.to_string(),
    };
    progress::wait(&client, &id, &name, 0, args.quiet).await
}

// ---------------------------------------------------------------------------------------
// ls
// ---------------------------------------------------------------------------------------

/// `service ls --filter` values.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct LsFilters {
    /// Sent to the daemon: name prefixes, as Docker matches them.
    pub names: Vec<String>,
    /// Applied here: ID prefixes.
    pub ids: Vec<String>,
    /// Applied here: labels the service must carry.
    pub labels: Vec<(String, Option<String>)>,
    /// Applied here: modes (`replicated`, `global`, `replicated-job`, `global-job`).
    pub modes: Vec<create::Mode>,
}

impl LsFilters {
    /// Parses `--filter KEY=VALUE` values.
    pub fn parse(values: &[String]) -> anyhow::Result<LsFilters> {
        use crate::client::named::{label_filter, split_filter};
        const USAGE: &str = "use name=NAME, id=ID, label=KEY[=VALUE] or mode=replicated|global|replicated-job|global-job";
        let mut f = LsFilters::default();
        for raw in values {
            match split_filter(raw, USAGE)? {
                ("name", value) => f.names.push(value.to_string()),
                ("id", value) => f.ids.push(value.to_string()),
                ("label", value) => f.labels.push(label_filter(value)),
                ("mode", value) => f.modes.push(
                    create::Mode::parse(value)
                        .map_err(|_| anyhow!("invalid filter \"{raw}\": the mode is replicated, global, replicated-job or global-job"))?,
                ),
                _ => bail!("invalid filter \"{raw}\": {USAGE}"),
            }
        }
        Ok(f)
    }

    /// Whether `s` passes the filters applied here.
    pub fn keep(&self, s: &Service) -> bool {
        let ids_ok = self.ids.is_empty()
            || self
                .ids
                .iter()
                .any(|p| service_id(s).starts_with(p.as_str()));
        let labels = s.spec.as_ref().map(|sp| &sp.labels);
        let labels_ok = self
            .labels
            .iter()
            .all(|(k, v)| match (labels.and_then(|l| l.get(k)), v) {
                (Some(have), Some(want)) => have == want,
                (Some(_), None) => true,
                (None, _) => false,
            });
        let mode = match s.spec.as_ref().and_then(|sp| sp.mode.as_ref()) {
            Some(Mode::Global(_)) => create::Mode::Global,
            Some(Mode::ReplicatedJob(_)) => create::Mode::ReplicatedJob,
            Some(Mode::GlobalJob(_)) => create::Mode::GlobalJob,
            _ => create::Mode::Replicated,
        };
        let modes_ok = self.modes.is_empty() || self.modes.contains(&mode);
        ids_ok && labels_ok && modes_ok
    }
}

/// The fields of a `service ls` row in a `--format` template, as Docker names them.
pub const SERVICE_FIELDS: &[&str] = &["ID", "Name", "Mode", "Replicas", "Image", "Ports"];

/// The fields of a task row (`service ps`, `node ps`, `stack ps`) in a `--format` template.
pub const TASK_FIELDS: &[&str] = &[
    "ID",
    "Name",
    "Image",
    "Node",
    "DesiredState",
    "CurrentState",
    "Error",
    "Ports",
];

/// Prints the `service ls` table of `services` (with their `tasks`) in `format`.
pub(crate) fn print_services(
    services: &[Service],
    tasks: &[Task],
    format: &Format,
) -> anyhow::Result<()> {
    let table = render::services_table(services, tasks);
    if format.is_template() {
        out_text(&Rows::from_table(&table, SERVICE_FIELDS).render(format)?);
    } else {
        out(table.render().trim_end());
    }
    Ok(())
}

async fn ls(global: &GlobalOpts, args: LsArgs) -> anyhow::Result<()> {
    let format = Format::parse(args.format.as_deref())?;
    let filters = LsFilters::parse(&args.filter)?;
    let client = global.connect().await?;
    let mut services: Vec<Service> = client
        .control()
        .list_services(ListServicesRequest {
            name_prefixes: filters.names.clone(),
            ..Default::default()
        })
        .await
        .reply(&client)?
        .services
        .into_iter()
        .filter(|s| filters.keep(s))
        .collect();
    render::sort_services(&mut services);
    if args.quiet {
        for s in &services {
            out(service_id(s));
        }
        return Ok(());
    }
    if matches!(format, Format::Json) {
        let services: Vec<Service> = services.into_iter().map(redacted_service).collect();
        out(json::array(&services)?);
        return Ok(());
    }
    let tasks = if services.is_empty() {
        Vec::new()
    } else {
        client
            .control()
            .list_tasks(ListTasksRequest {
                service_ids: services.iter().map(|s| service_id(s).to_string()).collect(),
                ..Default::default()
            })
            .await
            .reply(&client)?
            .tasks
    };
    print_services(&services, &tasks, &format)
}

// ---------------------------------------------------------------------------------------
// ps
// ---------------------------------------------------------------------------------------

/// `service ps` / `node ps` `--filter` values.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PsFilters {
    /// Sent to the daemon.
    pub desired_states: Vec<TaskState>,
    /// Applied here: node ID prefixes or hostnames.
    pub nodes: Vec<String>,
    /// Applied here: task ID prefixes.
    pub ids: Vec<String>,
    /// Applied here: task name prefixes (`web.1`).
    pub names: Vec<String>,
}

impl PsFilters {
    /// Parses `--filter KEY=VALUE` values.
    pub fn parse(values: &[String]) -> anyhow::Result<PsFilters> {
        let mut f = PsFilters::default();
        for raw in values {
            let bad = || {
                anyhow!("invalid filter \"{raw}\": use desired-state=running|shutdown|accepted|ready|complete, node=NODE, id=ID or name=NAME")
            };
            let (key, value) = raw.split_once('=').ok_or_else(bad)?;
            let value = value.trim();
            if value.is_empty() {
                return Err(bad());
            }
            match key.trim() {
                "desired-state" => f.desired_states.push(match value.to_ascii_lowercase().as_str() {
                    "running" => TaskState::Running,
                    "shutdown" => TaskState::Shutdown,
                    "accepted" => TaskState::Accepted,
                    "ready" => TaskState::Ready,
                    "complete" => TaskState::Complete,
                    _ => bail!("invalid filter \"{raw}\": the desired state is running, shutdown, accepted, ready or complete"),
                }),
                "node" => f.nodes.push(value.to_string()),
                "id" => f.ids.push(value.to_string()),
                "name" => f.names.push(value.to_string()),
                _ => return Err(bad()),
            }
        }
        Ok(f)
    }

    /// Whether `t` passes the filters applied here.
    pub fn keep(&self, t: &Task, hosts: &HashMap<String, String>) -> bool {
        let nodes_ok = self.nodes.is_empty()
            || self.nodes.iter().any(|n| {
                (!t.node_id.is_empty() && t.node_id.starts_with(n.as_str()))
                    || hosts.get(&t.node_id).is_some_and(|h| h == n)
            });
        let ids_ok = self.ids.is_empty() || self.ids.iter().any(|p| t.id().starts_with(p.as_str()));
        let names_ok = self.names.is_empty()
            || self
                .names
                .iter()
                .any(|n| render::task_name(t).starts_with(n.as_str()));
        nodes_ok && ids_ok && names_ok
    }
}

/// Prints tasks as `ps` does, in the requested format.
pub(crate) async fn print_tasks(
    client: &Client,
    opts: &TaskListOpts,
    filters: &PsFilters,
    tasks: Vec<Task>,
) -> anyhow::Result<()> {
    let format = Format::parse(opts.format.as_deref())?;
    let hosts = hostnames(client).await;
    let mut tasks: Vec<Task> = tasks
        .into_iter()
        .filter(|t| filters.keep(t, &hosts))
        .collect();
    render::sort_tasks(&mut tasks);
    if opts.quiet {
        for t in &tasks {
            out(if opts.no_trunc {
                t.id()
            } else {
                short_id(t.id())
            });
        }
        return Ok(());
    }
    if matches!(format, Format::Json) {
        let tasks: Vec<Task> = tasks.into_iter().map(redacted_task).collect();
        out(json::array(&tasks)?);
        return Ok(());
    }
    let table = render::tasks_table(&tasks, &hosts, proto::now_ms(), opts.no_trunc);
    if format.is_template() {
        out_text(&Rows::from_table(&table, TASK_FIELDS).render(&format)?);
    } else {
        out(table.render().trim_end());
    }
    Ok(())
}

async fn ps(global: &GlobalOpts, args: PsArgs) -> anyhow::Result<()> {
    Format::parse(args.opts.format.as_deref())?;
    let filters = PsFilters::parse(&args.opts.filter)?;
    let client = global.connect().await?;
    let mut ids = Vec::new();
    let mut errors = Vec::new();
    for name in &args.services {
        match get_service(&client, name).await {
            Ok(s) => ids.push(service_id(&s).to_string()),
            Err(e) => errors.push(e),
        }
    }
    if !ids.is_empty() {
        let tasks = client
            .control()
            .list_tasks(ListTasksRequest {
                service_ids: ids,
                node_ids: Vec::new(),
                desired_states: filters.desired_states.iter().map(|s| *s as i32).collect(),
            })
            .await
            .reply(&client)?
            .tasks;
        print_tasks(&client, &args.opts, &filters, tasks).await?;
    }
    finish(errors)
}

/// Runs `skiff node ps`.
pub async fn node_ps(global: &GlobalOpts, args: NodePsArgs) -> anyhow::Result<()> {
    Format::parse(args.opts.format.as_deref())?;
    let filters = PsFilters::parse(&args.opts.filter)?;
    let client = global.connect().await?;
    let names = if args.nodes.is_empty() {
        vec!["self".to_string()]
    } else {
        args.nodes.clone()
    };
    let mut ids = Vec::new();
    let mut errors = Vec::new();
    for name in &names {
        match node_id(&client, name).await {
            Ok(id) => ids.push(id),
            Err(e) => errors.push(e),
        }
    }
    if !ids.is_empty() {
        let tasks = client
            .control()
            .list_tasks(ListTasksRequest {
                service_ids: Vec::new(),
                node_ids: ids,
                desired_states: filters.desired_states.iter().map(|s| *s as i32).collect(),
            })
            .await
            .reply(&client)?
            .tasks;
        print_tasks(&client, &args.opts, &filters, tasks).await?;
    }
    finish(errors)
}

/// The ID of the node `name` names (`self`: the node the client talks to).
async fn node_id(client: &Client, name: &str) -> anyhow::Result<String> {
    let name = if name == "self" {
        let info = client.swarm().info(InfoRequest {}).await.reply(client)?;
        if info.node_id.is_empty() {
            bail!(
                "cannot tell which node \"self\" is at {}: it is not part of a swarm; name the node by ID or hostname",
                client.host()
            );
        }
        info.node_id
    } else {
        name.to_string()
    };
    let node = client
        .control()
        .get_node(GetNodeRequest { node: name.clone() })
        .await
        .reply(client)?
        .node
        .with_context(|| format!("the daemon answered without node {name}; retry"))?;
    Ok(node.meta.map(|m| m.id).unwrap_or(name))
}

// ---------------------------------------------------------------------------------------
// inspect, rm
// ---------------------------------------------------------------------------------------

async fn inspect(global: &GlobalOpts, args: InspectArgs) -> anyhow::Result<()> {
    let format = Format::parse(args.format.as_deref())?;
    let client = global.connect().await?;
    let mut services = Vec::new();
    let mut errors = Vec::new();
    for name in &args.services {
        match get_service(&client, name).await {
            Ok(s) => services.push(redacted_service(s)),
            Err(e) => errors.push(e),
        }
    }
    if args.pretty {
        let text: Vec<String> = services.iter().map(render::pretty).collect();
        if !text.is_empty() {
            out(text.join("\n").trim_end());
        }
    } else if !services.is_empty() || errors.is_empty() {
        let values = services
            .iter()
            .map(docker::service)
            .collect::<anyhow::Result<Vec<_>>>()?;
        out_text(&format.inspect(values)?);
    }
    finish(errors)
}

async fn rm(global: &GlobalOpts, args: RmArgs) -> anyhow::Result<()> {
    let client = global.connect().await?;
    let mut errors = Vec::new();
    for name in &args.services {
        let result = client
            .control()
            .remove_service(RemoveServiceRequest {
                service: name.clone(),
            })
            .await
            .reply(&client);
        match result {
            Ok(_) => out(name),
            Err(e) => errors.push(e),
        }
    }
    finish(errors)
}

// ---------------------------------------------------------------------------------------
// update, rollback
// ---------------------------------------------------------------------------------------

async fn update(global: &GlobalOpts, args: UpdateArgs) -> anyhow::Result<()> {
    let client = global.connect().await?;
    if args.rollback {
        let (service, updated) = update_fresh(&client, &args.service, true, |service| {
            let unchanged = update::UpdateArgs {
                service: args.service.clone(),
                ..Default::default()
            };
            let env = |k: &str| std::env::var(k).ok();
            if update::updated_spec(service, &args, env)?
                != update::updated_spec(service, &unchanged, env)?
            {
                bail!("--rollback goes back to the previous spec: give it without other changes, then update again");
            }
            Ok(None)
        })
        .await?;
        return follow(&client, &service, updated, true, args.detach, args.quiet).await;
    }
    let env = |k: &str| std::env::var(k).ok();
    let networks = if update::names_networks(&args) {
        client
            .control()
            .list_networks(proto::ListNetworksRequest {})
            .await
            .reply(&client)?
            .networks
    } else {
        Vec::new()
    };
    let (service, updated) = update_fresh(&client, &args.service, false, |service| {
        let mut spec = update::updated_spec_with_networks(service, &args, env, &networks)?;
        if args.with_registry_auth {
            if let Some(c) = spec
                .task_template
                .as_mut()
                .and_then(|t| t.container.as_mut())
            {
                c.registry_auth = registry::registry_auth(&c.image)?;
            }
        }
        Ok(Some(spec))
    })
    .await?;
    follow(&client, &service, updated, false, args.detach, args.quiet).await
}

async fn rollback(global: &GlobalOpts, args: RollbackArgs) -> anyhow::Result<()> {
    let client = global.connect().await?;
    let (service, updated) = update_fresh(&client, &args.service, true, |_| Ok(None)).await?;
    follow(&client, &service, updated, true, args.detach, args.quiet).await
}

/// How long an update keeps being built again while others change the service under it.
const UPDATE_RETRY_FOR: std::time::Duration = std::time::Duration::from_secs(120);

/// Sends the spec `build` makes from a fresh read of the service (or asks for a rollback),
/// and returns the service as read and as updated. The service also changes by itself (its
/// endpoint, its rollout's status) and other users change it: when it changed between the
/// read and the write, the update is built again from a new read instead of failing with a
/// conflict, until it wins. That is right for every caller: each applies the user's flags
/// (or an absolute replica count) to whatever is current. A short random pause between
/// tries keeps twenty concurrent `service scale` calls from colliding again in lock step.
async fn update_fresh(
    client: &Client,
    name: &str,
    rollback: bool,
    build: impl Fn(&Service) -> anyhow::Result<Option<proto::ServiceSpec>>,
) -> anyhow::Result<(Service, Service)> {
    let deadline = tokio::time::Instant::now() + UPDATE_RETRY_FOR;
    let mut attempt: u32 = 0;
    loop {
        let service = get_service(client, name).await?;
        let spec = build(&service)?;
        let meta = service.meta.clone().unwrap_or_default();
        let sent = client
            .control()
            .update_service(UpdateServiceRequest {
                service: meta.id.clone(),
                version: meta.version,
                spec,
                rollback,
            })
            .await;
        match sent {
            Ok(resp) => {
                let updated = resp.into_inner().service.with_context(|| {
                    format!("the daemon updated service {name} but did not return it; see `skiff service inspect {name}`")
                })?;
                return Ok((service, updated));
            }
            Err(s)
                if s.code() == tonic::Code::Aborted && tokio::time::Instant::now() < deadline =>
            {
                attempt += 1;
                let most = 10u64 << attempt.min(5);
                let pause = rand::Rng::gen_range(&mut rand::thread_rng(), 1..=most);
                tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
            }
            Err(s) => return Err(client.error(s)),
        }
    }
}

/// Prints the service's name, then follows what the update started: a rollout when it
/// started or resumed one, else the service's convergence (a change of replicas, say).
async fn follow(
    client: &Client,
    service: &Service,
    updated: Service,
    rollback: bool,
    detach: bool,
    quiet: bool,
) -> anyhow::Result<()> {
    let meta = service.meta.clone().unwrap_or_default();
    let name = match service_name(service) {
        "" => short_id(&meta.id).to_string(),
        n => n.to_string(),
    };
    out(&name);
    if detach {
        return Ok(());
    }
    let started = updated.update_status != service.update_status
        && updated.update_status.as_ref().is_some_and(|u| {
            matches!(
                u.state(),
                proto::UpdateState::Updating | proto::UpdateState::RollbackStarted
            )
        });
    if started {
        progress::wait_rollout(client, &meta.id, &name, rollback, quiet).await
    } else {
        let since = updated.meta.as_ref().map_or(0, |m| m.updated_at);
        progress::wait(client, &meta.id, &name, since, quiet).await
    }
}

// ---------------------------------------------------------------------------------------
// scale
// ---------------------------------------------------------------------------------------

/// Parses `SERVICE=REPLICAS`.
pub fn parse_scale(value: &str) -> anyhow::Result<(String, u64)> {
    let (name, n) = value
        .split_once('=')
        .ok_or_else(|| anyhow!("invalid scale \"{value}\": use SERVICE=REPLICAS, e.g. web=3"))?;
    let name = name.trim();
    if name.is_empty() {
        bail!(
            "invalid scale \"{value}\": the service is missing; use SERVICE=REPLICAS, e.g. web=3"
        );
    }
    let n = n.trim();
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        bail!("invalid replicas \"{n}\" for service {name}: use a whole number, 0 or more");
    }
    let n = n.parse().map_err(|_| {
        anyhow!("invalid replicas \"{n}\" for service {name}: the number is too large")
    })?;
    Ok((name.to_string(), n))
}

/// Sets the replica count in `service`'s spec (replicas, or a replicated job's completions).
pub fn scaled_spec(service: &Service, name: &str, n: u64) -> anyhow::Result<proto::ServiceSpec> {
    let mut spec = service.spec.clone().unwrap_or_default();
    match spec.mode.as_mut() {
        Some(Mode::Replicated(r)) => r.replicas = n,
        Some(Mode::ReplicatedJob(j)) => {
            j.total_completions = n;
            j.max_concurrent = j.max_concurrent.max(1);
        }
        Some(Mode::Global(_)) | Some(Mode::GlobalJob(_)) => bail!(
            "service {name} cannot be scaled: it is global (one task per eligible node); scale replicated services only"
        ),
        None => bail!("service {name} has no mode; it cannot be scaled"),
    }
    Ok(spec)
}

async fn scale(global: &GlobalOpts, args: ScaleArgs) -> anyhow::Result<()> {
    let scales = args
        .scales
        .iter()
        .map(|s| parse_scale(s))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let client = global.connect().await?;
    let mut errors = Vec::new();
    let mut scaled = Vec::new();
    for (name, n) in &scales {
        match scale_one(&client, name, *n).await {
            Ok(service) => {
                out(format!("{name} scaled to {n}"));
                scaled.push((name.clone(), service));
            }
            Err(e) => errors.push(e),
        }
    }
    if !args.detach {
        for (name, service) in &scaled {
            let since = service.meta.as_ref().map(|m| m.updated_at).unwrap_or(0);
            if let Err(e) = progress::wait(&client, service_id(service), name, since, false).await {
                errors.push(e);
            }
        }
    }
    finish(errors)
}

async fn scale_one(client: &Client, name: &str, n: u64) -> anyhow::Result<Service> {
    let (_, updated) = update_fresh(client, name, false, |service| {
        scaled_spec(service, name, n).map(Some)
    })
    .await?;
    Ok(updated)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::{GlobalService, Meta, ReplicatedJob, ReplicatedService, ServiceSpec};

    fn service(mode: Mode) -> Service {
        Service {
            meta: Some(Meta {
                id: "abc123".into(),
                version: 4,
                ..Default::default()
            }),
            spec: Some(ServiceSpec {
                name: "web".into(),
                mode: Some(mode),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn scale_values() {
        assert_eq!(parse_scale("web=3").unwrap(), ("web".into(), 3));
        assert_eq!(parse_scale("web=0").unwrap(), ("web".into(), 0));
        assert_eq!(
            parse_scale("web").unwrap_err().to_string(),
            "invalid scale \"web\": use SERVICE=REPLICAS, e.g. web=3"
        );
        assert_eq!(
            parse_scale("web=-1").unwrap_err().to_string(),
            "invalid replicas \"-1\" for service web: use a whole number, 0 or more"
        );
        assert!(parse_scale("=3").is_err());
        assert!(parse_scale("web=x").is_err());
        assert!(parse_scale("web=").is_err());
    }

    #[test]
    fn scaling_changes_only_the_count() {
        let s = service(Mode::Replicated(ReplicatedService { replicas: 1 }));
        let spec = scaled_spec(&s, "web", 5).unwrap();
        assert_eq!(
            spec.mode,
            Some(Mode::Replicated(ReplicatedService { replicas: 5 }))
        );
        assert_eq!(spec.name, "web");
        let j = service(Mode::ReplicatedJob(ReplicatedJob {
            max_concurrent: 2,
            total_completions: 4,
        }));
        let spec = scaled_spec(&j, "job", 10).unwrap();
        assert_eq!(
            spec.mode,
            Some(Mode::ReplicatedJob(ReplicatedJob {
                max_concurrent: 2,
                total_completions: 10
            }))
        );
        let g = service(Mode::Global(GlobalService {}));
        assert!(scaled_spec(&g, "mon", 3)
            .unwrap_err()
            .to_string()
            .contains("cannot be scaled: it is global"));
    }

    #[test]
    fn registry_credentials_are_not_printed() {
        let mut s = service(Mode::Replicated(ReplicatedService { replicas: 1 }));
        s.spec.as_mut().unwrap().task_template = Some(proto::TaskSpec {
            container: Some(proto::ContainerSpec {
                registry_auth: "c2VjcmV0".into(),
                ..Default::default()
            }),
            ..Default::default()
        });
        let text = json::array(&[redacted_service(s)]).unwrap();
        assert!(
            !text.contains("c2VjcmV0") && text.contains("<redacted>"),
            "{text}"
        );
        let t = Task {
            spec: Some(
                proto::TaskSpec {
                    container: Some(proto::ContainerSpec {
                        registry_auth: "c2VjcmV0".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }
                .into(),
            ),
            ..Default::default()
        };
        assert!(!json::array(&[redacted_task(t)])
            .unwrap()
            .contains("c2VjcmV0"));
    }

    #[test]
    fn ls_filters() {
        let f = LsFilters::parse(&[
            "name=web".into(),
            "id=abc".into(),
            "label=tier".into(),
            "mode=replicated".into(),
        ])
        .unwrap();
        assert_eq!(f.names, ["web"]);
        let mut s = service(Mode::Replicated(ReplicatedService { replicas: 1 }));
        assert!(!f.keep(&s));
        s.spec
            .as_mut()
            .unwrap()
            .labels
            .insert("tier".into(), "x".into());
        assert!(f.keep(&s));
        assert!(!f.keep(&service(Mode::Global(GlobalService {}))));
        assert!(LsFilters::parse(&["mode=daemon".into()]).is_err());
        assert!(LsFilters::parse(&["colour=red".into()]).is_err());
        assert!(LsFilters::parse(&["name".into()]).is_err());
    }

    #[test]
    fn ps_filters() {
        let f = PsFilters::parse(&["desired-state=running".into(), "node=host-1".into()]).unwrap();
        assert_eq!(f.desired_states, [TaskState::Running]);
        let t = Task {
            node_id: "n1".into(),
            ..Default::default()
        };
        let hosts: HashMap<String, String> = [("n1".to_string(), "host-1".to_string())].into();
        assert!(f.keep(&t, &hosts));
        assert!(!f.keep(&t, &HashMap::new()));
        assert!(PsFilters::parse(&["desired-state=sleeping".into()]).is_err());
        assert!(PsFilters::parse(&["colour=red".into()]).is_err());
    }
}
