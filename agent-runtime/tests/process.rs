//! The `process` backend against real processes, through the crate's `skiff-shim` binary.
//! No root needed.

use std::path::Path;
use std::time::Duration;

use agent_runtime::process::ProcessRuntime;
use agent_runtime::{Exit, LogLine, LogSource, Runtime, RuntimeError, RuntimeState};
use futures::StreamExt;

/// Upper bound for anything a test waits on, so a bug fails the test instead of hanging it.
const DEADLINE: Duration = Duration::from_secs(30);

fn runtime(state_dir: &Path) -> ProcessRuntime {
    runtime_with_log_limit(state_dir, 1 << 20)
}

fn runtime_with_log_limit(state_dir: &Path, log_max_bytes: u64) -> ProcessRuntime {
    ProcessRuntime::new(
        state_dir.to_path_buf(),
        agent_runtime::LogDefaults::local(log_max_bytes),
    )
    .with_shim(env!("CARGO_BIN_EXE_skiff-shim"), ["shim"])
}

fn task(id: &str, argv: &[&str], edit: impl FnOnce(&mut proto::ContainerSpec)) -> proto::Task {
    let mut container = proto::ContainerSpec {
        image: "ignored".into(),
        command: argv.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    edit(&mut container);
    proto::Task {
        meta: Some(proto::Meta {
            id: id.into(),
            ..Default::default()
        }),
        spec: Some(
            proto::TaskSpec {
                container: Some(container),
                ..Default::default()
            }
            .into(),
        ),
        ..Default::default()
    }
}

async fn run(rt: &ProcessRuntime, task: &proto::Task) {
    rt.prepare(task).await.unwrap();
    rt.start(&task.meta.as_ref().unwrap().id).await.unwrap();
}

async fn wait(rt: &ProcessRuntime, id: &str) -> Exit {
    tokio::time::timeout(DEADLINE, rt.wait(id))
        .await
        .expect("task did not end")
        .unwrap()
}

async fn lines(rt: &ProcessRuntime, id: &str, tail: Option<usize>, follow: bool) -> Vec<LogLine> {
    let stream = rt.logs(id, tail, follow).await.unwrap();
    tokio::time::timeout(DEADLINE, stream.collect())
        .await
        .expect("log stream did not end")
}

fn text(lines: &[LogLine], stream: LogSource) -> String {
    lines
        .iter()
        .filter(|l| l.stream == stream)
        .map(|l| String::from_utf8_lossy(&l.data).into_owned())
        .collect()
}

/// Follows the log until a line equal to `want` shows up (the task is then past that point).
async fn await_line(rt: &ProcessRuntime, id: &str, want: &str) {
    let mut stream = rt.logs(id, None, true).await.unwrap();
    let found = tokio::time::timeout(DEADLINE, async {
        while let Some(line) = stream.next().await {
            if line.data == want.as_bytes() {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(found, Ok(true), "the task never printed {want:?}");
}

#[tokio::test]
async fn command_args_env_and_workdir_reach_the_process() {
    let state = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let rt = runtime(state.path());
    let t = task("t1", &["sh", "-c"], |c| {
        c.args = vec![
            "echo \"$FOO\"; pwd; echo \"$1\" >&2".into(),
            "sh".into(),
            "arg-one".into(),
        ];
        c.env = vec!["FOO=bar baz".into()];
        c.dir = work.path().to_str().unwrap().into();
    });
    run(&rt, &t).await;
    let exit = wait(&rt, "t1").await;
    assert!(exit.is_success(), "{exit:?}");
    assert_eq!(exit.message, "exited with code 0");
    let log = lines(&rt, "t1", None, false).await;
    let cwd = std::fs::canonicalize(work.path()).unwrap();
    assert_eq!(
        text(&log, LogSource::Stdout),
        format!("bar baz\n{}\n", cwd.display())
    );
    assert_eq!(text(&log, LogSource::Stderr), "arg-one\n");
    assert!(log.iter().all(|l| l.timestamp_ms > 1_600_000_000_000));
}

#[tokio::test]
async fn args_alone_are_the_command_and_the_environment_is_clean() {
    let state = tempfile::tempdir().unwrap();
    let rt = runtime(state.path());
    run(&rt, &task("t1", &[], |c| c.args = vec!["env".into()])).await;
    assert!(wait(&rt, "t1").await.is_success());
    let mut names: Vec<String> = text(&lines(&rt, "t1", None, false).await, LogSource::Stdout)
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, _)| k.to_string()))
        .collect();
    names.sort();
    assert_eq!(names, ["HOME", "PATH"]);
}

#[tokio::test]
async fn exit_codes_and_signals_are_reported() {
    let state = tempfile::tempdir().unwrap();
    let rt = runtime(state.path());
    run(&rt, &task("code", &["sh", "-c", "exit 3"], |_| {})).await;
    run(&rt, &task("signal", &["sh", "-c", "kill -KILL $$"], |_| {})).await;
    let exit = wait(&rt, "code").await;
    assert_eq!(
        (exit.code, exit.signal, exit.message.as_str()),
        (3, None, "exited with code 3")
    );
    let exit = wait(&rt, "signal").await;
    assert_eq!(
        (exit.code, exit.signal, exit.message.as_str()),
        (137, Some(9), "killed by SIGKILL")
    );
    assert!(!exit.is_success());
}

#[tokio::test]
async fn stop_sends_the_stop_signal_then_sigkill_after_the_grace() {
    let state = tempfile::tempdir().unwrap();
    let rt = runtime(state.path());

    run(&rt, &task("polite", &["sleep", "30"], |_| {})).await;
    tokio::time::timeout(DEADLINE, rt.stop("polite", Some(Duration::from_secs(10))))
        .await
        .unwrap()
        .unwrap();
    let exit = wait(&rt, "polite").await;
    assert_eq!(
        (exit.code, exit.signal, exit.message.as_str()),
        (143, Some(15), "stopped with SIGTERM")
    );

    // The spec's stop signal and grace period apply when the caller gives none.
    let stubborn = task(
        "stubborn",
        &["sh", "-c", "trap '' TERM INT; echo ready; sleep 30"],
        |c| {
            c.stop_signal = "INT".into();
            c.stop_grace_period_ms = Some(300);
        },
    );
    run(&rt, &stubborn).await;
    await_line(&rt, "stubborn", "ready\n").await;
    let began = std::time::Instant::now();
    tokio::time::timeout(DEADLINE, rt.stop("stubborn", None))
        .await
        .unwrap()
        .unwrap();
    assert!(began.elapsed() >= Duration::from_millis(300));
    let exit = wait(&rt, "stubborn").await;
    assert_eq!((exit.code, exit.signal), (137, Some(9)));
    assert_eq!(
        exit.message,
        "killed with SIGKILL: it did not stop within 300ms of SIGINT"
    );

    // Stopping an ended task is a no-op.
    rt.stop("stubborn", None).await.unwrap();
}

#[tokio::test]
async fn stopping_an_unstarted_task_ends_it_and_forbids_starting() {
    let state = tempfile::tempdir().unwrap();
    let rt = runtime(state.path());
    rt.prepare(&task("t1", &["true"], |_| {})).await.unwrap();
    assert_eq!(rt.list().await.unwrap()[0].state, RuntimeState::Created);
    rt.stop("t1", None).await.unwrap();
    assert_eq!(wait(&rt, "t1").await.message, "stopped before it started");
    let err = rt.start("t1").await.unwrap_err();
    assert!(matches!(err, RuntimeError::InvalidState(_)), "{err}");
}

#[tokio::test]
async fn logs_tail_and_follow() {
    let state = tempfile::tempdir().unwrap();
    let rt = runtime(state.path());
    run(&rt, &task("seq", &["seq", "1", "100"], |_| {})).await;
    wait(&rt, "seq").await;
    let tail = lines(&rt, "seq", Some(3), false).await;
    assert_eq!(text(&tail, LogSource::Stdout), "98\n99\n100\n");
    assert_eq!(lines(&rt, "seq", None, false).await.len(), 100);

    // Follow from the start of a task that is still writing, to its end.
    let script = "echo out1; echo err1 >&2; sleep 0.3; echo out2; printf 'no newline'";
    run(&rt, &task("slow", &["sh", "-c", script], |_| {})).await;
    let followed = lines(&rt, "slow", None, true).await;
    assert_eq!(text(&followed, LogSource::Stdout), "out1\nout2\nno newline");
    assert_eq!(text(&followed, LogSource::Stderr), "err1\n");
    assert!(
        rt.wait("slow").await.unwrap().is_success(),
        "follow ends when the task has ended"
    );

    // Following with tail 0 shows only what comes after.
    let gate = state.path().join("gate");
    let script = format!(
        "echo before; while [ ! -e {} ]; do sleep 0.05; done; echo after",
        gate.display()
    );
    run(&rt, &task("later", &["sh", "-c", &script], |_| {})).await;
    await_line(&rt, "later", "before\n").await;
    let stream = rt.logs("later", Some(0), true).await.unwrap();
    std::fs::write(&gate, "").unwrap();
    let after: Vec<LogLine> = tokio::time::timeout(DEADLINE, stream.collect())
        .await
        .unwrap();
    assert_eq!(text(&after, LogSource::Stdout), "after\n");
}

#[tokio::test]
async fn rotation_keeps_the_log_bounded() {
    let state = tempfile::tempdir().unwrap();
    let max = 4096;
    let rt = runtime_with_log_limit(state.path(), max);
    run(&rt, &task("chatty", &["seq", "1", "20000"], |_| {})).await;
    wait(&rt, "chatty").await;
    let dir = state.path().join("chatty");
    let size = |name: &str| {
        std::fs::metadata(dir.join(name))
            .map(|m| m.len())
            .unwrap_or(0)
    };
    assert!(size("task.log") <= max, "{}", size("task.log"));
    assert!(
        size("task.log.1") > 0 && size("task.log.1") <= max,
        "{}",
        size("task.log.1")
    );
    let tail = lines(&rt, "chatty", Some(2), false).await;
    assert_eq!(text(&tail, LogSource::Stdout), "19999\n20000\n");
    let all = lines(&rt, "chatty", None, false).await;
    assert!(
        all.len() < 1000,
        "only the newest lines are kept, got {}",
        all.len()
    );
}

#[tokio::test]
async fn bad_specs_fail_with_clear_errors() {
    let state = tempfile::tempdir().unwrap();
    let rt = runtime(state.path());
    let cases: Vec<(proto::Task, &str)> = vec![
        (
            task("a", &[], |_| {}),
            "the process runtime needs a command: pass one after the image",
        ),
        (
            task("b", &["true"], |c| c.dir = "/no/such/dir/skiff".into()),
            "working directory /no/such/dir/skiff does not exist on this node",
        ),
        (
            task("c", &["true"], |c| c.user = "no-such-user-skiff".into()),
            "user 'no-such-user-skiff' does not exist on this node",
        ),
        (
            task("d", &["true"], |c| c.env = vec!["JUSTKEY".into()]),
            "environment entry 'JUSTKEY' is not KEY=VALUE",
        ),
        (
            task("e", &["true"], |c| c.stop_signal = "SIGWHAT".into()),
            "stop signal 'SIGWHAT' is not a signal",
        ),
    ];
    for (t, want) in cases {
        let err = rt.prepare(&t).await.unwrap_err();
        assert!(matches!(err, RuntimeError::InvalidSpec(_)), "{err:?}");
        assert!(err.is_permanent());
        assert!(err.to_string().starts_with(want), "{err}");
    }
    assert!(
        rt.list().await.unwrap().is_empty(),
        "failed prepares leave nothing behind"
    );

    // A program that is not there fails at start, and its exit says why.
    rt.prepare(&task("missing", &["/no/such/program"], |_| {}))
        .await
        .unwrap();
    let err = rt.start("missing").await.unwrap_err();
    assert!(matches!(err, RuntimeError::StartFailed(_)), "{err:?}");
    assert!(
        err.to_string().contains("cannot run '/no/such/program'"),
        "{err}"
    );
    assert_eq!(wait(&rt, "missing").await.code, 127);

    assert!(matches!(
        rt.start("never-prepared").await,
        Err(RuntimeError::NotFound(_))
    ));
    assert!(matches!(
        rt.wait("never-prepared").await,
        Err(RuntimeError::NotFound(_))
    ));
    assert!(matches!(
        rt.logs("../etc", None, false).await,
        Err(RuntimeError::NotFound(_))
    ));
}

#[tokio::test]
async fn running_as_a_user_by_uid() {
    let state = tempfile::tempdir().unwrap();
    let rt = runtime(state.path());
    let (uid, gid) = (
        nix::unistd::geteuid().as_raw(),
        nix::unistd::getegid().as_raw(),
    );
    run(
        &rt,
        &task("me", &["sh", "-c", "id -u; id -g"], |c| {
            c.user = format!("{uid}:{gid}")
        }),
    )
    .await;
    assert!(wait(&rt, "me").await.is_success());
    assert_eq!(
        text(&lines(&rt, "me", None, false).await, LogSource::Stdout),
        format!("{uid}\n{gid}\n")
    );
}

#[tokio::test]
async fn a_new_runtime_adopts_running_tasks() {
    let state = tempfile::tempdir().unwrap();
    {
        let old = runtime(state.path());
        run(
            &old,
            &task("long", &["sh", "-c", "echo started; exec sleep 30"], |_| {}),
        )
        .await;
        run(&old, &task("short", &["true"], |_| {})).await;
        wait(&old, "short").await;
        // Prepare and start are idempotent.
        old.prepare(&task("long", &["other"], |_| {}))
            .await
            .unwrap();
        old.start("long").await.unwrap();
        await_line(&old, "long", "started\n").await;
    } // skiffd "crashes": the runtime object is gone, the shim and the task are not.

    let new = runtime(state.path());
    let tasks = new.list().await.unwrap();
    assert_eq!(tasks.len(), 2);
    assert_eq!(tasks[0].task_id, "long");
    let RuntimeState::Running { pid: Some(pid) } = tasks[0].state else {
        panic!("{:?}", tasks[0])
    };
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    assert_eq!(tasks[1].task_id, "short");
    assert!(matches!(&tasks[1].state, RuntimeState::Exited(exit) if exit.is_success()));

    let err = new.remove("long").await.unwrap_err();
    assert!(matches!(err, RuntimeError::InvalidState(_)), "{err}");

    let new = std::sync::Arc::new(new);
    let waiter = tokio::spawn({
        let new = new.clone();
        async move { new.wait("long").await }
    });
    new.stop("long", Some(Duration::from_secs(5)))
        .await
        .unwrap();
    let exit = tokio::time::timeout(DEADLINE, waiter)
        .await
        .unwrap()
        .unwrap();
    let exit = exit.unwrap();
    assert_eq!((exit.code, exit.signal), (143, Some(15)));
    assert_eq!(
        text(&lines(&new, "long", None, false).await, LogSource::Stdout),
        "started\n"
    );

    new.remove("long").await.unwrap();
    new.remove("short").await.unwrap();
    new.remove("short").await.unwrap();
    assert!(new.list().await.unwrap().is_empty());
    assert!(std::fs::read_dir(state.path()).unwrap().next().is_none());
}

#[tokio::test]
async fn a_task_outlives_a_killed_shim_and_is_still_stoppable() {
    let state = tempfile::tempdir().unwrap();
    let rt = runtime(state.path());
    run(&rt, &task("orphan", &["sleep", "30"], |_| {})).await;
    let shim: serde_json::Value =
        serde_json::from_slice(&std::fs::read(state.path().join("orphan/shim.pid")).unwrap())
            .unwrap();
    let shim_pid = shim["pid"].as_i64().unwrap() as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(shim_pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    // Still running: the task process is alive without its shim.
    assert!(matches!(
        rt.list().await.unwrap()[0].state,
        RuntimeState::Running { pid: Some(_) }
    ));
    rt.stop("orphan", Some(Duration::from_secs(5)))
        .await
        .unwrap();
    let exit = wait(&rt, "orphan").await;
    assert_eq!(exit.code, -1, "{exit:?}");
    assert!(exit.message.contains("shim"), "{}", exit.message);
}
