//! Test helpers shared by the integration tests: real servers on free loopback ports, and the bullmq fixture.

pub mod cluster;
pub mod rbac;
pub mod registry;

use std::collections::BTreeMap;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ballast::observation::QueueCounts;

pub fn require(binary: &str, install: &str) {
    let found = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(binary).is_file()));
    assert!(found, "`{binary}` is not on PATH; install it ({install}) or run .ci/services.sh");
}

/// A test CA and a certificate it signs for 127.0.0.1 (webpki refuses a self-signed certificate as a server's),
/// written into `dir`: (ca.pem, cert.pem, key.pem).
pub fn test_certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    require("openssl", "apt-get install -y openssl");
    let script = "set -e
        openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=ballast-test-ca -keyout ca.key -out ca.pem
        openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout key.pem -out server.csr
        echo subjectAltName=IP:127.0.0.1 > san.ext
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile san.ext -out cert.pem";
    let output = Command::new("sh").args(["-c", script]).current_dir(dir).output().expect("running openssl");
    assert!(output.status.success(), "openssl failed: {}", String::from_utf8_lossy(&output.stderr));
    // Readable by a server that drops privileges.
    for file in ["ca.pem", "cert.pem", "key.pem"] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.join(file), std::fs::Permissions::from_mode(0o644)).expect("chmod");
    }
    (dir.join("ca.pem"), dir.join("cert.pem"), dir.join("key.pem"))
}

/// A child process killed (and reaped) when the test ends, however it ends.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free loopback port").port()
}

pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    extra_args: Vec<String>,
    dir: tempfile::TempDir,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        Self::start_with(&[])
    }

    /// `{port}` in `extra_args` stands for the server's port.
    pub fn start_with(extra_args: &[&str]) -> RedisServer {
        require("redis-server", "apt-get install -y redis-server");
        let mut server = RedisServer {
            child: None,
            port: free_port(),
            extra_args: extra_args.iter().map(|a| a.to_string()).collect(),
            dir: tempfile::tempdir().expect("temp dir"),
        };
        server.spawn();
        server
    }

    pub fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(self.extra_args.iter().map(|arg| arg.replace("{port}", &self.port.to_string())))
            .stdout(Stdio::null())
            .spawn()
            .expect("starting redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not listen on port {} within 10s", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self, userinfo: &str, db: u32) -> String {
        format!("redis://{userinfo}127.0.0.1:{}/{db}", self.port)
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let status = Command::new("kill").args([signal, &pid]).status().expect("kill");
        assert!(status.success(), "kill {signal} {pid} failed");
    }

    /// A raw command through redis-rs, for seeding and ACL setup.
    pub fn cmd(&self, url: &str, args: &[&str]) -> redis::RedisResult<redis::Value> {
        let mut connection = redis::Client::open(url)?.get_connection()?;
        let mut cmd = redis::cmd(args[0]);
        for arg in &args[1..] {
            cmd.arg(*arg);
        }
        cmd.query(&mut connection)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/bullmq")
}

/// `npm ci` once per test binary when tests/bullmq/node_modules is missing.
pub fn ensure_node_modules() {
    static INSTALLED: Mutex<bool> = Mutex::new(false);
    let mut installed = INSTALLED.lock().unwrap_or_else(|e| e.into_inner());
    if *installed || fixtures_dir().join("node_modules/bullmq").is_dir() {
        *installed = true;
        return;
    }
    require("npm", "apt-get install -y npm");
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(fixtures_dir())
        .status()
        .expect("running npm ci");
    assert!(status.success(), "npm ci in tests/bullmq failed");
    *installed = true;
}

pub type BullmqCounts = BTreeMap<String, (QueueCounts, bool)>;

/// Runs fixture.mjs and returns what it printed per queue (see its header for the fields).
pub fn fixture_json(
    command: &str,
    url: &str,
    prefix: &str,
    pause: &[&str],
    queues: &[&str],
) -> BTreeMap<String, serde_json::Value> {
    require("node", "apt-get install -y nodejs");
    ensure_node_modules();
    let mut args = vec!["fixture.mjs", command, "--url", url, "--prefix", prefix];
    for queue in pause {
        args.extend(["--pause", queue]);
    }
    args.extend(queues);
    let output = Command::new("node").args(&args).current_dir(fixtures_dir()).output().expect("running node");
    assert!(output.status.success(), "fixture.mjs {command} failed: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("fixture JSON")
}

/// Runs fixture.mjs and parses what `getJobCounts()` printed.
pub fn fixture(command: &str, url: &str, prefix: &str, pause: &[&str], queues: &[&str]) -> BullmqCounts {
    fixture_json(command, url, prefix, pause, queues)
        .into_iter()
        .map(|(queue, v)| {
            let n = |field: &str| v[field].as_u64().unwrap_or_else(|| panic!("{queue}: no count {field} in {v}"));
            let counts = QueueCounts {
                waiting: n("waiting"),
                prioritized: n("prioritized"),
                paused: n("paused"),
                active: n("active"),
                delayed: n("delayed"),
                failed: n("failed"),
                waiting_children: n("waiting-children"),
                completed: n("completed"),
            };
            (queue, (counts, v["isPaused"].as_bool().expect("isPaused")))
        })
        .collect()
}
