//! `switchboard serve`: load the config, start the SIP transport, run until SIGINT/SIGTERM.

use std::process::ExitCode;
use std::time::Instant;

use rand::RngCore;
use sip::endpoint::CallAuthConfig;
use sip::{Endpoint, EndpointConfig};
use sip_transport::TransportConfig;
use tokio::sync::mpsc;
use tracing::{error, info};

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
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
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
    match rt.block_on(serve(cfg)) {
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
            tracing::warn!(
                "sip.advertise is not set and sip.bind is a wildcard: requests we send carry \
                 127.0.0.1 in Via and rely on phones honouring rport; set sip.advertise"
            );
            format!("127.0.0.1:{}", cfg.sip_bind.port())
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
        timers: sip::transaction::TimerConfig {
            timer_j: cfg.timer_j,
            ..Default::default()
        },
        secret,
        seed: rand::rng().next_u64(),
        ..EndpointConfig::default()
    }
}

async fn serve(cfg: Config) -> anyhow::Result<()> {
    let ep_cfg = endpoint_config(&cfg);
    let endpoint = Endpoint::new(ep_cfg.clone(), cfg.users.clone(), Instant::now());
    let tcfg = TransportConfig {
        udp: cfg.udp.then_some(cfg.sip_bind),
        tcp: cfg.tcp.then_some(cfg.sip_bind),
        udp_recv_buffer: cfg.udp_recv_buffer,
        max_message_size: cfg.max_message_size,
        ..TransportConfig::default()
    };
    let (events_tx, events_rx) = mpsc::channel(4096);
    let (handle, task) = sip_transport::start(endpoint, tcfg, events_tx).await?;
    // One line on stdout that scripts and tests can wait for.
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
    let cc = &cfg.callcenter;
    let pbx_cfg = pbx::PbxConfig {
        contact_host: ep_cfg.via_host.clone(),
        queues: cc.queues.clone(),
        agents: cc.agents.clone(),
        trunks: cc.trunk_rules.clone(),
        extensions: cc.extensions,
        extension_ring_timeout: cc.ring_timeout,
        features: cc.features.clone(),
        announcements: cc.announcements.clone(),
        seed: rand::rng().next_u64(),
        recording_seed: cc.recording_seed,
        recording_pause_key: cc.recording_pause_key.clone(),
    };
    let recorder = start_recorder(&cc.recording)?;
    let pbx = pbx::service::start(
        pbx_cfg,
        cc.media.clone(),
        recorder.clone(),
        &handle,
        events_rx,
    )?;
    info!(
        via = %ep_cfg.via_host,
        users = cfg.users.len(),
        queues = cc.queues.len(),
        agents = cc.agents.len(),
        rtp = %format!("{}:{}-{}", cc.media.advertise, cc.media.port_min, cc.media.port_max),
        "switchboard started"
    );
    shutdown_signal().await;
    info!("shutting down");
    // Calls first (their BYEs go out through the SIP task), then the SIP task.
    pbx.shutdown().await;
    if let Some(r) = &recorder {
        r.shutdown().await;
    }
    handle.shutdown().await;
    let _ = task.await;
    if let Some(s) = handle.stats().await {
        info!(?s, "final counters");
    }
    Ok(())
}

/// Finish what a crash left unfinished, then start the recorder thread (only when some
/// queue records).
fn start_recorder(
    cfg: &recorder::service::RecorderConfig,
) -> anyhow::Result<Option<recorder::service::Recorder>> {
    if cfg.dir.exists() {
        let (repaired, failed) = recorder::file::repair(&cfg.dir);
        for p in &repaired {
            tracing::warn!(path = %p.display(), "repaired a recording left unfinished by a crash");
        }
        for e in &failed {
            tracing::warn!(error = %e, "could not repair a recording");
        }
    }
    let r = recorder::service::Recorder::start(cfg.clone())?;
    info!(dir = %cfg.dir.display(), "recorder ready");
    Ok(Some(r))
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
