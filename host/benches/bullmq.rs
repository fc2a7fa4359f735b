//! One pipelined collection of 1,000 BullMQ queues against the same counts read one round trip per command (how
//! the Python queue exporter and KEDA's Redis scaler read them), in the same run on a local redis-server.
//!
//! Run: `cargo bench -p ballast --bench bullmq`. Needs `redis-server` on PATH; starts and stops its own.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ballast::sources::bullmq::{BullmqSource, ConnectOptions};
use ballast::spec::QueueRef;
use redis::AsyncCommands;

#[path = "common/quick.rs"]
mod quick;

const QUEUES: usize = 1_000;
const PIPELINED_RUNS: usize = 30;
const ROUND_TRIP_RUNS: usize = 5;

struct RedisServer {
    child: Child,
    _dir: tempfile::TempDir,
    url: String,
}

impl RedisServer {
    fn start() -> RedisServer {
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
        let dir = tempfile::tempdir().expect("temp dir");
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start redis-server ({e}); install it: apt-get install -y redis-server"));
        let url = format!("redis://127.0.0.1:{port}/0");
        let client = redis::Client::open(url.as_str()).expect("url");
        let deadline = Instant::now() + Duration::from_secs(10);
        while client.get_connection().is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start on port {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        RedisServer { child, _dir: dir, url }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// BullMQ's key layout with a few jobs per state; the i-th queue's counts depend on i.
async fn seed(connection: &mut redis::aio::MultiplexedConnection, queues: &[QueueRef]) {
    for chunk in queues.chunks(100) {
        let mut pipeline = redis::pipe();
        for (i, queue) in chunk.iter().enumerate() {
            let key = |suffix: &str| format!("bull:{}:{suffix}", queue.name);
            let ids = |n: usize, from: usize| (from..from + n).map(|id| id.to_string()).collect::<Vec<_>>();
            pipeline.rpush(key("wait"), ids(3 + i % 7, 0)).ignore();
            pipeline.rpush(key("active"), ids(1 + i % 3, 100)).ignore();
            for (set, n, from) in
                [("prioritized", 2, 200), ("delayed", 4, 300), ("waiting-children", 1, 400), ("completed", 9, 500)]
            {
                let members: Vec<(u64, String)> = ids(n + i % 5, from).into_iter().map(|id| (1, id)).collect();
                pipeline.zadd_multiple(key(set), &members).ignore();
            }
            pipeline.zadd(key("failed"), "600", 1).ignore();
            pipeline.hset(key("meta"), "version", "bullmq:6.7.0").ignore();
        }
        pipeline.query_async::<()>(connection).await.expect("seeding");
    }
}

/// The same commands the source sends, one awaited round trip each.
async fn one_round_trip_per_command(connection: &mut redis::aio::MultiplexedConnection, queues: &[QueueRef]) -> u64 {
    let mut sum = 0u64;
    for queue in queues {
        let key = |suffix: &str| format!("bull:{}:{suffix}", queue.name);
        for list in ["wait", "paused"] {
            let len = connection.llen::<_, u64>(key(list)).await.expect("LLEN");
            sum += len;
            let size: Option<u64> = redis::cmd("MEMORY")
                .arg("USAGE")
                .arg(key(list))
                .arg("SAMPLES")
                .arg(0)
                .query_async(connection)
                .await
                .expect("MEMORY USAGE");
            if len > 0 && size.is_some_and(|bytes| bytes <= ballast::sources::bullmq::MARKER_CHECK_MAX_BYTES) {
                let _: Option<String> = connection.lindex(key(list), -1).await.expect("LINDEX");
            }
        }
        sum += connection.llen::<_, u64>(key("active")).await.expect("LLEN");
        for set in ["prioritized", "delayed", "waiting-children", "completed", "failed"] {
            sum += connection.zcard::<_, u64>(key(set)).await.expect("ZCARD");
        }
        let _: bool = connection.hexists(key("meta"), "paused").await.expect("HEXISTS");
        let _: u64 = connection.exists(&[key("meta"), key("id")]).await.expect("EXISTS");
    }
    sum
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    let quick = quick::quick();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio");
    let server = RedisServer::start();
    let queues: Vec<QueueRef> = (0..QUEUES).map(|i| QueueRef { name: format!("queue-{i:04}"), prefix: None }).collect();
    runtime.block_on(async {
        let client = redis::Client::open(server.url.as_str()).expect("url");
        let mut connection = client.get_multiplexed_async_connection().await.expect("connect");
        seed(&mut connection, &queues).await;
        let source = BullmqSource::connect(&server.url, ConnectOptions::default()).await.expect("connect");

        let (pipelined_runs, round_trip_runs) = if quick { (2, 1) } else { (PIPELINED_RUNS, ROUND_TRIP_RUNS) };
        let mut pipelined = Vec::new();
        let mut expected = 0;
        for _ in 0..pipelined_runs {
            let started = Instant::now();
            let states = source.counts(&queues).await.expect("collection");
            pipelined.push(started.elapsed());
            expected = states
                .iter()
                .map(|state| {
                    let c = state.as_ref().expect("queue").counts;
                    c.waiting
                        + c.paused
                        + c.active
                        + c.prioritized
                        + c.delayed
                        + c.waiting_children
                        + c.completed
                        + c.failed
                })
                .sum::<u64>();
        }
        let mut per_command = Vec::new();
        for _ in 0..round_trip_runs {
            let started = Instant::now();
            let sum = one_round_trip_per_command(&mut connection, &queues).await;
            per_command.push(started.elapsed());
            assert_eq!(sum, expected, "both ways must read the same counts");
        }
        let (pipelined, per_command) = (median(pipelined), median(per_command));
        // 12 commands per queue, and a LINDEX of each small non-empty wait list (the seed has no paused jobs).
        println!("bullmq: {QUEUES} queues, {} commands per collection", QUEUES * 13);
        println!("  two pipelined round trips (median of {pipelined_runs}):      {pipelined:>10.2?}  (target <= 20ms)");
        println!("  one round trip per command (median of {round_trip_runs}):     {per_command:>10.2?}");
        println!("  speed-up: {:.1}x (target >= 10x)", per_command.as_secs_f64() / pipelined.as_secs_f64());
    });
}
