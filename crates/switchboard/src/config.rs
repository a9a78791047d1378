//! Config files: `switchboard.toml` (server) and `users.toml` (SIP accounts); the
//! call-center files are in [`crate::callcenter`].
//!
//! Each file is parsed into structs that reject unknown keys; then one function per table
//! (`sip_table`, `registrar_table`, …, `user`) checks it and returns its typed settings,
//! reporting every problem as `file:line: key: reason` (lines from the TOML parser's spans,
//! see [`source`]). A file that does not parse is one error, and nothing is checked against it.

mod source;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use pbx::sip::digest::{Algorithm, UserSecret};
use pbx::sip::endpoint::{AuthConfig, RateLimit, SecurityConfig};
use pbx::sip::registrar::RegistrarConfig;
use pbx::sip::UserAccount;
use serde::Deserialize;

pub(crate) use source::{Findings, KeyPath, Presence, Report, TomlFile};

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConfigError {
    /// The file.
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// Dotted key path, when known.
    pub key: Option<String>,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
        }
        if let Some(k) = &self.key {
            write!(f, ": {k}")?;
        }
        write!(f, ": {}", self.reason)
    }
}

/// All problems found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ServerFile {
    #[serde(default)]
    sip: SipSection,
    #[serde(default)]
    registrar: RegistrarSection,
    #[serde(default)]
    auth: AuthSection,
    #[serde(default)]
    security: SecuritySection,
    #[serde(default)]
    log: LogSection,
    #[serde(default)]
    media: crate::callcenter::MediaSection,
    #[serde(default)]
    calls: crate::callcenter::CallsSection,
    #[serde(default)]
    trunks: std::collections::BTreeMap<String, crate::callcenter::TrunkSection>,
    #[serde(default)]
    recording: crate::callcenter::RecordingSection,
    #[serde(default)]
    storage: StorageSection,
    #[serde(default)]
    http: HttpSection,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct HttpSection {
    bind: Option<String>,
    secure_cookies: Option<bool>,
    crm_url: Option<String>,
    sip_ws_url: Option<String>,
}

/// `[http]`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Http {
    /// Where the wallboard, the API and `/metrics` are served.
    pub bind: SocketAddr,
    /// Session cookies carry `Secure` (on unless turned off).
    pub secure_cookies: bool,
    /// The agent page's link beside an incoming call (`{number}`, `{call}` replaced).
    pub crm_url: Option<String>,
    /// The URL browsers open for SIP over WebSocket, when not derived from `[sip] ws`.
    pub sip_ws_url: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct StorageSection {
    enabled: bool,
    database: Option<PathBuf>,
    /// PostgreSQL instead of the SQLite file.
    url: Option<String>,
    queue_log: Option<PathBuf>,
}

impl Default for StorageSection {
    fn default() -> Self {
        StorageSection {
            enabled: true,
            database: None,
            url: None,
            queue_log: None,
        }
    }
}

/// Where call records and the queue log go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Storage {
    /// The database: the SQLite file, or the PostgreSQL server when `url` is given.
    pub location: store::Location,
    /// Where records wait while the database refuses them (beside the SQLite file; in the
    /// data directory for PostgreSQL).
    pub spill: PathBuf,
    /// The queue log (Asterisk `queue_log` format).
    pub queue_log: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct SipSection {
    bind: String,
    tcp: bool,
    udp: bool,
    realm: String,
    domains: Vec<String>,
    advertise: Option<String>,
    udp_recv_buffer: usize,
    max_message_size: usize,
    force_rport: bool,
    timer_j: Option<u64>,
    tcp_idle_timeout: u64,
    max_tcp_connections: usize,
    max_tcp_per_source: usize,
    max_transactions: Option<usize>,
    ws: Option<String>,
    tls: Option<String>,
    wss: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
}

impl Default for SipSection {
    fn default() -> Self {
        SipSection {
            bind: "0.0.0.0:5060".into(),
            tcp: true,
            udp: true,
            realm: "switchboard".into(),
            domains: Vec::new(),
            advertise: None,
            udp_recv_buffer: 4 << 20,
            max_message_size: pbx::sip::parse::DEFAULT_MAX_MESSAGE_SIZE,
            force_rport: true,
            timer_j: None,
            tcp_idle_timeout: 60,
            max_tcp_connections: 10_000,
            max_tcp_per_source: 100,
            max_transactions: None,
            ws: None,
            tls: None,
            wss: None,
            tls_cert: None,
            tls_key: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RegistrarSection {
    min_expires: u32,
    max_expires: u32,
    default_expires: u32,
    max_contacts: usize,
    qualify_interval: u64,
    persist: bool,
    store: Option<String>,
}

impl Default for RegistrarSection {
    fn default() -> Self {
        let d = RegistrarConfig::default();
        RegistrarSection {
            min_expires: d.min_expires,
            max_expires: d.max_expires,
            default_expires: d.default_expires,
            max_contacts: d.max_contacts,
            qualify_interval: d.qualify_interval.map_or(0, |i| i.as_secs()),
            persist: true,
            store: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct AuthSection {
    algorithms: Vec<String>,
    nonce_lifetime: u64,
    allow_no_qop: bool,
    secret: Option<String>,
}

impl Default for AuthSection {
    fn default() -> Self {
        AuthSection {
            algorithms: vec!["MD5".into()],
            nonce_lifetime: 300,
            allow_no_qop: true,
            secret: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct SecuritySection {
    max_auth_failures: u32,
    failure_window: u64,
    ban_duration: u64,
    rate_limit: u32,
    rate_burst: u32,
    trusted: Vec<String>,
    log_interval: u64,
}

impl Default for SecuritySection {
    fn default() -> Self {
        SecuritySection {
            max_auth_failures: 10,
            failure_window: 60,
            ban_duration: 600,
            rate_limit: 100,
            rate_burst: 200,
            trusted: Vec::new(),
            log_interval: 30,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct LogSection {
    level: String,
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection {
            level: "info".into(),
        }
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct UsersFile {
    #[serde(default)]
    users: HashMap<String, UserEntry>,
    #[serde(default)]
    logins: std::collections::BTreeMap<String, LoginEntry>,
}

/// `[logins.NAME]`: a web login.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginEntry {
    password_hash: String,
    roles: Vec<String>,
    agent: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserEntry {
    password: Option<String>,
    ha1_md5: Option<String>,
    ha1_sha256: Option<String>,
    algorithms: Option<Vec<String>>,
    max_contacts: Option<usize>,
    #[serde(default)]
    require_tls: bool,
}

/// The validated configuration the server runs on.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    /// SIP listen address (UDP and TCP).
    pub sip_bind: SocketAddr,
    /// UDP on.
    pub udp: bool,
    /// TCP on.
    pub tcp: bool,
    /// host:port for our Via, if configured.
    pub advertise: Option<String>,
    /// Requested UDP receive buffer.
    pub udp_recv_buffer: usize,
    /// Largest message.
    pub max_message_size: usize,
    /// Most live transactions, if configured (else sized from memory at start).
    pub max_transactions: Option<usize>,
    /// SIP over WebSocket listen address (browsers), if on.
    pub ws: Option<SocketAddr>,
    /// SIP over TLS listen address, if on.
    pub tls: Option<SocketAddr>,
    /// Secure WebSocket listen address, if on.
    pub wss: Option<SocketAddr>,
    /// The TLS certificate and key files.
    pub tls_files: Option<pbx::sip_transport::tls::TlsFiles>,
    /// Realm.
    pub realm: String,
    /// Registrar domains.
    pub domains: Vec<String>,
    /// Reply at the source port.
    pub force_rport: bool,
    /// Timer J override (seconds), if set.
    pub timer_j: Option<Duration>,
    /// TCP connections without a binding are closed after this long without traffic.
    pub tcp_idle_timeout: Duration,
    /// Most TCP connections at once.
    pub max_tcp_connections: usize,
    /// Most TCP connections from one source address (0 = no limit).
    pub max_tcp_per_source: usize,
    /// Where registrar bindings are kept across restarts: `registrar.store`, else
    /// `registrations.json` in the data directory (beside `recording.dir`); `None` when
    /// `registrar.persist` is off.
    pub binding_store: Option<PathBuf>,
    /// Registrar.
    pub registrar: RegistrarConfig,
    /// Digest.
    pub auth: AuthConfig,
    /// Server secret, if configured.
    pub secret: Option<[u8; 32]>,
    /// Protection.
    pub security: SecurityConfig,
    /// Log filter.
    pub log_level: String,
    /// Accounts.
    /// Call records and the queue log, unless `[storage] enabled = false`.
    pub storage: Option<Storage>,
    /// The web side (`[http]`), if it is served.
    pub http: Option<Http>,
    /// Web logins (`[logins.NAME]` of users.toml).
    pub logins: Vec<web::auth::Login>,
    pub users: HashMap<String, UserAccount>,
    /// Queues, agents, trunks, media.
    pub callcenter: crate::callcenter::CallCenter,
}

/// Environment overrides of `switchboard.toml`: dotted key path → the variable that set it.
pub(crate) type Overrides = std::collections::BTreeMap<String, String>;

/// The prefix of environment overrides: `SWITCHBOARD__<TABLE>__<KEY>=<value>` sets
/// `[table] key` of switchboard.toml (`SWITCHBOARD__MEDIA__ADVERTISE=203.0.113.10`,
/// `SWITCHBOARD__AUTH__ALGORITHMS='["SHA-256", "MD5"]'`). Values are TOML values; a value
/// that is not one is taken as a string.
pub(crate) const ENV_PREFIX: &str = "SWITCHBOARD__";

/// One environment override: the key path it sets, the variable, the value.
type Override = (Vec<String>, String, toml::Value);

/// Read the overrides from the environment.
fn env_overrides(vars: impl Iterator<Item = (String, String)>) -> Vec<Override> {
    let mut out: Vec<Override> = vars
        .filter_map(|(name, raw)| {
            let rest = name.strip_prefix(ENV_PREFIX)?;
            let path: Vec<String> = rest.split("__").map(|p| p.to_ascii_lowercase()).collect();
            if path.iter().any(String::is_empty) {
                return None;
            }
            let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
                .ok()
                .and_then(|mut t| t.remove("v"))
                .unwrap_or(toml::Value::String(raw));
            Some((path, name, value))
        })
        .collect();
    out.sort_by(|a, b| a.1.cmp(&b.1));
    out
}

/// Read and validate the config directory `dir`: `switchboard.toml` and `users.toml` here,
/// `queues.toml` and `agents.toml` in [`crate::callcenter`].
/// `sip_bind` overrides `sip.bind` (from the CLI flag or SWITCHBOARD_SIP_BIND).
pub(crate) fn load(dir: &Path, sip_bind: Option<&str>) -> Result<Config, ConfigErrors> {
    load_with_env(dir, sip_bind, std::env::vars())
}

/// [`load`] with the environment given (tests).
///
/// Every file is read and checked on its own; then what refers across files (agents to users
/// and queues, queues to skills and numbers) is checked against the files that loaded. A file
/// that does not parse is one error, and nothing is checked against it.
pub(crate) fn load_with_env(
    dir: &Path,
    sip_bind: Option<&str>,
    env: impl Iterator<Item = (String, String)>,
) -> Result<Config, ConfigErrors> {
    let overrides_list = env_overrides(env);
    let overrides: Overrides = overrides_list
        .iter()
        .map(|(p, var, _)| (p.join("."), var.clone()))
        .collect();
    let mut found = Findings::default();
    let server = server_file(
        dir.join("switchboard.toml"),
        &overrides_list,
        &mut found.errors,
    );
    let users_read = TomlFile::read::<UsersFile>(
        dir.join("users.toml"),
        Presence::Required,
        &mut found.errors,
    );

    let server = server.map(|(file, s)| {
        let mut r = Report::with_overrides(&file, &overrides, &mut found);
        let checked = Server {
            sip: sip_table(&mut r, &s.sip, sip_bind),
            registrar: registrar_table(&mut r, &s.registrar),
            auth: auth_table(&mut r, &s.auth),
            security: security_table(&mut r, &s.security),
            log_level: log_table(&mut r, &s.log),
            storage: storage_table(&mut r, &s.storage),
            http: http_table(&mut r, &s.http),
        };
        let tables = crate::callcenter::ServerTables {
            media: s.media,
            calls: s.calls,
            trunks: s.trunks,
            recording: s.recording,
        };
        (file, checked, tables)
    });
    let accounts = users_read.as_ref().map(|(file, u)| {
        let mut r = Report::new(file, &mut found);
        let algorithms = server
            .as_ref()
            .map(|s| s.1.auth.config.algorithms.as_slice());
        (users_file(&mut r, u, algorithms), logins(&mut r, u))
    });
    let (accounts, logins) = match accounts {
        Some((a, l)) => (Some(a), Some(l)),
        None => (None, None),
    };
    let user_names: Option<HashSet<String>> =
        accounts.as_ref().map(|a| a.keys().cloned().collect());
    let advertise_host = server
        .as_ref()
        .and_then(|s| s.1.sip.advertise.as_deref())
        .map(|a| a.rsplit_once(':').map_or(a, |(h, _)| h));
    let callcenter = crate::callcenter::build(
        dir,
        server
            .as_ref()
            .map(|(file, _, tables)| (file, &overrides, tables)),
        advertise_host,
        user_names.as_ref(),
        &mut found,
    );
    let (Some((server_toml, server, _)), Some(mut users), Some(mut callcenter), Some(logins)) =
        (server, accounts, callcenter, logins)
    else {
        return Err(ConfigErrors(found.errors));
    };
    // The accounts carriers authenticate their calls with sit beside the users' (and may
    // not be one of them).
    for (trunk, name, password) in &callcenter.trunk_accounts {
        if users.contains_key(name) {
            Report::new(&server_toml, &mut found).err(
                &KeyPath::top("trunks").key(trunk).key("inbound_username"),
                format!("\"{name}\" is also an account in users.toml: a carrier needs its own"),
            );
            continue;
        }
        users.insert(
            name.clone(),
            UserAccount {
                secret: UserSecret::Password(password.clone()),
                algorithms: None,
                max_contacts: None,
                require_tls: false,
            },
        );
    }
    // An agent login names an agent of agents.toml.
    if let Some((file, _)) = &users_read {
        let mut r = Report::new(file, &mut found);
        for l in &logins {
            if let Some(agent) = &l.agent {
                if !callcenter.agents.iter().any(|a| &a.acd.name == agent) {
                    r.err(
                        &KeyPath::top("logins").key(&l.name).key("agent"),
                        format!("\"{agent}\" is not an agent in agents.toml"),
                    );
                }
            }
        }
        if server.http.is_some() && logins.is_empty() {
            r.warn(
                &KeyPath::top("logins"),
                "the web side is served ([http] bind) but there are no logins: nobody can open the wallboard (add [logins.NAME], see switchboard passwd)",
            );
        }
    }
    // Voicemail messages live in the call records database.
    if callcenter.voicemail.is_some() && !server.storage.enabled {
        Report::new(&server_toml, &mut found).err(
            &KeyPath::top("storage").key("enabled"),
            "voicemail (voicemail.toml) keeps its messages in the call records: storage must be enabled",
        );
    }
    callcenter.warnings.append(&mut found.warnings);
    if !found.errors.is_empty() {
        return Err(ConfigErrors(found.errors));
    }
    let Server {
        sip,
        registrar,
        auth,
        security,
        log_level,
        storage,
        http,
    } = server;
    // Relative to the data directory (the parent of `recording.dir`), like the bindings.
    let data_dir = callcenter
        .recording
        .dir
        .parent()
        .unwrap_or(Path::new("."))
        .to_owned();
    let storage = storage.enabled.then(|| {
        let (location, spill) = match storage.url {
            Some(url) => (
                store::Location::Postgres(url),
                data_dir.join("postgresql.spill"),
            ),
            None => {
                let database = storage
                    .database
                    .unwrap_or_else(|| data_dir.join("switchboard.db"));
                let spill = crate::spill::path_for(&database);
                (store::Location::Sqlite(database), spill)
            }
        };
        Storage {
            location,
            spill,
            queue_log: storage
                .queue_log
                .unwrap_or_else(|| data_dir.join("queue_log")),
        }
    });
    Ok(Config {
        sip_bind: sip.bind,
        udp: sip.udp,
        tcp: sip.tcp,
        advertise: sip.advertise,
        udp_recv_buffer: sip.udp_recv_buffer,
        max_message_size: sip.max_message_size,
        max_transactions: sip.max_transactions,
        ws: sip.ws,
        tls: sip.tls,
        wss: sip.wss,
        tls_files: sip.tls_files,
        realm: sip.realm,
        domains: sip.domains,
        force_rport: sip.force_rport,
        timer_j: sip.timer_j,
        tcp_idle_timeout: sip.tcp_idle_timeout,
        max_tcp_connections: sip.max_tcp_connections,
        max_tcp_per_source: sip.max_tcp_per_source,
        binding_store: registrar.persist.then(|| match registrar.store {
            Some(p) => p,
            None => callcenter
                .recording
                .dir
                .parent()
                .unwrap_or(Path::new("."))
                .join("registrations.json"),
        }),
        registrar: registrar.config,
        auth: auth.config,
        secret: auth.secret,
        security,
        log_level,
        storage,
        http,
        logins,
        users,
        callcenter,
    })
}

/// switchboard.toml: the file alone first, so that its own mistakes are reported with their
/// lines, then with the environment overrides laid over it.
fn server_file(
    path: PathBuf,
    overrides: &[Override],
    errors: &mut Vec<ConfigError>,
) -> Option<(TomlFile, ServerFile)> {
    let (file, from_file) = TomlFile::read::<ServerFile>(path, Presence::Required, errors)?;
    if overrides.is_empty() {
        return Some((file, from_file));
    }
    let mut table = file.table();
    for (path, _, value) in overrides {
        let mut at = &mut table;
        for p in &path[..path.len() - 1] {
            let entry = at
                .entry(p.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if !entry.is_table() {
                *entry = toml::Value::Table(toml::Table::new());
            }
            let toml::Value::Table(next) = entry else {
                unreachable!()
            };
            at = next;
        }
        at.insert(path[path.len() - 1].clone(), value.clone());
    }
    match toml::Value::Table(table).try_into::<ServerFile>() {
        Ok(s) => Some((file, s)),
        Err(e) => {
            let vars: Vec<&str> = overrides.iter().map(|o| o.1.as_str()).collect();
            errors.push(ConfigError {
                file: PathBuf::from(format!("environment {}", vars.join(", "))),
                line: None,
                key: None,
                reason: e.message().to_owned(),
            });
            None
        }
    }
}

/// The server's own tables of switchboard.toml, checked.
struct Server {
    sip: Sip,
    registrar: Registrar,
    auth: Auth,
    security: SecurityConfig,
    log_level: String,
    storage: StorageSection,
    http: Option<Http>,
}

/// `[sip]`, checked.
struct Sip {
    bind: SocketAddr,
    udp: bool,
    tcp: bool,
    advertise: Option<String>,
    udp_recv_buffer: usize,
    max_message_size: usize,
    realm: String,
    domains: Vec<String>,
    force_rport: bool,
    timer_j: Option<Duration>,
    tcp_idle_timeout: Duration,
    max_tcp_connections: usize,
    max_tcp_per_source: usize,
    max_transactions: Option<usize>,
    ws: Option<SocketAddr>,
    tls: Option<SocketAddr>,
    wss: Option<SocketAddr>,
    tls_files: Option<pbx::sip_transport::tls::TlsFiles>,
}

/// `[sip]`. `bind_flag` (`--sip-bind` / SWITCHBOARD_SIP_BIND) wins over `sip.bind`.
fn sip_table(r: &mut Report<'_>, s: &SipSection, bind_flag: Option<&str>) -> Sip {
    let t = KeyPath::top("sip");
    let bind_text = bind_flag.unwrap_or(&s.bind);
    let bind = match bind_text.parse::<SocketAddr>() {
        Ok(a) => a,
        Err(_) => {
            let reason = format!("\"{bind_text}\" is not an address:port such as \"0.0.0.0:5060\"");
            if bind_flag.is_some() {
                r.push(ConfigError {
                    file: PathBuf::from("--sip-bind / SWITCHBOARD_SIP_BIND"),
                    line: None,
                    key: None,
                    reason,
                });
            } else {
                r.err(&t.key("bind"), reason);
            }
            SocketAddr::from(([0, 0, 0, 0], 5060))
        }
    };
    if !s.udp && !s.tcp {
        r.err(
            &t.key("udp"),
            "at least one of sip.udp and sip.tcp must be true",
        );
    }
    if s.realm.trim().is_empty() || s.realm.contains('"') {
        r.err(&t.key("realm"), "must be a non-empty string without quotes");
    }
    if s.max_message_size < 1500 || s.max_message_size > 65_535 {
        r.err(
            &t.key("max_message_size"),
            "must be between 1500 and 65535 octets",
        );
    }
    if s.timer_j.is_some_and(|j| !(1..=32).contains(&j)) {
        r.err(
            &t.key("timer_j"),
            "must be 1–32 seconds (32 = RFC 3261's 64×T1)",
        );
    }
    if let Some(a) = &s.advertise {
        if a.trim().is_empty() || a.contains(char::is_whitespace) {
            r.err(&t.key("advertise"), "must be host or host:port");
        }
    }
    if s.tcp_idle_timeout == 0 {
        r.err(&t.key("tcp_idle_timeout"), "must be at least 1 second");
    }
    if s.max_tcp_connections == 0 {
        r.err(&t.key("max_tcp_connections"), "must be at least 1");
    }
    let ws_bind = s.ws.as_deref().and_then(|w| match w.parse::<SocketAddr>() {
        Ok(a) if a.port() != 0 || bind.port() == 0 => Some(a),
        _ => {
            r.err(
                &t.key("ws"),
                format!("\"{w}\" is not an address:port such as \"0.0.0.0:8088\""),
            );
            None
        }
    });
    let listen_at = |r: &mut Report<'_>, key: &str, v: &Option<String>| {
        v.as_deref().and_then(|w| match w.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                r.err(
                    &t.key(key),
                    format!("\"{w}\" is not an address:port such as \"0.0.0.0:5061\""),
                );
                None
            }
        })
    };
    let tls_bind = listen_at(r, "tls", &s.tls);
    let wss_bind = listen_at(r, "wss", &s.wss);
    let tls_files = match (&s.tls_cert, &s.tls_key) {
        (Some(cert), Some(key)) => {
            let files = pbx::sip_transport::tls::TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            };
            // Read now: a wrong file is reported here, not by the first phone.
            if let Err(e) = pbx::sip_transport::tls::load(&files) {
                r.err(&t.key("tls_cert"), e.to_string());
            }
            Some(files)
        }
        (None, None) => None,
        _ => {
            r.err(&t.key("tls_cert"), "tls_cert and tls_key go together");
            None
        }
    };
    if (tls_bind.is_some() || wss_bind.is_some()) && tls_files.is_none() {
        r.err(
            &t.key("tls"),
            "sip.tls and sip.wss need tls_cert and tls_key (PEM files)",
        );
    }
    if s.max_transactions.is_some_and(|n| n < 100) {
        r.err(
            &t.key("max_transactions"),
            "must be at least 100 (about 4 kB each; leave it out to size it from memory)",
        );
    }
    Sip {
        bind,
        udp: s.udp,
        tcp: s.tcp,
        advertise: s.advertise.clone(),
        udp_recv_buffer: s.udp_recv_buffer,
        max_message_size: s.max_message_size,
        realm: s.realm.clone(),
        domains: s.domains.clone(),
        force_rport: s.force_rport,
        timer_j: s.timer_j.map(Duration::from_secs),
        tcp_idle_timeout: Duration::from_secs(s.tcp_idle_timeout),
        max_tcp_connections: s.max_tcp_connections,
        max_tcp_per_source: s.max_tcp_per_source,
        max_transactions: s.max_transactions,
        ws: ws_bind,
        tls: tls_bind,
        wss: wss_bind,
        tls_files,
    }
}

/// `[registrar]`, checked.
struct Registrar {
    config: RegistrarConfig,
    /// Keep bindings across restarts.
    persist: bool,
    /// Where (default: beside the recordings, decided once `[recording]` is known).
    store: Option<PathBuf>,
}

/// `[registrar]`.
fn registrar_table(r: &mut Report<'_>, reg: &RegistrarSection) -> Registrar {
    let t = KeyPath::top("registrar");
    if reg.min_expires == 0 {
        r.err(&t.key("min_expires"), "must be at least 1 second");
    }
    if reg.min_expires > reg.max_expires {
        r.err(
            &t.key("min_expires"),
            format!(
                "{} is above max_expires ({})",
                reg.min_expires, reg.max_expires
            ),
        );
    }
    if reg.default_expires < reg.min_expires || reg.default_expires > reg.max_expires {
        r.err(
            &t.key("default_expires"),
            "must lie between min_expires and max_expires",
        );
    }
    if reg.max_contacts == 0 {
        r.err(&t.key("max_contacts"), "must be at least 1");
    }
    if reg
        .store
        .as_deref()
        .is_some_and(|p| p.trim().is_empty() || p.ends_with('/'))
    {
        r.err(
            &t.key("store"),
            "must be a file path such as \"data/registrations.json\"",
        );
    }
    Registrar {
        config: RegistrarConfig {
            min_expires: reg.min_expires,
            max_expires: reg.max_expires,
            default_expires: reg.default_expires,
            max_contacts: reg.max_contacts,
            qualify_interval: (reg.qualify_interval > 0)
                .then(|| Duration::from_secs(reg.qualify_interval)),
        },
        persist: reg.persist,
        store: reg.store.as_ref().map(PathBuf::from),
    }
}

/// `[auth]`, checked.
struct Auth {
    config: AuthConfig,
    /// The nonce key, if configured.
    secret: Option<[u8; 32]>,
}

/// `[auth]`.
fn auth_table(r: &mut Report<'_>, a: &AuthSection) -> Auth {
    let t = KeyPath::top("auth");
    let algorithms = parse_algorithms(r, &t.key("algorithms"), &a.algorithms);
    if a.nonce_lifetime < 10 {
        r.err(&t.key("nonce_lifetime"), "must be at least 10 seconds");
    }
    let secret = match &a.secret {
        Some(s) => {
            let v = hex32(s);
            if v.is_none() {
                r.err(&t.key("secret"), "must be 64 hex digits (32 bytes)");
            }
            v
        }
        None => None,
    };
    Auth {
        config: AuthConfig {
            algorithms,
            nonce_lifetime: Duration::from_secs(a.nonce_lifetime),
            allow_no_qop: a.allow_no_qop,
        },
        secret,
    }
}

/// `[security]`.
fn security_table(r: &mut Report<'_>, s: &SecuritySection) -> SecurityConfig {
    let t = KeyPath::top("security");
    if s.log_interval == 0 {
        r.err(&t.key("log_interval"), "must be at least 1 second");
    }
    let mut trusted = Vec::new();
    for a in &s.trusted {
        match a.parse::<IpAddr>() {
            Ok(ip) => trusted.push(ip),
            Err(_) => r.err(&t.key("trusted"), format!("\"{a}\" is not an IP address")),
        }
    }
    if s.rate_limit > 0 && s.rate_burst == 0 {
        r.err(
            &t.key("rate_burst"),
            "must be at least 1 when rate_limit is on",
        );
    }
    SecurityConfig {
        max_auth_failures: s.max_auth_failures,
        failure_window: Duration::from_secs(s.failure_window),
        ban_duration: Duration::from_secs(s.ban_duration),
        rate_limit: (s.rate_limit > 0).then_some(RateLimit {
            per_second: s.rate_limit,
            burst: s.rate_burst,
        }),
        trusted,
        log_interval: Duration::from_secs(s.log_interval),
        ..SecurityConfig::default()
    }
}

/// `[log]`: the log filter.
/// `[http]`: where the web side is served, if anywhere.
fn http_table(r: &mut Report<'_>, h: &HttpSection) -> Option<Http> {
    let text = h.bind.as_deref()?;
    match text.parse::<SocketAddr>() {
        Ok(bind) => {
            let t = KeyPath::top("http");
            if let Some(u) = &h.crm_url {
                if !(u.starts_with("https://") || u.starts_with("http://")) {
                    r.err(
                        &t.key("crm_url"),
                        "must be an http:// or https:// URL ({number} and {call} are filled in)",
                    );
                }
            }
            if let Some(u) = &h.sip_ws_url {
                if !(u.starts_with("wss://") || u.starts_with("ws://")) {
                    r.err(&t.key("sip_ws_url"), "must be a ws:// or wss:// URL");
                }
            }
            Some(Http {
                bind,
                secure_cookies: h.secure_cookies.unwrap_or(true),
                crm_url: h.crm_url.clone(),
                sip_ws_url: h.sip_ws_url.clone(),
            })
        }
        Err(_) => {
            r.err(
                &KeyPath::top("http").key("bind"),
                format!("\"{text}\" is not an address:port such as \"127.0.0.1:8080\""),
            );
            None
        }
    }
}

/// `[storage]`.
fn storage_table(r: &mut Report<'_>, s: &StorageSection) -> StorageSection {
    let t = KeyPath::top("storage");
    for (key, p) in [("database", &s.database), ("queue_log", &s.queue_log)] {
        if p.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
            r.err(
                &t.key(key),
                "must be a file path (leave it out for the default)",
            );
        }
    }
    if let Some(url) = &s.url {
        if s.database.is_some() {
            r.err(
                &t.key("url"),
                "give either database (a SQLite file) or url (PostgreSQL), not both",
            );
        } else if url.trim().is_empty() {
            r.err(
                &t.key("url"),
                "must be a PostgreSQL URL such as \"postgres://switchboard@db.example/calls\" \
                 (leave it out for SQLite)",
            );
        } else if let Err(e) = store::Store::connect_later(url) {
            // Only the URL is read here (`check` does not connect); the error never repeats it.
            r.err(&t.key("url"), e.to_string());
        }
    }
    StorageSection {
        enabled: s.enabled,
        database: s.database.clone(),
        url: s.url.clone(),
        queue_log: s.queue_log.clone(),
    }
}

fn log_table(r: &mut Report<'_>, l: &LogSection) -> String {
    if tracing_subscriber::EnvFilter::try_new(&l.level).is_err() {
        r.err(
            &KeyPath::top("log").key("level"),
            "not a log filter such as \"info\" or \"sip=debug,info\"",
        );
    }
    l.level.clone()
}

/// users.toml. `algorithms` are those of `[auth]` (`None` when switchboard.toml did not
/// load: an account's hashes are then checked against its own `algorithms` only).
fn users_file(
    r: &mut Report<'_>,
    f: &UsersFile,
    algorithms: Option<&[Algorithm]>,
) -> HashMap<String, UserAccount> {
    let mut names: Vec<&String> = f.users.keys().collect();
    names.sort();
    names
        .into_iter()
        .map(|name| (name.clone(), user(r, name, &f.users[name], algorithms)))
        .collect()
}

/// users.toml `[logins.NAME]`: web logins, checked (a password must be a hash).
fn logins(r: &mut Report<'_>, f: &UsersFile) -> Vec<web::auth::Login> {
    use web::auth::{is_password_hash, Login, Role};
    f.logins
        .iter()
        .map(|(name, e)| {
            let t = KeyPath::top("logins").key(name);
            if name.is_empty() || name.len() > 64 || name.chars().any(char::is_whitespace) {
                r.err(&t, "a login name is 1-64 characters without spaces");
            }
            if !is_password_hash(&e.password_hash) {
                r.err(
                    &t.key("password_hash"),
                    "must be an Argon2 hash (make one with: switchboard passwd), never the password itself",
                );
            }
            let mut roles = Vec::new();
            for role in &e.roles {
                match Role::parse(role) {
                    Some(x) => roles.push(x),
                    None => r.err(
                        &t.key("roles"),
                        format!("\"{role}\" is not one of {}", Role::NAMES.join(", ")),
                    ),
                }
            }
            if e.roles.is_empty() {
                r.err(&t.key("roles"), format!("give at least one of {}", Role::NAMES.join(", ")));
            }
            if roles.contains(&Role::Agent) && e.agent.is_none() {
                r.err(&t.key("agent"), "an agent login names its agent (agents.toml)");
            }
            roles.sort();
            roles.dedup();
            Login {
                name: name.clone(),
                password_hash: e.password_hash.clone(),
                roles,
                agent: e.agent.clone(),
            }
        })
        .collect()
}

/// `[users.NAME]`.
fn user(
    r: &mut Report<'_>,
    name: &str,
    e: &UserEntry,
    algorithms: Option<&[Algorithm]>,
) -> UserAccount {
    let t = KeyPath::top("users").key(name);
    if name.is_empty()
        || !name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"-_.!~*'()&=+$,;?/".contains(&c))
    {
        r.err(
            &t,
            "user name must be a plain SIP user part (letters, digits, - _ .)",
        );
    }
    let algs = e
        .algorithms
        .as_ref()
        .map(|a| parse_algorithms(r, &t.key("algorithms"), a));
    let is_hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|c| c.is_ascii_hexdigit());
    let secret = match (&e.password, &e.ha1_md5, &e.ha1_sha256) {
        (Some(p), None, None) => {
            if p.is_empty() {
                r.err(&t.key("password"), "must not be empty");
            }
            UserSecret::Password(p.clone())
        }
        (None, md5, sha) if md5.is_some() || sha.is_some() => {
            if md5.as_deref().is_some_and(|h| !is_hex(h, 32)) {
                r.err(
                    &t.key("ha1_md5"),
                    "must be 32 hex digits: MD5(user:realm:password)",
                );
            }
            if sha.as_deref().is_some_and(|h| !is_hex(h, 64)) {
                r.err(
                    &t.key("ha1_sha256"),
                    "must be 64 hex digits: SHA-256(user:realm:password)",
                );
            }
            let offered = algs.as_deref().or(algorithms).unwrap_or_default();
            for a in offered {
                let needs_sha = matches!(a, Algorithm::Sha256 | Algorithm::Sha256Sess);
                if needs_sha && sha.is_none() || !needs_sha && md5.is_none() {
                    r.err(
                        &t,
                        format!("algorithm {a} is offered but no matching ha1 is given"),
                    );
                }
            }
            UserSecret::Ha1 {
                md5: md5.clone(),
                sha256: sha.clone(),
            }
        }
        _ => {
            r.err(&t, "give either password, or ha1_md5 and/or ha1_sha256");
            UserSecret::Password(String::new())
        }
    };
    if e.max_contacts == Some(0) {
        r.err(&t.key("max_contacts"), "must be at least 1");
    }
    UserAccount {
        secret,
        algorithms: algs,
        max_contacts: e.max_contacts,
        require_tls: e.require_tls,
    }
}

fn parse_algorithms(r: &mut Report<'_>, key: &KeyPath, names: &[String]) -> Vec<Algorithm> {
    let mut out = Vec::new();
    if names.is_empty() {
        r.err(key, "at least one algorithm is needed");
    }
    for n in names {
        match n.parse::<Algorithm>() {
            Ok(a) if !out.contains(&a) => out.push(a),
            Ok(_) => r.err(key, format!("\"{n}\" is listed twice")),
            Err(_) => r.err(
                key,
                format!("unknown algorithm \"{n}\"; use \"SHA-256\", \"MD5\", \"SHA-256-sess\" or \"MD5-sess\""),
            ),
        }
    }
    out
}

fn hex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_with(server: &str, users: &str) -> tempdir::Dir {
        tempdir::Dir::new(server, users)
    }

    /// A throw-away config dir under the system temp dir.
    mod tempdir {
        pub(super) struct Dir(pub(super) std::path::PathBuf);
        impl Dir {
            pub(super) fn new(server: &str, users: &str) -> Dir {
                use std::sync::atomic::{AtomicU32, Ordering};
                static N: AtomicU32 = AtomicU32::new(0);
                let p = std::env::temp_dir().join(format!(
                    "switchboard-config-test-{}-{}",
                    std::process::id(),
                    N.fetch_add(1, Ordering::Relaxed)
                ));
                std::fs::create_dir_all(&p).unwrap();
                std::fs::write(p.join("switchboard.toml"), server).unwrap();
                std::fs::write(p.join("users.toml"), users).unwrap();
                Dir(p)
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    #[test]
    fn shipped_config_loads() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config");
        let c = load(&dir, None).unwrap();
        assert_eq!(c.users.len(), 10);
        assert!(c.users.contains_key("1001"));
        assert_eq!(c.auth.algorithms, vec![Algorithm::Md5]);
    }

    #[test]
    fn storage_is_sqlite_by_default_and_postgresql_with_a_url() {
        let d = dir_with("[sip]\nbind = \"127.0.0.1:5060\"\n", "");
        let s = load(&d.0, None).unwrap().storage.unwrap();
        assert!(matches!(&s.location, store::Location::Sqlite(p) if p.ends_with("switchboard.db")));
        assert!(s.spill.ends_with("switchboard.db.spill"));

        let d = dir_with(
            "[sip]\nbind = \"127.0.0.1:5060\"\n[storage]\nurl = \"postgres://sb:pw@db.example:5433/calls\"\n",
            "",
        );
        let s = load(&d.0, None).unwrap().storage.unwrap();
        assert_eq!(
            s.location,
            store::Location::Postgres("postgres://sb:pw@db.example:5433/calls".into())
        );
        assert!(s.spill.ends_with("postgresql.spill"), "{:?}", s.spill);
        assert!(!format!("{:?}", s.location).contains("pw@"));
        let d = dir_with(
            "[sip]\nbind = \"127.0.0.1:5060\"\n[storage]\nurl = \"host=db.example user=sb dbname=calls\"\n",
            "",
        );
        assert!(load(&d.0, None).is_ok());
    }

    #[test]
    fn a_database_and_a_url_together_or_a_bad_url_are_errors_with_file_line_and_key() {
        let d = dir_with(
            "[sip]\nbind = \"127.0.0.1:5060\"\n[storage]\ndatabase = \"calls.db\"\nurl = \"postgres://sb@db/calls\"\n",
            "",
        );
        let s = load(&d.0, None).unwrap_err().to_string();
        assert!(
            s.contains("switchboard.toml:5: storage.url: give either database"),
            "{s}"
        );
        let d = dir_with(
            "[sip]\nbind = \"127.0.0.1:5060\"\n[storage]\nurl = \"postgres://sb:hunter2@db:port/calls\"\n",
            "",
        );
        let s = load(&d.0, None).unwrap_err().to_string();
        assert!(s.contains("switchboard.toml:4: storage.url: "), "{s}");
        assert!(!s.contains("hunter2"), "{s}");
    }

    #[test]
    fn unknown_key_names_file_and_line() {
        let d = dir_with("[sip]\nbind = \"127.0.0.1:5060\"\nbnd = 3\n", "");
        let e = load(&d.0, None).unwrap_err();
        let s = e.to_string();
        assert!(s.contains("switchboard.toml:3"), "{s}");
        assert!(s.contains("bnd"), "{s}");
    }

    #[test]
    fn the_transaction_table_size_is_checked_and_optional() {
        let d = dir_with(
            "[sip]\nbind = \"127.0.0.1:5060\"\nmax_transactions = 5\n",
            "",
        );
        let s = load(&d.0, None).unwrap_err().to_string();
        assert!(
            s.contains("switchboard.toml:3: sip.max_transactions: must be at least 100"),
            "{s}"
        );
        let d = dir_with(
            "[sip]\nbind = \"127.0.0.1:5060\"\nmax_transactions = 50000\n",
            "",
        );
        assert_eq!(load(&d.0, None).unwrap().max_transactions, Some(50_000));
        let d = dir_with("[sip]\nbind = \"127.0.0.1:5060\"\n", "");
        assert_eq!(load(&d.0, None).unwrap().max_transactions, None);
    }

    #[test]
    fn every_problem_is_reported_with_key_and_line() {
        let d = dir_with(
            "[sip]\nbind = \"nowhere\"\n[registrar]\nmin_expires = 600\nmax_expires = 60\n[auth]\nalgorithms = [\"SHA-512\"]\n",
            "[users.1001]\nha1_md5 = \"xyz\"\n[users.1002]\n",
        );
        let e = load(&d.0, None).unwrap_err();
        let s = e.to_string();
        assert!(
            s.contains("switchboard.toml:2: sip.bind: \"nowhere\" is not an address"),
            "{s}"
        );
        assert!(
            s.contains("switchboard.toml:4: registrar.min_expires: 600 is above max_expires (60)"),
            "{s}"
        );
        assert!(
            s.contains("switchboard.toml:7: auth.algorithms: unknown algorithm \"SHA-512\""),
            "{s}"
        );
        assert!(
            s.contains("users.toml:2: users.1001.ha1_md5: must be 32 hex digits"),
            "{s}"
        );
        assert!(
            s.contains("users.toml:3: users.1002: give either password"),
            "{s}"
        );
    }

    #[test]
    fn environment_overrides_apply_and_their_errors_name_the_variable() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config");
        let env = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
                .collect::<Vec<_>>()
                .into_iter()
        };
        let c = load_with_env(
            &dir,
            None,
            env(&[
                ("SWITCHBOARD__MEDIA__ADVERTISE", "203.0.113.10"),
                ("SWITCHBOARD__SIP__REALM", "acme"),
                ("SWITCHBOARD__AUTH__ALGORITHMS", "[\"SHA-256\", \"MD5\"]"),
                ("SWITCHBOARD__REGISTRAR__MAX_CONTACTS", "2"),
                ("SWITCHBOARD_LOG", "debug"), // not an override (single underscore)
            ]),
        )
        .unwrap();
        assert_eq!(c.callcenter.media.advertise.to_string(), "203.0.113.10");
        assert_eq!(c.realm, "acme");
        assert_eq!(c.auth.algorithms, vec![Algorithm::Sha256, Algorithm::Md5]);
        assert_eq!(c.registrar.max_contacts, 2);
        // A bad value is reported against the variable, not a line of the file.
        let e = load_with_env(&dir, None, env(&[("SWITCHBOARD__MEDIA__TIMEOUT", "0")]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(
                "environment SWITCHBOARD__MEDIA__TIMEOUT: media.timeout: must be at least 1 second"
            ),
            "{e}"
        );
        let e = load_with_env(&dir, None, env(&[("SWITCHBOARD__SIP__REALME", "x")]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("environment SWITCHBOARD__SIP__REALME") && e.contains("realme"),
            "{e}"
        );
    }

    #[test]
    fn bind_override_wins() {
        let d = dir_with(
            "[sip]\nbind = \"127.0.0.1:5060\"\n",
            "[users.a]\npassword = \"x\"\n",
        );
        let c = load(&d.0, Some("127.0.0.1:15060")).unwrap();
        assert_eq!(c.sip_bind.port(), 15060);
        let e = load(&d.0, Some("bogus")).unwrap_err();
        assert!(e.to_string().contains("SWITCHBOARD_SIP_BIND"));
    }

    #[test]
    fn binding_store_and_tcp_limits() {
        let users = "[users.a]\npassword = \"x\"\n";
        let d = dir_with("[recording]\ndir = \"/srv/sb/recordings\"\n", users);
        let c = load(&d.0, None).unwrap();
        assert_eq!(
            c.binding_store.as_deref(),
            Some(Path::new("/srv/sb/registrations.json")),
            "beside the recordings, like status.json"
        );
        assert_eq!(c.tcp_idle_timeout, Duration::from_secs(60));
        assert_eq!(c.max_tcp_per_source, 100);
        assert_eq!(c.security.log_interval, Duration::from_secs(30));
        let d = dir_with(
            "[registrar]\nstore = \"/var/lib/sb/regs.json\"\n[sip]\ntcp_idle_timeout = 5\nmax_tcp_per_source = 3\n",
            users,
        );
        let c = load(&d.0, None).unwrap();
        assert_eq!(
            c.binding_store.as_deref(),
            Some(Path::new("/var/lib/sb/regs.json"))
        );
        assert_eq!(c.tcp_idle_timeout, Duration::from_secs(5));
        assert_eq!(c.max_tcp_per_source, 3);
        let d = dir_with("[registrar]\npersist = false\n", users);
        assert_eq!(load(&d.0, None).unwrap().binding_store, None);
        let d = dir_with(
            "[registrar]\nstore = \"\"\n[sip]\ntcp_idle_timeout = 0\n[security]\nlog_interval = 0\n",
            users,
        );
        let e = load(&d.0, None).unwrap_err().to_string();
        for key in [
            "registrar.store",
            "sip.tcp_idle_timeout",
            "security.log_interval",
        ] {
            assert!(e.contains(key), "{key} in {e}");
        }
    }
}
