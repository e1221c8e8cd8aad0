//! Placement constraints (`node.labels.zone==east`) and spread preferences
//! (`spread=node.labels.zone`), in the syntax Docker users already write.
//!
//! Parsing is separate from matching so the control API can reject a bad spec when the
//! service is created (with the same message), and the scheduler parses each distinct spec
//! only once per pass instead of once per task and node.

use std::fmt;

use proto::{Node, NodeRole};
use thiserror::Error;

/// A node attribute that constraints compare and spread preferences group by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Attribute {
    /// `node.id`: compared exactly.
    Id,
    /// `node.hostname`: compared exactly, as Docker does.
    Hostname,
    /// `node.role`: `manager` or `worker`, compared case-insensitively.
    Role,
    /// `node.labels.KEY`: a user label from the node's spec, compared exactly.
    Label(String),
    /// `node.platform.os`: compared case-insensitively.
    PlatformOs,
    /// `node.platform.arch`: compared case-insensitively, with `x86_64`/`amd64` and
    /// `aarch64`/`arm64` treated as the same architecture (nodes report `uname` names while
    /// images and users often use Go's names).
    PlatformArch,
}

/// Why a string is not a node attribute; turned into a message by the caller, which knows
/// the full input.
enum AttributeError {
    Unknown,
    EmptyLabel,
    InvalidLabel,
}

const LABEL_PREFIX: &str = "node.labels.";

impl Attribute {
    /// Parses `node.id`, `node.labels.zone`, ... The `node.*` part is case-insensitive (as in
    /// Docker); a label's key is kept exactly as written because labels are case-sensitive.
    fn parse(key: &str) -> Result<Attribute, AttributeError> {
        let lower = key.to_ascii_lowercase();
        match lower.as_str() {
            "node.id" => return Ok(Attribute::Id),
            "node.hostname" => return Ok(Attribute::Hostname),
            "node.role" => return Ok(Attribute::Role),
            "node.platform.os" => return Ok(Attribute::PlatformOs),
            "node.platform.arch" => return Ok(Attribute::PlatformArch),
            _ => {}
        }
        if lower.starts_with(LABEL_PREFIX) {
            // The prefix is ASCII, so slicing the original at its length is on a char boundary.
            let label = &key[LABEL_PREFIX.len()..];
            if label.is_empty() {
                return Err(AttributeError::EmptyLabel);
            }
            if label
                .chars()
                .any(|c| c.is_whitespace() || c == '=' || c == '!')
            {
                return Err(AttributeError::InvalidLabel);
            }
            return Ok(Attribute::Label(label.to_string()));
        }
        Err(AttributeError::Unknown)
    }

    /// The node's value of this attribute, or `None` when the node has none (a missing label,
    /// or a description the node has not reported yet).
    pub fn value<'a>(&self, node: &'a Node) -> Option<&'a str> {
        let non_empty = |s: &'a str| (!s.is_empty()).then_some(s);
        match self {
            Attribute::Id => node.meta.as_ref().and_then(|m| non_empty(&m.id)),
            Attribute::Hostname => node
                .description
                .as_ref()
                .and_then(|d| non_empty(&d.hostname)),
            Attribute::Role => role_name(node),
            Attribute::Label(key) => node
                .spec
                .as_ref()
                .and_then(|s| s.labels.get(key))
                .map(String::as_str),
            Attribute::PlatformOs => node
                .description
                .as_ref()
                .and_then(|d| d.platform.as_ref())
                .and_then(|p| non_empty(&p.os)),
            Attribute::PlatformArch => node
                .description
                .as_ref()
                .and_then(|d| d.platform.as_ref())
                .and_then(|p| non_empty(&p.arch)),
        }
    }

    /// Whether a node's value equals a constraint's value under this attribute's rules.
    fn values_equal(&self, node_value: &str, wanted: &str) -> bool {
        match self {
            Attribute::Id | Attribute::Hostname | Attribute::Label(_) => node_value == wanted,
            Attribute::Role | Attribute::PlatformOs => node_value.eq_ignore_ascii_case(wanted),
            Attribute::PlatformArch => arch_eq(node_value, wanted),
        }
    }
}

impl fmt::Display for Attribute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Attribute::Id => f.write_str("node.id"),
            Attribute::Hostname => f.write_str("node.hostname"),
            Attribute::Role => f.write_str("node.role"),
            Attribute::Label(key) => write!(f, "{LABEL_PREFIX}{key}"),
            Attribute::PlatformOs => f.write_str("node.platform.os"),
            Attribute::PlatformArch => f.write_str("node.platform.arch"),
        }
    }
}

/// The role a constraint sees: the role of the node's certificate (what the node really is),
/// or the desired role while the node has no certificate role yet.
fn role_name(node: &Node) -> Option<&'static str> {
    let name = |role: i32| match NodeRole::try_from(role) {
        Ok(NodeRole::Manager) => Some("manager"),
        Ok(NodeRole::Worker) => Some("worker"),
        _ => None,
    };
    name(node.role).or_else(|| node.spec.as_ref().and_then(|s| name(s.desired_role)))
}

/// The canonical name of an architecture, so `x86_64` (uname) equals `amd64` (Go, OCI).
pub(crate) fn canonical_arch(arch: &str) -> &str {
    if arch.eq_ignore_ascii_case("x86_64") || arch.eq_ignore_ascii_case("x86-64") {
        "amd64"
    } else if arch.eq_ignore_ascii_case("aarch64") {
        "arm64"
    } else {
        arch
    }
}

/// Architecture equality modulo aliases and case.
pub(crate) fn arch_eq(a: &str, b: &str) -> bool {
    canonical_arch(a).eq_ignore_ascii_case(canonical_arch(b))
}

/// `==` or `!=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operator {
    Eq,
    Ne,
}

impl fmt::Display for Operator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Operator::Eq => "==",
            Operator::Ne => "!=",
        })
    }
}

/// One parsed placement constraint. Its `Display` is the canonical form (no spaces), which
/// is what unplaceable-task messages quote.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Constraint {
    pub attribute: Attribute,
    pub operator: Operator,
    /// The value as written (trimmed); comparison rules depend on the attribute.
    pub value: String,
}

impl Constraint {
    /// Whether the node satisfies the constraint. A node without the attribute (typically a
    /// missing label) never satisfies `==` and always satisfies `!=`, as in Docker: "not in
    /// zone east" is true of a node that has no zone.
    pub fn matches(&self, node: &Node) -> bool {
        let equal = self
            .attribute
            .value(node)
            .is_some_and(|v| self.attribute.values_equal(v, &self.value));
        match self.operator {
            Operator::Eq => equal,
            Operator::Ne => !equal,
        }
    }
}

impl fmt::Display for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{}", self.attribute, self.operator, self.value)
    }
}

/// Why a constraint string was refused; every message quotes the input and says what to
/// write instead.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConstraintError {
    #[error("invalid constraint {input:?}: missing operator; write ATTRIBUTE==VALUE or ATTRIBUTE!=VALUE, e.g. node.role==manager")]
    MissingOperator { input: String },
    #[error("invalid constraint {input:?}: empty attribute before {operator}; use node.id, node.hostname, node.role, node.labels.KEY, node.platform.os or node.platform.arch")]
    EmptyKey { input: String, operator: Operator },
    #[error("invalid constraint {input:?}: empty value after {operator}; compare with a value, e.g. node.labels.zone{operator}east")]
    EmptyValue { input: String, operator: Operator },
    #[error("invalid constraint {input:?}: more than one operator; a constraint compares one attribute with one value, e.g. node.labels.zone==east")]
    MultipleOperators { input: String },
    #[error("invalid constraint {input:?}: unknown attribute {attribute}; use node.id, node.hostname, node.role, node.labels.KEY, node.platform.os or node.platform.arch")]
    UnknownAttribute { input: String, attribute: String },
    #[error("invalid constraint {input:?}: missing label name after node.labels., e.g. node.labels.zone==east")]
    EmptyLabel { input: String },
    #[error(
        "invalid constraint {input:?}: label name {attribute:?} contains whitespace, '=' or '!'"
    )]
    InvalidLabel { input: String, attribute: String },
    #[error("invalid constraint {input:?}: node.role is manager or worker, not {value:?}")]
    InvalidRole { input: String, value: String },
}

/// Parses one constraint: `ATTRIBUTE==VALUE` or `ATTRIBUTE!=VALUE`, spaces around the
/// operator allowed (`node.labels.zone != east`).
pub fn parse(s: &str) -> Result<Constraint, ConstraintError> {
    let input = s.trim();
    let owned = || input.to_string();
    let (pos, operator) = match (input.find("=="), input.find("!=")) {
        (Some(eq), Some(ne)) if ne < eq => (ne, Operator::Ne),
        (Some(eq), _) => (eq, Operator::Eq),
        (None, Some(ne)) => (ne, Operator::Ne),
        (None, None) => return Err(ConstraintError::MissingOperator { input: owned() }),
    };
    let key = input[..pos].trim();
    let value = input[pos + 2..].trim();
    if key.is_empty() {
        return Err(ConstraintError::EmptyKey {
            input: owned(),
            operator,
        });
    }
    if value.is_empty() {
        return Err(ConstraintError::EmptyValue {
            input: owned(),
            operator,
        });
    }
    // `a==b==c`, `a===b`, `a==!=b`: Docker's value syntax has no '=' either.
    if value.contains('=') {
        return Err(ConstraintError::MultipleOperators { input: owned() });
    }
    let attribute = Attribute::parse(key).map_err(|e| match e {
        AttributeError::Unknown => ConstraintError::UnknownAttribute {
            input: owned(),
            attribute: key.to_string(),
        },
        AttributeError::EmptyLabel => ConstraintError::EmptyLabel { input: owned() },
        AttributeError::InvalidLabel => ConstraintError::InvalidLabel {
            input: owned(),
            attribute: key.to_string(),
        },
    })?;
    if attribute == Attribute::Role
        && !["manager", "worker"]
            .iter()
            .any(|r| value.eq_ignore_ascii_case(r))
    {
        return Err(ConstraintError::InvalidRole {
            input: owned(),
            value: value.to_string(),
        });
    }
    Ok(Constraint {
        attribute,
        operator,
        value: value.to_string(),
    })
}

/// Parses every constraint of a placement, stopping at the first bad one.
pub fn parse_all<S: AsRef<str>>(constraints: &[S]) -> Result<Vec<Constraint>, ConstraintError> {
    constraints.iter().map(|c| parse(c.as_ref())).collect()
}

/// A `spread` placement preference: spread a service's tasks evenly over the distinct values
/// of one node attribute. Nodes without the attribute form one more group of their own.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SpreadPreference {
    pub attribute: Attribute,
}

impl SpreadPreference {
    /// The group a node falls into; `None` is the group of nodes without the attribute.
    pub fn group_of<'a>(&self, node: &'a Node) -> Option<&'a str> {
        self.attribute.value(node)
    }
}

impl fmt::Display for SpreadPreference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "spread={}", self.attribute)
    }
}

/// Why a placement preference was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PreferenceError {
    #[error("invalid placement preference {input:?}: unknown strategy; the only strategy is spread, e.g. spread=node.labels.zone")]
    UnknownStrategy { input: String },
    #[error("invalid placement preference {input:?}: nothing to spread over; write spread=node.labels.KEY, e.g. spread=node.labels.zone")]
    EmptyAttribute { input: String },
    #[error("invalid placement preference {input:?}: unknown attribute {attribute}; spread over node.labels.KEY (or node.id, node.hostname, node.role, node.platform.os, node.platform.arch)")]
    UnknownAttribute { input: String, attribute: String },
    #[error("invalid placement preference {input:?}: missing label name after node.labels., e.g. spread=node.labels.zone")]
    EmptyLabel { input: String },
    #[error("invalid placement preference {input:?}: label name {attribute:?} contains whitespace, '=' or '!'")]
    InvalidLabel { input: String, attribute: String },
}

/// Parses a preference as the CLI takes it: `spread=node.labels.zone`.
pub fn parse_preference(s: &str) -> Result<SpreadPreference, PreferenceError> {
    let input = s.trim();
    let Some((strategy, descriptor)) = input.split_once('=') else {
        return Err(PreferenceError::UnknownStrategy {
            input: input.to_string(),
        });
    };
    if !strategy.trim().eq_ignore_ascii_case("spread") {
        return Err(PreferenceError::UnknownStrategy {
            input: input.to_string(),
        });
    }
    spread_attribute(input, descriptor)
}

/// Parses the stored form of a spread preference, `PlacementPreference.spread`, which holds
/// only the attribute (`node.labels.zone`). A `spread=` prefix is tolerated so a spec built
/// from CLI text without stripping it still works.
pub fn parse_spread(descriptor: &str) -> Result<SpreadPreference, PreferenceError> {
    let input = descriptor.trim();
    match input.split_once('=') {
        Some((strategy, rest)) if strategy.trim().eq_ignore_ascii_case("spread") => {
            spread_attribute(input, rest)
        }
        Some(_) => Err(PreferenceError::UnknownStrategy {
            input: input.to_string(),
        }),
        None => spread_attribute(input, input),
    }
}

fn spread_attribute(input: &str, descriptor: &str) -> Result<SpreadPreference, PreferenceError> {
    let descriptor = descriptor.trim();
    if descriptor.is_empty() {
        return Err(PreferenceError::EmptyAttribute {
            input: input.to_string(),
        });
    }
    let attribute = Attribute::parse(descriptor).map_err(|e| match e {
        AttributeError::Unknown => PreferenceError::UnknownAttribute {
            input: input.to_string(),
            attribute: descriptor.to_string(),
        },
        AttributeError::EmptyLabel => PreferenceError::EmptyLabel {
            input: input.to_string(),
        },
        AttributeError::InvalidLabel => PreferenceError::InvalidLabel {
            input: input.to_string(),
            attribute: descriptor.to_string(),
        },
    })?;
    Ok(SpreadPreference { attribute })
}
