//! `skiff node ls|inspect|promote|demote|update|rm|ps` (`ps` lives with `service ps`).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::{anyhow, bail, Context as _};
use clap::{Args, Subcommand};
use proto::{
    GetNodeRequest, InfoRequest, ListNodesRequest, Node, NodeAvailability, NodeRole, NodeSpec,
    NodeState, Reachability, RemoveNodeRequest, UpdateNodeRequest,
};

use super::format::{format_bytes, format_cpus, format_time};
use super::output::{Format, Rows};
use super::{
    docker, json, out, out_text, report, table::Table, Client, GlobalOpts, Reply, Reported,
};

/// `skiff node ...`.
#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// List the nodes of the swarm
    #[command(visible_alias = "list")]
    Ls(LsArgs),
    /// Show details of one or more nodes
    Inspect(InspectArgs),
    /// Make workers managers
    Promote(NodesArgs),
    /// Make managers workers
    Demote(NodesArgs),
    /// Change a node's availability, role or labels
    Update(UpdateArgs),
    /// Remove nodes from the swarm
    #[command(visible_alias = "remove")]
    Rm(RmArgs),
    /// List the tasks running on one or more nodes (this node by default)
    Ps(super::service::NodePsArgs),
}

/// `skiff node ls`.
#[derive(Debug, Args)]
pub struct LsArgs {
    /// Only print node IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Output format: table (the default), json, a Go template ({{.Name}}) or table TEMPLATE
    #[arg(long)]
    pub format: Option<String>,
    /// Filter: role=manager|worker, name=HOSTNAME, id=ID, label=KEY[=VALUE]; repeat to combine
    #[arg(short, long, value_name = "KEY=VALUE")]
    pub filter: Vec<String>,
}

/// `skiff node inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Print a readable summary instead of JSON
    #[arg(long, conflicts_with = "format")]
    pub pretty: bool,
    /// Output format: json (the default) or a Go template on Docker's JSON ({{.Spec.Name}})
    #[arg(short, long)]
    pub format: Option<String>,
    /// Node ID, ID prefix or hostname ("self" for this node)
    #[arg(value_name = "NODE", required = true)]
    pub nodes: Vec<String>,
}

/// Commands over a list of nodes.
#[derive(Debug, Args)]
pub struct NodesArgs {
    /// Node ID, ID prefix or hostname ("self" for this node)
    #[arg(value_name = "NODE", required = true)]
    pub nodes: Vec<String>,
}

/// `skiff node update`.
#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// active, pause or drain
    #[arg(long, value_name = "AVAILABILITY")]
    pub availability: Option<String>,
    /// manager or worker
    #[arg(long, value_name = "ROLE")]
    pub role: Option<String>,
    /// Add or change a label (KEY=VALUE); repeat for several
    #[arg(long, value_name = "KEY=VALUE")]
    pub label_add: Vec<String>,
    /// Remove a label by key; repeat for several
    #[arg(long, value_name = "KEY")]
    pub label_rm: Vec<String>,
    /// Node ID, ID prefix or hostname ("self" for this node)
    #[arg(value_name = "NODE")]
    pub node: String,
}

/// `skiff node rm`.
#[derive(Debug, Args)]
pub struct RmArgs {
    /// Remove the node even if it is still up (a manager must be demoted first)
    #[arg(short, long)]
    pub force: bool,
    /// Node ID, ID prefix or hostname ("self" for this node)
    #[arg(value_name = "NODE", required = true)]
    pub nodes: Vec<String>,
}

/// Runs one `skiff node` command.
pub async fn run(global: &GlobalOpts, command: NodeCommand) -> anyhow::Result<()> {
    match command {
        NodeCommand::Ls(args) => ls(global, args).await,
        NodeCommand::Inspect(args) => inspect(global, args).await,
        NodeCommand::Promote(args) => set_role(global, args, NodeRole::Manager).await,
        NodeCommand::Demote(args) => set_role(global, args, NodeRole::Worker).await,
        NodeCommand::Update(args) => update(global, args).await,
        NodeCommand::Rm(args) => rm(global, args).await,
        NodeCommand::Ps(args) => super::service::node_ps(global, args).await,
    }
}

// ---------------------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------------------

/// STATUS column: Ready, Down, Unknown, Disconnected.
pub fn state_name(state: NodeState) -> &'static str {
    match state {
        NodeState::Ready => "Ready",
        NodeState::Down => "Down",
        NodeState::Disconnected => "Disconnected",
        NodeState::Unknown => "Unknown",
    }
}

/// AVAILABILITY column: Active, Pause, Drain.
pub fn availability_name(a: NodeAvailability) -> &'static str {
    match a {
        NodeAvailability::Active => "Active",
        NodeAvailability::Pause => "Pause",
        NodeAvailability::Drain => "Drain",
    }
}

/// A role as the user writes it.
pub fn role_name(role: NodeRole) -> &'static str {
    match role {
        NodeRole::Manager => "manager",
        NodeRole::Worker => "worker",
        NodeRole::Unspecified => "unknown",
    }
}

/// MANAGER STATUS column: Leader, Reachable, Unreachable (Unknown when the leader has not
/// said yet); empty for workers.
pub fn manager_status(node: &Node) -> &'static str {
    match &node.manager_status {
        None => "",
        Some(m) if m.leader => "Leader",
        Some(m) => match m.reachability() {
            Reachability::Reachable => "Reachable",
            Reachability::Unreachable => "Unreachable",
            Reachability::Unknown => "Unknown",
        },
    }
}

fn id(node: &Node) -> &str {
    node.meta.as_ref().map(|m| m.id.as_str()).unwrap_or("")
}

fn hostname(node: &Node) -> &str {
    node.description
        .as_ref()
        .map(|d| d.hostname.as_str())
        .unwrap_or("")
}

fn state(node: &Node) -> NodeState {
    node.status.as_ref().map(|s| s.state()).unwrap_or_default()
}

fn availability(node: &Node) -> NodeAvailability {
    node.spec
        .as_ref()
        .map(|s| s.availability())
        .unwrap_or_default()
}

/// The role a node is moving to (its spec), else the role of its certificate.
fn desired_role(node: &Node) -> NodeRole {
    match node.spec.as_ref().map(|s| s.desired_role()) {
        Some(NodeRole::Unspecified) | None => node.role(),
        Some(r) => r,
    }
}

/// Sorts as `node ls` shows them: by hostname, then ID.
pub fn sort_nodes(nodes: &mut [Node]) {
    nodes.sort_by(|a, b| (hostname(a), id(a)).cmp(&(hostname(b), id(b))));
}

/// The `node ls` table; `self_id` gets a `*` after its ID.
pub fn nodes_table(nodes: &[Node], self_id: Option<&str>) -> Table {
    let mut t = Table::new(&[
        "ID",
        "HOSTNAME",
        "STATUS",
        "AVAILABILITY",
        "MANAGER STATUS",
        "VERSION",
    ]);
    for n in nodes {
        let mut id_cell = id(n).to_string();
        if self_id.is_some_and(|s| !s.is_empty() && s == id(n)) {
            id_cell.push_str(" *");
        }
        t.push([
            id_cell,
            hostname(n).to_string(),
            state_name(state(n)).to_string(),
            availability_name(availability(n)).to_string(),
            manager_status(n).to_string(),
            n.description
                .as_ref()
                .map(|d| d.engine_version.clone())
                .unwrap_or_default(),
        ]);
    }
    t
}

/// What `node inspect --pretty` prints for one node.
pub fn pretty(node: &Node) -> String {
    let mut s = String::new();
    let meta = node.meta.clone().unwrap_or_default();
    let desc = node.description.clone().unwrap_or_default();
    let status = node.status.clone().unwrap_or_default();
    let spec = node.spec.clone().unwrap_or_default();
    let _ = writeln!(s, "ID:\t\t\t{}", meta.id);
    let _ = writeln!(s, "Hostname:\t\t{}", desc.hostname);
    let _ = writeln!(s, "Joined at:\t\t{}", format_time(meta.created_at));
    let _ = writeln!(s, "Status:");
    let _ = writeln!(s, " State:\t\t\t{}", state_name(status.state()));
    if !status.message.is_empty() {
        let _ = writeln!(s, " Message:\t\t{}", status.message);
    }
    let _ = writeln!(
        s,
        " Availability:\t\t{}",
        availability_name(spec.availability())
    );
    let _ = writeln!(s, " Address:\t\t{}", status.addr);
    let _ = writeln!(s, "Role:\t\t\t{}", role_name(desired_role(node)));
    if let Some(m) = &node.manager_status {
        let _ = writeln!(s, "Manager Status:");
        let _ = writeln!(s, " Address:\t\t{}", m.addr);
        let raft = match m.reachability() {
            Reachability::Reachable => "Reachable",
            Reachability::Unreachable => "Unreachable",
            Reachability::Unknown => "Unknown",
        };
        let _ = writeln!(s, " Raft Status:\t\t{raft}");
        let _ = writeln!(s, " Leader:\t\t{}", if m.leader { "Yes" } else { "No" });
    }
    let platform = desc.platform.clone().unwrap_or_default();
    let _ = writeln!(s, "Platform:");
    let _ = writeln!(s, " Operating System:\t{}", platform.os);
    let _ = writeln!(s, " Architecture:\t\t{}", platform.arch);
    let res = desc.resources.unwrap_or_default();
    let _ = writeln!(s, "Resources:");
    let _ = writeln!(s, " CPUs:\t\t\t{}", format_cpus(res.nano_cpus));
    let _ = writeln!(s, " Memory:\t\t{}", format_bytes(res.memory_bytes));
    let _ = writeln!(s, "Engine Version:\t\t{}", desc.engine_version);
    if !desc.runtime.is_empty() {
        let _ = writeln!(s, "Runtime:\t\t{}", desc.runtime);
    }
    if !spec.labels.is_empty() {
        let _ = writeln!(s, "Labels:");
        let labels: BTreeMap<_, _> = spec.labels.iter().collect();
        for (k, v) in labels {
            let _ = writeln!(s, " - {k}={v}");
        }
    }
    if let Some(cert) = &node.certificate {
        let _ = writeln!(s, "TLS Info:");
        let _ = writeln!(s, " Certificate Role:\t{}", role_name(cert.role()));
        let _ = writeln!(s, " Serial:\t\t{}", cert.serial);
        let _ = writeln!(s, " Expires at:\t\t{}", format_time(cert.not_after));
    }
    s
}

// ---------------------------------------------------------------------------------------
// Flags
// ---------------------------------------------------------------------------------------

/// `node ls --filter` values, split by where they apply.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Filters {
    /// Sent to the daemon.
    pub roles: Vec<String>,
    /// Applied here: hostname prefixes, as Docker matches `name=` (the daemon's own
    /// name filter is exact).
    pub names: Vec<String>,
    /// Applied here: ID prefixes.
    pub ids: Vec<String>,
    /// Applied here: labels the node must carry (key, and value when given).
    pub labels: Vec<(String, Option<String>)>,
}

impl Filters {
    /// Parses `--filter KEY=VALUE` values.
    pub fn parse(values: &[String]) -> anyhow::Result<Filters> {
        let mut f = Filters::default();
        for raw in values {
            let bad = || {
                anyhow!("invalid filter \"{raw}\": use role=manager|worker, name=HOSTNAME, id=ID or label=KEY[=VALUE]")
            };
            let (key, value) = raw.split_once('=').ok_or_else(bad)?;
            let value = value.trim();
            if value.is_empty() {
                return Err(bad());
            }
            match key.trim() {
                "role" => match value.to_ascii_lowercase().as_str() {
                    v @ ("manager" | "worker") => f.roles.push(v.to_string()),
                    _ => bail!("invalid filter \"{raw}\": the role is manager or worker"),
                },
                "name" => f.names.push(value.to_string()),
                "id" => f.ids.push(value.to_string()),
                "label" | "node.label" => {
                    let (k, v) = match value.split_once('=') {
                        Some((k, v)) => (k.to_string(), Some(v.to_string())),
                        None => (value.to_string(), None),
                    };
                    f.labels.push((k, v));
                }
                _ => return Err(bad()),
            }
        }
        Ok(f)
    }

    /// Whether `node` passes the filters applied here.
    pub fn keep(&self, node: &Node) -> bool {
        let ids_ok =
            self.ids.is_empty() || self.ids.iter().any(|p| id(node).starts_with(p.as_str()));
        let names_ok = self.names.is_empty()
            || self
                .names
                .iter()
                .any(|p| hostname(node).starts_with(p.as_str()));
        let labels = node.spec.as_ref().map(|s| &s.labels);
        let labels_ok = self
            .labels
            .iter()
            .all(|(k, v)| match (labels.and_then(|l| l.get(k)), v) {
                (Some(have), Some(want)) => have == want,
                (Some(_), None) => true,
                (None, _) => false,
            });
        ids_ok && names_ok && labels_ok
    }
}

/// Parses `--availability`.
pub fn parse_availability(s: &str) -> anyhow::Result<NodeAvailability> {
    match s.trim().to_ascii_lowercase().as_str() {
        "active" => Ok(NodeAvailability::Active),
        "pause" => Ok(NodeAvailability::Pause),
        "drain" => Ok(NodeAvailability::Drain),
        _ => bail!("invalid availability \"{s}\": use one of active, pause, drain"),
    }
}

/// Parses `--role`.
pub fn parse_role(s: &str) -> anyhow::Result<NodeRole> {
    match s.trim().to_ascii_lowercase().as_str() {
        "manager" => Ok(NodeRole::Manager),
        "worker" => Ok(NodeRole::Worker),
        _ => bail!("invalid role \"{s}\": use manager or worker"),
    }
}

/// Parses a `--label-add` value: `KEY=VALUE` or `KEY` (empty value).
pub fn parse_label(s: &str) -> anyhow::Result<(String, String)> {
    let (k, v) = s.split_once('=').unwrap_or((s, ""));
    let k = k.trim();
    if k.is_empty() {
        bail!("invalid label \"{s}\" for --label-add: the key must not be empty (use KEY=VALUE)");
    }
    Ok((k.to_string(), v.to_string()))
}

/// The changes `node update` makes, validated.
#[derive(Debug, Default)]
pub struct NodeChanges {
    availability: Option<NodeAvailability>,
    role: Option<NodeRole>,
    add: Vec<(String, String)>,
    remove: Vec<String>,
}

impl NodeChanges {
    /// Validates the flags of `node update`.
    pub fn parse(args: &UpdateArgs) -> anyhow::Result<NodeChanges> {
        let availability = args
            .availability
            .as_deref()
            .map(parse_availability)
            .transpose()?;
        let role = args.role.as_deref().map(parse_role).transpose()?;
        let add = args
            .label_add
            .iter()
            .map(|l| parse_label(l))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mut remove = Vec::new();
        for key in &args.label_rm {
            let k = key.trim();
            if k.is_empty() {
                bail!("invalid label key \"{key}\" for --label-rm: the key must not be empty");
            }
            if k.contains('=') {
                bail!(
                    "invalid label key \"{key}\" for --label-rm: give the key only, without =VALUE"
                );
            }
            remove.push(k.to_string());
        }
        Ok(NodeChanges {
            availability,
            role,
            add,
            remove,
        })
    }

    /// Applies the changes to `spec`; `node` names the node in errors.
    pub fn apply(&self, spec: &mut NodeSpec, node: &str) -> anyhow::Result<()> {
        if let Some(a) = self.availability {
            spec.set_availability(a);
        }
        if let Some(r) = self.role {
            spec.set_desired_role(r);
        }
        for (k, v) in &self.add {
            spec.labels.insert(k.clone(), v.clone());
        }
        for k in &self.remove {
            if spec.labels.remove(k).is_none() {
                bail!("label \"{k}\" is not set on node {node}");
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------------------

async fn get_node(client: &Client, node: &str) -> anyhow::Result<Node> {
    client
        .control()
        .get_node(GetNodeRequest {
            node: node.to_string(),
        })
        .await
        .reply(client)?
        .node
        .with_context(|| {
            format!(
                "the daemon answered without node {node}; retry, and report a bug if this persists"
            )
        })
}

/// The local daemon's node ID, when it tells.
async fn self_id(client: &Client) -> Option<String> {
    let info = client.swarm().info(InfoRequest {}).await.ok()?.into_inner();
    (!info.node_id.is_empty()).then_some(info.node_id)
}

/// What to send the daemon for a NODE argument: `self` means the node the client talks to.
async fn resolve(client: &Client, name: &str) -> anyhow::Result<String> {
    if name != "self" {
        return Ok(name.to_string());
    }
    self_id(client).await.with_context(|| {
        format!(
            "cannot tell which node \"self\" is at {}: name the node by ID or hostname",
            client.host()
        )
    })
}

/// The fields of a `node ls` row in a `--format` template, as Docker names them (and
/// `.Self`, whether the row is the node the CLI talks to).
pub const NODE_FIELDS: &[&str] = &[
    "ID",
    "Hostname",
    "Status",
    "Availability",
    "ManagerStatus",
    "EngineVersion",
];

/// `node ls`'s rows for a template: the table's cells (the ID without its `*`) and `.Self`.
pub fn node_rows(nodes: &[Node], self_id: Option<&str>) -> Rows {
    let mut rows = Rows::from_table(&nodes_table(nodes, None), NODE_FIELDS);
    for (i, n) in nodes.iter().enumerate() {
        let me = self_id.is_some_and(|s| !s.is_empty() && s == id(n));
        rows.set(i, "Self", "", serde_json::Value::Bool(me));
    }
    rows
}

async fn ls(global: &GlobalOpts, args: LsArgs) -> anyhow::Result<()> {
    let format = Format::parse(args.format.as_deref())?;
    let filters = Filters::parse(&args.filter)?;
    let client = global.connect().await?;
    let request = ListNodesRequest {
        roles: filters.roles.clone(),
        names: Vec::new(),
    };
    let mut control = client.control();
    let (nodes, me) = tokio::join!(control.list_nodes(request), self_id(&client));
    let mut nodes: Vec<Node> = nodes
        .reply(&client)?
        .nodes
        .into_iter()
        .filter(|n| filters.keep(n))
        .collect();
    sort_nodes(&mut nodes);
    if args.quiet {
        for n in &nodes {
            out(id(n));
        }
        return Ok(());
    }
    match &format {
        Format::Json => out(json::array(&nodes)?),
        Format::Default => out(nodes_table(&nodes, me.as_deref()).render().trim_end()),
        template => out_text(&node_rows(&nodes, me.as_deref()).render(template)?),
    }
    Ok(())
}

async fn inspect(global: &GlobalOpts, args: InspectArgs) -> anyhow::Result<()> {
    let format = Format::parse(args.format.as_deref())?;
    let client = global.connect().await?;
    let mut nodes = Vec::new();
    let mut errors = Vec::new();
    for name in &args.nodes {
        let node = match resolve(&client, name).await {
            Ok(n) => get_node(&client, &n).await,
            Err(e) => Err(e),
        };
        match node {
            Ok(n) => nodes.push(n),
            Err(e) => errors.push(e),
        }
    }
    if args.pretty {
        let text: Vec<String> = nodes.iter().map(pretty).collect();
        if !text.is_empty() {
            out(text.join("\n").trim_end());
        }
    } else if !nodes.is_empty() || errors.is_empty() {
        let root_ca = root_ca(&client).await;
        let values = nodes
            .iter()
            .map(|n| docker::node(n, &root_ca))
            .collect::<anyhow::Result<Vec<_>>>()?;
        out_text(&format.inspect(values)?);
    }
    finish(errors)
}

/// The cluster's root certificate, which Docker shows in every node's `TLSInfo`; empty
/// when the daemon will not say (the node's JSON is still worth printing without it).
async fn root_ca(client: &Client) -> String {
    client
        .control()
        .get_cluster(proto::GetClusterRequest {})
        .await
        .ok()
        .and_then(|r| r.into_inner().cluster)
        .and_then(|c| c.root_ca)
        .map(|ca| ca.cert_pem)
        .unwrap_or_default()
}

/// Prints the errors of a command over several objects; fails if there were any.
fn finish(errors: Vec<anyhow::Error>) -> anyhow::Result<()> {
    if errors.is_empty() {
        return Ok(());
    }
    errors.iter().for_each(report);
    Err(Reported.into())
}

async fn set_role(global: &GlobalOpts, args: NodesArgs, role: NodeRole) -> anyhow::Result<()> {
    let client = global.connect().await?;
    let mut failed = false;
    for name in &args.nodes {
        match set_one_role(&client, name, role).await {
            Ok(message) => out(message),
            Err(e) => {
                report(&e);
                failed = true;
            }
        }
    }
    if failed {
        Err(Reported.into())
    } else {
        Ok(())
    }
}

async fn set_one_role(client: &Client, name: &str, role: NodeRole) -> anyhow::Result<String> {
    let node = get_node(client, &resolve(client, name).await?).await?;
    if desired_role(&node) == role {
        return Ok(match role {
            NodeRole::Manager => format!("Node {name} is already a manager."),
            _ => format!("Node {name} is already a worker."),
        });
    }
    change_spec(client, &node, |spec| {
        spec.set_desired_role(role);
        Ok(())
    })
    .await?;
    Ok(match role {
        NodeRole::Manager => format!("Node {name} promoted to a manager in the swarm."),
        _ => format!("Manager {name} demoted in the swarm."),
    })
}

/// Times a spec change is tried again when the node changed under it.
const SPEC_CHANGE_ATTEMPTS: usize = 5;

/// Applies `change` to the node's spec and sends it. The node also changes by itself (its
/// status, its network address): when it did between the read and the write, the change
/// is applied again to a fresh read rather than failing with a conflict.
async fn change_spec(
    client: &Client,
    node: &Node,
    change: impl Fn(&mut NodeSpec) -> anyhow::Result<()>,
) -> anyhow::Result<Node> {
    let mut node = node.clone();
    let mut attempt = 1;
    loop {
        let meta = node.meta.clone().unwrap_or_default();
        let mut spec = node.spec.clone().unwrap_or_default();
        change(&mut spec)?;
        let sent = client
            .control()
            .update_node(UpdateNodeRequest {
                node: meta.id.clone(),
                version: meta.version,
                spec: Some(spec),
            })
            .await;
        match sent {
            Ok(resp) => return Ok(resp.into_inner().node.unwrap_or(node)),
            Err(s) if s.code() == tonic::Code::Aborted && attempt < SPEC_CHANGE_ATTEMPTS => {
                attempt += 1;
                node = get_node(client, &meta.id).await?;
            }
            Err(s) => return Err(client.error(s)),
        }
    }
}

async fn update(global: &GlobalOpts, args: UpdateArgs) -> anyhow::Result<()> {
    let changes = NodeChanges::parse(&args)?;
    let client = global.connect().await?;
    let node = get_node(&client, &resolve(&client, &args.node).await?).await?;
    change_spec(&client, &node, |spec| changes.apply(spec, &args.node)).await?;
    out(&args.node);
    Ok(())
}

async fn rm(global: &GlobalOpts, args: RmArgs) -> anyhow::Result<()> {
    let client = global.connect().await?;
    let mut failed = false;
    for name in &args.nodes {
        let result = match resolve(&client, name).await {
            Ok(node) => client
                .control()
                .remove_node(RemoveNodeRequest {
                    node,
                    force: args.force,
                })
                .await
                .reply(&client),
            Err(e) => Err(e),
        };
        match result {
            Ok(_) => out(name),
            Err(e) => {
                report(&e);
                failed = true;
            }
        }
    }
    if failed {
        Err(Reported.into())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::{ManagerStatus, Meta, NodeDescription, NodeStatus};

    fn node(id: &str, host: &str, manager: Option<(bool, Reachability)>) -> Node {
        Node {
            meta: Some(Meta {
                id: id.into(),
                ..Default::default()
            }),
            spec: Some(NodeSpec {
                desired_role: if manager.is_some() {
                    NodeRole::Manager as i32
                } else {
                    NodeRole::Worker as i32
                },
                availability: NodeAvailability::Active as i32,
                ..Default::default()
            }),
            description: Some(NodeDescription {
                hostname: host.into(),
                engine_version: "0.1.0".into(),
                ..Default::default()
            }),
            status: Some(NodeStatus {
                state: NodeState::Ready as i32,
                ..Default::default()
            }),
            manager_status: manager.map(|(leader, r)| ManagerStatus {
                leader,
                reachability: r as i32,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn manager_status_rendering() {
        assert_eq!(manager_status(&node("a", "h", None)), "");
        assert_eq!(
            manager_status(&node("a", "h", Some((true, Reachability::Reachable)))),
            "Leader"
        );
        // Leader wins even if reachability was not filled in.
        assert_eq!(
            manager_status(&node("a", "h", Some((true, Reachability::Unknown)))),
            "Leader"
        );
        assert_eq!(
            manager_status(&node("a", "h", Some((false, Reachability::Reachable)))),
            "Reachable"
        );
        assert_eq!(
            manager_status(&node("a", "h", Some((false, Reachability::Unreachable)))),
            "Unreachable"
        );
    }

    #[test]
    fn role_and_state_rendering() {
        assert_eq!(role_name(NodeRole::Manager), "manager");
        assert_eq!(role_name(NodeRole::Worker), "worker");
        assert_eq!(state_name(NodeState::Ready), "Ready");
        assert_eq!(state_name(NodeState::Disconnected), "Disconnected");
        assert_eq!(availability_name(NodeAvailability::Drain), "Drain");
        let mut n = node("a", "h", None);
        assert_eq!(desired_role(&n), NodeRole::Worker);
        n.spec.as_mut().unwrap().desired_role = NodeRole::Unspecified as i32;
        n.role = NodeRole::Manager as i32;
        assert_eq!(desired_role(&n), NodeRole::Manager);
    }

    #[test]
    fn table_is_sorted_and_starred() {
        let mut nodes = vec![
            node("ccc", "worker-1", None),
            node("bbb", "manager-1", Some((true, Reachability::Reachable))),
            node("aaa", "worker-1", None),
        ];
        nodes[0].spec.as_mut().unwrap().availability = NodeAvailability::Drain as i32;
        nodes[2].status.as_mut().unwrap().state = NodeState::Down as i32;
        sort_nodes(&mut nodes);
        let text = nodes_table(&nodes, Some("bbb")).render();
        assert_eq!(
            text,
            "ID      HOSTNAME    STATUS   AVAILABILITY   MANAGER STATUS   VERSION\n\
             bbb *   manager-1   Ready    Active         Leader           0.1.0\n\
             aaa     worker-1    Down     Active                          0.1.0\n\
             ccc     worker-1    Ready    Drain                           0.1.0\n"
        );
        // Without a known self: no star.
        assert!(!nodes_table(&nodes, None).render().contains('*'));
        assert!(!nodes_table(&nodes, Some("")).render().contains('*'));
    }

    #[test]
    fn filters() {
        let f = Filters::parse(&[
            "role=manager".into(),
            "name=h1".into(),
            "id=ab".into(),
            "label=zone=east".into(),
        ])
        .unwrap();
        assert_eq!(f.roles, vec!["manager"]);
        assert_eq!(f.names, vec!["h1"]);
        let mut n = node("abc", "h1", None);
        assert!(!f.keep(&n));
        n.spec
            .as_mut()
            .unwrap()
            .labels
            .insert("zone".into(), "east".into());
        assert!(f.keep(&n));
        assert!(!f.keep(&node("xbc", "h1", None)));
        // Hostnames match by prefix, as Docker's name= does.
        let f = Filters::parse(&["name=h".into()]).unwrap();
        assert!(f.keep(&node("abc", "h1", None)) && !f.keep(&node("abc", "x-h1", None)));
        assert!(Filters::parse(&["role=boss".into()]).is_err());
        assert!(Filters::parse(&["color=red".into()]).is_err());
        assert!(Filters::parse(&["role".into()]).is_err());
        assert!(Filters::parse(&["name=".into()]).is_err());
    }

    #[test]
    fn update_flags() {
        assert_eq!(
            parse_availability("Drain").unwrap(),
            NodeAvailability::Drain
        );
        assert_eq!(
            parse_availability("off").unwrap_err().to_string(),
            "invalid availability \"off\": use one of active, pause, drain"
        );
        assert_eq!(parse_label("a=b=c").unwrap(), ("a".into(), "b=c".into()));
        assert_eq!(parse_label("a").unwrap(), ("a".into(), "".into()));
        assert!(parse_label("=b")
            .unwrap_err()
            .to_string()
            .contains("the key must not be empty"));

        let args = UpdateArgs {
            availability: Some("pause".into()),
            role: None,
            label_add: vec!["zone=east".into()],
            label_rm: vec!["old".into()],
            node: "n1".into(),
        };
        let changes = NodeChanges::parse(&args).unwrap();
        let mut spec = NodeSpec::default();
        spec.labels.insert("old".into(), "x".into());
        changes.apply(&mut spec, "n1").unwrap();
        assert_eq!(spec.availability(), NodeAvailability::Pause);
        assert_eq!(spec.labels.get("zone").map(String::as_str), Some("east"));
        assert!(!spec.labels.contains_key("old"));
        // Removing a label that is not there is an error naming it.
        assert_eq!(
            changes.apply(&mut spec, "n1").unwrap_err().to_string(),
            "label \"old\" is not set on node n1"
        );
        let bad = UpdateArgs {
            label_rm: vec!["".into()],
            ..args
        };
        assert!(NodeChanges::parse(&bad).is_err());
    }

    #[test]
    fn pretty_summary() {
        let mut n = node("abc", "h1", Some((true, Reachability::Reachable)));
        n.meta.as_mut().unwrap().created_at = 1_700_000_000_000;
        n.description.as_mut().unwrap().resources = Some(proto::Resources {
            nano_cpus: 1_500_000_000,
            memory_bytes: 8 * 1024 * 1024 * 1024,
            ..Default::default()
        });
        n.spec
            .as_mut()
            .unwrap()
            .labels
            .insert("zone".into(), "east".into());
        n.certificate = Some(proto::NodeCertificate {
            serial: "01ab".into(),
            not_after: 1_700_000_000_000,
            role: NodeRole::Manager as i32,
        });
        let text = pretty(&n);
        assert!(text.contains("ID:\t\t\tabc\n"));
        assert!(text.contains("Joined at:\t\t2023-11-14 22:13:20 UTC\n"));
        assert!(text.contains(" Leader:\t\tYes\n"));
        assert!(text.contains(" CPUs:\t\t\t1.5\n"));
        assert!(text.contains(" Memory:\t\t8GiB\n"));
        assert!(text.contains(" - zone=east\n"));
        assert!(text.contains(" Expires at:\t\t2023-11-14 22:13:20 UTC\n"));
    }
}
