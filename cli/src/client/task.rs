//! `skiff task inspect`: tasks as Docker's `Task` JSON (what `docker inspect --type task`
//! prints), or through a `--format` template. Tasks are listed by `service ps` and
//! `node ps`, whose IDs (or ID prefixes) this takes.

use anyhow::Context as _;
use clap::{Args, Subcommand};
use proto::GetTaskRequest;

use super::output::Format;
use super::{docker, out_text, report, GlobalOpts, Reply, Reported};

/// `skiff task ...`.
#[derive(Debug, Subcommand)]
pub enum TaskCommand {
    /// Show details of one or more tasks
    Inspect(InspectArgs),
}

/// `skiff task inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Output format: json (the default) or a Go template on Docker's JSON ({{.Status.State}})
    #[arg(short, long)]
    pub format: Option<String>,
    /// Task ID or ID prefix (as `service ps` shows them)
    #[arg(value_name = "TASK", required = true)]
    pub tasks: Vec<String>,
}

/// Runs one `skiff task` command.
pub async fn run(global: &GlobalOpts, command: TaskCommand) -> anyhow::Result<()> {
    match command {
        TaskCommand::Inspect(args) => inspect(global, args).await,
    }
}

async fn inspect(global: &GlobalOpts, args: InspectArgs) -> anyhow::Result<()> {
    let format = Format::parse(args.format.as_deref())?;
    let client = global.connect().await?;
    let mut found = Vec::new();
    let mut errors = Vec::new();
    for id in &args.tasks {
        let task = client
            .control()
            .get_task(GetTaskRequest { task: id.clone() })
            .await
            .reply(&client)
            .and_then(|r| {
                r.task.with_context(|| {
                    format!("the daemon answered without task {id}; retry, and report a bug if this persists")
                })
            });
        match task.and_then(|t| docker::task(&t)) {
            Ok(v) => found.push(v),
            Err(e) => errors.push(e),
        }
    }
    if !found.is_empty() || errors.is_empty() {
        out_text(&format.inspect(found)?);
    }
    if errors.is_empty() {
        return Ok(());
    }
    errors.iter().for_each(report);
    Err(Reported.into())
}
