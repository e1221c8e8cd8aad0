//! `skiff network create|ls|inspect|rm`: overlay networks services attach to. The listing,
//! inspect and rm flags are those of secrets and configs (`named.rs`).

use anyhow::bail;
use clap::{Args, Subcommand};
use proto::{
    CreateNetworkRequest, GetNetworkRequest, IpamConfig, ListNetworksRequest, Network, NetworkSpec,
    RemoveNetworkRequest,
};

use super::named::{labels, InspectArgs, LsArgs, RmArgs};
use super::{
    inspect_format, json, list_format, out, report, table::Table, GlobalOpts, ListFormat, Reply,
    Reported,
};

/// `skiff network ...`.
#[derive(Debug, Subcommand)]
pub enum NetworkCommand {
    /// Create an overlay network
    Create(CreateArgs),
    /// List networks
    #[command(visible_alias = "list")]
    Ls(LsArgs),
    /// Show details of one or more networks
    Inspect(InspectArgs),
    /// Remove one or more networks
    #[command(visible_alias = "remove")]
    Rm(RmArgs),
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

async fn ls(global: &GlobalOpts, args: LsArgs) -> anyhow::Result<()> {
    let format = list_format(args.format.as_deref())?;
    let client = global.connect().await?;
    let mut networks = client
        .control()
        .list_networks(ListNetworksRequest {})
        .await
        .reply(&client)?
        .networks;
    networks.sort_by_key(|n| n.spec.as_ref().map(|s| s.name.clone()));
    if args.quiet {
        for n in &networks {
            out(&row(n)[0]);
        }
        return Ok(());
    }
    match format {
        ListFormat::Json => out(json::pretty(&serde_json::Value::Array(
            networks
                .iter()
                .map(json::to_value)
                .collect::<anyhow::Result<_>>()?,
        ))?),
        ListFormat::Table => {
            let mut table = Table::new(&["ID", "NAME", "DRIVER", "SCOPE"]);
            for n in &networks {
                table.push(row(n));
            }
            out(table.render().trim_end());
        }
    }
    Ok(())
}

async fn inspect(global: &GlobalOpts, args: InspectArgs) -> anyhow::Result<()> {
    inspect_format(args.format.as_deref())?;
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
            .and_then(|r| r.network.as_ref().map(json::to_value).transpose());
        match value {
            Ok(v) => found.extend(v),
            Err(e) => {
                report(&e);
                failed = true;
            }
        }
    }
    if !found.is_empty() {
        out(json::pretty(&serde_json::Value::Array(found))?);
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
