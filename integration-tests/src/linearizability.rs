//! A linearizability checker for histories of operations on named registers: Wing & Gong's
//! search, with Lowe's memoisation (a configuration, the set of operations linearized so far
//! and the state they lead to, is explored once) and P-compositionality (each key is a
//! register of its own and is checked alone), as Porcupine does.
//!
//! No crate fitted: `todc-utils` has a Wing & Gong checker but neither per-key partitions nor
//! operations of unknown outcome, and `lincheck` tests in-process data structures. So this is
//! a small module of the test crate, tested against known-good and known-bad histories.
//!
//! The model is a register per key holding a value and the version that wrote it (a Raft
//! log index in skiff): reads, creates (only of an absent register) and compare-and-set
//! updates keyed on the version the client read. Values are unique per write, so a value
//! names its write; that also lets [`lost_writes`] walk a register's history back from its
//! final value. An operation whose outcome the client never learned (a timeout, a dropped
//! connection) is *indeterminate*: it may have taken effect at any point after its call, or
//! never. The search lets such an operation take effect wherever the model allows and never
//! requires it to, so the history is linearizable when every determinate operation is.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::time::Duration;

/// A value written to a register: unique per write across the whole history.
pub type Value = u64;
/// The version the system gave a write (skiff: the log index that last wrote the object).
pub type Version = u64;

/// What a client asked of a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// Read the register.
    Read,
    /// Create the register with a first value; refused if it exists.
    Create(Value),
    /// Replace the value if the register still holds the write the client read, which the
    /// client names by its version (and, since values are unique, by its value).
    Cas {
        /// The version the client read and sends as its precondition.
        expected_version: Version,
        /// The value it read with that version.
        expected_value: Value,
        /// The new value.
        value: Value,
    },
}

/// What the client was told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// A read's answer: the value and its version, or `None` when the key is absent.
    Read(Option<(Value, Version)>),
    /// A create or update took effect; the version it got, when the answer showed it.
    Written(Option<Version>),
    /// An update refused because the register holds another write (a version conflict).
    Conflict,
    /// An update refused because the key is absent.
    Missing,
    /// A create refused because the key exists.
    Exists,
    /// No answer the client could trust: the operation may or may not have taken effect.
    Unknown,
}

/// A register's state: absent, or a value with its version (unknown until observed when an
/// indeterminate write put it there).
pub type State = Option<(Value, Option<Version>)>;

/// One operation of a history: its key, what was asked and answered, and when, as offsets
/// from a common start (wall-clock order is what linearizability respects).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation {
    /// The client (process) that ran it.
    pub client: usize,
    /// The register.
    pub key: String,
    /// What was asked.
    pub input: Input,
    /// What was answered.
    pub output: Output,
    /// When the client sent it.
    pub invoked: Duration,
    /// When the answer came; `None` for an indeterminate operation, which may take effect
    /// at any time after its invocation.
    pub completed: Option<Duration>,
}

impl Operation {
    /// Whether the client learned the outcome.
    pub fn is_determinate(&self) -> bool {
        self.output != Output::Unknown
    }

    fn end(&self) -> Duration {
        self.completed.unwrap_or(Duration::MAX)
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let end = match self.completed {
            Some(t) => format!("{:.3}s", t.as_secs_f64()),
            None => "?".into(),
        };
        write!(
            f,
            "[{:.3}s..{end}] client {} {} {:?} -> {:?}",
            self.invoked.as_secs_f64(),
            self.client,
            self.key,
            self.input,
            self.output
        )
    }
}

/// The states the register may be in after `op` from `state`; empty when `op` cannot take
/// place there. An indeterminate write yields only the state where it took effect: that it
/// never did is expressed by never linearizing it (see [`check`]).
pub fn step(state: &State, input: &Input, output: &Output) -> Vec<State> {
    let holds = |value: Value, version: Version| match state {
        Some((v, known)) => *v == value && known.is_none_or(|k| k == version),
        None => false,
    };
    match (input, output) {
        (Input::Read, Output::Read(None)) if state.is_none() => vec![None],
        (Input::Read, Output::Read(Some((value, version)))) if holds(*value, *version) => {
            // An indeterminate write's version becomes known when first read.
            vec![Some((*value, Some(*version)))]
        }
        (Input::Create(value), Output::Written(version)) if state.is_none() => {
            vec![Some((*value, *version))]
        }
        (Input::Create(value), Output::Unknown) if state.is_none() => vec![Some((*value, None))],
        (Input::Create(_), Output::Exists | Output::Unknown) if state.is_some() => {
            vec![*state]
        }
        (
            Input::Cas {
                expected_version,
                expected_value,
                value,
            },
            output,
        ) => match output {
            Output::Written(version) if holds(*expected_value, *expected_version) => {
                vec![Some((*value, *version))]
            }
            Output::Unknown if holds(*expected_value, *expected_version) => {
                vec![Some((*value, None))]
            }
            Output::Conflict if state.is_some() && !holds(*expected_value, *expected_version) => {
                vec![*state]
            }
            Output::Missing if state.is_none() => vec![None],
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}

/// Why a key's history is not linearizable.
#[derive(Clone, Debug)]
pub struct Anomaly {
    /// The register.
    pub key: String,
    /// The longest prefix of a linearization found, as operations in order.
    pub longest: Vec<Operation>,
    /// The operations that could come next in time after that prefix, none of which the
    /// model allowed there.
    pub stuck: Vec<Operation>,
}

impl fmt::Display for Anomaly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "key {:?} is not linearizable; the longest linearization found ({} operations) ends with:",
            self.key,
            self.longest.len()
        )?;
        for op in self.longest.iter().rev().take(8).rev() {
            writeln!(f, "  {op}")?;
        }
        writeln!(f, "and none of these can come next:")?;
        for op in &self.stuck {
            writeln!(f, "  {op}")?;
        }
        Ok(())
    }
}

/// The outcome of checking a history.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Keys whose history is not linearizable.
    pub anomalies: Vec<Anomaly>,
    /// Keys the search gave up on (more configurations than the budget allows).
    pub undecided: Vec<String>,
}

impl Report {
    /// Whether every key's history was shown linearizable.
    pub fn is_linearizable(&self) -> bool {
        self.anomalies.is_empty() && self.undecided.is_empty()
    }
}

/// Configurations one key may explore before the search gives up on it.
const BUDGET: usize = 5_000_000;

/// Checks every key's history on its own (P-compositionality: a history of independent
/// registers is linearizable exactly when each register's is). Indeterminate reads tell
/// nothing and are left out.
pub fn check(history: &[Operation]) -> Report {
    let mut by_key: BTreeMap<&str, Vec<Operation>> = BTreeMap::new();
    for op in history {
        if op.input == Input::Read && !op.is_determinate() {
            continue;
        }
        by_key.entry(&op.key).or_default().push(op.clone());
    }
    let mut report = Report::default();
    for (key, mut ops) in by_key {
        ops.sort_by_key(|op| op.invoked);
        match check_register(&ops) {
            Verdict::Linearizable => {}
            Verdict::Not { longest, stuck } => report.anomalies.push(Anomaly {
                key: key.to_owned(),
                longest: longest.into_iter().map(|i| ops[i].clone()).collect(),
                stuck: stuck.into_iter().map(|i| ops[i].clone()).collect(),
            }),
            Verdict::Undecided => report.undecided.push(key.to_owned()),
        }
    }
    report
}

enum Verdict {
    Linearizable,
    Not {
        longest: Vec<usize>,
        stuck: Vec<usize>,
    },
    Undecided,
}

/// A set of operation indexes.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Bits(Vec<u64>);

impl Bits {
    fn new(n: usize) -> Self {
        Self(vec![0; n.div_ceil(64)])
    }
    fn has(&self, i: usize) -> bool {
        self.0[i / 64] & (1 << (i % 64)) != 0
    }
    fn with(&self, i: usize) -> Self {
        let mut next = self.clone();
        next.0[i / 64] |= 1 << (i % 64);
        next
    }
}

/// A configuration of the search and the moves from it not yet tried.
struct Frame {
    linearized: Bits,
    /// How many determinate operations `linearized` holds.
    done: usize,
    /// Operation index and the state after it.
    moves: Vec<(usize, State)>,
    /// The operation that led here (to show the longest linearization).
    via: Option<usize>,
}

/// The earliest completion among the operations not yet linearized: no operation invoked
/// after it may be linearized next.
fn horizon(ops: &[Operation], linearized: &Bits) -> Duration {
    (0..ops.len())
        .filter(|i| !linearized.has(*i))
        .map(|i| ops[i].end())
        .min()
        .unwrap_or(Duration::MAX)
}

/// The operations that may be linearized next (invoked before any unlinearized operation
/// completed) with the states each leads to, the earliest invocation last (tried first).
fn moves(ops: &[Operation], linearized: &Bits, state: &State) -> Vec<(usize, State)> {
    let horizon = horizon(ops, linearized);
    let mut moves = Vec::new();
    for i in (0..ops.len()).filter(|i| !linearized.has(*i)) {
        if ops[i].invoked > horizon {
            break;
        }
        for next in step(state, &ops[i].input, &ops[i].output) {
            moves.push((i, next));
        }
    }
    moves.reverse();
    moves
}

/// Wing & Gong's depth-first search over one register's operations (sorted by invocation),
/// with Lowe's cache: a configuration (linearized set, state) already explored is not
/// explored again. Succeeds once every determinate operation is linearized.
fn check_register(ops: &[Operation]) -> Verdict {
    let n = ops.len();
    let required = ops.iter().filter(|op| op.is_determinate()).count();
    if required == 0 {
        return Verdict::Linearizable;
    }
    let start = Bits::new(n);
    let mut seen: HashSet<(Bits, State)> = HashSet::new();
    let mut stack = vec![Frame {
        moves: moves(ops, &start, &None),
        linearized: start.clone(),
        done: 0,
        via: None,
    }];
    let mut longest: (Vec<usize>, Bits) = (Vec::new(), start);
    while let Some(frame) = stack.last_mut() {
        let Some((i, next)) = frame.moves.pop() else {
            stack.pop();
            continue;
        };
        let linearized = frame.linearized.with(i);
        let done = frame.done + usize::from(ops[i].is_determinate());
        if done == required {
            return Verdict::Linearizable;
        }
        if !seen.insert((linearized.clone(), next)) {
            continue;
        }
        if seen.len() > BUDGET {
            return Verdict::Undecided;
        }
        stack.push(Frame {
            moves: moves(ops, &linearized, &next),
            linearized: linearized.clone(),
            done,
            via: Some(i),
        });
        if stack.len() > longest.0.len() + 1 {
            longest = (stack.iter().filter_map(|f| f.via).collect(), linearized);
        }
    }
    // Nothing linearizes every determinate operation: show where the longest attempt stuck.
    let (longest, linearized) = longest;
    let horizon = horizon(ops, &linearized);
    let stuck = (0..n)
        .filter(|i| !linearized.has(*i) && ops[*i].invoked <= horizon)
        .collect();
    Verdict::Not { longest, stuck }
}

/// Acknowledged writes missing from their register's final history. A register's writes
/// form a chain: each update names the write it replaced (values are unique), and a create
/// starts it. Walking back from the final value, given by `finals` (`None`: the key is
/// absent), finds every write that took effect and was not lost; an acknowledged write
/// (create or update answered `Written`) off that chain was lost.
pub fn lost_writes(
    history: &[Operation],
    finals: &HashMap<String, Option<Value>>,
) -> Vec<Operation> {
    // value -> the write that put it there, whatever its client was told: indeterminate
    // writes are links of the chain too, and so is a write reported as refused that took
    // effect anyway (the linearizability check reports that one; it loses nothing).
    let mut writes: HashMap<(&str, Value), &Operation> = HashMap::new();
    for op in history {
        match op.input {
            Input::Create(v) | Input::Cas { value: v, .. } => {
                writes.insert((&op.key, v), op);
            }
            Input::Read => {}
        }
    }
    let mut kept: HashSet<(&str, Value)> = HashSet::new();
    for (key, last) in finals {
        let mut at = *last;
        while let Some(value) = at {
            if !kept.insert((key.as_str(), value)) {
                break;
            }
            at = match writes.get(&(key.as_str(), value)).map(|op| &op.input) {
                Some(Input::Cas { expected_value, .. }) => Some(*expected_value),
                _ => None,
            };
        }
    }
    history
        .iter()
        .filter(|op| matches!(op.output, Output::Written(_)))
        .filter(|op| match op.input {
            Input::Create(v) | Input::Cas { value: v, .. } => !kept.contains(&(op.key.as_str(), v)),
            Input::Read => false,
        })
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests;
