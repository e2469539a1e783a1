//! `kill -9` of `callroute run` at random moments, repeated, then a clean run: every lead is
//! called, and none twice. Uses the built binary for the daemon, the simulator and enqueue.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_callroute");
const LEADS: usize = 150;

struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn start_simulator(dir: &Path) -> (Child, String) {
    let config = write(
        dir,
        "sim.yaml",
        "api_key: k\nattempts_per_second: 100\nconcurrency: 100\nagents:\n  - model_id: m-1\n    attached: [\"+14155550100\", \"+14155550101\", \"+12125550107\", \"+13055550105\"]\ncalls: { ring_ms: 20, talk_ms: 50, answer_rate: 0.8 }\nfaults: { accept_then_timeout_rate: 0.1, hang_ms: 800 }\nseed: 5\n",
    );
    let mut child = Command::new(BIN)
        .args([
            "simulator",
            "--listen",
            "127.0.0.1:0",
            "--config",
            config.to_str().unwrap(),
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line.trim().rsplit(' ').next().unwrap().to_string();
    assert!(base.starts_with("http://127.0.0.1:"), "{line}");
    (child, base)
}

fn sim_log(base: &str) -> Value {
    let url = base
        .trim_end_matches("/v2")
        .trim_start_matches("http://")
        .to_string();
    // A tiny HTTP/1.0 GET, to keep this test free of an HTTP client.
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(&url).unwrap();
    write!(stream, "GET /sim/log HTTP/1.0\r\nHost: {url}\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    serde_json::from_str(response.split("\r\n\r\n").nth(1).unwrap()).unwrap()
}

fn run_daemon(config: &Path) -> Child {
    Command::new(BIN)
        .args(["run", "--config", config.to_str().unwrap()])
        .env("SYNTHFLOW_API_KEY", "k")
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn kill_9_repeatedly_then_restart_loses_nothing_and_calls_no_one_twice() {
    let dir = std::env::temp_dir().join(format!("callroute-kill-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("rules")).unwrap();
    let _scratch = Scratch(dir.clone());
    let (mut simulator, base) = start_simulator(&dir);

    write(
        &dir.join("rules"),
        "rules.yaml",
        "agents: { a: { model_id: m-1 } }\nlimits: { default: { per_minute: 600 } }\nnumbers:\n  \"+14155550100\": {}\n  \"+14155550101\": {}\n  \"+12125550107\": {}\n  \"+13055550105\": {}\ncalling_hours:\n  default: { days: [mon, tue, wed, thu, fri, sat, sun], start: \"00:00\", end: \"24:00\" }\nstate_laws: false\ncampaigns:\n  c:\n    agent: a\n    purpose: informational\n    routes:\n      - numbers: all\n",
    );
    let config = write(
        &dir,
        "callroute.yaml",
        &format!(
            "synthflow: {{ base_url: \"{base}\", attempts_per_second: 25, concurrency: 20, request_timeout: 300ms }}\nrules: {}\nstore: sqlite://{}\nadmin_listen: 127.0.0.1:0\ndialing: {{ poll_interval: 30ms, retry_base: 50ms, retry_max: 300ms, reconcile_delay: 50ms, absent_after: 1s, idle_poll: 100ms, drain_timeout: 2s }}\n",
            dir.join("rules").display(),
            dir.join("queue.db").display()
        ),
    );
    let mut csv = String::from("id,phone,name,campaign\n");
    for i in 0..LEADS {
        csv += &format!(
            "L{i},+1{}555{:04},N{i},c\n",
            ["415", "212", "305", "617"][i % 4],
            2000 + i
        );
    }
    let leads = write(&dir, "leads.csv", &csv);
    let enqueued = Command::new(BIN)
        .args([
            "enqueue",
            "--config",
            config.to_str().unwrap(),
            leads.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        enqueued.status.success(),
        "{}",
        String::from_utf8_lossy(&enqueued.stderr)
    );
    assert!(String::from_utf8_lossy(&enqueued.stdout).contains(&format!("accepted {LEADS}")));

    for (round, pause_ms) in [900u64, 1300, 700, 1600, 1100].into_iter().enumerate() {
        let mut daemon = run_daemon(&config);
        std::thread::sleep(Duration::from_millis(pause_ms));
        daemon.kill().unwrap(); // SIGKILL
        daemon.wait().unwrap();
        let calls = sim_log(&base)["calls"].as_array().unwrap().len();
        eprintln!("round {round}: killed after {pause_ms} ms, {calls} calls so far");
    }

    let mut daemon = run_daemon(&config);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let calls = sim_log(&base)["calls"].as_array().unwrap().len();
        if calls >= LEADS || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500)); // anything extra would show up now
    sigterm(&daemon);
    let status = daemon.wait().unwrap();
    assert!(status.success(), "SIGTERM drains and exits 0: {status:?}");
    let log = sim_log(&base)["calls"].as_array().unwrap().clone();
    let _ = simulator.kill();

    let mut phones: Vec<String> = log
        .iter()
        .map(|c| c["request"]["phone"].as_str().unwrap().to_string())
        .collect();
    phones.sort();
    let total = phones.len();
    phones.dedup();
    assert_eq!(total, phones.len(), "a lead was called twice");
    assert_eq!(phones.len(), LEADS, "every lead was called");
}

fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}
