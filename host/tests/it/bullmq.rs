//! The BullMQ source against a real redis-server and jobs made by the real `bullmq` npm package
//! (tests/bullmq/fixture.mjs): the counts must equal `Queue.getJobCounts()` in every state. Also the exporter's
//! output through `promtool check metrics`, and the `ballast queues` / `ballast exporter` commands.
//!
//! Needs `redis-server`, `node`/`npm` and `promtool` on PATH (.ci/services.sh installs them). Each test starts its
//! own redis-server on a free loopback port.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common;

use ballast::export::Metrics;
use ballast::observation::QueueCounts;
use ballast::sources::bullmq::{BullmqError, BullmqSource, ConnectOptions, QueueState};
use ballast::spec::QueueRef;
use common::*;

fn refs(prefix: &str, queues: &[&str]) -> Vec<QueueRef> {
    queues.iter().map(|name| QueueRef { name: name.to_string(), prefix: Some(prefix.to_string()) }).collect()
}

async fn read(source: &BullmqSource, prefix: &str, queues: &[&str]) -> BullmqCounts {
    let states = source.counts(&refs(prefix, queues)).await.expect("collection");
    queues
        .iter()
        .zip(states)
        .map(|(queue, state)| {
            let QueueState { counts, is_paused, .. } = state.unwrap_or_else(|e| panic!("queue {queue}: {e}"));
            (queue.to_string(), (counts, is_paused))
        })
        .collect()
}

fn options(timeout: Duration) -> ConnectOptions {
    ConnectOptions { timeout, ca_cert_pem: None }
}

#[tokio::test]
async fn counts_equal_bullmq_get_job_counts_in_every_state() {
    let server = RedisServer::start();
    let url = server.url("", 0);
    let queues = ["stt", "mt", "tts-paused", "never-used"];
    let expected = fixture("populate", &url, "bull", &["tts-paused"], &queues[..3]);
    let custom_prefix = fixture("populate", &url, "acme", &[], &["stt"]);

    let source = BullmqSource::connect(&url, options(Duration::from_secs(5))).await.expect("connect");
    assert_eq!(read(&source, "bull", &queues[..3]).await, expected);
    let states = source.counts(&refs("bull", &queues)).await.expect("collection");
    let missing = states[3].as_ref().expect_err("a queue without keys is unavailable, not 0 jobs");
    assert!(matches!(missing, BullmqError::Missing { .. }), "{missing:?}");
    assert_eq!(missing.queue(), Some("bull:never-used"));
    let message = missing.to_string();
    assert!(message.contains("bull:never-used") && message.contains("database number"), "{message}");
    assert_eq!(read(&source, "acme", &["stt"]).await, custom_prefix);

    // The fixture really covered every state, and the paused queue really is paused (BullMQ 6 keeps its jobs in
    // `wait`), so the equality above is not between zeros.
    for (queue, (counts, _)) in &expected {
        let QueueCounts { waiting, prioritized, active, delayed, failed, waiting_children, completed, .. } = *counts;
        for (state, n) in [
            ("waiting", waiting),
            ("prioritized", prioritized),
            ("active", active),
            ("delayed", delayed),
            ("failed", failed),
            ("waiting-children", waiting_children),
            ("completed", completed),
        ] {
            assert!(n > 0, "fixture made no {state} job in {queue}: {counts:?}");
        }
    }
    assert!(expected["tts-paused"].1 && !expected["stt"].1);
}

/// The arrivals counter is the number of `Queue.add` calls, and the oldest waiting job is the one BullMQ hands out
/// next, as bullmq itself reports them; both reach the exported series. Values past their bounds are not read.
#[tokio::test]
async fn jobs_added_and_the_oldest_waiting_job_are_what_bullmq_reports() {
    let server = RedisServer::start();
    let url = server.url("", 0);
    let queues = ["stt", "tts-paused"];
    let expected = fixture_json("populate", &url, "bull", &["tts-paused"], &queues);
    let source = BullmqSource::connect(&url, options(Duration::from_secs(5))).await.expect("connect");
    let states = source.counts(&refs("bull", &queues)).await.expect("collection");
    let metrics = Metrics::new().expect("metrics");
    for (queue, state) in queues.iter().zip(states) {
        let state = state.unwrap_or_else(|e| panic!("{queue}: {e}"));
        let added = expected[*queue]["added"].as_u64().expect("added");
        assert!(added > 10, "{queue}: the fixture added jobs");
        assert_eq!(state.jobs_added, Some(added), "{queue}");
        let ready = expected[*queue]["oldestWaitingReadyMs"].as_u64().expect("a job waits");
        assert_eq!(state.oldest_waiting_since_ms, Some(ready), "{queue}");
        metrics.record_queue(queue, &state);
    }
    let text = metrics.encode();
    promtool_check(&text);
    let added = expected["stt"]["added"].as_f64().unwrap();
    assert_eq!(sample(&text, "ballast_queue_jobs_added_total{queue_name=\"stt\"}"), Some(added));
    let age = sample(&text, "ballast_queue_oldest_waiting_seconds{queue_name=\"stt\"}").expect("oldest wait");
    assert!(age > 0.0 && age < 600.0, "the fixture's jobs were added moments ago: {age}");

    // At and just past the bounds: a 20-digit counter is read, 21 digits are not a counter; a job time one
    // digit too long is not read; a wait list past MARKER_CHECK_MAX_BYTES has its end left unread.
    let seed = |args: &[&str]| server.cmd(&url, args).expect("seeding");
    seed(&["SET", "bull:max:id", "18446744073709551615"]);
    seed(&["SET", "bull:over:id", "184467440737095516150"]);
    seed(&["RPUSH", "bull:long-time:wait", "7"]);
    seed(&["HSET", "bull:long-time:7", "timestamp", "170000000000000000000", "delay", "0"]);
    seed(&["RPUSH", "bull:ok-time:wait", "7"]);
    seed(&["HSET", "bull:ok-time:7", "timestamp", "1700000000000", "delay", "500"]);
    let ids: Vec<String> = (0..5000).map(|n| n.to_string()).collect();
    let long: Vec<&str> = ["RPUSH", "bull:long:wait"].into_iter().chain(ids.iter().map(String::as_str)).collect();
    seed(&long);
    seed(&["HSET", "bull:0", "timestamp", "1700000000000"]);
    let queues = ["max", "over", "long-time", "ok-time", "long"];
    let states = source.counts(&refs("bull", &queues)).await.expect("collection");
    assert_eq!(states[0].as_ref().expect("max").jobs_added, Some(u64::MAX));
    let err = states[1].as_ref().expect_err("21 digits").to_string();
    assert!(err.contains("bull:over:id is not BullMQ's job counter"), "{err}");
    assert_eq!(states[2].as_ref().expect("long-time").oldest_waiting_since_ms, None);
    assert_eq!(states[3].as_ref().expect("ok-time").oldest_waiting_since_ms, Some(1_700_000_000_500));
    let long = states[4].as_ref().expect("long");
    assert_eq!((long.counts.waiting, long.oldest_waiting_since_ms), (5000, None));
    metrics.record_queue("long", long);
    assert_eq!(sample(&metrics.encode(), "ballast_queue_oldest_waiting_seconds{queue_name=\"long\"}"), None);
}

#[tokio::test]
async fn legacy_markers_and_the_bullmq5_paused_list_count_as_bullmq_counts_them() {
    let server = RedisServer::start();
    let url = server.url("", 0);
    // BullMQ 4 left `0:<timestamp>` markers at the tail of the wait list; BullMQ 5 paused by renaming wait to
    // paused. getCounts discounts (and pops) a tail marker in both lists.
    for args in [
        &["RPUSH", "bull:legacy:wait", "3", "2", "1", "0:1700000000000"][..],
        &["RPUSH", "bull:legacy:paused", "9", "8", "0:1"],
        &["HSET", "bull:legacy:meta", "paused", "1"],
        &["RPUSH", "bull:marker-only:wait", "0:1700000000000"],
        &["RPUSH", "bull:v5-paused:paused", "7", "6", "5"],
        &["HSET", "bull:v5-paused:meta", "paused", "1"],
        &["ZADD", "bull:v5-paused:delayed", "4096", "4"],
    ] {
        server.cmd(&url, args).expect("seeding");
    }
    let queues = ["legacy", "marker-only", "v5-paused"];
    let source = BullmqSource::connect(&url, options(Duration::from_secs(5))).await.expect("connect");
    let before = read(&source, "bull", &queues).await;
    // Run BullMQ only after our read: its getCounts pops the markers.
    let expected = fixture("counts", &url, "bull", &[], &queues);
    assert_eq!(before, expected);
    assert_eq!(before["legacy"].0.waiting, 3);
    assert_eq!(before["legacy"].0.paused, 2);
    assert_eq!(before["v5-paused"].0.paused, 3);
    assert_eq!(read(&source, "bull", &queues).await, expected, "the markers BullMQ popped changed nothing");
}

#[tokio::test]
async fn a_read_only_acl_user_is_enough() {
    let server = RedisServer::start();
    let admin = server.url("", 0);
    let expected = fixture("populate", &admin, "bull", &[], &["stt"]);
    let acl = |args: &[&str]| server.cmd(&admin, args).expect("ACL SETUSER");
    acl(&["ACL", "SETUSER", "reader", "on", ">readpw", "~*", "resetchannels", "-@all", "+@read", "+ping"]);
    acl(&["ACL", "SETUSER", "other-keys", "on", ">otherpw", "~acme:*", "-@all", "+@read", "+ping"]);

    let reader = server.url("reader:readpw@", 0);
    let denied = server.cmd(&reader, &["SET", "bull:stt:wait", "x"]).expect_err("the reader must not write");
    assert_eq!(denied.code(), Some("NOPERM"), "{denied}");
    let source = BullmqSource::connect(&reader, options(Duration::from_secs(5))).await.expect("connect as reader");
    assert_eq!(read(&source, "bull", &["stt"]).await, expected);

    // A user denied the queue's keys fails that queue with an error naming it and the fix, not the collection.
    let source = BullmqSource::connect(&server.url("other-keys:otherpw@", 0), options(Duration::from_secs(5)))
        .await
        .expect("connect as other-keys");
    let states = source.counts(&refs("bull", &["stt"])).await.expect("the collection itself succeeds");
    let err = states[0].as_ref().expect_err("bull:stt is outside ~acme:*").to_string();
    assert!(err.contains("bull:stt") && err.contains("+@read") && !err.contains("otherpw"), "{err}");
}

#[tokio::test]
async fn password_and_database_index_from_the_url() {
    let server = RedisServer::start_with(&["--requirepass", "s3cret"]);
    let expected = fixture("populate", &server.url(":s3cret@", 3), "bull", &[], &["stt"]);

    let db3 = BullmqSource::connect(&server.url(":s3cret@", 3), options(Duration::from_secs(5))).await.expect("db 3");
    assert_eq!(read(&db3, "bull", &["stt"]).await, expected);
    let db0 = BullmqSource::connect(&server.url(":s3cret@", 0), options(Duration::from_secs(5))).await.expect("db 0");
    let states = db0.counts(&refs("bull", &["stt"])).await.expect("collection");
    let wrong_db = states[0].as_ref().expect_err("the queue is in database 3, not 0");
    assert!(matches!(wrong_db, BullmqError::Missing { .. }) && wrong_db.to_string().contains("/0"), "{wrong_db}");

    let wrong = BullmqSource::connect(&server.url(":wrong@", 3), options(Duration::from_secs(5))).await;
    let err = wrong.err().expect("a wrong password is refused");
    assert!(matches!(err, BullmqError::Auth { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("password") && message.contains(":***@") && !message.contains("wrong"), "{message}");

    // Without a password: refused when connecting to a database other than 0 (SELECT needs auth), per queue in
    // database 0 (the connection itself needs no command).
    let err = BullmqSource::connect(&server.url("", 3), options(Duration::from_secs(5))).await.err();
    assert!(matches!(err, Some(BullmqError::Auth { .. })), "{err:?}");
    let no_password =
        BullmqSource::connect(&server.url("", 0), options(Duration::from_secs(5))).await.expect("connect");
    let states = no_password.counts(&refs("bull", &["stt"])).await.expect("collection");
    let err = states[0].as_ref().expect_err("the server requires a password").to_string();
    assert!(err.contains("put it in the URL"), "{err}");
}

#[tokio::test]
async fn a_huge_element_at_the_end_of_a_wait_list_is_never_fetched() {
    let server = RedisServer::start();
    let url = server.url("", 0);
    fixture("populate", &url, "bull", &[], &["big"]);
    let huge = "j".repeat(50 << 20);
    server.cmd(&url, &["RPUSH", "bull:big:wait", &huge]).expect("a 50 MB element at the tail");
    drop(huge);
    let sent = || -> u64 {
        let info = match server.cmd(&url, &["INFO", "stats"]).expect("INFO") {
            redis::Value::BulkString(bytes) => String::from_utf8(bytes).unwrap(),
            redis::Value::VerbatimString { text, .. } => text,
            other => panic!("INFO answered {other:?}"),
        };
        let line = info.lines().find(|l| l.starts_with("total_net_output_bytes:")).expect("total_net_output_bytes");
        line["total_net_output_bytes:".len()..].trim().parse().unwrap()
    };
    let source = BullmqSource::connect(&url, options(Duration::from_secs(5))).await.expect("connect");
    let before = sent();
    let mut seen = Vec::new();
    for _ in 0..5 {
        seen.push(read(&source, "bull", &["big"]).await);
    }
    let per_collection = (sent() - before) / 5;
    assert!(per_collection < 64 * 1024, "{per_collection} bytes sent per collection");
    // Still counted as BullMQ counts it (the element is a job to getJobCounts too).
    let expected = fixture("counts", &url, "bull", &[], &["big"]);
    assert!(seen.iter().all(|counts| *counts == expected), "{seen:?} != {expected:?}");
}

#[tokio::test]
async fn passwords_with_url_delimiters_never_appear_in_errors() {
    let server = RedisServer::start_with(&["--requirepass", "Zq7/Kx9#Wm3?Vb5@Yt"]);
    // Percent-encoded, as a URL needs: it works, and the source's URL hides it.
    let encoded = server.url(":Zq7%2FKx9%23Wm3%3FVb5%40Yt@", 0);
    server.cmd(&encoded, &["RPUSH", "bull:stt:wait", "2", "1"]).expect("seeding with the encoded password");
    let source = BullmqSource::connect(&encoded, options(Duration::from_secs(5))).await.expect("encoded password");
    assert_eq!(read(&source, "bull", &["stt"]).await["stt"].0.waiting, 2);
    assert!(!source.url().contains("Zq7"), "{}", source.url());
    // Written raw, or wrong: whatever the error, no piece of the password is shown.
    for userinfo in
        [":Zq7/Kx9#Wm3?Vb5@Yt@", ":Zq7/Kx9@", ":Zq7#Kx9@", ":Zq7?Kx9@", "reader:Wr0/Qz8#Hk2@", ":Zq7%2FKx9%23Nope@"]
    {
        let url = server.url(userinfo, 0);
        let err = match BullmqSource::connect(&url, options(Duration::from_secs(2))).await {
            Ok(source) => match source.counts(&refs("bull", &["stt"])).await {
                Ok(states) => states[0].as_ref().err().map(ToString::to_string).expect("no password, no read"),
                Err(e) => e.to_string(),
            },
            Err(e) => e.to_string(),
        };
        let secret = &userinfo[userinfo.find(':').unwrap() + 1..userinfo.rfind('@').unwrap()];
        for piece in secret.split(['/', '#', '?', '@', '%']).filter(|p| p.len() >= 3) {
            assert!(!err.contains(piece), "{userinfo}: `{piece}` shown in: {err}");
        }
    }
}

#[tokio::test]
async fn unreachable_and_malformed_urls_give_errors_naming_the_url_and_the_fix() {
    let port = free_port();
    let url = format!("redis://:hunter2@127.0.0.1:{port}/0");
    let err = BullmqSource::connect(&url, options(Duration::from_secs(5))).await.err().expect("nothing listens there");
    let message = err.to_string();
    assert!(matches!(err, BullmqError::Connect { .. }), "{err:?}");
    assert!(message.contains(&format!("127.0.0.1:{port}")) && message.contains("server is running"), "{message}");
    assert!(!message.contains("hunter2"), "{message}");

    let err = BullmqSource::new("127.0.0.1:6379", ConnectOptions::default()).err().expect("no scheme").to_string();
    assert!(err.contains("redis://") && err.contains("rediss://"), "{err}");
}

#[tokio::test]
async fn a_stalled_or_stopped_server_is_an_error_not_a_hang_and_a_restart_recovers() {
    let mut server = RedisServer::start();
    let url = server.url("", 0);
    let expected = fixture("populate", &url, "bull", &[], &["stt"]);
    let source = BullmqSource::connect(&url, options(Duration::from_millis(500))).await.expect("connect");
    assert_eq!(read(&source, "bull", &["stt"]).await, expected);
    // The guard below only turns a hang into a failure; the source's own timeout is what must answer.
    let guard = Duration::from_secs(30);

    server.signal("-STOP");
    let stalled = tokio::time::timeout(guard, source.counts(&refs("bull", &["stt"]))).await.expect("no hang");
    server.signal("-CONT");
    assert!(matches!(stalled, Err(BullmqError::Timeout { .. })), "{stalled:?}");
    assert_eq!(read(&source, "bull", &["stt"]).await, expected, "reads again once the server answers");

    server.stop();
    let stopped = tokio::time::timeout(guard, source.counts(&refs("bull", &["stt"]))).await.expect("no hang");
    let err = stopped.expect_err("the server is gone").to_string();
    assert!(err.contains(&format!("127.0.0.1:{}", server.port)), "{err}");

    server.spawn();
    let states = source.counts(&refs("bull", &["stt"])).await.expect("reads the restarted server");
    let gone = states[0].as_ref().expect_err("the restarted server kept no data (--save \"\")");
    assert!(matches!(gone, BullmqError::Missing { .. }), "{gone:?}");
    let refilled = fixture("populate", &url, "bull", &[], &["stt"]);
    assert_eq!(read(&source, "bull", &["stt"]).await, refilled);
}

#[test]
fn queues_command_prints_bullmq_counts_as_json() {
    let server = RedisServer::start();
    let url = server.url("", 0);
    let expected = fixture("populate", &url, "bull", &["mt"], &["stt", "mt"]);
    let output = Command::new(env!("CARGO_BIN_EXE_ballast"))
        .args(["queues", "--redis", &url, "--json", "stt", "mt"])
        .output()
        .expect("running ballast queues");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout).expect("JSON");
    let printed: BullmqCounts = rows
        .iter()
        .map(|row| {
            let counts: QueueCounts = serde_json::from_value(row["counts"].clone()).expect("counts");
            (row["queue"].as_str().expect("queue").to_string(), (counts, row["isPaused"].as_bool().expect("flag")))
        })
        .collect();
    assert_eq!(printed, expected);

    let table = Command::new(env!("CARGO_BIN_EXE_ballast"))
        .args(["queues", "--redis", &url, "stt"])
        .output()
        .expect("running ballast queues");
    let text = String::from_utf8_lossy(&table.stdout);
    let stt = expected["stt"].0;
    let row = text.lines().find(|line| line.starts_with("stt ")).unwrap_or_else(|| panic!("no stt row in:\n{text}"));
    let numbers: Vec<u64> = row.split_whitespace().filter_map(|cell| cell.parse().ok()).collect();
    assert_eq!(numbers[..3], [stt.waiting, stt.prioritized, stt.paused], "{row}");
}

fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n")?.1.to_string();
    Some((status, body))
}

fn promtool_check(metrics: &str) {
    require("promtool", "apt-get install -y prometheus");
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running promtool");
    child.stdin.take().expect("stdin").write_all(metrics.as_bytes()).expect("writing to promtool");
    let output = child.wait_with_output().expect("promtool");
    assert!(
        output.status.success(),
        "promtool check metrics refused the output:\n{}{}\n--- metrics ---\n{metrics}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The value of the series whose line starts with `selector` (name and labels as printed).
fn sample(metrics: &str, selector: &str) -> Option<f64> {
    metrics.lines().find_map(|line| line.strip_prefix(selector)?.trim().parse().ok())
}

#[test]
fn exporter_serves_the_old_exporters_series_and_drops_them_when_redis_is_gone() {
    let mut server = RedisServer::start();
    let url = server.url("", 0);
    let expected = fixture("populate", &url, "bull", &[], &["stt", "mt"]);
    let port = free_port();
    let _exporter = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_ballast"))
            .args(["exporter", "--redis", &url, "--listen", &format!("127.0.0.1:{port}")])
            // A misspelt queue costs only its own series, not readiness.
            .args(["--interval", "100ms", "--timeout", "1s", "stt", "mt", "sst"])
            .stderr(Stdio::null())
            .spawn()
            .expect("starting ballast exporter"),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let ready = loop {
        match http_get(port, "/readyz") {
            Some((200, body)) => break body,
            _ => assert!(Instant::now() < deadline, "the exporter did not become ready within 20s"),
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(ready.starts_with("ready: ") && ready.contains("bull:sst does not exist"), "{ready}");
    assert_eq!(http_get(port, "/healthz").map(|(status, _)| status), Some(200));
    let (status, metrics) = http_get(port, "/metrics").expect("/metrics");
    assert_eq!(status, 200);
    promtool_check(&metrics);

    for (queue, (c, _)) in &expected {
        let depth = |queue_type: &str| {
            sample(&metrics, &format!("redis_queue_depth{{queue_name=\"{queue}\",queue_type=\"{queue_type}\"}}"))
        };
        assert_eq!(depth("total"), Some((c.waiting + c.prioritized + c.active + c.delayed) as f64), "{queue}");
        assert_eq!(depth("waiting-children"), Some(c.waiting_children as f64), "{queue}");
        assert_eq!(depth("completed"), Some(c.completed as f64), "{queue}");
        for (name, n) in [("waiting", c.waiting), ("active", c.active), ("delayed", c.delayed), ("failed", c.failed)] {
            let selector = format!("redis_queue_{name}{{queue_name=\"{queue}\"}}");
            assert_eq!(sample(&metrics, &selector), Some(n as f64), "{selector}");
        }
    }

    // Unknown is not zero: without Redis the queue series go away and the error counter rises.
    server.stop();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, metrics) = http_get(port, "/metrics").expect("/metrics while Redis is down");
        let errors = sample(&metrics, "ballast_source_errors_total{source=\"bullmq\"}").unwrap_or(0.0);
        if !metrics.contains("redis_queue_depth{") && errors >= 1.0 {
            promtool_check(&metrics);
            break;
        }
        assert!(!metrics.contains("queue_name=\"sst\""), "{metrics}");
        assert!(Instant::now() < deadline, "queue series still served 20s after Redis stopped:\n{metrics}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Readiness is about the source: without Redis the exporter is not ready, and says why.
    let (status, body) = http_get(port, "/readyz").expect("/readyz while Redis is down");
    assert_eq!(status, 503, "{body}");
    assert!(body.starts_with("not ready: ") && body.contains("Redis"), "{body}");
}

#[test]
fn autoscaler_metrics_pass_promtool() {
    let metrics = Metrics::new().expect("metrics");
    let state = QueueState {
        counts: QueueCounts { waiting: 4, prioritized: 1, active: 2, delayed: 3, ..QueueCounts::default() },
        jobs_added: Some(10),
        ..QueueState::default()
    };
    metrics.record_queue("stt", &state);
    metrics.record_queue("gone", &state);
    metrics.forget_queue("gone");
    let spec: ballast::spec::ScalingPolicySpec = serde_json::from_value(serde_json::json!({
        "target": {"name": "whisper"}, "minReplicas": 2, "maxReplicas": 8, "plugin": {"builtin": "hpa"}
    }))
    .expect("a spec");
    metrics.record_spec("ai-models", "whisper", &spec);
    metrics.record_decision("ai-models", "whisper", 2, 5, "plugin");
    metrics.record_decision("ai-models", "whisper", 5, 4, "clamped");
    metrics.record_plugin_call("ai-models", "whisper", Duration::from_micros(40), None);
    metrics.record_plugin_call(
        "ai-models",
        "whisper",
        Duration::from_millis(3),
        Some(ballast::runtime::FailureKind::Trap),
    );
    metrics.record_source_error("prometheus");
    metrics.record_source_ok("bullmq", std::time::SystemTime::now());
    metrics.add_pod_seconds("ai-models", "whisper", 12.5);
    let text = metrics.encode();
    promtool_check(&text);

    assert_eq!(sample(&text, "redis_queue_depth{queue_name=\"stt\",queue_type=\"total\"}"), Some(10.0));
    assert!(!text.contains("queue_name=\"gone\""), "a forgotten queue must have no series");
    assert_eq!(sample(&text, "ballast_replicas_desired{namespace=\"ai-models\",service=\"whisper\"}"), Some(4.0));
    assert_eq!(
        sample(&text, "ballast_decisions_total{namespace=\"ai-models\",reason=\"clamped\",service=\"whisper\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "ballast_plugin_failures_total{kind=\"trap\",namespace=\"ai-models\",service=\"whisper\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            "ballast_plugin_call_duration_seconds_bucket{namespace=\"ai-models\",outcome=\"ok\",service=\"whisper\",le=\"0.00005\"}"
        ),
        Some(1.0)
    );
    assert_eq!(sample(&text, "ballast_pod_seconds_total{namespace=\"ai-models\",service=\"whisper\"}"), Some(12.5));
}

/// A redis-server speaking only TLS, with a certificate of a test CA (whose PEM path comes back), and `extra` args.
fn tls_redis(certs: &std::path::Path, extra: &[&str]) -> (std::path::PathBuf, RedisServer) {
    let (ca, cert, key) = test_certificates(certs);
    let (cert, key) = (cert.to_str().expect("utf-8 path"), key.to_str().expect("utf-8 path"));
    let mut args = vec!["--port", "0", "--tls-port", "{port}", "--tls-cert-file", cert, "--tls-key-file", key];
    args.extend(["--tls-auth-clients", "no"]);
    args.extend(extra);
    (ca, RedisServer::start_with(&args))
}

#[tokio::test]
async fn rediss_urls_speak_tls_with_a_given_ca() {
    let certs = tempfile::tempdir().expect("temp dir");
    let (ca, server) = tls_redis(certs.path(), &[]);
    let url = format!("rediss://127.0.0.1:{}/0", server.port);
    let ca_cert_pem = std::fs::read(ca).expect("CA certificate");
    let tls = ConnectOptions { timeout: Duration::from_secs(5), ca_cert_pem: Some(ca_cert_pem.clone()) };
    let source = BullmqSource::connect(&url, tls).await.expect("TLS connect with the CA");

    let seeding = redis::Client::build_with_tls(
        url.as_str(),
        redis::TlsCertificates { client_tls: None, root_cert: Some(ca_cert_pem) },
    )
    .expect("TLS client");
    let mut connection = seeding.get_connection().expect("TLS connection");
    redis::cmd("RPUSH").arg("bull:stt:wait").arg("1").arg("2").exec(&mut connection).expect("seeding");
    assert_eq!(read(&source, "bull", &["stt"]).await["stt"].0.waiting, 2);

    let untrusted = BullmqSource::connect(&url, options(Duration::from_secs(5))).await.err();
    assert!(
        matches!(untrusted, Some(BullmqError::Connect { .. })),
        "a self-signed server without its CA: {untrusted:?}"
    );
}

/// Secret data as Kubernetes holds it.
fn secret(pairs: &[(&str, &[u8])]) -> std::collections::BTreeMap<String, Vec<u8>> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_vec())).collect()
}

#[tokio::test]
async fn a_connection_from_secret_data_speaks_tls_with_a_password_user_and_database() {
    let certs = tempfile::tempdir().expect("temp dir");
    // An ACL user with a password containing URL specials, allowed only what Ballast sends.
    let (ca, server) = tls_redis(
        certs.path(),
        &[
            // Each word its own argument: redis-server joins them into one config line.
            "--user",
            "default",
            "off",
            "--user",
            "ballast",
            "on",
            ">p@ss/w#rd",
            "~*",
            "+@read",
            "+ping",
            "+select",
            "+client",
            "+hello",
            "--user",
            "seeder",
            "on",
            ">seed",
            "~*",
            "+@all",
        ],
    );
    let ca_pem = std::fs::read(&ca).expect("CA");
    let seeding = redis::Client::build_with_tls(
        format!("rediss://seeder:seed@127.0.0.1:{}/3", server.port).as_str(),
        redis::TlsCertificates { client_tls: None, root_cert: Some(ca_pem.clone()) },
    )
    .expect("TLS client");
    let mut connection = seeding.get_connection().expect("TLS connection");
    redis::cmd("RPUSH").arg("bull:stt:wait").arg("1").arg("2").arg("3").exec(&mut connection).expect("seeding");
    redis::cmd("HSET").arg("bull:stt:meta").arg("opts.maxLenEvents").arg("10000").exec(&mut connection).unwrap();

    let port = server.port.to_string();
    let data = secret(&[
        ("host", b"127.0.0.1"),
        ("port", port.as_bytes()),
        ("tls", b"true"),
        ("ca.crt", &ca_pem),
        ("username", b"ballast"),
        ("password", b"p@ss/w#rd"),
        ("database", b"3"),
    ]);
    let source = BullmqSource::from_secret("Secret ai/redis", &data, Duration::from_secs(5)).expect("valid data");
    assert_eq!(read(&source, "bull", &["stt"]).await["stt"].0.waiting, 3);
    assert!(source.url().contains("Secret ai/redis") && !source.url().contains("p@ss"), "{}", source.url());

    // A wrong password says so, naming the Secret; data without an address is refused before any connection.
    let mut wrong = data.clone();
    wrong.insert("password".into(), b"nope".to_vec());
    let source = BullmqSource::from_secret("Secret ai/redis", &wrong, Duration::from_secs(5)).unwrap();
    let error = source.counts(&[QueueRef { name: "stt".into(), prefix: None }]).await.expect_err("refused");
    assert!(matches!(error, BullmqError::Auth { .. }) && error.to_string().contains("Secret ai/redis"), "{error}");
    let error = BullmqSource::from_secret("Secret ai/empty", &secret(&[("password", b"x")]), Duration::from_secs(1));
    let error = error.err().expect("no address").to_string();
    assert!(error.contains("Secret ai/empty") && error.contains("neither `url` nor `host`"), "{error}");
}

/// `redis-server CONFIG --sentinel` watching `master_port`, on a port of its own.
struct Sentinel {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_sentinel(master_port: u16) -> Sentinel {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let config = dir.path().join("sentinel.conf");
    std::fs::write(
        &config,
        format!(
            "port {port}\nbind 127.0.0.1\ndir {}\nsentinel monitor queues 127.0.0.1 {master_port} 1\n\
             sentinel down-after-milliseconds queues 60000\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let child = Command::new("redis-server")
        .arg(&config)
        .arg("--sentinel")
        .stdout(Stdio::null())
        .spawn()
        .expect("starting redis-server --sentinel");
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "sentinel did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
    Sentinel { child, port, _dir: dir }
}

#[tokio::test]
async fn a_sentinel_connection_reads_the_master_it_names() {
    let master = RedisServer::start_with(&["--requirepass", "queue-secret"]);
    let url = format!("redis://:queue-secret@127.0.0.1:{}/0", master.port);
    fixture("populate", &url, "bull", &[], &["stt"]);
    let expected = read(&BullmqSource::connect(&url, options(Duration::from_secs(5))).await.unwrap(), "bull", &["stt"])
        .await["stt"]
        .0;
    let sentinel = start_sentinel(master.port);
    let addresses = format!("127.0.0.1:{}", free_port()) + &format!(",127.0.0.1:{}", sentinel.port);
    let data = secret(&[
        ("sentinelMaster", b"queues"),
        ("sentinelAddresses", addresses.as_bytes()),
        ("password", b"queue-secret"),
    ]);
    let source = BullmqSource::from_secret("Secret ai/sentinel", &data, Duration::from_secs(5)).expect("valid data");
    assert_eq!(read(&source, "bull", &["stt"]).await["stt"].0, expected, "the master's counts, via the sentinel");
    assert!(source.url().contains("sentinel master queues"), "{}", source.url());

    let mut unknown = data.clone();
    unknown.insert("sentinelMaster".into(), b"nobody".to_vec());
    let source = BullmqSource::from_secret("Secret ai/sentinel", &unknown, Duration::from_secs(5)).unwrap();
    let error = source.counts(&[QueueRef { name: "stt".into(), prefix: None }]).await.expect_err("no such master");
    assert!(error.to_string().contains("sentinel master nobody"), "{error}");
}

#[tokio::test]
async fn a_cluster_connection_reads_hash_tagged_queues_and_names_the_fix_for_the_others() {
    require("redis-cli", "apt-get install -y redis-tools");
    let cluster_args = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"];
    let nodes: Vec<RedisServer> = (0..3).map(|_| RedisServer::start_with(&cluster_args)).collect();
    let addresses: Vec<String> = nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
    let created = Command::new("redis-cli")
        .args(["--cluster", "create"])
        .args(&addresses)
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .output()
        .expect("redis-cli --cluster create");
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stdout));
    let cli = |args: &[&str]| {
        let output = Command::new("redis-cli").args(["-c", "-p", &nodes[0].port.to_string()]).args(args).output();
        String::from_utf8_lossy(&output.expect("redis-cli").stdout).into_owned()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok") {
        assert!(Instant::now() < deadline, "the cluster did not become ok: {}", cli(&["CLUSTER", "INFO"]));
        std::thread::sleep(Duration::from_millis(100));
    }
    // A node that says ok may still answer CLUSTERDOWN or TRYAGAIN for a moment (redis-cli prints the error and
    // exits 0), so each write is repeated until it answers a count: RPUSH and HSET either apply whole or not at all.
    let write = |args: &[&str]| {
        let mut answer = cli(args);
        while answer.trim().parse::<u64>().is_err() {
            assert!(Instant::now() < deadline, "{args:?} kept failing: {answer}");
            std::thread::sleep(Duration::from_millis(100));
            answer = cli(args);
        }
    };
    // Two queues under BullMQ's cluster prefix `{bull}`, in one slot; one under a plain prefix.
    for (queue, jobs) in [("stt", 3), ("mt", 2)] {
        let mut push = vec!["RPUSH".to_owned(), format!("{{bull}}:{queue}:wait")];
        push.extend((1..=jobs).map(|j| j.to_string()));
        write(&push.iter().map(String::as_str).collect::<Vec<_>>());
        write(&["HSET", &format!("{{bull}}:{queue}:meta"), "opts.maxLenEvents", "10000"]);
    }
    write(&["RPUSH", "bull:plain:wait", "1"]);

    let joined = addresses.join(",");
    let data = secret(&[("cluster", b"true"), ("addresses", joined.as_bytes())]);
    let source = BullmqSource::from_secret("Secret ai/cluster", &data, Duration::from_secs(5)).expect("valid data");
    assert_eq!(read(&source, "{bull}", &["stt", "mt"]).await, {
        let mut expected = BullmqCounts::new();
        expected.insert("stt".into(), (QueueCounts { waiting: 3, ..QueueCounts::default() }, false));
        expected.insert("mt".into(), (QueueCounts { waiting: 2, ..QueueCounts::default() }, false));
        expected
    });
    let states = source.counts(&refs("bull", &["plain"])).await.expect("the collection itself works");
    let error = states[0].as_ref().expect_err("keys in several slots").to_string();
    assert!(error.contains("bull:plain") && error.contains("{bull}"), "{error}");
}
