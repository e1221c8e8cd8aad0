//! `skiff secret|config create|ls|inspect|rm`: named blobs services can refer to. The two
//! command groups behave alike, so they share this module.

use std::io::Read as _;
use std::path::PathBuf;

use anyhow::{bail, Context as _};
use clap::{Args, Subcommand};
use proto::{
    ConfigSpec, CreateConfigRequest, CreateSecretRequest, GetConfigRequest, GetSecretRequest,
    ListConfigsRequest, ListSecretsRequest, RemoveConfigRequest, RemoveSecretRequest, SecretSpec,
};

use super::format::age;
use super::output::{Format, Rows};
use super::{
    docker, json, out, out_text, report, table::Table, Client, GlobalOpts, Reply, Reported,
};

/// Which of the two kinds a command is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `skiff secret`.
    Secret,
    /// `skiff config`.
    Config,
}

/// `skiff secret ...` and `skiff config ...`.
#[derive(Debug, Subcommand)]
pub enum NamedCommand {
    /// Create one from a file, or from standard input with "-"
    Create(CreateArgs),
    /// List them
    #[command(visible_alias = "list")]
    Ls(NamedLsArgs),
    /// Show details of one or more (never a secret's data)
    Inspect(InspectArgs),
    /// Remove one or more
    #[command(visible_alias = "remove")]
    Rm(RmArgs),
}

/// `create NAME FILE`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Name to give it
    pub name: String,
    /// File to read the data from ("-" reads standard input)
    pub file: PathBuf,
    /// Label (KEY=VALUE); repeat for more
    #[arg(short, long, value_name = "KEY=VALUE")]
    pub label: Vec<String>,
}

/// `ls`.
#[derive(Debug, Args)]
pub struct LsArgs {
    /// Only print IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Output format: table (the default), json, a Go template ({{.Name}}) or table TEMPLATE
    #[arg(long)]
    pub format: Option<String>,
}

/// `secret ls` / `config ls`: the listing flags and `--filter`.
#[derive(Debug, Args)]
pub struct NamedLsArgs {
    #[command(flatten)]
    pub ls: LsArgs,
    /// Filter: name=NAME (a prefix, as Docker matches it), id=ID (a prefix),
    /// label=KEY[=VALUE]; a name or ID given twice matches either
    #[arg(short, long, value_name = "KEY=VALUE")]
    pub filter: Vec<String>,
}

/// One `--filter KEY=VALUE`: its key and its (non-empty) value, or an error that says how
/// to write one (`usage`).
pub fn split_filter<'a>(raw: &'a str, usage: &str) -> anyhow::Result<(&'a str, &'a str)> {
    match raw.split_once('=') {
        Some((key, value)) if !value.trim().is_empty() => Ok((key.trim(), value.trim())),
        _ => anyhow::bail!("invalid filter \"{raw}\": {usage}"),
    }
}

/// A `label=KEY[=VALUE]` filter's value: the key, and the value it must have if given.
pub fn label_filter(value: &str) -> (String, Option<String>) {
    match value.split_once('=') {
        Some((k, v)) => (k.to_string(), Some(v.to_string())),
        None => (value.to_string(), None),
    }
}

/// `secret ls --filter` / `config ls --filter` values.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Filters {
    names: Vec<String>,
    ids: Vec<String>,
    labels: Vec<(String, Option<String>)>,
}

impl Filters {
    /// Parses `--filter KEY=VALUE` values.
    pub fn parse(values: &[String]) -> anyhow::Result<Filters> {
        let mut f = Filters::default();
        for raw in values {
            const USAGE: &str = "use name=NAME, id=ID or label=KEY[=VALUE]";
            match split_filter(raw, USAGE)? {
                ("name", value) => f.names.push(value.to_string()),
                ("id", value) => f.ids.push(value.to_string()),
                ("label", value) => f.labels.push(label_filter(value)),
                _ => anyhow::bail!("invalid filter \"{raw}\": {USAGE}"),
            }
        }
        Ok(f)
    }

    fn keep(&self, item: &Item) -> bool {
        let prefix = |wanted: &[String], have: &str| {
            wanted.is_empty() || wanted.iter().any(|p| have.starts_with(p.as_str()))
        };
        let labels_ok = self
            .labels
            .iter()
            .all(|(k, v)| match (item.labels.get(k), v) {
                (Some(have), Some(want)) => have == want,
                (Some(_), None) => true,
                (None, _) => false,
            });
        prefix(&self.names, &item.name) && prefix(&self.ids, &item.id) && labels_ok
    }
}

/// `inspect NAME...`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Output format: json (the default) or a Go template on Docker's JSON ({{.Spec.Name}})
    #[arg(short, long)]
    pub format: Option<String>,
    /// ID, ID prefix or name
    #[arg(required = true)]
    pub names: Vec<String>,
}

/// `rm NAME...`.
#[derive(Debug, Args)]
pub struct RmArgs {
    /// ID, ID prefix or name
    #[arg(required = true)]
    pub names: Vec<String>,
}

/// One secret or config as the commands show it.
struct Item {
    id: String,
    name: String,
    created_at: i64,
    updated_at: i64,
    labels: std::collections::HashMap<String, String>,
    json: serde_json::Value,
}

/// Parses repeated KEY=VALUE flags (a bare KEY has an empty value).
pub(super) fn labels(
    flags: &[String],
) -> anyhow::Result<std::collections::HashMap<String, String>> {
    flags
        .iter()
        .map(|l| match l.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok((k.to_owned(), v.to_owned())),
            None if !l.trim().is_empty() => Ok((l.clone(), String::new())),
            _ => bail!("invalid label {l:?}: use KEY=VALUE with a non-empty key"),
        })
        .collect()
}

fn read_data(file: &PathBuf) -> anyhow::Result<Vec<u8>> {
    let mut data = Vec::new();
    if file.as_os_str() == "-" {
        std::io::stdin()
            .read_to_end(&mut data)
            .context("cannot read standard input")?;
    } else {
        data = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    }
    Ok(data)
}

/// Runs a `secret` or `config` command.
pub async fn run(global: &GlobalOpts, kind: Kind, command: NamedCommand) -> anyhow::Result<()> {
    match command {
        NamedCommand::Create(args) => create(global, kind, args).await,
        NamedCommand::Ls(args) => ls(global, kind, args).await,
        NamedCommand::Inspect(args) => inspect(global, kind, args).await,
        NamedCommand::Rm(args) => rm(global, kind, args).await,
    }
}

async fn create(global: &GlobalOpts, kind: Kind, args: CreateArgs) -> anyhow::Result<()> {
    let labels = labels(&args.label)?;
    let data = read_data(&args.file)?;
    let client = global.connect().await?;
    let mut control = client.control();
    let id = match kind {
        Kind::Secret => control
            .create_secret(CreateSecretRequest {
                spec: Some(SecretSpec {
                    name: args.name,
                    labels,
                    data,
                }),
            })
            .await
            .reply(&client)?
            .secret
            .and_then(|s| s.meta)
            .map(|m| m.id),
        Kind::Config => control
            .create_config(CreateConfigRequest {
                spec: Some(ConfigSpec {
                    name: args.name,
                    labels,
                    data,
                }),
            })
            .await
            .reply(&client)?
            .config
            .and_then(|c| c.meta)
            .map(|m| m.id),
    };
    out(id.unwrap_or_default());
    Ok(())
}

async fn list(client: &Client, kind: Kind) -> anyhow::Result<Vec<Item>> {
    let mut control = client.control();
    let mut items = Vec::new();
    match kind {
        Kind::Secret => {
            for s in control
                .list_secrets(ListSecretsRequest {})
                .await
                .reply(client)?
                .secrets
            {
                let meta = s.meta.clone().unwrap_or_default();
                let name = s.spec.as_ref().map(|x| x.name.clone()).unwrap_or_default();
                items.push(Item {
                    id: meta.id,
                    name,
                    created_at: meta.created_at,
                    updated_at: meta.updated_at,
                    labels: s
                        .spec
                        .as_ref()
                        .map(|x| x.labels.clone())
                        .unwrap_or_default(),
                    json: json::to_value(&s)?,
                });
            }
        }
        Kind::Config => {
            for c in control
                .list_configs(ListConfigsRequest {})
                .await
                .reply(client)?
                .configs
            {
                let meta = c.meta.clone().unwrap_or_default();
                let name = c.spec.as_ref().map(|x| x.name.clone()).unwrap_or_default();
                items.push(Item {
                    id: meta.id,
                    name,
                    created_at: meta.created_at,
                    updated_at: meta.updated_at,
                    labels: c
                        .spec
                        .as_ref()
                        .map(|x| x.labels.clone())
                        .unwrap_or_default(),
                    json: json::to_value(&c)?,
                });
            }
        }
    }
    items.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(items)
}

async fn ls(global: &GlobalOpts, kind: Kind, args: NamedLsArgs) -> anyhow::Result<()> {
    let filters = Filters::parse(&args.filter)?;
    let args = args.ls;
    let format = Format::parse(args.format.as_deref())?;
    let client = global.connect().await?;
    let mut items = list(&client, kind).await?;
    items.retain(|i| filters.keep(i));
    if args.quiet {
        for i in &items {
            out(&i.id);
        }
        return Ok(());
    }
    if matches!(format, Format::Json) {
        out(json::pretty(&serde_json::Value::Array(
            items.into_iter().map(|i| i.json).collect(),
        ))?);
        return Ok(());
    }
    let mut table = Table::new(&["ID", "NAME", "CREATED"]);
    for i in &items {
        table.push([i.id.clone(), i.name.clone(), age(i.created_at)]);
    }
    if format.is_template() {
        out_text(&rows(&items, &table).render(&format)?);
    } else {
        out(table.render().trim_end());
    }
    Ok(())
}

/// The fields of a `secret ls` / `config ls` row in a `--format` template, as Docker names
/// them.
const FIELDS: &[&str] = &["ID", "Name", "CreatedAt"];

/// `ls`'s rows for a template: the table's cells, and Docker's other fields.
fn rows(items: &[Item], table: &Table) -> Rows {
    let mut rows = Rows::from_table(table, FIELDS);
    for (i, item) in items.iter().enumerate() {
        let cells = [
            ("UpdatedAt", "UPDATED", age(item.updated_at)),
            (
                "Labels",
                "LABELS",
                super::network::joined_labels(&item.labels),
            ),
        ];
        for (field, header, value) in cells {
            rows.set(i, field, header, serde_json::Value::String(value));
        }
    }
    rows
}

async fn inspect(global: &GlobalOpts, kind: Kind, args: InspectArgs) -> anyhow::Result<()> {
    let format = Format::parse(args.format.as_deref())?;
    let client = global.connect().await?;
    let mut control = client.control();
    let mut found = Vec::new();
    let mut failed = false;
    for name in &args.names {
        let value = match kind {
            Kind::Secret => control
                .get_secret(GetSecretRequest {
                    secret: name.clone(),
                })
                .await
                .reply(&client)
                .and_then(|r| r.secret.as_ref().map(docker::secret).transpose()),
            Kind::Config => control
                .get_config(GetConfigRequest {
                    config: name.clone(),
                })
                .await
                .reply(&client)
                .and_then(|r| r.config.as_ref().map(docker::config).transpose()),
        };
        match value {
            Ok(Some(v)) => found.push(v),
            Ok(None) => {}
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

async fn rm(global: &GlobalOpts, kind: Kind, args: RmArgs) -> anyhow::Result<()> {
    let client = global.connect().await?;
    let mut control = client.control();
    let mut failed = false;
    for name in &args.names {
        let result = match kind {
            Kind::Secret => control
                .remove_secret(RemoveSecretRequest {
                    secret: name.clone(),
                })
                .await
                .reply(&client)
                .map(drop),
            Kind::Config => control
                .remove_config(RemoveConfigRequest {
                    config: name.clone(),
                })
                .await
                .reply(&client)
                .map(drop),
        };
        match result {
            Ok(()) => out(name),
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

    #[test]
    fn labels_need_a_key() {
        let l = labels(&["a=b".into(), "c".into()]).unwrap();
        assert_eq!(l["a"], "b");
        assert_eq!(l["c"], "");
        assert!(labels(&["=x".into()])
            .unwrap_err()
            .to_string()
            .contains("invalid label"));
    }

    fn item(id: &str, name: &str, labels: &[(&str, &str)]) -> Item {
        Item {
            id: id.into(),
            name: name.into(),
            created_at: 0,
            updated_at: 0,
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            json: serde_json::Value::Null,
        }
    }

    #[test]
    fn filters_match_name_and_id_prefixes_as_docker() {
        let db = item("abc123", "db-password", &[("env", "prod")]);
        let api = item("def456", "api-key", &[]);
        let keep = |flags: &[&str], i: &Item| {
            let flags: Vec<String> = flags.iter().map(|f| f.to_string()).collect();
            Filters::parse(&flags).unwrap().keep(i)
        };
        assert!(keep(&["name=db"], &db) && !keep(&["name=db"], &api));
        // A part that is not a prefix does not match.
        assert!(!keep(&["name=password"], &db));
        assert!(keep(&["name=db", "name=api"], &api));
        assert!(keep(&["id=abc"], &db) && !keep(&["id=bc"], &db));
        assert!(keep(&["label=env"], &db) && keep(&["label=env=prod"], &db));
        assert!(!keep(&["label=env=dev"], &db) && !keep(&["label=env"], &api));
        for bad in ["colour=red", "name=", "name"] {
            let e = Filters::parse(&[bad.to_string()]).unwrap_err().to_string();
            assert!(e.starts_with(&format!("invalid filter \"{bad}\"")), "{e}");
        }
    }
}
