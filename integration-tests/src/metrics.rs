//! Measuring a daemon in tests and benchmarks: its `/metrics` (one HTTP/1.0 request, the
//! Prometheus text checked line by line as it is parsed) and its CPU time from `/proc`.

use std::collections::HashMap;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::Duration;

/// A host's metrics address as the tests give it: the host's own loopback address, the
/// port after its cluster port.
pub fn metrics_addr(cluster_addr: &str) -> String {
    let (ip, port) = cluster_addr.rsplit_once(':').unwrap();
    format!("{ip}:{}", port.parse::<u16>().unwrap() + 1)
}

/// The status line and body of `METHOD PATH` on `addr`.
pub fn http(addr: &str, method: &str, path: &str) -> (String, String) {
    let mut conn = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    conn.set_read_timeout(Some(Duration::from_secs(40)))
        .unwrap();
    // HTTP/1.0: the body comes whole, without chunks.
    write!(conn, "{method} {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut response = String::new();
    conn.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    (
        head.lines().next().unwrap_or_default().to_owned(),
        body.to_owned(),
    )
}

/// Every sample of a scrape, `name{labels}` to value, after checking each line is
/// Prometheus text: a comment, or a sample with a number.
pub fn scrape(addr: &str) -> (String, HashMap<String, f64>) {
    let (status, body) = http(addr, "GET", "/metrics");
    assert!(status.contains(" 200 "), "{status}");
    let mut samples = HashMap::new();
    let mut saw_eof = false;
    for line in body.lines().filter(|l| !l.is_empty()) {
        if line == "# EOF" {
            saw_eof = true;
            continue;
        }
        if line.starts_with("# HELP ") || line.starts_with("# TYPE ") || line.starts_with("# UNIT ")
        {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("no value: {line}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("not a number: {line}"));
        let name_end = series.find('{').unwrap_or(series.len());
        assert!(
            series[..name_end]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name: {line}"
        );
        samples.insert(series.to_owned(), value);
    }
    assert!(saw_eof, "the scrape ends with # EOF: {body}");
    (body, samples)
}

pub fn sample(samples: &HashMap<String, f64>, series: &str) -> f64 {
    samples.get(series).copied().unwrap_or(0.0)
}

/// The CPU time (user and system) process `pid` has used.
pub fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/PID/stat");
    // The fields after the command name (which may hold spaces) in parentheses.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .expect("stat")
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    // SAFETY: sysconf reads a constant of the system.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_micros(ticks * 1_000_000 / per_second)
}
