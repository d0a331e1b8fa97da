//! Replicas: several sidecar processes serving one task hub from one PostgreSQL database.
//!
//! The task hub's instances are split into [`PARTITIONS`] partitions (see `crate::partitions`).
//! Each replica serves a share of them: for every partition it serves it runs one engine (the
//! same engine a single sidecar runs, over that partition's rows), whose storage writer holds
//! the partition's advisory lock. The lock is the lease: PostgreSQL frees it when the
//! replica's connection ends, also after `kill -9`, and only the holder's connection commits
//! the partition's changes, so a partition never has two writers.
//!
//! Every replica beats a heartbeat into `replicas` twice a second and records the partitions it
//! serves in `partitions` (with the address other replicas forward calls to). Each aims at an
//! equal share (the partition count divided by the live replicas, rounded up): below it, it
//! takes partitions nobody live serves; above it (a replica joined), it hands one back per
//! round, after flushing it. When a replica dies, its heartbeat goes stale after
//! [`LIVE_WINDOW`]; the others then take its partitions, reload their unfinished instances
//! from the database and dispatch them again (work that was in flight runs again, as after a
//! restart).
//!
//! Deliveries between partitions (events, sub-orchestrations and their results,
//! terminations, entity operations and locks) are rows in `messages`, written in the
//! sender's transaction and announced with `NOTIFY`; the target's engine applies and deletes
//! them in one transaction (see `engine::messages`). Client calls are answered by the replica
//! serving the instance's partition: the replica a client reached forwards the call there
//! (`front`). Worker streams receive the work of every partition their replica serves.

mod front;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::{Notify, mpsc, watch};
use tonic::Status;
use tonic::transport::Channel;

pub(crate) use front::ReplicaFront;

use crate::engine::Engine;
use crate::metrics::{Metrics, Snapshot};
use crate::partitions::{PARTITIONS, Partition, partition_of};
use crate::proto::task_hub_sidecar_service_client::TaskHubSidecarServiceClient;
use crate::proto::{GetWorkItemsRequest, WorkItem};
use crate::storage::postgres::{LEGACY_WRITER_LOCK, MESSAGES_CHANNEL, PostgresDatabase};
use crate::storage::{CommitSignal, MESSAGES_PER_READ, Storage, StorageError};
use crate::time::now_ms;
use crate::work_queue::{Filters, InFlightCounts, WorkKind, WorkStream};

/// How often a replica beats its heartbeat and rebalances.
const TICK: Duration = Duration::from_millis(500);

/// A replica whose heartbeat is older than this counts as gone: its partitions are taken over.
const LIVE_WINDOW: Duration = Duration::from_secs(3);

/// How often a partition looks for messages without being notified (a missed notification,
/// a reconnecting listener).
const MESSAGE_POLL: Duration = Duration::from_secs(1);

/// A peer replica's client.
pub(crate) type Peer = TaskHubSidecarServiceClient<Channel>;

/// A partition this replica serves.
pub(crate) struct Served {
    pub(crate) partition: Partition,
    pub(crate) engine: Arc<Engine>,
    /// Woken when a commit elsewhere sent this partition messages.
    messages: Notify,
    /// Worker stream id (this replica's) → stream id in the partition's engine.
    attached: Mutex<HashMap<u64, u64>>,
}

/// A worker's `GetWorkItems` stream: attached to the engine of every partition served here.
struct WorkerStream {
    tx: mpsc::UnboundedSender<Result<WorkItem, Status>>,
    filters: Filters,
    request: GetWorkItemsRequest,
    last_send: Arc<AtomicI64>,
    in_flight: Arc<InFlightCounts>,
    /// The worker runs in this process (see `WorkStream::in_process`).
    in_process: bool,
}

impl WorkerStream {
    fn attach(&self, id: u64, served: &Served) {
        let stream = WorkStream::new(
            self.tx.clone(),
            self.filters.clone(),
            &self.request,
            Arc::clone(&self.last_send),
            Arc::clone(&self.in_flight),
        )
        .in_process(self.in_process);
        if let Ok(engine_id) = served.engine.add_stream(stream) {
            lock(&served.attached).insert(id, engine_id);
        }
    }
}

#[derive(Default)]
struct Streams {
    next: u64,
    open: BTreeMap<u64, WorkerStream>,
}

/// Where a call for a partition goes.
pub(crate) enum Target {
    Local(Arc<Served>),
    Remote(Peer),
    /// No live replica serves it right now (a failover in progress).
    Nobody,
}

/// This replica: the partitions it serves and what it knows of the others.
pub(crate) struct ReplicaSet {
    id: String,
    /// Where other replicas reach this one.
    address: String,
    /// Sent along with forwarded calls when the replicas require a bearer token.
    token: Option<String>,
    db: PostgresDatabase,
    metrics: Arc<Metrics>,
    served: RwLock<BTreeMap<u32, Arc<Served>>>,
    /// Partitions live replicas other than this one serve → their address.
    owners: RwLock<HashMap<u32, String>>,
    peers: Mutex<HashMap<String, Peer>>,
    /// Also held while partitions are added or removed, so streams and partitions attach
    /// exactly once.
    streams: Mutex<Streams>,
    /// Woken to refresh `owners` before the next tick (a forwarded call failed).
    refresh: Notify,
    shutdown: watch::Sender<bool>,
    /// When (ms since the epoch) the last heartbeat reached the database.
    last_beat_ms: AtomicI64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().expect("replica lock poisoned")
}

impl ReplicaSet {
    /// Connects, migrates the schema, joins the replicas and takes this replica's share of the
    /// partitions (all of them when it is alone), then keeps rebalancing in the background.
    pub(crate) async fn start(
        db: PostgresDatabase,
        address: String,
        token: Option<String>,
    ) -> Result<Arc<Self>, StorageError> {
        let (shutdown, _) = watch::channel(false);
        let set = Arc::new(Self {
            id: uuid::Uuid::new_v4().simple().to_string(),
            address,
            token,
            db,
            metrics: Arc::default(),
            served: RwLock::default(),
            owners: RwLock::default(),
            peers: Mutex::default(),
            streams: Mutex::default(),
            refresh: Notify::new(),
            shutdown,
            last_beat_ms: AtomicI64::new(now_ms()),
        });
        let client = set.connect().await?;
        set.rebalance(&client).await?;
        tracing::info!(
            replica = %set.id,
            partitions = ?set.served_partitions(),
            "serving the PostgreSQL task hub as a replica"
        );
        let me = Arc::clone(&set);
        tokio::spawn(async move { me.run(client).await });
        Ok(set)
    }

    /// The control connection: it holds the legacy writer lock shared (so a single-writer
    /// sidecar of schema version 1 cannot write meanwhile) and listens for messages.
    async fn connect(self: &Arc<Self>) -> Result<tokio_postgres::Client, StorageError> {
        let (client, mut connection) = self.db.config().connect(tokio_postgres::NoTls).await?;
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(message) = futures::StreamExt::next(&mut messages).await {
                match message {
                    Ok(tokio_postgres::AsyncMessage::Notification(n)) => {
                        let Some(me) = me.upgrade() else { break };
                        if let Ok(part) = n.payload().parse::<u32>() {
                            if let Some(served) = me.served_partition(part) {
                                served.messages.notify_one();
                            }
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "the replica's PostgreSQL connection ended");
                        break;
                    }
                }
            }
        });
        let shared: bool = client
            .query_one(
                "SELECT pg_try_advisory_lock_shared($1)",
                &[&LEGACY_WRITER_LOCK],
            )
            .await?
            .get(0);
        if !shared {
            return Err(StorageError::Locked(
                "a durable sidecar of an older version (one writer per database) is writing to this PostgreSQL database; stop it before starting replicas of this version".into(),
            ));
        }
        client
            .batch_execute(&format!("LISTEN {MESSAGES_CHANNEL}"))
            .await?;
        Ok(client)
    }

    /// Why this replica cannot serve calls right now (its heartbeat has not reached the
    /// database for longer than [`LIVE_WINDOW`], so the others may be taking its partitions);
    /// `None` when it can.
    pub(crate) fn unready(&self) -> Option<String> {
        let silent_ms = now_ms() - self.last_beat_ms.load(Ordering::SeqCst);
        let window_ms = i64::try_from(LIVE_WINDOW.as_millis()).unwrap_or(i64::MAX);
        (silent_ms > window_ms).then(|| {
            format!(
                "this replica has not reached PostgreSQL for {} s; it keeps retrying",
                silent_ms / 1000
            )
        })
    }

    /// Rebalances every tick until shutdown; reconnects with backoff when the database is
    /// unreachable (the partitions served keep serving as long as their writers can commit).
    async fn run(self: Arc<Self>, mut client: tokio_postgres::Client) {
        let mut stop = self.shutdown.subscribe();
        let mut pause = TICK;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(TICK) => {}
                _ = self.refresh.notified() => {}
                _ = stop.changed() => break,
            }
            if client.is_closed() {
                match self.connect().await {
                    Ok(fresh) => {
                        client = fresh;
                        pause = TICK;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot reach PostgreSQL; retrying");
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(Duration::from_secs(5));
                        continue;
                    }
                }
            }
            if let Err(e) = self.rebalance(&client).await {
                tracing::warn!(error = %e, "replica heartbeat or rebalance failed; retrying");
            }
        }
        self.release_all(&client).await;
        let _ = client
            .execute("DELETE FROM replicas WHERE id = $1", &[&self.id])
            .await;
    }

    /// One round: heartbeat, learn who serves what, drop failed partitions, then take or
    /// hand back partitions toward an equal share.
    async fn rebalance(
        self: &Arc<Self>,
        client: &tokio_postgres::Client,
    ) -> Result<(), StorageError> {
        client
            .execute(
                "INSERT INTO replicas (id, address, seen) VALUES ($1, $2, now())
                 ON CONFLICT (id) DO UPDATE SET seen = now(), address = EXCLUDED.address",
                &[&self.id, &self.address],
            )
            .await?;
        self.last_beat_ms.store(now_ms(), Ordering::SeqCst);
        let live: Vec<String> = client
            .query(
                &format!(
                    "SELECT id FROM replicas WHERE seen > now() - interval '{} milliseconds'",
                    LIVE_WINDOW.as_millis()
                ),
                &[],
            )
            .await?
            .into_iter()
            .map(|row| row.get(0))
            .collect();
        let mut owners = HashMap::new();
        for row in client
            .query("SELECT part, replica, address FROM partitions", &[])
            .await?
        {
            let (part, replica, address): (i32, String, String) =
                (row.get(0), row.get(1), row.get(2));
            if replica != self.id && live.contains(&replica) {
                owners.insert(u32::try_from(part).unwrap_or(u32::MAX), address);
            }
        }
        *self.owners.write().expect("replica lock poisoned") = owners.clone();

        let failed: Vec<u32> = self
            .served
            .read()
            .expect("replica lock poisoned")
            .values()
            .filter(|s| s.engine.storage_signal().failure().is_some())
            .map(|s| s.partition.index)
            .collect();
        for part in failed {
            tracing::error!(
                partition = part,
                "a partition's storage failed; handing it back to be reloaded"
            );
            self.release(client, part).await;
        }

        let replicas = u32::try_from(live.len().max(1)).unwrap_or(u32::MAX);
        let share = PARTITIONS.div_ceil(replicas);
        let mine = self.served_partitions();
        if mine.len() > share as usize {
            // A replica joined: hand back one partition per round (the newest taken last).
            if let Some(part) = mine.last() {
                self.release(client, *part).await;
            }
            return Ok(());
        }
        let start = partition_of(&self.id, PARTITIONS);
        let mut count = mine.len();
        for offset in 0..PARTITIONS {
            if count >= share as usize {
                break;
            }
            let part = (start + offset) % PARTITIONS;
            if mine.contains(&part) || owners.contains_key(&part) {
                continue;
            }
            match self.acquire(client, part).await {
                Ok(true) => count += 1,
                Ok(false) => {}
                Err(e) => tracing::warn!(partition = part, error = %e, "cannot take a partition"),
            }
        }
        Ok(())
    }

    /// Takes partition `part` if its lock is free: loads its unfinished instances, starts its
    /// engine, attaches the worker streams and records this replica as its server.
    async fn acquire(
        self: &Arc<Self>,
        client: &tokio_postgres::Client,
        part: u32,
    ) -> Result<bool, StorageError> {
        let partition = Partition {
            index: part,
            count: PARTITIONS,
        };
        let signal = Arc::new(CommitSignal::with_metrics(Arc::clone(&self.metrics)));
        let opened = {
            let me = Arc::clone(self);
            let signal = Arc::clone(&signal);
            tokio::task::spawn_blocking(move || me.db.open_partition(partition, signal))
                .await
                .map_err(|_| StorageError::WriterStopped)??
        };
        let Some(storage) = opened else {
            return Ok(false);
        };
        let storage: Arc<dyn Storage> = Arc::new(storage);
        let loaded = {
            let storage = Arc::clone(&storage);
            tokio::task::spawn_blocking(move || storage.load())
                .await
                .map_err(|_| StorageError::WriterStopped)?
        };
        let engine = match loaded
            .and_then(|l| Engine::new(Arc::clone(&storage), signal, l, Some(partition)))
        {
            Ok(engine) => engine,
            Err(e) => {
                tokio::task::spawn_blocking(move || storage.close())
                    .await
                    .ok();
                return Err(e);
            }
        };
        engine.spawn_tasks();
        let served = Arc::new(Served {
            partition,
            engine,
            messages: Notify::new(),
            attached: Mutex::default(),
        });
        {
            let streams = lock(&self.streams);
            self.served
                .write()
                .expect("replica lock poisoned")
                .insert(part, Arc::clone(&served));
            for (id, stream) in &streams.open {
                stream.attach(*id, &served);
            }
        }
        tokio::spawn(pump_messages(Arc::clone(&served)));
        client
            .execute(
                "INSERT INTO partitions (part, replica, address, since) VALUES ($1, $2, $3, now())
                 ON CONFLICT (part) DO UPDATE SET replica = EXCLUDED.replica,
                     address = EXCLUDED.address, since = now()",
                &[
                    &i32::try_from(part).unwrap_or(i32::MAX),
                    &self.id,
                    &self.address,
                ],
            )
            .await?;
        tracing::info!(partition = part, "now serving partition");
        Ok(true)
    }

    /// Stops serving `part`: its engine stops dispatching, its storage flushes and closes
    /// (which frees the partition's lock for another replica).
    async fn release(&self, client: &tokio_postgres::Client, part: u32) {
        let served = {
            let _streams = lock(&self.streams);
            self.served
                .write()
                .expect("replica lock poisoned")
                .remove(&part)
        };
        let Some(served) = served else { return };
        served.engine.stop_serving();
        let engine = Arc::clone(&served.engine);
        let _ = tokio::task::spawn_blocking(move || engine.close_storage()).await;
        let _ = client
            .execute(
                "DELETE FROM partitions WHERE part = $1 AND replica = $2",
                &[&i32::try_from(part).unwrap_or(i32::MAX), &self.id],
            )
            .await;
        tracing::info!(partition = part, "no longer serving partition");
    }

    async fn release_all(&self, client: &tokio_postgres::Client) {
        for part in self.served_partitions() {
            self.release(client, part).await;
        }
    }

    /// Stops rebalancing and hands back every partition (flushed). Returns once done.
    pub(crate) async fn shutdown(&self) {
        let _ = self.shutdown.send(true);
        // Worker streams end (the server waits for open calls before it stops).
        lock(&self.streams).open.clear();
        // The control task releases; wait until nothing is served.
        for _ in 0..600 {
            if self.served_partitions().is_empty() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops every engine at once without flushing (the handle was dropped).
    pub(crate) fn abort(&self) {
        let _ = self.shutdown.send(true);
        lock(&self.streams).open.clear();
        for served in self.served.read().expect("replica lock poisoned").values() {
            served.engine.begin_shutdown();
        }
    }

    /// The partitions served here, in order.
    pub(crate) fn served_partitions(&self) -> Vec<u32> {
        self.served
            .read()
            .expect("replica lock poisoned")
            .keys()
            .copied()
            .collect()
    }

    pub(crate) fn served_partition(&self, part: u32) -> Option<Arc<Served>> {
        self.served
            .read()
            .expect("replica lock poisoned")
            .get(&part)
            .cloned()
    }

    /// Any partition served here (for calls any partition answers, such as queries).
    pub(crate) fn any_served(&self) -> Option<Arc<Served>> {
        self.served
            .read()
            .expect("replica lock poisoned")
            .values()
            .next()
            .cloned()
    }

    /// The partition served here whose engine issued completion token `token`.
    pub(crate) fn by_token(&self, token: &str) -> Option<Arc<Served>> {
        let prefix = token.split_once('-').map_or(token, |(p, _)| p);
        self.served
            .read()
            .expect("replica lock poisoned")
            .values()
            .find(|s| s.engine.token_prefix() == prefix)
            .cloned()
    }

    /// Where a call for partition `part` goes now.
    pub(crate) fn target(&self, part: u32) -> Target {
        if let Some(served) = self.served_partition(part) {
            return Target::Local(served);
        }
        let address = self
            .owners
            .read()
            .expect("replica lock poisoned")
            .get(&part)
            .cloned();
        match address {
            Some(address) => match self.peer(&address) {
                Some(peer) => Target::Remote(peer),
                None => Target::Nobody,
            },
            None => Target::Nobody,
        }
    }

    /// Asks for a fresh view of who serves what (a forwarded call found the owner gone).
    pub(crate) fn refresh_owners(&self) {
        self.refresh.notify_one();
    }

    fn peer(&self, address: &str) -> Option<Peer> {
        let mut peers = lock(&self.peers);
        if let Some(peer) = peers.get(address) {
            return Some(peer.clone());
        }
        let channel = tonic::transport::Endpoint::from_shared(address.to_owned())
            .ok()?
            .connect_timeout(Duration::from_secs(2))
            .connect_lazy();
        let peer = TaskHubSidecarServiceClient::new(channel)
            .max_decoding_message_size(crate::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(crate::MAX_MESSAGE_BYTES);
        peers.insert(address.to_owned(), peer.clone());
        Some(peer)
    }

    /// The bearer token forwarded calls carry, if the replicas require one.
    pub(crate) fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// Connects a worker stream to every partition served here, now and later; returns its
    /// id for [`ReplicaSet::close_stream`]. `in_process`: the worker runs in this process.
    pub(crate) fn open_stream(
        &self,
        tx: mpsc::UnboundedSender<Result<WorkItem, Status>>,
        request: GetWorkItemsRequest,
        last_send: Arc<AtomicI64>,
        in_process: bool,
    ) -> u64 {
        let mut streams = lock(&self.streams);
        streams.next += 1;
        let id = streams.next;
        let stream = WorkerStream {
            tx,
            filters: Filters::from_request(&request),
            request,
            last_send,
            in_flight: Arc::default(),
            in_process,
        };
        for served in self.served.read().expect("replica lock poisoned").values() {
            stream.attach(id, served);
        }
        streams.open.insert(id, stream);
        id
    }

    /// The worker's stream ended: its work in flight goes back to the queues.
    pub(crate) fn close_stream(&self, id: u64) {
        let _streams = {
            let mut streams = lock(&self.streams);
            streams.open.remove(&id)
        };
        let served: Vec<Arc<Served>> = self
            .served
            .read()
            .expect("replica lock poisoned")
            .values()
            .cloned()
            .collect();
        for s in served {
            let engine_id = lock(&s.attached).remove(&id);
            if let Some(engine_id) = engine_id {
                s.engine.remove_stream(engine_id);
            }
        }
    }

    /// The replica's metrics in the Prometheus text format: what every partition served here
    /// holds, with the counters and latencies they share.
    pub(crate) fn metrics_text(&self) -> String {
        let mut by_status: BTreeMap<&'static str, i64> = BTreeMap::new();
        let mut total = Snapshot {
            instances: Vec::new(),
            queued: [
                (WorkKind::Orchestration, 0),
                (WorkKind::Activity, 0),
                (WorkKind::Entity, 0),
            ],
            workers: 0,
        };
        for served in self.served.read().expect("replica lock poisoned").values() {
            let s = served.engine.metrics_snapshot();
            for (status, n) in s.instances {
                *by_status.entry(status).or_default() += n;
            }
            for (sum, (_, n)) in total.queued.iter_mut().zip(s.queued) {
                sum.1 += n;
            }
        }
        total.instances = by_status.into_iter().collect();
        total.workers = i64::try_from(lock(&self.streams).open.len()).unwrap_or(i64::MAX);
        self.metrics.render(total)
    }
}

/// Applies the messages other partitions send to `served`, when notified and every
/// [`MESSAGE_POLL`], until the partition stops.
async fn pump_messages(served: Arc<Served>) {
    let mut stop = served.engine.shutdown_signal();
    loop {
        let full = match served.engine.receive_messages().await {
            Ok(read) => read >= MESSAGES_PER_READ,
            Err(e) => {
                tracing::warn!(partition = served.partition.index, error = %e, "cannot read messages");
                false
            }
        };
        if *stop.borrow() {
            break;
        }
        if full {
            continue;
        }
        tokio::select! {
            _ = served.messages.notified() => {}
            _ = tokio::time::sleep(MESSAGE_POLL) => {}
            _ = stop.changed() => break,
        }
    }
}

/// When a worker stream last received something, for the health pings.
pub(crate) fn touch(last_send: &AtomicI64) {
    last_send.store(now_ms(), Ordering::Relaxed);
}
