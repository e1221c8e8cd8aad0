//! Showing progress lines: redrawn in place on a terminal, else each line once per change
//! (so a log or a pipe gets a readable history, not escape sequences).

use std::collections::HashMap;
use std::io::{IsTerminal as _, Write as _};

/// Writes progress lines: redrawn in place on a terminal, else each line once per change.
pub(super) struct Screen {
    tty: bool,
    quiet: bool,
    drawn: usize,
    last: HashMap<String, String>,
    frame: Vec<String>,
}

impl Screen {
    /// Shows nothing when `quiet`.
    pub(super) fn new(quiet: bool) -> Screen {
        Screen {
            tty: std::io::stdout().is_terminal(),
            quiet,
            drawn: 0,
            last: HashMap::new(),
            frame: Vec::new(),
        }
    }

    /// Whether stdout is a terminal (so a countdown can tick in place).
    pub(super) fn is_terminal(&self) -> bool {
        self.tty
    }

    /// Shows `lines` unless quiet or already showing them.
    pub(super) fn show(&mut self, lines: &[String]) {
        if self.quiet || self.frame == lines {
            return;
        }
        self.frame = lines.to_vec();
        let text = if self.tty {
            redraw(lines, self.drawn, terminal_width())
        } else {
            changed(lines, &mut self.last)
        };
        if self.tty {
            self.drawn = self.drawn.max(lines.len());
        }
        emit(&text);
    }
}

/// The escape sequences that replace the `drawn` lines above the cursor by `lines` (each
/// cut to the terminal's width, so none wraps and the count stays right).
fn redraw(lines: &[String], drawn: usize, width: Option<usize>) -> String {
    let mut text = String::new();
    if drawn > 0 {
        text.push_str(&format!("\x1b[{drawn}A"));
    }
    for l in lines {
        let l: String = match width {
            Some(w) if l.chars().count() >= w => l.chars().take(w.saturating_sub(1)).collect(),
            _ => l.clone(),
        };
        text.push_str(&format!("\x1b[2K{l}\n"));
    }
    for _ in lines.len()..drawn {
        text.push_str("\x1b[2K\n");
    }
    text
}

/// The lines that changed since last shown, keyed by what precedes their first `:` (the
/// slot, the node, `overall progress`, `verify`), for output that is not a terminal.
fn changed(lines: &[String], last: &mut HashMap<String, String>) -> String {
    let mut text = String::new();
    for l in lines {
        let key = l.split_once(':').map(|(k, _)| k).unwrap_or(l).to_string();
        if last.get(&key) != Some(l) {
            text.push_str(l);
            text.push('\n');
            last.insert(key, l.clone());
        }
    }
    text
}

/// Columns of the terminal on stdout, if it is one.
fn terminal_width() -> Option<usize> {
    // SAFETY: an all-zero `winsize` is a valid value of this plain C struct.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ only writes a `winsize` through the pointer, which points to one.
    let rc = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut ws) };
    (rc == 0 && ws.ws_col > 0).then_some(usize::from(ws.ws_col))
}

/// Writes `text` to stdout now; a closed pipe (`| head`) ends the command quietly.
fn emit(text: &str) {
    if text.is_empty() {
        return;
    }
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout
        .write_all(text.as_bytes())
        .and_then(|_| stdout.flush())
    {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_redraws_in_place() {
        let lines = vec![
            "overall progress: 0 out of 1 tasks".to_string(),
            "1/1: new".to_string(),
        ];
        assert_eq!(
            redraw(&lines, 0, None),
            "\x1b[2Koverall progress: 0 out of 1 tasks\n\x1b[2K1/1: new\n"
        );
        // Up over what was drawn; blank what is no longer there; cut to the width.
        assert_eq!(
            redraw(&lines[..1], 3, Some(9)),
            "\x1b[3A\x1b[2Koverall \n\x1b[2K\n\x1b[2K\n"
        );
    }

    #[test]
    fn plain_output_prints_each_change_once() {
        let mut last = HashMap::new();
        let a = vec![
            "overall progress: 0 out of 1 tasks".to_string(),
            "1/1: new".to_string(),
        ];
        assert_eq!(
            changed(&a, &mut last),
            "overall progress: 0 out of 1 tasks\n1/1: new\n"
        );
        assert_eq!(changed(&a, &mut last), "");
        let b = vec![
            "overall progress: 0 out of 1 tasks".to_string(),
            "1/1: pending".to_string(),
        ];
        assert_eq!(changed(&b, &mut last), "1/1: pending\n");
    }
}
