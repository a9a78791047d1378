//! `switchboard serve`: load the config, start the SIP transport, run until SIGINT/SIGTERM.

use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use pbx::sip::endpoint::CallAuthConfig;
use pbx::sip::{Endpoint, EndpointConfig};
use pbx::sip_transport::TransportConfig;
use rand::RngCore;
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use crate::config::{self, Config};
use crate::ServeArgs;

pub(crate) fn run(args: ServeArgs) -> ExitCode {
    let cfg = match config::load(&args.config, args.sip_bind.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            eprintln!("switchboard: not started: fix the config above and start again");
            return ExitCode::FAILURE;
        }
    };
    let filter = args.log.clone().unwrap_or_else(|| cfg.log_level.clone());
    // The DTLS stack warns about the DTLS 1.3 extensions of every browser's ClientHello,
    // which it does not use: only its errors are for the admin, unless asked for by name.
    let filter = if filter.contains("rtc_dtls") {
        filter
    } else {
        format!("{filter},rtc_dtls=error")
    };
    // Colours only on a terminal (and not with NO_COLOR): a log written to a file, a pipe
    // or the journal gets no ANSI escape codes.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("switchboard: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let reload = Reload {
        dir: args.config.clone(),
        sip_bind: args.sip_bind.clone(),
    };
    match rt.block_on(serve(cfg, reload)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!(error = %e, "switchboard stopped");
            eprintln!("switchboard: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn endpoint_config(cfg: &Config) -> EndpointConfig {
    let mut secret = [0u8; 32];
    match cfg.secret {
        Some(s) => secret = s,
        None => rand::rng().fill_bytes(&mut secret),
    }
    let via_host = cfg.advertise.clone().unwrap_or_else(|| {
        if cfg.sip_bind.ip().is_unspecified() {
            // Phones on other machines send their in-dialog requests (BYE) to what our
            // Contact names: the interface that routes outward, not loopback.
            let host = crate::callcenter::outward_ipv4().unwrap_or(std::net::Ipv4Addr::LOCALHOST);
            tracing::info!(
                address = %host,
                "sip.advertise is not set and sip.bind is a wildcard: Via and Contact name the \
                 address of the interface that routes outward; set sip.advertise behind NAT"
            );
            format!("{host}:{}", cfg.sip_bind.port())
        } else {
            cfg.sip_bind.to_string()
        }
    });
    EndpointConfig {
        realm: cfg.realm.clone(),
        domains: cfg.domains.clone(),
        via_host,
        registrar: cfg.registrar.clone(),
        auth: cfg.auth.clone(),
        security: cfg.security.clone(),
        calls: CallAuthConfig {
            trunks: cfg.callcenter.trunks.clone(),
            challenge: cfg.callcenter.challenge,
        },
        max_message_size: cfg.max_message_size,
        force_rport: cfg.force_rport,
        timers: pbx::sip::transaction::TimerConfig {
            timer_j: cfg.timer_j,
            ..Default::default()
        },
        secret,
        seed: rand::rng().next_u64(),
        max_transactions: cfg
            .max_transactions
            .unwrap_or_else(default_max_transactions),
        ..EndpointConfig::default()
    }
}

/// The most a live transaction holds: an unanswered INVITE with its SDP measured 2.8 kB
/// (`cargo run --release -p sip --example transaction_memory -- INVITE`), rounded up.
/// Challenges keep no transaction (64 bytes of per-source state, `-- challenged`).
const TRANSACTION_BYTES: u64 = 4096;

/// As many live transactions as fit in a quarter of the machine's memory (10,000 to
/// 2,000,000); beyond it new requests get 503. A flood of unanswerable requests then costs
/// at most that quarter.
fn default_max_transactions() -> usize {
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map(|kib| kib * 1024);
    match total {
        Some(bytes) => (bytes / 4 / TRANSACTION_BYTES).clamp(10_000, 2_000_000) as usize,
        None => 200_000,
    }
}

/// Where a reload reads the config from (the same place and overrides as at start).
struct Reload {
    dir: std::path::PathBuf,
    sip_bind: Option<String>,
}

fn pbx_config(
    cfg: &Config,
    contact_host: &str,
    tls_port: Option<u16>,
    seed: u64,
) -> pbx::PbxConfig {
    let cc = &cfg.callcenter;
    pbx::PbxConfig {
        contact_host: contact_host.to_owned(),
        queues: cc.queues.clone(),
        agents: cc.agents.clone(),
        trunks: cc.trunk_rules.clone(),
        outbound: cc.outbound.clone(),
        supervisors: cc.supervisors.clone(),
        extensions: cc.extensions,
        extension_ring_timeout: cc.ring_timeout,
        features: cc.features.clone(),
        announcements: cc.announcements.clone(),
        seed,
        recording_seed: cc.recording_seed,
        recording_pause_key: cc.recording_pause_key.clone(),
        menus: cc.menus.clone(),
        voicemail: cc.voicemail.clone(),
        // Call ids unique across restarts: the start time in microseconds, then one by one
        // (far fewer than a million calls a second).
        first_call: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_micros() as u64),
        // Set by the service from the relay it starts.
        webrtc_fingerprint: None,
        tls_contact_host: tls_port.map(|p| {
            let host = contact_host
                .rsplit_once(':')
                .map_or(contact_host, |(h, _)| h);
            format!("{host}:{p}")
        }),
        media_secret: rand::random(),
    }
}

/// Settings that a running server cannot change: they take effect at the next start.
fn needs_restart(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut v = Vec::new();
    if old.sip_bind != new.sip_bind
        || old.udp != new.udp
        || old.tcp != new.tcp
        || old.ws != new.ws
        || old.tls != new.tls
        || old.wss != new.wss
        || old.tls_files != new.tls_files
    {
        v.push("sip.bind/udp/tcp/ws/tls/wss/tls_cert/tls_key");
    }
    if old.realm != new.realm {
        v.push("sip.realm");
    }
    if old.advertise != new.advertise {
        v.push("sip.advertise");
    }
    if old.registrar != new.registrar || old.auth != new.auth || old.security != new.security {
        v.push("registrar/auth/security");
    }
    if old.binding_store != new.binding_store {
        v.push("registrar.persist/store");
    }
    if old.tcp_idle_timeout != new.tcp_idle_timeout
        || old.max_tcp_connections != new.max_tcp_connections
        || old.max_tcp_per_source != new.max_tcp_per_source
    {
        v.push("sip.tcp_idle_timeout/max_tcp_connections/max_tcp_per_source");
    }
    if old.storage != new.storage {
        v.push("storage");
    }
    if old.max_transactions != new.max_transactions {
        v.push("sip.max_transactions");
    }
    if old.callcenter.media != new.callcenter.media {
        v.push("media");
    }
    if old.callcenter.recording != new.callcenter.recording {
        v.push("recording.dir/flush_every");
    }
    v
}

/// The last reload's outcome, for the log and `status.json` beside the recordings (in the
/// parent of `recording.dir`). Written on the blocking pool: it is file I/O.
async fn write_status(cfg: &Config, ok: bool, errors: Vec<String>) {
    let Some(dir) = cfg.callcenter.recording.dir.parent().map(Path::to_owned) else {
        return;
    };
    off_the_workers(move || write_status_file(&dir, ok, &errors)).await;
}

/// [`write_status`]'s file: `status.json` in `dir`.
fn write_status_file(dir: &Path, ok: bool, errors: &[String]) {
    let now = pbx::recorder::file::utc(std::time::SystemTime::now());
    let status = serde_json::json!({
        "last_reload": now,
        "last_reload_ok": ok,
        "errors": errors,
    });
    let _ = std::fs::create_dir_all(dir);
    let _ = std::fs::write(dir.join("status.json"), format!("{status:#}\n"));
}

/// Run blocking work (file I/O, decoding prompts) on tokio's blocking pool and wait for it, so
/// that the async workers go on serving SIP and media meanwhile. A panic in the work is
/// resumed here, as if it had run inline.
async fn off_the_workers<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(work).await {
        Ok(v) => v,
        Err(e) => match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(e) => panic!("blocking work did not run: {e}"),
        },
    }
}

/// The config's warnings (legal but probably wrong), one log line each.
fn log_warnings(cfg: &Config) {
    for w in &cfg.callcenter.warnings {
        tracing::warn!(problem = %w, "config warning");
    }
}

async fn serve(cfg: Config, reload: Reload) -> anyhow::Result<()> {
    log_warnings(&cfg);
    let ep_cfg = endpoint_config(&cfg);
    let endpoint = Endpoint::new(ep_cfg.clone(), cfg.users.clone(), Instant::now());
    let tcfg = TransportConfig {
        udp: cfg.udp.then_some(cfg.sip_bind),
        tcp: cfg.tcp.then_some(cfg.sip_bind),
        ws: cfg.ws,
        tls: cfg.tls,
        wss: cfg.wss,
        tls_files: cfg.tls_files.clone(),
        udp_recv_buffer: cfg.udp_recv_buffer,
        max_message_size: cfg.max_message_size,
        max_tcp_connections: cfg.max_tcp_connections,
        max_tcp_per_source: cfg.max_tcp_per_source,
        tcp_idle_timeout: cfg.tcp_idle_timeout,
        binding_store: cfg.binding_store.clone(),
        ..TransportConfig::default()
    };
    // Reload triggers exist before anyone is told the server is up: a SIGHUP that arrived
    // before its handler would end the process.
    let (change_tx, changes) = mpsc::channel::<()>(16);
    let watcher = watch(&reload.dir, change_tx);
    #[cfg(unix)]
    let hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    #[cfg(not(unix))]
    let hup: Option<()> = None;
    // Likewise SIGTERM and SIGINT: a stop asked for right after start-up is a clean shutdown,
    // not the default action of the signal.
    let shutdown = ShutdownSignals::install();
    let (events_tx, events_rx) = mpsc::channel(4096);
    let (handle, task) = pbx::sip_transport::start(endpoint, tcfg, events_tx).await?;
    let cc = &cfg.callcenter;
    // Bound to port 0 (tests, or a port left to the OS): the Contact of our dialogs must name
    // the port we really got, or phones send their BYEs nowhere.
    let contact_host = match (
        ep_cfg.via_host.rsplit_once(':'),
        handle.udp_addr.or(handle.tcp_addr),
    ) {
        (Some((host, "0")), Some(bound)) => format!("{host}:{}", bound.port()),
        _ => ep_cfg.via_host.clone(),
    };
    let tls_port = handle.tls_addr.map(|a| a.port());
    let pbx_cfg = pbx_config(&cfg, &contact_host, tls_port, rand::rng().next_u64());
    let metrics = std::sync::Arc::new(web::Metrics::new());
    let live = std::sync::Arc::new(web::Live::new());
    live.update(|b| b.configure(cc.boards.clone(), board_agents(&cfg)));
    if let Some(storage) = &cfg.storage {
        let db = storage.location.clone();
        let live = live.clone();
        off_the_workers(move || refill_board(&db, &live)).await;
    }
    // Voicemail messages the store keeps, for call control's index.
    let messages = match (&cfg.storage, &cc.voicemail) {
        (Some(storage), Some(_)) => {
            let db = storage.location.clone();
            let root = cc.recording.dir.clone();
            off_the_workers(move || crate::storage::load_messages(&db, &root)).await
        }
        _ => Vec::new(),
    };
    let callbacks = match &cfg.storage {
        Some(storage) => {
            let db = storage.location.clone();
            off_the_workers(move || crate::storage::load_callbacks(&db)).await
        }
        None => Vec::new(),
    };
    let inbox = std::sync::Arc::new(std::sync::OnceLock::new());
    let (events, storage) = crate::storage::start(
        cfg.storage.as_ref(),
        metrics.clone(),
        live.clone(),
        crate::storage::Voicemail {
            root: cc.recording.dir.clone(),
            inbox: inbox.clone(),
        },
    )?;
    let sink = events.clone();
    let recorder = start_recorder(&cc.recording, &sink)?;
    let events = Some(events);
    let mut pbx = pbx::service::start(
        pbx_cfg,
        cc.media.clone(),
        recorder.clone(),
        &handle,
        events_rx,
        events,
        pbx::service::Kept {
            messages,
            callbacks,
        },
    )?;
    let _ = inbox.set(pbx.voicemail_inbox());
    info!(
        via = %ep_cfg.via_host,
        users = cfg.users.len(),
        queues = cc.queues.len(),
        agents = cc.agents.len(),
        rtp = %format!("{}:{}-{}", cc.media.advertise, cc.media.port_min, cc.media.port_max),
        max_transactions = ep_cfg.max_transactions,
        "switchboard started"
    );
    let mut http = None;
    let mut app = None;
    if let Some(h) = &cfg.http {
        let bind = h.bind;
        let listener = http_listener(bind)
            .map_err(|e| anyhow::anyhow!("cannot listen for HTTP on {bind}: {e}"))?;
        let addr = listener.local_addr()?;
        info!(
            url = %format!("http://{addr}/wallboard"),
            metrics = %format!("http://{addr}/metrics"),
            logins = cfg.logins.len(),
            "web side served"
        );
        if !h.secure_cookies && !bind.ip().is_loopback() {
            warn!("[http] secure_cookies = false on a non-loopback address: session cookies can be read off the network");
        }
        let sampler = sampler(&handle, &pbx, recorder.clone(), &storage, &sink);
        let web_app = web::App::new(
            web::WebConfig {
                database: cfg.storage.as_ref().map(|s| s.location.clone()),
                recordings: Some(cc.recording.dir.clone()),
                secure_cookies: h.secure_cookies,
                logins: web::auth::Logins::new(cfg.logins.clone()),
                phones: phones(&cfg, &handle),
            },
            metrics,
            sampler,
            live.clone(),
            agent_control(pbx.agent_requests()),
        );
        app = Some(web_app.clone());
        let live = live.clone();
        http = Some(tokio::spawn(async move {
            if let Err(e) = web::serve(listener, web_app, live).await {
                tracing::error!(error = %e, "HTTP server stopped");
            }
        }));
    }
    // One line on stdout that scripts and tests can wait for, once everything is up: call
    // control, the ACD and storage as well as the sockets (a phone that registers after it
    // finds its agent logged in).
    println!(
        "switchboard: SIP listening on udp {} tcp {} (realm {}, {} users)",
        handle
            .udp_addr
            .map_or_else(|| "-".to_owned(), |a| a.to_string()),
        handle
            .tcp_addr
            .map_or_else(|| "-".to_owned(), |a| a.to_string()),
        cfg.realm,
        cfg.users.len()
    );
    // A test-only fault: the call-control task panics right after start.
    if std::env::var("SWITCHBOARD_FAULT").as_deref() == Ok("call-control") {
        warn!("SWITCHBOARD_FAULT=call-control: making the call-control task panic");
        pbx.inject_fault();
    }
    let mut task = task;
    let triggers = Triggers {
        changes,
        hup,
        shutdown,
        _watcher: watcher,
    };
    let tasks = Tasks {
        pbx: &mut pbx,
        sip: &mut task,
        live: live.clone(),
        app,
    };
    if let Err(stopped) =
        run_until_shutdown(cfg, reload, triggers, &contact_host, &handle, tasks).await
    {
        // Nobody can take or end calls any more: stop, and let the service manager start
        // the server again. Recordings are finished first.
        error!(task = stopped.task, reason = %stopped.reason, "a service task stopped: exiting");
        if let Some(r) = &recorder {
            r.shutdown().await;
        }
        anyhow::bail!("{stopped}; exiting so that the server is restarted");
    }
    info!("shutting down");
    // Calls first (their BYEs go out through the SIP task), then the SIP task.
    pbx.shutdown().await;
    if let Some(h) = http {
        h.abort();
    }
    // The recorder finishes its recordings and tells storage of each; its thread holds a
    // sender of the storage queue until it ends, so it stops before storage is waited for.
    if let Some(r) = &recorder {
        r.shutdown().await;
    }
    drop(recorder);
    // Call control, the ACD and the recorder are gone, and with them the last senders: the
    // storage thread writes what is left and ends.
    drop(sink);
    storage.finish().await;
    // The counters are read while the SIP task still answers (after it ends, nobody does).
    if let Some(s) = handle.stats().await {
        info!(?s, "final counters");
    }
    handle.shutdown().await;
    let _ = task.await;
    Ok(())
}

/// The HTTP listener, with room in its accept queue for every wallboard of a floor that
/// reconnects at once after a restart (the default of 128 overflowed at 200).
fn http_listener(bind: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if bind.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(bind)?;
    socket.listen(4096)
}

/// After a restart the live board counts today's calls (UTC) from the call records again.
fn refill_board(db: &store::Location, live: &web::Live) {
    if let store::Location::Sqlite(path) = db {
        if !path.exists() {
            return;
        }
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let midnight = now - now.rem_euclid(store::report::DAY_MS);
    let rows = match db.open_read_only().and_then(|s| s.ended_since(midnight)) {
        Ok(rows) => rows,
        Err(e) => {
            warn!(error = %e, "the wallboard starts without today's calls");
            return;
        }
    };
    let at = |ms: i64| std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    let dur = |ms: i64| std::time::Duration::from_millis(ms.max(0) as u64);
    live.update(|b| {
        for r in &rows {
            b.call_ended(
                at(r.ended_ms),
                &web::live::EndedCall {
                    call: r.call_id,
                    queue: r.queue.clone(),
                    overflowed_from: r.overflowed_from.clone(),
                    agent: r.agent.clone(),
                    outcome: r.outcome.clone(),
                    wait: dur(r.wait_ms),
                    handle: dur(r.handle_ms),
                },
            );
        }
    });
    info!(calls = rows.len(), "the wallboard counts today's calls");
}

/// The agents on the wallboard, each with the queues it serves.
/// Each agent's SIP account for the agent page (its browser phone), and where SIP over
/// WebSocket is.
fn phones(cfg: &Config, sip: &pbx::sip_transport::SipHandle) -> web::Phones {
    let accounts = cfg
        .callcenter
        .agents
        .iter()
        .filter_map(|a| {
            let acct = cfg.users.get(&a.user)?;
            let (password, ha1) = match &acct.secret {
                pbx::sip::digest::UserSecret::Password(p) => (Some(p.clone()), None),
                pbx::sip::digest::UserSecret::Ha1 { md5, .. } => (None, md5.clone()),
            };
            Some((
                a.acd.name.clone(),
                web::PhoneAccount {
                    user: a.user.clone(),
                    password,
                    ha1,
                    display_name: a.acd.name.clone(),
                },
            ))
        })
        .collect();
    let http = cfg.http.as_ref();
    web::Phones {
        ws_port: sip.ws_addr.map(|a| a.port()),
        wss_port: sip.wss_addr.map(|a| a.port()),
        ws_url: http.and_then(|h| h.sip_ws_url.clone()),
        realm: cfg.realm.clone(),
        domain: cfg
            .domains
            .first()
            .cloned()
            .unwrap_or_else(|| cfg.realm.clone()),
        crm_url: http.and_then(|h| h.crm_url.clone()),
        accounts,
    }
}

fn board_agents(cfg: &Config) -> Vec<(String, Vec<String>)> {
    cfg.callcenter
        .agents
        .iter()
        .map(|a| {
            let queues = a.acd.queues.iter().map(|m| m.queue.clone()).collect();
            (a.acd.name.clone(), queues)
        })
        .collect()
}

/// Carries a supervisor's (or an agent's) state request from the web side to call control.
fn agent_control(pbx: pbx::service::AgentRequests) -> web::AgentControl {
    std::sync::Arc::new(move |change: web::AgentChange| {
        let pbx = pbx.clone();
        Box::pin(async move {
            if let Some(m) = &change.monitor {
                let mode = match m.mode {
                    web::MonitorKind::Listen => pbx::media::relay::MonitorMode::Listen,
                    web::MonitorKind::Whisper => pbx::media::relay::MonitorMode::Whisper,
                    web::MonitorKind::Barge => pbx::media::relay::MonitorMode::Barge,
                };
                info!(agent = %change.agent, by = %change.by, phone = %m.phone, ?mode, "monitoring asked from the web");
                return pbx
                    .ask(
                        &change.agent,
                        pbx::AgentRequest::Monitor(m.phone.clone(), mode),
                    )
                    .await;
            }
            let want = match change.state {
                web::RequestedState::Ready => pbx::AgentRequest::Ready,
                web::RequestedState::Paused => {
                    pbx::AgentRequest::Pause(change.reason.clone().unwrap_or_default())
                }
                web::RequestedState::LoggedOut => pbx::AgentRequest::LogOut,
            };
            info!(agent = %change.agent, by = %change.by, state = ?change.state, reason = ?change.reason, "agent state changed from the web");
            pbx.ask(&change.agent, want).await
        })
    })
}

/// A repaired recording that is a voicemail message (its sidecar names a mailbox), as the
/// recorder would have reported it.
fn repaired_message(
    root: &std::path::Path,
    wav: &std::path::Path,
) -> Option<pbx::recorder::service::FinishedRecording> {
    let sidecar: pbx::recorder::file::Sidecar =
        serde_json::from_slice(&std::fs::read(wav.with_extension("json")).ok()?).ok()?;
    let mailbox = sidecar.mailbox.clone()?;
    let meta = std::fs::metadata(wav).ok()?;
    Some(pbx::recorder::service::FinishedRecording {
        call: sidecar.call_id,
        file: wav.strip_prefix(root).unwrap_or(wav).to_owned(),
        sha256: sidecar.sha256.clone().unwrap_or_default(),
        bytes: meta.len(),
        duration: std::time::Duration::from_secs_f64(sidecar.duration.max(0.0)),
        finished: meta
            .modified()
            .unwrap_or_else(|_| std::time::SystemTime::now()),
        mailbox: Some((mailbox, sidecar.caller)),
    })
}

/// Finish what a crash left unfinished, then start the recorder thread (only when some
/// queue records); every finished recording goes to storage.
fn start_recorder(
    cfg: &pbx::recorder::service::RecorderConfig,
    sink: &pbx::service::EventSink,
) -> anyhow::Result<Option<pbx::recorder::service::Recorder>> {
    if cfg.dir.exists() {
        let (repaired, failed) = pbx::recorder::file::repair(&cfg.dir);
        for p in &repaired {
            tracing::warn!(path = %p.display(), "repaired a recording left unfinished by a crash");
            // A voicemail message cut off by the crash is still a message: stored like one.
            if let Some(f) = repaired_message(&cfg.dir, p) {
                sink.send(pbx::service::PbxEvent::Recording(f));
            }
        }
        for e in &failed {
            tracing::warn!(error = %e, "could not repair a recording");
        }
    }
    let sink = sink.clone();
    let r = pbx::recorder::service::Recorder::start_notifying(
        cfg.clone(),
        Some(std::sync::Arc::new(move |f| {
            sink.send(pbx::service::PbxEvent::Recording(f));
        })),
    )?;
    info!(dir = %cfg.dir.display(), "recorder ready");
    Ok(Some(r))
}

/// Serve until SIGINT/SIGTERM, reloading the config on SIGHUP and when a file of the config
/// directory changes (after 300 ms without further changes, so an editor's save is one
/// reload). An invalid config is reported and the running one kept.
/// What makes the server reload.
struct Triggers {
    changes: mpsc::Receiver<()>,
    #[cfg(unix)]
    hup: Option<tokio::signal::unix::Signal>,
    #[cfg(not(unix))]
    hup: Option<()>,
    shutdown: ShutdownSignals,
    _watcher: Option<notify::RecommendedWatcher>,
}

/// The service tasks the server watches.
struct Tasks<'a> {
    pbx: &'a mut pbx::service::PbxHandle,
    sip: &'a mut tokio::task::JoinHandle<()>,
    /// The live board (its queues and agents follow reloads).
    live: std::sync::Arc<web::Live>,
    /// The web side (its logins follow reloads).
    app: Option<std::sync::Arc<web::App>>,
}

async fn run_until_shutdown(
    mut cfg: Config,
    reload: Reload,
    triggers: Triggers,
    contact_host: &str,
    sip: &pbx::sip_transport::SipHandle,
    tasks: Tasks<'_>,
) -> Result<(), pbx::service::TaskStopped> {
    let Tasks {
        pbx,
        sip: sip_task,
        live,
        app,
    } = tasks;
    let Triggers {
        mut changes,
        #[allow(unused_mut)]
        mut hup,
        shutdown,
        _watcher,
    } = triggers;
    let shutdown = shutdown.recv();
    tokio::pin!(shutdown);
    loop {
        #[cfg(unix)]
        let hup_recv = async {
            match hup.as_mut() {
                Some(h) => h.recv().await,
                None => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let hup_recv = {
            let _ = &mut hup;
            std::future::pending::<Option<()>>()
        };
        let why = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            stopped = pbx.stopped() => return Err(stopped),
            r = &mut *sip_task => {
                return Err(pbx::service::TaskStopped::from_join("SIP transport", r));
            }
            _ = hup_recv => "SIGHUP",
            Some(()) = changes.recv() => {
                // Settle: an editor writes, renames, and touches several files at once.
                let settle = std::time::Duration::from_millis(300);
                while let Ok(Some(())) = tokio::time::timeout(settle, changes.recv()).await {}
                "file change"
            }
        };
        // Reading the files and decoding the prompts blocks: not on an async worker.
        let (dir, sip_bind) = (reload.dir.clone(), reload.sip_bind.clone());
        let loaded = off_the_workers(move || config::load(&dir, sip_bind.as_deref())).await;
        match loaded {
            Err(errors) => {
                let lines: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
                for l in &lines {
                    tracing::warn!(error = %l, "config error");
                }
                tracing::error!(
                    trigger = why,
                    errors = lines.len(),
                    "config reload failed: the previous configuration keeps running"
                );
                write_status(&cfg, false, lines).await;
            }
            Ok(new) => {
                for what in needs_restart(&cfg, &new) {
                    tracing::warn!(setting = what, "changed; takes effect at the next start");
                }
                let _ = sip
                    .command(pbx::sip_transport::SipCommand::SetUsers(new.users.clone()))
                    .await;
                let _ = sip
                    .command(pbx::sip_transport::SipCommand::SetCallAuth(
                        CallAuthConfig {
                            trunks: new.callcenter.trunks.clone(),
                            challenge: new.callcenter.challenge,
                        },
                    ))
                    .await;
                pbx.reload(pbx_config(&new, contact_host, None, 0)).await;
                live.update(|b| b.configure(new.callcenter.boards.clone(), board_agents(&new)));
                if let Some(app) = &app {
                    app.set_logins(web::auth::Logins::new(new.logins.clone()));
                    app.set_phones(phones(&new, sip));
                }
                info!(
                    trigger = why,
                    users = new.users.len(),
                    queues = new.callcenter.queues.len(),
                    agents = new.callcenter.agents.len(),
                    "config reloaded"
                );
                log_warnings(&new);
                write_status(&new, true, Vec::new()).await;
                cfg = new;
            }
        }
    }
}

/// Watch the config directory; every change sends a tick. `None` (logged) if the platform
/// cannot watch: SIGHUP still reloads.
fn watch(dir: &std::path::Path, tx: mpsc::Sender<()>) -> Option<notify::RecommendedWatcher> {
    use notify::{EventKind, RecursiveMode, Watcher};
    let handler = move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res {
            // Only config files and prompts: nothing the server writes itself.
            let relevant = ev.paths.iter().any(|p| {
                matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("toml") | Some("wav")
                )
            });
            if relevant
                && matches!(
                    ev.kind,
                    EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_)
                )
            {
                let _ = tx.try_send(());
            }
        }
    };
    match notify::recommended_watcher(handler) {
        Ok(mut w) => match w.watch(dir, RecursiveMode::Recursive) {
            Ok(()) => Some(w),
            Err(e) => {
                tracing::warn!(error = %e, dir = %dir.display(), "cannot watch the config directory; reload with SIGHUP");
                None
            }
        },
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch the config directory; reload with SIGHUP");
            None
        }
    }
}

/// SIGTERM and SIGINT, listened for from start-up on.
struct ShutdownSignals {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    int: Option<tokio::signal::unix::Signal>,
}

impl ShutdownSignals {
    fn install() -> ShutdownSignals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            ShutdownSignals {
                term: signal(SignalKind::terminate()).ok(),
                int: signal(SignalKind::interrupt()).ok(),
            }
        }
        #[cfg(not(unix))]
        ShutdownSignals {}
    }

    /// The first of them.
    async fn recv(self) {
        #[cfg(unix)]
        {
            let ShutdownSignals { term, int } = self;
            async fn one(s: Option<tokio::signal::unix::Signal>) {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending().await,
                }
            }
            if term.is_none() && int.is_none() {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
            tokio::select! {
                _ = one(term) => {}
                _ = one(int) => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// What `/metrics` samples at each scrape: the SIP task's counters (asked over its command
/// queue), the relay's, the recorder's and storage's atomics.
fn sampler(
    sip: &pbx::sip_transport::SipHandle,
    pbx: &pbx::service::PbxHandle,
    recorder: Option<pbx::recorder::service::Recorder>,
    storage: &crate::storage::StorageHandle,
    sink: &pbx::service::EventSink,
) -> web::Sampler {
    use std::sync::atomic::Ordering::Relaxed;
    let sip = sip.clone();
    let relay = pbx.relay.clone();
    let pending = storage.pending.clone();
    let spill = storage.spill.clone();
    let dropped = sink.dropped_count();
    std::sync::Arc::new(move || {
        let sip = sip.clone();
        let relay = relay.clone();
        let recorder = recorder.clone();
        let pending = pending.clone();
        let spill = spill.clone();
        let dropped = dropped.clone();
        Box::pin(async move {
            let t = sip.stats().await;
            let r = relay.stats();
            web::Sample {
                registrations: t.map_or(0, |t| t.bindings as u64),
                sip_transactions: t.map_or(0, |t| t.transactions as u64),
                sip_received: t.map_or(0, |t| t.endpoint.received),
                calls_shed: t.map_or(0, |t| t.calls_shed),
                datagrams_shed: t.map_or(0, |t| t.datagrams_shed),
                media_sessions: r.sessions.load(Relaxed),
                relay_received: r.received.load(Relaxed),
                relay_forwarded: r.forwarded.load(Relaxed),
                relay_strangers: r.dropped_strangers.load(Relaxed),
                recordings_active: recorder
                    .as_ref()
                    .map_or(0, |r| r.stats().active.load(Relaxed)),
                recording_frames_dropped: r.tap_dropped.load(Relaxed),
                storage_pending: pending.load(Relaxed),
                storage_dropped: dropped.load(Relaxed),
                storage_spilled: spill.spilled.load(Relaxed),
                storage_spill_written: spill.written.load(Relaxed),
                storage_spill_dropped: spill.dropped.load(Relaxed),
            }
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocking_work_runs_off_the_async_workers_and_its_panic_is_the_callers() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let worker = std::thread::current().id();
        let ran_on = rt.block_on(off_the_workers(|| std::thread::current().id()));
        assert_ne!(ran_on, worker, "the blocking work ran on the async worker");
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            rt.block_on(off_the_workers(|| -> () {
                panic!("a config file that makes load panic")
            }))
        }));
        let payload = panicked.expect_err("the panic reaches the caller");
        assert_eq!(
            payload.downcast_ref::<&str>(),
            Some(&"a config file that makes load panic")
        );
    }
}
