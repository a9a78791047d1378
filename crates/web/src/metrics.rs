//! Prometheus metrics (`/metrics`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    queue: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabels {
    queue: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: String,
}

/// A counter that mirrors a total kept elsewhere (an atomic of another service): each
/// refresh adds what the total grew by.
#[derive(Debug, Default)]
struct Mirror {
    counter: Counter,
    last: AtomicU64,
}

impl Mirror {
    fn set_total(&self, total: u64) {
        let last = self.last.swap(total, Ordering::Relaxed);
        if total > last {
            self.counter.inc_by(total - last);
        }
    }
}

/// Samples of the services, taken at each scrape.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sample {
    /// Registrar bindings.
    pub registrations: u64,
    /// Live SIP transactions.
    pub sip_transactions: u64,
    /// SIP messages received (total).
    pub sip_received: u64,
    /// New calls answered 503 because call control was behind (total).
    pub calls_shed: u64,
    /// UDP datagrams of unknown sources dropped unread under a flood (total).
    pub datagrams_shed: u64,
    /// Media sessions open.
    pub media_sessions: u64,
    /// RTP packets received by the relay (total).
    pub relay_received: u64,
    /// RTP packets forwarded by the relay (total).
    pub relay_forwarded: u64,
    /// Packets from strangers dropped by the relay (total).
    pub relay_strangers: u64,
    /// Recordings in progress.
    pub recordings_active: u64,
    /// Recording frames the relay's tap dropped (total).
    pub recording_frames_dropped: u64,
    /// Records waiting for the database, in memory.
    pub storage_pending: u64,
    /// Records that did not fit the storage queue (total).
    pub storage_dropped: u64,
    /// Records waiting for the database in the spill file.
    pub storage_spilled: u64,
    /// Records written from the spill file to the database (total).
    pub storage_spill_written: u64,
    /// Records lost: the database refused them and neither the spill file nor memory kept
    /// them (total).
    pub storage_spill_dropped: u64,
}

/// The metrics, and the registry they are exposed from.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    calls: Family<CallLabels, Counter>,
    agents: Family<StateLabels, Gauge>,
    waiting: Family<QueueLabels, Gauge>,
    longest_wait: Family<QueueLabels, Gauge>,
    service_level: Family<QueueLabels, Gauge<f64, AtomicU64>>,
    /// Agent → state, to count agents by state.
    agent_states: Mutex<HashMap<String, String>>,
    registrations: Gauge,
    sip_transactions: Gauge,
    media_sessions: Gauge,
    recordings_active: Gauge,
    storage_pending: Gauge,
    storage_spilled: Gauge,
    sip_received: Mirror,
    calls_shed: Mirror,
    datagrams_shed: Mirror,
    relay_received: Mirror,
    relay_forwarded: Mirror,
    relay_strangers: Mirror,
    recording_frames_dropped: Mirror,
    storage_dropped: Mirror,
    storage_spill_written: Mirror,
    storage_spill_dropped: Mirror,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Every metric, registered under `switchboard_`.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("switchboard");
        let m = Metrics {
            calls: Family::default(),
            agents: Family::default(),
            waiting: Family::default(),
            longest_wait: Family::default(),
            service_level: Family::default(),
            agent_states: Mutex::new(HashMap::new()),
            registrations: Gauge::default(),
            sip_transactions: Gauge::default(),
            media_sessions: Gauge::default(),
            recordings_active: Gauge::default(),
            storage_pending: Gauge::default(),
            storage_spilled: Gauge::default(),
            sip_received: Mirror::default(),
            calls_shed: Mirror::default(),
            datagrams_shed: Mirror::default(),
            relay_received: Mirror::default(),
            relay_forwarded: Mirror::default(),
            relay_strangers: Mirror::default(),
            recording_frames_dropped: Mirror::default(),
            storage_dropped: Mirror::default(),
            storage_spill_written: Mirror::default(),
            storage_spill_dropped: Mirror::default(),
            registry: Registry::default(),
        };
        registry.register(
            "calls",
            "Calls ended, by queue (empty for calls that are not queue calls) and outcome",
            m.calls.clone(),
        );
        registry.register("agents", "Agents by state", m.agents.clone());
        registry.register(
            "queue_waiting",
            "Callers waiting, by queue",
            m.waiting.clone(),
        );
        registry.register_with_unit(
            "queue_longest_wait",
            "The longest current wait, by queue",
            prometheus_client::registry::Unit::Seconds,
            m.longest_wait.clone(),
        );
        registry.register(
            "queue_service_level",
            "Calls answered within the queue's threshold over calls offered today (UTC), 0-1, by queue",
            m.service_level.clone(),
        );
        registry.register(
            "registrations",
            "Registrar bindings",
            m.registrations.clone(),
        );
        registry.register(
            "sip_transactions",
            "Live SIP transactions",
            m.sip_transactions.clone(),
        );
        registry.register(
            "media_sessions",
            "Media sessions open",
            m.media_sessions.clone(),
        );
        registry.register(
            "recordings_active",
            "Recordings in progress",
            m.recordings_active.clone(),
        );
        registry.register(
            "storage_pending",
            "Records waiting for the database, in memory",
            m.storage_pending.clone(),
        );
        registry.register(
            "storage_spilled",
            "Records waiting for the database in the spill file",
            m.storage_spilled.clone(),
        );
        for (name, help, mirror) in [
            ("sip_received", "SIP messages received", &m.sip_received),
            (
                "calls_shed",
                "New calls answered 503 because call control was behind",
                &m.calls_shed,
            ),
            (
                "datagrams_shed",
                "UDP datagrams of unknown sources dropped unread while the socket was behind",
                &m.datagrams_shed,
            ),
            ("relay_received", "RTP packets received", &m.relay_received),
            (
                "relay_forwarded",
                "RTP packets forwarded",
                &m.relay_forwarded,
            ),
            (
                "relay_strangers",
                "Media packets from strangers dropped",
                &m.relay_strangers,
            ),
            (
                "recording_frames_dropped",
                "Recording frames the relay's tap dropped",
                &m.recording_frames_dropped,
            ),
            (
                "storage_dropped",
                "Records that did not fit the storage queue",
                &m.storage_dropped,
            ),
            (
                "storage_spill_written",
                "Records written from the spill file to the database",
                &m.storage_spill_written,
            ),
            (
                "storage_spill_dropped",
                "Records lost because the database refused them and neither the spill file nor memory kept them",
                &m.storage_spill_dropped,
            ),
        ] {
            registry.register(name, help, mirror.counter.clone());
        }
        Metrics { registry, ..m }
    }

    /// A call ended (`queue` empty for a call that is not a queue call).
    pub fn call_ended(&self, queue: &str, outcome: &str) {
        self.calls
            .get_or_create(&CallLabels {
                queue: queue.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// An agent's state changed.
    pub fn agent_state(&self, agent: &str, state: &str) {
        let mut states = self.agent_states.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = states.insert(agent.to_owned(), state.to_owned()) {
            self.agents.get_or_create(&StateLabels { state: old }).dec();
        }
        self.agents
            .get_or_create(&StateLabels {
                state: state.to_owned(),
            })
            .inc();
    }

    /// Take in the live board: callers waiting, longest wait and service level per queue.
    pub fn board(&self, board: &crate::live::Snapshot) {
        for q in &board.queues {
            let l = QueueLabels {
                queue: q.config.name.clone(),
            };
            self.waiting
                .get_or_create(&l)
                .set(i64::try_from(q.waiting).unwrap_or(i64::MAX));
            self.longest_wait
                .get_or_create(&l)
                .set(i64::try_from(q.longest_wait_s).unwrap_or(i64::MAX));
            if let Some(sl) = q.today.service_level {
                self.service_level.get_or_create(&l).set(sl);
            }
        }
    }

    /// Take in a sample of the services.
    pub fn sample(&self, s: &Sample) {
        let g = |g: &Gauge, v: u64| {
            g.set(i64::try_from(v).unwrap_or(i64::MAX));
        };
        g(&self.registrations, s.registrations);
        g(&self.sip_transactions, s.sip_transactions);
        g(&self.media_sessions, s.media_sessions);
        g(&self.recordings_active, s.recordings_active);
        g(&self.storage_pending, s.storage_pending);
        g(&self.storage_spilled, s.storage_spilled);
        self.sip_received.set_total(s.sip_received);
        self.calls_shed.set_total(s.calls_shed);
        self.datagrams_shed.set_total(s.datagrams_shed);
        self.relay_received.set_total(s.relay_received);
        self.relay_forwarded.set_total(s.relay_forwarded);
        self.relay_strangers.set_total(s.relay_strangers);
        self.recording_frames_dropped
            .set_total(s.recording_frames_dropped);
        self.storage_dropped.set_total(s.storage_dropped);
        self.storage_spill_written
            .set_total(s.storage_spill_written);
        self.storage_spill_dropped
            .set_total(s.storage_spill_dropped);
    }

    /// The exposition text (OpenMetrics).
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// What `/metrics` calls before it renders: a fresh [`Sample`] of the services.
pub type Sampler = std::sync::Arc<
    dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = Sample> + Send>> + Send + Sync,
>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_by_queue_and_outcome_agents_by_state_and_mirrored_totals() {
        let m = Metrics::new();
        m.call_ended("support", "answered");
        m.call_ended("support", "answered");
        m.call_ended("sales", "abandoned");
        m.agent_state("Ada", "ready");
        m.agent_state("Bob", "ready");
        m.agent_state("Ada", "busy");
        m.sample(&Sample {
            relay_received: 100,
            registrations: 7,
            ..Sample::default()
        });
        m.sample(&Sample {
            relay_received: 150,
            registrations: 6,
            storage_spilled: 3,
            storage_spill_written: 2,
            ..Sample::default()
        });
        let text = m.render();
        let has = |line: &str| {
            assert!(text.lines().any(|l| l == line), "{line:?} not in\n{text}");
        };
        has("switchboard_calls_total{queue=\"support\",outcome=\"answered\"} 2");
        has("switchboard_calls_total{queue=\"sales\",outcome=\"abandoned\"} 1");
        has("switchboard_agents{state=\"ready\"} 1");
        has("switchboard_agents{state=\"busy\"} 1");
        has("switchboard_relay_received_total 150");
        has("switchboard_registrations 6");
        has("switchboard_storage_spilled 3");
        has("switchboard_storage_spill_written_total 2");
        has("switchboard_storage_spill_dropped_total 0");
        let mut board = crate::live::Board::new();
        board.configure(vec![crate::live::QueueBoardConfig::new("support")], vec![]);
        let t0 = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_796_029_200);
        board.entered(t0, 1, "support");
        board.call_ended(
            t0,
            &crate::live::EndedCall {
                call: 2,
                queue: Some("support".into()),
                overflowed_from: None,
                agent: Some("Ada".into()),
                outcome: "answered".into(),
                wait: std::time::Duration::from_secs(3),
                handle: std::time::Duration::from_secs(60),
            },
        );
        m.board(&board.snapshot(t0 + std::time::Duration::from_secs(42)));
        let text = m.render();
        let has = |line: &str| {
            assert!(text.lines().any(|l| l == line), "{line:?} not in\n{text}");
        };
        has("switchboard_queue_waiting{queue=\"support\"} 1");
        has("switchboard_queue_longest_wait_seconds{queue=\"support\"} 42");
        has("switchboard_queue_service_level{queue=\"support\"} 1.0");
        assert!(
            !text.contains("Ada") && !text.contains("Bob"),
            "no identities"
        );
    }
}
