//! A [`Commands`] that changes nothing: it records every call, in order, and answers as
//! the test scripted it, so the data path's logic is tested without root by what it asks
//! of the node.
//!
//! Unscripted, every command succeeds and prints nothing. Only namespace names are
//! modelled, since [`Commands::namespace`] is a question to the fake itself: a name is live
//! once `ip netns add` or `attach` made it, missing once `ip netns del` removed it (or as
//! the test sets it). Nothing else is (a device added is not then shown): a test scripts
//! what the node looks like, as `ip`, `bridge` and `nft` would print it.

use std::collections::HashMap;
use std::sync::Mutex;

use super::commands::{Commands, Missing, NamespaceFile};
use super::overlay::NetError;

/// One call the data path made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// A command line.
    Command(String),
    /// An nftables script applied in a namespace (`None`: the node's own).
    Nft {
        /// Where.
        netns: Option<String>,
        /// The whole script.
        script: String,
    },
    /// A sysctl written.
    Sysctl {
        /// In which namespace (`None`: the node's own).
        netns: Option<String>,
        /// Dotted, as `net.ipv4.ip_forward`.
        key: String,
        /// What was written.
        value: String,
    },
}

impl Call {
    /// The call as a command line a person could run: `ip ...`, `nft -f -`,
    /// `sysctl -w key=value`, those in a namespace behind `ip netns exec NS`. Scripted
    /// answers match against it.
    pub fn line(&self) -> String {
        let in_netns = |netns: &Option<String>, line: String| match netns {
            Some(ns) => format!("ip netns exec {ns} {line}"),
            None => line,
        };
        match self {
            Call::Command(line) => line.clone(),
            Call::Nft { netns, .. } => in_netns(netns, "nft -f -".into()),
            Call::Sysctl { netns, key, value } => {
                in_netns(netns, format!("sysctl -w {key}={value}"))
            }
        }
    }
}

/// A scripted answer: calls whose line contains `pattern` print `answer` (or fail with it).
#[derive(Debug)]
struct Rule {
    pattern: String,
    answer: Result<String, String>,
}

#[derive(Debug, Default)]
struct Recorded {
    calls: Vec<Call>,
    rules: Vec<Rule>,
    namespaces: HashMap<String, NamespaceFile>,
}

/// The recording fake (see the module docs).
#[derive(Debug, Default)]
pub struct FakeCommands {
    inner: Mutex<Recorded>,
}

impl FakeCommands {
    fn lock(&self) -> std::sync::MutexGuard<'_, Recorded> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Calls whose line contains `pattern` print `stdout` from now on (the latest rule that
    /// matches wins).
    pub fn reply(&self, pattern: &str, stdout: &str) {
        self.lock().rules.push(Rule {
            pattern: pattern.into(),
            answer: Ok(stdout.into()),
        });
    }

    /// Calls whose line contains `pattern` fail with `message` from now on (the latest rule
    /// that matches wins).
    pub fn fail(&self, pattern: &str, message: &str) {
        self.lock().rules.push(Rule {
            pattern: pattern.into(),
            answer: Err(message.into()),
        });
    }

    /// The namespace name `name` is `state` to the data path from now on.
    pub fn set_namespace(&self, name: &str, state: NamespaceFile) {
        self.lock().namespaces.insert(name.into(), state);
    }

    /// Every call so far as its line (see [`Call::line`]), oldest first.
    pub fn lines(&self) -> Vec<String> {
        self.lock().calls.iter().map(Call::line).collect()
    }

    /// The nftables scripts applied so far in `netns`, oldest first.
    pub fn scripts(&self, netns: Option<&str>) -> Vec<String> {
        self.lock()
            .calls
            .iter()
            .filter_map(|c| match c {
                Call::Nft { netns: at, script } if at.as_deref() == netns => Some(script.clone()),
                _ => None,
            })
            .collect()
    }

    /// Forgets the calls so far (the rules stay), to look at what comes next.
    pub fn clear(&self) {
        self.lock().calls.clear();
    }

    /// Records `call` and answers it as scripted; a namespace made, adopted or removed
    /// by a call that succeeds is then live, or missing.
    fn answer(&self, call: Call) -> Result<String, NetError> {
        let line = call.line();
        let mut recorded = self.lock();
        recorded.calls.push(call);
        let rule = recorded
            .rules
            .iter()
            .rev()
            .find(|r| line.contains(&r.pattern));
        let stdout = match rule.map(|r| r.answer.clone()) {
            None => String::new(),
            Some(Ok(stdout)) => stdout,
            Some(Err(message)) => {
                return Err(NetError::Command {
                    command: line,
                    message,
                })
            }
        };
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["ip", "netns", "add" | "attach", name, ..] => {
                recorded
                    .namespaces
                    .insert((*name).to_owned(), NamespaceFile::Live);
            }
            ["ip", "netns", "del", name] => {
                recorded.namespaces.remove(*name);
            }
            _ => {}
        }
        Ok(stdout)
    }
}

impl Commands for FakeCommands {
    fn output(&self, program: &str, args: &[&str]) -> Result<String, NetError> {
        self.answer(Call::Command(format!("{program} {}", args.join(" "))))
    }

    fn nft(&self, netns: Option<&str>, script: &str) -> Result<(), NetError> {
        self.answer(Call::Nft {
            netns: netns.map(str::to_owned),
            script: script.into(),
        })
        .map(drop)
    }

    fn write_sysctl(
        &self,
        netns: Option<&str>,
        key: &str,
        value: &str,
        _missing: Missing,
    ) -> Result<(), NetError> {
        self.answer(Call::Sysctl {
            netns: netns.map(str::to_owned),
            key: key.into(),
            value: value.into(),
        })
        .map(drop)
    }

    fn namespace(&self, name: &str) -> NamespaceFile {
        self.lock()
            .namespaces
            .get(name)
            .copied()
            .unwrap_or(NamespaceFile::Missing)
    }
}
