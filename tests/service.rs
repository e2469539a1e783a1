//! `callroute run` as systemd runs it: the notify protocol over a datagram socket standing in
//! for NOTIFY_SOCKET (READY, RELOADING with MONOTONIC_USEC, watchdog pings, STOPPING),
//! SIGHUP and `callroute reload` taking the same reload path, and SIGTERM exiting 0.

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_callroute");
const TOKEN: &str = "admin-token-4242";

fn rules(number: &str) -> String {
    format!(
        "agents: {{ a: {{ model_id: m-1 }} }}\nnumbers:\n  \"+14155550100\": {{}}\n  \"+12125550107\": {{}}\ncampaigns:\n  c:\n    agent: a\n    routes:\n      - numbers: [\"{number}\"]\n"
    )
}

/// Datagrams until one contains `wanted` (all of them, in order), or panics after `within`.
fn expect(socket: &UnixDatagram, wanted: &str, within: Duration) -> String {
    let deadline = Instant::now() + within;
    let mut buffer = [0u8; 4096];
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        socket
            .set_read_timeout(Some(
                deadline
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(1)),
            ))
            .unwrap();
        if let Ok(n) = socket.recv(&mut buffer) {
            let message = String::from_utf8_lossy(&buffer[..n]).to_string();
            if message.contains(wanted) {
                return message;
            }
            seen.push(message);
        }
    }
    panic!("no {wanted:?} within {within:?}; got {seen:?}");
}

/// A child process killed when dropped, so a failing test leaves none behind (an orphan
/// holding the test's output pipe open would keep `cargo test` waiting).
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl std::ops::Deref for Killed {
    type Target = std::process::Child;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Killed {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

/// `callroute simulator` on a free port with `config`; the child and its base URL.
fn start_simulator(config: &Path) -> (Killed, String) {
    let mut simulator = Killed(
        Command::new(BIN)
            .args(["simulator", "--listen", "127.0.0.1:0", "--config"])
            .arg(config)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    BufReader::new(simulator.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line.trim().rsplit(' ').next().unwrap().to_string();
    (simulator, base)
}

fn signal(pid: u32, name: &str) {
    assert!(
        Command::new("kill")
            .args([&format!("-{name}"), &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
}

fn reload(config: &Path) -> std::process::Output {
    Command::new(BIN)
        .args(["reload", "--config", config.to_str().unwrap()])
        .env("CALLROUTE_ADMIN_TOKEN", TOKEN)
        .output()
        .unwrap()
}

#[test]
fn notify_protocol_reloads_and_shutdown() {
    let dir = std::env::temp_dir().join(format!("callroute-service-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("rules")).unwrap();
    std::fs::write(dir.join("sim.yaml"), "api_key: sk-live-4242-secret\nagents:\n  - model_id: m-1\n    attached: [\"+14155550100\", \"+12125550107\"]\n").unwrap();
    let (mut simulator, base) = start_simulator(&dir.join("sim.yaml"));

    let admin_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let metrics_port = free_port();
    std::fs::write(dir.join("rules/rules.yaml"), rules("+14155550100")).unwrap();
    let config = dir.join("callroute.yaml");
    std::fs::write(
        &config,
        format!("synthflow: {{ base_url: \"{base}\" }}\nrules: {}\nstore: sqlite://{}\nadmin_listen: 127.0.0.1:{admin_port}\nadmin: {{ metrics_listen: 127.0.0.1:{metrics_port} }}\n", dir.join("rules").display(), dir.join("q.db").display()),
    )
    .unwrap();
    let socket_path = dir.join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    let mut daemon = Command::new(BIN)
        .args(["run", "--config", config.to_str().unwrap()])
        .env("SYNTHFLOW_API_KEY", "sk-live-4242-secret")
        .env("CALLROUTE_ADMIN_TOKEN", TOKEN)
        .env("CALLROUTE_LOG", "info")
        .args(["--log-format", "json"])
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "1500000")
        .stderr(std::fs::File::create(dir.join("daemon.log")).unwrap())
        .spawn()
        .unwrap();

    let ready = expect(&socket, "READY=1", Duration::from_secs(20));
    assert!(ready.contains("STATUS=rules "), "{ready}");
    expect(&socket, "WATCHDOG=1", Duration::from_secs(3));

    // SIGHUP reloads: RELOADING=1 with the monotonic time, then READY=1 again.
    std::fs::write(dir.join("rules/rules.yaml"), rules("+12125550107")).unwrap();
    signal(daemon.id(), "HUP");
    let reloading = expect(&socket, "RELOADING=1", Duration::from_secs(5));
    assert!(reloading.contains("MONOTONIC_USEC="), "{reloading}");
    expect(&socket, "READY=1", Duration::from_secs(5));

    // `callroute reload` takes the same path, waits for the result, and fails on broken files.
    std::fs::write(
        dir.join("rules/rules.yaml"),
        "campaigns:\n  c:\n    agent: nobody\n    routes: []\n",
    )
    .unwrap();
    let broken = reload(&config);
    assert_eq!(broken.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&broken.stderr);
    assert!(
        stderr.contains("rules.yaml:3:12: unknown agent `nobody`")
            && stderr.contains("the running rules stay"),
        "{stderr}"
    );
    let metrics = http(admin_port, "GET", "/metrics", "");
    assert!(
        metrics.contains("callroute_rules_reload_success 0"),
        "broken files show in the metrics"
    );
    let status = http(admin_port, "GET", "/v1/status", "");
    assert!(status.contains("\"files_on_disk_broken\":true"), "{status}");
    std::fs::write(dir.join("rules/rules.yaml"), rules("+14155550100")).unwrap();
    let fixed = reload(&config);
    assert!(
        fixed.status.success(),
        "{}",
        String::from_utf8_lossy(&fixed.stderr)
    );
    let stdout = String::from_utf8_lossy(&fixed.stdout);
    assert!(
        stdout.starts_with("reloaded") || stdout.starts_with("unchanged"),
        "{stdout}"
    );

    // Metrics: a lead goes through, and its number never becomes a label.
    let lead =
        r#"{"phone":"+13055550199","name":"M","campaign":"c","timezone":"Pacific/Kiritimati"}"#;
    let answer = http(admin_port, "POST", "/v1/leads", lead);
    assert!(answer.contains("\"accepted\":1"), "{answer}");
    // A campaign the rules do not have (here a phone number in the wrong column).
    let stray = r#"{"phone":"+13055550198","name":"S","campaign":"+13055550777"}"#;
    let answer = http(admin_port, "POST", "/v1/leads", stray);
    assert!(answer.contains("\"accepted\":1"), "{answer}");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let metrics = loop {
        let metrics = http(admin_port, "GET", "/metrics", "");
        let both = metrics.contains("campaign=\"c\"") && metrics.contains("campaign=\"unknown\"");
        if both || std::time::Instant::now() > deadline {
            break metrics;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    for name in [
        "callroute_build_info",
        "callroute_leads{state=",
        "callroute_decisions_total{",
        "callroute_rules_reload_success",
        "callroute_rules_info{hash=",
        "callroute_pool_numbers{agent=\"a\"} 2",
        "callroute_api_request_duration_seconds_bucket{endpoint=\"GET /assistants/{model_id}\"",
        "callroute_live_calls",
    ] {
        assert!(metrics.contains(name), "missing {name} in\n{metrics}");
    }
    assert!(
        !metrics.contains("3055550199") && !metrics.contains("3055550777"),
        "a lead's number leaked into a label"
    );
    assert!(metrics.contains("campaign=\"unknown\""), "{metrics}");
    // The metrics listener serves /metrics alone, without the token, for Prometheus.
    let open_metrics = raw_http(metrics_port, "GET", "/metrics", "", None, "text/plain");
    assert!(open_metrics.starts_with("HTTP/1.0 200"), "{open_metrics}");
    assert!(
        open_metrics.contains("callroute_build_info"),
        "{open_metrics}"
    );
    let no_status = raw_http(metrics_port, "GET", "/v1/status", "", None, "text/plain");
    assert!(no_status.starts_with("HTTP/1.0 404"), "{no_status}");
    assert_eq!(
        metrics.matches("callroute_rules_info{").count(),
        1,
        "only the running rules' hash is exported, after three reloads:\n{metrics}"
    );

    // Writes need the token, and a lead upload must say what it is.
    // Who may do what: writes need the token, so do reads (no open_reads), a lead upload
    // must say what it is, health is open.
    for (method, path, body, token, content_type, expected) in [
        ("POST", "/v1/leads", lead, None, "application/json", "401"),
        (
            "POST",
            "/v1/reload",
            "",
            Some("guess"),
            "application/json",
            "401",
        ),
        ("POST", "/v1/leads", lead, Some(TOKEN), "text/plain", "415"),
        ("GET", "/v1/status", "", None, "application/json", "401"),
        ("GET", "/healthz", "", None, "application/json", "200"),
    ] {
        let answer = raw_http(admin_port, method, path, body, token, content_type);
        assert!(
            answer.starts_with(&format!("HTTP/1.0 {expected}")),
            "{method} {path} with token {token:?} as {content_type}: {answer}"
        );
    }

    let view = Command::new(BIN)
        .args(["status", "--config", config.to_str().unwrap()])
        .env("CALLROUTE_ADMIN_TOKEN", TOKEN)
        .output()
        .unwrap();
    let view = String::from_utf8_lossy(&view.stdout);
    assert!(
        view.contains("rules     ") && view.contains("queue     ") && view.contains("+14155550100"),
        "{view}"
    );

    // A comment edited: the same warning is not logged again.
    std::fs::write(
        dir.join("rules/rules.yaml"),
        format!("# edited\n{}", rules("+14155550100")),
    )
    .unwrap();
    assert!(reload(&config).status.success());

    signal(daemon.id(), "TERM");
    expect(&socket, "STOPPING=1", Duration::from_secs(5));
    let status = daemon.wait().unwrap();
    assert!(status.success(), "SIGTERM exits 0: {status:?}");
    let _ = simulator.kill();
    let _ = simulator.wait();

    // JSON logs: one object a line, one event per decision, and never the API key.
    let log = std::fs::read_to_string(dir.join("daemon.log")).unwrap();
    assert!(
        !log.contains("sk-live-4242-secret"),
        "the API key leaked into the log"
    );
    let events: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect();
    assert!(
        events
            .iter()
            .any(|e| e["message"] == "decision" && e["campaign"] == "c"),
        "{log}"
    );
    let said = |text: &str| {
        events
            .iter()
            .any(|e| e["message"].as_str().is_some_and(|m| m.contains(text)))
    };
    assert!(said("SIGTERM: stopping"), "SIGTERM is logged: {log}");
    assert!(said("stopped"), "{log}");
    // A reload logs only warnings the rules before it did not have: this one at start and
    // when the route came back to San Francisco, not after the comment was edited.
    let warning = "number +12125550107 is selected by no route";
    let times = events
        .iter()
        .filter(|e| e["message"].as_str().is_some_and(|m| m.contains(warning)))
        .count();
    assert_eq!(times, 2, "{log}");
    assert!(said("1 warning(s) as before"), "{log}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A tiny HTTP/1.0 exchange with the admin listener, with the token; returns the body.
fn http(port: u16, method: &str, path: &str, body: &str) -> String {
    let content_type = if body.starts_with('{') {
        "application/json"
    } else {
        "text/csv"
    };
    raw_http(port, method, path, body, Some(TOKEN), content_type)
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string()
}

/// The whole response, status line first.
fn raw_http(
    port: u16,
    method: &str,
    path: &str,
    body: &str,
    token: Option<&str>,
    content_type: &str,
) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let authorization = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: localhost\r\n{authorization}Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

/// `callroute run` with `config_text` (and the notify socket, if given); the child.
fn run_daemon(dir: &Path, config_text: &str, notify: Option<&Path>) -> std::process::Child {
    let config = dir.join("callroute.yaml");
    std::fs::write(&config, config_text).unwrap();
    let mut command = Command::new(BIN);
    command
        .args(["run", "--config", config.to_str().unwrap()])
        .env("SYNTHFLOW_API_KEY", "wrong-key")
        .env("WATCHDOG_USEC", "1500000")
        .stderr(Stdio::piped());
    if let Some(socket) = notify {
        command.env("NOTIFY_SOCKET", socket);
    }
    command.spawn().unwrap()
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("callroute-service-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("rules")).unwrap();
    std::fs::write(dir.join("rules/rules.yaml"), rules("+14155550100")).unwrap();
    dir
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn configuration_found_wrong_at_start_exits_78() {
    let dir = scratch("exit78");
    // A store that cannot be opened.
    let child = run_daemon(
        &dir,
        &format!(
            "rules: {}\nstore: sqlite:///nonexistent/dir/q.db\nadmin_listen: 127.0.0.1:{}\n",
            dir.join("rules").display(),
            free_port()
        ),
        None,
    );
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(stderr.contains("cannot open the store"), "{stderr}");

    // A key Synthflow refuses.
    std::fs::write(
        dir.join("sim.yaml"),
        "api_key: the-right-key\nagents:\n  - model_id: m-1\n    attached: [\"+14155550100\"]\n",
    )
    .unwrap();
    let (mut simulator, base) = start_simulator(&dir.join("sim.yaml"));
    let child = run_daemon(
        &dir,
        &format!(
            "synthflow: {{ base_url: \"{base}\" }}\nrules: {}\nstore: sqlite://{}\nadmin_listen: 127.0.0.1:{}\n",
            dir.join("rules").display(),
            dir.join("q.db").display(),
            free_port()
        ),
        None,
    );
    let out = child.wait_with_output().unwrap();
    let _ = simulator.kill();
    let _ = simulator.wait();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(stderr.contains("refused the API key"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_hung_api_never_starves_the_watchdog() {
    let dir = scratch("hung");
    // Synthflow that accepts connections and never answers.
    let hung = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hung_port = hung.local_addr().unwrap().port();
    let socket_path = dir.join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    let admin_port = free_port();
    let mut daemon = run_daemon(
        &dir,
        &format!(
            "synthflow: {{ base_url: \"http://127.0.0.1:{hung_port}/v2\", request_timeout: 30s }}\nrules: {}\nstore: sqlite://{}\nadmin_listen: 127.0.0.1:{admin_port}\n",
            dir.join("rules").display(),
            dir.join("q.db").display(),
        ),
        Some(&socket_path),
    );
    // Up before Synthflow answers anything: READY at once, the admin port answering.
    let started = Instant::now();
    let ready = expect(&socket, "READY=1", Duration::from_secs(10));
    assert!(ready.contains("STATUS="), "{ready}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "READY waited {:?} for a hung API",
        started.elapsed()
    );
    let early = raw_http(admin_port, "GET", "/readyz", "", None, "text/plain");
    assert!(early.starts_with("HTTP/1.0 503"), "{early}");
    assert!(early.contains("pools are not read yet"), "{early}");
    // For 6 s the first read of the pools hangs: pings keep coming.
    let mut last = Instant::now();
    let mut longest = Duration::ZERO;
    let until = Instant::now() + Duration::from_secs(6);
    while Instant::now() < until {
        expect(&socket, "WATCHDOG=1", Duration::from_secs(3));
        longest = longest.max(last.elapsed());
        last = Instant::now();
    }
    assert!(
        longest < Duration::from_millis(1500),
        "a watchdog gap of {longest:?} against WatchdogSec 1.5 s"
    );
    let ready = raw_http(admin_port, "GET", "/readyz", "", None, "text/plain");
    assert!(ready.starts_with("HTTP/1.0 503"), "{ready}");
    // SIGTERM while the first read still hangs: out at once.
    let asked = Instant::now();
    signal(daemon.id(), "TERM");
    assert!(daemon.wait().unwrap().success());
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "SIGTERM took {:?}",
        asked.elapsed()
    );
    drop(hung);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A scratch directory for the pool commands: a simulator whose agent `m-1` has SF and
/// Miami attached (`sim_extra`: more of its configuration), managed rules with SF and New
/// York, and a configuration naming both. Returns the directory, the simulator and the
/// configuration's path.
fn pool_scratch(name: &str, sim_extra: &str) -> (std::path::PathBuf, Killed, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("callroute-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("rules")).unwrap();
    std::fs::write(
        dir.join("sim.yaml"),
        format!("api_key: k\nput_replaces: true\n{sim_extra}agents:\n  - model_id: m-1\n    attached: [\"+14155550100\", \"+13055550105\"]\n"),
    )
    .unwrap();
    let (simulator, base) = start_simulator(&dir.join("sim.yaml"));
    std::fs::write(
        dir.join("rules/rules.yaml"),
        rules("+14155550100")
            .replace("model_id: m-1", "model_id: m-1, manage_pool: true")
            .replace("numbers: [\"+14155550100\"]", "numbers: all"),
    )
    .unwrap();
    let config = dir.join("callroute.yaml");
    std::fs::write(
        &config,
        format!(
            "synthflow: {{ base_url: \"{base}\" }}\nrules: {}\nstore: sqlite://{}\n",
            dir.join("rules").display(),
            dir.join("q.db").display()
        ),
    )
    .unwrap();
    (dir, simulator, config)
}

#[test]
fn pool_plan_exits_2_until_apply_and_numbers_rest_is_kept_and_audited() {
    let (dir, mut simulator, config) = pool_scratch("pool-cli", "");
    let callroute = |args: &[&str]| {
        Command::new(BIN)
            .args(args)
            .args(["--config", config.to_str().unwrap()])
            .env("SYNTHFLOW_API_KEY", "k")
            .env("USER", "ops-anna")
            .output()
            .unwrap()
    };
    let text = |out: &std::process::Output| String::from_utf8_lossy(&out.stdout).to_string();

    let status = callroute(&["pool", "status"]);
    assert!(status.status.success(), "{status:?}");
    let shown = text(&status);
    assert!(
        shown.contains("+13055550105") && shown.contains("in no rule"),
        "{shown}"
    );
    assert!(
        shown.contains("+12125550107") && shown.contains("NOT attached"),
        "{shown}"
    );

    let plan = callroute(&["pool", "plan"]);
    assert_eq!(plan.status.code(), Some(2), "{plan:?}");
    let shown = text(&plan);
    assert!(shown.contains("+ attach +12125550107"), "{shown}");
    assert!(shown.contains("- detach +13055550105 (slug "), "{shown}");

    // Not on a terminal and without --yes: nothing changes.
    let refused = callroute(&["pool", "apply"]);
    assert_eq!(refused.status.code(), Some(1));
    assert_eq!(callroute(&["pool", "plan"]).status.code(), Some(2));

    let applied = callroute(&["pool", "apply", "--yes"]);
    assert!(applied.status.success(), "{applied:?}");
    assert!(
        text(&applied).contains("the API's PUT replaced the pool"),
        "{}",
        text(&applied)
    );
    let plan = callroute(&["pool", "plan"]);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));
    assert!(text(&plan).contains("in sync (2 numbers)"));

    let rest = callroute(&[
        "numbers",
        "rest",
        "+14155550100",
        "--for",
        "72h",
        "--reason",
        "flagged by carrier",
    ]);
    assert!(rest.status.success(), "{rest:?}");
    let status = text(&callroute(&["pool", "status"]));
    assert!(status.contains("resting until"), "{status}");
    assert!(status.contains("(manual): flagged by carrier"), "{status}");
    let resume = callroute(&["numbers", "resume", "+14155550100"]);
    assert!(text(&resume).contains("rest ended"));
    assert!(!text(&callroute(&["pool", "status"])).contains("resting until"));

    let bad = callroute(&[
        "numbers", "rest", "555-0100", "--for", "1h", "--reason", "x",
    ]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("`555-0100`"));
    // A valid number no rule has: refused, named, nothing rested.
    let stranger = callroute(&[
        "numbers",
        "rest",
        "+12125559999",
        "--for",
        "1h",
        "--reason",
        "x",
    ]);
    assert_eq!(stranger.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&stranger.stderr).contains("not in the rules"),
        "{stranger:?}"
    );

    // Who did what, in the store.
    let audit = std::process::Command::new("sqlite3")
        .arg(dir.join("q.db"))
        .arg("SELECT actor || ' ' || action FROM audit ORDER BY id")
        .output();
    if let Ok(audit) = audit {
        let lines = String::from_utf8_lossy(&audit.stdout).to_string();
        if audit.status.success() {
            assert_eq!(
                lines.lines().collect::<Vec<_>>(),
                ["ops-anna pool apply", "ops-anna rest", "ops-anna resume"]
            );
        }
    }
    let _ = simulator.kill();
    let _ = simulator.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

/// `pool apply` with a number the workspace does not own: the number is named, the rest is
/// attached, nothing is detached, it never says "applied"; status and plan flag it. Every
/// printing pool command ends quietly when its reader has gone.
#[test]
fn pool_apply_names_a_refused_number_and_never_says_applied() {
    // New York (+12125550107) is in the rules but not the workspace's.
    let (dir, mut simulator, config) = pool_scratch("pool-refused", "workspace_numbers: []\n");
    let command = |args: &[&str]| {
        let mut command = Command::new(BIN);
        command
            .args(args)
            .args(["--config", config.to_str().unwrap()])
            .env("SYNTHFLOW_API_KEY", "k");
        command
    };
    let run = |args: &[&str]| command(args).output().unwrap();
    let text = |out: &std::process::Output| String::from_utf8_lossy(&out.stdout).to_string();

    let applied = run(&["pool", "apply", "--yes"]);
    let shown = text(&applied);
    assert_eq!(applied.status.code(), Some(1), "{shown}");
    assert!(
        shown.contains("REFUSED +12125550107 (HTTP 404"),
        "the refused number is named: {shown}"
    );
    assert!(
        shown.contains("kept +13055550105 attached"),
        "nothing leaves the pool while a replacement is refused: {shown}"
    );
    assert!(
        !shown.lines().any(|l| l.trim() == "applied"),
        "never 'applied' on failure: {shown}"
    );
    assert!(shown.contains("NOT applied as planned"), "{shown}");

    let status = text(&run(&["pool", "status"]));
    let row = status
        .lines()
        .find(|l| l.contains("+12125550107"))
        .unwrap_or_else(|| panic!("{status}"));
    assert!(row.contains("REFUSED by the API at"), "{row}");
    assert!(row.contains("Phone number not found"), "{row}");
    assert!(status.contains("+13055550105"), "{status}");
    let plan = run(&["pool", "plan"]);
    assert_eq!(plan.status.code(), Some(2));
    assert!(
        text(&plan).contains("+12125550107: REFUSED by the API at"),
        "{}",
        text(&plan)
    );

    for args in [&["pool", "status"][..], &["pool", "plan"][..]] {
        let out = common::with_stdout_closed(command(args));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(
            matches!(out.status.code(), Some(0) | Some(2)) && !stderr.contains("error"),
            "{args:?}: {stderr}"
        );
    }
    let _ = simulator.kill();
    let _ = simulator.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

/// A database error while the daemon reads its ledger at start (a fail-over, a connection
/// cut) is not configuration: exiting 78 would keep systemd from ever restarting it. The
/// daemon says so and tries again until the store answers. (PostgreSQL; skipped without.)
#[test]
fn a_store_failing_while_the_daemon_starts_is_waited_for() {
    use sqlx::Connection;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let Some(schema) = runtime.block_on(common::pg_schema("start_store_away")) else {
        return;
    };
    let dir = scratch("store-away");
    let admin_port = free_port();
    let config = format!(
        "synthflow: {{ base_url: \"http://127.0.0.1:1/v2\" }}\nrules: {}\nstore: \"{}\"\nadmin_listen: 127.0.0.1:{admin_port}\n",
        dir.join("rules").display(),
        common::pg_store_url(&schema),
    );
    std::fs::write(dir.join("callroute.yaml"), &config).unwrap();
    let migrated = Command::new(BIN)
        .args([
            "migrate",
            "--config",
            dir.join("callroute.yaml").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(migrated.status.success(), "{migrated:?}");
    let sql = |statement: &str| {
        runtime.block_on(async {
            let mut db = sqlx::PgConnection::connect(&common::pg_store_url(&schema))
                .await
                .unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(statement.to_string()))
                .execute(&mut db)
                .await
                .unwrap();
        })
    };
    // The ledger unreadable while the daemon starts.
    sql("ALTER TABLE attempts RENAME TO attempts_away");
    let mut daemon = Killed(run_daemon(&dir, &config, None));
    let mut stderr = BufReader::new(daemon.stderr.take().unwrap());
    let mut line = String::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !line.contains("the store failed while starting") {
        line.clear();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "the daemon ended");
        assert!(Instant::now() < deadline, "no word of the store failing");
    }
    assert!(
        daemon.try_wait().unwrap().is_none(),
        "still running: {line}"
    );
    sql("ALTER TABLE attempts_away RENAME TO attempts");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let answer = std::net::TcpStream::connect(("127.0.0.1", admin_port))
            .map(|_| raw_http(admin_port, "GET", "/healthz", "", None, "text/plain"));
        if answer.is_ok_and(|a| a.starts_with("HTTP/1.0 200")) {
            break;
        }
        assert!(Instant::now() < deadline, "the daemon never came up");
        std::thread::sleep(Duration::from_millis(100));
    }
    signal(daemon.id(), "TERM");
    assert!(daemon.wait().unwrap().success());
    let _ = std::fs::remove_dir_all(&dir);
}
