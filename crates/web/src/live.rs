//! The live view supervisors watch: per queue the callers waiting and the longest wait, and
//! today's and the last 30 minutes' service level, average speed of answer, average handle
//! time and abandon rate; per agent the state, time in state and calls handled today.
//!
//! [`Board`] is sans-IO: it is fed the events call control emits (a caller entered or left a
//! queue, a call ended, an agent's state changed), each with its wall-clock time, and answers
//! [`Board::snapshot`] for a given `now`. The figures use the definitions of the interval
//! reports (`store::report`): service level is answered within the queue's threshold over
//! offered; ASA is the mean wait of answered calls; AHT the mean talk + hold + wrap-up of
//! answered calls; abandon rate is abandoned over offered. "Today" is the UTC day, like the
//! reports.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// The window of the "recent" figures.
pub const RECENT: Duration = Duration::from_secs(30 * 60);

/// How a queue is shown: its service-level threshold and the colour thresholds an admin set.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueueBoardConfig {
    /// The queue's name.
    pub name: String,
    /// An answer within this wait counts towards service level.
    #[serde(rename = "service_level_s", serialize_with = "secs")]
    pub service_level: Duration,
    /// The longest wait turns amber at this wait…
    #[serde(rename = "wait_warn_s", serialize_with = "secs")]
    pub wait_warn: Duration,
    /// …and red at this one.
    #[serde(rename = "wait_alert_s", serialize_with = "secs")]
    pub wait_alert: Duration,
    /// Service level (0–1) below which it turns amber…
    pub service_level_warn: f64,
    /// …and below which it turns red.
    pub service_level_alert: f64,
}

impl QueueBoardConfig {
    /// A queue with the usual thresholds: 20 s service level, amber at 30 s wait and 80 %,
    /// red at 60 s and 60 %.
    pub fn new(name: &str) -> QueueBoardConfig {
        QueueBoardConfig {
            name: name.to_owned(),
            service_level: Duration::from_secs(20),
            wait_warn: Duration::from_secs(30),
            wait_alert: Duration::from_secs(60),
            service_level_warn: 0.8,
            service_level_alert: 0.6,
        }
    }
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_secs())
}

/// A call that ended, as the board counts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndedCall {
    /// The call.
    pub call: u64,
    /// Its queue, for a queue call (where it ended, after an overflow).
    pub queue: Option<String>,
    /// The queue it overflowed from: counted there as offered, neither answered nor abandoned.
    pub overflowed_from: Option<String>,
    /// The agent who answered.
    pub agent: Option<String>,
    /// `answered`, `abandoned`, `timed_out`, `overflowed`, `no_agents`, …
    pub outcome: String,
    /// Time in the queue.
    pub wait: Duration,
    /// Talk + hold + wrap-up.
    pub handle: Duration,
}

#[derive(Debug, Clone, Copy)]
struct Finished {
    at: SystemTime,
    answered: bool,
    in_time: bool,
    abandoned: bool,
    wait: Duration,
    handle: Duration,
}

#[derive(Debug, Clone, Copy, Default)]
struct Tally {
    offered: u64,
    answered: u64,
    in_time: u64,
    abandoned: u64,
    wait: Duration,
    handle: Duration,
}

impl Tally {
    fn add(&mut self, f: &Finished) {
        self.offered += 1;
        if f.answered {
            self.answered += 1;
            self.wait += f.wait;
            self.handle += f.handle;
        }
        self.in_time += u64::from(f.in_time);
        self.abandoned += u64::from(f.abandoned);
    }

    fn figures(&self) -> Figures {
        let share = |n: u64| (self.offered > 0).then(|| n as f64 / self.offered as f64);
        let mean =
            |d: Duration| (self.answered > 0).then(|| d.as_secs_f64() / self.answered as f64);
        Figures {
            offered: self.offered,
            answered: self.answered,
            abandoned: self.abandoned,
            service_level: share(self.in_time),
            abandon_rate: share(self.abandoned),
            asa_s: mean(self.wait),
            aht_s: mean(self.handle),
        }
    }
}

#[derive(Debug)]
struct QueueLive {
    cfg: QueueBoardConfig,
    /// Call → when it entered the queue.
    waiting: BTreeMap<u64, SystemTime>,
    day: u64,
    today: Tally,
    recent: VecDeque<Finished>,
}

impl QueueLive {
    fn new(cfg: QueueBoardConfig) -> QueueLive {
        QueueLive {
            cfg,
            waiting: BTreeMap::new(),
            day: 0,
            today: Tally::default(),
            recent: VecDeque::new(),
        }
    }
}

#[derive(Debug)]
struct AgentLive {
    state: String,
    reason: Option<String>,
    since: SystemTime,
    day: u64,
    handled_today: u64,
    configured: bool,
}

/// Offered, answered, abandoned and the figures made of them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Figures {
    /// Calls that left the queue answered, abandoned or otherwise.
    pub offered: u64,
    /// Answered by an agent.
    pub answered: u64,
    /// The caller hung up while waiting.
    pub abandoned: u64,
    /// Answered within the threshold over offered (0–1).
    pub service_level: Option<f64>,
    /// Abandoned over offered (0–1).
    pub abandon_rate: Option<f64>,
    /// Average speed of answer (seconds).
    pub asa_s: Option<f64>,
    /// Average handle time (seconds).
    pub aht_s: Option<f64>,
}

/// One queue on the board.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueueView {
    /// Name and thresholds.
    #[serde(flatten)]
    pub config: QueueBoardConfig,
    /// Callers waiting now.
    pub waiting: u64,
    /// The longest current wait (seconds).
    pub longest_wait_s: u64,
    /// Today (UTC).
    pub today: Figures,
    /// The last 30 minutes.
    pub recent: Figures,
    /// Agents serving this queue by state (the names of [`AgentView::state`]).
    pub agents: BTreeMap<String, u64>,
}

/// One agent on the board.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentView {
    /// The agent's name.
    pub name: String,
    /// `logged_out`, `ready`, `not_ready`, `ringing`, `busy`, `wrap_up`.
    pub state: String,
    /// The pause reason.
    pub reason: Option<String>,
    /// Seconds in this state.
    pub in_state_s: u64,
    /// Calls answered today (UTC).
    pub handled_today: u64,
}

/// The whole board at one moment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Snapshot {
    /// Unix milliseconds of the snapshot.
    pub at_ms: u64,
    /// Changes seen so far (grows with every event).
    pub version: u64,
    /// Queues by name.
    pub queues: Vec<QueueView>,
    /// Agents by name.
    pub agents: Vec<AgentView>,
}

/// The live view. See the module docs.
#[derive(Debug, Default)]
pub struct Board {
    queues: BTreeMap<String, QueueLive>,
    agents: BTreeMap<String, AgentLive>,
    /// Agent → the queues it serves.
    membership: BTreeMap<String, Vec<String>>,
    version: u64,
}

fn unix(t: SystemTime) -> Duration {
    t.duration_since(UNIX_EPOCH).unwrap_or_default()
}

fn day_of(t: SystemTime) -> u64 {
    unix(t).as_secs() / 86_400
}

impl Board {
    /// An empty board.
    pub fn new() -> Board {
        Board::default()
    }

    /// Changes seen so far.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The queues and agents to show (at start and after a reload): queues and agents that
    /// stay keep their figures; an agent not configured any more is dropped once logged out.
    pub fn configure(&mut self, queues: Vec<QueueBoardConfig>, agents: Vec<(String, Vec<String>)>) {
        let mut kept = BTreeMap::new();
        for cfg in queues {
            let q = match self.queues.remove(&cfg.name) {
                Some(mut q) => {
                    q.cfg = cfg.clone();
                    q
                }
                None => QueueLive::new(cfg.clone()),
            };
            kept.insert(cfg.name, q);
        }
        self.queues = kept;
        for a in self.agents.values_mut() {
            a.configured = false;
        }
        self.membership.clear();
        for (name, queues) in agents {
            let a = self
                .agents
                .entry(name.clone())
                .or_insert_with(|| AgentLive {
                    state: "logged_out".into(),
                    reason: None,
                    since: UNIX_EPOCH,
                    day: 0,
                    handled_today: 0,
                    configured: true,
                });
            a.configured = true;
            self.membership.insert(name, queues);
        }
        self.agents
            .retain(|_, a| a.configured || a.state != "logged_out");
        self.version += 1;
    }

    /// A caller entered a queue.
    pub fn entered(&mut self, at: SystemTime, call: u64, queue: &str) {
        if let Some(q) = self.queues.get_mut(queue) {
            q.waiting.insert(call, at);
            self.version += 1;
        }
    }

    /// A caller left a queue (answered, abandoned, timed out, overflowed).
    pub fn left(&mut self, call: u64, queue: &str) {
        if let Some(q) = self.queues.get_mut(queue) {
            if q.waiting.remove(&call).is_some() {
                self.version += 1;
            }
        }
    }

    /// A call ended: counted in its queue's figures and its agent's calls handled.
    pub fn call_ended(&mut self, at: SystemTime, call: &EndedCall) {
        self.version += 1;
        let day = day_of(at);
        if let Some(q) = call
            .overflowed_from
            .as_deref()
            .and_then(|q| self.queues.get_mut(q))
        {
            q.waiting.remove(&call.call);
            let f = Finished {
                at,
                answered: false,
                in_time: false,
                abandoned: false,
                wait: call.wait,
                handle: Duration::ZERO,
            };
            if q.day != day {
                q.day = day;
                q.today = Tally::default();
            }
            q.today.add(&f);
            q.recent.push_back(f);
        }
        if let Some(q) = call.queue.as_deref().and_then(|q| self.queues.get_mut(q)) {
            q.waiting.remove(&call.call);
            let counted = matches!(
                call.outcome.as_str(),
                "answered" | "abandoned" | "timed_out" | "overflowed" | "no_agents"
            );
            if counted {
                let answered = call.outcome == "answered";
                let f = Finished {
                    at,
                    answered,
                    in_time: answered && call.wait <= q.cfg.service_level,
                    abandoned: call.outcome == "abandoned",
                    wait: call.wait,
                    handle: call.handle,
                };
                if q.day != day {
                    q.day = day;
                    q.today = Tally::default();
                }
                q.today.add(&f);
                q.recent.push_back(f);
            }
        }
        if call.outcome == "answered" {
            if let Some(a) = call.agent.as_deref().and_then(|a| self.agents.get_mut(a)) {
                if a.day != day {
                    a.day = day;
                    a.handled_today = 0;
                }
                a.handled_today += 1;
            }
        }
    }

    /// An agent's state changed.
    pub fn agent_state(&mut self, at: SystemTime, agent: &str, state: &str, reason: Option<&str>) {
        let a = self
            .agents
            .entry(agent.to_owned())
            .or_insert_with(|| AgentLive {
                state: String::new(),
                reason: None,
                since: at,
                day: 0,
                handled_today: 0,
                configured: false,
            });
        if a.state != state || a.reason.as_deref() != reason {
            a.since = at;
        }
        a.state = state.to_owned();
        a.reason = reason.map(str::to_owned);
        self.version += 1;
    }

    /// The board as of `now` (older "recent" calls are forgotten, a new day starts from zero).
    pub fn snapshot(&mut self, now: SystemTime) -> Snapshot {
        let day = day_of(now);
        let mut by_queue: BTreeMap<&str, BTreeMap<String, u64>> = BTreeMap::new();
        for (name, queues) in &self.membership {
            let Some(a) = self.agents.get(name) else {
                continue;
            };
            for q in queues {
                *by_queue
                    .entry(q.as_str())
                    .or_default()
                    .entry(a.state.clone())
                    .or_default() += 1;
            }
        }
        let mut queues = Vec::with_capacity(self.queues.len());
        for q in self.queues.values_mut() {
            while q
                .recent
                .front()
                .is_some_and(|f| now.duration_since(f.at).unwrap_or_default() > RECENT)
            {
                q.recent.pop_front();
            }
            if q.day != day {
                q.day = day;
                q.today = Tally::default();
            }
            let mut recent = Tally::default();
            for f in &q.recent {
                recent.add(f);
            }
            let longest = q
                .waiting
                .values()
                .map(|t| now.duration_since(*t).unwrap_or_default())
                .max()
                .unwrap_or_default();
            queues.push(QueueView {
                config: q.cfg.clone(),
                waiting: q.waiting.len() as u64,
                longest_wait_s: longest.as_secs(),
                today: q.today.figures(),
                recent: recent.figures(),
                agents: by_queue.remove(q.cfg.name.as_str()).unwrap_or_default(),
            });
        }
        let agents = self
            .agents
            .iter()
            .map(|(name, a)| AgentView {
                name: name.clone(),
                state: a.state.clone(),
                reason: a.reason.clone(),
                in_state_s: now.duration_since(a.since).unwrap_or_default().as_secs(),
                handled_today: if a.day == day { a.handled_today } else { 0 },
            })
            .collect();
        Snapshot {
            at_ms: unix(now).as_millis() as u64,
            version: self.version,
            queues,
            agents,
        }
    }
}

/// The board shared by the storage side (which feeds it) and the web side (which shows it):
/// the latest snapshot as JSON, published to every event-stream client at most every 250 ms
/// when something changed, and every second anyway (waits grow).
#[derive(Debug)]
pub struct Live {
    board: std::sync::Mutex<Board>,
    latest: tokio::sync::watch::Sender<std::sync::Arc<str>>,
}

impl Default for Live {
    fn default() -> Self {
        Live::new()
    }
}

impl Live {
    /// An empty board.
    pub fn new() -> Live {
        let (latest, _) = tokio::sync::watch::channel(std::sync::Arc::from("{}"));
        let live = Live {
            board: std::sync::Mutex::new(Board::new()),
            latest,
        };
        live.publish();
        live
    }

    /// Change the board.
    pub fn update<T>(&self, f: impl FnOnce(&mut Board) -> T) -> T {
        f(&mut self.board.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// The board now.
    pub fn snapshot(&self) -> Snapshot {
        self.update(|b| b.snapshot(SystemTime::now()))
    }

    /// Every published board, as JSON.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<std::sync::Arc<str>> {
        self.latest.subscribe()
    }

    fn publish(&self) -> u64 {
        let snap = self.snapshot();
        let version = snap.version;
        let json = serde_json::to_string(&snap).unwrap_or_else(|_| "{}".into());
        self.latest.send_replace(std::sync::Arc::from(json));
        version
    }

    /// Publish the board while the server runs (see the type's docs). The board as it is
    /// when this starts is published at once: what was configured and fed before (the queues
    /// and agents, the agents' first states) is not held back until the next change or the
    /// one-second republish.
    pub async fn publish_changes(self: std::sync::Arc<Self>) {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut published = self.publish();
        let mut at = tokio::time::Instant::now();
        loop {
            tick.tick().await;
            let version = self.update(|b| b.version());
            if version != published || at.elapsed() >= Duration::from_secs(1) {
                published = self.publish();
                at = tokio::time::Instant::now();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: u64) -> SystemTime {
        // 2026-11-30 09:00 UTC plus s seconds.
        UNIX_EPOCH + Duration::from_secs(1_796_029_200 + s)
    }

    fn board() -> Board {
        let mut b = Board::new();
        b.configure(
            vec![
                QueueBoardConfig::new("support"),
                QueueBoardConfig::new("sales"),
            ],
            vec![
                ("ada".into(), vec!["support".into()]),
                ("bob".into(), vec!["support".into(), "sales".into()]),
            ],
        );
        b
    }

    fn ended(call: u64, outcome: &str, wait: u64, handle: u64) -> EndedCall {
        EndedCall {
            call,
            queue: Some("support".into()),
            overflowed_from: None,
            agent: (outcome == "answered").then(|| "ada".to_owned()),
            outcome: outcome.into(),
            wait: Duration::from_secs(wait),
            handle: Duration::from_secs(handle),
        }
    }

    #[test]
    fn waiting_callers_and_the_longest_wait() {
        let mut b = board();
        b.entered(at(0), 1, "support");
        b.entered(at(10), 2, "support");
        let s = b.snapshot(at(25));
        assert_eq!(s.queues[1].config.name, "support");
        assert_eq!(s.queues[1].waiting, 2);
        assert_eq!(s.queues[1].longest_wait_s, 25);
        b.left(1, "support");
        let s = b.snapshot(at(30));
        assert_eq!((s.queues[1].waiting, s.queues[1].longest_wait_s), (1, 20));
        // A call that ends without a queue event still leaves the queue.
        b.call_ended(at(31), &ended(2, "abandoned", 21, 0));
        assert_eq!(b.snapshot(at(31)).queues[1].waiting, 0);
    }

    #[test]
    fn figures_today_and_in_the_last_half_hour() {
        let mut b = board();
        b.call_ended(at(0), &ended(1, "answered", 10, 100)); // in time
        b.call_ended(at(60), &ended(2, "answered", 30, 200)); // late
        b.call_ended(at(300), &ended(3, "abandoned", 40, 0));
        b.call_ended(at(2000), &ended(4, "answered", 5, 300)); // in time
        let s = b.snapshot(at(2000));
        let q = &s.queues[1];
        assert_eq!(
            (q.today.offered, q.today.answered, q.today.abandoned),
            (4, 3, 1)
        );
        assert_eq!(q.today.service_level, Some(0.5));
        assert_eq!(q.today.abandon_rate, Some(0.25));
        assert_eq!(q.today.asa_s, Some(15.0));
        assert_eq!(q.today.aht_s, Some(200.0));
        // Calls 1 and 2 are more than 30 minutes old.
        assert_eq!((q.recent.offered, q.recent.answered), (2, 1));
        assert_eq!(q.recent.service_level, Some(0.5));
        assert_eq!(s.agents[0].name, "ada");
        assert_eq!(s.agents[0].handled_today, 3);
        // The next UTC day starts from zero.
        let s = b.snapshot(at(86_400));
        assert_eq!(s.queues[1].today.offered, 0);
        assert_eq!(s.queues[1].today.service_level, None);
        assert_eq!(s.agents[0].handled_today, 0);
    }

    #[test]
    fn agents_by_state_per_queue_and_time_in_state() {
        let mut b = board();
        b.agent_state(at(0), "ada", "ready", None);
        b.agent_state(at(5), "bob", "not_ready", Some("lunch"));
        b.agent_state(at(9), "ada", "ready", None); // no change: the clock keeps running
        let s = b.snapshot(at(65));
        assert_eq!(s.agents[0].in_state_s, 65);
        assert_eq!(s.agents[1].reason.as_deref(), Some("lunch"));
        let support = &s.queues[1].agents;
        assert_eq!(support.get("ready"), Some(&1));
        assert_eq!(support.get("not_ready"), Some(&1));
        assert_eq!(s.queues[0].agents.get("not_ready"), Some(&1));
        assert_eq!(s.queues[0].agents.get("ready"), None);
    }

    #[tokio::test]
    async fn publishing_starts_with_the_board_as_configured() {
        let live = std::sync::Arc::new(Live::new());
        live.update(|b| {
            b.configure(
                vec![QueueBoardConfig::new("support")],
                vec![("ada".into(), vec!["support".into()])],
            );
            b.agent_state(at(0), "ada", "not_ready", Some("no-phone"));
        });
        let mut rx = live.subscribe();
        assert!(!rx.borrow_and_update().contains("\"ada\""));
        let publisher = tokio::spawn(live.clone().publish_changes());
        // Well before the one-second republish.
        tokio::time::timeout(Duration::from_millis(500), rx.changed())
            .await
            .expect("the board is published when publishing starts")
            .expect("the publisher is running");
        let board: serde_json::Value = serde_json::from_str(&rx.borrow()).unwrap();
        assert_eq!(board["agents"][0]["name"], "ada");
        assert_eq!(board["agents"][0]["reason"], "no-phone");
        assert_eq!(board["queues"][0]["name"], "support");
        publisher.abort();
    }

    #[test]
    fn an_overflowed_call_counts_as_offered_where_it_came_from() {
        let mut b = board();
        b.entered(at(0), 9, "sales");
        b.left(9, "sales");
        b.entered(at(20), 9, "support");
        let mut call = ended(9, "abandoned", 30, 0);
        call.overflowed_from = Some("sales".into());
        b.call_ended(at(30), &call);
        let s = b.snapshot(at(31));
        let (sales, support) = (&s.queues[0], &s.queues[1]);
        assert_eq!((sales.today.offered, sales.today.abandoned), (1, 0));
        assert_eq!(sales.today.abandon_rate, Some(0.0));
        assert_eq!((support.today.offered, support.today.abandoned), (1, 1));
        assert_eq!((sales.waiting, support.waiting), (0, 0));
    }

    #[test]
    fn a_reload_keeps_figures_of_queues_that_stay() {
        let mut b = board();
        b.entered(at(0), 1, "support");
        b.call_ended(at(1), &ended(7, "answered", 3, 30));
        b.agent_state(at(1), "bob", "busy", None);
        b.configure(
            vec![QueueBoardConfig::new("support")],
            vec![("ada".into(), vec!["support".into()])],
        );
        let s = b.snapshot(at(2));
        assert_eq!(s.queues.len(), 1);
        assert_eq!((s.queues[0].waiting, s.queues[0].today.answered), (1, 1));
        // Bob left the config but is busy: still shown until he logs out.
        assert_eq!(s.agents.len(), 2);
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["queues"][0]["service_level_s"], 20);
        assert_eq!(v["queues"][0]["name"], "support");
    }
}
