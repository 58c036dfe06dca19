//! Group commit: the write path batches the work of many requests and job outcomes into one
//! transaction, so the cost of a transaction (a pool connection, `BEGIN`, `COMMIT` and its disk
//! write, the audit chain head's lock) is paid once per batch instead of once per write.
//!
//! A write is a *unit*: a closure over a [`WriteTx`] that does what one request or job outcome
//! needs and buffers its audit records. A writer task takes every unit waiting (up to
//! [`MAX_BATCH`]) and runs them — a unit that fails is rolled back alone (the batch is run again
//! with a savepoint per unit) and gets its own error, the others go on — appends the batch's audit records to the chain with one head
//! update, commits, and only then answers each unit. So a caller that got an answer knows its
//! write is committed: an acknowledged write survives a killed process; with SQLite's
//! `synchronous = NORMAL` (WAL) a power loss may lose the last batches acknowledged before it,
//! never leave half of one.
//!
//! SQLite has one writer task (it has one writer connection); PostgreSQL has several, whose
//! batches run side by side and meet only at the rows they share (the audit head last of all).

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};

use crate::audit::{Actor, AuditKeys, Entry};
use crate::domain::ids::{TaskId, WorkspaceId};
use crate::domain::sessions::{Session, StatusChange};
use crate::domain::tasks::{Task, TaskEvent, TaskRef};
use crate::domain::time::Timestamp;
use crate::store::assignment::{AssigneeRead, TaskRead, UserRef};
use crate::store::audit::ChainHead;
use crate::store::batch_rows::BatchRows;
use crate::store::jobs::NewJob;
use crate::store::{self, Backend, Conn, Db, StoreError, Tx};

/// Units one transaction takes at most.
pub const MAX_BATCH: usize = 128;
/// Times a batch the database gave up on (a deadlock between PostgreSQL's writers) runs again.
const RETRIES: usize = 3;
/// Units waiting in a writer queue at most (the shared one, and each writer task's own); more
/// wait to be queued.
const QUEUE: usize = 4_096;
/// Writer tasks on PostgreSQL. Every batch that writes audit records commits in turn after the
/// one before it (the chain head's row), and every batch that creates tasks after the one before
/// it that did (the workspace's counter): one commit, one WAL flush, per batch on that chain. So
/// units per batch, not batches at once, decide how many writes a second pass the chain: two
/// writers (batches twice the units of four's, and half the lock waits) passed 25–40 % more in
/// the trigger and end-to-end benches than four, and one writer (no batch running while another
/// commits) less than two.
const POSTGRES_WRITERS: usize = 2;

/// The transaction a batch runs in, as one unit sees it.
pub struct WriteTx {
    tx: Tx,
    audit: Vec<(Actor, Entry, Timestamp)>,
    numbering: Vec<Numbering>,
    after_commit: Vec<AfterCommit>,
    history: History,
    /// Assignees read in this batch (see [`WriteTx::assignee`]).
    assignees: HashMap<(WorkspaceId, UserRef), Option<(String, AssigneeRead)>>,
    /// Tasks the batch's units named read (and, on PostgreSQL, locked) at its start
    /// (see [`WriteTx::task_to_change`]).
    tasks_read: HashMap<String, TaskRead>,
}

/// Rows the batch's units added that nothing reads before the batch commits (new tasks — nobody
/// outside the unit knows their ids yet —, new sessions, a task's events, a new session's first
/// status and its start job), and the tasks they changed (a unit that reads a task sees an
/// earlier unit's change through [`WriteTx::as_changed`]), written for the whole batch in
/// multi-row statements just before it commits. They cannot fail on their own (ids of their own,
/// rows the unit itself wrote or read), so a unit's writes stay its own while the batch saves a
/// statement per row. A unit that reads
/// sessions a unit before it may have opened (a task's sessions, a bot's), or writes a row that
/// refers to a new task or session at once, writes the new ones first
/// ([`WriteTx::write_new_rows`]).
#[derive(Default)]
struct History {
    tasks: Vec<Task>,
    /// Each change appended (a unit that fails takes its own off the end); the last of a task wins.
    changed_tasks: Vec<Task>,
    sessions: Vec<Session>,
    task_events: Vec<TaskEvent>,
    status_changes: Vec<StatusChange>,
    jobs: Vec<NewJob>,
}

impl History {
    fn lengths(&self) -> [usize; 6] {
        [
            self.tasks.len(),
            self.changed_tasks.len(),
            self.sessions.len(),
            self.task_events.len(),
            self.status_changes.len(),
            self.jobs.len(),
        ]
    }

    fn truncate(&mut self, [tasks, changed, sessions, events, changes, jobs]: [usize; 6]) {
        self.tasks.truncate(tasks);
        self.changed_tasks.truncate(changed);
        self.sessions.truncate(sessions);
        self.task_events.truncate(events);
        self.status_changes.truncate(changes);
        self.jobs.truncate(jobs);
    }
}

/// What a unit does once its batch is committed (hand work to a worker, wake one).
pub type AfterCommit = Box<dyn FnOnce() + Send + Sync>;

/// A task short number given when its batch commits: read it once the write answered.
#[derive(Debug, Clone, Default)]
pub struct TaskNumber(Arc<std::sync::OnceLock<i64>>);

impl TaskNumber {
    /// The number, once the batch that took it committed.
    pub fn get(&self) -> Option<i64> {
        self.0.get().copied()
    }
}

/// A task of the batch waiting for its short number.
struct Numbering {
    workspace: WorkspaceId,
    task: TaskId,
    placeholder: i64,
    number: TaskNumber,
}

impl std::fmt::Debug for WriteTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteTx")
            .field("audit", &self.audit.len())
            .finish_non_exhaustive()
    }
}

impl WriteTx {
    /// A new transaction for a batch (one attempt at it).
    async fn begin(db: &Db) -> Result<WriteTx, StoreError> {
        Ok(WriteTx {
            tx: db.begin().await?,
            audit: Vec::new(),
            numbering: Vec::new(),
            after_commit: Vec::new(),
            history: History::default(),
            assignees: HashMap::new(),
            tasks_read: HashMap::new(),
        })
    }

    /// The connection, for the store's functions.
    pub fn conn(&mut self) -> &mut Conn {
        &mut self.tx
    }

    /// Records `entry` by `actor` at `at` in the audit trail, with the batch (in unit order).
    pub fn audit(&mut self, actor: &Actor, entry: Entry, at: Timestamp) {
        self.audit.push((actor.clone(), entry, at));
    }

    /// Runs `action` once the batch is committed (never if this unit's writes are rolled back):
    /// how a unit hands what it wrote to a worker ([`crate::handoff`]) or wakes one.
    pub fn after_commit(&mut self, action: impl FnOnce() + Send + Sync + 'static) {
        self.after_commit.push(Box::new(action));
    }

    /// The user of `workspace` named by `user`, with their connection and the workspace's name
    /// ([`store::assignment::assignee`]), read once per batch: units do not write users,
    /// connections or the workspace's connection types (their use cases commit on their own), so
    /// a second read in the batch would find what the first found — as if every unit had read
    /// when the first did, which a batch committed afterwards may equally be ordered after.
    pub async fn assignee(
        &mut self,
        workspace: &WorkspaceId,
        user: &UserRef,
    ) -> Result<Option<(String, AssigneeRead)>, StoreError> {
        let key = (workspace.clone(), user.clone());
        if let Some(read) = self.assignees.get(&key) {
            return Ok(read.clone());
        }
        let read = store::assignment::assignee(&mut self.tx, workspace, user).await?;
        self.assignees.insert(key, read.clone());
        Ok(read)
    }

    /// The task of `workspace` named by `task_ref` and, if `assignee` is given, that user of the
    /// workspace ([`store::assignment::task_and_assignee`]), for a unit that changes the task:
    /// from the batch's read of its units' tasks if the batch read it at its start (one statement
    /// for all of them: on PostgreSQL a unit's own read was a round trip the writer waited for),
    /// else read now. The task is as its row holds it: pass it through [`WriteTx::as_changed`].
    pub async fn task_to_change(
        &mut self,
        workspace: &WorkspaceId,
        task_ref: &TaskRef,
        assignee: Option<&UserRef>,
    ) -> Result<Option<TaskRead>, StoreError> {
        let read = match task_ref {
            TaskRef::Id(id) => self
                .tasks_read
                .get(id)
                .filter(|read| read.task.workspace_id == *workspace)
                .cloned(),
            TaskRef::ShortNumber(_) => None,
        };
        let Some(mut read) = read else {
            return store::assignment::task_and_assignee(&mut self.tx, workspace, task_ref, assignee).await;
        };
        if let Some(user) = assignee {
            read.assignee = self.assignee(workspace, user).await?.map(|(_, found)| found);
        }
        Ok(Some(read))
    }

    /// Forgets the batch's start-of-batch read of `task` (see [`WriteTx::task_to_change`]): for
    /// a unit that changes what that read holds beyond the task's own fields (a comment on it),
    /// so later units read the row again.
    pub fn forget_task_read(&mut self, task: &TaskId) {
        self.tasks_read.remove(task.as_str());
    }

    /// Reads the tasks `batch`'s units will change (on PostgreSQL, when two or more units do: a
    /// lone unit reads its task as it runs, in as many statements).
    async fn read_units_tasks(&mut self, batch: &[Unit]) -> Result<(), StoreError> {
        if !self.tx.is_postgres() {
            return Ok(());
        }
        let mut ids: Vec<&str> = batch
            .iter()
            .filter_map(|unit| unit.task.as_ref().map(TaskId::as_str))
            .collect();
        if ids.len() < 2 {
            return Ok(());
        }
        ids.sort_unstable();
        ids.dedup();
        for read in store::assignment::tasks_to_change(&mut self.tx, &ids).await? {
            self.tasks_read.insert(read.task.id.to_string(), read);
        }
        Ok(())
    }

    /// Inserts the new `task` (numbered with [`WriteTx::number_task`]) when the batch commits, or
    /// before a unit writes a row that refers to it at once ([`WriteTx::write_new_rows`]).
    pub fn insert_task_at_commit(&mut self, task: Task) {
        self.history.tasks.push(task);
    }

    /// Writes `task`'s editable fields back when the batch commits. A unit that reads a task must
    /// pass it through [`WriteTx::as_changed`]: the row still holds what it held before the
    /// batch.
    pub fn update_task_at_commit(&mut self, task: Task) {
        self.history.changed_tasks.push(task);
    }

    /// `task` as read from its row, or as the batch's units changed it so far if one did: every
    /// unit that reads a task in a write passes it through here.
    pub fn as_changed(&self, task: Task) -> Task {
        match self
            .history
            .changed_tasks
            .iter()
            .rev()
            .find(|changed| changed.id == task.id)
        {
            Some(changed) => changed.clone(),
            None => task,
        }
    }

    /// Inserts the new `session` when the batch commits, or before a later unit reads sessions.
    pub fn insert_session_at_commit(&mut self, session: Session) {
        self.history.sessions.push(session);
    }

    /// Writes the tasks and sessions units of this batch added so far (tasks with their
    /// placeholder numbers, numbered at commit): call before reading sessions a unit before this
    /// one may have opened (a task's, a bot's), and before writing at once a row that refers to a
    /// new task or session.
    pub async fn write_new_rows(&mut self) -> Result<(), StoreError> {
        if !self.history.tasks.is_empty() {
            let tasks = std::mem::take(&mut self.history.tasks);
            store::tasks::insert_each(&mut self.tx, &tasks).await?;
        }
        if self.history.sessions.is_empty() {
            return Ok(());
        }
        let sessions = std::mem::take(&mut self.history.sessions);
        store::sessions::insert_many(&mut self.tx, &sessions).await
    }

    /// Adds `event` to its task's history when the batch commits (see [`History`]).
    pub fn record_task_event(&mut self, event: TaskEvent) {
        self.history.task_events.push(event);
    }

    /// Adds `change` to its session's status history when the batch commits: for a session the
    /// unit opened (a keyed change, which a repeat must find at once, is written by the unit).
    pub fn record_status_change(&mut self, change: StatusChange) {
        self.history.status_changes.push(change);
    }

    /// Inserts `job` when the batch commits: for a job nothing in the batch looks for (a new
    /// session's start, handed to the worker once the batch committed).
    pub fn insert_job_at_commit(&mut self, job: NewJob) {
        self.history.jobs.push(job);
    }

    /// A short number for `task`, which this unit inserts: the unit inserts it with the returned
    /// placeholder (negative, unique), and just before the batch commits the workspace's next
    /// numbers are taken for all the batch's new tasks in one statement, the tasks updated, and
    /// the audit entries' `shortNumber` placeholders replaced. So the workspace's counter row is
    /// locked only while the batch commits, not from a unit's start to the batch's end — on
    /// PostgreSQL that lock serialised every writer's batches. Numbers stay gap-free and in commit
    /// order.
    pub fn number_task(&mut self, workspace: &WorkspaceId, task: &TaskId) -> (i64, TaskNumber) {
        let placeholder = -1 - (rand::random::<i64>() & (i64::MAX >> 1));
        let number = TaskNumber::default();
        self.numbering.push(Numbering {
            workspace: workspace.clone(),
            task: task.clone(),
            placeholder,
            number: number.clone(),
        });
        (placeholder, number)
    }
}

/// The errors a unit may fail with: the store's, or its own rules'.
pub trait UnitError: From<StoreError> {
    /// Whether the database gave up on the transaction (a deadlock, a serialization failure), so
    /// running the batch again may succeed.
    fn is_retryable(&self) -> bool;
}

impl UnitError for StoreError {
    fn is_retryable(&self) -> bool {
        StoreError::is_retryable(self)
    }
}

/// How a unit's run ended (its value or error waits in the unit until the batch is committed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ran {
    Done,
    Failed,
    /// The database gave up on the transaction: the whole batch must run again.
    Retry,
}

/// A unit's work.
type Work = Box<dyn for<'a> Fn(&'a mut WriteTx) -> Pin<Box<dyn Future<Output = Ran> + Send + 'a>> + Send + Sync>;
/// Tells the unit's caller how its batch ended.
type Answer = Box<dyn FnOnce(Result<(), Arc<StoreError>>) + Send + Sync>;

struct Unit {
    work: Work,
    answer: Answer,
    /// The task the unit changes, read for the whole batch at its start ([`WriteTx::task_to_change`]).
    task: Option<TaskId>,
}

/// Why a unit's write did not happen, besides the unit's own error.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The batch could not be committed (or the writer is gone).
    #[error("the write could not be committed: {0}")]
    Store(Arc<StoreError>),
}

impl From<WriteError> for StoreError {
    fn from(error: WriteError) -> Self {
        match error {
            WriteError::Store(cause) => match Arc::try_unwrap(cause) {
                Ok(error) => error,
                Err(shared) => StoreError::Database(sqlx::Error::Protocol(format!("{shared}"))),
            },
        }
    }
}

/// Hands units to the writer tasks.
#[derive(Debug, Clone)]
pub struct Writer {
    /// Units any writer task may take.
    queue: mpsc::Sender<Unit>,
    /// One queue per writer task, for units that change a row others may change too
    /// ([`Writer::write_to_task`]).
    own: Arc<[mpsc::Sender<Unit>]>,
    /// Counts committed batches: readers waiting for new records (live session streams) watch it.
    committed: tokio::sync::watch::Sender<u64>,
}

impl std::fmt::Debug for Unit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Unit")
    }
}

impl Writer {
    /// Starts the writer tasks over `db`, chaining audit records with `keys`. They stop when every
    /// `Writer` is dropped, after the units already queued.
    pub fn start(db: Db, keys: AuditKeys) -> (Writer, Vec<tokio::task::JoinHandle<()>>) {
        let (queue, receiver) = mpsc::channel(QUEUE);
        let writers = match db.backend() {
            Backend::Sqlite => 1,
            Backend::Postgres => POSTGRES_WRITERS,
        };
        let receiver = Arc::new(tokio::sync::Mutex::new(receiver));
        let chain = Chain {
            keys,
            head: Arc::new(ChainHead::default()),
        };
        let committed = tokio::sync::watch::Sender::new(0);
        let mut own = Vec::with_capacity(writers);
        let mut handles = Vec::with_capacity(writers);
        for _ in 0..writers {
            let (sender, own_receiver) = mpsc::channel(QUEUE);
            own.push(sender);
            let queues = Queues {
                shared: receiver.clone(),
                own: own_receiver,
            };
            handles.push(tokio::spawn(run(db.clone(), chain.clone(), queues, committed.clone())));
        }
        let own = own.into();
        (Writer { queue, own, committed }, handles)
    }

    /// Changes after each committed batch (its value counts them): wait on it to read what was
    /// just written.
    pub fn commits(&self) -> tokio::sync::watch::Receiver<u64> {
        self.committed.subscribe()
    }

    /// Runs `work` in the next batch and answers once that batch is committed: `work`'s own error
    /// (its writes rolled back, the batch's others kept), or the batch's store error. `work` may
    /// run more than once (it must not have effects outside the transaction).
    pub async fn write<T, E, F>(&self, work: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: UnitError + Send + 'static,
        F: for<'a> Fn(&'a mut WriteTx) -> Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'a>>
            + Send
            + Sync
            + 'static,
    {
        self.write_on(&self.queue, None, work).await
    }

    /// As [`Writer::write`], for a unit that changes the task of `workspace` named by `task_ref`,
    /// which it reads with [`WriteTx::task_to_change`] (the batch reads the tasks of all such units
    /// at its start): every unit naming the same task runs on the same writer task. PostgreSQL's writers run
    /// batches side by side; two of them changing the same rows in another order would deadlock
    /// (the database then gives up on one batch, which runs again), and one batch would wait for
    /// the other's commit. One writer's batches run in turn, and within a batch units see each
    /// other's changes.
    pub async fn write_to_task<T, E, F>(&self, workspace: &WorkspaceId, task_ref: &TaskRef, work: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: UnitError + Send + 'static,
        F: for<'a> Fn(&'a mut WriteTx) -> Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'a>>
            + Send
            + Sync
            + 'static,
    {
        let (key, task) = match task_ref {
            TaskRef::Id(id) => (format!("task {workspace} {id}"), Some(TaskId::from(id.clone()))),
            TaskRef::ShortNumber(number) => (format!("task {workspace} #{number}"), None),
        };
        self.write_on(self.own_queue(&key), task, work).await
    }

    /// The queue of the writer task that takes the units naming `key` (a task).
    fn own_queue(&self, key: &str) -> &mpsc::Sender<Unit> {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut hasher);
        &self.own[(hasher.finish() % self.own.len() as u64) as usize]
    }

    async fn write_on<T, E, F>(&self, queue: &mpsc::Sender<Unit>, task: Option<TaskId>, work: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: UnitError + Send + 'static,
        F: for<'a> Fn(&'a mut WriteTx) -> Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'a>>
            + Send
            + Sync
            + 'static,
    {
        let slot: Arc<Mutex<Option<Result<T, E>>>> = Arc::new(Mutex::new(None));
        let (told, answered) = oneshot::channel::<Result<T, E>>();
        let kept = slot.clone();
        let unit = Unit {
            work: Box::new(move |tx| {
                let slot = kept.clone();
                let done = work(tx);
                Box::pin(async move {
                    let result = done.await;
                    let ran = match &result {
                        Ok(_) => Ran::Done,
                        Err(error) if error.is_retryable() => Ran::Retry,
                        Err(_) => Ran::Failed,
                    };
                    if let Ok(mut slot) = slot.lock() {
                        *slot = Some(result);
                    }
                    ran
                })
            }),
            answer: Box::new(move |batch: Result<(), Arc<StoreError>>| {
                let result = slot.lock().ok().and_then(|mut s| s.take());
                let reply = match (batch, result) {
                    // A unit that failed answers with its own error, however the batch ended.
                    (_, Some(Err(unit_error))) => Err(unit_error),
                    (Ok(()), Some(Ok(value))) => Ok(value),
                    (Err(cause), _) => Err(E::from(WriteError::Store(cause).into())),
                    (Ok(()), None) => Err(E::from(StoreError::Database(sqlx::Error::Protocol(
                        "a write unit never ran".into(),
                    )))),
                };
                let _ = told.send(reply);
            }),
            task,
        };
        let gone = || E::from(StoreError::Database(sqlx::Error::PoolClosed));
        if queue.send(unit).await.is_err() {
            return Err(gone());
        }
        answered.await.unwrap_or_else(|_| Err(gone()))
    }
}

/// Starts a task that takes what is sent on the returned channel (at most `queue` waiting) in
/// batches — everything waiting, up to `batch` — and hands each batch to `record`, one batch at a
/// time, as the writer takes units: how the recorders of delivery attempts and session starts
/// turn many small outcomes into one unit each. It ends once every sender is dropped and the last
/// batch was recorded.
pub fn batching_task<T, F, Fut>(
    queue: usize,
    batch: usize,
    mut record: F,
) -> (mpsc::Sender<T>, tokio::task::JoinHandle<()>)
where
    T: Send + 'static,
    F: FnMut(Vec<T>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let (sender, mut receiver) = mpsc::channel::<T>(queue);
    let task = tokio::spawn(async move {
        let mut taken = Vec::with_capacity(batch);
        while receiver.recv_many(&mut taken, batch).await > 0 {
            record(std::mem::replace(&mut taken, Vec::with_capacity(batch))).await;
        }
    });
    (sender, task)
}

/// What a writer task takes units from.
struct Queues {
    /// Units for any writer (one writer at a time waits on it).
    shared: Arc<tokio::sync::Mutex<mpsc::Receiver<Unit>>>,
    /// Units for this writer alone.
    own: mpsc::Receiver<Unit>,
}

impl Queues {
    /// The next batch: waits for a unit from either queue, then takes every unit waiting in both
    /// (up to [`MAX_BATCH`]). Empty once both queues are closed and drained.
    async fn next_batch(&mut self, batch: &mut Vec<Unit>) {
        let (mut own_open, mut shared_open) = (true, true);
        while batch.is_empty() && (own_open || shared_open) {
            let shared = self.shared.clone();
            tokio::select! {
                unit = self.own.recv(), if own_open => match unit {
                    Some(unit) => batch.push(unit),
                    None => own_open = false,
                },
                unit = async move { shared.lock().await.recv().await }, if shared_open => match unit {
                    Some(unit) => batch.push(unit),
                    None => shared_open = false,
                },
            }
        }
        while batch.len() < MAX_BATCH {
            match self.own.try_recv() {
                Ok(unit) => batch.push(unit),
                Err(_) => break,
            }
        }
        if let Ok(mut shared) = self.shared.try_lock() {
            while batch.len() < MAX_BATCH {
                match shared.try_recv() {
                    Ok(unit) => batch.push(unit),
                    Err(_) => break,
                }
            }
        }
    }
}

/// What the writer tasks chain their batches' audit records with.
#[derive(Clone)]
struct Chain {
    keys: AuditKeys,
    /// The head as the writers last moved it (one for all of them).
    head: Arc<ChainHead>,
}

/// One writer task: batches until its queues close.
async fn run(db: Db, chain: Chain, mut queues: Queues, committed: tokio::sync::watch::Sender<u64>) {
    let mut batch: Vec<Unit> = Vec::with_capacity(MAX_BATCH);
    loop {
        queues.next_batch(&mut batch).await;
        if batch.is_empty() {
            break;
        }
        // The batch runs in its own task, so a unit that panics fails its batch, not the writer.
        let units = std::mem::take(&mut batch);
        let (db, chain) = (db.clone(), chain.clone());
        let ran = tokio::spawn(async move {
            let outcome = commit_batch(&db, &chain, &units).await.map_err(Arc::new);
            (units, outcome)
        })
        .await;
        match ran {
            Ok((units, outcome)) => {
                match &outcome {
                    Err(error) => {
                        tracing::error!(%error, units = units.len(), "a write batch could not be committed")
                    }
                    Ok(()) => committed.send_modify(|batches| *batches = batches.wrapping_add(1)),
                }
                for unit in units {
                    (unit.answer)(outcome.clone());
                }
            }
            // Its units' callers hear that the writer is gone; the next batch goes on.
            Err(panicked) => tracing::error!(error = %panicked, "a write batch panicked"),
        }
    }
}

/// Runs the batch, appends its audit records, and commits. The batch first runs without
/// savepoints (two statements a unit saved); if a unit fails, that attempt is rolled back and the
/// batch runs again with a savepoint per unit, so only the failed units' writes go (a batch of
/// one unit has nothing else to keep). A batch the database gave up on (a deadlock with another
/// writer's batch) runs again from the start, up to [`RETRIES`] times.
async fn commit_batch(db: &Db, chain: &Chain, batch: &[Unit]) -> Result<(), StoreError> {
    let mut retries = 0;
    loop {
        let attempt = match run_batch(db, chain, batch).await {
            Err(error) if error.is_retryable() => Ran::Retry,
            Err(error) => return Err(error),
            Ok(ran) => ran,
        };
        if attempt != Ran::Retry {
            return Ok(());
        }
        if retries == RETRIES {
            // Nothing of the batch was committed: every unit hears so.
            return Err(StoreError::Database(sqlx::Error::Protocol(format!(
                "the database gave up on the write batch {} times (deadlocks with other writers)",
                RETRIES + 1
            ))));
        }
        retries += 1;
        tracing::debug!(
            retries,
            units = batch.len(),
            "the database gave up on a write batch; running it again"
        );
    }
}

/// One attempt at a batch: `Done` when it committed (some units may have failed alone), `Retry`
/// when the database gave up on it (nothing committed).
async fn run_batch(db: &Db, chain: &Chain, batch: &[Unit]) -> Result<Ran, StoreError> {
    let mut tx = WriteTx::begin(db).await?;
    if let Err(error) = tx.read_units_tasks(batch).await {
        return rolled_back(tx, error).await;
    }
    let mut first_failure = Ran::Done;
    for unit in batch {
        first_failure = (unit.work)(&mut tx).await;
        if first_failure != Ran::Done {
            break;
        }
    }
    match first_failure {
        Ran::Done => return commit(tx, chain).await.map(|()| Ran::Done),
        Ran::Retry => {
            tx.tx.rollback().await?;
            return Ok(Ran::Retry);
        }
        Ran::Failed => tx.tx.rollback().await?,
    }
    if batch.len() == 1 {
        // Nothing else to keep: the unit answers with its error.
        return Ok(Ran::Done);
    }
    let mut tx = WriteTx::begin(db).await?;
    if let Err(error) = tx.read_units_tasks(batch).await {
        return rolled_back(tx, error).await;
    }
    for unit in batch {
        // Earlier units' new tasks and sessions are written outside this unit's savepoint, so a
        // unit that writes them (before reading sessions) and then fails does not take them.
        tx.write_new_rows().await?;
        sqlx::query("SAVEPOINT unit").execute(tx.conn()).await?;
        let (audited, numbered, acting) = (tx.audit.len(), tx.numbering.len(), tx.after_commit.len());
        let recorded = tx.history.lengths();
        match (unit.work)(&mut tx).await {
            Ran::Done => {
                sqlx::query("RELEASE SAVEPOINT unit").execute(tx.conn()).await?;
            }
            Ran::Failed => {
                // Only this unit's writes and audit records go.
                sqlx::query("ROLLBACK TO SAVEPOINT unit").execute(tx.conn()).await?;
                sqlx::query("RELEASE SAVEPOINT unit").execute(tx.conn()).await?;
                tx.audit.truncate(audited);
                tx.numbering.truncate(numbered);
                tx.after_commit.truncate(acting);
                tx.history.truncate(recorded);
            }
            Ran::Retry => {
                // The locks the batch's earlier units hold are part of the deadlock: all go.
                tx.tx.rollback().await?;
                return Ok(Ran::Retry);
            }
        }
    }
    commit(tx, chain).await.map(|()| Ran::Done)
}

/// Ends the attempt whose batch-wide read failed with `error`: `Retry` if the database gave up
/// on the transaction (a deadlock with another writer), else the error, for every unit.
async fn rolled_back(tx: WriteTx, error: StoreError) -> Result<Ran, StoreError> {
    tx.tx.rollback().await?;
    if error.is_retryable() {
        Ok(Ran::Retry)
    } else {
        Err(error)
    }
}

async fn commit(mut tx: WriteTx, chain: &Chain) -> Result<(), StoreError> {
    let numbering = std::mem::take(&mut tx.numbering);
    let mut audit = std::mem::take(&mut tx.audit);
    let after_commit = std::mem::take(&mut tx.after_commit);
    let mut history = std::mem::take(&mut tx.history);
    // Numbers first: the audit records carry them, and the workspace's counter row is locked
    // before the chain head (as every writer does).
    let numbers = number_tasks(tx.conn(), &numbering, &history.tasks).await?;
    if !numbers.is_empty() {
        for (_, entry, _) in &mut audit {
            let placeholder = entry.details.get("shortNumber").and_then(serde_json::Value::as_i64);
            if let Some(number) = placeholder.and_then(|p| numbers.get(&p)) {
                entry.details["shortNumber"] = (*number).into();
            }
        }
    }
    // Tasks not written yet go in with their numbers (those written earlier were just numbered).
    for task in &mut history.tasks {
        if let Some(number) = numbers.get(&task.short_number) {
            task.short_number = *number;
        }
    }
    // Each changed task once, as its last change left it, in id order (the order its row is locked in).
    let mut changed_tasks: BTreeMap<&TaskId, &Task> = BTreeMap::new();
    for task in &history.changed_tasks {
        changed_tasks.insert(&task.id, task);
    }
    let changed_tasks: Vec<Task> = changed_tasks.into_values().cloned().collect();
    let rows = BatchRows {
        tasks: &history.tasks,
        changed_tasks: &changed_tasks,
        sessions: &history.sessions,
        task_events: &history.task_events,
        status_changes: &history.status_changes,
        jobs: &history.jobs,
    };
    store::batch_rows::write(tx.conn(), &chain.keys.chain, &chain.head, rows, &audit).await?;
    tx.tx.commit().await?;
    for task in &numbering {
        if let Some(number) = numbers.get(&task.placeholder) {
            let _ = task.number.0.set(*number);
        }
    }
    for action in after_commit {
        action();
    }
    Ok(())
}

/// Takes the batch's task numbers, workspace by workspace in id order (so writers lock counter
/// rows in one order), and gives them to the tasks already written (a unit wrote them early);
/// the `unwritten` ones get theirs when they are inserted. Returns placeholder → number.
async fn number_tasks(
    conn: &mut Conn,
    numbering: &[Numbering],
    unwritten: &[Task],
) -> Result<HashMap<i64, i64>, StoreError> {
    let mut numbers = HashMap::with_capacity(numbering.len());
    let mut by_workspace: BTreeMap<&WorkspaceId, Vec<&Numbering>> = BTreeMap::new();
    for task in numbering {
        by_workspace.entry(&task.workspace).or_default().push(task);
    }
    for (workspace, tasks) in by_workspace {
        let written_early = tasks.iter().any(|task| unwritten.iter().all(|t| t.id != task.task));
        let first = if written_early {
            let ids: Vec<TaskId> = tasks.iter().map(|task| task.task.clone()).collect();
            store::workspaces::number_tasks(conn, workspace, &ids).await?
        } else {
            store::workspaces::take_task_numbers(conn, workspace, tasks.len() as i64).await?
        };
        for (task, number) in tasks.iter().zip(first..) {
            numbers.insert(task.placeholder, number);
        }
    }
    Ok(numbers)
}
