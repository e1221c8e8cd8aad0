//! `skiff stack deploy|ls|services|ps|rm|config`: Compose files deployed as Swarm deploys
//! them.
//!
//! One step per module, each pure but the last: `load` (the files as one interpolated YAML
//! tree), `model` (Swarm's subset of the Compose Specification, typed and checked),
//! `translate` (the cluster's objects, named and labelled for the stack), `deploy` (the
//! changes planned and checked whole, then made). This module reads the files and the
//! environment, lists and removes stacks, and prints.

pub mod deploy;
pub mod load;
pub mod model;
pub mod resolve;
pub mod translate;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use clap::{ArgAction, Args, Subcommand};
use proto::{ListTasksRequest, Service};

use super::output::{Format, Rows};
use super::service::{render, PsFilters, TaskListOpts};
use super::table::Table;
use super::{out, out_text, report, Client, GlobalOpts, Reply as _, Reported};
use load::interpolate::{parse_env_file, Variables};
use load::Source;
use translate::NAMESPACE_LABEL;

/// `skiff stack ...`.
#[derive(Debug, Subcommand)]
pub enum StackCommand {
    /// Deploy a new stack or update an existing one
    #[command(visible_alias = "up")]
    Deploy(DeployArgs),
    /// List stacks
    #[command(visible_alias = "list")]
    Ls(LsArgs),
    /// List the services of a stack
    Services(ServicesArgs),
    /// List the tasks of a stack
    Ps(PsArgs),
    /// Remove one or more stacks
    #[command(visible_alias = "remove", visible_alias = "down")]
    Rm(RmArgs),
    /// Print the merged Compose file, with its variables interpolated (no daemon needed)
    Config(ConfigArgs),
}

/// `skiff stack deploy`.
#[derive(Debug, Args)]
pub struct DeployArgs {
    /// Compose file; give several to merge them in order (later files override)
    #[arg(
        short = 'c',
        long = "compose-file",
        value_name = "FILE",
        required = true
    )]
    pub files: Vec<PathBuf>,
    /// Remove the stack's services that are no longer in the file
    #[arg(long)]
    pub prune: bool,
    /// Send registry credentials (from the Docker config) to the nodes with the tasks
    #[arg(long)]
    pub with_registry_auth: bool,
    /// Pin images to the digests their registries give now: always (the default),
    /// changed (only images the file changed since the last deploy) or never
    #[arg(long, value_name = "WHEN", default_value = "always")]
    pub resolve_image: String,
    /// Return once the changes are made (the default); --detach=false waits for every
    /// service to converge or finish its rollout
    #[arg(short, long, action = ArgAction::Set, num_args = 0..=1, default_value_t = true, default_missing_value = "true")]
    pub detach: bool,
    /// Show no progress while waiting
    #[arg(short, long)]
    pub quiet: bool,
    /// Stack name
    #[arg(value_name = "STACK")]
    pub name: String,
}

/// `skiff stack ls`.
#[derive(Debug, Args)]
pub struct LsArgs {
    /// Output format: table (the default), json, a Go template ({{.Name}}) or table TEMPLATE
    #[arg(long)]
    pub format: Option<String>,
}

/// `skiff stack services`.
#[derive(Debug, Args)]
pub struct ServicesArgs {
    /// Only print service IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Output format: table (the default), a Go template ({{.Name}}) or table TEMPLATE
    #[arg(long)]
    pub format: Option<String>,
    /// Filter: name=NAME (a prefix of the service's name, with or without the stack's),
    /// id=ID, label=KEY[=VALUE], mode=replicated|global|replicated-job|global-job
    #[arg(short, long, value_name = "KEY=VALUE")]
    pub filter: Vec<String>,
    /// Stack name
    #[arg(value_name = "STACK")]
    pub name: String,
}

/// `skiff stack ps`.
#[derive(Debug, Args)]
pub struct PsArgs {
    #[command(flatten)]
    pub opts: TaskListOpts,
    /// Stack name
    #[arg(value_name = "STACK")]
    pub name: String,
}

/// `skiff stack rm`.
#[derive(Debug, Args)]
pub struct RmArgs {
    /// Stack names
    #[arg(value_name = "STACK", required = true)]
    pub names: Vec<String>,
}

/// `skiff stack config`.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// Compose file; give several to merge them in order (later files override)
    #[arg(
        short = 'c',
        long = "compose-file",
        value_name = "FILE",
        required = true
    )]
    pub files: Vec<PathBuf>,
}

/// Runs one `skiff stack` command.
pub async fn run(global: &GlobalOpts, command: StackCommand) -> anyhow::Result<()> {
    match command {
        StackCommand::Deploy(args) => deploy_stack(global, args).await,
        StackCommand::Ls(args) => ls(global, args).await,
        StackCommand::Services(args) => services(global, args).await,
        StackCommand::Ps(args) => ps(global, args).await,
        StackCommand::Rm(args) => rm(global, args).await,
        StackCommand::Config(args) => config(args),
    }
}

/// Refuses a stack name that cannot prefix the names of its objects.
fn check_stack_name(name: &str) -> anyhow::Result<()> {
    let mut chars = name.chars();
    let ok = name.len() <= 50
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'));
    if !ok {
        bail!("invalid stack name {name:?}: use up to 50 letters, digits, '-' or '_', starting with a letter or digit");
    }
    Ok(())
}

async fn deploy_stack(global: &GlobalOpts, args: DeployArgs) -> anyhow::Result<()> {
    check_stack_name(&args.name)?;
    let resolve: resolve::ResolveImage = args.resolve_image.parse().map_err(|e| anyhow!("{e}"))?;
    let inputs = read_inputs(&args.files)?;
    let tree = load::load(&inputs.sources, &inputs.vars).map_err(|e| anyhow!("{e}"))?;
    let stack = model::read(&tree, &inputs.dir, &inputs.vars).map_err(|e| anyhow!("{e}"))?;
    if let Some(w) = ignored_warning(&stack) {
        eprintln!("{w}");
    }
    let mut desired =
        translate::translate(&args.name, &stack, &read_file).map_err(|e| anyhow!("{e}"))?;
    if args.with_registry_auth {
        for c in desired
            .services
            .iter_mut()
            .filter_map(|s| s.task_template.as_mut()?.container.as_mut())
        {
            c.registry_auth = super::service::registry::registry_auth(&c.image)?;
        }
    }
    let client = global.connect().await?;
    let current = deploy::current(&client).await?;
    let mut plan =
        deploy::plan(&args.name, &desired, &current, args.prune).map_err(|e| anyhow!("{e}"))?;
    // Only once everything is checked: a refused deploy asks no registry.
    let specs = plan
        .create_services
        .iter_mut()
        .chain(plan.update_services.iter_mut().map(|u| &mut u.spec))
        .collect();
    for w in resolve::pin(&client, resolve, specs, &current.services).await {
        eprintln!("{w}");
    }
    deploy::execute(&client, plan, !args.detach, args.quiet).await
}

/// The stack a service belongs to, from its label.
fn stack_of(s: &Service) -> Option<&str> {
    s.spec
        .as_ref()?
        .labels
        .get(NAMESPACE_LABEL)
        .map(String::as_str)
}

/// The services of stack `name`, sorted by name.
async fn stack_services(client: &Client, name: &str) -> anyhow::Result<Vec<Service>> {
    let mut services: Vec<Service> = client
        .control()
        .list_services(proto::ListServicesRequest::default())
        .await
        .reply(client)?
        .services
        .into_iter()
        .filter(|s| stack_of(s) == Some(name))
        .collect();
    render::sort_services(&mut services);
    Ok(services)
}

async fn ls(global: &GlobalOpts, args: LsArgs) -> anyhow::Result<()> {
    let format = Format::parse(args.format.as_deref())?;
    let client = global.connect().await?;
    let services = client
        .control()
        .list_services(proto::ListServicesRequest::default())
        .await
        .reply(&client)?
        .services;
    let mut stacks: BTreeMap<&str, usize> = BTreeMap::new();
    for s in &services {
        if let Some(name) = stack_of(s) {
            *stacks.entry(name).or_default() += 1;
        }
    }
    if matches!(format, Format::Json) {
        let rows: Vec<serde_json::Value> = stacks
            .iter()
            .map(|(name, n)| serde_json::json!({"Name": name, "Services": n}))
            .collect();
        out(serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    let mut table = Table::new(&["NAME", "SERVICES"]);
    for (name, n) in &stacks {
        table.push([name.to_string(), n.to_string()]);
    }
    if format.is_template() {
        // Docker's stack rows: `.Name .Services .Orchestrator`.
        let mut rows = Rows::from_table(&table, &["Name", "Services"]);
        for i in 0..stacks.len() {
            rows.set(i, "Orchestrator", "ORCHESTRATOR", "Swarm".into());
        }
        out_text(&rows.render(&format)?);
    } else {
        out(table.render().trim_end());
    }
    Ok(())
}

async fn services(global: &GlobalOpts, args: ServicesArgs) -> anyhow::Result<()> {
    let format = Format::parse(args.format.as_deref())?;
    let filters = super::service::LsFilters::parse(&args.filter)?;
    let client = global.connect().await?;
    let mut services = stack_services(&client, &args.name).await?;
    if services.is_empty() {
        bail!("nothing found in stack {}", args.name);
    }
    let prefix = format!("{}_", args.name);
    services.retain(|s| {
        let name = render::service_name(s);
        let short = name.strip_prefix(&prefix).unwrap_or(name);
        filters.keep(s)
            && (filters.names.is_empty()
                || filters
                    .names
                    .iter()
                    .any(|n| name.starts_with(n.as_str()) || short.starts_with(n.as_str())))
    });
    if args.quiet {
        for s in &services {
            out(render::service_id(s));
        }
        return Ok(());
    }
    let tasks = client
        .control()
        .list_tasks(ListTasksRequest {
            service_ids: services
                .iter()
                .map(|s| render::service_id(s).to_string())
                .collect(),
            ..Default::default()
        })
        .await
        .reply(&client)?
        .tasks;
    super::service::print_services(&services, &tasks, &format)
}

async fn ps(global: &GlobalOpts, args: PsArgs) -> anyhow::Result<()> {
    Format::parse(args.opts.format.as_deref())?;
    let filters = PsFilters::parse(&args.opts.filter)?;
    let client = global.connect().await?;
    let services = stack_services(&client, &args.name).await?;
    if services.is_empty() {
        bail!("nothing found in stack {}", args.name);
    }
    let tasks = client
        .control()
        .list_tasks(ListTasksRequest {
            service_ids: services
                .iter()
                .map(|s| render::service_id(s).to_string())
                .collect(),
            node_ids: Vec::new(),
            desired_states: filters.desired_states.iter().map(|s| *s as i32).collect(),
        })
        .await
        .reply(&client)?
        .tasks;
    super::service::print_tasks(&client, &args.opts, &filters, tasks).await
}

/// How long `stack rm` waits for the stopping tasks of its services to leave a network.
const NETWORK_RELEASE_TIMEOUT: Duration = Duration::from_secs(60);

async fn rm(global: &GlobalOpts, args: RmArgs) -> anyhow::Result<()> {
    for name in &args.names {
        check_stack_name(name)?;
    }
    let client = global.connect().await?;
    let mut failed = false;
    for name in &args.names {
        if let Err(e) = rm_one(&client, name).await {
            report(&e);
            failed = true;
        }
    }
    if failed {
        return Err(Reported.into());
    }
    Ok(())
}

fn labelled(labels: &std::collections::HashMap<String, String>, stack: &str) -> bool {
    labels.get(NAMESPACE_LABEL).is_some_and(|n| n == stack)
}

/// Removes a stack: its services, then its networks (once the services' tasks have left
/// them), then its secrets and configs.
async fn rm_one(client: &Client, stack: &str) -> anyhow::Result<()> {
    let mut control = client.control();
    let services = stack_services(client, stack).await?;
    let networks: Vec<(String, String)> = control
        .list_networks(proto::ListNetworksRequest {})
        .await
        .reply(client)?
        .networks
        .into_iter()
        .filter_map(|n| {
            let spec = n.spec?;
            labelled(&spec.labels, stack).then(|| (n.meta.unwrap_or_default().id, spec.name))
        })
        .collect();
    let secrets: Vec<(String, String)> = control
        .list_secrets(proto::ListSecretsRequest {})
        .await
        .reply(client)?
        .secrets
        .into_iter()
        .filter_map(|s| {
            let spec = s.spec?;
            labelled(&spec.labels, stack).then(|| (s.meta.unwrap_or_default().id, spec.name))
        })
        .collect();
    let configs: Vec<(String, String)> = control
        .list_configs(proto::ListConfigsRequest {})
        .await
        .reply(client)?
        .configs
        .into_iter()
        .filter_map(|c| {
            let spec = c.spec?;
            labelled(&spec.labels, stack).then(|| (c.meta.unwrap_or_default().id, spec.name))
        })
        .collect();
    if services.is_empty() && networks.is_empty() && secrets.is_empty() && configs.is_empty() {
        eprintln!("Nothing found in stack: {stack}");
        return Ok(());
    }
    for s in &services {
        out(format!("Removing service {}", render::service_name(s)));
        control
            .remove_service(proto::RemoveServiceRequest {
                service: render::service_id(s).to_string(),
            })
            .await
            .reply(client)?;
    }
    for (id, name) in &networks {
        out(format!("Removing network {name}"));
        remove_network(client, id, name).await?;
    }
    for (id, name) in &secrets {
        out(format!("Removing secret {name}"));
        control
            .remove_secret(proto::RemoveSecretRequest { secret: id.clone() })
            .await
            .reply(client)?;
    }
    for (id, name) in &configs {
        out(format!("Removing config {name}"));
        control
            .remove_config(proto::RemoveConfigRequest { config: id.clone() })
            .await
            .reply(client)?;
    }
    Ok(())
}

/// Removes a network, asking again while the tasks of removed services are still stopping
/// in it (the manager refuses until they have), for at most [`NETWORK_RELEASE_TIMEOUT`].
async fn remove_network(client: &Client, id: &str, name: &str) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + NETWORK_RELEASE_TIMEOUT;
    loop {
        let status = match client
            .control()
            .remove_network(proto::RemoveNetworkRequest {
                network: id.to_string(),
            })
            .await
        {
            Ok(_) => return Ok(()),
            Err(s) => s,
        };
        let stopping = status.code() == tonic::Code::FailedPrecondition
            && status.message().contains("stopping");
        if !stopping || tokio::time::Instant::now() >= deadline {
            return Err(client.error(status)).with_context(|| {
                format!("network {name} was not removed; run `skiff stack rm` again once its tasks have stopped")
            });
        }
        // The tasks' nodes report them stopped within a stop grace period.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The files, the first file's directory (absolute: relative paths in the files start
/// there) and the variables: this shell's environment over a `.env` beside the first file.
pub struct Inputs {
    pub sources: Vec<Source>,
    pub dir: PathBuf,
    pub vars: Variables,
}

/// Reads the Compose files and their variables.
pub fn read_inputs(files: &[PathBuf]) -> anyhow::Result<Inputs> {
    let mut sources = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(file)
            .map_err(|e| anyhow!("cannot read the Compose file {}: {e}", file.display()))?;
        sources.push(Source {
            name: file.display().to_string(),
            text,
        });
    }
    let first = files.first().context("give a Compose file with -c FILE")?;
    let parent = first.parent().filter(|p| !p.as_os_str().is_empty());
    let dir = std::path::absolute(parent.unwrap_or(Path::new(".")))
        .context("cannot tell the current directory")?;
    let mut vars = Variables::new();
    let env_file = dir.join(".env");
    match std::fs::read_to_string(&env_file) {
        Ok(text) => {
            let name = env_file.display().to_string();
            vars.extend(parse_env_file(&text, &name).map_err(|e| anyhow!("{e}"))?);
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(anyhow!("cannot read {}: {e}", env_file.display())),
    }
    vars.extend(std::env::vars());
    Ok(Inputs { sources, dir, vars })
}

/// Reads a file the stack names, for `translate`.
pub fn read_file(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// The ignored keys as one warning line, as Docker prints it.
pub fn ignored_warning(stack: &model::Stack) -> Option<String> {
    (!stack.ignored.is_empty()).then(|| {
        let keys: Vec<&str> = stack.ignored.iter().map(String::as_str).collect();
        format!("Ignoring unsupported options: {}", keys.join(", "))
    })
}

fn config(args: ConfigArgs) -> anyhow::Result<()> {
    let inputs = read_inputs(&args.files)?;
    let tree = load::load(&inputs.sources, &inputs.vars).map_err(|e| anyhow!("{e}"))?;
    // Checked as `deploy` checks it, so what prints is what deploys.
    let stack = model::read(&tree, &inputs.dir, &inputs.vars).map_err(|e| anyhow!("{e}"))?;
    if let Some(w) = ignored_warning(&stack) {
        eprintln!("{w}");
    }
    let text = yaml_serde::to_string(&tree).context("cannot print the merged file")?;
    out(text.trim_end());
    Ok(())
}
