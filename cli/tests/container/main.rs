//! The container image and the Kubernetes example, checked without a
//! container runtime: cheap, and it runs wherever `cargo test` does.
//! scripts/suites/container.sh builds the runtime stage and runs it in
//! podman; this test adds what that suite does not do: the manifests, and a
//! token signed with the Secret's key.
//!
//! - The Dockerfile is parsed: multi-stage, a runtime stage without the
//!   toolchains, a numeric non-root USER, exec-form HEALTHCHECK and
//!   ENTRYPOINT that name the binary it copies in, flags the binary has.
//! - The image's filesystem is staged in a temporary directory from the
//!   final stage's COPY lines, and its entry command (ENTRYPOINT + CMD) runs
//!   there with the image's ENV and WORKDIR, as the image's USER (through
//!   `setpriv` when the test runs as root), with the Kubernetes Secret's
//!   config file mounted where deployment.yaml mounts it. The one change:
//!   `--listen 127.0.0.1:PORT` is appended, because port 8081 of this
//!   shared machine is not the test's. It must answer /health, serve the
//!   dashboard, accept a token signed with the Secret's key, pass the
//!   image's HEALTHCHECK command, and exit 0 on SIGTERM.
//! - packaging/kubernetes/*.yaml are parsed and checked against the
//!   Dockerfile and the gateway's own config parser.
#![cfg(target_os = "linux")]

mod dockerfile;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use dockerfile::{exec_form, healthcheck, Dockerfile, Stage};
use serde_json::Value;
use volley_engine::GatewayConfig;
use volley_testkit::files::TempDir;
use volley_testkit::free_port;
use volley_testkit::process::VolleyProcess;
use volley_testkit::tokens::{session_token, SECRET};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn dockerfile() -> Dockerfile {
    Dockerfile::parse(&read(&repo().join("Dockerfile")))
}

/// The image's `USER` as numbers.
fn image_user(stage: &Stage) -> (u32, u32) {
    let user = &stage.one("USER").args;
    let (uid, gid) = user.split_once(':').unwrap_or((user, user));
    let number = |text: &str| {
        text.parse::<u32>().unwrap_or_else(|_| panic!("USER {user}: use numbers (runAsNonRoot checks them)"))
    };
    (number(uid), number(gid))
}

/// `/usr/local/bin/volley` etc.: the path the final stage copies the binary to.
fn image_binary(stage: &Stage) -> String {
    let copy = stage
        .copies()
        .into_iter()
        .find(|c| c.dest.ends_with("/volley"))
        .expect("the runtime stage copies the volley binary");
    copy.dest
}

fn workdir(stage: &Stage) -> String {
    let dir = stage.one("WORKDIR").args.clone();
    assert!(dir.starts_with('/'), "WORKDIR {dir} should be absolute");
    dir
}

fn exposed_port(stage: &Stage) -> u16 {
    let expose = &stage.one("EXPOSE").args;
    expose.trim_end_matches("/tcp").parse().unwrap_or_else(|_| panic!("EXPOSE {expose}: one TCP port"))
}

/// Text of `volley <args> --help`.
fn help(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_volley")).args(args).arg("--help").output().expect("volley runs");
    assert!(output.status.success(), "volley {args:?} --help: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn dockerfile_is_multi_stage_non_root_and_checks_its_own_health() {
    let file = dockerfile();
    assert!(file.stages.len() >= 2, "a multi-stage build: toolchains in build stages, not in the image");
    let runtime = file.final_stage();
    for toolchain in ["rust", "node", "golang"] {
        assert!(!runtime.base.contains(toolchain), "the runtime stage is based on {}", runtime.base);
    }
    assert!(runtime.all("RUN").is_empty(), "the runtime base has no shell: no RUN in the final stage");

    let (uid, gid) = image_user(runtime);
    assert!(uid != 0 && gid != 0, "USER must not be root");

    // Every COPY --from names a stage; every COPY from the build context
    // names a file that exists and that .dockerignore does not exclude.
    let names: Vec<&str> = file.stages.iter().filter_map(|s| s.name.as_deref()).collect();
    let ignored = read(&repo().join(".dockerignore"));
    let ignored: Vec<&str> = ignored.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
    assert!(ignored.contains(&"target/"), ".dockerignore must keep target/ (many GB) out of the build context");
    for stage in &file.stages {
        for copy in stage.copies() {
            match &copy.from {
                Some(from) => assert!(names.contains(&from.as_str()), "COPY --from={from}: no such stage"),
                None => {
                    for source in &copy.sources {
                        assert!(repo().join(source).exists(), "COPY {source}: not in the repository");
                        let top = source.split('/').next().unwrap_or(source);
                        assert!(
                            !ignored.iter().any(|i| i.trim_end_matches('/') == top),
                            "{source} is in .dockerignore"
                        );
                    }
                }
            }
        }
    }

    // ENTRYPOINT + CMD: the binary the stage copies in, a real subcommand,
    // flags that subcommand has, and a config file the image contains.
    let binary = image_binary(runtime);
    let entrypoint = exec_form(runtime.one("ENTRYPOINT"));
    let cmd = exec_form(runtime.one("CMD"));
    assert_eq!(entrypoint.first(), Some(&binary), "ENTRYPOINT runs the copied binary");
    assert_eq!(entrypoint.get(1).map(String::as_str), Some("gateway"), "ENTRYPOINT: volley gateway");
    let gateway_help = help(&["gateway"]);
    for flag in entrypoint.iter().chain(&cmd).filter(|a| a.starts_with("--")) {
        assert!(gateway_help.contains(&format!("{flag} ")), "volley gateway has no {flag}:\n{gateway_help}");
    }
    let config_arg = cmd.iter().position(|a| a == "--config").and_then(|i| cmd.get(i + 1)).expect("CMD --config FILE");
    let config_in_image = Path::new(&workdir(runtime)).join(config_arg);
    let baked = runtime
        .copies()
        .into_iter()
        .find(|c| Path::new(&c.dest) == config_in_image)
        .unwrap_or_else(|| panic!("no COPY puts a file at {}", config_in_image.display()));
    let baked = GatewayConfig::from_file(&repo().join(&baked.sources[0])).expect("the image's config loads");
    assert!(baked.tableros_secret_key.is_none(), "the image must not carry a secret");
    assert_dashboard_in_image(runtime, &baked, "the image's config");
    assert_eq!(baked.listen_addr().expect("listen").port(), exposed_port(runtime), "the config listens on EXPOSE");

    // HEALTHCHECK: exec form (no shell in the image), the binary's own
    // probe, whose default URL is the EXPOSEd port, within Docker's timeout.
    let (options, probe) = healthcheck(runtime.one("HEALTHCHECK"));
    assert_eq!(probe.first(), Some(&binary), "HEALTHCHECK runs the copied binary");
    assert_eq!(probe.get(1).map(String::as_str), Some("health"));
    let health_help = help(&["health"]);
    let default_url = format!("http://127.0.0.1:{}/health", exposed_port(runtime));
    assert!(
        probe.len() > 2 || health_help.contains(&format!("[default: {default_url}]")),
        "volley health's default URL is not {default_url}:\n{health_help}"
    );
    let seconds = |key: &str| -> u64 {
        let value = options.get(key).unwrap_or_else(|| panic!("HEALTHCHECK --{key}"));
        value.strip_suffix('s').and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("--{key}={value}: whole seconds"))
    };
    assert!(
        health_help.contains("[default: 3]") && seconds("timeout") > 3,
        "volley health gives up before Docker does"
    );
    assert!(seconds("interval") >= 5);
    for signal in runtime.all("STOPSIGNAL") {
        assert_eq!(signal.args, "SIGTERM", "the gateway shuts down cleanly on SIGTERM");
    }
}

/// The config's `static_dir`, resolved against WORKDIR, is where the image
/// puts the built dashboard.
fn assert_dashboard_in_image(runtime: &Stage, config: &GatewayConfig, which: &str) {
    let static_dir = config.static_dir.as_deref().unwrap_or(Path::new("web/dist"));
    let in_image = Path::new(&workdir(runtime)).join(static_dir);
    assert!(
        runtime.copies().iter().any(|c| c.from.as_deref() == Some("web") && Path::new(&c.dest) == in_image),
        "{which}: static_dir {} is not where the Dockerfile copies the dashboard",
        in_image.display()
    );
}

// ------------------------------------------------------------ the image, staged

/// The final stage's filesystem under a temporary directory: what each COPY
/// puts in the image, taken from where this checkout has it.
struct StagedImage {
    dir: TempDir,
}

impl StagedImage {
    fn new(runtime: &Stage) -> StagedImage {
        let dir = TempDir::new("container-image");
        for copy in runtime.copies() {
            let [source] = copy.sources.as_slice() else { panic!("COPY with several sources: {copy:?}") };
            let local = match (copy.from.as_deref(), source.as_str()) {
                (Some("builder"), "/out/volley") => PathBuf::from(env!("CARGO_BIN_EXE_volley")),
                (Some("web"), "/src/web/dist") => {
                    let dist = repo().join("web/dist");
                    assert!(
                        dist.join("index.html").is_file(),
                        "{} is not built: run `npm ci && npm run build` in web/ (scripts/test.sh's web step does)",
                        dist.display()
                    );
                    dist
                }
                (None, _) => repo().join(source),
                (Some(stage), _) => panic!("COPY --from={stage} {source}: teach this test where that comes from"),
            };
            let target = dir.path().join(copy.dest.trim_start_matches('/'));
            copy_tree(&local, &target);
        }
        let image = StagedImage { dir };
        image.make_traversable();
        image
    }

    fn path(&self, image_path: &str) -> PathBuf {
        self.dir.path().join(image_path.trim_start_matches('/'))
    }

    /// Docker's COPY leaves files readable by everyone (owner root): do the
    /// same for the image's USER, whatever this machine's umask.
    fn make_traversable(&self) {
        use std::os::unix::fs::PermissionsExt;
        fn walk(path: &Path) {
            let meta = std::fs::symlink_metadata(path).expect("stat");
            let mode = if meta.is_dir() || meta.permissions().mode() & 0o100 != 0 { 0o755 } else { 0o644 };
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
            if meta.is_dir() {
                for entry in std::fs::read_dir(path).expect("read_dir") {
                    walk(&entry.expect("entry").path());
                }
            }
        }
        walk(self.dir.path());
    }

    /// `argv` as the image would run it: the image path of the binary
    /// mapped into the staged tree, the image's ENV only, its WORKDIR, and
    /// its USER (when this test may switch users).
    fn command(&self, runtime: &Stage, argv: &[String], extra: &[&str]) -> Command {
        let (program, args) = argv.split_first().expect("a command");
        let program = self.path(program);
        let (uid, gid) = image_user(runtime);
        let mut command = if running_as_root() {
            let mut setpriv = Command::new("setpriv");
            setpriv
                .arg(format!("--reuid={uid}"))
                .arg(format!("--regid={gid}"))
                .arg("--clear-groups")
                .arg("--no-new-privs")
                .arg("--")
                .arg(program);
            setpriv
        } else {
            Command::new(program)
        };
        command.args(args).args(extra).env_clear().current_dir(self.path(&workdir(runtime)));
        command.env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
        command.envs(runtime.env());
        command.stdin(Stdio::null());
        command
    }
}

fn copy_tree(from: &Path, to: &Path) {
    let meta = std::fs::metadata(from).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
    if meta.is_dir() {
        std::fs::create_dir_all(to).expect("mkdir");
        for entry in std::fs::read_dir(from).expect("read_dir") {
            let entry = entry.expect("entry");
            copy_tree(&entry.path(), &to.join(entry.file_name()));
        }
    } else {
        std::fs::create_dir_all(to.parent().expect("parent")).expect("mkdir");
        std::fs::copy(from, to).unwrap_or_else(|e| panic!("copy {} -> {}: {e}", from.display(), to.display()));
    }
}

/// The real (first) uid in `/proc/<pid>/status`.
fn uid_of(pid: &str) -> u32 {
    let status = read(&PathBuf::from(format!("/proc/{pid}/status")));
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().next())
        .and_then(|uid| uid.parse().ok())
        .expect("a Uid: line")
}

fn running_as_root() -> bool {
    uid_of("self") == 0
}

fn http_get(port: u16, path: &str) -> (u16, Vec<u8>) {
    use std::io::Write;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    write!(stream, "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").expect("request");
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let split = response.windows(4).position(|w| w == b"\r\n\r\n").expect("an HTTP answer");
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("a status");
    (status, response[split + 4..].to_vec())
}

// ------------------------------------------------------------ kubernetes

/// One YAML document per file, as JSON values, by file name.
fn kubernetes() -> BTreeMap<String, Value> {
    let dir = repo().join("packaging/kubernetes");
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).expect("packaging/kubernetes") {
        let path = entry.expect("entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).expect("a name").to_owned();
        assert!(name.ends_with(".yaml"), "{name}: only .yaml files here");
        let value: Value =
            serde_yaml_ng::from_str(&read(&path)).unwrap_or_else(|e| panic!("{name} is not one YAML document: {e}"));
        files.insert(name, value);
    }
    files
}

/// The manifest of `kind` (exactly one).
fn manifest<'a>(files: &'a BTreeMap<String, Value>, kind: &str) -> &'a Value {
    let found: Vec<&Value> = files.values().filter(|v| v["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "one {kind} in packaging/kubernetes");
    found[0]
}

const SESSION_PLACEHOLDER: &str = "tableros_secret_key: \"\"";
const CONNECTOR_PLACEHOLDER: &str = "connector_secret_key: \"\"";
const CONNECTOR_SECRET: &str = "container-test-connector-secret";

/// The Secret's gateway.yaml with its two placeholders filled in, as an
/// operator would: the session key is the test harness's secret.
fn secret_config_filled(files: &BTreeMap<String, Value>) -> String {
    let text = manifest(files, "Secret")["stringData"]["gateway.yaml"].as_str().expect("stringData.gateway.yaml");
    assert!(text.contains(SESSION_PLACEHOLDER) && text.contains(CONNECTOR_PLACEHOLDER), "placeholders:\n{text}");
    text.replace(SESSION_PLACEHOLDER, &format!("tableros_secret_key: \"{}\"", SECRET))
        .replace(CONNECTOR_PLACEHOLDER, &format!("connector_secret_key: \"{CONNECTOR_SECRET}\""))
}

#[test]
fn kubernetes_manifests_match_the_image_and_the_gateway_config() {
    let file = dockerfile();
    let runtime = file.final_stage();
    let files = kubernetes();

    // kustomization.yaml lists exactly the other files.
    let kustomization = manifest(&files, "Kustomization");
    let mut listed: Vec<&str> =
        kustomization["resources"].as_array().expect("resources").iter().filter_map(Value::as_str).collect();
    listed.sort_unstable();
    let others: Vec<&str> = files.keys().map(String::as_str).filter(|n| *n != "kustomization.yaml").collect();
    assert_eq!(listed, others, "kustomization.yaml resources");

    let deployment = manifest(&files, "Deployment");
    let service = manifest(&files, "Service");
    let secret = manifest(&files, "Secret");
    let pod = &deployment["spec"]["template"]["spec"];
    let pod_labels = &deployment["spec"]["template"]["metadata"]["labels"];
    let containers = pod["containers"].as_array().expect("containers");
    assert_eq!(containers.len(), 1);
    let container = &containers[0];

    assert_eq!(deployment["spec"]["replicas"], 1, "one replica until gateways share state");
    for (key, value) in deployment["spec"]["selector"]["matchLabels"].as_object().expect("matchLabels") {
        assert_eq!(&pod_labels[key], value, "the selector matches the pod's labels");
    }

    // The pod runs as the image's USER, locked down.
    let (uid, gid) = image_user(runtime);
    let pod_security = &pod["securityContext"];
    assert_eq!(pod_security["runAsNonRoot"], true);
    assert_eq!(
        (pod_security["runAsUser"].as_u64(), pod_security["runAsGroup"].as_u64()),
        (Some(uid.into()), Some(gid.into()))
    );
    assert_eq!(pod_security["seccompProfile"]["type"], "RuntimeDefault");
    let security = &container["securityContext"];
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert!(pod["terminationGracePeriodSeconds"].as_u64().is_some_and(|s| s >= 5));
    for kind in ["requests", "limits"] {
        for resource in ["cpu", "memory"] {
            assert!(container["resources"][kind][resource].is_string(), "resources.{kind}.{resource}");
        }
    }

    // Port, probes and Service agree with the image.
    let port = exposed_port(runtime);
    let ports = container["ports"].as_array().expect("ports");
    let http = ports.iter().find(|p| p["containerPort"] == port).expect("the EXPOSEd port");
    let port_name = http["name"].as_str().expect("a named port");
    for probe in ["readinessProbe", "livenessProbe"] {
        let get = &container[probe]["httpGet"];
        assert_eq!((get["path"].as_str(), get["port"].as_str()), (Some("/health"), Some(port_name)), "{probe}");
    }
    for (key, value) in service["spec"]["selector"].as_object().expect("Service selector") {
        assert_eq!(&pod_labels[key], value, "the Service selects the pod");
    }
    let service_port = &service["spec"]["ports"][0];
    assert!(service_port["targetPort"] == port_name || service_port["targetPort"] == port);

    // The Secret is mounted where the image's CMD reads its config, readable
    // by the pod's group only.
    let cmd = exec_form(runtime.one("CMD"));
    assert_eq!(container["args"], serde_json::json!(cmd), "args: the image's CMD");
    let config_arg = cmd.iter().position(|a| a == "--config").and_then(|i| cmd.get(i + 1)).expect("--config");
    let config_in_image = Path::new(&workdir(runtime)).join(config_arg);
    let mount = container["volumeMounts"]
        .as_array()
        .expect("volumeMounts")
        .iter()
        .find(|m| m["mountPath"].as_str().is_some_and(|p| config_in_image.parent() == Some(Path::new(p))));
    let mount =
        mount.unwrap_or_else(|| panic!("nothing mounted at {}", config_in_image.parent().expect("dir").display()));
    assert_eq!(mount["readOnly"], true);
    let volume =
        pod["volumes"].as_array().expect("volumes").iter().find(|v| v["name"] == mount["name"]).expect("volume");
    assert_eq!(volume["secret"]["secretName"], secret["metadata"]["name"]);
    assert_eq!(volume["secret"]["defaultMode"], 0o440);
    assert_eq!(pod_security["fsGroup"].as_u64(), Some(gid.into()), "the file's group is the image's group");
    let file_name = config_in_image.file_name().and_then(|n| n.to_str()).expect("a file name");
    assert!(secret["stringData"][file_name].is_string(), "the Secret holds {file_name}");

    // As shipped, the gateway refuses the Secret's config (empty secrets,
    // so the example never runs with a published key); filled in, it loads
    // and agrees with the deployment.
    let shipped = secret["stringData"][file_name].as_str().expect("text");
    let refusal = GatewayConfig::from_yaml(shipped).expect_err("the placeholders must be refused").to_string();
    assert!(refusal.contains("tableros_secret_key"), "{refusal}");
    let config = GatewayConfig::from_yaml(&secret_config_filled(&files)).expect("the filled-in config loads");
    assert_eq!(config.listen_addr().expect("listen").port(), port, "listen: the containerPort");
    assert_eq!(
        config.workers.map(|w| w.to_string()).as_deref(),
        container["resources"]["limits"]["cpu"].as_str(),
        "one worker per CPU of the limit"
    );
    assert!(!config.pin_workers, "a pod does not own the cores it would pin to");
    assert_dashboard_in_image(runtime, &config, "the Secret's config");
}

#[test]
fn the_image_entry_command_serves_as_its_user_and_stops_cleanly_on_sigterm() {
    let file = dockerfile();
    let runtime = file.final_stage();
    let image = StagedImage::new(runtime);
    let mut argv = exec_form(runtime.one("ENTRYPOINT"));
    argv.extend(exec_form(runtime.one("CMD")));
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let extra = ["--listen", listen.as_str()];

    // As built: the image's own config has no secret, so it refuses to
    // start and says what is missing.
    let mut bare = VolleyProcess::spawn_command(image.command(runtime, &argv, &extra));
    assert_eq!(bare.wait_exit(Duration::from_secs(20)), Some(1), "{}", bare.output());
    assert!(bare.output().contains("tableros_secret_key"), "{}", bare.output());

    // With the Kubernetes Secret's file mounted over it, as the pod has it:
    // mode 0440, group fsGroup (when this test may set owners).
    let files = kubernetes();
    let config_arg = argv.iter().position(|a| a == "--config").and_then(|i| argv.get(i + 1)).expect("--config");
    let config = image.path(&workdir(runtime)).join(config_arg);
    std::fs::write(&config, secret_config_filled(&files)).expect("write the mounted config");
    if running_as_root() {
        use std::os::unix::fs::PermissionsExt;
        let pod = &manifest(&files, "Deployment")["spec"]["template"]["spec"];
        let group = pod["securityContext"]["fsGroup"].as_u64().and_then(|g| u32::try_from(g).ok()).expect("fsGroup");
        let mode = pod["volumes"][0]["secret"]["defaultMode"].as_u64().and_then(|m| u32::try_from(m).ok());
        std::os::unix::fs::chown(&config, Some(0), Some(group)).expect("chown");
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(mode.expect("defaultMode"))).expect("chmod");
    } else {
        eprintln!("not root: the entry command runs as this user, not the image's USER");
    }

    let mut gateway = VolleyProcess::spawn_command(image.command(runtime, &argv, &extra));
    assert!(
        gateway.wait_for_line("volley gateway listening on http://", Duration::from_secs(20)).is_some(),
        "the gateway did not start:\n{}",
        gateway.output()
    );
    let (uid, _) = image_user(runtime);
    if running_as_root() {
        assert_eq!(uid_of(&gateway.child.id().to_string()), uid, "the gateway runs as the image's USER");
    }

    let (status, body) = http_get(port, "/health");
    assert_eq!(status, 200);
    let health: Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(health["status"], "ok");
    let (status, page) = http_get(port, "/");
    assert_eq!(status, 200);
    assert_eq!(page, std::fs::read(repo().join("web/dist/index.html")).expect("index.html"), "the built dashboard");
    let (status, _) = http_get(port, "/app.js");
    assert_eq!(status, 200, "the dashboard's script");

    // A session token signed with the Secret's tableros_secret_key is
    // accepted (101), so the mounted file is the one in force.
    let token = session_token("t1", &["*"]);
    let (_socket, response) = tungstenite::connect(format!("ws://{listen}/stream/{token}")).expect("the session opens");
    assert_eq!(response.status().as_u16(), 101);

    // The image's HEALTHCHECK command, pointed at this port.
    let (_, probe) = healthcheck(runtime.one("HEALTHCHECK"));
    let url = format!("http://{listen}/health");
    let healthy = image.command(runtime, &probe, &[&url]).output().expect("volley health runs");
    assert!(healthy.status.success(), "HEALTHCHECK failed: {}", String::from_utf8_lossy(&healthy.stderr));
    assert!(String::from_utf8_lossy(&healthy.stdout).contains("\"status\":\"ok\""));

    // SIGTERM (the image's STOPSIGNAL): exit 0, after which the health
    // check fails and says why.
    let status = Command::new("kill").arg("-TERM").arg(gateway.child.id().to_string()).status().expect("kill");
    assert!(status.success());
    assert_eq!(gateway.wait_exit(Duration::from_secs(10)), Some(0), "{}", gateway.output());
    assert!(gateway.output().contains("shutting down"), "{}", gateway.output());
    let unhealthy = image.command(runtime, &probe, &[&url]).output().expect("volley health runs");
    assert_eq!(unhealthy.status.code(), Some(1));
    let message = String::from_utf8_lossy(&unhealthy.stderr);
    assert!(message.contains("is the gateway running"), "{message}");
}
