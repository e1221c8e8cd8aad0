//! `skiff image load`: puts an image archive (`docker save`, or an OCI image layout tar)
//! into the runtime of the node the CLI talks to, for services with pull policy `never` or
//! nodes that cannot reach a registry.

use std::io::{IsTerminal as _, Read, Write as _};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use agent_runtime::progress::{human_bytes, Throttle};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use proto::LoadImageRequest;

use super::{out, GlobalOpts, Reply};

/// Upload chunk size.
const CHUNK: usize = 1 << 20;

/// How often the progress line of a load is redrawn.
const REDRAW_PERIOD: Duration = Duration::from_millis(100);
/// Width of the progress bar of a load.
const BAR_WIDTH: u64 = 50;

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
    let (mut reader, size): (Box<dyn Read + Send>, Option<u64>) = if path.as_os_str() == "-" {
        (Box::new(std::io::stdin()), None)
    } else {
        let file = std::fs::File::open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        let size = file.metadata().ok().map(|m| m.len());
        (Box::new(file), size)
    };
    // As `docker load`: the bytes of the archive read so far, redrawn in place, only on a
    // terminal (standard error, so standard output keeps only the loaded images' names).
    let mut progress = (!args.quiet && std::io::stderr().is_terminal()).then(|| Progress {
        total: size,
        done: 0,
        throttle: Throttle::new(REDRAW_PERIOD),
        finished: false,
    });
    let client = global.connect().await?;
    let (tx, rx) = tokio::sync::mpsc::channel::<LoadImageRequest>(4);
    let reading = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        loop {
            let mut chunk = vec![0u8; CHUNK];
            let n = reader.read(&mut chunk)?;
            if n == 0 {
                if let Some(p) = progress.as_mut() {
                    p.finish();
                }
                return Ok(());
            }
            chunk.truncate(n);
            if let Some(p) = progress.as_mut() {
                p.read(n);
            }
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

/// The bytes of an archive read so far, on a terminal.
struct Progress {
    total: Option<u64>,
    done: u64,
    throttle: Throttle,
    finished: bool,
}

impl Progress {
    /// `n` more bytes were read: redraws the line, at most once per [`REDRAW_PERIOD`].
    fn read(&mut self, n: usize) {
        self.done += n as u64;
        if self.throttle.ready(Instant::now()) {
            draw(&load_line(self.done, self.total), false);
        }
    }

    /// The whole archive was read: the last line, kept.
    fn finish(&mut self) {
        draw(&load_line(self.done, self.total), true);
        self.finished = true;
    }
}

impl Drop for Progress {
    /// A read that failed leaves the line as it was, ended, so the error starts a line.
    fn drop(&mut self) {
        if !self.finished {
            draw(&load_line(self.done, self.total), true);
        }
    }
}

fn draw(line: &str, last: bool) {
    let mut err = std::io::stderr().lock();
    // Back to the start of the line and clear it, so a shorter line leaves nothing behind.
    let _ = write!(err, "\r\x1b[2K{line}");
    if last {
        let _ = writeln!(err);
    }
    let _ = err.flush();
}

/// The progress line of a load, as `docker load` draws it: a bar and the bytes read of
/// the archive's size, or only the bytes when the size is unknown (standard input).
fn load_line(done: u64, total: Option<u64>) -> String {
    match total {
        Some(total) if total > 0 => {
            let done = done.min(total);
            let filled = (done * BAR_WIDTH / total) as usize;
            let bar = if filled as u64 == BAR_WIDTH {
                "=".repeat(filled + 1)
            } else {
                format!(
                    "{}>{}",
                    "=".repeat(filled),
                    " ".repeat(BAR_WIDTH as usize - filled)
                )
            };
            format!(
                "Loading archive [{bar}]  {}/{}",
                human_bytes(done),
                human_bytes(total)
            )
        }
        _ => format!("Loading archive  {}", human_bytes(done)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_load_shows_the_bytes_read_of_the_archive() {
        assert_eq!(
            load_line(0, Some(2_000_000)),
            format!("Loading archive [>{}]  0B/2.00MB", " ".repeat(50))
        );
        assert_eq!(
            load_line(1_000_000, Some(2_000_000)),
            format!(
                "Loading archive [{}>{}]  1.00MB/2.00MB",
                "=".repeat(25),
                " ".repeat(25)
            )
        );
        assert_eq!(
            load_line(2_000_000, Some(2_000_000)),
            format!("Loading archive [{}]  2.00MB/2.00MB", "=".repeat(51))
        );
        // From standard input, the size is unknown.
        assert_eq!(load_line(1_500, None), "Loading archive  1.50kB");
    }
}
