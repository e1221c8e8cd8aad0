//! Where a task's output goes: the logging driver the task asks for (`--log-driver`,
//! `--log-opt`), or the node's default (`skiffd --log-driver`), as Docker's drivers do.
//!
//! The runtime decides at `prepare` ([`configure`]) and writes the choice into the task's
//! directory (`log-driver.json`), where the writer (the process backend's shim, or the
//! containerd backend's logger, both separate processes) and the reader (`service logs`,
//! in skiffd) find it: `local` and `json-file` write files ([`crate::log_file`]), `syslog`
//! sends each line to a syslog server, `journald` to the node's journal, `none` drops it.
//! Only the files and journald can be read back, as with Docker.

use std::collections::BTreeMap;
use std::io::{self, Write as _};
use std::path::Path;

use proto::log_driver::{Driver, Syslog};
use serde::{Deserialize, Serialize};

use crate::log_file::{Format, LogWriter};
use crate::{LogSource, RuntimeError};

/// The file in a task's directory that says where its output goes.
const CONFIG: &str = "log-driver.json";
/// What older runtimes wrote instead: the `local` driver's size limit.
const LEGACY_MAX_BYTES: &str = "log-max-bytes";
/// The journal's socket for its native protocol.
const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";

/// The node's default logging driver, for tasks that name none (`skiffd --log-driver`,
/// `--log-opt`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogDefaults {
    /// The driver's name; empty is `local`.
    pub driver: String,
    /// Its options.
    pub options: BTreeMap<String, String>,
}

impl LogDefaults {
    /// The `local` driver with files of at most `max_bytes`, two kept; 0: one file, never
    /// rotated.
    pub fn local(max_bytes: u64) -> Self {
        let options = if max_bytes == 0 {
            [("max-size", "-1".to_owned()), ("max-file", "1".to_owned())]
        } else {
            [
                ("max-size", max_bytes.to_string()),
                ("max-file", "2".to_owned()),
            ]
        };
        Self {
            driver: "local".into(),
            options: options.map(|(k, v)| (k.to_owned(), v)).into(),
        }
    }

    /// Refuses a default no task could use (at skiffd's start, not at the first task).
    pub fn check(&self) -> Result<(), String> {
        Driver::parse(&self.driver, &self.options)
            .map(drop)
            .map_err(|e| format!("{e} (skiffd --log-driver/--log-opt)"))
    }
}

/// What a task's directory says about its log.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct TaskLog {
    driver: String,
    options: BTreeMap<String, String>,
    task_id: String,
}

impl TaskLog {
    fn driver(&self) -> Result<Driver, RuntimeError> {
        Driver::parse(&self.driver, &self.options)
            .map_err(|e| RuntimeError::InvalidSpec(e.to_string()))
    }

    /// What `dir` says, or, for a task an older runtime prepared, its `local` log.
    fn read(dir: &Path) -> TaskLog {
        if let Some(log) = std::fs::read(dir.join(CONFIG))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
        {
            return log;
        }
        let max = std::fs::read_to_string(dir.join(LEGACY_MAX_BYTES))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(crate::process::DEFAULT_LOG_MAX_BYTES);
        let defaults = LogDefaults::local(max);
        TaskLog {
            driver: defaults.driver,
            options: defaults.options,
            task_id: String::new(),
        }
    }
}

/// Decides where `task`'s output goes (its own driver, else `defaults`), refusing what
/// cannot work on this node (journald without a journal), and writes it into `dir`.
pub(crate) fn configure(
    dir: &Path,
    task: &proto::Task,
    defaults: &LogDefaults,
) -> Result<(), RuntimeError> {
    let log = match task.spec.as_ref().and_then(|s| s.log_driver.as_ref()) {
        Some(d) if !d.name.is_empty() => TaskLog {
            driver: d.name.clone(),
            options: d
                .options
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            task_id: task.id().to_owned(),
        },
        _ => TaskLog {
            driver: defaults.driver.clone(),
            options: defaults.options.clone(),
            task_id: task.id().to_owned(),
        },
    };
    if let Driver::Journald { .. } = log.driver()? {
        if !Path::new(JOURNAL_SOCKET).exists() {
            return Err(RuntimeError::InvalidSpec(
                "the journald logging driver needs systemd-journald, which does not run on this node: use another --log-driver".into(),
            ));
        }
    }
    let bytes = serde_json::to_vec(&log).expect("a log config encodes");
    std::fs::write(dir.join(CONFIG), bytes)
        .map_err(|e| RuntimeError::io("writing the task's log settings", e))
}

/// Where a task's output goes, as its writer sees it.
pub(crate) trait Sink: Send {
    /// Takes one line (with its newline, if it had one).
    fn write(&mut self, timestamp_ms: i64, stream: LogSource, line: &[u8]) -> io::Result<()>;
}

impl Sink for LogWriter {
    fn write(&mut self, timestamp_ms: i64, stream: LogSource, line: &[u8]) -> io::Result<()> {
        LogWriter::write(self, timestamp_ms, stream, line)
    }
}

/// The `none` driver.
struct Discard;

impl Sink for Discard {
    fn write(&mut self, _: i64, _: LogSource, _: &[u8]) -> io::Result<()> {
        Ok(())
    }
}

/// The sink `dir`'s task writes to. Blocking.
pub(crate) fn open(dir: &Path) -> io::Result<Box<dyn Sink>> {
    let log = TaskLog::read(dir);
    let driver = log.driver().map_err(io::Error::other)?;
    let tag = |tag: &str| match tag {
        "" => log.task_id.chars().take(12).collect(),
        t => t.to_owned(),
    };
    Ok(match driver {
        Driver::Local(rotation) => Box::new(LogWriter::open(dir, Format::Native, rotation)?),
        Driver::JsonFile(rotation) => Box::new(LogWriter::open(dir, Format::Json, rotation)?),
        Driver::Syslog(s) => Box::new(SyslogSink::new(Syslog {
            tag: tag(&s.tag),
            ..s
        })),
        Driver::Journald { tag: t } => Box::new(JournaldSink::new(&log.task_id, &tag(&t))?),
        Driver::None => Box::new(Discard),
    })
}

/// How `service logs` reads `dir`'s task, or why it cannot.
pub(crate) enum Reading {
    /// From its files.
    File(Format),
    /// From the journal, by the task's ID.
    Journal(String),
}

/// How `dir`'s log is read back.
pub(crate) fn reading(dir: &Path) -> Result<Reading, RuntimeError> {
    let log = TaskLog::read(dir);
    match log.driver()? {
        Driver::Local(_) => Ok(Reading::File(Format::Native)),
        Driver::JsonFile(_) => Ok(Reading::File(Format::Json)),
        Driver::Journald { .. } => Ok(Reading::Journal(log.task_id)),
        _ => Err(RuntimeError::InvalidSpec(format!(
            "the task logs with the {} driver, which keeps nothing skiff can read back (as with Docker, only json-file, local and journald can be): read its logs where they go",
            log.driver
        ))),
    }
}

/// Sends each line to a syslog server, connecting on the first line and again after a
/// failure; a line that cannot be sent is dropped (a log must not stop its task).
struct SyslogSink {
    config: Syslog,
    host: String,
    conn: Option<Conn>,
}

enum Conn {
    Udp(std::net::UdpSocket),
    Tcp(std::net::TcpStream),
    Unix(std::os::unix::net::UnixStream),
    UnixDatagram(std::os::unix::net::UnixDatagram),
}

impl SyslogSink {
    fn new(config: Syslog) -> Self {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "localhost".into());
        Self {
            config,
            host,
            conn: None,
        }
    }

    fn connect(&self) -> io::Result<Conn> {
        let address = &self.config.address;
        if let Some(target) = address.strip_prefix("udp://") {
            let socket = std::net::UdpSocket::bind(("0.0.0.0", 0))?;
            socket.connect(target)?;
            Ok(Conn::Udp(socket))
        } else if let Some(target) = address.strip_prefix("tcp://") {
            Ok(Conn::Tcp(std::net::TcpStream::connect(target)?))
        } else if let Some(path) = address.strip_prefix("unixgram://") {
            let socket = std::os::unix::net::UnixDatagram::unbound()?;
            socket.connect(path)?;
            Ok(Conn::UnixDatagram(socket))
        } else if let Some(path) = address.strip_prefix("unix://") {
            Ok(Conn::Unix(std::os::unix::net::UnixStream::connect(path)?))
        } else {
            Err(io::Error::other(format!(
                "unusable syslog address {address}"
            )))
        }
    }

    /// One message, RFC 3164 (`<PRI>Mmm dd hh:mm:ss HOST TAG: MSG`) or RFC 5424
    /// (`<PRI>1 TIMESTAMP HOST TAG - - - MSG`). Severity: info for stdout, err for stderr.
    fn message(&self, timestamp_ms: i64, stream: LogSource, line: &[u8]) -> Vec<u8> {
        let severity = match stream {
            LogSource::Stdout => 6,
            LogSource::Stderr => 3,
        };
        let pri = u32::from(self.config.facility) * 8 + severity;
        let time =
            std::time::UNIX_EPOCH + std::time::Duration::from_millis(timestamp_ms.max(0) as u64);
        let text = line.strip_suffix(b"\n").unwrap_or(line);
        let mut out = if self.config.rfc5424 {
            format!(
                "<{pri}>1 {} {} {} - - - ",
                humantime::format_rfc3339_millis(time),
                self.host,
                self.config.tag
            )
            .into_bytes()
        } else {
            // RFC 3164 wants local-looking "Mmm dd hh:mm:ss"; UTC is what the node has.
            let t = humantime::format_rfc3339_seconds(time).to_string();
            let (date, clock) = (&t[..10], &t[11..19]);
            const MONTHS: [&str; 12] = [
                "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
            ];
            let month = date[5..7].parse::<usize>().unwrap_or(1).clamp(1, 12);
            let day: u32 = date[8..10].parse().unwrap_or(1);
            format!(
                "<{pri}>{} {day:>2} {clock} {} {}: ",
                MONTHS[month - 1],
                self.host,
                self.config.tag
            )
            .into_bytes()
        };
        out.extend_from_slice(text);
        out
    }
}

impl Sink for SyslogSink {
    fn write(&mut self, timestamp_ms: i64, stream: LogSource, line: &[u8]) -> io::Result<()> {
        let message = self.message(timestamp_ms, stream, line);
        if self.conn.is_none() {
            self.conn = self.connect().ok();
        }
        let sent = match self.conn.as_mut() {
            Some(Conn::Udp(s)) => s.send(&message).map(drop),
            Some(Conn::UnixDatagram(s)) => s.send(&message).map(drop),
            // Stream transports frame messages by a newline (RFC 6587's non-transparent
            // framing, what rsyslog and Docker use).
            Some(Conn::Tcp(s)) => s.write_all(&[message.as_slice(), b"\n"].concat()),
            Some(Conn::Unix(s)) => s.write_all(&[message.as_slice(), b"\n"].concat()),
            None => Ok(()),
        };
        if sent.is_err() {
            self.conn = None;
        }
        Ok(())
    }
}

/// Sends each line to the node's journal, by its native protocol, with the fields
/// Docker's journald driver sets.
struct JournaldSink {
    socket: std::os::unix::net::UnixDatagram,
    fields: Vec<u8>,
}

impl JournaldSink {
    fn new(task_id: &str, tag: &str) -> io::Result<Self> {
        let socket = std::os::unix::net::UnixDatagram::unbound()?;
        socket.connect(JOURNAL_SOCKET)?;
        let mut fields = Vec::new();
        for (key, value) in [
            ("CONTAINER_ID", task_id.chars().take(12).collect::<String>()),
            ("CONTAINER_ID_FULL", task_id.to_owned()),
            ("CONTAINER_TAG", tag.to_owned()),
            ("SYSLOG_IDENTIFIER", tag.to_owned()),
        ] {
            journal_field(&mut fields, key, value.as_bytes());
        }
        Ok(Self { socket, fields })
    }
}

/// Appends a field in the journal's native format: `KEY=value\n`, or, for a value with a
/// newline, `KEY\n`, its length as 64-bit little endian, the bytes and `\n`.
fn journal_field(out: &mut Vec<u8>, key: &str, value: &[u8]) {
    out.extend_from_slice(key.as_bytes());
    if value.contains(&b'\n') {
        out.push(b'\n');
        out.extend_from_slice(&(value.len() as u64).to_le_bytes());
    } else {
        out.push(b'=');
    }
    out.extend_from_slice(value);
    out.push(b'\n');
}

impl Sink for JournaldSink {
    fn write(&mut self, _: i64, stream: LogSource, line: &[u8]) -> io::Result<()> {
        let mut message = self.fields.clone();
        let priority = match stream {
            LogSource::Stdout => "6",
            LogSource::Stderr => "3",
        };
        journal_field(&mut message, "PRIORITY", priority.as_bytes());
        journal_field(
            &mut message,
            "MESSAGE",
            line.strip_suffix(b"\n").unwrap_or(line),
        );
        // Dropped if the journal is gone: a log must not stop its task.
        let _ = self.socket.send(&message);
        Ok(())
    }
}

/// The journal's lines of task `task_id`, oldest first (`journalctl`), the last `tail`
/// of them. Blocking.
pub(crate) fn journal_lines(task_id: &str, tail: Option<usize>) -> io::Result<Vec<crate::LogLine>> {
    let mut command = std::process::Command::new("journalctl");
    command.args([
        "--no-pager",
        "-o",
        "json",
        &format!("CONTAINER_ID_FULL={task_id}"),
    ]);
    if let Some(n) = tail {
        command.args(["-n", &n.to_string()]);
    }
    let out = command.output()?;
    if !out.status.success() {
        return Err(io::Error::other(
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        ));
    }
    Ok(out
        .stdout
        .split(|b| *b == b'\n')
        .filter_map(|record| {
            let v: serde_json::Value = serde_json::from_slice(record).ok()?;
            let micros: i64 = v["__REALTIME_TIMESTAMP"].as_str()?.parse().ok()?;
            let mut data = v["MESSAGE"].as_str()?.as_bytes().to_vec();
            data.push(b'\n');
            Some(crate::LogLine {
                timestamp_ms: micros / 1000,
                stream: if v["PRIORITY"].as_str() == Some("3") {
                    LogSource::Stderr
                } else {
                    LogSource::Stdout
                },
                data,
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task_with(driver: &str, options: &[(&str, &str)]) -> proto::Task {
        proto::Task {
            meta: Some(proto::Meta {
                id: "0123456789abcdefghijklmno".into(),
                ..Default::default()
            }),
            spec: Some(
                proto::TaskSpec {
                    log_driver: Some(proto::LogDriver {
                        name: driver.into(),
                        options: options
                            .iter()
                            .map(|(k, v)| ((*k).into(), (*v).into()))
                            .collect(),
                    }),
                    ..Default::default()
                }
                .into(),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn the_task_s_driver_wins_over_the_node_s_and_bad_ones_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let defaults = LogDefaults::local(1000);
        configure(
            dir.path(),
            &task_with("json-file", &[("max-size", "1k")]),
            &defaults,
        )
        .unwrap();
        assert!(matches!(
            reading(dir.path()),
            Ok(Reading::File(Format::Json))
        ));
        configure(dir.path(), &task_with("", &[]), &defaults).unwrap();
        assert!(matches!(
            reading(dir.path()),
            Ok(Reading::File(Format::Native))
        ));
        configure(dir.path(), &task_with("none", &[]), &defaults).unwrap();
        let err = reading(dir.path()).err().unwrap().to_string();
        assert!(err.contains("none driver"), "{err}");
        let err = configure(dir.path(), &task_with("fluentd", &[]), &defaults)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown logging driver"), "{err}");
        assert!(dir.path().join(CONFIG).exists());
    }

    #[test]
    fn syslog_messages_carry_priority_tag_and_line() {
        let sink = SyslogSink {
            config: Syslog {
                address: "udp://127.0.0.1:1".into(),
                facility: 3,
                tag: "web".into(),
                rfc5424: false,
            },
            host: "node1".into(),
            conn: None,
        };
        let m = String::from_utf8(sink.message(1_700_000_000_000, LogSource::Stderr, b"oops\n"))
            .unwrap();
        assert_eq!(m, "<27>Nov 14 22:13:20 node1 web: oops");
        let sink = SyslogSink {
            config: Syslog {
                rfc5424: true,
                ..sink.config
            },
            ..sink
        };
        let m =
            String::from_utf8(sink.message(1_700_000_000_000, LogSource::Stdout, b"hi\n")).unwrap();
        assert_eq!(m, "<30>1 2023-11-14T22:13:20.000Z node1 web - - - hi");
    }

    #[test]
    fn journal_fields_with_newlines_are_framed_by_length() {
        let mut out = Vec::new();
        journal_field(&mut out, "MESSAGE", b"one");
        journal_field(&mut out, "MESSAGE", b"a\nb");
        let mut want = b"MESSAGE=one\nMESSAGE\n".to_vec();
        want.extend_from_slice(&3u64.to_le_bytes());
        want.extend_from_slice(b"a\nb\n");
        assert_eq!(out, want);
    }
}
