//! Jepsen-style fault runs: clients on every manager read, create and compare-and-set
//! configs' labels through the Control API while a nemesis kills (-9) and restarts
//! managers, partitions them (full, one-way, bridge) on the test network's switch and
//! pauses them (SIGSTOP past the election timeout), on a schedule drawn from a seed. After
//! the faults heal, every key's history must be linearizable ([`crate::linearizability`]),
//! no acknowledged write may be lost, and every manager must show the same configs.
//!
//! A register is a config named `<prefix>-k<n>` whose label `v` holds the value; an update
//! names the version (the log index that last wrote the config) the client read, so the
//! store's version check makes it a compare-and-set. Each client talks to one manager over
//! that manager's local socket, as a user on the machine would; the links cut are those
//! between the managers.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use proto::control_client::ControlClient;
use proto::UpdateConfigRequest;
use proto::{ConfigSpec, CreateConfigRequest, GetConfigRequest, ListConfigsRequest};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use tonic::transport::Channel;

use crate::linearizability::{self, Input, Operation, Output, Value, Version};
use crate::Cluster;

/// The label that holds a register's value.
const LABEL: &str = "v";
/// How long a client waits for an answer before it counts the operation as indeterminate:
/// well past an election (400-800 ms) and a forwarded write's commit.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// How long the managers get to agree after the faults heal.
const CONVERGE: Duration = Duration::from_secs(60);

/// What one run does.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Managers, hosts 1..=managers of the cluster.
    pub managers: usize,
    /// Clients per manager.
    pub clients_per_manager: usize,
    /// Registers (configs) the clients share: few, so that they contend.
    pub keys: usize,
    /// How long the nemesis keeps injecting faults.
    pub duration: Duration,
}

/// A fault the nemesis injects and then heals.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// `kill -9` of a manager, started again when healed.
    Kill(usize),
    /// The managers in the set cut off from the others both ways.
    Partition(Vec<usize>),
    /// Nothing from the first manager reaches the others (it still hears them).
    OneWay(usize),
    /// The two sides cannot reach each other; the middle manager reaches both (so each
    /// side with it is a majority, and neither without it).
    Bridge {
        /// Reaches both sides.
        middle: usize,
        /// One side.
        left: Vec<usize>,
        /// The other side.
        right: Vec<usize>,
    },
    /// SIGSTOP of a manager, SIGCONT when healed.
    Pause(usize),
}

/// A fault, how long it holds and the quiet time after it heals.
#[derive(Clone, Debug)]
pub struct Step {
    /// The fault.
    pub fault: Fault,
    /// How long it holds.
    pub hold: Duration,
    /// Time without faults after it heals.
    pub rest: Duration,
}

/// The nemesis's schedule for `duration` among hosts `1..=managers`, drawn from `seed`: the
/// same seed gives the same schedule (and the same client choices), so a failing run is
/// replayed with `SEED=`.
pub fn schedule(seed: u64, managers: usize, duration: Duration) -> Vec<Step> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut steps = Vec::new();
    let mut total = Duration::ZERO;
    while total < duration {
        // The hosts in a random order: the first is the one struck.
        let mut order: Vec<usize> = (1..=managers).collect();
        order.shuffle(&mut rng);
        let a = order[0];
        let fault = match rng.gen_range(0..5) {
            0 => Fault::Kill(a),
            1 => {
                // A minority: one host, or up to just under half of them.
                let size = rng.gen_range(1..=(managers - 1).div_ceil(2).max(1));
                let mut side = order[..size].to_vec();
                side.sort();
                Fault::Partition(side)
            }
            2 => Fault::OneWay(a),
            3 => {
                let others = &order[1..];
                let (left, right) = others.split_at(others.len() / 2);
                let (mut left, mut right) = (left.to_vec(), right.to_vec());
                left.sort();
                right.sort();
                Fault::Bridge {
                    middle: a,
                    left,
                    right,
                }
            }
            _ => Fault::Pause(a),
        };
        let hold = Duration::from_millis(rng.gen_range(1_500..4_000));
        let rest = Duration::from_millis(rng.gen_range(500..2_000));
        total += hold + rest;
        steps.push(Step { fault, hold, rest });
    }
    steps
}

/// What a run found.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Every operation the clients ran, with the final reads.
    pub history: Vec<Operation>,
    /// Acknowledged creates and updates.
    pub acknowledged: usize,
    /// Acknowledged writes missing from the final state.
    pub lost: Vec<Operation>,
    /// The linearizability check's verdict.
    pub check: linearizability::Report,
    /// Managers whose configs differ from manager 1's after convergence, with what differs.
    pub divergent: Vec<String>,
}

impl Outcome {
    /// Non-linearizable keys, keys the checker could not decide, and divergent managers.
    pub fn anomalies(&self) -> usize {
        self.check.anomalies.len() + self.check.undecided.len() + self.divergent.len()
    }

    /// Operations whose outcome the client never learned.
    pub fn indeterminate(&self) -> usize {
        self.history
            .iter()
            .filter(|op| !op.is_determinate())
            .count()
    }

    /// Every problem found, for a failure message.
    pub fn problems(&self) -> String {
        let mut out = String::new();
        for anomaly in &self.check.anomalies {
            out.push_str(&anomaly.to_string());
        }
        for key in &self.check.undecided {
            out.push_str(&format!(
                "key {key:?}: the checker gave up (too many configurations)\n"
            ));
        }
        for op in &self.lost {
            out.push_str(&format!("acknowledged write lost: {op}\n"));
        }
        for d in &self.divergent {
            out.push_str(&format!("{d}\n"));
        }
        out
    }
}

/// Runs clients on every manager of `cluster` (formed, on test hosts) against fresh keys
/// named after `prefix`, with the nemesis of `seed`; heals, waits for the managers to agree
/// and checks the history.
pub fn run(cluster: &mut Cluster, prefix: &str, seed: u64, settings: &Settings) -> Outcome {
    let steps = schedule(seed, settings.managers, settings.duration);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let sockets: Vec<PathBuf> = (1..=settings.managers)
        .map(|m| cluster.socket(m).to_owned())
        .collect();
    let tls_dir = cluster.host(1).certs_dir();
    let start = Instant::now();
    let wall = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    eprintln!(
        "fault run {prefix}: SEED={seed} started at {:.3} s after the Unix epoch (operation times are offsets from it)",
        wall.as_secs_f64()
    );
    let stop = Arc::new(AtomicBool::new(false));
    // Every channel is open before the nemesis starts: its first step may kill a manager,
    // and an operation sent after that is the history's to record, not the setup's to fail
    // (tonic reconnects the channel when the manager is back).
    let channels: Vec<_> = runtime.block_on(async {
        let mut channels = Vec::new();
        for socket in &sockets {
            let host = cli::client::Host::Unix(socket.clone());
            let channel = cli::client::connect(&host, &tls_dir)
                .await
                .expect("connect to a manager's socket");
            channels.push(channel);
        }
        channels
    });
    let mut clients = Vec::new();
    for (m, channel) in channels.iter().enumerate() {
        for c in 0..settings.clients_per_manager {
            let id = m * settings.clients_per_manager + c;
            let client = Client {
                id,
                prefix: prefix.to_owned(),
                keys: settings.keys,
                rng: StdRng::seed_from_u64(seed ^ ((id as u64 + 1) << 32)),
                start,
                next_value: (id as u64 + 1) << 32,
                known: HashMap::new(),
                history: Vec::new(),
            };
            let channel = channel.clone();
            let stop = stop.clone();
            clients.push(
                runtime.spawn(async move { client.run(ControlClient::new(channel), stop).await }),
            );
        }
    }
    nemesis(cluster, &steps);
    heal_all(cluster, settings.managers);
    stop.store(true, Ordering::Relaxed);
    let mut history: Vec<Operation> = runtime.block_on(async {
        let mut all = Vec::new();
        for c in clients {
            all.extend(c.await.expect("a client task"));
        }
        all
    });
    let (finals, divergent) = runtime.block_on(converged_state(&sockets, &tls_dir, prefix));
    // With no manager answering there is no final state to check writes against; the
    // unavailability is the anomaly.
    let mut finals = finals.unwrap_or_default();
    if !finals.is_empty() || divergent.is_empty() {
        // A key the managers do not show reads as absent (an acknowledged create lost).
        for k in 0..settings.keys {
            finals.entry(format!("{prefix}-k{k}")).or_insert(None);
        }
    }
    let now = start.elapsed();
    for (key, value) in &finals {
        history.push(Operation {
            client: usize::MAX,
            key: key.clone(),
            input: Input::Read,
            output: Output::Read(*value),
            invoked: now,
            completed: Some(now),
        });
    }
    let check = linearizability::check(&history);
    let final_values = finals
        .iter()
        .map(|(k, v)| (k.clone(), v.map(|(value, _)| value)))
        .collect();
    let lost = linearizability::lost_writes(&history, &final_values);
    let acknowledged = history
        .iter()
        .filter(|op| op.input != Input::Read && matches!(op.output, Output::Written(_)))
        .count();
    Outcome {
        history,
        acknowledged,
        lost,
        check,
        divergent,
    }
}

/// The nemesis alone: the faults of `seed` for `duration` among hosts `1..=hosts` (workers
/// too, when `hosts` counts them), then every fault healed. For tests of what the cluster
/// does rather than what clients see (services after faults).
pub fn inject(cluster: &mut Cluster, seed: u64, hosts: usize, duration: Duration) {
    eprintln!("nemesis: SEED={seed} on hosts 1-{hosts}");
    nemesis(cluster, &schedule(seed, hosts, duration));
    heal_all(cluster, hosts);
}

/// Injects each step's fault, holds it, heals it and rests. A panic in between leaves the
/// fault to [`Cluster`]'s drop, which kills every daemon and removes the network.
fn nemesis(cluster: &mut Cluster, steps: &[Step]) {
    for step in steps {
        eprintln!("nemesis: {:?} for {:?}", step.fault, step.hold);
        match &step.fault {
            Fault::Kill(m) => {
                cluster.kill(*m);
                std::thread::sleep(step.hold);
                cluster.start(*m);
            }
            Fault::Partition(side) => {
                cluster.partition(side);
                std::thread::sleep(step.hold);
                cluster.heal();
            }
            Fault::OneWay(m) => {
                let links: Vec<(usize, usize)> = (1..=cluster.hosts.len())
                    .filter(|o| o != m)
                    .map(|o| (*m, o))
                    .collect();
                cluster.cut(&links);
                std::thread::sleep(step.hold);
                cluster.heal();
            }
            Fault::Bridge { left, right, .. } => {
                let links: Vec<(usize, usize)> = left
                    .iter()
                    .flat_map(|l| right.iter().flat_map(move |r| [(*l, *r), (*r, *l)]))
                    .collect();
                cluster.cut(&links);
                std::thread::sleep(step.hold);
                cluster.heal();
            }
            Fault::Pause(m) => {
                cluster.pause(*m);
                std::thread::sleep(step.hold);
                cluster.resume(*m);
            }
        }
        std::thread::sleep(step.rest);
    }
}

/// Heals every fault: no partition, every host of `1..=hosts` running and none paused.
fn heal_all(cluster: &mut Cluster, hosts: usize) {
    cluster.heal();
    for m in 1..=hosts {
        if cluster.host(m).is_running() {
            cluster.resume(m);
        } else {
            cluster.start(m);
        }
    }
}

/// Each manager's configs under `prefix` once they all answer and agree: the final value
/// and version of every key (`None` when absent) as the first manager that answered shows
/// them (`None` if none did), and what differed, or who never answered, if they never
/// agreed.
async fn converged_state(
    sockets: &[PathBuf],
    tls_dir: &std::path::Path,
    prefix: &str,
) -> (
    Option<BTreeMap<String, Option<(Value, Version)>>>,
    Vec<String>,
) {
    let deadline = Instant::now() + CONVERGE;
    loop {
        let mut views = Vec::new();
        for socket in sockets {
            views.push(configs(socket, tls_dir).await);
        }
        let answered: Vec<&BTreeMap<String, (Version, Option<Value>)>> =
            views.iter().flatten().collect();
        let agreed = answered.len() == views.len() && answered.windows(2).all(|w| w[0] == w[1]);
        if agreed || Instant::now() > deadline {
            let reference = views.iter().position(Option::is_some);
            let divergent = if agreed {
                Vec::new()
            } else {
                views
                    .iter()
                    .enumerate()
                    .filter_map(|(i, v)| match (v, reference) {
                        (None, _) => Some(format!(
                            "manager {} did not answer for {CONVERGE:?} after the faults healed",
                            i + 1
                        )),
                        (Some(_), Some(r)) if i != r && v != &views[r] => Some(format!(
                            "manager {} disagrees with manager {} after {CONVERGE:?}: {v:?} vs {:?}",
                            i + 1,
                            r + 1,
                            views[r]
                        )),
                        _ => None,
                    })
                    .collect()
            };
            let finals = reference.map(|r| {
                views[r]
                    .clone()
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|(name, _)| name.starts_with(&format!("{prefix}-")))
                    .map(|(name, (version, value))| (name, value.map(|v| (v, version))))
                    .collect()
            });
            return (finals, divergent);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every config a manager shows: name -> (version, value of the label).
async fn configs(
    socket: &std::path::Path,
    tls_dir: &std::path::Path,
) -> Option<BTreeMap<String, (Version, Option<Value>)>> {
    let host = cli::client::Host::Unix(socket.to_owned());
    let channel = cli::client::connect(&host, tls_dir).await.ok()?;
    let list = tokio::time::timeout(
        REQUEST_TIMEOUT,
        ControlClient::new(channel).list_configs(ListConfigsRequest {}),
    )
    .await
    .ok()?
    .ok()?;
    Some(
        list.into_inner()
            .configs
            .into_iter()
            .map(|c| {
                let version = c.meta.as_ref().map_or(0, |m| m.version);
                let spec = c.spec.unwrap_or_default();
                (spec.name, (version, label(&spec.labels)))
            })
            .collect(),
    )
}

fn label(labels: &HashMap<String, String>) -> Option<Value> {
    labels.get(LABEL).and_then(|v| v.parse().ok())
}

/// One client: a loop of random operations on the shared keys through one manager.
struct Client {
    id: usize,
    prefix: String,
    keys: usize,
    rng: StdRng,
    start: Instant,
    /// The next value it writes: unique across clients (the client's number in the high bits).
    next_value: Value,
    /// What it last read of each key, for its next update.
    known: HashMap<String, Option<(Value, Version)>>,
    history: Vec<Operation>,
}

impl Client {
    async fn run(
        mut self,
        mut control: ControlClient<Channel>,
        stop: Arc<AtomicBool>,
    ) -> Vec<Operation> {
        while !stop.load(Ordering::Relaxed) {
            let key = format!("{}-k{}", self.prefix, self.rng.gen_range(0..self.keys));
            let input = match self.known.get(&key) {
                Some(None) => Input::Create(self.take_value()),
                Some(Some((value, version))) if self.rng.gen_bool(0.6) => Input::Cas {
                    expected_version: *version,
                    expected_value: *value,
                    value: self.take_value(),
                },
                _ if self.rng.gen_bool(0.05) => Input::Create(self.take_value()),
                _ => Input::Read,
            };
            let invoked = self.start.elapsed();
            let output =
                match tokio::time::timeout(REQUEST_TIMEOUT, call(&mut control, &key, &input)).await
                {
                    Ok(output) => output,
                    Err(_) => Output::Unknown,
                };
            let completed = (output != Output::Unknown).then(|| self.start.elapsed());
            match (&input, &output) {
                (Input::Read, Output::Read(seen)) => {
                    self.known.insert(key.clone(), *seen);
                }
                (
                    Input::Create(v) | Input::Cas { value: v, .. },
                    Output::Written(Some(version)),
                ) => {
                    self.known.insert(key.clone(), Some((*v, *version)));
                }
                _ => {
                    self.known.remove(&key);
                }
            }
            let unknown = output == Output::Unknown;
            self.history.push(Operation {
                client: self.id,
                key,
                input,
                output,
                invoked,
                completed,
            });
            if unknown {
                // A manager down or cut off: do not pile up indeterminate operations.
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
        self.history
    }

    fn take_value(&mut self) -> Value {
        self.next_value += 1;
        self.next_value
    }
}

/// Sends `input` for `key` and says what the answer means for the register.
async fn call(control: &mut ControlClient<Channel>, key: &str, input: &Input) -> Output {
    let spec = |value: Value| ConfigSpec {
        name: key.to_owned(),
        labels: HashMap::from([(LABEL.to_owned(), value.to_string())]),
        data: Vec::new(),
    };
    // The version the answer shows, when it shows this write (a later one may have landed
    // between the write and the read-back of the answer).
    let written = |config: Option<proto::Config>, value: Value| {
        config
            .filter(|c| c.spec.as_ref().and_then(|s| label(&s.labels)) == Some(value))
            .and_then(|c| c.meta.map(|m| m.version))
    };
    match input {
        Input::Read => match control
            .get_config(GetConfigRequest {
                config: key.to_owned(),
            })
            .await
        {
            Ok(r) => {
                let config = r.into_inner().config.unwrap_or_default();
                let version = config.meta.map_or(0, |m| m.version);
                let value = config.spec.and_then(|s| label(&s.labels));
                match value {
                    Some(value) => Output::Read(Some((value, version))),
                    None => Output::Unknown,
                }
            }
            Err(s) if s.code() == tonic::Code::NotFound => Output::Read(None),
            Err(_) => Output::Unknown,
        },
        Input::Create(value) => {
            let mut spec = spec(*value);
            spec.data = b"jepsen".to_vec();
            match control
                .create_config(CreateConfigRequest { spec: Some(spec) })
                .await
            {
                Ok(r) => Output::Written(written(r.into_inner().config, *value)),
                Err(s) => write_error(s.code()),
            }
        }
        Input::Cas {
            expected_version,
            value,
            ..
        } => {
            let request = UpdateConfigRequest {
                config: key.to_owned(),
                version: *expected_version,
                spec: Some(spec(*value)),
            };
            match control.update_config(request).await {
                Ok(r) => Output::Written(written(r.into_inner().config, *value)),
                Err(s) => write_error(s.code()),
            }
        }
    }
}

/// What a refused write means: refusals the state machine makes (a version conflict, a
/// missing or taken name) took no effect; anything else (no leader, a lost connection)
/// may have.
fn write_error(code: tonic::Code) -> Output {
    match code {
        tonic::Code::Aborted => Output::Conflict,
        tonic::Code::NotFound => Output::Missing,
        tonic::Code::AlreadyExists => Output::Exists,
        _ => Output::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_gives_one_schedule_of_minority_partitions_bridges_and_long_pauses() {
        for managers in [3, 5] {
            for seed in 0..50 {
                let steps = schedule(seed, managers, Duration::from_secs(30));
                let again = schedule(seed, managers, Duration::from_secs(30));
                assert_eq!(
                    steps.iter().map(|s| &s.fault).collect::<Vec<_>>(),
                    again.iter().map(|s| &s.fault).collect::<Vec<_>>()
                );
                let total: Duration = steps.iter().map(|s| s.hold + s.rest).sum();
                assert!(total >= Duration::from_secs(30), "{total:?}");
                for step in &steps {
                    // Past the longest election timeout (800 ms), so a pause deposes.
                    assert!(step.hold > Duration::from_millis(1_000), "{step:?}");
                    match &step.fault {
                        Fault::Partition(side) => {
                            assert!(!side.is_empty() && side.len() * 2 < managers, "{side:?}")
                        }
                        Fault::Bridge {
                            middle,
                            left,
                            right,
                        } => {
                            let mut all: Vec<usize> =
                                left.iter().chain(right).chain([middle]).copied().collect();
                            all.sort();
                            assert_eq!(all, (1..=managers).collect::<Vec<_>>(), "{step:?}");
                            assert!(!left.is_empty() && !right.is_empty(), "{step:?}");
                            // Neither side is a majority without the middle.
                            assert!(left.len() * 2 < managers && right.len() * 2 < managers);
                        }
                        Fault::Kill(m) | Fault::OneWay(m) | Fault::Pause(m) => {
                            assert!((1..=managers).contains(m))
                        }
                    }
                }
            }
        }
    }
}
