//! `skiff network create|ls|inspect|rm`: overlay networks services attach to. The listing,
//! inspect and rm flags are those of secrets and configs (`named.rs`).

use anyhow::bail;
use clap::{Args, Subcommand};
use proto::{
    CreateNetworkRequest, GetNetworkRequest, IpamConfig, ListNetworksRequest, Network, NetworkSpec,
    RemoveNetworkRequest,
};

use super::named::{labels, InspectArgs, LsArgs, RmArgs};
use super::output::{Format, Rows};
use super::{docker, json, out, out_text, report, table::Table, GlobalOpts, Reply, Reported};

/// `skiff network ...`.
#[derive(Debug, Subcommand)]
pub enum NetworkCommand {
    /// Create an overlay network
    Create(CreateArgs),
    /// List networks
    #[command(visible_alias = "list")]
    Ls(NetworkLsArgs),
    /// Show details of one or more networks
    Inspect(InspectArgs),
    /// Remove one or more networks
    #[command(visible_alias = "remove")]
    Rm(RmArgs),
}

/// `ls`: the listing flags of secrets and configs, and `--filter`.
#[derive(Debug, Args)]
pub struct NetworkLsArgs {
    #[command(flatten)]
    pub ls: LsArgs,
    /// Only networks that match: driver=, id=, label=KEY[=VALUE], name=, scope=, type=custom|builtin,
    /// dangling=true|false
    /// (one key given twice matches either value; different keys must all match)
    #[arg(short, long, value_name = "KEY=VALUE")]
    pub filter: Vec<String>,
}

/// One `network ls --filter`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Filter {
    Driver(String),
    Id(String),
    Label(String, Option<String>),
    Name(String),
    Scope(String),
    Type(String),
    /// `dangling=true|false`: used by no service (the ingress network never is).
    Dangling(bool),
}

impl Filter {
    fn parse(value: &str) -> anyhow::Result<Filter> {
        let (key, v) = value.split_once('=').ok_or_else(|| {
            anyhow::anyhow!(
                "invalid filter \"{value}\" for --filter: use KEY=VALUE, e.g. name=front"
            )
        })?;
        let v = v.trim().to_string();
        Ok(match key.trim().to_ascii_lowercase().as_str() {
            "driver" => Filter::Driver(v),
            "id" => Filter::Id(v),
            "label" => match v.split_once('=') {
                Some((k, val)) => Filter::Label(k.to_string(), Some(val.to_string())),
                None => Filter::Label(v, None),
            },
            "name" => Filter::Name(v),
            "scope" => Filter::Scope(v),
            "type" if v == "custom" || v == "builtin" => Filter::Type(v),
            "type" => bail!("invalid filter \"{value}\" for --filter: type is custom or builtin"),
            "dangling" => match v.as_str() {
                "true" | "1" => Filter::Dangling(true),
                "false" | "0" => Filter::Dangling(false),
                _ => bail!("invalid filter \"{value}\" for --filter: dangling is true or false"),
            },
            other => bail!(
                "invalid filter \"{value}\" for --filter: unknown key \"{other}\"; use driver, id, label, name, scope, type or dangling"
            ),
        })
    }

    fn key(&self) -> u8 {
        match self {
            Filter::Driver(_) => 0,
            Filter::Id(_) => 1,
            Filter::Label(..) => 2,
            Filter::Name(_) => 3,
            Filter::Scope(_) => 4,
            Filter::Type(_) => 5,
            Filter::Dangling(_) => 6,
        }
    }

    /// Whether `network` matches, as Docker matches: names and IDs by part, the scope of
    /// every skiff network is swarm, and all are custom (none is predefined).
    fn matches(&self, network: &Network, used: &[String]) -> bool {
        let spec = network.spec.clone().unwrap_or_default();
        let id = network.meta.as_ref().map_or("", |m| m.id.as_str());
        match self {
            Filter::Driver(d) => spec.driver == *d,
            Filter::Id(p) => id.starts_with(p.as_str()),
            Filter::Label(k, v) => spec
                .labels
                .get(k)
                .is_some_and(|have| v.as_ref().is_none_or(|v| v == have)),
            Filter::Name(n) => spec.name.contains(n.as_str()),
            Filter::Scope(s) => s == "swarm",
            Filter::Type(t) => t == "custom",
            Filter::Dangling(d) => {
                let in_use = spec.ingress || used.iter().any(|u| u == id);
                *d != in_use
            }
        }
    }
}

/// The networks that pass `filters`: any filter of a key, every key; `used` are the IDs
/// of the networks services name (for `dangling`).
fn filtered(networks: Vec<Network>, filters: &[Filter], used: &[String]) -> Vec<Network> {
    networks
        .into_iter()
        .filter(|n| {
            (0..7).all(|key| {
                let of_key: Vec<&Filter> = filters.iter().filter(|f| f.key() == key).collect();
                of_key.is_empty() || of_key.iter().any(|f| f.matches(n, used))
            })
        })
        .collect()
}

/// `create [OPTIONS] NAME`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Name of the network
    pub name: String,
    /// Driver (only "overlay")
    #[arg(short, long, default_value = "overlay")]
    pub driver: String,
    /// Subnet in CIDR form (default: the next free one from the cluster's address pools)
    #[arg(long, value_name = "CIDR")]
    pub subnet: Option<String>,
    /// Gateway address inside the subnet (default: its first address)
    #[arg(long, value_name = "IP")]
    pub gateway: Option<String>,
    /// Allow standalone containers to attach
    #[arg(long)]
    pub attachable: bool,
    /// Driver option (KEY=VALUE); repeat for more
    #[arg(short, long, value_name = "KEY=VALUE")]
    pub opt: Vec<String>,
    /// Label (KEY=VALUE); repeat for more
    #[arg(short, long, value_name = "KEY=VALUE")]
    pub label: Vec<String>,
}

/// Runs a `network` command.
pub async fn run(global: &GlobalOpts, command: NetworkCommand) -> anyhow::Result<()> {
    match command {
        NetworkCommand::Create(args) => create(global, args).await,
        NetworkCommand::Ls(args) => ls(global, args).await,
        NetworkCommand::Inspect(args) => inspect(global, args).await,
        NetworkCommand::Rm(args) => rm(global, args).await,
    }
}

/// The spec `network create` asks for, checked as far as the client can.
fn spec(args: CreateArgs) -> anyhow::Result<NetworkSpec> {
    if args.gateway.is_some() && args.subnet.is_none() {
        bail!("--gateway needs --subnet: give the subnet the gateway belongs to");
    }
    let ipam = args
        .subnet
        .map(|subnet| IpamConfig {
            subnet,
            gateway: args.gateway.unwrap_or_default(),
            range: String::new(),
        })
        .into_iter()
        .collect();
    Ok(NetworkSpec {
        name: args.name,
        labels: labels(&args.label)?,
        driver: args.driver,
        attachable: args.attachable,
        ipam,
        driver_opts: labels(&args.opt)?,
        ..Default::default()
    })
}

async fn create(global: &GlobalOpts, args: CreateArgs) -> anyhow::Result<()> {
    let spec = spec(args)?;
    let client = global.connect().await?;
    let network = client
        .control()
        .create_network(CreateNetworkRequest { spec: Some(spec) })
        .await
        .reply(&client)?
        .network;
    out(network
        .and_then(|n| n.meta)
        .map(|m| m.id)
        .unwrap_or_default());
    Ok(())
}

/// A network's row: ID, name, driver, scope (always "swarm": networks span the cluster).
fn row(network: &Network) -> [String; 4] {
    let spec = network.spec.clone().unwrap_or_default();
    [
        network
            .meta
            .as_ref()
            .map(|m| m.id.clone())
            .unwrap_or_default(),
        spec.name,
        spec.driver,
        "swarm".into(),
    ]
}

async fn ls(global: &GlobalOpts, args: NetworkLsArgs) -> anyhow::Result<()> {
    let filters = args
        .filter
        .iter()
        .map(|f| Filter::parse(f))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let args = args.ls;
    let format = Format::parse(args.format.as_deref())?;
    let client = global.connect().await?;
    let networks = client
        .control()
        .list_networks(ListNetworksRequest {})
        .await
        .reply(&client)?
        .networks;
    let used: Vec<String> = if filters.iter().any(|f| matches!(f, Filter::Dangling(_))) {
        client
            .control()
            .list_services(proto::ListServicesRequest::default())
            .await
            .reply(&client)?
            .services
            .into_iter()
            .filter_map(|s| s.spec?.task_template)
            .flat_map(|t| t.networks.into_iter().map(|n| n.target))
            .collect()
    } else {
        Vec::new()
    };
    let mut networks = filtered(networks, &filters, &used);
    networks.sort_by_key(|n| n.spec.as_ref().map(|s| s.name.clone()));
    if args.quiet {
        for n in &networks {
            out(&row(n)[0]);
        }
        return Ok(());
    }
    if matches!(format, Format::Json) {
        out(json::pretty(&serde_json::Value::Array(
            networks
                .iter()
                .map(json::to_value)
                .collect::<anyhow::Result<_>>()?,
        ))?);
        return Ok(());
    }
    let mut table = Table::new(&["ID", "NAME", "DRIVER", "SCOPE"]);
    for n in &networks {
        table.push(row(n));
    }
    if format.is_template() {
        out_text(&network_rows(&networks, &table).render(&format)?);
    } else {
        out(table.render().trim_end());
    }
    Ok(())
}

/// The fields of a `network ls` row in a `--format` template, as Docker names them.
const NETWORK_FIELDS: &[&str] = &["ID", "Name", "Driver", "Scope"];

/// `network ls`'s rows for a template: the table's cells, and Docker's other fields.
fn network_rows(networks: &[proto::Network], table: &Table) -> Rows {
    let mut rows = Rows::from_table(table, NETWORK_FIELDS);
    for (i, n) in networks.iter().enumerate() {
        let spec = n.spec.clone().unwrap_or_default();
        let created = n.meta.as_ref().map(|m| m.created_at).unwrap_or_default();
        let cells = [
            ("IPv6", "IPV6", "false".to_string()),
            ("Internal", "INTERNAL", spec.internal.to_string()),
            ("Labels", "LABELS", joined_labels(&spec.labels)),
            ("CreatedAt", "CREATED", super::format::format_time(created)),
        ];
        for (field, header, value) in cells {
            rows.set(i, field, header, serde_json::Value::String(value));
        }
    }
    rows
}

/// Labels as Docker's `ls` rows show them: `k=v,k2=v2` (sorted here, for a stable line).
pub fn joined_labels(labels: &std::collections::HashMap<String, String>) -> String {
    let mut pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    pairs.sort();
    pairs.join(",")
}

async fn inspect(global: &GlobalOpts, args: InspectArgs) -> anyhow::Result<()> {
    let format = Format::parse(args.format.as_deref())?;
    let client = global.connect().await?;
    let mut control = client.control();
    let mut found = Vec::new();
    let mut failed = false;
    for name in &args.names {
        let value = control
            .get_network(GetNetworkRequest {
                network: name.clone(),
            })
            .await
            .reply(&client)
            .and_then(|r| r.network.as_ref().map(docker::network).transpose());
        match value {
            Ok(v) => found.extend(v),
            Err(e) => {
                report(&e);
                failed = true;
            }
        }
    }
    if !found.is_empty() {
        out_text(&format.inspect(found)?);
    }
    if failed {
        Err(Reported.into())
    } else {
        Ok(())
    }
}

async fn rm(global: &GlobalOpts, args: RmArgs) -> anyhow::Result<()> {
    let client = global.connect().await?;
    let mut control = client.control();
    let mut failed = false;
    for name in &args.names {
        let result = control
            .remove_network(RemoveNetworkRequest {
                network: name.clone(),
            })
            .await
            .reply(&client);
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

    fn net(id: &str, name: &str, labels: &[(&str, &str)]) -> Network {
        Network {
            meta: Some(proto::Meta {
                id: id.into(),
                ..Default::default()
            }),
            spec: Some(NetworkSpec {
                name: name.into(),
                driver: "overlay".into(),
                labels: labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn filters_match_as_docker_s_one_key_any_value_all_keys() {
        let nets = || {
            vec![
                net("aaa111", "front", &[("tier", "web")]),
                net("bbb222", "back", &[("tier", "db")]),
                net("ccc333", "frontier", &[]),
            ]
        };
        let names = |filters: &[&str]| -> Vec<String> {
            let filters: Vec<Filter> = filters.iter().map(|f| Filter::parse(f).unwrap()).collect();
            filtered(nets(), &filters, &["aaa111".to_string()])
                .into_iter()
                .map(|n| n.spec.unwrap().name)
                .collect()
        };
        assert_eq!(names(&["name=front"]), ["front", "frontier"]);
        assert_eq!(
            names(&["name=front", "name=back"]),
            ["front", "back", "frontier"]
        );
        assert_eq!(names(&["name=front", "label=tier"]), ["front"]);
        assert_eq!(names(&["label=tier=db"]), ["back"]);
        assert_eq!(names(&["id=bbb"]), ["back"]);
        assert_eq!(
            names(&["driver=overlay", "scope=swarm", "type=custom"]).len(),
            3
        );
        assert!(names(&["scope=local"]).is_empty() && names(&["type=builtin"]).is_empty());
        assert_eq!(names(&["dangling=false"]), ["front"], "a service names it");
        assert_eq!(names(&["dangling=true"]), ["back", "frontier"]);
        assert!(Filter::parse("dangling=maybe").is_err());
        let e = Filter::parse("color=red").unwrap_err().to_string();
        assert!(e.contains("unknown key \"color\""), "{e}");
        assert!(Filter::parse("name").is_err());
    }
    use clap::Parser;

    #[derive(Parser)]
    struct Wrap {
        #[command(subcommand)]
        command: NetworkCommand,
    }

    fn create_args(line: &[&str]) -> CreateArgs {
        let mut argv = vec!["skiff", "create"];
        argv.extend_from_slice(line);
        match Wrap::try_parse_from(argv).unwrap().command {
            NetworkCommand::Create(a) => a,
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn create_flags_make_the_spec() {
        let s = spec(create_args(&[
            "--subnet",
            "10.5.0.0/24",
            "--gateway",
            "10.5.0.254",
            "--attachable",
            "--opt",
            "mtu=1400",
            "back",
        ]))
        .unwrap();
        assert_eq!((s.name.as_str(), s.driver.as_str()), ("back", "overlay"));
        assert!(s.attachable);
        assert_eq!(s.ipam[0].subnet, "10.5.0.0/24");
        assert_eq!(s.ipam[0].gateway, "10.5.0.254");
        assert_eq!(s.driver_opts["mtu"], "1400");
        assert!(spec(create_args(&["back"])).unwrap().ipam.is_empty());
        let err = spec(create_args(&["--gateway", "10.0.0.1", "x"])).unwrap_err();
        assert!(err.to_string().contains("--gateway needs --subnet"));
    }
}
