//! `skiff image load`: puts an image archive (`docker save`, or an OCI image layout tar)
//! into the runtime of the node the CLI talks to, for services with pull policy `never` or
//! nodes that cannot reach a registry.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use proto::LoadImageRequest;

use super::{out, GlobalOpts, Reply};

/// Upload chunk size.
const CHUNK: usize = 1 << 20;

/// `skiff image ...`.
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Load an image archive (docker save or OCI layout tar) into this node's runtime
    Load(LoadArgs),
}

/// `load [-i] FILE`.
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// The archive to load ("-" reads standard input)
    #[arg(value_name = "FILE", conflicts_with = "input")]
    pub file: Option<PathBuf>,
    /// The archive to load (as `docker load -i`)
    #[arg(short, long, value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// Print only the image names
    #[arg(short, long)]
    pub quiet: bool,
}

/// Runs `skiff image ...`.
pub async fn run(global: &GlobalOpts, command: ImageCommand) -> anyhow::Result<()> {
    match command {
        ImageCommand::Load(args) => load(global, args).await,
    }
}

async fn load(global: &GlobalOpts, args: LoadArgs) -> anyhow::Result<()> {
    let Some(path) = args.file.or(args.input) else {
        bail!("name the archive to load: skiff image load FILE (or - for standard input)");
    };
    let mut reader: Box<dyn Read + Send> = if path.as_os_str() == "-" {
        Box::new(std::io::stdin())
    } else {
        Box::new(
            std::fs::File::open(&path)
                .with_context(|| format!("cannot open {}", path.display()))?,
        )
    };
    let client = global.connect().await?;
    let (tx, rx) = tokio::sync::mpsc::channel::<LoadImageRequest>(4);
    let reading = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        loop {
            let mut chunk = vec![0u8; CHUNK];
            let n = reader.read(&mut chunk)?;
            if n == 0 {
                return Ok(());
            }
            chunk.truncate(n);
            if tx.blocking_send(LoadImageRequest { chunk }).is_err() {
                return Ok(());
            }
        }
    });
    let reply = client
        .swarm()
        .load_image(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await;
    reading
        .await
        .context("reading the archive")?
        .with_context(|| format!("cannot read {}", path.display()))?;
    let loaded = reply.reply(&client)?;
    for name in loaded.images {
        if args.quiet {
            out(name);
        } else {
            out(format!("Loaded image: {name}"));
        }
    }
    Ok(())
}
