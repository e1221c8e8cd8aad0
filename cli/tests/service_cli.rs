//! Runs the built `skiff` binary's `service` commands (and `node ps`): on bad input without a
//! daemon, and against a fake daemon on a unix socket that keeps services and tasks in
//! memory, answers by method name and records every request.

mod common;

use common::{fails_with_one_sentence, ok, run, skiff};

#[test]
fn bad_input_is_refused_before_connecting() {
    // Each is `service create FLAGS... nginx`.
    let create: &[(&[&str], &str)] = &[
        (
            &["--replicas", "-1"],
            "invalid value \"-1\" for --replicas: use a whole number, 0 or more",
        ),
        (
            &["--replicas", "many"],
            "invalid value \"many\" for --replicas",
        ),
        (
            &["--mode", "global", "--replicas", "3"],
            "--replicas can only be used with replicated or replicated-job mode",
        ),
        (
            &["--restart-delay", "5 parsecs"],
            "invalid duration \"5 parsecs\" for --restart-delay",
        ),
        (&["--stop-grace-period", "ten"], "for --stop-grace-period"),
        (
            &["--limit-memory", "12XB"],
            "invalid memory size \"12XB\" for --limit-memory",
        ),
        (
            &["--reserve-cpu", "a lot"],
            "invalid CPU count \"a lot\" for --reserve-cpu",
        ),
        (
            &["-p", "80:80:80"],
            "invalid port \"80:80:80\" for --publish",
        ),
        (&["-p", "published=8080"], "the target port is missing"),
        (
            &["--mount", "type=bind,target=/data"],
            "a bind mount needs a source",
        ),
        (
            &["--mount", "type=nfs,target=/data"],
            "unknown type \"nfs\"",
        ),
        (
            &["--constraint", "node.role=manager"],
            "missing operator; write ATTRIBUTE==VALUE",
        ),
        (&["--env", "=x"], "the name must not be empty"),
        (
            &["--update-failure-action", "panic"],
            "for --update-failure-action",
        ),
        (
            &["--no-healthcheck", "--health-cmd", "true"],
            "--no-healthcheck conflicts",
        ),
        (&["--bogus"], "unknown flag \"--bogus\""),
    ];
    let others: &[(&[&str], &str)] = &[
        (
            &["service", "scale", "web"],
            "invalid scale \"web\": use SERVICE=REPLICAS",
        ),
        (
            &["service", "scale", "web=-1"],
            "invalid replicas \"-1\" for service web",
        ),
        (
            &["service", "ls", "--filter", "colour=red"],
            "invalid filter \"colour=red\"",
        ),
        (
            &["service", "ls", "--format", "{{.Name"],
            "template parsing error: ",
        ),
        (
            &["service", "ps", "--filter", "desired-state=asleep", "web"],
            "the desired state is running",
        ),
        (
            &["service", "inspect", "--format", "{{nosuch .}}", "web"],
            "template parsing error: ",
        ),
        (
            &["service", "logs", "--tail", "some", "web"],
            "for --tail: use a number of lines or all",
        ),
        (&["node", "ps", "--filter", "x"], "invalid filter \"x\""),
    ];
    let create = create.iter().map(|(flags, want)| {
        let args = [&["service", "create"][..], flags, &["nginx"]].concat();
        (args, *want)
    });
    let others = others.iter().map(|(args, want)| (args.to_vec(), *want));
    let cases: Vec<(Vec<&str>, &str)> = create.chain(others).collect();
    assert_eq!(cases.len(), 24);
    for (args, want) in cases {
        let mut full = vec!["-H", "unix:///nonexistent/skiffd.sock"];
        full.extend_from_slice(&args);
        let line = fails_with_one_sentence(&full);
        assert!(!line.contains("cannot reach"), "{args:?}: {line}");
        assert!(line.contains(want), "{args:?}: {line}");
    }
}

#[test]
fn help_lists_the_service_commands() {
    let out = skiff(&["service", "--help"]);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    for cmd in ["create", "ls", "ps", "inspect", "logs", "scale", "rm"] {
        assert!(stdout.contains(cmd), "{stdout}");
    }
    let out = skiff(&["node", "--help"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("ps"));
}

// ---------------------------------------------------------------------------------------
// The fake daemon
// ---------------------------------------------------------------------------------------

mod fake {
    use std::sync::{Arc, Mutex};

    use proto::service_spec::Mode;
    use proto::*;
    use tonic::body::Body;
    use tonic::Status;

    use crate::common::{read_nodes, unary, Daemon, Reply, State};
    pub use crate::common::{SELF_ID, WORKER_ID};

    pub const WEB_ID: &str = "web0000000000000000000001";
    pub const MON_ID: &str = "mon0000000000000000000002";
    pub const JOB_ID: &str = "bat0000000000000000000003";

    /// A 25-character ID from a short tag.
    pub fn id(tag: &str) -> String {
        format!("{tag:0<25}")
    }

    /// The services and tasks the fake daemon keeps.
    pub struct Cluster {
        pub services: Mutex<Vec<Service>>,
        pub tasks: Mutex<Vec<Task>>,
    }

    fn spec(name: &str, image: &str, mode: Mode) -> ServiceSpec {
        ServiceSpec {
            name: name.into(),
            mode: Some(mode),
            task_template: Some(TaskSpec {
                container: Some(ContainerSpec {
                    image: image.into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            update_config: Some(UpdateConfig {
                parallelism: Some(1),
                monitor_ms: Some(0),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn service(id: &str, spec: ServiceSpec) -> Service {
        Service {
            meta: Some(Meta {
                id: id.into(),
                version: 10,
                created_at: proto::now_ms() - 3_600_000,
                updated_at: proto::now_ms() - 3_600_000,
            }),
            spec: Some(spec),
            spec_version: 1,
            ..Default::default()
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub fn task(
        tag: &str,
        svc: &Service,
        slot: u64,
        node: &str,
        desired: TaskState,
        state: TaskState,
        age_ms: i64,
        err: &str,
    ) -> Task {
        let spec = svc.spec.clone().unwrap();
        Task {
            meta: Some(Meta {
                id: id(tag),
                version: 1,
                created_at: proto::now_ms() - age_ms,
                updated_at: 0,
            }),
            service_id: svc.meta.as_ref().unwrap().id.clone(),
            slot,
            node_id: node.into(),
            spec: spec.task_template.clone().map(Into::into),
            spec_version: 1,
            desired_state: desired as i32,
            status: Some(TaskStatus {
                timestamp: proto::now_ms() - age_ms,
                state: state as i32,
                err: err.into(),
                ..Default::default()
            }),
            service_name: spec.name.clone(),
            ..Default::default()
        }
    }

    fn seed() -> (Vec<Service>, Vec<Task>) {
        use TaskState::*;
        let mut web = service(
            WEB_ID,
            spec(
                "web",
                "nginx:alpine",
                Mode::Replicated(ReplicatedService { replicas: 3 }),
            ),
        );
        web.endpoint = Some(Endpoint {
            ports: vec![PortConfig {
                target_port: 80,
                published_port: 8080,
                ..Default::default()
            }],
            ..Default::default()
        });
        let mon = service(
            MON_ID,
            spec("mon", "busybox", Mode::Global(GlobalService {})),
        );
        let job = service(
            JOB_ID,
            spec(
                "batch",
                "alpine",
                Mode::ReplicatedJob(ReplicatedJob {
                    max_concurrent: 2,
                    total_completions: 5,
                }),
            ),
        );
        let tasks = vec![
            task("w1", &web, 1, WORKER_ID, Running, Running, 60_000, ""),
            task(
                "w1old",
                &web,
                1,
                WORKER_ID,
                Shutdown,
                Failed,
                120_000,
                "task: non-zero exit (1)",
            ),
            task("w2", &web, 2, SELF_ID, Running, Running, 60_000, ""),
            task(
                "w3",
                &web,
                3,
                "",
                Running,
                Pending,
                60_000,
                "no suitable node (insufficient memory on 2 nodes)",
            ),
            task("m1", &mon, 0, SELF_ID, Running, Running, 60_000, ""),
            task("m2", &mon, 0, WORKER_ID, Running, Running, 60_000, ""),
            task("b1", &job, 1, SELF_ID, Complete, Complete, 60_000, ""),
            task("b2", &job, 2, SELF_ID, Complete, Complete, 60_000, ""),
            task("b3", &job, 3, WORKER_ID, Complete, Complete, 60_000, ""),
            task("b4", &job, 4, WORKER_ID, Complete, Running, 60_000, ""),
            task("b5", &job, 5, SELF_ID, Complete, Running, 60_000, ""),
        ];
        (vec![web, mon, job], tasks)
    }

    fn node(id: &str, host: &str) -> Node {
        Node {
            meta: Some(Meta {
                id: id.into(),
                version: 1,
                ..Default::default()
            }),
            description: Some(NodeDescription {
                hostname: host.into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn nodes() -> Vec<Node> {
        vec![node(SELF_ID, "manager-1"), node(WORKER_ID, "worker-1")]
    }

    fn find_service(state: &Cluster, name: &str) -> Result<Service, Status> {
        state
            .services
            .lock()
            .unwrap()
            .iter()
            .find(|s| {
                s.meta.as_ref().unwrap().id.starts_with(name)
                    || s.spec.as_ref().unwrap().name == name
            })
            .cloned()
            .ok_or_else(|| Status::not_found(format!("no such service: {name}")))
    }

    /// Makes the tasks of a replicated service match its replica count: new slots start
    /// running at once (or, for the image "broken", fail three times).
    fn reconcile(state: &Cluster, svc: &Service) {
        let Some(Mode::Replicated(r)) = svc.spec.as_ref().unwrap().mode else {
            return;
        };
        let sid = svc.meta.as_ref().unwrap().id.clone();
        let broken = svc
            .spec
            .as_ref()
            .unwrap()
            .task_template
            .as_ref()
            .unwrap()
            .container
            .as_ref()
            .unwrap()
            .image
            == "broken";
        let mut tasks = state.tasks.lock().unwrap();
        for t in tasks
            .iter_mut()
            .filter(|t| t.service_id == sid && t.slot > r.replicas)
        {
            t.desired_state = TaskState::Shutdown as i32;
            t.status.as_mut().unwrap().state = TaskState::Shutdown as i32;
        }
        for slot in 1..=r.replicas {
            let live = tasks.iter().any(|t| {
                t.service_id == sid
                    && t.slot == slot
                    && t.desired_state <= TaskState::Running as i32
            });
            if live {
                continue;
            }
            let tag = format!("{}s{slot}", &sid[..3]);
            if broken {
                for i in 0..3 {
                    tasks.push(task(
                        &format!("{tag}f{i}"),
                        svc,
                        slot,
                        WORKER_ID,
                        TaskState::Shutdown,
                        TaskState::Failed,
                        0,
                        "exec: \"nope\": not found",
                    ));
                }
                tasks.push(task(
                    &tag,
                    svc,
                    slot,
                    WORKER_ID,
                    TaskState::Running,
                    TaskState::Starting,
                    0,
                    "",
                ));
            } else {
                tasks.push(task(
                    &tag,
                    svc,
                    slot,
                    WORKER_ID,
                    TaskState::Running,
                    TaskState::Running,
                    0,
                    "",
                ));
            }
        }
    }

    fn log(task: &str, stream: LogStream, data: &str) -> LogMessage {
        LogMessage {
            context: Some(LogContext {
                service_id: WEB_ID.into(),
                node_id: String::new(),
                task_id: id(task),
            }),
            timestamp: 1_700_000_000_000,
            stream: stream as i32,
            data: data.as_bytes().to_vec(),
        }
    }

    async fn subscribe_logs(
        state: &Arc<State<Cluster>>,
        req: http::Request<Body>,
    ) -> http::Response<Body> {
        let state = state.clone();
        let svc = tower::service_fn(move |r: tonic::Request<SubscribeLogsRequest>| {
            state.record("SubscribeLogs", &r.into_inner());
            let batches = vec![
                Ok(SubscribeLogsResponse {
                    messages: vec![
                        log("w1", LogStream::Stdout, "hello\n"),
                        log("w2", LogStream::Stderr, "oops\n"),
                    ],
                }),
                Ok(SubscribeLogsResponse {
                    // A minute later, for --since and --until.
                    messages: vec![LogMessage {
                        timestamp: 1_700_000_060_000,
                        ..log("w1", LogStream::Stdout, "two\nlines\n")
                    }],
                }),
            ];
            std::future::ready(Ok::<_, Status>(tonic::Response::new(tokio_stream::iter(
                batches,
            ))))
        });
        tonic::server::Grpc::new(tonic_prost::ProstCodec::<
            SubscribeLogsResponse,
            SubscribeLogsRequest,
        >::default())
        .server_streaming(svc, req)
        .await
    }

    /// Starts a daemon with the seeded services and tasks.
    pub fn start() -> Daemon<Cluster> {
        let (services, tasks) = seed();
        let cluster = Cluster {
            services: Mutex::new(services),
            tasks: Mutex::new(tasks),
        };
        Daemon::start(cluster, answer)
    }

    fn answer(state: Arc<State<Cluster>>, method: String, req: http::Request<Body>) -> Reply {
        Box::pin(async move {
            let (s, m) = (&state, method.as_str());
            let resp = match m {
                "Info" => {
                    unary(s, m, req, |_, _: InfoRequest| {
                        Ok(InfoResponse {
                            state: LocalNodeState::Active as i32,
                            node_id: SELF_ID.into(),
                            ..Default::default()
                        })
                    })
                    .await
                }
                "ListNodes" | "GetNode" => read_nodes(s, m, req, nodes()).await,
                "CreateService" => {
                    unary(s, m, req, |st, r: CreateServiceRequest| {
                        let spec = r.spec.unwrap_or_default();
                        let name = if spec.name.is_empty() {
                            "generated".to_string()
                        } else {
                            spec.name.clone()
                        };
                        if st
                            .services
                            .lock()
                            .unwrap()
                            .iter()
                            .any(|s| s.spec.as_ref().unwrap().name == name)
                        {
                            return Err(Status::already_exists(format!(
                                "a service named {name} already exists"
                            )));
                        }
                        let mut svc =
                            service(&id(&format!("new{name}")), ServiceSpec { name, ..spec });
                        svc.meta.as_mut().unwrap().created_at = proto::now_ms();
                        st.services.lock().unwrap().push(svc.clone());
                        reconcile(st, &svc);
                        Ok(CreateServiceResponse { service: Some(svc) })
                    })
                    .await
                }
                "GetService" => {
                    unary(s, m, req, |st, r: GetServiceRequest| {
                        find_service(st, &r.service)
                            .map(|s| GetServiceResponse { service: Some(s) })
                    })
                    .await
                }
                "ListServices" => {
                    unary(s, m, req, |st, r: ListServicesRequest| {
                        let services = st
                            .services
                            .lock()
                            .unwrap()
                            .iter()
                            .filter(|s| {
                                let name = &s.spec.as_ref().unwrap().name;
                                (r.names.is_empty() || r.names.contains(name))
                                    && (r.name_prefixes.is_empty()
                                        || r.name_prefixes.iter().any(|p| name.starts_with(p)))
                            })
                            .cloned()
                            .collect();
                        Ok(ListServicesResponse {
                            services,
                            ..Default::default()
                        })
                    })
                    .await
                }
                "UpdateService" => {
                    unary(s, m, req, |st, r: UpdateServiceRequest| {
                        let mut services = st.services.lock().unwrap();
                        let svc = services
                            .iter_mut()
                            .find(|s| s.meta.as_ref().unwrap().id == r.service)
                            .ok_or_else(|| {
                                Status::not_found(format!("no such service: {}", r.service))
                            })?;
                        let meta = svc.meta.as_mut().unwrap();
                        if meta.version != r.version {
                            return Err(Status::aborted(
                                "the service changed since it was read; retry",
                            ));
                        }
                        meta.version += 1;
                        meta.updated_at = proto::now_ms();
                        // A rollback sends no spec; the fake keeps no previous one.
                        if !r.rollback {
                            svc.spec = r.spec;
                        }
                        svc.spec_version += 1;
                        let svc = svc.clone();
                        drop(services);
                        reconcile(st, &svc);
                        Ok(UpdateServiceResponse { service: Some(svc) })
                    })
                    .await
                }
                "RemoveService" => {
                    unary(s, m, req, |st, r: RemoveServiceRequest| {
                        let svc = find_service(st, &r.service)?;
                        st.services.lock().unwrap().retain(|s| s.meta != svc.meta);
                        Ok(RemoveServiceResponse {})
                    })
                    .await
                }
                "ListTasks" => {
                    unary(s, m, req, |st, r: ListTasksRequest| {
                        let tasks = st
                            .tasks
                            .lock()
                            .unwrap()
                            .iter()
                            .filter(|t| {
                                r.service_ids.is_empty() || r.service_ids.contains(&t.service_id)
                            })
                            .filter(|t| r.node_ids.is_empty() || r.node_ids.contains(&t.node_id))
                            .filter(|t| {
                                r.desired_states.is_empty()
                                    || r.desired_states.contains(&t.desired_state)
                            })
                            .cloned()
                            .collect();
                        Ok(ListTasksResponse { tasks })
                    })
                    .await
                }
                "GetTask" => {
                    unary(s, m, req, |st, r: GetTaskRequest| {
                        st.tasks
                            .lock()
                            .unwrap()
                            .iter()
                            .find(|t| t.meta.as_ref().unwrap().id.starts_with(&r.task))
                            .cloned()
                            .map(|t| GetTaskResponse { task: Some(t) })
                            .ok_or_else(|| Status::not_found(format!("no such task: {}", r.task)))
                    })
                    .await
                }
                "SubscribeLogs" => subscribe_logs(s, req).await,
                _ => Status::unimplemented("").into_http(),
            };
            Ok(resp)
        })
    }
}

// ---------------------------------------------------------------------------------------
// Against the fake daemon
// ---------------------------------------------------------------------------------------

#[test]
fn service_ls_table() {
    let d = fake::start();
    assert_eq!(
        ok(&d, &["service", "ls"]),
        "ID             NAME    MODE             REPLICAS              IMAGE          PORTS\n\
         bat000000000   batch   replicated job   2/2 (3/5 completed)   alpine\n\
         mon000000000   mon     global           2/2                   busybox\n\
         web000000000   web     replicated       2/3                   nginx:alpine   *:8080->80/tcp\n"
    );
    assert_eq!(
        ok(&d, &["service", "ls", "-q"]),
        format!("{}\n{}\n{}\n", fake::JOB_ID, fake::MON_ID, fake::WEB_ID)
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(&d, &["service", "ls", "--format", "json"])).unwrap();
    assert_eq!(json[2]["spec"]["name"], "web");
    assert_eq!(json[2]["spec"]["replicated"]["replicas"], 3);
    // name= goes to the daemon, as a prefix (as Docker matches it), mode= is applied here.
    assert_eq!(
        ok(&d, &["service", "ls", "-q", "--filter", "name=we"]),
        format!("{}\n", fake::WEB_ID)
    );
    assert!(d
        .state
        .calls("ListServices")
        .last()
        .unwrap()
        .contains("name_prefixes: [\"we\"]"));
    assert_eq!(
        ok(&d, &["service", "ls", "-q", "-f", "mode=global"]),
        format!("{}\n", fake::MON_ID)
    );
}

#[test]
fn service_ps_shows_history_indented() {
    let d = fake::start();
    let out = ok(&d, &["service", "ps", "web"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 5, "{out}");
    assert!(
        lines[0].starts_with(
            "ID             NAME        IMAGE          NODE        DESIRED STATE   CURRENT STATE"
        ),
        "{out}"
    );
    assert!(
        lines[0].ends_with("ERROR                              PORTS"),
        "{out}"
    );
    assert!(lines[1].starts_with("w10000000000   web.1       nginx:alpine   worker-1    Running         Running About a minute ago"), "{out}");
    assert!(lines[2].starts_with("w1old0000000    \\_ web.1   nginx:alpine   worker-1    Shutdown        Failed 2 minutes ago"), "{out}");
    assert!(lines[2].ends_with("\"task: non-zero exit (1)\""), "{out}");
    assert!(
        lines[3].starts_with("w20000000000   web.2       nginx:alpine   manager-1   Running"),
        "{out}"
    );
    assert!(lines[4].contains("Pending About a minute ago"), "{out}");
    assert!(
        lines[4].ends_with("\"no suitable node (insufficien…\""),
        "{out}"
    );
    let full = ok(&d, &["service", "ps", "--no-trunc", "web"]);
    assert!(
        full.contains("\"no suitable node (insufficient memory on 2 nodes)\""),
        "{full}"
    );
    // The filter reaches the daemon.
    assert_eq!(
        ok(
            &d,
            &[
                "service",
                "ps",
                "-q",
                "--filter",
                "desired-state=running",
                "web"
            ]
        ),
        "w10000000000\nw20000000000\nw30000000000\n"
    );
    assert!(d
        .state
        .calls("ListTasks")
        .last()
        .unwrap()
        .contains("desired_states: [Running]"));
    // Global tasks are named after their node; a missing service is one error line.
    let r = run(&d, &["service", "ps", "mon", "ghost"]);
    assert_eq!(r.code, Some(1));
    assert_eq!(r.stderr, "Error: no such service: ghost\n");
    assert!(
        r.stdout.contains(&format!("mon.{}", fake::SELF_ID)),
        "{}",
        r.stdout
    );
}

#[test]
fn node_ps_defaults_to_this_node() {
    let d = fake::start();
    let out = ok(&d, &["node", "ps", "-q"]);
    assert_eq!(
        out,
        "b10000000000\nb20000000000\nb50000000000\nm10000000000\nw20000000000\n"
    );
    assert!(d
        .state
        .calls("ListTasks")
        .last()
        .unwrap()
        .contains(&format!("node_ids: [\"{}\"]", fake::SELF_ID)));
    let out = ok(&d, &["node", "ps", "worker-1"]);
    assert!(out.contains("web.1"), "{out}");
    assert!(!out.contains("web.2"), "{out}");
}

#[test]
fn create_detached_prints_the_id() {
    let d = fake::start();
    let out = ok(
        &d,
        &[
            "service",
            "create",
            "--detach",
            "-q",
            "--name",
            "api",
            "--replicas",
            "2",
            "-p",
            "8081:80",
            "--limit-memory",
            "256M",
            "--entrypoint",
            "/bin/sh -c",
            "busybox",
            "httpd -f",
            "-v",
        ],
    );
    assert_eq!(out, format!("{}\n", fake::id("newapi")));
    let call = d.state.calls("CreateService").pop().unwrap();
    for want in [
        "name: \"api\"",
        "Replicated(ReplicatedService { replicas: 2 })",
        "image: \"busybox\"",
        "command: [\"/bin/sh\", \"-c\"]",
        "args: [\"httpd -f\", \"-v\"]",
        "stop_grace_period_ms: None",
        "target_port: 80, published_port: 8081",
        "memory_bytes: 268435456",
        // What no flag sets is left to the manager's defaults.
        "restart: None",
        "update_config: None",
        "rollback_config: None",
    ] {
        assert!(call.contains(want), "{want}: {call}");
    }
    // Detached: no polling.
    assert!(d.state.calls("ListTasks").is_empty());
    // The daemon's refusal is its own sentence.
    let r = run(&d, &["service", "create", "-d", "--name", "api", "busybox"]);
    assert_eq!(r.code, Some(1));
    assert_eq!(r.stderr, "Error: a service named api already exists\n");
}

#[test]
fn create_shows_progress_until_converged() {
    let d = fake::start();
    let out = ok(
        &d,
        &[
            "service",
            "create",
            "--name",
            "api",
            "--replicas",
            "2",
            "--update-monitor",
            "0s",
            "busybox",
        ],
    );
    let bar = "[==================================================>]";
    assert_eq!(
        out,
        format!(
            "{}\noverall progress: 2 out of 2 tasks\n1/2: running   {bar}\n2/2: running   {bar}\nverify: Service converged\n",
            fake::id("newapi")
        )
    );
}

#[test]
fn create_reports_a_failing_service() {
    let d = fake::start();
    let r = run(&d, &["service", "create", "--name", "bad", "broken"]);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert_eq!(r.stdout, format!("{}\n", fake::id("newbad")));
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{}", r.stderr);
    assert!(
        lines[0].starts_with("Error: service bad did not converge: task bad.1 failed 3 times, last with: exec: \"nope\": not found;"),
        "{}",
        r.stderr
    );
    assert!(lines[0].contains("skiff service ps bad"), "{}", r.stderr);
}

#[test]
fn scale_sends_the_version_and_the_count() {
    let d = fake::start();
    assert_eq!(
        ok(&d, &["service", "scale", "--detach", "web=5"]),
        "web scaled to 5\n"
    );
    let call = d.state.calls("UpdateService").pop().unwrap();
    assert!(
        call.contains(&format!("service: \"{}\"", fake::WEB_ID)),
        "{call}"
    );
    assert!(call.contains("version: 10"), "{call}");
    assert!(
        call.contains("Replicated(ReplicatedService { replicas: 5 })"),
        "{call}"
    );
    assert!(
        call.contains("image: \"nginx:alpine\""),
        "the rest of the spec is kept: {call}"
    );
    assert!(call.contains("rollback: false"), "{call}");

    // Scaling down waits until the extra tasks have stopped, then converges.
    let out = ok(&d, &["service", "scale", "web=2"]);
    assert!(
        out.starts_with("web scaled to 2\noverall progress: 2 out of 2 tasks\n"),
        "{out}"
    );
    assert!(out.ends_with("verify: Service converged\n"), "{out}");
    assert!(d
        .state
        .calls("UpdateService")
        .pop()
        .unwrap()
        .contains("version: 11"));

    // A global service cannot be scaled; the other one still is.
    let r = run(&d, &["service", "scale", "-d", "mon=3", "web=1"]);
    assert_eq!(r.code, Some(1));
    assert_eq!(r.stdout, "web scaled to 1\n");
    assert_eq!(
        r.stderr,
        "Error: service mon cannot be scaled: it is global (one task per eligible node); scale replicated services only\n"
    );
    let r = run(&d, &["service", "scale", "-d", "ghost=1"]);
    assert_eq!(r.stderr, "Error: no such service: ghost\n");
}

#[test]
fn ls_ps_and_inspect_take_go_templates_as_docker_does() {
    let d = fake::start();
    assert_eq!(
        ok(
            &d,
            &["service", "ls", "--format", "{{.Name}} {{.Replicas}}"]
        ),
        "batch 2/2 (3/5 completed)\nmon 2/2\nweb 2/3\n"
    );
    assert_eq!(
        ok(
            &d,
            &["service", "ls", "--format", r"table {{.Name}}\t{{.Mode}}"]
        ),
        "NAME      MODE\n\
         batch     replicated job\n\
         mon       global\n\
         web       replicated\n"
    );
    let line = ok(
        &d,
        &[
            "service",
            "ls",
            "--filter",
            "name=web",
            "--format",
            "{{json .}}",
        ],
    );
    let row: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(row["Name"], "web");
    assert_eq!(row["Ports"], "*:8080->80/tcp");
    assert_eq!(
        ok(
            &d,
            &["service", "inspect", "--format", "{{.Spec.Name}}", "web"]
        ),
        "web\n"
    );
    assert_eq!(
        ok(
            &d,
            &[
                "service",
                "inspect",
                "--format",
                "{{json .Spec.Mode}}",
                "web",
                "mon"
            ]
        ),
        "{\"Replicated\":{\"Replicas\":3}}\n{\"Global\":{}}\n"
    );
    let task = ok(&d, &["service", "ps", "-q", "web"]);
    let task = task.lines().next().unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&ok(&d, &["task", "inspect", task])).unwrap();
    assert!(json[0]["ID"].as_str().unwrap().starts_with(task), "{json}");
    assert_eq!(json[0]["ServiceID"], fake::WEB_ID);
    assert_eq!(
        ok(&d, &["task", "inspect", "--format", "{{.ServiceID}}", task]),
        format!("{}\n", fake::WEB_ID)
    );
    let r = run(&d, &["task", "inspect", "nosuchtask"]);
    assert_eq!(
        (r.code, r.stderr.as_str()),
        (Some(1), "Error: no such task: nosuchtask\n")
    );
    let ps = ok(&d, &["service", "ps", "--format", "{{.Name}}", "web"]);
    // Older tasks of a slot are indented under it, as in Docker's NAME column.
    assert_eq!(ps, "web.1\n \\_ web.1\nweb.2\nweb.3\n");
    // A bad template: one sentence, exit 1, nothing on stdout.
    for format in ["{{.Name", "{{.Spec.Name}}"] {
        let r = run(&d, &["service", "ls", "--format", format]);
        assert_eq!(r.code, Some(1), "{format}");
        assert!(r.stdout.is_empty(), "{format}: {}", r.stdout);
        assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
        assert!(r.stderr.starts_with("Error: template "), "{}", r.stderr);
    }
}

#[test]
fn inspect_and_rm() {
    let d = fake::start();
    let json: serde_json::Value =
        serde_json::from_str(&ok(&d, &["service", "inspect", "web", "mon"])).unwrap();
    // Docker's JSON, as `docker service inspect` prints it.
    assert_eq!(json[0]["ID"], fake::WEB_ID);
    assert_eq!(json[0]["Spec"]["Mode"]["Replicated"]["Replicas"], 3);
    assert_eq!(json[1]["Spec"]["Name"], "mon");
    assert!(json[0].get("meta").is_none(), "{json}");
    let pretty = ok(&d, &["service", "inspect", "--pretty", "web"]);
    assert!(pretty.contains("Name:\t\tweb\n"), "{pretty}");
    assert!(
        pretty.contains("Service Mode:\tReplicated\n Replicas:\t3\n"),
        "{pretty}"
    );
    assert!(pretty.contains(" PublishedPort = 8080\n"), "{pretty}");
    let r = run(&d, &["service", "rm", "web", "ghost"]);
    assert_eq!(r.code, Some(1));
    assert_eq!(r.stdout, "web\n");
    assert_eq!(r.stderr, "Error: no such service: ghost\n");
    assert!(ok(&d, &["service", "ls", "-q"])
        .lines()
        .all(|l| l != fake::WEB_ID));
}

#[test]
fn logs_since_and_until_keep_the_lines_of_their_time() {
    let d = fake::start();
    let r = run(
        &d,
        &["service", "logs", "--raw", "--since", "1700000030", "web"],
    );
    assert_eq!((r.stdout.as_str(), r.stderr.as_str()), ("two\nlines\n", ""));
    let r = run(
        &d,
        &[
            "service",
            "logs",
            "--raw",
            "--until",
            "2023-11-14T22:13:50Z",
            "web",
        ],
    );
    assert_eq!(
        (r.stdout.as_str(), r.stderr.as_str()),
        ("hello\n", "oops\n")
    );
    let r = run(&d, &["service", "logs", "--details", "--raw", "web"]);
    assert_eq!(r.stdout, "hello\ntwo\nlines\n");
    let r = run(&d, &["service", "logs", "--since", "last week", "web"]);
    assert_eq!(r.code, Some(1));
    assert!(
        r.stderr
            .starts_with("Error: invalid time \"last week\" for --since"),
        "{}",
        r.stderr
    );
}

#[test]
fn logs_are_prefixed_per_task() {
    let d = fake::start();
    let r = run(&d, &["service", "logs", "--tail", "10", "web"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(
        r.stdout,
        "web.1.w10000000000@worker-1     | hello\n\
         web.1.w10000000000@worker-1     | two\n\
         web.1.w10000000000@worker-1     | lines\n"
    );
    assert_eq!(r.stderr, "web.2.w20000000000@manager-1    | oops\n");
    let call = d.state.calls("SubscribeLogs").pop().unwrap();
    assert!(
        call.contains(&format!("service_ids: [\"{}\"]", fake::WEB_ID)),
        "{call}"
    );
    assert!(call.contains("follow: false, tail: 10"), "{call}");

    // A task ID works too; --raw drops the prefix.
    let r = run(&d, &["service", "logs", "--raw", "w1000"]);
    assert_eq!(r.stdout, "hello\ntwo\nlines\n");
    let call = d.state.calls("SubscribeLogs").pop().unwrap();
    assert!(
        call.contains(&format!("task_ids: [\"{}\"]", fake::id("w1"))),
        "{call}"
    );
    assert!(call.contains("tail: -1"), "{call}");

    let r = run(&d, &["service", "logs", "ghost"]);
    assert_eq!(r.code, Some(1));
    assert!(
        r.stderr
            .starts_with("Error: no such service or task: ghost;"),
        "{}",
        r.stderr
    );
}

#[test]
fn update_rollback_asks_for_the_previous_spec_and_takes_no_other_change() {
    let d = fake::start();
    let r = run(&d, &["service", "update", "--detach", "--rollback", "web"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let call = d.state.calls("UpdateService").pop().unwrap();
    assert!(
        call.contains("spec: None") && call.contains("rollback: true"),
        "{call}"
    );
    let before = d.state.calls("UpdateService").len();
    let r = run(
        &d,
        &[
            "service",
            "update",
            "--detach",
            "--rollback",
            "--image",
            "x:1",
            "web",
        ],
    );
    assert_eq!(r.code, Some(1));
    assert!(
        r.stderr
            .starts_with("Error: --rollback goes back to the previous spec"),
        "{}",
        r.stderr
    );
    assert_eq!(d.state.calls("UpdateService").len(), before, "nothing sent");
}
