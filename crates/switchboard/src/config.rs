//! Config files: `switchboard.toml` (server) and `users.toml` (SIP accounts).
//!
//! Files are parsed into structs that reject unknown keys, then validated as a whole; every
//! problem is reported at once as `file:line: key: reason`.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use pbx::sip::digest::{Algorithm, UserSecret};
use pbx::sip::endpoint::{AuthConfig, RateLimit, SecurityConfig};
use pbx::sip::registrar::RegistrarConfig;
use pbx::sip::UserAccount;
use serde::Deserialize;

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
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserEntry {
    password: Option<String>,
    ha1_md5: Option<String>,
    ha1_sha256: Option<String>,
    algorithms: Option<Vec<String>>,
    max_contacts: Option<usize>,
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
    pub users: HashMap<String, UserAccount>,
    /// Queues, agents, trunks, media.
    pub callcenter: crate::callcenter::CallCenter,
}

/// Find the line of `key` inside `[table]` (or at top level when `table` is empty).
pub(crate) fn line_of(text: &str, table: &str, key: &str) -> Option<usize> {
    let mut current = String::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if let Some(t) = line.strip_prefix('[') {
            current = t
                .trim_end_matches(']')
                .trim()
                .trim_matches('"')
                .replace("\"", "");
            if key.is_empty() && current == table {
                return Some(i + 1);
            }
            continue;
        }
        if current == table {
            if let Some((k, _)) = line.split_once('=') {
                if k.trim().trim_matches('"') == key {
                    return Some(i + 1);
                }
            }
        }
    }
    None
}

/// Environment overrides of `switchboard.toml`: dotted key path → the variable that set it.
pub(crate) type Overrides = std::collections::BTreeMap<String, String>;

/// The prefix of environment overrides: `SWITCHBOARD__<TABLE>__<KEY>=<value>` sets
/// `[table] key` of switchboard.toml (`SWITCHBOARD__MEDIA__ADVERTISE=203.0.113.10`,
/// `SWITCHBOARD__AUTH__ALGORITHMS='["SHA-256", "MD5"]'`). Values are TOML values; a value
/// that is not one is taken as a string.
pub(crate) const ENV_PREFIX: &str = "SWITCHBOARD__";

/// Read the overrides from the environment: (key path, variable, value).
fn env_overrides(
    vars: impl Iterator<Item = (String, String)>,
) -> Vec<(Vec<String>, String, toml::Value)> {
    let mut out: Vec<(Vec<String>, String, toml::Value)> = vars
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

/// Where an error about `table.key` of switchboard.toml comes from: the file and its line, or
/// the environment variable that overrode the key.
pub(crate) fn locate(
    file: &Path,
    text: &str,
    overrides: &Overrides,
    table: &str,
    key: &str,
) -> (PathBuf, Option<usize>) {
    let base_key = key.split('[').next().unwrap_or(key);
    let path = if table.is_empty() {
        base_key.to_owned()
    } else {
        format!("{table}.{base_key}")
    };
    match overrides.get(&path) {
        Some(var) => (PathBuf::from(format!("environment {var}")), None),
        None => (file.to_owned(), line_of(text, table, base_key)),
    }
}

struct Report<'a> {
    file: &'a Path,
    text: &'a str,
    overrides: &'a Overrides,
    errors: Vec<ConfigError>,
}

impl Report<'_> {
    fn err(&mut self, table: &str, key: &str, reason: impl Into<String>) {
        let path = if table.is_empty() {
            key.to_owned()
        } else if key.is_empty() {
            table.to_owned()
        } else {
            format!("{table}.{key}")
        };
        let (file, line) = locate(self.file, self.text, self.overrides, table, key);
        self.errors.push(ConfigError {
            file,
            line,
            key: Some(path),
            reason: reason.into(),
        });
    }
}

pub(crate) fn toml_error(file: &Path, text: &str, e: toml::de::Error) -> ConfigError {
    let line = e
        .span()
        .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
    ConfigError {
        file: file.to_owned(),
        line,
        key: None,
        reason: e.message().to_owned(),
    }
}

fn parse_algorithms(
    r: &mut Report<'_>,
    table: &str,
    key: &str,
    names: &[String],
) -> Vec<Algorithm> {
    let mut out = Vec::new();
    if names.is_empty() {
        r.err(table, key, "at least one algorithm is needed");
    }
    for n in names {
        match n.parse::<Algorithm>() {
            Ok(a) if !out.contains(&a) => out.push(a),
            Ok(_) => r.err(table, key, format!("\"{n}\" is listed twice")),
            Err(_) => r.err(
                table,
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

/// Read and validate `switchboard.toml` and `users.toml` from `dir`.
/// `sip_bind` overrides `sip.bind` (from the CLI flag or SWITCHBOARD_SIP_BIND).
pub(crate) fn load(dir: &Path, sip_bind: Option<&str>) -> Result<Config, ConfigErrors> {
    load_with_env(dir, sip_bind, std::env::vars())
}

/// [`load`] with the environment given (tests).
pub(crate) fn load_with_env(
    dir: &Path,
    sip_bind: Option<&str>,
    env: impl Iterator<Item = (String, String)>,
) -> Result<Config, ConfigErrors> {
    let mut errors = Vec::new();
    let server_path = dir.join("switchboard.toml");
    let users_path = dir.join("users.toml");
    let read = |p: &Path, errors: &mut Vec<ConfigError>| -> Option<String> {
        match std::fs::read_to_string(p) {
            Ok(t) => Some(t),
            Err(e) => {
                errors.push(ConfigError {
                    file: p.to_owned(),
                    line: None,
                    key: None,
                    reason: format!("cannot read: {e}"),
                });
                None
            }
        }
    };
    let server_text = read(&server_path, &mut errors);
    let users_text = read(&users_path, &mut errors);
    let overrides_list = env_overrides(env);
    let overrides: Overrides = overrides_list
        .iter()
        .map(|(p, var, _)| (p.join("."), var.clone()))
        .collect();
    let server: Option<ServerFile> = server_text.as_deref().and_then(|t| {
        // First the file alone, so its own mistakes are reported with their lines …
        let from_file: ServerFile = toml::from_str(t)
            .map_err(|e| errors.push(toml_error(&server_path, t, e)))
            .ok()?;
        if overrides_list.is_empty() {
            return Some(from_file);
        }
        // … then with the environment overrides on top.
        let mut table: toml::Table = toml::from_str(t).ok()?;
        for (path, _, value) in &overrides_list {
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
        toml::Value::Table(table)
            .try_into::<ServerFile>()
            .map_err(|e| {
                let vars: Vec<&str> = overrides_list.iter().map(|o| o.1.as_str()).collect();
                errors.push(ConfigError {
                    file: PathBuf::from(format!("environment {}", vars.join(", "))),
                    line: None,
                    key: None,
                    reason: e.message().to_owned(),
                })
            })
            .ok()
    });
    let users: Option<UsersFile> = users_text.as_deref().and_then(|t| {
        toml::from_str(t)
            .map_err(|e| errors.push(toml_error(&users_path, t, e)))
            .ok()
    });
    let (Some(server), Some(users), Some(server_text), Some(users_text)) =
        (server, users, server_text.as_deref(), users_text.as_deref())
    else {
        return Err(ConfigErrors(errors));
    };

    let mut r = Report {
        file: &server_path,
        text: server_text,
        overrides: &overrides,
        errors: Vec::new(),
    };
    let bind_text = sip_bind.unwrap_or(&server.sip.bind);
    let sip_bind = match bind_text.parse::<SocketAddr>() {
        Ok(a) => a,
        Err(_) => {
            let reason = format!("\"{bind_text}\" is not an address:port such as \"0.0.0.0:5060\"");
            if sip_bind.is_some() {
                r.errors.push(ConfigError {
                    file: PathBuf::from("--sip-bind / SWITCHBOARD_SIP_BIND"),
                    line: None,
                    key: None,
                    reason,
                });
            } else {
                r.err("sip", "bind", reason);
            }
            SocketAddr::from(([0, 0, 0, 0], 5060))
        }
    };
    if !server.sip.udp && !server.sip.tcp {
        r.err(
            "sip",
            "udp",
            "at least one of sip.udp and sip.tcp must be true",
        );
    }
    if server.sip.realm.trim().is_empty() || server.sip.realm.contains('"') {
        r.err("sip", "realm", "must be a non-empty string without quotes");
    }
    if server.sip.max_message_size < 1500 || server.sip.max_message_size > 65_535 {
        r.err(
            "sip",
            "max_message_size",
            "must be between 1500 and 65535 octets",
        );
    }
    if server.sip.timer_j.is_some_and(|j| !(1..=32).contains(&j)) {
        r.err(
            "sip",
            "timer_j",
            "must be 1–32 seconds (32 = RFC 3261's 64×T1)",
        );
    }
    if let Some(a) = &server.sip.advertise {
        if a.trim().is_empty() || a.contains(char::is_whitespace) {
            r.err("sip", "advertise", "must be host or host:port");
        }
    }
    let reg = &server.registrar;
    if reg.min_expires == 0 {
        r.err("registrar", "min_expires", "must be at least 1 second");
    }
    if reg.min_expires > reg.max_expires {
        r.err(
            "registrar",
            "min_expires",
            format!(
                "{} is above max_expires ({})",
                reg.min_expires, reg.max_expires
            ),
        );
    }
    if reg.default_expires < reg.min_expires || reg.default_expires > reg.max_expires {
        r.err(
            "registrar",
            "default_expires",
            "must lie between min_expires and max_expires",
        );
    }
    if reg.max_contacts == 0 {
        r.err("registrar", "max_contacts", "must be at least 1");
    }
    if reg
        .store
        .as_deref()
        .is_some_and(|p| p.trim().is_empty() || p.ends_with('/'))
    {
        r.err(
            "registrar",
            "store",
            "must be a file path such as \"data/registrations.json\"",
        );
    }
    if server.sip.tcp_idle_timeout == 0 {
        r.err("sip", "tcp_idle_timeout", "must be at least 1 second");
    }
    if server.sip.max_tcp_connections == 0 {
        r.err("sip", "max_tcp_connections", "must be at least 1");
    }
    if server.security.log_interval == 0 {
        r.err("security", "log_interval", "must be at least 1 second");
    }
    let algorithms = parse_algorithms(&mut r, "auth", "algorithms", &server.auth.algorithms);
    if server.auth.nonce_lifetime < 10 {
        r.err("auth", "nonce_lifetime", "must be at least 10 seconds");
    }
    let secret = match &server.auth.secret {
        Some(s) => {
            let v = hex32(s);
            if v.is_none() {
                r.err("auth", "secret", "must be 64 hex digits (32 bytes)");
            }
            v
        }
        None => None,
    };
    let mut trusted = Vec::new();
    for t in &server.security.trusted {
        match t.parse::<IpAddr>() {
            Ok(ip) => trusted.push(ip),
            Err(_) => r.err(
                "security",
                "trusted",
                format!("\"{t}\" is not an IP address"),
            ),
        }
    }
    if server.security.rate_limit > 0 && server.security.rate_burst == 0 {
        r.err(
            "security",
            "rate_burst",
            "must be at least 1 when rate_limit is on",
        );
    }
    if tracing_subscriber::EnvFilter::try_new(&server.log.level).is_err() {
        r.err(
            "log",
            "level",
            "not a log filter such as \"info\" or \"sip=debug,info\"",
        );
    }
    errors.extend(r.errors);

    // users.toml
    let no_overrides = Overrides::new();
    let mut u = Report {
        file: &users_path,
        text: users_text,
        overrides: &no_overrides,
        errors: Vec::new(),
    };
    let mut accounts = HashMap::new();
    let mut names: Vec<&String> = users.users.keys().collect();
    names.sort();
    for name in names {
        let e = &users.users[name];
        let table = format!("users.{name}");
        if name.is_empty()
            || !name
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"-_.!~*'()&=+$,;?/".contains(&c))
        {
            u.err(
                &table,
                "",
                "user name must be a plain SIP user part (letters, digits, - _ .)",
            );
        }
        let algs = e
            .algorithms
            .as_ref()
            .map(|a| parse_algorithms(&mut u, &table, "algorithms", a));
        let is_hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|c| c.is_ascii_hexdigit());
        let secret = match (&e.password, &e.ha1_md5, &e.ha1_sha256) {
            (Some(p), None, None) => {
                if p.is_empty() {
                    u.err(&table, "password", "must not be empty");
                }
                UserSecret::Password(p.clone())
            }
            (None, md5, sha) if md5.is_some() || sha.is_some() => {
                if md5.as_deref().is_some_and(|h| !is_hex(h, 32)) {
                    u.err(
                        &table,
                        "ha1_md5",
                        "must be 32 hex digits: MD5(user:realm:password)",
                    );
                }
                if sha.as_deref().is_some_and(|h| !is_hex(h, 64)) {
                    u.err(
                        &table,
                        "ha1_sha256",
                        "must be 64 hex digits: SHA-256(user:realm:password)",
                    );
                }
                let offered = algs.clone().unwrap_or_else(|| algorithms.clone());
                for a in &offered {
                    let needs_sha = matches!(a, Algorithm::Sha256 | Algorithm::Sha256Sess);
                    if needs_sha && sha.is_none() || !needs_sha && md5.is_none() {
                        u.err(
                            &table,
                            "",
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
                u.err(
                    &table,
                    "",
                    "give either password, or ha1_md5 and/or ha1_sha256",
                );
                UserSecret::Password(String::new())
            }
        };
        if e.max_contacts == Some(0) {
            u.err(&table, "max_contacts", "must be at least 1");
        }
        accounts.insert(
            name.clone(),
            UserAccount {
                secret,
                algorithms: algs,
                max_contacts: e.max_contacts,
            },
        );
    }
    errors.extend(u.errors);
    let user_names: std::collections::HashSet<String> = accounts.keys().cloned().collect();
    let advertise_host = server
        .sip
        .advertise
        .as_deref()
        .map(|a| a.rsplit_once(':').map_or(a, |(h, _)| h));
    let callcenter = crate::callcenter::build(
        dir,
        crate::callcenter::ServerTables {
            media: server.media,
            calls: server.calls,
            trunks: server.trunks,
            recording: server.recording,
        },
        server_text,
        &overrides,
        &user_names,
        advertise_host,
        &mut errors,
    );
    let Some(callcenter) = callcenter.filter(|_| errors.is_empty()) else {
        return Err(ConfigErrors(errors));
    };
    Ok(Config {
        sip_bind,
        udp: server.sip.udp,
        tcp: server.sip.tcp,
        advertise: server.sip.advertise,
        udp_recv_buffer: server.sip.udp_recv_buffer,
        max_message_size: server.sip.max_message_size,
        realm: server.sip.realm,
        domains: server.sip.domains,
        force_rport: server.sip.force_rport,
        timer_j: server.sip.timer_j.map(Duration::from_secs),
        tcp_idle_timeout: Duration::from_secs(server.sip.tcp_idle_timeout),
        max_tcp_connections: server.sip.max_tcp_connections,
        max_tcp_per_source: server.sip.max_tcp_per_source,
        binding_store: reg.persist.then(|| match &reg.store {
            Some(p) => PathBuf::from(p),
            None => callcenter
                .recording
                .dir
                .parent()
                .unwrap_or(Path::new("."))
                .join("registrations.json"),
        }),
        registrar: RegistrarConfig {
            min_expires: reg.min_expires,
            max_expires: reg.max_expires,
            default_expires: reg.default_expires,
            max_contacts: reg.max_contacts,
            qualify_interval: (reg.qualify_interval > 0)
                .then(|| Duration::from_secs(reg.qualify_interval)),
        },
        auth: AuthConfig {
            algorithms,
            nonce_lifetime: Duration::from_secs(server.auth.nonce_lifetime),
            allow_no_qop: server.auth.allow_no_qop,
        },
        secret,
        security: SecurityConfig {
            max_auth_failures: server.security.max_auth_failures,
            failure_window: Duration::from_secs(server.security.failure_window),
            ban_duration: Duration::from_secs(server.security.ban_duration),
            rate_limit: (server.security.rate_limit > 0).then_some(RateLimit {
                per_second: server.security.rate_limit,
                burst: server.security.rate_burst,
            }),
            trusted,
            log_interval: Duration::from_secs(server.security.log_interval),
            ..SecurityConfig::default()
        },
        log_level: server.log.level,
        users: accounts,
        callcenter,
    })
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
    fn unknown_key_names_file_and_line() {
        let d = dir_with("[sip]\nbind = \"127.0.0.1:5060\"\nbnd = 3\n", "");
        let e = load(&d.0, None).unwrap_err();
        let s = e.to_string();
        assert!(s.contains("switchboard.toml:3"), "{s}");
        assert!(s.contains("bnd"), "{s}");
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
