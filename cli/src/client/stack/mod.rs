//! `skiff stack deploy|ls|services|ps|rm|config`: Compose files deployed as Swarm deploys
//! them.
//!
//! One step per module, each pure but the last: `load` (the files as one interpolated YAML
//! tree), `model` (Swarm's subset of the Compose Specification, typed and checked),
//! `translate` (the cluster's objects, named and labelled for the stack). This module
//! reads the files and the environment, and prints.

pub mod load;
pub mod model;
pub mod translate;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context as _};
use clap::{Args, Subcommand};

use super::{out, GlobalOpts};
use load::interpolate::{parse_env_file, Variables};
use load::Source;

/// `skiff stack ...`.
#[derive(Debug, Subcommand)]
pub enum StackCommand {
    /// Print the merged Compose file, with its variables interpolated (no daemon needed)
    Config(ConfigArgs),
}

/// `skiff stack config`.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// Compose file; give several to merge them in order (later files override)
    #[arg(
        short = 'c',
        long = "compose-file",
        value_name = "FILE",
        required = true
    )]
    pub files: Vec<PathBuf>,
}

/// Runs one `skiff stack` command.
pub async fn run(_global: &GlobalOpts, command: StackCommand) -> anyhow::Result<()> {
    match command {
        StackCommand::Config(args) => config(args),
    }
}

/// The files, the first file's directory (absolute: relative paths in the files start
/// there) and the variables: this shell's environment over a `.env` beside the first file.
pub struct Inputs {
    pub sources: Vec<Source>,
    pub dir: PathBuf,
    pub vars: Variables,
}

/// Reads the Compose files and their variables.
pub fn read_inputs(files: &[PathBuf]) -> anyhow::Result<Inputs> {
    let mut sources = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(file)
            .map_err(|e| anyhow!("cannot read the Compose file {}: {e}", file.display()))?;
        sources.push(Source {
            name: file.display().to_string(),
            text,
        });
    }
    let first = files.first().context("give a Compose file with -c FILE")?;
    let parent = first.parent().filter(|p| !p.as_os_str().is_empty());
    let dir = std::path::absolute(parent.unwrap_or(Path::new(".")))
        .context("cannot tell the current directory")?;
    let mut vars = Variables::new();
    let env_file = dir.join(".env");
    match std::fs::read_to_string(&env_file) {
        Ok(text) => {
            let name = env_file.display().to_string();
            vars.extend(parse_env_file(&text, &name).map_err(|e| anyhow!("{e}"))?);
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(anyhow!("cannot read {}: {e}", env_file.display())),
    }
    vars.extend(std::env::vars());
    Ok(Inputs { sources, dir, vars })
}

/// Reads a file the stack names, for `translate`.
pub fn read_file(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// The ignored keys as one warning line, as Docker prints it.
pub fn ignored_warning(stack: &model::Stack) -> Option<String> {
    (!stack.ignored.is_empty()).then(|| {
        let keys: Vec<&str> = stack.ignored.iter().map(String::as_str).collect();
        format!("Ignoring unsupported options: {}", keys.join(", "))
    })
}

fn config(args: ConfigArgs) -> anyhow::Result<()> {
    let inputs = read_inputs(&args.files)?;
    let tree = load::load(&inputs.sources, &inputs.vars).map_err(|e| anyhow!("{e}"))?;
    // Checked as `deploy` checks it, so what prints is what deploys.
    let stack = model::read(&tree, &inputs.dir, &inputs.vars).map_err(|e| anyhow!("{e}"))?;
    if let Some(w) = ignored_warning(&stack) {
        eprintln!("{w}");
    }
    let text = yaml_serde::to_string(&tree).context("cannot print the merged file")?;
    out(text.trim_end());
    Ok(())
}
