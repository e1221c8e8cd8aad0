//! Task log files, shared by the backends: the formats, the writer (in the process
//! backend's shim, or the containerd backend's logger) and the reader (in skiffd).
//!
//! Both outputs of a task go to one file, so their interleaving survives, in one of two
//! formats ([`Format`]), one record per line. skiff's own (the `local` driver):
//! `<timestamp_ms> <o|e><F|P> <bytes>\n`, where `o`/`e` is stdout/stderr and `F` means the
//! task's line ended with a newline (stripped here, restored on reading) while `P` marks a
//! piece of a line (a line longer than [`MAX_LINE`], or output that ended without a
//! newline); the bytes are the task's own, so any encoding passes through. Docker's
//! `json-file`: `{"log":"...","stream":"stdout","time":"RFC 3339"}`.
//!
//! Rotation (`max-size`, `max-file`) renames the file to `NAME.1`, shifting older ones up
//! and dropping the oldest, optionally gzipping them, and starts a new one, so a task keeps
//! at most `max-file` files. Readers hold the file open and notice the rename by its inode,
//! so a follower loses nothing across a rotation. Where the output goes for the other
//! drivers (syslog, journald, nowhere) is `log_sink`'s.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use futures::StreamExt;
use proto::now_ms;

use proto::log_driver::Rotation;

use crate::{LogLine, LogSource, LogStream, RuntimeError};

/// The current log file in a task's directory, in skiff's own format.
pub(crate) const LOG: &str = "task.log";

/// How a task's log file writes its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// skiff's own (see the module docs), in `task.log`.
    Native,
    /// Docker's `json-file`, in `task-json.log`.
    Json,
}

impl Format {
    /// The current file's name; rotated ones add `.1`, `.2`, ... (and `.gz`).
    pub(crate) fn file(self) -> &'static str {
        match self {
            Format::Native => LOG,
            Format::Json => "task-json.log",
        }
    }

    fn encode(self, buf: &mut Vec<u8>, timestamp_ms: i64, stream: LogSource, line: &[u8]) {
        match self {
            Format::Native => encode(buf, timestamp_ms, stream, line),
            Format::Json => encode_json(buf, timestamp_ms, stream, line),
        }
    }

    fn decode(self, record: &[u8]) -> Option<LogLine> {
        match self {
            Format::Native => decode(record),
            Format::Json => decode_json(record),
        }
    }
}

/// The name of the `n`th rotated file (1 is the newest), gzipped or not.
fn rotated(format: Format, n: u32, gz: bool) -> String {
    let name = format!("{}.{n}", format.file());
    if gz {
        name + ".gz"
    } else {
        name
    }
}

/// Appends a `json-file` record for `line` to `buf`, as Docker writes it.
fn encode_json(buf: &mut Vec<u8>, timestamp_ms: i64, stream: LogSource, line: &[u8]) {
    let time = std::time::UNIX_EPOCH + Duration::from_millis(timestamp_ms.max(0) as u64);
    let record = serde_json::json!({
        "log": String::from_utf8_lossy(line),
        "stream": match stream {
            LogSource::Stdout => "stdout",
            LogSource::Stderr => "stderr",
        },
        "time": humantime::format_rfc3339_nanos(time).to_string(),
    });
    // serde_json writes no newline inside a record: strings escape theirs.
    let _ = serde_json::to_writer(&mut *buf, &record);
    buf.push(b'\n');
}

/// Parses one `json-file` record; `None` for anything malformed.
fn decode_json(record: &[u8]) -> Option<LogLine> {
    #[derive(serde::Deserialize)]
    struct Record {
        log: String,
        stream: String,
        time: String,
    }
    let r: Record = serde_json::from_slice(record).ok()?;
    let time = humantime::parse_rfc3339_weak(&r.time).ok()?;
    Some(LogLine {
        timestamp_ms: time.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis() as i64,
        stream: match r.stream.as_str() {
            "stdout" => LogSource::Stdout,
            "stderr" => LogSource::Stderr,
            _ => return None,
        },
        data: r.log.into_bytes(),
    })
}

/// A task's output has ended for good: no more lines will be written.
pub(crate) type Finished = Box<dyn Fn() -> bool + Send + Sync>;

/// Longest line kept whole; longer ones are split (Docker splits at 16 KiB too).
pub(crate) const MAX_LINE: usize = 16 * 1024;

/// How often a follower looks for new output.
const FOLLOW_POLL: Duration = Duration::from_millis(100);

/// Most bytes a follower reads in one step, so one busy task cannot hog a blocking thread.
const FOLLOW_CHUNK: u64 = 1024 * 1024;

/// Appends a record for `line` to `buf`.
pub(crate) fn encode(buf: &mut Vec<u8>, timestamp_ms: i64, stream: LogSource, line: &[u8]) {
    let (data, complete) = match line.strip_suffix(b"\n") {
        Some(data) => (data, true),
        None => (line, false),
    };
    let stream = match stream {
        LogSource::Stdout => 'o',
        LogSource::Stderr => 'e',
    };
    let flag = if complete { 'F' } else { 'P' };
    buf.extend_from_slice(format!("{timestamp_ms} {stream}{flag} ").as_bytes());
    buf.extend_from_slice(data);
    buf.push(b'\n');
}

/// Parses one record (without its trailing newline); `None` for anything malformed.
pub(crate) fn decode(record: &[u8]) -> Option<LogLine> {
    let space = record.iter().position(|&b| b == b' ')?;
    let timestamp_ms = std::str::from_utf8(&record[..space]).ok()?.parse().ok()?;
    let rest = &record[space + 1..];
    let tag = rest.get(..3)?;
    if tag[2] != b' ' {
        return None;
    }
    let stream = match tag[0] {
        b'o' => LogSource::Stdout,
        b'e' => LogSource::Stderr,
        _ => return None,
    };
    let complete = match tag[1] {
        b'F' => true,
        b'P' => false,
        _ => return None,
    };
    let mut data = rest[3..].to_vec();
    if complete {
        data.push(b'\n');
    }
    Some(LogLine {
        timestamp_ms,
        stream,
        data,
    })
}

/// Moves every complete record out of `carry` into `out`, leaving a trailing partial one.
fn drain_records(format: Format, carry: &mut Vec<u8>, out: &mut VecDeque<LogLine>) {
    let mut start = 0;
    while let Some(end) = carry[start..].iter().position(|&b| b == b'\n') {
        if let Some(line) = format.decode(&carry[start..start + end]) {
            out.push_back(line);
        }
        start += end + 1;
    }
    carry.drain(..start);
}

/// Splits a byte stream into lines of at most [`MAX_LINE`] bytes.
#[derive(Default)]
pub(crate) struct LineSplitter {
    pending: Vec<u8>,
}

impl LineSplitter {
    /// Feeds bytes; calls `emit` with each finished line (with its newline) or piece.
    pub(crate) fn push(&mut self, mut bytes: &[u8], mut emit: impl FnMut(&[u8])) {
        while !bytes.is_empty() {
            let room = MAX_LINE - self.pending.len();
            let take = bytes.len().min(room);
            match bytes[..take].iter().position(|&b| b == b'\n') {
                Some(newline) => {
                    self.pending.extend_from_slice(&bytes[..=newline]);
                    emit(&self.pending);
                    self.pending.clear();
                    bytes = &bytes[newline + 1..];
                }
                None => {
                    self.pending.extend_from_slice(&bytes[..take]);
                    bytes = &bytes[take..];
                    if self.pending.len() == MAX_LINE {
                        emit(&self.pending);
                        self.pending.clear();
                    }
                }
            }
        }
    }

    /// The output ended: emits what is left of the last line.
    pub(crate) fn finish(&mut self, mut emit: impl FnMut(&[u8])) {
        if !self.pending.is_empty() {
            emit(&self.pending);
            self.pending.clear();
        }
    }
}

/// Writes a task's log file with size-based rotation. Lives in the shim or the logger.
pub(crate) struct LogWriter {
    dir: PathBuf,
    format: Format,
    rotation: Rotation,
    file: File,
    size: u64,
    buf: Vec<u8>,
}

impl LogWriter {
    /// Opens (appending to) the task's log in `format`, rotated as `rotation` says.
    pub(crate) fn open(dir: &Path, format: Format, rotation: Rotation) -> io::Result<Self> {
        let file = open_append(&dir.join(format.file()))?;
        let size = file.metadata()?.len();
        Ok(LogWriter {
            dir: dir.to_owned(),
            format,
            rotation,
            file,
            size,
            buf: Vec::new(),
        })
    }

    pub(crate) fn write(
        &mut self,
        timestamp_ms: i64,
        stream: LogSource,
        line: &[u8],
    ) -> io::Result<()> {
        self.buf.clear();
        self.format
            .encode(&mut self.buf, timestamp_ms, stream, line);
        let len = self.buf.len() as u64;
        let max = self.rotation.max_size;
        if max > 0 && self.size > 0 && self.size + len > max {
            self.rotate()?;
        }
        // One write per record under O_APPEND: readers see whole records (or a tail they
        // keep until the rest arrives).
        self.file.write_all(&self.buf)?;
        self.size += len;
        Ok(())
    }

    /// Shifts the rotated files up (dropping the one past `max_file`), turns the current
    /// file into the first of them (gzipped if asked), and starts a new current file.
    fn rotate(&mut self) -> io::Result<()> {
        let (format, keep, gz) = (self.format, self.rotation.max_file, self.rotation.compress);
        let path = |name: String| self.dir.join(name);
        if keep > 1 {
            let _ = std::fs::remove_file(path(rotated(format, keep - 1, gz)));
            for n in (1..keep - 1).rev() {
                let from = path(rotated(format, n, gz));
                if from.exists() {
                    std::fs::rename(&from, path(rotated(format, n + 1, gz)))?;
                }
            }
            let first = path(rotated(format, 1, false));
            std::fs::rename(self.dir.join(format.file()), &first)?;
            if gz {
                gzip(&first, &path(rotated(format, 1, true)))?;
            }
        } else {
            // One file kept: it starts again.
            std::fs::remove_file(self.dir.join(format.file()))?;
        }
        self.file = open_append(&self.dir.join(format.file()))?;
        self.size = 0;
        Ok(())
    }
}

/// Compresses `from` into `to` (written aside, then renamed) and removes `from`.
fn gzip(from: &Path, to: &Path) -> io::Result<()> {
    let aside = to.with_extension("gz.tmp");
    let mut encoder =
        flate2::write::GzEncoder::new(File::create(&aside)?, flate2::Compression::default());
    io::copy(&mut File::open(from)?, &mut encoder)?;
    encoder.finish()?.sync_all()?;
    std::fs::rename(&aside, to)?;
    std::fs::remove_file(from)
}

fn open_append(path: &Path) -> io::Result<File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

/// Where a reader stands in the current log file.
struct Cursor {
    format: Format,
    file: File,
    inode: u64,
    /// The start of a record whose end has not been written yet.
    carry: Vec<u8>,
}

impl Cursor {
    fn open(format: Format, path: &Path) -> io::Result<Option<Cursor>> {
        match File::open(path) {
            Ok(file) => Ok(Some(Cursor {
                format,
                inode: file.metadata()?.ino(),
                file,
                carry: Vec::new(),
            })),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Reads up to `limit` new bytes; true if there were any.
    fn read_more(&mut self, limit: u64, out: &mut VecDeque<LogLine>) -> io::Result<bool> {
        let before = self.carry.len();
        (&mut self.file).take(limit).read_to_end(&mut self.carry)?;
        let grew = self.carry.len() > before;
        drain_records(self.format, &mut self.carry, out);
        Ok(grew)
    }
}

/// The log so far (last `tail` lines), and a cursor at its end for following: the rotated
/// files oldest first (gzipped or not), then the current one. Blocking.
fn snapshot(
    dir: &Path,
    format: Format,
    tail: Option<usize>,
) -> io::Result<(VecDeque<LogLine>, Option<Cursor>)> {
    let mut lines = VecDeque::new();
    // Open the current file first: if it rotates meanwhile, the rotated file is the one we
    // hold, and we must not read it twice.
    let mut cursor = Cursor::open(format, &dir.join(format.file()))?;
    let mut rotated_files: Vec<(u32, PathBuf)> = std::fs::read_dir(dir)?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let rest = name.strip_prefix(format.file())?.strip_prefix('.')?;
            let n: u32 = rest.strip_suffix(".gz").unwrap_or(rest).parse().ok()?;
            Some((n, e.path()))
        })
        .collect();
    rotated_files.sort_by_key(|f| std::cmp::Reverse(f.0));
    for (_, path) in rotated_files {
        if path.extension().is_some_and(|e| e == "gz") {
            let mut text = Vec::new();
            flate2::read::GzDecoder::new(File::open(&path)?).read_to_end(&mut text)?;
            drain_records(format, &mut text, &mut lines);
        } else if let Some(mut old) = Cursor::open(format, &path)? {
            if cursor.as_ref().is_none_or(|c| c.inode != old.inode) {
                old.read_more(u64::MAX, &mut lines)?;
            }
        }
    }
    if let Some(cursor) = cursor.as_mut() {
        cursor.read_more(u64::MAX, &mut lines)?;
    }
    if let Some(n) = tail {
        let skip = lines.len().saturating_sub(n);
        lines.drain(..skip);
    }
    Ok((lines, cursor))
}

/// A follower between two looks at the log.
struct Follower {
    dir: PathBuf,
    format: Format,
    output_finished: Finished,
    cursor: Option<Cursor>,
    /// The task had ended at the previous look, so once the file is drained we are done.
    finished: bool,
}

impl Follower {
    /// One look: new lines, and whether there will never be more. Blocking.
    fn step(&mut self) -> io::Result<(VecDeque<LogLine>, bool)> {
        let mut out = VecDeque::new();
        let current_path = self.dir.join(self.format.file());
        if self.cursor.is_none() {
            self.cursor = Cursor::open(self.format, &current_path)?;
        }
        if let Some(cursor) = self.cursor.as_mut() {
            if cursor.read_more(FOLLOW_CHUNK, &mut out)? {
                return Ok((out, false));
            }
            let current = std::fs::metadata(&current_path).map(|m| m.ino()).ok();
            if current != Some(cursor.inode) {
                // Rotated: finish the old file (the writer may have added to it after our
                // last read), then move to the new one.
                cursor.read_more(u64::MAX, &mut out)?;
                self.cursor = None;
                return Ok((out, false));
            }
        }
        if self.finished {
            return Ok((out, true));
        }
        // The shim writes all output before it records the exit: one more look after we
        // see the exit, and the log is complete.
        self.finished = (self.output_finished)();
        Ok((out, false))
    }
}

/// A task's log as a stream: the last `tail` lines, then with `follow` new ones until the
/// task ends. Files are read on tokio's blocking pool; the stream owns nothing else, so
/// dropping it stops it.
pub(crate) async fn open(
    dir: PathBuf,
    tail: Option<usize>,
    follow: bool,
    output_finished: Finished,
) -> Result<LogStream, RuntimeError> {
    let format = match crate::log_sink::reading(&dir)? {
        crate::log_sink::Reading::File(format) => format,
        crate::log_sink::Reading::Journal(task_id) => {
            // journald keeps following to itself: what is there now.
            let lines =
                tokio::task::spawn_blocking(move || crate::log_sink::journal_lines(&task_id, tail))
                    .await
                    .map_err(|e| RuntimeError::io("reading the journal", io::Error::other(e)))?
                    .map_err(|e| {
                        RuntimeError::io("reading the task's lines from the journal", e)
                    })?;
            return Ok(futures::stream::iter(lines).boxed());
        }
    };
    let path = dir.clone();
    let (lines, cursor) = tokio::task::spawn_blocking(move || snapshot(&path, format, tail))
        .await
        .map_err(|e| RuntimeError::io("reading the task's log", io::Error::other(e)))?
        .map_err(|e| {
            RuntimeError::io(
                format!("cannot read the log of task in {}", dir.display()),
                e,
            )
        })?;
    if !follow {
        return Ok(futures::stream::iter(lines).boxed());
    }
    let follower = Follower {
        dir,
        format,
        output_finished,
        cursor,
        finished: false,
    };
    let stream = futures::stream::unfold(
        (lines, Some(follower)),
        |(mut lines, mut follower)| async move {
            loop {
                if let Some(line) = lines.pop_front() {
                    return Some((line, (lines, follower)));
                }
                let mut current = follower.take()?;
                let step = tokio::task::spawn_blocking(move || {
                    let step = current.step();
                    (current, step)
                })
                .await;
                match step {
                    Ok((current, Ok((new_lines, done)))) => {
                        if done {
                            return None;
                        }
                        if new_lines.is_empty() {
                            tokio::time::sleep(FOLLOW_POLL).await;
                        }
                        lines = new_lines;
                        follower = Some(current);
                    }
                    Ok((current, Err(e))) => {
                        tracing::warn!(dir = %current.dir.display(), error = %e, "stopped following a task's log");
                        return None;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "stopped following a task's log");
                        return None;
                    }
                }
            }
        },
    );
    Ok(stream.boxed())
}

/// Starts threads that log a task's outputs (blocking readers: pipes or files) where the
/// task's directory `dir` says (`crate::log_sink`). The receiver gets a message once both
/// outputs are closed and everything is written.
pub(crate) fn capture(
    outputs: Vec<(Box<dyn Read + Send>, LogSource)>,
    dir: &Path,
) -> mpsc::Receiver<()> {
    let (done_tx, done_rx) = mpsc::channel();
    // Bounded: a task that writes faster than the disk takes it waits on its pipe.
    let (tx, rx) = mpsc::sync_channel::<(i64, LogSource, Vec<u8>)>(1024);
    for (pipe, source) in outputs {
        spawn_reader(pipe, source, tx.clone());
    }
    drop(tx);
    let mut sink = match crate::log_sink::open(dir) {
        Ok(sink) => Some(sink),
        Err(e) => {
            eprintln!("log: cannot open the task's log, its output is lost: {e}");
            None
        }
    };
    std::thread::spawn(move || {
        for (timestamp_ms, stream, line) in rx {
            if let Some(s) = sink.as_mut() {
                if let Err(e) = s.write(timestamp_ms, stream, &line) {
                    eprintln!(
                        "log: cannot write the task's log, its output is lost from here: {e}"
                    );
                    sink = None;
                }
            }
        }
        let _ = done_tx.send(());
    });
    done_rx
}

fn spawn_reader(
    mut pipe: impl Read + Send + 'static,
    stream: LogSource,
    tx: mpsc::SyncSender<(i64, LogSource, Vec<u8>)>,
) {
    std::thread::spawn(move || {
        let mut splitter = LineSplitter::default();
        let mut buf = vec![0u8; 8192];
        let send = |line: &[u8]| {
            let _ = tx.send((now_ms(), stream, line.to_vec()));
        };
        loop {
            match pipe.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => splitter.push(&buf[..n], &send),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    eprintln!("log: reading the task's {stream:?}: {e}");
                    break;
                }
            }
        }
        splitter.finish(&send);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let cases: &[(LogSource, &[u8])] = &[
            (LogSource::Stdout, b"hello\n"),
            (LogSource::Stderr, b"no newline"),
            (LogSource::Stdout, b"\n"),
            (LogSource::Stderr, b" spaces and \xff bytes \r\n"),
            (LogSource::Stdout, b""),
        ];
        let mut buf = Vec::new();
        for (i, (stream, line)) in cases.iter().enumerate() {
            encode(&mut buf, 1_700_000_000_000 + i as i64, *stream, line);
        }
        let mut out = VecDeque::new();
        drain_records(Format::Native, &mut buf, &mut out);
        assert!(buf.is_empty());
        let got: Vec<(LogSource, Vec<u8>)> =
            out.iter().map(|l| (l.stream, l.data.clone())).collect();
        let want: Vec<(LogSource, Vec<u8>)> = cases.iter().map(|(s, l)| (*s, l.to_vec())).collect();
        assert_eq!(got, want);
        assert_eq!(out[1].timestamp_ms, 1_700_000_000_001);
    }

    #[test]
    fn malformed_records_are_skipped_and_partial_ones_kept() {
        let mut buf = b"garbage\n12 xF bad stream\n5 oFhello\n".to_vec();
        encode(&mut buf, 7, LogSource::Stdout, b"ok\n");
        buf.extend_from_slice(b"8 oF unfinis");
        let mut out = VecDeque::new();
        drain_records(Format::Native, &mut buf, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].data, b"ok\n");
        assert_eq!(buf, b"8 oF unfinis");
    }

    #[test]
    fn long_lines_are_split() {
        let mut splitter = LineSplitter::default();
        let mut lines: Vec<Vec<u8>> = Vec::new();
        let long = vec![b'x'; MAX_LINE * 2 + 10];
        splitter.push(b"a\nb", |l| lines.push(l.to_vec()));
        splitter.push(b"c\n", |l| lines.push(l.to_vec()));
        splitter.push(&long, |l| lines.push(l.to_vec()));
        splitter.push(b"\ntail", |l| lines.push(l.to_vec()));
        splitter.finish(|l| lines.push(l.to_vec()));
        let lens: Vec<usize> = lines.iter().map(Vec::len).collect();
        assert_eq!(lens, [2, 3, MAX_LINE, MAX_LINE, 11, 4]);
        assert_eq!(lines[1], b"bc\n");
    }

    fn rotation(max_size: u64, max_file: u32, compress: bool) -> Rotation {
        Rotation {
            max_size,
            max_file,
            compress,
        }
    }

    #[test]
    fn rotation_keeps_max_file_files_of_max_size_and_tail_spans_them() {
        for (format, compress) in [
            (Format::Native, false),
            (Format::Json, false),
            (Format::Json, true),
        ] {
            let tmp = tempfile::tempdir().unwrap();
            let max = 1000;
            let mut writer =
                LogWriter::open(tmp.path(), format, rotation(max, 3, compress)).unwrap();
            for i in 0..500 {
                writer
                    .write(i, LogSource::Stdout, format!("line {i}\n").as_bytes())
                    .unwrap();
            }
            let mut names: Vec<String> = std::fs::read_dir(tmp.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            names.sort();
            let gz = if compress { ".gz" } else { "" };
            let f = format.file();
            assert_eq!(
                names,
                [f.to_owned(), format!("{f}.1{gz}"), format!("{f}.2{gz}")]
            );
            for name in &names {
                let size = std::fs::metadata(tmp.path().join(name)).unwrap().len();
                assert!(size <= max, "{name}: {size}");
            }

            let (all, _) = snapshot(tmp.path(), format, None).unwrap();
            assert_eq!(all.back().unwrap().data, b"line 499\n");
            // Everything in the three files, in order, ending at the newest line.
            assert!(all.len() > 20, "{}", all.len());
            assert!(all
                .iter()
                .zip(all.iter().skip(1))
                .all(|(a, b)| a.timestamp_ms + 1 == b.timestamp_ms));

            let (tail, _) = snapshot(tmp.path(), format, Some(3)).unwrap();
            let text: Vec<&[u8]> = tail.iter().map(|l| l.data.as_slice()).collect();
            assert_eq!(text, [&b"line 497\n"[..], b"line 498\n", b"line 499\n"]);
        }
    }

    #[test]
    fn json_file_records_are_docker_s() {
        let mut buf = Vec::new();
        encode_json(
            &mut buf,
            1_700_000_000_123,
            LogSource::Stderr,
            b"say \"hi\"\n",
        );
        assert_eq!(
            String::from_utf8(buf.clone()).unwrap(),
            "{\"log\":\"say \\\"hi\\\"\\n\",\"stream\":\"stderr\",\"time\":\"2023-11-14T22:13:20.123000000Z\"}\n"
        );
        let line = decode_json(buf.strip_suffix(b"\n").unwrap()).unwrap();
        assert_eq!(
            (line.timestamp_ms, line.stream),
            (1_700_000_000_123, LogSource::Stderr)
        );
        assert_eq!(line.data, b"say \"hi\"\n");
    }

    #[test]
    fn a_follower_survives_rotation() {
        let tmp = tempfile::tempdir().unwrap();
        let mut writer =
            LogWriter::open(tmp.path(), Format::Native, rotation(100, 2, false)).unwrap();
        let (_, cursor) = snapshot(tmp.path(), Format::Native, Some(0)).unwrap();
        let mut follower = Follower {
            dir: tmp.path().to_path_buf(),
            format: Format::Native,
            output_finished: Box::new(|| false),
            cursor,
            finished: false,
        };
        let mut seen = Vec::new();
        for i in 0..50 {
            writer
                .write(i, LogSource::Stderr, format!("{i}\n").as_bytes())
                .unwrap();
            if i % 7 == 0 {
                // Read now and then, so several rotations happen between reads.
                for _ in 0..3 {
                    seen.extend(
                        follower
                            .step()
                            .unwrap()
                            .0
                            .into_iter()
                            .map(|l| l.timestamp_ms),
                    );
                }
            }
        }
        for _ in 0..3 {
            seen.extend(
                follower
                    .step()
                    .unwrap()
                    .0
                    .into_iter()
                    .map(|l| l.timestamp_ms),
            );
        }
        // Lines that were rotated away twice between reads are gone, but what we saw is in
        // order, without repeats, and up to the last line.
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
        assert_eq!(seen.last(), Some(&49));
    }
}
