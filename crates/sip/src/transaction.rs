//! The transaction layer (RFC 3261 §17, with the RFC 6026 Accepted state).
//!
//! Four state machines share one table: INVITE and non-INVITE, client and server. Each
//! transaction keeps its timers in a small array indexed by [`TxTimer`]; a heap of
//! `(deadline, transaction, timer)` entries gives the next deadline, and entries that no longer
//! match the transaction's array are skipped when popped (lazy deletion).
//!
//! The layer is driven by [`Transactions::receive_request`], [`Transactions::receive_response`],
//! [`Transactions::respond`], [`Transactions::send_request`] and
//! [`Transactions::handle_timeout`]; what it wants done comes out of
//! [`Transactions::poll_output`].

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::header::{CSeq, NameAddr, Via};
use crate::message::{Headers, Method, Request, Response};
use crate::Flow;

/// RFC 3261 timer values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerConfig {
    /// RTT estimate (default 500 ms).
    pub t1: Duration,
    /// Maximum retransmit interval for non-INVITE requests and INVITE responses (default 4 s).
    pub t2: Duration,
    /// Maximum time a message stays in the network (default 5 s).
    pub t4: Duration,
    /// Timer J on unreliable transports: how long a completed non-INVITE server transaction
    /// stays to answer retransmissions. RFC 3261 says 64·T1 (32 s); a registrar under heavy
    /// load may hold it shorter (Kamailio's `wt_timer` defaults to 5 s), trading memory for
    /// the rare retransmission that arrives later, which is then treated as a new request.
    /// `None` is the RFC value.
    pub timer_j: Option<Duration>,
}

impl Default for TimerConfig {
    fn default() -> Self {
        TimerConfig {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
            timer_j: None,
        }
    }
}

/// The transaction timers of RFC 3261 §17 plus L and M of RFC 6026.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TxTimer {
    /// INVITE request retransmit (client).
    A,
    /// INVITE transaction timeout (client).
    B,
    /// Wait time for response retransmits (client INVITE).
    D,
    /// Non-INVITE request retransmit (client).
    E,
    /// Non-INVITE transaction timeout (client).
    F,
    /// INVITE response retransmit (server).
    G,
    /// Wait time for ACK receipt (server).
    H,
    /// Wait time for ACK retransmits (server).
    I,
    /// Wait time for non-INVITE request retransmits (server).
    J,
    /// Wait time for response retransmits (client non-INVITE).
    K,
    /// Wait time for accepted INVITE request retransmits (server, RFC 6026).
    L,
    /// Wait time for retransmission of 2xx to INVITE (client, RFC 6026).
    M,
}

const TIMER_COUNT: usize = 12;

/// Identifies one transaction for the layer above.
///
/// The layer numbers its own transactions from 1 upwards. Ids with the top bit set
/// ([`TxId::user`]) are chosen by the transaction user for the client transactions it starts
/// ([`Transactions::send_request_as`]), so a user running in another task knows the id of a
/// request before the layer has seen it and can match the responses without a round trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TxId(pub u64);

impl TxId {
    const USER_BIT: u64 = 1 << 63;

    /// The `n`th id of the transaction user's own space.
    pub const fn user(n: u64) -> TxId {
        TxId(n | Self::USER_BIT)
    }

    /// True for ids from the transaction user's space.
    pub const fn is_user(self) -> bool {
        self.0 & Self::USER_BIT != 0
    }
}

/// Which of the four machines a transaction is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxKind {
    /// Client INVITE (§17.1.1).
    ClientInvite,
    /// Client non-INVITE (§17.1.2).
    ClientNonInvite,
    /// Server INVITE (§17.2.1).
    ServerInvite,
    /// Server non-INVITE (§17.2.2).
    ServerNonInvite,
}

/// Transaction states (union over the four machines).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxState {
    /// Client INVITE: request sent, nothing heard.
    Calling,
    /// Non-INVITE: request sent/received, no response yet.
    Trying,
    /// A provisional response has been sent/received.
    Proceeding,
    /// A final non-2xx response has been sent/received.
    Completed,
    /// INVITE answered with 2xx (RFC 6026).
    Accepted,
    /// Server INVITE: ACK received.
    Confirmed,
    /// Done; removed from the table.
    Terminated,
}

/// What the transaction layer asks of its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxOutput {
    /// Send these bytes over this flow.
    Transmit(Flow, Bytes),
    /// A new server transaction: the request goes to the transaction user.
    Request(TxId, Request),
    /// An ACK for a 2xx (no transaction of its own; goes to the dialog layer).
    AckFor2xx(Request, Flow),
    /// A response for a client transaction.
    Response(TxId, Response),
    /// A client transaction timed out (B or F), or a server INVITE never got its ACK (H).
    Timeout(TxId),
    /// The transaction is gone.
    Terminated(TxId),
}

/// Why a request cannot be sent or answered through the layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxError {
    /// No such transaction (it may have terminated).
    Unknown,
    /// The transaction has already sent its final response.
    AlreadyFinal,
    /// The request has no usable Via/CSeq.
    BadRequest,
    /// A caller-chosen id is not from the user space or names a live transaction.
    IdInUse,
    /// The table is full: the new request was not taken (answer 503).
    Full,
}

/// A request the layer did not take, handed back so that it can still be answered.
#[derive(Debug)]
pub struct Refused {
    /// Why.
    pub error: TxError,
    /// The request.
    pub request: Box<Request>,
}

#[derive(Debug)]
struct Transaction {
    kind: TxKind,
    state: TxState,
    key: String,
    flow: Flow,
    timers: [Option<Instant>; TIMER_COUNT],
    /// Current retransmit interval (A, E or G).
    interval: Duration,
    /// The request (client: what we sent; server: what we received).
    request: Request,
    /// Client: the request's wire bytes, for retransmission.
    request_bytes: Bytes,
    /// Server: the last response's wire bytes; client INVITE: the ACK we sent for a non-2xx.
    last_sent: Option<Bytes>,
    last_status: u16,
}

/// The transaction table.
#[derive(Debug)]
pub struct Transactions {
    timers_cfg: TimerConfig,
    next_id: u64,
    by_key: HashMap<String, TxId>,
    txs: HashMap<TxId, Transaction>,
    heap: BinaryHeap<Reverse<(Instant, TxId, TxTimer)>>,
    out: VecDeque<TxOutput>,
    max_transactions: usize,
}

fn method_for_key(m: &str) -> &str {
    if m == "ACK" {
        "INVITE"
    } else {
        m
    }
}

/// The server transaction key of a request (RFC 3261 §17.2.3).
/// `method_override` lets CANCEL look for its INVITE.
pub(crate) fn server_key(req: &Request, method_override: Option<&str>) -> Option<String> {
    let top = req.headers.get_list("Via").next()?;
    let via = Via::parse(top).ok()?;
    let cseq = CSeq::parse(req.headers.get("CSeq")?).ok()?;
    let method = method_override.unwrap_or(method_for_key(req.method.as_str()));
    if via.is_rfc3261() {
        // §17.2.3 matches on branch, sent-by and method. Call-ID and CSeq number are added:
        // a true retransmission (and the ACK or CANCEL of an INVITE) always carries the same
        // ones, so nothing that should match stops matching, while a client that reuses a
        // branch for a new request gets that request answered instead of an old response.
        Some(format!(
            "s|{}|{}:{}|{}|{}|{}",
            via.branch().unwrap_or_default(),
            via.host,
            via.port.unwrap_or(0),
            method,
            cseq.seq,
            req.headers.get("Call-ID").unwrap_or_default(),
        ))
    } else {
        // RFC 2543 matching: Request-URI, From tag, Call-ID, CSeq number, top Via.
        let from_tag = req
            .headers
            .get("From")
            .and_then(|f| NameAddr::parse(f).ok())
            .and_then(|f| f.tag().map(str::to_owned))
            .unwrap_or_default();
        // The To tag is left out so that the ACK for a non-2xx (which carries our tag) and a
        // CANCEL (which does not) find the INVITE.
        Some(format!(
            "o|{}|{}|{}|{}|{}|{}",
            req.uri,
            from_tag,
            req.headers.get("Call-ID").unwrap_or_default(),
            cseq.seq,
            method,
            top
        ))
    }
}

fn client_key(branch: &str, method: &str) -> String {
    format!("c|{branch}|{method}")
}

impl Transactions {
    /// An empty table. `max_transactions` bounds memory: beyond it new server transactions are
    /// refused (the caller answers 503).
    pub fn new(timers: TimerConfig, max_transactions: usize) -> Transactions {
        Transactions {
            timers_cfg: timers,
            next_id: 1,
            by_key: HashMap::new(),
            txs: HashMap::new(),
            heap: BinaryHeap::new(),
            out: VecDeque::new(),
            max_transactions,
        }
    }

    /// Number of live transactions.
    pub fn len(&self) -> usize {
        self.txs.len()
    }

    /// True when no transaction is live.
    pub fn is_empty(&self) -> bool {
        self.txs.is_empty()
    }

    /// True when the table is full.
    pub fn is_full(&self) -> bool {
        self.txs.len() >= self.max_transactions
    }

    /// State of a transaction, if it is live.
    pub fn state(&self, id: TxId) -> Option<TxState> {
        self.txs.get(&id).map(|t| t.state)
    }

    /// The request of a live transaction.
    pub fn request(&self, id: TxId) -> Option<&Request> {
        self.txs.get(&id).map(|t| &t.request)
    }

    /// The flow a live transaction uses.
    pub fn flow(&self, id: TxId) -> Option<Flow> {
        self.txs.get(&id).map(|t| t.flow)
    }

    /// Server transactions still waiting for a final response.
    pub fn unanswered_server(&self) -> Vec<TxId> {
        let mut ids: Vec<TxId> = self
            .txs
            .iter()
            .filter(|(_, t)| {
                matches!(t.kind, TxKind::ServerInvite | TxKind::ServerNonInvite)
                    && matches!(t.state, TxState::Trying | TxState::Proceeding)
            })
            .map(|(id, _)| *id)
            .collect();
        ids.sort();
        ids
    }

    /// Next output.
    pub fn poll_output(&mut self) -> Option<TxOutput> {
        self.out.pop_front()
    }

    /// Earliest pending timer deadline (may be early if the entry is stale: then nothing fires).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((t, _, _))| *t)
    }

    fn alloc_id(&mut self) -> TxId {
        let id = TxId(self.next_id);
        self.next_id += 1;
        id
    }

    fn set_timer(&mut self, id: TxId, timer: TxTimer, at: Instant) {
        if let Some(tx) = self.txs.get_mut(&id) {
            tx.timers[timer as usize] = Some(at);
            self.heap.push(Reverse((at, id, timer)));
        }
    }

    fn clear_timer(&mut self, id: TxId, timer: TxTimer) {
        if let Some(tx) = self.txs.get_mut(&id) {
            tx.timers[timer as usize] = None;
        }
    }

    fn terminate(&mut self, id: TxId) {
        if let Some(tx) = self.txs.remove(&id) {
            if self.by_key.get(&tx.key) == Some(&id) {
                self.by_key.remove(&tx.key);
            }
            self.out.push_back(TxOutput::Terminated(id));
        }
    }

    /// Drop a transaction now, whatever its state (a final response sent statelessly: its
    /// retransmissions are not absorbed, a retransmitted request is answered afresh).
    pub fn forget(&mut self, id: TxId) {
        self.terminate(id);
    }

    /// Look up the server INVITE transaction a CANCEL refers to (RFC 3261 §9.2).
    pub fn find_invite_for_cancel(&self, cancel: &Request) -> Option<TxId> {
        let key = server_key(cancel, Some("INVITE"))?;
        let id = *self.by_key.get(&key)?;
        let tx = self.txs.get(&id)?;
        (tx.kind == TxKind::ServerInvite).then_some(id)
    }

    /// A request arrived. Retransmissions are absorbed here (answered from the transaction);
    /// new requests become server transactions and are passed up as [`TxOutput::Request`];
    /// an ACK for a 2xx is passed up as [`TxOutput::AckFor2xx`] (and `Ok(None)` returned).
    /// A request that has no usable Via/CSeq ([`TxError::BadRequest`]) or finds the table
    /// full ([`TxError::Full`]) is handed back in [`Refused`].
    pub fn receive_request(
        &mut self,
        now: Instant,
        flow: Flow,
        req: Request,
    ) -> Result<Option<TxId>, Refused> {
        let Some(key) = server_key(&req, None) else {
            return Err(Refused {
                error: TxError::BadRequest,
                request: Box::new(req),
            });
        };
        if let Some(&id) = self.by_key.get(&key) {
            let t4 = self.timers_cfg.t4;
            let Some(tx) = self.txs.get_mut(&id) else {
                return Ok(Some(id));
            };
            if req.method == Method::Ack {
                match (tx.kind, tx.state) {
                    (TxKind::ServerInvite, TxState::Completed) => {
                        tx.state = TxState::Confirmed;
                        tx.timers[TxTimer::G as usize] = None;
                        tx.timers[TxTimer::H as usize] = None;
                        let wait = if flow.transport.is_reliable() {
                            Duration::ZERO
                        } else {
                            t4
                        };
                        self.set_timer(id, TxTimer::I, now + wait);
                    }
                    (TxKind::ServerInvite, TxState::Accepted) => {
                        self.out.push_back(TxOutput::AckFor2xx(req, flow));
                    }
                    _ => {}
                }
                return Ok(Some(id));
            }
            // A retransmitted request: answer with the last response, if any.
            if let (Some(bytes), TxState::Proceeding | TxState::Completed) =
                (&tx.last_sent, tx.state)
            {
                self.out
                    .push_back(TxOutput::Transmit(tx.flow, bytes.clone()));
            }
            return Ok(Some(id));
        }
        if req.method == Method::Ack {
            // ACK without a transaction: for a 2xx (dialog layer) or stray.
            self.out.push_back(TxOutput::AckFor2xx(req, flow));
            return Ok(None);
        }
        if self.is_full() {
            return Err(Refused {
                error: TxError::Full,
                request: Box::new(req),
            });
        }
        let id = self.alloc_id();
        let kind = if req.method == Method::Invite {
            TxKind::ServerInvite
        } else {
            TxKind::ServerNonInvite
        };
        let state = if kind == TxKind::ServerInvite {
            TxState::Proceeding
        } else {
            TxState::Trying
        };
        self.by_key.insert(key.clone(), id);
        self.txs.insert(
            id,
            Transaction {
                kind,
                state,
                key,
                flow,
                timers: [None; TIMER_COUNT],
                interval: self.timers_cfg.t1,
                request: req.clone(),
                request_bytes: Bytes::new(),
                last_sent: None,
                last_status: 0,
            },
        );
        self.out.push_back(TxOutput::Request(id, req));
        Ok(Some(id))
    }

    /// Send a response through a server transaction.
    pub fn respond(&mut self, now: Instant, id: TxId, resp: &Response) -> Result<(), TxError> {
        let cfg = self.timers_cfg;
        let tx = self.txs.get_mut(&id).ok_or(TxError::Unknown)?;
        if matches!(
            tx.state,
            TxState::Completed | TxState::Accepted | TxState::Confirmed | TxState::Terminated
        ) {
            return Err(TxError::AlreadyFinal);
        }
        let bytes = resp.to_bytes();
        let reliable = tx.flow.transport.is_reliable();
        tx.last_sent = Some(bytes.clone());
        tx.last_status = resp.status;
        self.out.push_back(TxOutput::Transmit(tx.flow, bytes));
        let status = resp.status;
        match tx.kind {
            TxKind::ServerNonInvite => {
                if status < 200 {
                    tx.state = TxState::Proceeding;
                } else {
                    tx.state = TxState::Completed;
                    // From here on the transaction only absorbs retransmissions with
                    // `last_sent` until Timer J (32 s on UDP): the request itself is no
                    // longer needed, and at thousands of REGISTERs a second its headers
                    // are most of the table's memory.
                    tx.request.headers = Headers::default();
                    tx.request.body = Bytes::new();
                    let wait = if reliable {
                        Duration::ZERO
                    } else {
                        cfg.timer_j.unwrap_or(cfg.t1 * 64)
                    };
                    self.set_timer(id, TxTimer::J, now + wait);
                }
            }
            TxKind::ServerInvite => {
                if status < 200 {
                    tx.state = TxState::Proceeding;
                } else if status < 300 {
                    tx.state = TxState::Accepted;
                    self.set_timer(id, TxTimer::L, now + cfg.t1 * 64);
                } else {
                    tx.state = TxState::Completed;
                    tx.interval = cfg.t1;
                    if !reliable {
                        self.set_timer(id, TxTimer::G, now + cfg.t1);
                    }
                    self.set_timer(id, TxTimer::H, now + cfg.t1 * 64);
                }
            }
            _ => return Err(TxError::Unknown),
        }
        Ok(())
    }

    /// Start a client transaction for `req` (its top Via must carry a fresh branch) over `flow`.
    pub fn send_request(
        &mut self,
        now: Instant,
        flow: Flow,
        req: Request,
    ) -> Result<TxId, TxError> {
        let id = self.alloc_id();
        self.start_client(now, flow, req, id)
    }

    /// Like [`Transactions::send_request`], under an id the caller chose with [`TxId::user`].
    /// Fails with [`TxError::IdInUse`] when that id names a live transaction.
    pub fn send_request_as(
        &mut self,
        now: Instant,
        flow: Flow,
        req: Request,
        id: TxId,
    ) -> Result<TxId, TxError> {
        if !id.is_user() || self.txs.contains_key(&id) {
            return Err(TxError::IdInUse);
        }
        self.start_client(now, flow, req, id)
    }

    fn start_client(
        &mut self,
        now: Instant,
        flow: Flow,
        req: Request,
        id: TxId,
    ) -> Result<TxId, TxError> {
        let cfg = self.timers_cfg;
        let top = req
            .headers
            .get_list("Via")
            .next()
            .ok_or(TxError::BadRequest)?;
        let via = Via::parse(top).map_err(|_| TxError::BadRequest)?;
        let branch = via.branch().ok_or(TxError::BadRequest)?.to_owned();
        let key = client_key(&branch, req.method.as_str());
        let kind = if req.method == Method::Invite {
            TxKind::ClientInvite
        } else {
            TxKind::ClientNonInvite
        };
        let bytes = req.to_bytes();
        self.out.push_back(TxOutput::Transmit(flow, bytes.clone()));
        self.by_key.insert(key.clone(), id);
        self.txs.insert(
            id,
            Transaction {
                kind,
                state: if kind == TxKind::ClientInvite {
                    TxState::Calling
                } else {
                    TxState::Trying
                },
                key,
                flow,
                timers: [None; TIMER_COUNT],
                interval: cfg.t1,
                request: req,
                request_bytes: bytes,
                last_sent: None,
                last_status: 0,
            },
        );
        let reliable = flow.transport.is_reliable();
        match kind {
            TxKind::ClientInvite => {
                if !reliable {
                    self.set_timer(id, TxTimer::A, now + cfg.t1);
                }
                self.set_timer(id, TxTimer::B, now + cfg.t1 * 64);
            }
            _ => {
                if !reliable {
                    self.set_timer(id, TxTimer::E, now + cfg.t1);
                }
                self.set_timer(id, TxTimer::F, now + cfg.t1 * 64);
            }
        }
        Ok(id)
    }

    /// A response arrived. Returns false when it matches no client transaction
    /// (the caller drops it: RFC 3261 §17.1.3 / §18.1.2).
    pub fn receive_response(&mut self, now: Instant, resp: Response) -> bool {
        let cfg = self.timers_cfg;
        let Some(top) = resp.headers.get_list("Via").next() else {
            return false;
        };
        let Ok(via) = Via::parse(top) else {
            return false;
        };
        let Some(branch) = via.branch() else {
            return false;
        };
        let Some(cseq) = resp.headers.get("CSeq").and_then(|c| CSeq::parse(c).ok()) else {
            return false;
        };
        let key = client_key(branch, &cseq.method);
        let Some(&id) = self.by_key.get(&key) else {
            return false;
        };
        let Some(tx) = self.txs.get_mut(&id) else {
            return false;
        };
        let reliable = tx.flow.transport.is_reliable();
        let status = resp.status;
        match (tx.kind, tx.state) {
            (TxKind::ClientNonInvite, TxState::Trying | TxState::Proceeding) => {
                if status < 200 {
                    tx.state = TxState::Proceeding;
                    self.out.push_back(TxOutput::Response(id, resp));
                } else {
                    tx.state = TxState::Completed;
                    tx.timers[TxTimer::E as usize] = None;
                    tx.timers[TxTimer::F as usize] = None;
                    self.out.push_back(TxOutput::Response(id, resp));
                    let wait = if reliable { Duration::ZERO } else { cfg.t4 };
                    self.set_timer(id, TxTimer::K, now + wait);
                }
            }
            (TxKind::ClientNonInvite, _) => {} // retransmitted final: absorbed
            (TxKind::ClientInvite, TxState::Calling | TxState::Proceeding) => {
                tx.timers[TxTimer::A as usize] = None;
                if status < 200 {
                    tx.state = TxState::Proceeding;
                    self.out.push_back(TxOutput::Response(id, resp));
                } else if status < 300 {
                    tx.state = TxState::Accepted;
                    tx.timers[TxTimer::B as usize] = None;
                    self.out.push_back(TxOutput::Response(id, resp));
                    self.set_timer(id, TxTimer::M, now + cfg.t1 * 64);
                } else {
                    tx.state = TxState::Completed;
                    tx.timers[TxTimer::B as usize] = None;
                    let ack = build_ack(&tx.request, &resp);
                    tx.last_sent = Some(ack.clone());
                    self.out.push_back(TxOutput::Transmit(tx.flow, ack));
                    self.out.push_back(TxOutput::Response(id, resp));
                    let wait = if reliable {
                        Duration::ZERO
                    } else {
                        Duration::from_secs(32)
                    };
                    self.set_timer(id, TxTimer::D, now + wait);
                }
            }
            (TxKind::ClientInvite, TxState::Accepted) if (200..300).contains(&status) => {
                self.out.push_back(TxOutput::Response(id, resp));
            }
            (TxKind::ClientInvite, TxState::Completed) if status >= 300 => {
                if let Some(ack) = &tx.last_sent {
                    self.out.push_back(TxOutput::Transmit(tx.flow, ack.clone()));
                }
            }
            _ => {}
        }
        true
    }

    /// Fire every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(Reverse((at, id, timer))) = self.heap.peek().copied() {
            if at > now {
                break;
            }
            self.heap.pop();
            let current = self.txs.get(&id).and_then(|t| t.timers[timer as usize]);
            if current != Some(at) {
                continue; // stale heap entry
            }
            self.clear_timer(id, timer);
            self.fire(now, id, timer);
        }
    }

    fn fire(&mut self, now: Instant, id: TxId, timer: TxTimer) {
        let cfg = self.timers_cfg;
        let Some(tx) = self.txs.get_mut(&id) else {
            return;
        };
        match timer {
            TxTimer::A => {
                if tx.state == TxState::Calling {
                    self.out
                        .push_back(TxOutput::Transmit(tx.flow, tx.request_bytes.clone()));
                    tx.interval *= 2;
                    let next = now + tx.interval;
                    self.set_timer(id, TxTimer::A, next);
                }
            }
            TxTimer::E => {
                if matches!(tx.state, TxState::Trying | TxState::Proceeding) {
                    self.out
                        .push_back(TxOutput::Transmit(tx.flow, tx.request_bytes.clone()));
                    tx.interval = if tx.state == TxState::Proceeding {
                        cfg.t2
                    } else {
                        (tx.interval * 2).min(cfg.t2)
                    };
                    let next = now + tx.interval;
                    self.set_timer(id, TxTimer::E, next);
                }
            }
            TxTimer::G => {
                if tx.state == TxState::Completed {
                    if let Some(b) = &tx.last_sent {
                        self.out.push_back(TxOutput::Transmit(tx.flow, b.clone()));
                    }
                    tx.interval = (tx.interval * 2).min(cfg.t2);
                    let next = now + tx.interval;
                    self.set_timer(id, TxTimer::G, next);
                }
            }
            TxTimer::B | TxTimer::F => {
                self.out.push_back(TxOutput::Timeout(id));
                self.terminate(id);
            }
            TxTimer::H => {
                self.out.push_back(TxOutput::Timeout(id));
                self.terminate(id);
            }
            TxTimer::D | TxTimer::I | TxTimer::J | TxTimer::K | TxTimer::L | TxTimer::M => {
                self.terminate(id);
            }
        }
    }

    /// Build a CANCEL for a client INVITE transaction (RFC 3261 §9.1): same Request-URI,
    /// Call-ID, From, To, CSeq number and top Via (same branch), method CANCEL.
    pub fn build_cancel(&self, invite: TxId) -> Option<(Flow, Request)> {
        let tx = self.txs.get(&invite)?;
        if tx.kind != TxKind::ClientInvite
            || !matches!(tx.state, TxState::Calling | TxState::Proceeding)
        {
            return None;
        }
        let r = &tx.request;
        let mut h = Headers::default();
        if let Some(v) = r.headers.get_list("Via").next() {
            h.push("Via", v);
        }
        for name in ["Route"] {
            for v in r.headers.get_all(name) {
                h.push(name, v);
            }
        }
        for name in ["Max-Forwards", "From", "To", "Call-ID"] {
            if let Some(v) = r.headers.get(name) {
                h.push(name, v);
            }
        }
        let seq = r.headers.get("CSeq").and_then(|c| CSeq::parse(c).ok())?.seq;
        h.push("CSeq", format!("{seq} CANCEL"));
        Some((
            tx.flow,
            Request {
                method: Method::Cancel,
                uri: r.uri.clone(),
                headers: h,
                body: Bytes::new(),
            },
        ))
    }
}

/// ACK for a non-2xx final response (RFC 3261 §17.1.1.3).
fn build_ack(invite: &Request, resp: &Response) -> Bytes {
    let mut h = Headers::default();
    if let Some(v) = invite.headers.get_list("Via").next() {
        h.push("Via", v);
    }
    for v in invite.headers.get_all("Route") {
        h.push("Route", v);
    }
    for name in ["Max-Forwards", "From", "Call-ID"] {
        if let Some(v) = invite.headers.get(name) {
            h.push(name, v);
        }
    }
    if let Some(to) = resp.headers.get("To") {
        h.push("To", to);
    }
    let seq = invite
        .headers
        .get("CSeq")
        .and_then(|c| CSeq::parse(c).ok())
        .map_or(1, |c| c.seq);
    h.push("CSeq", format!("{seq} ACK"));
    Request {
        method: Method::Ack,
        uri: invite.uri.clone(),
        headers: h,
        body: Bytes::new(),
    }
    .to_bytes()
}
