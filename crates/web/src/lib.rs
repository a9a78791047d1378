//! Switchboard's web side: the live wallboard, the quality-review pages, the JSON API with
//! server-sent events, and Prometheus metrics, served by axum.
//!
//! - [`live`]: the live board supervisors watch (sans-IO [`live::Board`], shared as
//!   [`live::Live`]).
//! - [`auth`]: logins with roles, sessions, CSRF tokens, limits on guessing.
//! - [`api`]: the routes and who may use each.
//! - [`metrics`]: `/metrics`. Labels never carry an agent's or a caller's identity.
//!
//! ```text
//! let live = Arc::new(Live::new());                 // fed by the storage thread
//! let app = App::new(web_config, metrics, sampler, live, agent_control);
//! tokio::spawn(web::serve(listener, app));
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod api;
pub mod auth;
pub mod live;
pub mod metrics;

pub use api::{
    AgentChange, AgentControl, App, MonitorAsk, MonitorKind, PhoneAccount, Phones, RequestedState,
    WebConfig,
};
pub use live::Live;
pub use metrics::{Metrics, Sample, Sampler};

use std::net::SocketAddr;
use std::sync::Arc;

/// Serve every route on `listener` (and publish the live board) until the task is dropped.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Arc<App>,
    live: Arc<Live>,
) -> std::io::Result<()> {
    let publisher = tokio::spawn(live.publish_changes());
    let r = axum::serve(
        listener,
        api::router(app).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await;
    publisher.abort();
    r
}
