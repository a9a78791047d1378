//! `switchboard serve`: load the config, start the SIP transport, run until SIGINT/SIGTERM.

use std::process::ExitCode;
use std::time::Instant;

use bytes::Bytes;
use rand::RngCore;
use sip::message::{Headers, Method};
use sip::{Endpoint, EndpointConfig, SipEvent};
use sip_transport::{SipCommand, SipHandle, TransportConfig};
use tokio::sync::mpsc;
use tracing::{debug, error, info};

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
        max_message_size: cfg.max_message_size,
        force_rport: cfg.force_rport,
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
    info!(via = %ep_cfg.via_host, users = cfg.users.len(), "switchboard started");
    let control = tokio::spawn(call_control(handle.clone(), events_rx));
    shutdown_signal().await;
    info!("shutting down");
    handle.shutdown().await;
    let _ = task.await;
    control.abort();
    if let Some(s) = handle.stats().await {
        info!(?s, "final counters");
    }
    Ok(())
}

/// Call control until the dial plan exists: nothing is routable yet, so requests outside
/// the registrar get a clear final answer instead of silence.
async fn call_control(handle: SipHandle, mut events: mpsc::Receiver<SipEvent>) {
    while let Some(ev) = events.recv().await {
        match ev {
            SipEvent::Request { tx, request, .. } => {
                let status = match request.method {
                    Method::Invite => 404,
                    _ => 481,
                };
                debug!(tx = tx.0, method = %request.method, status, "no route");
                handle
                    .command(SipCommand::Respond {
                        tx,
                        status,
                        to_tag: None,
                        headers: Headers::default(),
                        body: Bytes::new(),
                    })
                    .await;
            }
            SipEvent::Binding(change) => debug!(?change, "binding changed"),
            SipEvent::Banned { ip } => info!(source = %ip, "source banned"),
            _ => {}
        }
    }
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
