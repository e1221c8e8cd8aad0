//! A standalone shim for the `process` backend: `skiff-shim [shim] <task-state-dir>`, and
//! the containerd backend's logger: `skiff-shim logger <task-dir>`.
//!
//! skiffd embeds the same code (`skiffd shim <dir>`); this binary exists so the backend's
//! tests, and programs that embed the runtime without skiffd, have a shim to point
//! `ProcessRuntime::with_shim` at.

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("logger") {
        agent_runtime::containerd::logger_main(&args[1..]);
    }
    if args.first().map(String::as_str) == Some("shim") {
        args.remove(0);
    }
    agent_runtime::process::shim_main(&args)
}
