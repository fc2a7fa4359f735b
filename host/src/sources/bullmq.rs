//! BullMQ job counts read straight from Redis: every queue of one collection in one pipelined round trip, with
//! read-only commands only, so an ACL user limited to `+@read +ping` is enough.
//!
//! The counts replicate `Queue.getJobCounts()` of BullMQ 5 and 6 (its `getCounts-1.lua` script):
//! - `waiting` and `paused` are the lengths of the `wait` and `paused` lists, less one when the last element is a
//!   legacy `0:`-prefixed marker (BullMQ 4 put markers in the wait list; `getCounts` discounts and pops them — we
//!   discount without popping, since we never write). That marker check is the only reason an element is read at
//!   all, and Redis cannot read part of one: so the last element is read (in a second round trip) only from a
//!   list whose whole size (`MEMORY USAGE`) is at most [`MARKER_CHECK_MAX_BYTES`]. A job id is short, so any list
//!   of fewer than about a thousand jobs is checked; a longer one may count a BullMQ 4 marker as one job, while an
//!   element of any size at the end of a list costs nothing;
//! - `active` is the length of the `active` list;
//! - `prioritized`, `delayed`, `waiting-children`, `completed` and `failed` are sorted-set cardinalities (BullMQ 5+
//!   keeps its delay marker in the separate `marker` key, so `delayed` needs no discount).
//!
//! Pausing differs between majors: BullMQ 5 renames `wait` to `paused`, so a paused queue's jobs show as
//! `paused`; BullMQ 6 leaves them in `wait` (reported as `waiting`) and only sets the `meta` hash's `paused` field.
//! That field is reported as [`QueueState::is_paused`] for both.
//!
//! Two more figures, for the exported metrics rather than for plugins:
//! - `jobs_added`, BullMQ's job id counter (`QUEUE:id`, incremented by every `Queue.add` without a custom job id):
//!   an exact arrivals counter, read with `GETRANGE 0 20` so a key that is not a counter costs 21 bytes at most;
//! - `oldest_waiting_since_ms`, when the job at the end of the `wait` list (BullMQ pushes new jobs at its head,
//!   workers take from its end) became ready: its hash's `timestamp` plus `delay`. The job id is the element the
//!   marker check already reads, so only lists within [`MARKER_CHECK_MAX_BYTES`] tell it; the two fields' lengths
//!   are asked (`HSTRLEN`) before the fields are read. Prioritized jobs (a sorted set) are not looked at.
//!
//! A queue none of whose keys exist (`meta` and `id` are written by the first `Queue.add`, and a used queue keeps
//! them) is a [`BullmqError::Missing`] rather than zero jobs: a misspelt name, prefix or database would otherwise
//! read as an idle queue and invite a scale-down.

use std::collections::BTreeMap;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, ErrorKind, RedisError, Value};
use tokio::sync::Mutex;

use crate::observation::QueueCounts;
use crate::spec::QueueRef;

/// BullMQ's key prefix when a queue names none.
pub const DEFAULT_PREFIX: &str = "bull";

/// Commands sent per queue, in this order.
const LLEN_WAIT: usize = 0;
const SIZE_WAIT: usize = 1;
const LLEN_PAUSED: usize = 2;
const SIZE_PAUSED: usize = 3;
const LLEN_ACTIVE: usize = 4;
const ZCARD_PRIORITIZED: usize = 5;
const ZCARD_DELAYED: usize = 6;
const ZCARD_WAITING_CHILDREN: usize = 7;
const ZCARD_COMPLETED: usize = 8;
const ZCARD_FAILED: usize = 9;
const META_PAUSED: usize = 10;
const EXISTS_META_ID: usize = 11;
const GETRANGE_ID: usize = 12;
const COMMANDS_PER_QUEUE: usize = 13;

/// Longest job counter or job time read: `u64::MAX` has 20 digits.
const MAX_NUMBER_DIGITS: usize = 20;

/// A decimal number of at most [`MAX_NUMBER_DIGITS`] digits, as Redis holds BullMQ's counters and job times.
fn decimal(digits: &[u8]) -> Option<u64> {
    if digits.len() > MAX_NUMBER_DIGITS {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Largest list whose last element is read to check for a legacy marker (see the module docs): the most bytes
/// one queue can cost a collection beyond its counts.
pub const MARKER_CHECK_MAX_BYTES: u64 = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum BullmqError {
    #[error(
        "invalid Redis URL {url}: {reason}; expected redis://[user:password@]host[:port][/db], or rediss://... for TLS"
    )]
    InvalidUrl { url: String, reason: String },
    #[error("Redis at {url} refused the credentials ({source}); check the user and password in the URL")]
    Auth { url: String, source: RedisError },
    #[error(
        "cannot reach Redis at {url}: {source}; check the host and port, the scheme (rediss:// for TLS), \
         and that the server is running"
    )]
    Connect { url: String, source: RedisError },
    #[error("Redis at {url} did not answer within {timeout:?}; the server is stopped, overloaded or unreachable")]
    Timeout { url: String, timeout: Duration },
    #[error("reading BullMQ queues from {url} failed: {source}")]
    Read { url: String, source: RedisError },
    #[error("BullMQ queue {queue} at {url}: {reason}")]
    Queue { url: String, queue: String, reason: String },
    #[error(
        "BullMQ queue {queue} does not exist at {url} (no {queue}:* keys): check the queue name, its prefix and the \
         database number in the URL; its counts are unavailable until a job is added"
    )]
    Missing { url: String, queue: String },
}

impl BullmqError {
    /// The queue this error concerns alone, as `prefix:name`; `None` when the whole collection failed.
    pub fn queue(&self) -> Option<&str> {
        match self {
            BullmqError::Queue { queue, .. } | BullmqError::Missing { queue, .. } => Some(queue),
            _ => None,
        }
    }
}

pub(crate) type Result<T, E = BullmqError> = std::result::Result<T, E>;

#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Bound on one collection, connecting included: past it the caller gets [`BullmqError::Timeout`].
    pub timeout: Duration,
    /// PEM CA certificate that signed a `rediss://` server's certificate, when it is not in the system roots.
    pub ca_cert_pem: Option<Vec<u8>>,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions { timeout: Duration::from_secs(5), ca_cert_pem: None }
    }
}

/// One queue's counts, whether BullMQ considers it paused, and the figures only the exporter uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueState {
    pub counts: QueueCounts,
    pub is_paused: bool,
    /// Jobs ever added (BullMQ's id counter); `None` before the first.
    pub jobs_added: Option<u64>,
    /// When the oldest job of the `wait` list became ready, in Unix milliseconds; `None` when nothing waits there
    /// or the list is too large for its end to be read.
    pub oldest_waiting_since_ms: Option<u64>,
}

/// How connections are made: to one server, or to the master Redis Sentinel names (asked again for every new
/// connection, so a fail-over is followed).
enum Connector {
    Direct(Client),
    Sentinel(Mutex<redis::sentinel::SentinelClient>),
    /// Redis Cluster: each collection sends one pipeline per hash tag, since a pipeline must stay in one slot
    /// (BullMQ on a cluster needs a hash-tagged prefix such as `{bull}` for the same reason).
    Cluster(redis::cluster::ClusterClient),
}

/// A connection to one server, or to a cluster (which routes each pipeline to the node of its slot).
#[derive(Clone)]
enum Connection {
    Single(MultiplexedConnection),
    Cluster(redis::cluster_async::ClusterConnection),
}

impl redis::aio::ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> redis::RedisFuture<'a, Value> {
        match self {
            Connection::Single(c) => c.req_packed_command(cmd),
            Connection::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Connection::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Single(c) => c.get_db(),
            Connection::Cluster(c) => c.get_db(),
        }
    }
}

/// The hash tag of a key (the text between its first `{` and the next `}`, if not empty): keys with one tag share a
/// cluster slot.
fn hash_tag(key: &str) -> Option<&str> {
    let open = key.find('{')?;
    let close = key[open + 1..].find('}')?;
    Some(&key[open + 1..open + 1 + close]).filter(|tag| !tag.is_empty())
}

/// `host:port,host:port` as a list, blanks dropped.
fn address_list(text: Option<String>) -> Vec<String> {
    let text = text.unwrap_or_default();
    text.split(',').map(str::trim).filter(|a| !a.is_empty()).map(str::to_owned).collect()
}

/// Percent-encodes what may not stand in a URL's userinfo.
fn url_escape(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => char::from(b).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A Redis holding BullMQ queues. Cheap to share (`&self` methods); the connection is opened on first use and
/// opened again after it breaks, so a restarted server is picked up by the next collection.
pub struct BullmqSource {
    connector: Connector,
    /// The URL with its password hidden, for messages.
    url: String,
    timeout: Duration,
    connection: Mutex<Option<Connection>>,
}

impl BullmqSource {
    /// Checks the URL without touching the network; the first [`counts`](Self::counts) connects.
    pub fn new(url: &str, options: ConnectOptions) -> Result<Self> {
        let redacted = redact_url(url);
        let invalid = |reason: String| BullmqError::InvalidUrl { url: redacted.clone(), reason };
        if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
            return Err(invalid("the scheme must be redis:// or rediss://".into()));
        }
        let client = if url.starts_with("rediss://") {
            // redis-rs builds its rustls config from the process-wide crypto provider. Another component may have
            // installed one already, which is as good; the error only says so.
            let _ = rustls::crypto::ring::default_provider().install_default();
            let root_cert = options.ca_cert_pem.clone();
            Client::build_with_tls(url, redis::TlsCertificates { client_tls: None, root_cert })
        } else {
            Client::open(url)
        }
        .map_err(|e| invalid(e.to_string()))?;
        Ok(BullmqSource {
            connector: Connector::Direct(client),
            url: redacted,
            timeout: options.timeout,
            connection: Mutex::new(None),
        })
    }

    /// The master Redis Sentinel names `master`, asked of the sentinels at `addresses` (`host:port`) whenever a
    /// connection is made, so a fail-over is followed by the next collection. `node` carries the user, password and
    /// database of the master; `sentinel_password` is the sentinels' own, if they need one.
    pub(crate) fn sentinel(
        addresses: &[String],
        master: &str,
        node: redis::RedisConnectionInfo,
        sentinel_password: Option<&str>,
        timeout: Duration,
    ) -> Result<Self> {
        let url = format!("sentinel master {master} via {}", addresses.join(","));
        let invalid = |reason: String| BullmqError::InvalidUrl { url: url.clone(), reason };
        if addresses.is_empty() || master.is_empty() {
            return Err(invalid("sentinelMaster and at least one sentinelAddresses entry are needed".into()));
        }
        let auth = sentinel_password.map(|p| format!(":{}@", url_escape(p))).unwrap_or_default();
        let sentinels: Vec<String> = addresses.iter().map(|a| format!("redis://{auth}{}", a.trim())).collect();
        let info = redis::sentinel::SentinelNodeConnectionInfo::default().set_redis_connection_info(node);
        let client = redis::sentinel::SentinelClient::build(
            sentinels,
            master,
            Some(info),
            redis::sentinel::SentinelServerType::Master,
        )
        .map_err(|e| invalid(e.to_string()))?;
        Ok(BullmqSource {
            connector: Connector::Sentinel(Mutex::new(client)),
            url,
            timeout,
            connection: Mutex::new(None),
        })
    }

    /// A Redis Cluster reached through any of `addresses` (`host:port`), with the user and password given.
    pub(crate) fn cluster(
        addresses: &[String],
        username: Option<&str>,
        password: Option<&str>,
        timeout: Duration,
    ) -> Result<Self> {
        let url = format!("redis cluster via {}", addresses.join(","));
        let invalid = |reason: String| BullmqError::InvalidUrl { url: url.clone(), reason };
        if addresses.is_empty() {
            return Err(invalid("at least one `addresses` entry (host:port) is needed".into()));
        }
        let nodes: Vec<String> = addresses.iter().map(|a| format!("redis://{}", a.trim())).collect();
        let mut builder = redis::cluster::ClusterClientBuilder::new(nodes);
        if let Some(user) = username {
            builder = builder.username(user);
        }
        if let Some(password) = password {
            builder = builder.password(password);
        }
        let client = builder.build().map_err(|e| invalid(e.to_string()))?;
        Ok(BullmqSource { connector: Connector::Cluster(client), url, timeout, connection: Mutex::new(None) })
    }

    /// A source from a Kubernetes Secret's data (see [`crate::spec::RedisConnectionRef`] for its keys); `what`
    /// names the Secret in messages. Nothing is connected yet.
    pub fn from_secret(what: &str, data: &BTreeMap<String, Vec<u8>>, timeout: Duration) -> Result<Self> {
        let text = |key: &str| -> Result<Option<String>> {
            data.get(key)
                .map(|bytes| {
                    String::from_utf8(bytes.clone()).map(|t| t.trim().to_owned()).map_err(|_| BullmqError::InvalidUrl {
                        url: what.into(),
                        reason: format!("key `{key}` is not UTF-8 text"),
                    })
                })
                .transpose()
        };
        let invalid = |reason: String| BullmqError::InvalidUrl { url: what.into(), reason };
        let (username, password) = (text("username")?, text("password")?);
        let database = match text("database")? {
            Some(db) => Some(db.parse::<i64>().map_err(|_| invalid(format!("`database` is {db:?}, not a number")))?),
            None => None,
        };
        if let Some(master) = text("sentinelMaster")? {
            let addresses = address_list(text("sentinelAddresses")?);
            let mut node = redis::RedisConnectionInfo::default().set_db(database.unwrap_or(0));
            if let Some(user) = &username {
                node = node.set_username(user);
            }
            if let Some(password) = &password {
                node = node.set_password(password);
            }
            let source = Self::sentinel(&addresses, &master, node, text("sentinelPassword")?.as_deref(), timeout)?;
            return Ok(source.named(what));
        }
        let yes = |value: Option<String>| value.is_some_and(|t| matches!(t.as_str(), "true" | "enable" | "yes"));
        if yes(text("cluster")?) {
            let addresses = address_list(text("addresses")?);
            let source = Self::cluster(&addresses, username.as_deref(), password.as_deref(), timeout)?;
            return Ok(source.named(what));
        }
        let tls = yes(text("tls")?);
        let base = match (text("url")?, text("host")?) {
            (Some(url), _) => url,
            (None, Some(host)) => {
                let port = text("port")?.unwrap_or_else(|| "6379".into());
                format!("{}://{host}:{port}", if tls { "rediss" } else { "redis" })
            }
            (None, None) => return Err(invalid("it has neither `url` nor `host`".into())),
        };
        let mut url = reqwest::Url::parse(&base).map_err(|e| invalid(format!("`url` does not parse: {e}")))?;
        if tls && url.scheme() == "redis" {
            // Only redis:// and rediss:// are taken below, and both are "special" enough for set_scheme.
            let _ = url.set_scheme("rediss");
        }
        if let Some(user) = &username {
            url.set_username(user).map_err(|()| invalid("`username` cannot go into the URL".into()))?;
        }
        if let Some(password) = &password {
            url.set_password(Some(password)).map_err(|()| invalid("`password` cannot go into the URL".into()))?;
        }
        if let Some(db) = database {
            url.set_path(&db.to_string());
        }
        let options = ConnectOptions { timeout, ca_cert_pem: data.get("ca.crt").cloned() };
        Ok(Self::new(url.as_str(), options)?.named(what))
    }

    /// Messages name the connection's origin too (e.g. the Secret), beside the redacted URL.
    fn named(mut self, what: &str) -> Self {
        self.url = format!("{} ({what})", self.url);
        self
    }

    /// Like [`new`](Self::new), and connects at once so that a wrong host or password is reported now.
    pub async fn connect(url: &str, options: ConnectOptions) -> Result<Self> {
        let source = Self::new(url, options)?;
        tokio::time::timeout(source.timeout, source.connection()).await.map_err(|_| source.timeout_error())??;
        Ok(source)
    }

    /// The URL this source reads, password hidden.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Reads every queue in one pipelined round trip. The outer error means nothing could be read (connection,
    /// timeout); an inner error concerns that queue alone (a key of the wrong type, a command the ACL denies).
    pub async fn counts(&self, queues: &[QueueRef]) -> Result<Vec<Result<QueueState>>> {
        let outcome = tokio::time::timeout(self.timeout, self.read(queues)).await;
        if !matches!(outcome, Ok(Ok(_))) {
            // The connection may be half-dead (a stopped server answers nothing): start afresh next time.
            *self.connection.lock().await = None;
        }
        outcome.map_err(|_| self.timeout_error())?
    }

    /// One pipeline for every queue; on a cluster, one per hash tag, and a queue whose keys have none is an error
    /// of its own (its keys would lie in several slots).
    async fn read(&self, queues: &[QueueRef]) -> Result<Vec<Result<QueueState>>> {
        if !matches!(self.connector, Connector::Cluster(_)) {
            return self.read_together(queues).await;
        }
        let mut out: Vec<Option<Result<QueueState>>> = queues.iter().map(|_| None).collect();
        let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (index, queue) in queues.iter().enumerate() {
            let base = format!("{}:{}:", prefix_of(queue), queue.name);
            match hash_tag(&base) {
                Some(tag) => groups.entry(tag.to_owned()).or_default().push(index),
                None => {
                    out[index] = Some(Err(BullmqError::Queue {
                        url: self.url.clone(),
                        queue: base.trim_end_matches(':').to_owned(),
                        reason: "on Redis Cluster a queue's keys must share a slot: give it a hash-tagged prefix \
                                 such as `{bull}` (as BullMQ itself requires there) and set it as the queue's prefix"
                            .into(),
                    }));
                }
            }
        }
        for indices in groups.into_values() {
            let group: Vec<QueueRef> = indices.iter().map(|&i| queues[i].clone()).collect();
            for (index, state) in indices.into_iter().zip(self.read_together(&group).await?) {
                out[index] = Some(state);
            }
        }
        Ok(out.into_iter().map(|state| state.expect("every queue is read or refused")).collect())
    }

    async fn read_together(&self, queues: &[QueueRef]) -> Result<Vec<Result<QueueState>>> {
        if queues.is_empty() {
            return Ok(Vec::new());
        }
        let pipeline = pipeline_for(queues);
        let (mut connection, reused) = self.connection().await?;
        let replies = match pipeline.query_async::<Vec<Value>>(&mut connection).await {
            // A connection from an earlier collection may have died with a restarted server: retry once afresh.
            Err(e) if reused && (e.is_connection_dropped() || e.is_io_error()) => {
                *self.connection.lock().await = None;
                connection = self.connection().await?.0;
                pipeline.query_async::<Vec<Value>>(&mut connection).await
            }
            other => other,
        }
        .map_err(|source| BullmqError::Read { url: self.url.clone(), source })?;
        let wrong_count = || BullmqError::Read {
            url: self.url.clone(),
            source: RedisError::from((ErrorKind::UnexpectedReturnType, "pipeline answered a wrong reply count")),
        };
        if replies.len() != queues.len() * COMMANDS_PER_QUEUE {
            return Err(wrong_count());
        }
        // The lists small enough for their last element to be read: (reply index of their LLEN, key).
        let mut checked = Vec::new();
        for (index, (queue, answers)) in queues.iter().zip(replies.chunks_exact(COMMANDS_PER_QUEUE)).enumerate() {
            for (len, size, list) in [(LLEN_WAIT, SIZE_WAIT, "wait"), (LLEN_PAUSED, SIZE_PAUSED, "paused")] {
                let small = matches!(answers[size], Value::Int(bytes)
                    if u64::try_from(bytes).is_ok_and(|bytes| bytes <= MARKER_CHECK_MAX_BYTES));
                if small && matches!(answers[len], Value::Int(n) if n > 0) {
                    let key = format!("{}:{}:{list}", prefix_of(queue), queue.name);
                    checked.push((index * COMMANDS_PER_QUEUE + len, key));
                }
            }
        }
        let mut last_elements = std::collections::HashMap::new();
        if !checked.is_empty() {
            let mut lasts = redis::pipe();
            lasts.ignore_errors();
            for (_, key) in &checked {
                lasts.cmd("LINDEX").arg(key).arg(-1);
            }
            let answers = self.query(&lasts, &mut connection).await?;
            if answers.len() != checked.len() {
                return Err(wrong_count());
            }
            last_elements.extend(checked.into_iter().map(|(index, _)| index).zip(answers));
        }
        let mut states: Vec<Result<QueueState>> = queues
            .iter()
            .zip(replies.chunks_exact(COMMANDS_PER_QUEUE))
            .enumerate()
            .map(|(index, (queue, replies))| {
                let last = |len: usize| last_elements.get(&(index * COMMANDS_PER_QUEUE + len));
                self.queue_state(queue, replies, last(LLEN_WAIT), last(LLEN_PAUSED))
            })
            .collect();
        // The oldest waiting job of each queue whose wait list's end was read and is a job id.
        let oldest: Vec<(usize, String)> = states
            .iter()
            .enumerate()
            .filter(|(_, state)| state.as_ref().is_ok_and(|s| s.counts.waiting > 0))
            .filter_map(|(index, _)| match last_elements.get(&(index * COMMANDS_PER_QUEUE + LLEN_WAIT)) {
                Some(Value::BulkString(id)) if !id.starts_with(b"0:") => {
                    let id = String::from_utf8_lossy(id);
                    Some((index, format!("{}:{}:{id}", prefix_of(&queues[index]), queues[index].name)))
                }
                _ => None,
            })
            .collect();
        for (index, since) in self.ready_times(&mut connection, &oldest).await? {
            if let Ok(state) = &mut states[index] {
                state.oldest_waiting_since_ms = Some(since);
            }
        }
        Ok(states)
    }

    /// One pipeline's replies; a failure is a read error of this source.
    async fn query(&self, pipeline: &redis::Pipeline, connection: &mut Connection) -> Result<Vec<Value>> {
        pipeline.query_async(connection).await.map_err(|source| BullmqError::Read { url: self.url.clone(), source })
    }

    /// When each job became ready (`timestamp` + `delay`, ms), for the `(index, job key)` given: two round trips,
    /// the fields' lengths first, so that only numbers are read. A job gone meanwhile (taken by a worker) or with
    /// fields that are not numbers is left out: the figure is for dashboards, never for a scaling decision.
    async fn ready_times(&self, connection: &mut Connection, jobs: &[(usize, String)]) -> Result<Vec<(usize, u64)>> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let mut lengths = redis::pipe();
        lengths.ignore_errors();
        for (_, key) in jobs {
            lengths.cmd("HSTRLEN").arg(key).arg("timestamp").cmd("HSTRLEN").arg(key).arg("delay");
        }
        let lengths = self.query(&lengths, connection).await?;
        let short =
            |reply: &Value| matches!(reply, Value::Int(n) if usize::try_from(*n).is_ok_and(|n| n <= MAX_NUMBER_DIGITS));
        let readable: Vec<&(usize, String)> = jobs
            .iter()
            .zip(lengths.chunks_exact(2))
            .filter(|(_, lengths)| matches!(lengths[0], Value::Int(n) if n > 0) && lengths.iter().all(short))
            .map(|(job, _)| job)
            .collect();
        if readable.is_empty() {
            return Ok(Vec::new());
        }
        let mut fields = redis::pipe();
        fields.ignore_errors();
        for (_, key) in &readable {
            fields.cmd("HMGET").arg(key).arg("timestamp").arg("delay");
        }
        let number = |value: &Value| match value {
            Value::BulkString(digits) => decimal(digits),
            Value::Nil => Some(0),
            _ => None,
        };
        Ok(readable
            .into_iter()
            .zip(self.query(&fields, connection).await?)
            .filter_map(|((index, _), reply)| match reply {
                Value::Array(values) if values.len() == 2 => {
                    Some((*index, number(&values[0])?.checked_add(number(&values[1])?)?))
                }
                _ => None,
            })
            .collect())
    }

    /// The cached connection, or a new one; `true` when it was cached.
    async fn connection(&self) -> Result<(Connection, bool)> {
        let mut cached = self.connection.lock().await;
        if let Some(connection) = cached.as_ref() {
            return Ok((connection.clone(), true));
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout));
        let client = match &self.connector {
            Connector::Direct(client) => client.clone(),
            Connector::Sentinel(sentinel) => sentinel
                .lock()
                .await
                .async_get_client()
                .await
                .map_err(|source| BullmqError::Connect { url: self.url.clone(), source })?,
            Connector::Cluster(cluster) => {
                let config = redis::cluster::ClusterConfig::new()
                    .set_connection_timeout(self.timeout)
                    .set_response_timeout(self.timeout);
                let connection = cluster
                    .get_async_connection_with_config(config)
                    .await
                    .map_err(|source| self.connect_error(source))?;
                *cached = Some(Connection::Cluster(connection.clone()));
                return Ok((Connection::Cluster(connection), false));
            }
        };
        let connection = client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|source| self.connect_error(source))?;
        *cached = Some(Connection::Single(connection.clone()));
        Ok((Connection::Single(connection), false))
    }

    /// A failed connection: refused credentials, or an unreachable server.
    fn connect_error(&self, source: RedisError) -> BullmqError {
        // A password-less connection to a server that wants one fails at SELECT with "Authentication required".
        if source.kind() == ErrorKind::AuthenticationFailed
            || source.code().is_some_and(|code| code == "WRONGPASS" || code == "NOAUTH")
            || source.to_string().contains("Authentication required")
        {
            BullmqError::Auth { url: self.url.clone(), source }
        } else {
            BullmqError::Connect { url: self.url.clone(), source }
        }
    }

    /// `last_wait` and `last_paused`: the lists' last elements, when they were small enough to be read.
    fn queue_state(
        &self,
        queue: &QueueRef,
        replies: &[Value],
        last_wait: Option<&Value>,
        last_paused: Option<&Value>,
    ) -> Result<QueueState> {
        let name = format!("{}:{}", prefix_of(queue), queue.name);
        let queue_error = |reason: String| BullmqError::Queue { url: self.url.clone(), queue: name.clone(), reason };
        let int = |index: usize| -> Result<u64> {
            match &replies[index] {
                Value::Int(n) => u64::try_from(*n).map_err(|_| queue_error(format!("negative count {n}"))),
                other => Err(queue_error(reply_problem(index, other))),
            }
        };
        let ends_with_marker = |list: &str, last: Option<&Value>| -> Result<bool> {
            match last {
                None | Some(Value::Nil) => Ok(false),
                Some(Value::BulkString(last)) => Ok(last.starts_with(b"0:")),
                Some(other) => Err(queue_error(format!("LINDEX {list} -1 answered an unexpected {other:?}"))),
            }
        };
        // MEMORY USAGE answers nil for an absent key; only its errors matter here.
        for size in [SIZE_WAIT, SIZE_PAUSED] {
            if !matches!(replies[size], Value::Int(_) | Value::Nil) {
                return Err(queue_error(reply_problem(size, &replies[size])));
            }
        }
        let list_len = |len: usize, list: &str, last: Option<&Value>| -> Result<u64> {
            let n = int(len)?;
            Ok(if ends_with_marker(list, last)? { n.saturating_sub(1) } else { n })
        };
        let state = QueueState {
            counts: QueueCounts {
                waiting: list_len(LLEN_WAIT, "wait", last_wait)?,
                prioritized: int(ZCARD_PRIORITIZED)?,
                paused: list_len(LLEN_PAUSED, "paused", last_paused)?,
                active: int(LLEN_ACTIVE)?,
                delayed: int(ZCARD_DELAYED)?,
                failed: int(ZCARD_FAILED)?,
                waiting_children: int(ZCARD_WAITING_CHILDREN)?,
                completed: int(ZCARD_COMPLETED)?,
            },
            is_paused: int(META_PAUSED)? == 1,
            jobs_added: match &replies[GETRANGE_ID] {
                Value::BulkString(digits) if digits.is_empty() => None,
                Value::BulkString(digits) => Some(decimal(digits).ok_or_else(|| {
                    queue_error(format!(
                        "{name}:id is not BullMQ's job counter (it starts {:?}); is this a BullMQ queue under \
                                 this prefix?",
                        String::from_utf8_lossy(digits)
                    ))
                })?),
                Value::Nil => None,
                other => return Err(queue_error(reply_problem(GETRANGE_ID, other))),
            },
            oldest_waiting_since_ms: None,
        };
        // The lengths come first: a list holding only a legacy marker still shows the queue exists.
        let any_key = [LLEN_WAIT, LLEN_PAUSED, LLEN_ACTIVE, ZCARD_PRIORITIZED, ZCARD_DELAYED, ZCARD_WAITING_CHILDREN]
            .into_iter()
            .chain([ZCARD_COMPLETED, ZCARD_FAILED, EXISTS_META_ID])
            .any(|index| matches!(replies[index], Value::Int(n) if n > 0));
        if !any_key {
            return Err(BullmqError::Missing { url: self.url.clone(), queue: name });
        }
        Ok(state)
    }

    fn timeout_error(&self) -> BullmqError {
        BullmqError::Timeout { url: self.url.clone(), timeout: self.timeout }
    }
}

fn prefix_of(queue: &QueueRef) -> &str {
    queue.prefix.as_deref().unwrap_or(DEFAULT_PREFIX)
}

/// The commands of one collection, [`COMMANDS_PER_QUEUE`] per queue. Errors stay in their slot (`ignore_errors`)
/// so that one bad key fails only its queue.
fn pipeline_for(queues: &[QueueRef]) -> redis::Pipeline {
    let mut pipeline = redis::pipe();
    pipeline.ignore_errors();
    for queue in queues {
        let key = |suffix: &str| format!("{}:{}:{suffix}", prefix_of(queue), queue.name);
        for list in [key("wait"), key("paused")] {
            pipeline.cmd("LLEN").arg(&list);
            // Every node counted (SAMPLES 0): an estimate could miss one huge element.
            pipeline.cmd("MEMORY").arg("USAGE").arg(&list).arg("SAMPLES").arg(0);
        }
        pipeline.cmd("LLEN").arg(key("active"));
        for set in ["prioritized", "delayed", "waiting-children", "completed", "failed"] {
            pipeline.cmd("ZCARD").arg(key(set));
        }
        pipeline.cmd("HEXISTS").arg(key("meta")).arg("paused");
        pipeline.cmd("EXISTS").arg(key("meta")).arg(key("id"));
        pipeline.cmd("GETRANGE").arg(key("id")).arg(0).arg(MAX_NUMBER_DIGITS);
    }
    pipeline
}

fn reply_problem(index: usize, reply: &Value) -> String {
    let command = match index {
        LLEN_WAIT => "LLEN wait",
        SIZE_WAIT => "MEMORY USAGE wait",
        LLEN_PAUSED => "LLEN paused",
        SIZE_PAUSED => "MEMORY USAGE paused",
        LLEN_ACTIVE => "LLEN active",
        ZCARD_PRIORITIZED => "ZCARD prioritized",
        ZCARD_DELAYED => "ZCARD delayed",
        ZCARD_WAITING_CHILDREN => "ZCARD waiting-children",
        ZCARD_COMPLETED => "ZCARD completed",
        ZCARD_FAILED => "ZCARD failed",
        META_PAUSED => "HEXISTS meta paused",
        EXISTS_META_ID => "EXISTS meta id",
        _ => "GETRANGE id",
    };
    match reply {
        Value::ServerError(e) if e.code() == "NOPERM" => {
            format!("{command} was denied ({e}); grant the Redis ACL user +@read on the queue's keys")
        }
        Value::ServerError(e) if e.code() == "NOAUTH" => {
            format!("{command} was refused ({e}); the server needs a password: put it in the URL")
        }
        Value::ServerError(e) if e.code() == "WRONGTYPE" => {
            format!("{command}: the key holds another type ({e}); is this a BullMQ queue under this prefix?")
        }
        Value::ServerError(e) => format!("{command} failed: {e}"),
        other => format!("{command} answered an unexpected {other:?}"),
    }
}

/// `ballast queues --json`: one object per queue, its counts or why they could not be read.
pub fn counts_json(queues: &[QueueRef], prefix: &str, states: &[Result<QueueState>]) -> serde_json::Value {
    let rows: Vec<serde_json::Value> = queues
        .iter()
        .zip(states)
        .map(|(queue, state)| match state {
            Ok(state) => serde_json::json!({
                "queue": queue.name, "prefix": prefix, "counts": state.counts, "isPaused": state.is_paused,
            }),
            Err(e) => serde_json::json!({ "queue": queue.name, "prefix": prefix, "error": e.to_string() }),
        })
        .collect();
    serde_json::Value::Array(rows)
}

/// `ballast queues`: a table of the queues whose counts were read; the caller reports the others.
pub fn counts_table(queues: &[QueueRef], states: &[Result<QueueState>]) -> String {
    let mut table = format!(
        "{:<24} {:>8} {:>11} {:>7} {:>7} {:>8} {:>7} {:>16} {:>10} {:>7}\n",
        "QUEUE",
        "WAITING",
        "PRIORITIZED",
        "PAUSED",
        "ACTIVE",
        "DELAYED",
        "FAILED",
        "WAITING-CHILDREN",
        "COMPLETED",
        "STATE"
    );
    for (queue, state) in queues.iter().zip(states) {
        if let Ok(s) = state {
            let c = &s.counts;
            table += &format!(
                "{:<24} {:>8} {:>11} {:>7} {:>7} {:>8} {:>7} {:>16} {:>10} {:>7}\n",
                queue.name,
                c.waiting,
                c.prioritized,
                c.paused,
                c.active,
                c.delayed,
                c.failed,
                c.waiting_children,
                c.completed,
                if s.is_paused { "paused" } else { "running" }
            );
        }
    }
    table
}

/// The URL with the password replaced by `***`, so it can go into messages and logs.
///
/// The userinfo is taken to end at the LAST `@` of the whole URL, not at the first `/`, `?` or `#`: a password
/// written without percent-encoding may hold those, and leaking it matters more than a tidy message for the rare
/// URL with an `@` after its host.
pub(crate) fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let Some(at) = url[scheme_end..].rfind('@').map(|i| scheme_end + i) else {
        return url.to_string();
    };
    // A user alone (redis://reader@host) is no secret; only what follows the first colon is.
    match url[scheme_end..at].split_once(':') {
        Some((user, _password)) => format!("{}{user}:***{}", &url[..scheme_end], &url[at..]),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords_and_keeps_the_rest() {
        assert_eq!(redact_url("redis://127.0.0.1:6379/2"), "redis://127.0.0.1:6379/2");
        assert_eq!(redact_url("redis://:s3cret@127.0.0.1:6379/0"), "redis://:***@127.0.0.1:6379/0");
        assert_eq!(redact_url("rediss://reader:p@ss:w@127.0.0.1/1"), "rediss://reader:***@127.0.0.1/1");
        assert_eq!(redact_url("redis://reader@127.0.0.1"), "redis://reader@127.0.0.1");
        for (url, redacted) in [
            ("redis://:pa/ss@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
            ("redis://:pa#ss@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
            ("redis://u:p?a@ss@127.0.0.1/1", "redis://u:***@127.0.0.1/1"),
            ("rediss://u:%2F%23x@host:6380", "rediss://u:***@host:6380"),
        ] {
            assert_eq!(redact_url(url), redacted, "{url}");
        }
    }

    #[test]
    fn invalid_urls_are_refused_naming_the_url_without_its_password() {
        for url in ["http://:hunter2@127.0.0.1:6379", "redis://:hunter2@127.0.0.1:notaport"] {
            let err = BullmqSource::new(url, ConnectOptions::default()).err().expect("must be refused").to_string();
            assert!(err.contains("invalid Redis URL"), "{err}");
            assert!(err.contains("127.0.0.1") && !err.contains("hunter2"), "{err}");
        }
    }

    #[test]
    fn pipeline_has_the_documented_commands_per_queue() {
        let queues =
            [QueueRef { name: "stt".into(), prefix: None }, QueueRef { name: "mt".into(), prefix: Some("x".into()) }];
        let pipeline = pipeline_for(&queues);
        let packed = String::from_utf8_lossy(&pipeline.get_packed_pipeline()).into_owned();
        assert_eq!(packed.matches("\r\nZCARD\r\n").count(), 10);
        assert!(packed.contains("bull:stt:waiting-children") && packed.contains("x:mt:meta"));
        assert!(!packed.contains("LINDEX"), "no element is read before its list's size is known");
        for write in ["RPOP", "EVAL", "DEL", "SET"] {
            assert!(!packed.contains(&format!("\r\n{write}\r\n")), "the reader must not send {write}");
        }
    }
}
