//! The headless phone: a script over one [`Station`] (the sans-IO [`crate::ua::Phone`] and
//! its call's [`crate::stream::Stream`] on real sockets). It registers (digest, MD5 or
//! SHA-256, whichever the server offers first that it can answer), places or answers one
//! call, sends a tone, a WAV file or silence, keys RFC 4733 digits, holds, mutes, transfers,
//! records what it hears, and hangs up after a while or when the other side does; then it
//! unregisters. What happened comes back as a [`Summary`] for scripts and tests.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use media::recorder::g711::Law;
use serde::Serialize;

use crate::audio::Source;
use crate::station::{Station, StationConfig};
use crate::ua::{Command, PhoneEvent};

/// What the phone is to do.
#[derive(Debug, Clone)]
pub struct Options {
    /// The server (registrar and proxy).
    pub server: SocketAddr,
    /// Address to bind (and to write into SDP and Contact).
    pub local: IpAddr,
    /// The SIP user and password.
    pub user: String,
    /// Its password.
    pub password: String,
    /// Domain of the From/To URIs (the server's realm works).
    pub domain: String,
    /// Call this number; otherwise wait for a call.
    pub dial: Option<String>,
    /// Answer an incoming call this long after it rings.
    pub answer_after: Duration,
    /// What the phone sends.
    pub source: Source,
    /// Write what it hears here (8 kHz mono WAV).
    pub record: Option<PathBuf>,
    /// Hang up this long after the call is up (`None`: wait for the other side).
    pub hangup_after: Option<Duration>,
    /// Key these digits (RFC 4733) once the call has been up for `digits_after`.
    pub digits: String,
    /// When to key them.
    pub digits_after: Duration,
    /// Give up (and exit with a failure) after this long in all.
    pub timeout: Duration,
    /// Put the call on hold this long after it is up (re-INVITE, sendonly; the phone stops
    /// sending), for `hold_for`, then resume it.
    pub hold_after: Option<Duration>,
    /// How long the hold lasts.
    pub hold_for: Duration,
    /// Registration expiry asked for (seconds); refreshed at four fifths of what is granted.
    pub expires: u32,
    /// Register first (off: place the call straight away, answering its challenge: a
    /// phone calling a carrier or another user agent directly).
    pub register: bool,
    /// Give up a call that is not answered this long after it was placed (CANCEL).
    pub cancel_after: Option<Duration>,
    /// SIP over TCP instead of UDP.
    pub tcp: bool,
    /// Send a CRLF keep-alive to the server this often (NAT bindings).
    pub keepalive: Option<Duration>,
    /// Mute the microphone this long after the call is up, for `mute_for`.
    pub mute_after: Option<Duration>,
    /// How long the mute lasts.
    pub mute_for: Duration,
    /// Transfer the call (blind, REFER) to this number `transfer_after` into it.
    pub transfer_to: Option<String>,
    /// When to transfer.
    pub transfer_after: Duration,
    /// Attended transfer: `consult_after` into the call, hold it and call this number…
    pub consult: Option<String>,
    /// …at this time…
    pub consult_after: Duration,
    /// …and this long after the consultation is answered, connect the two (REFER with
    /// Replaces).
    pub complete_after: Duration,
    /// Depth of the jitter buffer that puts what the phone hears back in order.
    pub playout: Duration,
    /// Talk through the sound card (feature `sound-card`); silent without one.
    pub sound_card: bool,
}

impl Options {
    /// A phone for `user` at `server` that registers and waits for a call (answering it at
    /// once), silent, with the defaults of the command line.
    pub fn new(server: SocketAddr, user: &str, password: &str) -> Options {
        Options {
            server,
            local: IpAddr::from([127, 0, 0, 1]),
            user: user.to_owned(),
            password: password.to_owned(),
            domain: "switchboard".into(),
            dial: None,
            answer_after: Duration::ZERO,
            source: Source::Silence,
            record: None,
            hangup_after: None,
            digits: String::new(),
            digits_after: Duration::from_secs(1),
            timeout: Duration::from_secs(60),
            hold_after: None,
            hold_for: Duration::from_secs(2),
            expires: 300,
            register: true,
            cancel_after: None,
            tcp: false,
            keepalive: None,
            mute_after: None,
            mute_for: Duration::from_secs(2),
            transfer_to: None,
            transfer_after: Duration::from_secs(1),
            consult: None,
            consult_after: Duration::from_secs(1),
            complete_after: Duration::from_secs(1),
            playout: Duration::from_millis(60),
            sound_card: false,
        }
    }
}

/// What happened, for scripts.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    /// The server accepted the registration.
    pub registered: bool,
    /// The call was set up (answered).
    pub answered: bool,
    /// The final status of a refused or failed call (0 if none).
    pub refused: u16,
    /// Who hung up: "us", "them", or "" when no call was up.
    pub hung_up_by: String,
    /// INVITE to 200 OK (placed calls), milliseconds.
    pub setup_ms: Option<f64>,
    /// Seconds the call was up.
    pub talk_s: f64,
    /// The codec used.
    pub codec: String,
    /// RTP packets sent (audio and events).
    pub sent: u64,
    /// RTP packets received.
    pub received: u64,
    /// Packets lost, from the sequence numbers received.
    pub lost: u64,
    /// Interarrival jitter, milliseconds.
    pub jitter_ms: f64,
    /// Digits keyed, and digits received as RFC 4733 events.
    pub digits_sent: String,
    /// Digits received as RFC 4733 events.
    pub digits_received: String,
    /// The call was put on hold and resumed (both re-INVITEs answered 200).
    pub held_and_resumed: bool,
    /// New offers from the other side answered during the call (re-INVITE or UPDATE).
    pub reoffers: u32,
    /// Registrations refreshed (each accepted by the registrar).
    pub refreshes: u32,
    /// Packets that arrived too late for the jitter buffer.
    pub late: u64,
    /// The call was muted and unmuted.
    pub muted_and_unmuted: bool,
    /// The transfer's outcome as reported (a NOTIFY's status, or the REFER's refusal).
    pub transfer_status: u16,
    /// The consultation of an attended transfer was answered.
    pub consulted: bool,
    /// The phone's address as the server saw it (STUN keep-alives over UDP).
    pub public_address: Option<String>,
    /// What went wrong, if anything.
    pub error: Option<String>,
}

/// Where the script is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Waiting for the registrar.
    Registering,
    /// Waiting for a call (to ring, or ours to be answered).
    Waiting,
    /// A call rings here; answer at this time.
    Ringing(Instant),
    /// The call is up since then.
    Talking(Instant),
    /// Over.
    Done,
}

/// Run the phone as `opts` says; the summary (with `error` set when something failed).
pub fn run(opts: Options) -> Summary {
    let mut summary = Summary::default();
    let cfg = StationConfig {
        server: opts.server,
        tcp: opts.tcp,
        local: opts.local,
        user: opts.user.clone(),
        password: opts.password.clone(),
        domain: opts.domain.clone(),
        expires: opts.expires,
        keepalive: opts.keepalive,
        source: opts.source.clone(),
        playout: opts.record.is_some().then_some(opts.playout),
        sound_card: opts.sound_card,
    };
    let mut st = match Station::open(&cfg) {
        Ok(st) => st,
        Err(e) => {
            summary.error = Some(e);
            return summary;
        }
    };
    if let Some(n) = &st.notice {
        eprintln!("{n}");
    }
    let start = Instant::now();
    let mut step = if opts.register {
        st.command(Command::Register);
        Step::Registering
    } else {
        Step::Waiting
    };
    let mut placed: Option<Instant> = None;
    let mut cancelled = false;
    // What was done in the call (each once).
    let (mut keyed, mut transferred) = (false, false);
    // An attended transfer: consultation placed, answered at, its end, the held call's end.
    let (mut consulting, mut consult_up, mut completed) = (false, None::<Instant>, false);
    let (mut consult_over, mut held_over) = (false, false);
    let (mut holds, mut mutes) = (0u32, 0u32);
    while step != Step::Done {
        let now = Instant::now();
        if step == Step::Waiting && placed.is_none() {
            if let Some(number) = &opts.dial {
                placed = Some(now);
                st.command(Command::Dial {
                    number: number.clone(),
                    rtp_port: 0,
                });
            }
        }
        for ev in st.step() {
            match ev {
                PhoneEvent::Registered { .. } if step == Step::Registering => {
                    summary.registered = true;
                    step = Step::Waiting;
                }
                PhoneEvent::Registered { .. } => summary.refreshes += 1,
                PhoneEvent::RegistrationFailed(why) => {
                    if step == Step::Registering {
                        summary.error = Some(format!("registration {why}"));
                        step = Step::Done;
                    }
                }
                PhoneEvent::Incoming(_) => {
                    step = Step::Ringing(Instant::now() + opts.answer_after);
                }
                PhoneEvent::Answered(_) if consulting => {
                    summary.consulted = true;
                    consult_up = Some(Instant::now());
                }
                PhoneEvent::Answered(m) => {
                    summary.answered = true;
                    summary.codec = match m.negotiated.law {
                        Law::Mu => "PCMU",
                        Law::A => "PCMA",
                    }
                    .into();
                    summary.setup_ms = placed.map(|t| t.elapsed().as_secs_f64() * 1000.0);
                    step = Step::Talking(Instant::now());
                }
                PhoneEvent::MediaChanged(_) => summary.reoffers += 1,
                PhoneEvent::Held(_) => holds += 1,
                PhoneEvent::Transfer(status) => summary.transfer_status = status,
                PhoneEvent::Refused(why) => {
                    summary.error = Some(why);
                    st.command(Command::Hangup);
                }
                PhoneEvent::Ended { .. } if consulting && !consult_over => {
                    consult_over = true;
                    if held_over {
                        step = Step::Done;
                    } else if !completed {
                        // The consultation ended first: back to the caller.
                        st.command(Command::Retrieve);
                    }
                }
                PhoneEvent::HeldCallEnded { .. } => {
                    held_over = true;
                    if let Step::Talking(t0) = step {
                        summary.talk_s = t0.elapsed().as_secs_f64();
                        summary.hung_up_by = "them".into();
                    }
                    if consult_over {
                        step = Step::Done;
                    }
                }
                PhoneEvent::Retrieved(_) => consulting = false,
                PhoneEvent::Ended {
                    by_us,
                    status,
                    reason,
                } => {
                    if let Step::Talking(t0) = step {
                        summary.talk_s = t0.elapsed().as_secs_f64();
                        summary.hung_up_by = if by_us { "us" } else { "them" }.into();
                    } else if matches!(step, Step::Ringing(_)) && status == 487 {
                        summary.error = Some("the caller cancelled".into());
                    } else if status != 0 {
                        summary.refused = status;
                        summary.error = Some(if cancelled && status == 487 {
                            "given up while it rang (CANCEL)".into()
                        } else {
                            format!("call refused: {status} {reason}")
                        });
                    }
                    step = Step::Done;
                }
                PhoneEvent::Unregistered | PhoneEvent::Ringing => {}
            }
        }
        if let Some(e) = st.broken.take() {
            summary.error.get_or_insert(e);
            step = Step::Done;
        }
        let now = Instant::now();
        match step {
            Step::Ringing(at) if now >= at => st.command(Command::Answer { rtp_port: 0 }),
            Step::Waiting => {
                if let (Some(after), Some(t)) = (opts.cancel_after, placed) {
                    if !cancelled && now >= t + after {
                        cancelled = true;
                        st.command(Command::Hangup);
                    }
                }
            }
            Step::Talking(t0) => {
                let up = now - t0;
                if !keyed && !opts.digits.is_empty() && up >= opts.digits_after {
                    keyed = true;
                    st.key(&opts.digits);
                }
                if let Some(at) = opts.hold_after {
                    let want = up >= at && up < at + opts.hold_for;
                    if holds < 2 && want != st.phone.held() && (want || holds == 1) {
                        st.command(if want { Command::Hold } else { Command::Resume });
                    }
                }
                if let Some(at) = opts.mute_after {
                    let want = up >= at && up < at + opts.mute_for;
                    if mutes < 2 && want != st.muted() {
                        mutes += 1;
                        st.set_muted(want);
                    }
                }
                if let Some(to) = &opts.transfer_to {
                    if !transferred && up >= opts.transfer_after {
                        transferred = true;
                        st.command(Command::Transfer(to.clone()));
                    }
                }
                if let Some(to) = &opts.consult {
                    if !consulting && !consult_over && up >= opts.consult_after {
                        consulting = true;
                        st.command(Command::Consult {
                            number: to.clone(),
                            rtp_port: 0,
                        });
                    }
                    if consult_up.is_some_and(|t| now >= t + opts.complete_after) && !completed {
                        completed = true;
                        st.command(Command::CompleteTransfer);
                    }
                }
                if opts.hangup_after.is_some_and(|h| up >= h) {
                    st.command(Command::Hangup);
                }
            }
            _ => {}
        }
        if step != Step::Done && start.elapsed() > opts.timeout {
            summary.error.get_or_insert_with(|| {
                if step == Step::Waiting && opts.dial.is_none() {
                    "no call came".into()
                } else {
                    "timed out".into()
                }
            });
            if matches!(step, Step::Talking(_) | Step::Ringing(_)) || placed.is_some() {
                st.command(Command::Hangup);
                let _ = st.step();
            }
            step = Step::Done;
        }
    }
    // What is still in flight of the call (our BYE, a given-up INVITE that may yet be
    // answered: its 2xx gets ACK and BYE) is seen through before the phone goes.
    let until = Instant::now() + Duration::from_secs(4);
    while !st.phone.settled() && Instant::now() < until {
        let _ = st.step();
    }
    summary.held_and_resumed = holds >= 2;
    summary.public_address = st.public_address.map(|a| a.to_string());
    summary.muted_and_unmuted = mutes >= 2;
    let first_call = st.held_stream.take();
    if let Some(s) = first_call.or(st.last_stream.take()).or(st.stream.take()) {
        summary.sent = s.sent;
        summary.received = s.rx.packets;
        summary.lost = s.rx.lost();
        summary.jitter_ms = s.rx.jitter_ms();
        summary.late = s.late;
        summary.digits_sent = s.digits_sent.clone();
        summary.digits_received = s.rx.digits.clone();
        if let Some(p) = &opts.record {
            if let Err(e) = s.rx.write_wav(p) {
                summary.error.get_or_insert(e);
            }
        }
    }
    if summary.registered {
        // Unregister (best effort), waiting briefly for the answer; the BYE's answer too.
        st.command(Command::Unregister);
        let until = Instant::now() + Duration::from_secs(2);
        while Instant::now() < until {
            if st.step().contains(&PhoneEvent::Unregistered) {
                break;
            }
        }
    }
    summary
}
