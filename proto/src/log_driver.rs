//! Logging drivers as Docker names them (`--log-driver`, `--log-opt`): which exist, which
//! options each takes, and what they mean. The control API refuses a driver or option
//! this does not know, where it is written; the node builds its task's log from what it
//! says.

use std::collections::BTreeMap;

/// A task's output as the node keeps or sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Driver {
    /// skiff's own format in the task's directory (Docker's `local`): files of at most
    /// `max_size` bytes, at most `max_file` of them.
    Local(Rotation),
    /// Docker's `json-file`: one JSON object per line, `{"log","stream","time"}`.
    JsonFile(Rotation),
    /// Each line to a syslog server.
    Syslog(Syslog),
    /// Each line to the node's systemd journal, with `tag` as its identifier.
    Journald {
        /// `SYSLOG_IDENTIFIER` and `CONTAINER_TAG`; the task ID's first 12 characters when
        /// empty.
        tag: String,
    },
    /// Nothing is kept.
    None,
}

/// How a file driver bounds its files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    /// Largest size of one file before the next is started; 0: never rotate.
    pub max_size: u64,
    /// Most files kept (the current one included), at least 1.
    pub max_file: u32,
    /// Whether rotated files are gzipped.
    pub compress: bool,
}

/// Where and how syslog lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Syslog {
    /// `udp://HOST:PORT`, `tcp://HOST:PORT`, `unix:///PATH` or `unixgram:///PATH`.
    pub address: String,
    /// The facility's number (`daemon` is 3).
    pub facility: u8,
    /// The tag (RFC 3164) or APP-NAME (RFC 5424); the task ID's first 12 characters when
    /// empty.
    pub tag: String,
    /// RFC 5424 rather than RFC 3164.
    pub rfc5424: bool,
}

/// Why a driver or its options cannot be used, in one sentence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DriverError(String);

/// The drivers there are.
pub const DRIVERS: [&str; 5] = ["json-file", "local", "syslog", "journald", "none"];

/// Docker's facility names, in their numeric order.
const FACILITIES: [&str; 24] = [
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv",
    "ftp", "", "", "", "", "local0", "local1", "local2", "local3", "local4", "local5", "local6",
    "local7",
];

impl Driver {
    /// The driver `name` with `options`, or why not. `name` empty is skiff's default
    /// (`local`, 10 MiB files, two of them).
    pub fn parse(name: &str, options: &BTreeMap<String, String>) -> Result<Driver, DriverError> {
        let name = if name.is_empty() { "local" } else { name };
        let known: &[&str] = match name {
            "json-file" | "local" => &["max-size", "max-file", "compress"],
            "syslog" => &["syslog-address", "syslog-facility", "tag", "syslog-format"],
            "journald" => &["tag"],
            "none" => &[],
            other => {
                return Err(DriverError(format!(
                    "unknown logging driver {other:?}: use {}",
                    DRIVERS.join(", ")
                )))
            }
        };
        if let Some(key) = options.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(DriverError(if known.is_empty() {
                format!("the {name} logging driver takes no options, not {key:?}")
            } else {
                format!(
                    "unknown option {key:?} for the {name} logging driver: it takes {}",
                    known.join(", ")
                )
            }));
        }
        let get = |key: &str| options.get(key).map(String::as_str);
        Ok(match name {
            "json-file" => Driver::JsonFile(rotation(name, &get, 0, 1, false)?),
            "local" => Driver::Local(rotation(name, &get, 10 * 1024 * 1024, 2, false)?),
            "syslog" => Driver::Syslog(syslog(&get)?),
            "journald" => Driver::Journald {
                tag: get("tag").unwrap_or_default().to_owned(),
            },
            _ => Driver::None,
        })
    }

    /// Whether `service logs` can read what the driver keeps (as Docker, only the file
    /// drivers and journald).
    pub fn readable(&self) -> bool {
        matches!(
            self,
            Driver::Local(_) | Driver::JsonFile(_) | Driver::Journald { .. }
        )
    }
}

fn rotation<'a>(
    driver: &str,
    get: &impl Fn(&str) -> Option<&'a str>,
    default_size: u64,
    default_files: u32,
    default_compress: bool,
) -> Result<Rotation, DriverError> {
    let max_size = match get("max-size") {
        None => default_size,
        Some("-1") => 0,
        Some(v) => parse_size(v).ok_or_else(|| {
            DriverError(format!(
                "invalid max-size {v:?} for the {driver} logging driver: use a size such as 10m, 512k or 1g"
            ))
        })?,
    };
    let max_file = match get("max-file") {
        None => default_files,
        Some(v) => v.trim().parse::<u32>().ok().filter(|n| *n >= 1).ok_or_else(|| {
            DriverError(format!(
                "invalid max-file {v:?} for the {driver} logging driver: use a whole number, 1 or more"
            ))
        })?,
    };
    if max_file > 1 && max_size == 0 {
        return Err(DriverError(format!(
            "max-file needs max-size for the {driver} logging driver: files rotate only past a size"
        )));
    }
    let compress = match get("compress") {
        None => default_compress,
        Some(v) => match v.trim() {
            "true" | "1" => true,
            "false" | "0" => false,
            _ => {
                return Err(DriverError(format!(
                    "invalid compress {v:?} for the {driver} logging driver: use true or false"
                )))
            }
        },
    };
    Ok(Rotation {
        max_size,
        max_file,
        compress,
    })
}

fn syslog<'a>(get: &impl Fn(&str) -> Option<&'a str>) -> Result<Syslog, DriverError> {
    let address = get("syslog-address")
        .unwrap_or("unixgram:///dev/log")
        .trim();
    let ok = ["udp://", "tcp://", "unix://", "unixgram://"]
        .iter()
        .any(|scheme| {
            address
                .strip_prefix(scheme)
                .is_some_and(|rest| !rest.is_empty())
        });
    if !ok {
        return Err(DriverError(format!(
            "invalid syslog-address {address:?}: use udp://HOST:PORT, tcp://HOST:PORT or unix:///PATH"
        )));
    }
    let facility = match get("syslog-facility") {
        None => 3,
        Some(f) => FACILITIES
            .iter()
            .position(|name| !name.is_empty() && *name == f.trim())
            .ok_or_else(|| {
                DriverError(format!(
                    "unknown syslog-facility {f:?}: use daemon, user, local0 ... local7 or another syslog facility"
                ))
            })? as u8,
    };
    let rfc5424 = match get("syslog-format").unwrap_or("rfc3164").trim() {
        "" | "rfc3164" => false,
        "rfc5424" | "rfc5424micro" => true,
        other => {
            return Err(DriverError(format!(
                "unknown syslog-format {other:?}: use rfc3164 or rfc5424"
            )))
        }
    };
    Ok(Syslog {
        address: address.to_owned(),
        facility,
        tag: get("tag").unwrap_or_default().to_owned(),
        rfc5424,
    })
}

/// A size as Docker's log options write it: bytes, or a number with k, m or g (powers of
/// 1024, either case, with or without a trailing b).
pub fn parse_size(value: &str) -> Option<u64> {
    let v = value.trim().to_ascii_lowercase();
    let v = v.strip_suffix('b').unwrap_or(&v);
    let (number, unit) = match v
        .char_indices()
        .find(|(_, c)| !c.is_ascii_digit() && *c != '.')
    {
        Some((i, _)) => (&v[..i], &v[i..]),
        None => (v, ""),
    };
    let scale: u64 = match unit {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        _ => return None,
    };
    let n: f64 = number.parse().ok().filter(|n: &f64| *n > 0.0)?;
    Some((n * scale as f64) as u64)
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests {
    use super::*;

    fn opts(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    }

    #[test]
    fn drivers_and_their_options_follow_docker() {
        assert_eq!(
            Driver::parse(
                "json-file",
                &opts(&[("max-size", "10m"), ("max-file", "3")])
            )
            .unwrap(),
            Driver::JsonFile(Rotation {
                max_size: 10 << 20,
                max_file: 3,
                compress: false
            })
        );
        assert_eq!(
            Driver::parse("", &opts(&[])).unwrap(),
            Driver::Local(Rotation {
                max_size: 10 << 20,
                max_file: 2,
                compress: false
            })
        );
        let syslog = Driver::parse(
            "syslog",
            &opts(&[
                ("syslog-address", "udp://10.0.0.1:514"),
                ("syslog-facility", "local3"),
                ("tag", "web"),
                ("syslog-format", "rfc5424"),
            ]),
        )
        .unwrap();
        assert_eq!(
            syslog,
            Driver::Syslog(Syslog {
                address: "udp://10.0.0.1:514".into(),
                facility: 19,
                tag: "web".into(),
                rfc5424: true
            })
        );
        assert_eq!(
            Driver::parse("local", &opts(&[("max-size", "-1"), ("max-file", "1")])).unwrap(),
            Driver::Local(Rotation {
                max_size: 0,
                max_file: 1,
                compress: false
            }),
            "-1 is Docker's unlimited size"
        );
        assert_eq!(Driver::parse("none", &opts(&[])).unwrap(), Driver::None);
        assert!(!Driver::None.readable());
        assert_eq!(parse_size("512k"), Some(512 * 1024));
        assert_eq!(parse_size("1.5m"), Some(1024 * 1024 * 3 / 2));
        assert_eq!(parse_size("2G"), Some(2 << 30));
        assert_eq!(parse_size("100"), Some(100));
    }

    #[test]
    fn unknown_drivers_and_options_are_refused_by_name() {
        for (name, options, want) in [
            ("fluentd", opts(&[]), "unknown logging driver \"fluentd\""),
            (
                "json-file",
                opts(&[("max-sise", "1m")]),
                "unknown option \"max-sise\"",
            ),
            ("none", opts(&[("tag", "x")]), "takes no options"),
            (
                "json-file",
                opts(&[("max-size", "ten")]),
                "invalid max-size",
            ),
            (
                "json-file",
                opts(&[("max-file", "3")]),
                "max-file needs max-size",
            ),
            (
                "local",
                opts(&[("max-size", "1m"), ("max-file", "0")]),
                "invalid max-file",
            ),
            (
                "syslog",
                opts(&[("syslog-address", "10.0.0.1")]),
                "invalid syslog-address",
            ),
            (
                "syslog",
                opts(&[("syslog-facility", "nope")]),
                "unknown syslog-facility",
            ),
            (
                "syslog",
                opts(&[("syslog-format", "json")]),
                "unknown syslog-format",
            ),
        ] {
            let e = Driver::parse(name, &options).unwrap_err().to_string();
            assert!(e.contains(want), "{name}: {e}");
        }
    }
}
