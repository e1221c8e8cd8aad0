//! `skiff swarm init|join|join-token|leave|inspect|update`.

use anyhow::{anyhow, bail, Context as _};
use clap::{Args, Subcommand};
use proto::{
    CaConfig, Cluster, ClusterSpec, DispatcherConfig, GetClusterRequest, InfoRequest, InitRequest,
    JoinRequest, LeaveRequest, NodeRole, OrchestrationConfig, RaftConfig, UpdateClusterRequest,
};

use super::{
    addr_flag, docker, duration, out, out_text, remote_addr, Client, GlobalOpts, Host, Reply,
};

/// `skiff swarm ...`.
#[derive(Debug, Subcommand)]
pub enum SwarmCommand {
    /// Initialize a swarm, with this node as its first manager
    Init(InitArgs),
    /// Join a swarm as a worker or a manager
    Join(JoinArgs),
    /// Show (or rotate) the token that lets a node join
    JoinToken(JoinTokenArgs),
    /// Leave the swarm
    Leave(LeaveArgs),
    /// Show the cluster's settings as JSON
    Inspect(InspectArgs),
    /// Change the cluster's settings
    Update(UpdateArgs),
    /// Show (or rotate) the key that unlocks a restarted manager of an autolocked swarm
    UnlockKey(UnlockKeyArgs),
    /// Unlock a locked manager (the key is read from the terminal or standard input)
    Unlock,
}

/// `skiff swarm unlock-key`.
#[derive(Debug, Args)]
pub struct UnlockKeyArgs {
    /// Print the key only
    #[arg(short, long)]
    pub quiet: bool,
    /// Replace the key: the old one no longer unlocks any manager
    #[arg(long)]
    pub rotate: bool,
}

/// `skiff swarm init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Address other nodes reach this one at: ADDR[:PORT] or an interface name
    #[arg(long, value_name = "ADDR[:PORT]")]
    pub advertise_addr: Option<String>,
    /// Address to listen on for cluster traffic (default 0.0.0.0:2377)
    #[arg(long, value_name = "ADDR[:PORT]")]
    pub listen_addr: Option<String>,
    /// Make a new single-manager cluster from this manager's current state
    #[arg(long)]
    pub force_new_cluster: bool,
    /// Address pool (CIDR) overlay subnets are carved from; repeat for several
    #[arg(long, value_name = "CIDR")]
    pub default_addr_pool: Vec<String>,
    /// Prefix length of the subnets carved from the address pools (default 24)
    #[arg(long, value_name = "N")]
    pub default_addr_pool_mask_length: Option<u32>,
    /// UDP port for overlay (VXLAN) traffic (default 4789)
    #[arg(long, value_name = "PORT")]
    pub data_path_port: Option<u32>,
    #[command(flatten)]
    pub settings: ClusterSettings,
}

/// `skiff swarm join`.
#[derive(Debug, Args)]
pub struct JoinArgs {
    /// Join token, from `skiff swarm join-token` on a manager
    #[arg(long)]
    pub token: String,
    /// Address other nodes reach this one at: ADDR[:PORT] or an interface name
    #[arg(long, value_name = "ADDR[:PORT]")]
    pub advertise_addr: Option<String>,
    /// Address to listen on for cluster traffic (default 0.0.0.0:2377)
    #[arg(long, value_name = "ADDR[:PORT]")]
    pub listen_addr: Option<String>,
    /// A manager of the swarm (port 2377 when omitted)
    #[arg(value_name = "HOST[:PORT]")]
    pub remote: String,
}

/// `skiff swarm join-token`.
#[derive(Debug, Args)]
pub struct JoinTokenArgs {
    /// Only print the token
    #[arg(short, long)]
    pub quiet: bool,
    /// Replace the token (the old one stops working at once)
    #[arg(long)]
    pub rotate: bool,
    /// worker or manager
    #[arg(value_name = "worker|manager")]
    pub role: String,
}

/// `skiff swarm leave`.
#[derive(Debug, Args)]
pub struct LeaveArgs {
    /// Leave even if this is a manager (this can break the cluster's quorum)
    #[arg(short, long)]
    pub force: bool,
}

/// `skiff swarm inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Output format: json (the default) or a Go template on Docker's JSON ({{.Spec.Name}})
    #[arg(short, long)]
    pub format: Option<String>,
}

/// `skiff swarm update`.
#[derive(Debug, Args)]
pub struct UpdateArgs {
    #[command(flatten)]
    pub settings: ClusterSettings,
}

/// Cluster settings `swarm init` and `swarm update` take.
#[derive(Debug, Default, Args)]
pub struct ClusterSettings {
    /// Old tasks kept per slot (default 5)
    #[arg(long, value_name = "N")]
    pub task_history_limit: Option<u64>,
    /// How often nodes report to the managers (default 1s)
    #[arg(long, value_name = "DURATION")]
    pub dispatcher_heartbeat: Option<String>,
    /// Same as --dispatcher-heartbeat
    #[arg(long, value_name = "DURATION", conflicts_with = "dispatcher_heartbeat")]
    pub heartbeat_period: Option<String>,
    /// Validity of node certificates (default 90 days)
    #[arg(long, value_name = "DURATION")]
    pub cert_expiry: Option<String>,
    /// Raft log entries between snapshots
    #[arg(long, value_name = "N")]
    pub snapshot_interval: Option<u64>,
    /// Raft election timeout: a follower waits between this and twice this before it stands
    #[arg(long, value_name = "DURATION")]
    pub election_timeout: Option<String>,
    /// Lock restarted managers until `skiff swarm unlock` is given the unlock key
    /// (--autolock, --autolock=true or --autolock=false)
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub autolock: Option<bool>,
}

impl ClusterSettings {
    /// Validates the settings and writes the ones given into `spec`.
    pub fn apply(&self, spec: &mut ClusterSpec) -> anyhow::Result<()> {
        if let Some(n) = self.task_history_limit {
            spec.orchestration
                .get_or_insert_with(OrchestrationConfig::default)
                .task_history_retention_limit = n;
        }
        let heartbeat = match (&self.dispatcher_heartbeat, &self.heartbeat_period) {
            (Some(v), _) => Some(("--dispatcher-heartbeat", v)),
            (None, Some(v)) => Some(("--heartbeat-period", v)),
            (None, None) => None,
        };
        if let Some((flag, value)) = heartbeat {
            let ms = positive_ms(flag, value)?;
            spec.dispatcher
                .get_or_insert_with(DispatcherConfig::default)
                .heartbeat_period_ms = ms;
        }
        if let Some(value) = &self.cert_expiry {
            let ms = positive_ms("--cert-expiry", value)?;
            spec.ca_config
                .get_or_insert_with(CaConfig::default)
                .node_cert_expiry_ms = ms;
        }
        if let Some(n) = self.snapshot_interval {
            if n == 0 {
                bail!("--snapshot-interval must be at least 1");
            }
            spec.raft
                .get_or_insert_with(RaftConfig::default)
                .snapshot_interval = n;
        }
        if let Some(autolock) = self.autolock {
            spec.autolock = autolock;
        }
        if let Some(value) = &self.election_timeout {
            let ms = positive_ms("--election-timeout", value)?;
            let raft = spec.raft.get_or_insert_with(RaftConfig::default);
            raft.election_timeout_min_ms = ms;
            raft.election_timeout_max_ms = ms.saturating_mul(2);
        }
        Ok(())
    }
}

/// A duration flag that must not be zero, in milliseconds.
fn positive_ms(flag: &str, value: &str) -> anyhow::Result<u64> {
    let ms = duration::parse_flag_ms(flag, value)?;
    if ms == 0 {
        bail!("{flag} must be longer than zero");
    }
    Ok(ms)
}

/// Runs one `skiff swarm` command.
pub async fn run(global: &GlobalOpts, command: SwarmCommand) -> anyhow::Result<()> {
    match command {
        SwarmCommand::Init(args) => init(global, args).await,
        SwarmCommand::Join(args) => join(global, args).await,
        SwarmCommand::JoinToken(args) => join_token(global, args).await,
        SwarmCommand::Leave(args) => leave(global, args).await,
        SwarmCommand::Inspect(args) => inspect(global, args).await,
        SwarmCommand::Update(args) => update(global, args).await,
        SwarmCommand::UnlockKey(args) => unlock_key(global, args).await,
        SwarmCommand::Unlock => unlock(global).await,
    }
}

/// Validates `--default-addr-pool` values (IPv4 CIDR) and the mask length.
fn addr_pools(pools: &[String], mask: Option<u32>) -> anyhow::Result<(Vec<String>, u32)> {
    let mut out = Vec::new();
    let mut widest = 0;
    for pool in pools {
        let pool = pool.trim();
        let bad = || {
            anyhow!("invalid address pool \"{pool}\" for --default-addr-pool: use IPv4 CIDR notation, e.g. 10.10.0.0/16")
        };
        let (ip, len) = pool.split_once('/').ok_or_else(bad)?;
        ip.parse::<std::net::Ipv4Addr>().map_err(|_| bad())?;
        let len: u32 = len.parse().map_err(|_| bad())?;
        if len > 32 {
            return Err(bad());
        }
        widest = widest.max(len);
        out.push(pool.to_string());
    }
    let mask = match mask {
        None => 0,
        Some(m) if !(1..=32).contains(&m) => {
            bail!("invalid --default-addr-pool-mask-length {m}: use a prefix length from 1 to 32")
        }
        Some(m) if m < widest => bail!(
            "--default-addr-pool-mask-length {m} is shorter than the prefix of an address pool (/{widest}): subnets must fit inside their pool"
        ),
        Some(m) => m,
    };
    Ok((out, mask))
}

/// An address flag checked locally, or empty when not given (the daemon picks one).
fn optional_addr(flag: &str, value: Option<&str>) -> anyhow::Result<String> {
    Ok(value
        .map(|a| addr_flag(flag, a))
        .transpose()?
        .unwrap_or_default())
}

async fn init(global: &GlobalOpts, args: InitArgs) -> anyhow::Result<()> {
    let advertise_addr = optional_addr("--advertise-addr", args.advertise_addr.as_deref())?;
    let listen_addr = optional_addr("--listen-addr", args.listen_addr.as_deref())?;
    let (default_addr_pool, subnet_size) =
        addr_pools(&args.default_addr_pool, args.default_addr_pool_mask_length)?;
    let data_path_port = match args.data_path_port {
        None => 0,
        Some(p) if (1024..=49151).contains(&p) => p,
        Some(p) => bail!("invalid --data-path-port {p}: use a port from 1024 to 49151"),
    };
    let mut spec = ClusterSpec {
        default_addr_pool,
        subnet_size,
        data_path_port,
        ..Default::default()
    };
    args.settings.apply(&mut spec)?;

    let client = global.connect().await?;
    let resp = client
        .swarm()
        .init(InitRequest {
            listen_addr,
            advertise_addr,
            force_new_cluster: args.force_new_cluster,
            spec: Some(spec),
        })
        .await
        .reply(&client)?;
    out(init_message(&resp));
    if args.settings.autolock == Some(true) {
        let key = fetch_unlock_key(&client).await?;
        out(unlock_key_message(&key));
    }
    Ok(())
}

/// What `swarm init --autolock`, `swarm update --autolock=true` and `swarm unlock-key` print.
fn unlock_key_message(key: &str) -> String {
    format!(
        "To unlock a swarm manager after it restarts, run `skiff swarm unlock` and give it this key:\n\n    \
         {key}\n\n\
         Keep it in a password manager: without it a restarted manager cannot rejoin the swarm.\n"
    )
}

async fn fetch_unlock_key(client: &super::Client) -> anyhow::Result<String> {
    let key = client
        .control()
        .get_unlock_key(proto::GetUnlockKeyRequest {})
        .await
        .reply(client)?
        .unlock_key;
    if key.is_empty() {
        bail!("this swarm is not autolocked, so it has no unlock key; turn autolock on with `skiff swarm update --autolock=true`");
    }
    Ok(key)
}

async fn unlock_key(global: &GlobalOpts, args: UnlockKeyArgs) -> anyhow::Result<()> {
    let client = global.connect().await?;
    if args.rotate {
        let cluster = get_cluster(&client).await?;
        client
            .control()
            .update_cluster(UpdateClusterRequest {
                version: cluster.meta.as_ref().map(|m| m.version).unwrap_or_default(),
                spec: cluster.spec,
                rotate_unlock_key: true,
                ..Default::default()
            })
            .await
            .reply(&client)?;
        if !args.quiet {
            out("Successfully rotated the unlock key.\n");
        }
    }
    let key = fetch_unlock_key(&client).await?;
    out(if args.quiet {
        key
    } else {
        unlock_key_message(&key)
    });
    Ok(())
}

async fn unlock(global: &GlobalOpts) -> anyhow::Result<()> {
    use std::io::{BufRead as _, IsTerminal as _};
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("Enter the unlock key: ");
    }
    let mut key = String::new();
    stdin
        .lock()
        .read_line(&mut key)
        .context("cannot read the unlock key from standard input")?;
    let key = key.trim();
    if key.is_empty() {
        bail!("no unlock key given: type it, or pipe it in (`skiff swarm unlock-key -q` on an unlocked manager prints it)");
    }
    let client = global.connect().await?;
    client
        .swarm()
        .unlock(proto::UnlockRequest {
            unlock_key: key.to_owned(),
        })
        .await
        .reply(&client)?;
    out("The manager is unlocked.");
    Ok(())
}

/// What `swarm init` prints.
pub fn init_message(resp: &proto::InitResponse) -> String {
    format!(
        "Swarm initialized: current node ({}) is now a manager.\n\n\
         To add a worker to this swarm, run the following command:\n\n    \
         skiff swarm join --token {} {}\n\n\
         To add a manager to this swarm, run 'skiff swarm join-token manager' and follow the instructions.\n",
        resp.node_id, resp.worker_token, resp.advertise_addr
    )
}

async fn join(global: &GlobalOpts, args: JoinArgs) -> anyhow::Result<()> {
    let token = args.token.trim();
    token
        .parse::<proto::token::JoinToken>()
        .map_err(|e| anyhow!("{e}"))?;
    let remote_addr = remote_addr(&args.remote)?;
    let advertise_addr = optional_addr("--advertise-addr", args.advertise_addr.as_deref())?;
    let listen_addr = optional_addr("--listen-addr", args.listen_addr.as_deref())?;

    let client = global.connect().await?;
    let resp = client
        .swarm()
        .join(JoinRequest {
            token: token.to_string(),
            remote_addr,
            listen_addr,
            advertise_addr,
        })
        .await
        .reply(&client)?;
    let role = match resp.role() {
        NodeRole::Manager => "a manager",
        _ => "a worker",
    };
    out(format!("This node joined a swarm as {role}."));
    Ok(())
}

/// A `join-token` role argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRole {
    Worker,
    Manager,
}

impl TokenRole {
    /// Parses `worker` or `manager`.
    pub fn parse(s: &str) -> anyhow::Result<TokenRole> {
        match s.trim().to_ascii_lowercase().as_str() {
            "worker" => Ok(TokenRole::Worker),
            "manager" => Ok(TokenRole::Manager),
            _ => bail!("unknown role \"{s}\": use worker or manager"),
        }
    }

    fn name(self) -> &'static str {
        match self {
            TokenRole::Worker => "worker",
            TokenRole::Manager => "manager",
        }
    }

    fn token(self, cluster: &Cluster) -> String {
        let tokens = cluster.join_tokens.clone().unwrap_or_default();
        match self {
            TokenRole::Worker => tokens.worker,
            TokenRole::Manager => tokens.manager,
        }
    }
}

/// What `swarm join-token ROLE` prints.
pub fn join_instructions(role: TokenRole, token: &str, manager_addr: &str) -> String {
    format!(
        "To add a {} to this swarm, run the following command:\n\n    skiff swarm join --token {token} {manager_addr}\n",
        role.name()
    )
}

async fn get_cluster(client: &Client) -> anyhow::Result<Cluster> {
    client
        .control()
        .get_cluster(GetClusterRequest {})
        .await
        .reply(client)?
        .cluster
        .context("the daemon answered without the cluster; is this node part of a swarm?")
}

async fn join_token(global: &GlobalOpts, args: JoinTokenArgs) -> anyhow::Result<()> {
    let role = TokenRole::parse(&args.role)?;
    let client = global.connect().await?;
    let mut cluster = get_cluster(&client).await?;
    if args.rotate {
        let version = cluster.meta.as_ref().map(|m| m.version).unwrap_or_default();
        let resp = client
            .control()
            .update_cluster(UpdateClusterRequest {
                version,
                spec: cluster.spec.clone(),
                rotate_worker_token: role == TokenRole::Worker,
                rotate_manager_token: role == TokenRole::Manager,
                ..Default::default()
            })
            .await
            .reply(&client)?;
        cluster = match resp.cluster {
            Some(c) => c,
            None => get_cluster(&client).await?,
        };
        if !args.quiet {
            out(format!(
                "Successfully rotated {} join token.\n",
                role.name()
            ));
        }
    }
    let token = role.token(&cluster);
    if token.is_empty() {
        bail!("the cluster has no {} join token; rotate one with `skiff swarm join-token --rotate {}`", role.name(), role.name());
    }
    if args.quiet {
        out(token);
        return Ok(());
    }
    let addr = manager_addr(&client).await;
    out(join_instructions(role, &token, &addr));
    Ok(())
}

/// The address a joining node should dial: the `-H` address for a remote manager, else the
/// local daemon's advertise address.
async fn manager_addr(client: &Client) -> String {
    if let Host::Tcp(hp) = client.host() {
        return hp.addr();
    }
    match client.swarm().info(InfoRequest {}).await {
        Ok(info) => {
            let info = info.into_inner();
            if !info.advertise_addr.is_empty() {
                info.advertise_addr
            } else {
                info.managers
                    .into_iter()
                    .next()
                    .unwrap_or_else(|| "MANAGER-IP:2377".to_string())
            }
        }
        Err(_) => "MANAGER-IP:2377".to_string(),
    }
}

/// How often `swarm leave` says it is still waiting.
const LEAVE_PROGRESS: std::time::Duration = std::time::Duration::from_secs(5);

async fn leave(global: &GlobalOpts, args: LeaveArgs) -> anyhow::Result<()> {
    let client = global.connect().await?;
    // Leaving stops the node's tasks, each within its stop grace period: say so, since that
    // is what the command waits for.
    let tasks = match client.swarm().info(InfoRequest {}).await {
        Ok(info) => info.into_inner().tasks,
        Err(_) => 0,
    };
    if tasks > 0 {
        eprintln!("Stopping {tasks} task(s) on this node (each within its stop grace period)...");
    }
    let started = std::time::Instant::now();
    let mut swarm = client.swarm();
    let leaving = swarm.leave(LeaveRequest { force: args.force });
    tokio::pin!(leaving);
    let mut tick =
        tokio::time::interval_at(tokio::time::Instant::now() + LEAVE_PROGRESS, LEAVE_PROGRESS);
    let reply = loop {
        tokio::select! {
            reply = &mut leaving => break reply,
            _ = tick.tick() => eprintln!(
                "Still waiting for {tasks} task(s) to stop ({}s)...",
                started.elapsed().as_secs()
            ),
        }
    };
    reply.reply(&client)?;
    out("Node left the swarm.");
    Ok(())
}

async fn inspect(global: &GlobalOpts, args: InspectArgs) -> anyhow::Result<()> {
    let format = super::output::Format::parse(args.format.as_deref())?;
    let client = global.connect().await?;
    let cluster = get_cluster(&client).await?;
    out_text(&format.inspect(vec![docker::swarm(&cluster)?])?);
    Ok(())
}

async fn update(global: &GlobalOpts, args: UpdateArgs) -> anyhow::Result<()> {
    // Validate before connecting.
    args.settings.apply(&mut ClusterSpec::default())?;
    let client = global.connect().await?;
    let cluster = get_cluster(&client).await?;
    let version = cluster.meta.as_ref().map(|m| m.version).unwrap_or_default();
    let mut spec = cluster.spec.unwrap_or_default();
    args.settings.apply(&mut spec)?;
    client
        .control()
        .update_cluster(UpdateClusterRequest {
            version,
            spec: Some(spec),
            ..Default::default()
        })
        .await
        .reply(&client)?;
    out("Swarm updated.");
    if args.settings.autolock == Some(true) {
        out(unlock_key_message(&fetch_unlock_key(&client).await?));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_fill_the_spec() {
        let s = ClusterSettings {
            task_history_limit: Some(3),
            heartbeat_period: Some("5s".into()),
            cert_expiry: Some("2160h0m0s".into()),
            snapshot_interval: Some(5000),
            election_timeout: Some("500ms".into()),
            ..Default::default()
        };
        let mut spec = ClusterSpec::default();
        s.apply(&mut spec).unwrap();
        assert_eq!(spec.orchestration.unwrap().task_history_retention_limit, 3);
        assert_eq!(spec.dispatcher.unwrap().heartbeat_period_ms, 5_000);
        assert_eq!(spec.ca_config.unwrap().node_cert_expiry_ms, 90 * 86_400_000);
        let raft = spec.raft.unwrap();
        assert_eq!(raft.snapshot_interval, 5000);
        assert_eq!(raft.election_timeout_min_ms, 500);
        assert_eq!(raft.election_timeout_max_ms, 1000);

        // Nothing given: nothing touched.
        let mut spec = ClusterSpec::default();
        ClusterSettings::default().apply(&mut spec).unwrap();
        assert_eq!(spec, ClusterSpec::default());
    }

    #[test]
    fn bad_settings_name_the_flag() {
        let s = ClusterSettings {
            heartbeat_period: Some("abc".into()),
            ..Default::default()
        };
        assert_eq!(
            s.apply(&mut ClusterSpec::default())
                .unwrap_err()
                .to_string(),
            "invalid duration \"abc\" for --heartbeat-period: use a form like 5s or 1m30s"
        );
        let s = ClusterSettings {
            dispatcher_heartbeat: Some("0s".into()),
            ..Default::default()
        };
        assert_eq!(
            s.apply(&mut ClusterSpec::default())
                .unwrap_err()
                .to_string(),
            "--dispatcher-heartbeat must be longer than zero"
        );
    }

    #[test]
    fn pools() {
        let (p, m) = addr_pools(&["10.10.0.0/16".into()], Some(24)).unwrap();
        assert_eq!((p, m), (vec!["10.10.0.0/16".to_string()], 24));
        assert_eq!(addr_pools(&[], None).unwrap(), (vec![], 0));
        assert!(addr_pools(&["10.10.0.0".into()], None).is_err());
        assert!(addr_pools(&["10.10.0.0/33".into()], None).is_err());
        assert!(addr_pools(&["fd00::/8".into()], None).is_err());
        assert!(addr_pools(&["10.10.0.0/16".into()], Some(8))
            .unwrap_err()
            .to_string()
            .contains("shorter than the prefix"));
    }

    #[test]
    fn messages() {
        let resp = proto::InitResponse {
            node_id: "n1".into(),
            worker_token: "SKTKN-W".into(),
            advertise_addr: "10.0.0.1:2377".into(),
            ..Default::default()
        };
        let text = init_message(&resp);
        assert!(text.starts_with("Swarm initialized: current node (n1) is now a manager.\n\n"));
        assert!(text.contains("\n    skiff swarm join --token SKTKN-W 10.0.0.1:2377\n\n"));
        assert_eq!(
            join_instructions(TokenRole::Manager, "T", "h:2377"),
            "To add a manager to this swarm, run the following command:\n\n    skiff swarm join --token T h:2377\n"
        );
        assert_eq!(TokenRole::parse("Manager").unwrap(), TokenRole::Manager);
        assert_eq!(
            TokenRole::parse("boss").unwrap_err().to_string(),
            "unknown role \"boss\": use worker or manager"
        );
    }
}
