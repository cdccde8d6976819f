//! The configuration file: `key = value` lines → an immutable [`Config`].
//!
//! Every key of the spec is parsed and validated here, even those whose behaviour
//! comes in later issues, so a config that `check` accepts today keeps working.
//!
//! Invariants:
//! - Syntax: `#` starts a comment anywhere on a line (so no value contains `#`); blank
//!   lines are ignored; key and value are trimmed; a value is never empty; lists are
//!   comma separated with no empty item. Only `listen` may repeat.
//! - Every error is one line, `FILE:LINE: what is wrong` (naming the key and the bad
//!   value), or `FILE: reason` when there is no line to blame; it maps to exit 78.
//!   Nothing read from the file can make the parser panic.
//! - A [`Config`] from [`parse`] is complete and consistent: defaults are filled in,
//!   `local_domains` is lower-case without trailing dots, `listen` and `retry` are never
//!   empty, limits and intervals are at least 1, durations at most a year, `tls_cert` and
//!   `tls_key` are both set or both unset, and a `submissions` listener has both.
//! - [`render`] prints a `Config` in the syntax [`parse`] reads, so
//!   `parse(render(c)) == c` apart from `path`.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What a listener serves (spec: `listen = ADDR:PORT ROLE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// MX / relay (port 25): relay control by `relay_from`, AUTH optional.
    Smtp,
    /// Port 587: AUTH required before MAIL, STARTTLS.
    Submission,
    /// Port 465: implicit TLS, AUTH required.
    Submissions,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listen {
    pub addr: SocketAddr,
    pub role: Role,
}

/// An address block of `relay_from`, e.g. `127.0.0.1/8` or `::1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Network {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Network {
    /// True when `ip` lies in this network. IPv4-mapped IPv6 peers (`::ffff:a.b.c.d`)
    /// match IPv4 networks, since a dual-stack socket reports IPv4 clients that way.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(v6),
            },
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let bits = u32::from(self.prefix.min(32));
                let mask = if bits == 0 {
                    0
                } else {
                    u32::MAX << (32 - bits)
                };
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let bits = u32::from(self.prefix.min(128));
                let mask = if bits == 0 {
                    0
                } else {
                    u128::MAX << (128 - bits)
                };
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmarthostTls {
    /// STARTTLS, required (the default).
    StartTls,
    /// Implicit TLS (port 465 style).
    Tls,
    None,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutboundTls {
    Opportunistic,
    Require,
    None,
}

/// `HOST[:PORT]` of the smarthost.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Smarthost {
    pub host: String,
    pub port: u16,
}

/// The effective configuration. Built once by [`load`]; never mutated afterwards
/// (SIGHUP builds a new one).
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// The file it came from, for messages.
    pub path: PathBuf,
    pub hostname: String,
    pub spool: PathBuf,
    pub listen: Vec<Listen>,
    /// Lower-cased, without trailing dots. Always contains `hostname` when the key is
    /// absent; `localhost` is always local too (see [`Config::is_local_domain`]).
    pub local_domains: Vec<String>,
    pub relay_from: Vec<Network>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub users: Option<PathBuf>,
    pub auth_without_tls: bool,
    pub max_message_size: u64,
    pub max_recipients: usize,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub idle_timeout: Duration,
    pub smarthost: Option<Smarthost>,
    pub smarthost_tls: SmarthostTls,
    pub smarthost_auth: Option<PathBuf>,
    pub smarthost_verify: bool,
    pub outbound_tls: OutboundTls,
    pub tls_ca_file: Option<PathBuf>,
    /// Empty means "from /etc/resolv.conf".
    pub dns: Vec<SocketAddr>,
    pub smtp_port: u16,
    pub mail_dir: PathBuf,
    pub aliases: PathBuf,
    /// Never empty; the last entry repeats.
    pub retry: Vec<Duration>,
    pub max_queue_time: Duration,
    pub queue_interval: Duration,
    pub user: Option<String>,
}

impl Config {
    /// `local_domains` plus `localhost`, compared case-insensitively, trailing dot ignored.
    pub fn is_local_domain(&self, domain: &str) -> bool {
        let d = domain.trim_end_matches('.');
        d.eq_ignore_ascii_case("localhost")
            || self.local_domains.iter().any(|l| l.eq_ignore_ascii_case(d))
    }

    pub fn may_relay(&self, ip: IpAddr) -> bool {
        self.relay_from.iter().any(|n| n.contains(ip))
    }
}

/// A configuration problem, printed as one line. Exit code 78.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// `FILE:LINE: what is wrong` or `FILE: reason`.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

/// The path to read: `-c FILE`, else `$POSTLING_CONFIG`, else `/etc/postling.conf`.
pub fn config_path(cli: Option<&str>) -> PathBuf {
    if let Some(p) = cli {
        return PathBuf::from(p);
    }
    match std::env::var_os("POSTLING_CONFIG") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from("/etc/postling.conf"),
    }
}

/// Read and validate a configuration file.
/// Read a file that holds secrets (`users`, `smarthost_auth`), refusing one that other
/// users may read. Errors are `FILE: reason`, as for every configuration file.
pub fn read_secret_file(path: &Path) -> Result<String, String> {
    use std::os::unix::fs::PermissionsExt;
    let reason = |e: std::io::Error| format!("{}: {}", path.display(), crate::time::io_reason(&e));
    let meta = std::fs::metadata(path).map_err(reason)?;
    if meta.permissions().mode() & 0o004 != 0 {
        return Err(format!(
            "{}: must not be world-readable (chmod o-r)",
            path.display()
        ));
    }
    std::fs::read_to_string(path).map_err(reason)
}

pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        message: format!("{}: {}", path.display(), crate::time::io_reason(&e)),
    })?;
    parse(path, &text)
}

/// Parse configuration text. `path` is only used in messages.
///
/// When `hostname` is absent the system host name is read (see [`system_hostname`]).
pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
    parse_with(path, text, system_hostname)
}

/// The host name of this machine: `/proc/sys/kernel/hostname`, else `/etc/hostname`,
/// else `localhost`. Not validated here: [`parse`] checks it like a configured one.
pub fn system_hostname() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .map(|s| s.trim().to_string())
        .find(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// Every key, in the order of the spec table: the order `render` prints them in.
pub const KEYS: &[&str] = &[
    "hostname",
    "spool",
    "listen",
    "local_domains",
    "relay_from",
    "tls_cert",
    "tls_key",
    "users",
    "auth_without_tls",
    "max_message_size",
    "max_recipients",
    "max_connections",
    "max_connections_per_ip",
    "idle_timeout",
    "smarthost",
    "smarthost_tls",
    "smarthost_auth",
    "smarthost_verify",
    "outbound_tls",
    "tls_ca_file",
    "dns",
    "smtp_port",
    "mail_dir",
    "aliases",
    "retry",
    "max_queue_time",
    "queue_interval",
    "user",
];

// Defaults from the spec table, in one place.
const DEFAULT_SPOOL: &str = "/var/spool/postling";
const DEFAULT_LISTEN_PORT: u16 = 25;
const DEFAULT_MAX_MESSAGE_SIZE: u64 = 25 * 1024 * 1024;
const DEFAULT_MAX_RECIPIENTS: usize = 100;
const DEFAULT_MAX_CONNECTIONS: usize = 64;
const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 16;
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(5 * 60);
const DEFAULT_SMTP_PORT: u16 = 25;
/// RFC 5321 §4.5.4.2's port 25, unless the smarthost speaks implicit TLS:
/// RFC 8314 §3.3 puts that on port 465.
const DEFAULT_SMARTHOST_PORT: u16 = 25;
const DEFAULT_SMARTHOST_TLS_PORT: u16 = 465;
const DEFAULT_DNS_PORT: u16 = 53;
const DEFAULT_MAIL_DIR: &str = "/var/mail";
const DEFAULT_ALIASES: &str = "/etc/aliases";
const DEFAULT_RETRY: &[Duration] = &[
    Duration::from_secs(60),
    Duration::from_secs(5 * 60),
    Duration::from_secs(15 * 60),
    Duration::from_secs(60 * 60),
    Duration::from_secs(4 * 60 * 60),
];
const DEFAULT_MAX_QUEUE_TIME: Duration = Duration::from_secs(5 * 86_400);
const DEFAULT_QUEUE_INTERVAL: Duration = Duration::from_secs(60);

/// Longest duration accepted for any key. A year is far beyond any sensible queue
/// lifetime or timeout, and it keeps `Instant + Duration` elsewhere from overflowing.
const MAX_DURATION_SECS: u64 = 365 * 86_400;
/// RFC 1035 §2.3.4 / RFC 1123 §2.1: 63 octets per label, 253 characters in all
/// (255 on the wire).
const MAX_LABEL_LEN: usize = 63;
const MAX_DOMAIN_LEN: usize = 253;
/// Longest login name most systems accept (Linux `useradd` default, `LOGIN_NAME_MAX - 1`).
const MAX_USER_NAME_LEN: usize = 32;

/// One `key = value` line, with its 1-based line number.
struct Entry<'a> {
    line: usize,
    key: &'static str,
    value: &'a str,
}

/// `parse` with the source of the default host name injected, so tests do not depend
/// on the machine they run on.
fn parse_with(
    path: &Path,
    text: &str,
    default_hostname: fn() -> String,
) -> Result<Config, ConfigError> {
    let at = |line: usize, what: String| ConfigError {
        message: format!("{}:{}: {}", path.display(), line, what),
    };
    let entries = split_lines(text).map_err(|(line, what)| at(line, what))?;
    // The line that sets a key (only `listen` repeats), for cross-key errors.
    let line_of = |key: &str| entries.iter().find(|e| e.key == key).map(|e| e.line);

    let mut c = Config {
        path: path.to_path_buf(),
        hostname: String::new(),
        spool: PathBuf::from(DEFAULT_SPOOL),
        listen: Vec::new(),
        local_domains: Vec::new(),
        relay_from: vec![
            Network {
                addr: IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
                prefix: 8,
            },
            Network {
                addr: IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
                prefix: 128,
            },
        ],
        tls_cert: None,
        tls_key: None,
        users: None,
        auth_without_tls: false,
        max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
        max_recipients: DEFAULT_MAX_RECIPIENTS,
        max_connections: DEFAULT_MAX_CONNECTIONS,
        max_connections_per_ip: DEFAULT_MAX_CONNECTIONS_PER_IP,
        idle_timeout: DEFAULT_IDLE_TIMEOUT,
        smarthost: None,
        smarthost_tls: SmarthostTls::StartTls,
        smarthost_auth: None,
        smarthost_verify: true,
        outbound_tls: OutboundTls::Opportunistic,
        tls_ca_file: None,
        dns: Vec::new(),
        smtp_port: DEFAULT_SMTP_PORT,
        mail_dir: PathBuf::from(DEFAULT_MAIL_DIR),
        aliases: PathBuf::from(DEFAULT_ALIASES),
        retry: DEFAULT_RETRY.to_vec(),
        max_queue_time: DEFAULT_MAX_QUEUE_TIME,
        queue_interval: DEFAULT_QUEUE_INTERVAL,
        user: None,
    };
    let mut seen = Seen::default();
    for e in &entries {
        set(&mut c, &mut seen, e).map_err(|what| at(e.line, what))?;
    }

    if !seen.hostname {
        let h = default_hostname();
        c.hostname = domain("hostname", &h).map_err(|_| ConfigError {
            message: format!(
                "{}: the system host name '{}' is not a valid domain name; set hostname",
                path.display(),
                h
            ),
        })?;
    }
    if !seen.local_domains {
        c.local_domains = vec![c.hostname.to_ascii_lowercase()];
    }
    if c.listen.is_empty() {
        c.listen.push(Listen {
            addr: SocketAddr::new(
                IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
                DEFAULT_LISTEN_PORT,
            ),
            role: Role::Smtp,
        });
    }
    c.smarthost = seen.smarthost.map(|(host, port)| Smarthost {
        host,
        port: port.unwrap_or(match c.smarthost_tls {
            SmarthostTls::Tls => DEFAULT_SMARTHOST_TLS_PORT,
            _ => DEFAULT_SMARTHOST_PORT,
        }),
    });

    // Cross-key checks, reported on the line of the key that needs the other.
    match (line_of("tls_cert"), line_of("tls_key")) {
        (Some(l), None) => return Err(at(l, "tls_cert is set but tls_key is not".into())),
        (None, Some(l)) => return Err(at(l, "tls_key is set but tls_cert is not".into())),
        _ => {}
    }
    if c.tls_cert.is_none() {
        // RFC 8314 §3.3: port 465 is TLS from the first byte, so it needs a certificate.
        if let Some(i) = c.listen.iter().position(|l| l.role == Role::Submissions) {
            return Err(at(
                seen.listen_lines[i],
                format!(
                    "listen: the submissions listener {} needs tls_cert and tls_key",
                    c.listen[i].addr
                ),
            ));
        }
    }
    Ok(c)
}

/// What `parse_with` resolves only after the whole file is read, since keys come in
/// any order.
#[derive(Default)]
struct Seen {
    hostname: bool,
    local_domains: bool,
    /// The smarthost's port may depend on `smarthost_tls`, which can come later.
    smarthost: Option<(String, Option<u16>)>,
    /// The line of each listener, for errors about it.
    listen_lines: Vec<usize>,
}

/// Apply one entry to the config. Errors are the text after `FILE:LINE: `.
fn set(c: &mut Config, seen: &mut Seen, e: &Entry<'_>) -> Result<(), String> {
    let (k, v) = (e.key, e.value);
    match k {
        "hostname" => {
            c.hostname = domain(k, v)?;
            seen.hostname = true;
        }
        "spool" => c.spool = PathBuf::from(v),
        "listen" => {
            let l = listener(v)?;
            if let Some(i) = c.listen.iter().position(|o| o.addr == l.addr) {
                return Err(format!(
                    "listen: {} is already set on line {}",
                    l.addr, seen.listen_lines[i]
                ));
            }
            c.listen.push(l);
            seen.listen_lines.push(e.line);
        }
        "local_domains" => {
            c.local_domains = list(k, v)?
                .into_iter()
                .map(|d| domain(k, d).map(|d| d.to_ascii_lowercase()))
                .collect::<Result<_, _>>()?;
            seen.local_domains = true;
        }
        "relay_from" => {
            c.relay_from = list(k, v)?
                .into_iter()
                .map(network)
                .collect::<Result<_, _>>()?
        }
        "tls_cert" => c.tls_cert = Some(PathBuf::from(v)),
        "tls_key" => c.tls_key = Some(PathBuf::from(v)),
        "users" => c.users = Some(PathBuf::from(v)),
        "auth_without_tls" => c.auth_without_tls = boolean(k, v)?,
        "max_message_size" => c.max_message_size = size(k, v)?,
        "max_recipients" => c.max_recipients = count(k, v)?,
        "max_connections" => c.max_connections = count(k, v)?,
        "max_connections_per_ip" => c.max_connections_per_ip = count(k, v)?,
        "idle_timeout" => c.idle_timeout = positive_duration(k, v)?,
        "smarthost" => seen.smarthost = Some(host_port(v)?),
        "smarthost_tls" => {
            c.smarthost_tls = match keyword(v, &["starttls", "tls", "none"]) {
                Some(0) => SmarthostTls::StartTls,
                Some(1) => SmarthostTls::Tls,
                Some(_) => SmarthostTls::None,
                None => return Err(bad_keyword(k, v, "starttls, tls or none")),
            }
        }
        "smarthost_auth" => c.smarthost_auth = Some(PathBuf::from(v)),
        "smarthost_verify" => c.smarthost_verify = boolean(k, v)?,
        "outbound_tls" => {
            c.outbound_tls = match keyword(v, &["opportunistic", "require", "none"]) {
                Some(0) => OutboundTls::Opportunistic,
                Some(1) => OutboundTls::Require,
                Some(_) => OutboundTls::None,
                None => return Err(bad_keyword(k, v, "opportunistic, require or none")),
            }
        }
        "tls_ca_file" => c.tls_ca_file = Some(PathBuf::from(v)),
        "dns" => {
            c.dns = list(k, v)?
                .into_iter()
                .map(name_server)
                .collect::<Result<_, _>>()?
        }
        "smtp_port" => c.smtp_port = port(k, v)?,
        "mail_dir" => c.mail_dir = PathBuf::from(v),
        "aliases" => c.aliases = PathBuf::from(v),
        "retry" => {
            // A zero delay is allowed: "try again at the next pass".
            c.retry = list(k, v)?
                .into_iter()
                .map(|d| duration(k, d))
                .collect::<Result<_, _>>()?
        }
        "max_queue_time" => c.max_queue_time = positive_duration(k, v)?,
        "queue_interval" => c.queue_interval = positive_duration(k, v)?,
        "user" => c.user = Some(user_name(v)?),
        // split_lines only lets through names from KEYS.
        _ => return Err(format!("unknown key '{k}'")),
    }
    Ok(())
}

/// Split the text into entries, rejecting malformed lines, unknown keys and repeated
/// keys (other than `listen`). Errors are `(line, what)`.
fn split_lines(text: &str) -> Result<Vec<Entry<'_>>, (usize, String)> {
    let mut entries: Vec<Entry<'_>> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        // `#` starts a comment anywhere on the line, so values can never contain one.
        let content = match raw.find('#') {
            Some(p) => &raw[..p],
            None => raw,
        }
        .trim();
        if content.is_empty() {
            continue;
        }
        let Some((key, value)) = content.split_once('=') else {
            return Err((line, "line is not 'key = value'".into()));
        };
        let (key, value) = (key.trim(), value.trim());
        if key.is_empty() {
            return Err((line, "line is not 'key = value'".into()));
        }
        let Some(&key) = KEYS.iter().find(|&&k| k == key) else {
            return Err((line, format!("unknown key '{key}'")));
        };
        if value.is_empty() {
            return Err((
                line,
                format!("{key}: missing value (comment the line out to use the default)"),
            ));
        }
        if key != "listen" {
            if let Some(first) = entries.iter().find(|e| e.key == key) {
                return Err((
                    line,
                    format!("duplicate key '{key}' (first set on line {})", first.line),
                ));
            }
        }
        entries.push(Entry { line, key, value });
    }
    Ok(entries)
}

/// A comma separated list; items are trimmed and none may be empty.
fn list<'a>(key: &str, value: &'a str) -> Result<Vec<&'a str>, String> {
    let items: Vec<&str> = value.split(',').map(str::trim).collect();
    if items.iter().any(|i| i.is_empty()) {
        return Err(format!("{key}: empty item in list '{value}'"));
    }
    Ok(items)
}

/// The index of `value` among `words`, compared case-insensitively.
fn keyword(value: &str, words: &[&str]) -> Option<usize> {
    words.iter().position(|w| w.eq_ignore_ascii_case(value))
}

fn bad_keyword(key: &str, value: &str, choices: &str) -> String {
    format!("{key}: bad value '{value}' (use {choices})")
}

/// `yes`/`no`, and the spellings other software uses for them.
fn boolean(key: &str, value: &str) -> Result<bool, String> {
    match keyword(
        value,
        &["yes", "true", "on", "1", "no", "false", "off", "0"],
    ) {
        Some(i) => Ok(i < 4),
        None => Err(bad_keyword(key, value, "yes or no")),
    }
}

/// Split `NUMBER[SUFFIX]` where the number is plain ASCII digits (no sign, no spaces).
fn number_and_suffix(value: &str) -> Option<(u64, &str)> {
    let end = value
        .find(|ch: char| !ch.is_ascii_digit())
        .unwrap_or(value.len());
    if end == 0 {
        return None;
    }
    // Only digits, so the only failure left is overflow; treat it as "too large" by the
    // caller through u64::MAX, which every range check rejects.
    let n = value[..end].parse::<u64>().unwrap_or(u64::MAX);
    Some((n, &value[end..]))
}

/// A size: bytes, or `K`/`M`/`G` (powers of 1024, either case). Never zero.
fn size(key: &str, value: &str) -> Result<u64, String> {
    let bad = || format!("{key}: bad size '{value}' (use a number with K, M or G)");
    let (n, suffix) = number_and_suffix(value).ok_or_else(bad)?;
    let shift = match suffix {
        "" => 0,
        "k" | "K" => 10,
        "m" | "M" => 20,
        "g" | "G" => 30,
        _ => return Err(bad()),
    };
    let bytes = n
        .checked_mul(1u64 << shift)
        .filter(|&b| b != u64::MAX)
        .ok_or_else(|| format!("{key}: size '{value}' is too large"))?;
    if bytes == 0 {
        return Err(format!("{key}: must be greater than 0, not '{value}'"));
    }
    Ok(bytes)
}

/// A duration: seconds, or `s`/`m`/`h`/`d`. At most [`MAX_DURATION_SECS`]; may be zero.
fn duration(key: &str, value: &str) -> Result<Duration, String> {
    let bad = || format!("{key}: bad duration '{value}' (use a number with s, m, h or d)");
    let (n, suffix) = number_and_suffix(value).ok_or_else(bad)?;
    let unit = match suffix {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    match n.checked_mul(unit) {
        Some(secs) if secs <= MAX_DURATION_SECS => Ok(Duration::from_secs(secs)),
        _ => Err(format!(
            "{key}: duration '{value}' is too long (at most 365d)"
        )),
    }
}

fn positive_duration(key: &str, value: &str) -> Result<Duration, String> {
    let d = duration(key, value)?;
    if d.is_zero() {
        return Err(format!("{key}: must be greater than 0, not '{value}'"));
    }
    Ok(d)
}

/// A count of at least 1 (a limit of zero would refuse everything).
fn count(key: &str, value: &str) -> Result<usize, String> {
    let n = match number_and_suffix(value) {
        Some((n, "")) => n,
        _ => return Err(format!("{key}: bad number '{value}'")),
    };
    if n == 0 {
        return Err(format!("{key}: must be greater than 0, not '{value}'"));
    }
    usize::try_from(n)
        .ok()
        .filter(|&n| n != usize::MAX)
        .ok_or_else(|| format!("{key}: number '{value}' is too large"))
}

/// A TCP port, 1–65535.
fn port(key: &str, value: &str) -> Result<u16, String> {
    match number_and_suffix(value) {
        Some((n, "")) => u16::try_from(n)
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| format!("{key}: bad port '{value}' (use 1 to 65535)")),
        _ => Err(format!("{key}: bad port '{value}' (use 1 to 65535)")),
    }
}

/// True for a syntactically valid host/domain name (RFC 1123 §2.1 letters, digits and
/// hyphens; labels of 1–63 characters not starting or ending with a hyphen). A single
/// trailing dot (the root) is allowed by the caller stripping it.
pub fn is_domain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_DOMAIN_LEN
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= MAX_LABEL_LEN
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// A domain name, without its trailing dot (the form used in EHLO and comparisons).
fn domain(key: &str, value: &str) -> Result<String, String> {
    let name = value.strip_suffix('.').unwrap_or(value);
    if !is_domain_name(name) {
        return Err(format!("{key}: bad domain name '{value}'"));
    }
    Ok(name.to_string())
}

/// `ADDR:PORT [ROLE]`.
fn listener(value: &str) -> Result<Listen, String> {
    let mut words = value.split_whitespace();
    let addr = words.next().unwrap_or_default();
    let role = words.next().unwrap_or("smtp");
    if words.next().is_some() {
        return Err(format!(
            "listen: too many words in '{value}' (use ADDR:PORT ROLE)"
        ));
    }
    let addr: SocketAddr = addr.parse().map_err(|_| {
        format!("listen: bad address '{addr}' (use ADDR:PORT, e.g. 0.0.0.0:25 or [::]:25)")
    })?;
    if addr.port() == 0 {
        return Err(format!("listen: bad port in '{addr}' (use 1 to 65535)"));
    }
    let role = match keyword(role, &["smtp", "submission", "submissions"]) {
        Some(0) => Role::Smtp,
        Some(1) => Role::Submission,
        Some(_) => Role::Submissions,
        None => {
            return Err(format!(
                "listen: bad role '{role}' (use smtp, submission or submissions)"
            ))
        }
    };
    Ok(Listen { addr, role })
}

/// `ADDR` or `ADDR/PREFIX`; a bare address is a single host.
fn network(item: &str) -> Result<Network, String> {
    let bad = || format!("relay_from: bad network '{item}' (use ADDR or ADDR/PREFIX)");
    let (addr, prefix) = match item.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (item, None),
    };
    let addr: IpAddr = addr.parse().map_err(|_| bad())?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        None => max,
        Some(p) => match number_and_suffix(p) {
            Some((n, "")) if n <= u64::from(max) => n as u8,
            Some((_, "")) => {
                return Err(format!(
                    "relay_from: prefix in '{item}' is longer than {max} bits"
                ))
            }
            _ => return Err(bad()),
        },
    };
    Ok(Network { addr, prefix })
}

/// `HOST[:PORT]`, with an IPv6 literal in brackets. The host is returned without
/// brackets (so it parses as an `IpAddr`); the port is `None` when not given.
fn host_port(value: &str) -> Result<(String, Option<u16>), String> {
    let bad = || format!("smarthost: bad host '{value}' (use HOST, HOST:PORT or [IPv6]:PORT)");
    let port = |p: Option<&str>| p.map(|p| port("smarthost", p)).transpose();
    if let Some(rest) = value.strip_prefix('[') {
        let (inside, after) = rest.split_once(']').ok_or_else(bad)?;
        if inside.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(bad());
        }
        let p = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or_else(bad)?),
        };
        return Ok((inside.to_string(), port(p)?));
    }
    if value.matches(':').count() > 1 {
        // A bare IPv6 literal: its last group would be taken for a port.
        return Err(bad());
    }
    let (host, p) = match value.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (value, None),
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if !is_domain_name(host) {
        return Err(bad());
    }
    Ok((host.to_string(), port(p)?))
}

/// `ADDR[:PORT]`: `192.0.2.1`, `192.0.2.1:5353`, `::1` or `[::1]:5353`.
fn name_server(item: &str) -> Result<SocketAddr, String> {
    let addr = match item.parse::<SocketAddr>() {
        Ok(a) => a,
        Err(_) => match item.parse::<IpAddr>() {
            Ok(ip) => SocketAddr::new(ip, DEFAULT_DNS_PORT),
            Err(_) => {
                return Err(format!(
                    "dns: bad name server '{item}' (use ADDR or ADDR:PORT, [IPv6]:PORT)"
                ))
            }
        },
    };
    if addr.port() == 0 {
        return Err(format!("dns: bad port in '{item}' (use 1 to 65535)"));
    }
    Ok(addr)
}

/// A plain user name (POSIX portable characters, not starting with `-`, not all digits
/// so it is never taken for a uid).
fn user_name(value: &str) -> Result<String, String> {
    let ok = value.len() <= MAX_USER_NAME_LEN
        && !value.starts_with('-')
        && !value.bytes().all(|b| b.is_ascii_digit())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if !ok {
        return Err(format!("user: bad user name '{value}'"));
    }
    Ok(value.to_string())
}

/// The effective settings as `key = value` lines, every key, in the order of the spec.
///
/// The output parses back to an equal `Config` (except `path`): values use the parser's
/// own syntax, and unset optional keys are comment lines such as `# users = (not set)`.
pub fn render(config: &Config) -> String {
    let c = config;
    let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
    let join = |items: Vec<String>| Some(items.join(", ")).filter(|s| !s.is_empty());
    let smarthost_tls = match c.smarthost_tls {
        SmarthostTls::StartTls => "starttls",
        SmarthostTls::Tls => "tls",
        SmarthostTls::None => "none",
    };
    let outbound_tls = match c.outbound_tls {
        OutboundTls::Opportunistic => "opportunistic",
        OutboundTls::Require => "require",
        OutboundTls::None => "none",
    };

    let mut out = String::new();
    setting(&mut out, "hostname", Some(c.hostname.clone()));
    setting(&mut out, "spool", Some(c.spool.display().to_string()));
    for l in &c.listen {
        let role = match l.role {
            Role::Smtp => "smtp",
            Role::Submission => "submission",
            Role::Submissions => "submissions",
        };
        setting(&mut out, "listen", Some(format!("{} {}", l.addr, role)));
    }
    setting(&mut out, "local_domains", join(c.local_domains.clone()));
    let relay_from = c.relay_from.iter().map(render_network).collect();
    setting(&mut out, "relay_from", join(relay_from));
    setting(&mut out, "tls_cert", path(&c.tls_cert));
    setting(&mut out, "tls_key", path(&c.tls_key));
    setting(&mut out, "users", path(&c.users));
    setting(
        &mut out,
        "auth_without_tls",
        Some(render_bool(c.auth_without_tls)),
    );
    setting(
        &mut out,
        "max_message_size",
        Some(render_size(c.max_message_size)),
    );
    setting(
        &mut out,
        "max_recipients",
        Some(c.max_recipients.to_string()),
    );
    setting(
        &mut out,
        "max_connections",
        Some(c.max_connections.to_string()),
    );
    let per_ip = c.max_connections_per_ip.to_string();
    setting(&mut out, "max_connections_per_ip", Some(per_ip));
    setting(
        &mut out,
        "idle_timeout",
        Some(render_duration(c.idle_timeout)),
    );
    let smarthost = c.smarthost.as_ref().map(|s| match s.host.contains(':') {
        // An IPv6 literal goes back into brackets, as the parser wants it.
        true => format!("[{}]:{}", s.host, s.port),
        false => format!("{}:{}", s.host, s.port),
    });
    setting(&mut out, "smarthost", smarthost);
    setting(&mut out, "smarthost_tls", Some(smarthost_tls.to_string()));
    setting(&mut out, "smarthost_auth", path(&c.smarthost_auth));
    setting(
        &mut out,
        "smarthost_verify",
        Some(render_bool(c.smarthost_verify)),
    );
    setting(&mut out, "outbound_tls", Some(outbound_tls.to_string()));
    setting(&mut out, "tls_ca_file", path(&c.tls_ca_file));
    match join(c.dns.iter().map(SocketAddr::to_string).collect()) {
        Some(dns) => setting(&mut out, "dns", Some(dns)),
        None => out.push_str("# dns = (from /etc/resolv.conf)\n"),
    }
    setting(&mut out, "smtp_port", Some(c.smtp_port.to_string()));
    setting(&mut out, "mail_dir", Some(c.mail_dir.display().to_string()));
    setting(&mut out, "aliases", Some(c.aliases.display().to_string()));
    let retry = c.retry.iter().map(|d| render_duration(*d)).collect();
    setting(&mut out, "retry", join(retry));
    setting(
        &mut out,
        "max_queue_time",
        Some(render_duration(c.max_queue_time)),
    );
    setting(
        &mut out,
        "queue_interval",
        Some(render_duration(c.queue_interval)),
    );
    setting(&mut out, "user", c.user.clone());
    out
}

/// One `key = value` line, or `# key = (not set)` so that the output still parses
/// (back to the default) when an optional key has no value.
fn setting(out: &mut String, key: &str, value: Option<String>) {
    match value {
        Some(v) => out.push_str(&format!("{key} = {v}\n")),
        None => out.push_str(&format!("# {key} = (not set)\n")),
    }
}

fn render_bool(b: bool) -> String {
    if b { "yes" } else { "no" }.to_string()
}

fn render_network(n: &Network) -> String {
    let full = if n.addr.is_ipv4() { 32 } else { 128 };
    if n.prefix == full {
        n.addr.to_string()
    } else {
        format!("{}/{}", n.addr, n.prefix)
    }
}

/// A size in the largest unit that divides it exactly: `25M`, `1536K`, `100`.
fn render_size(bytes: u64) -> String {
    for (shift, unit) in [(30, "G"), (20, "M"), (10, "K")] {
        if bytes != 0 && bytes.is_multiple_of(1u64 << shift) {
            return format!("{}{}", bytes >> shift, unit);
        }
    }
    bytes.to_string()
}

/// A duration in the largest unit that divides it exactly: `5d`, `90m`, `10s`.
pub fn render_duration(d: Duration) -> String {
    let secs = d.as_secs();
    for (unit_secs, unit) in [(86_400, "d"), (3600, "h"), (60, "m")] {
        if secs != 0 && secs.is_multiple_of(unit_secs) {
            return format!("{}{}", secs / unit_secs, unit);
        }
    }
    format!("{secs}s")
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "/etc/postling.conf";

    /// Parse with a fixed system host name, so tests do not depend on the machine.
    fn p(text: &str) -> Result<Config, ConfigError> {
        parse_with(Path::new(FILE), text, || "MX.example.org".to_string())
    }

    /// The lines `render` prints for `key` (set or commented out).
    fn shown(c: &Config, key: &str) -> String {
        render(c)
            .lines()
            .filter(|l| {
                let l = l.strip_prefix("# ").unwrap_or(l);
                l.split_once(" =").is_some_and(|(k, _)| k == key)
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// (config text, key, what `render` prints for that key). Each case is also
    /// checked to survive a render → parse round trip.
    const VALUES: &[(&str, &str, &str)] = &[
        // Defaults (spec table).
        ("", "hostname", "hostname = MX.example.org"),
        ("", "spool", "spool = /var/spool/postling"),
        ("", "listen", "listen = 127.0.0.1:25 smtp"),
        ("", "local_domains", "local_domains = mx.example.org"),
        ("", "relay_from", "relay_from = 127.0.0.1/8, ::1"),
        ("", "tls_cert", "# tls_cert = (not set)"),
        ("", "tls_key", "# tls_key = (not set)"),
        ("", "users", "# users = (not set)"),
        ("", "auth_without_tls", "auth_without_tls = no"),
        ("", "max_message_size", "max_message_size = 25M"),
        ("", "max_recipients", "max_recipients = 100"),
        ("", "max_connections", "max_connections = 64"),
        ("", "max_connections_per_ip", "max_connections_per_ip = 16"),
        ("", "idle_timeout", "idle_timeout = 5m"),
        ("", "smarthost", "# smarthost = (not set)"),
        ("", "smarthost_tls", "smarthost_tls = starttls"),
        ("", "smarthost_auth", "# smarthost_auth = (not set)"),
        ("", "smarthost_verify", "smarthost_verify = yes"),
        ("", "outbound_tls", "outbound_tls = opportunistic"),
        ("", "tls_ca_file", "# tls_ca_file = (not set)"),
        ("", "dns", "# dns = (from /etc/resolv.conf)"),
        ("", "smtp_port", "smtp_port = 25"),
        ("", "mail_dir", "mail_dir = /var/mail"),
        ("", "aliases", "aliases = /etc/aliases"),
        ("", "retry", "retry = 1m, 5m, 15m, 1h, 4h"),
        ("", "max_queue_time", "max_queue_time = 5d"),
        ("", "queue_interval", "queue_interval = 1m"),
        ("", "user", "# user = (not set)"),
        // hostname: kept as written, without a trailing dot.
        (
            "hostname = mail.example.com",
            "hostname",
            "hostname = mail.example.com",
        ),
        (
            "hostname = mail.example.com.",
            "hostname",
            "hostname = mail.example.com",
        ),
        ("hostname = router", "hostname", "hostname = router"),
        (
            "hostname = Mail.Example.COM",
            "local_domains",
            "local_domains = mail.example.com",
        ),
        ("spool = var/spool", "spool", "spool = var/spool"),
        // listen: role defaults to smtp, repeats, IPv6 in brackets, role case-insensitive.
        ("listen = 0.0.0.0:25", "listen", "listen = 0.0.0.0:25 smtp"),
        (
            "listen = [::]:587   submission",
            "listen",
            "listen = [::]:587 submission",
        ),
        (
            "listen = 0.0.0.0:25 smtp\nlisten = [::1]:587 SUBMISSION\n\
             tls_cert = c.pem\ntls_key = k.pem\nlisten = 0.0.0.0:465 submissions",
            "listen",
            "listen = 0.0.0.0:25 smtp\nlisten = [::1]:587 submission\n\
             listen = 0.0.0.0:465 submissions",
        ),
        (
            "local_domains = Example.ORG., example.net ,x",
            "local_domains",
            "local_domains = example.org, example.net, x",
        ),
        // relay_from: host bits are kept as written; a bare address is a host route.
        (
            "relay_from = 10.0.0.0/8,192.168.1.7, 2001:db8::/32, ::/0, 0.0.0.0/0",
            "relay_from",
            "relay_from = 10.0.0.0/8, 192.168.1.7, 2001:db8::/32, ::/0, 0.0.0.0/0",
        ),
        (
            "relay_from = 10.1.2.3/32",
            "relay_from",
            "relay_from = 10.1.2.3",
        ),
        (
            "tls_cert = /etc/ssl/mail.pem\ntls_key = /etc/ssl/mail.key",
            "tls_cert",
            "tls_cert = /etc/ssl/mail.pem",
        ),
        (
            "tls_key = k.pem\ntls_cert = c.pem",
            "tls_key",
            "tls_key = k.pem",
        ),
        (
            "users = /etc/postling.users",
            "users",
            "users = /etc/postling.users",
        ),
        // Booleans: every accepted spelling, any case, is printed as yes/no.
        (
            "auth_without_tls = yes",
            "auth_without_tls",
            "auth_without_tls = yes",
        ),
        (
            "auth_without_tls = TRUE",
            "auth_without_tls",
            "auth_without_tls = yes",
        ),
        (
            "auth_without_tls = on",
            "auth_without_tls",
            "auth_without_tls = yes",
        ),
        (
            "auth_without_tls = 1",
            "auth_without_tls",
            "auth_without_tls = yes",
        ),
        (
            "auth_without_tls = No",
            "auth_without_tls",
            "auth_without_tls = no",
        ),
        (
            "smarthost_verify = false",
            "smarthost_verify",
            "smarthost_verify = no",
        ),
        (
            "smarthost_verify = off",
            "smarthost_verify",
            "smarthost_verify = no",
        ),
        (
            "smarthost_verify = 0",
            "smarthost_verify",
            "smarthost_verify = no",
        ),
        // Sizes: powers of 1024, either case; printed in the largest exact unit.
        (
            "max_message_size = 10485760",
            "max_message_size",
            "max_message_size = 10M",
        ),
        (
            "max_message_size = 1000",
            "max_message_size",
            "max_message_size = 1000",
        ),
        (
            "max_message_size = 1536k",
            "max_message_size",
            "max_message_size = 1536K",
        ),
        (
            "max_message_size = 2048K",
            "max_message_size",
            "max_message_size = 2M",
        ),
        (
            "max_message_size = 50m",
            "max_message_size",
            "max_message_size = 50M",
        ),
        (
            "max_message_size = 1G",
            "max_message_size",
            "max_message_size = 1G",
        ),
        (
            "max_message_size = 1024g",
            "max_message_size",
            "max_message_size = 1024G",
        ),
        ("max_recipients = 1", "max_recipients", "max_recipients = 1"),
        (
            "max_connections = 1000",
            "max_connections",
            "max_connections = 1000",
        ),
        (
            "max_connections_per_ip = 4",
            "max_connections_per_ip",
            "max_connections_per_ip = 4",
        ),
        // Durations: s/m/h/d or bare seconds; printed in the largest exact unit.
        ("idle_timeout = 300", "idle_timeout", "idle_timeout = 5m"),
        ("idle_timeout = 90s", "idle_timeout", "idle_timeout = 90s"),
        ("idle_timeout = 120m", "idle_timeout", "idle_timeout = 2h"),
        ("idle_timeout = 48h", "idle_timeout", "idle_timeout = 2d"),
        ("idle_timeout = 365d", "idle_timeout", "idle_timeout = 365d"),
        // smarthost: default port 25, or 465 for implicit TLS whatever the key order.
        (
            "smarthost = relay.example.net",
            "smarthost",
            "smarthost = relay.example.net:25",
        ),
        (
            "smarthost = relay.example.net\nsmarthost_tls = tls",
            "smarthost",
            "smarthost = relay.example.net:465",
        ),
        (
            "smarthost_tls = tls\nsmarthost = relay.example.net",
            "smarthost",
            "smarthost = relay.example.net:465",
        ),
        (
            "smarthost = relay.example.net:587\nsmarthost_tls = tls",
            "smarthost",
            "smarthost = relay.example.net:587",
        ),
        (
            "smarthost = 192.0.2.1:2525",
            "smarthost",
            "smarthost = 192.0.2.1:2525",
        ),
        (
            "smarthost = [2001:db8::1]",
            "smarthost",
            "smarthost = [2001:db8::1]:25",
        ),
        (
            "smarthost = [::1]:587",
            "smarthost",
            "smarthost = [::1]:587",
        ),
        (
            "smarthost_tls = none",
            "smarthost_tls",
            "smarthost_tls = none",
        ),
        (
            "smarthost_tls = StartTLS",
            "smarthost_tls",
            "smarthost_tls = starttls",
        ),
        (
            "smarthost_auth = /etc/postling.auth",
            "smarthost_auth",
            "smarthost_auth = /etc/postling.auth",
        ),
        (
            "outbound_tls = require",
            "outbound_tls",
            "outbound_tls = require",
        ),
        ("outbound_tls = none", "outbound_tls", "outbound_tls = none"),
        (
            "tls_ca_file = /etc/ssl/ca.pem",
            "tls_ca_file",
            "tls_ca_file = /etc/ssl/ca.pem",
        ),
        // dns: default port 53; IPv6 bare or in brackets with a port.
        ("dns = 127.0.0.1:5353", "dns", "dns = 127.0.0.1:5353"),
        (
            "dns = 192.0.2.53, ::1, [2001:db8::53]:5353",
            "dns",
            "dns = 192.0.2.53:53, [::1]:53, [2001:db8::53]:5353",
        ),
        ("smtp_port = 2526", "smtp_port", "smtp_port = 2526"),
        ("mail_dir = var/mail", "mail_dir", "mail_dir = var/mail"),
        (
            "aliases = etc/dev.aliases",
            "aliases",
            "aliases = etc/dev.aliases",
        ),
        ("retry = 10s, 1m", "retry", "retry = 10s, 1m"),
        ("retry = 0, 30, 3600", "retry", "retry = 0s, 30s, 1h"),
        ("retry = 2h", "retry", "retry = 2h"),
        (
            "max_queue_time = 7d",
            "max_queue_time",
            "max_queue_time = 7d",
        ),
        (
            "max_queue_time = 36h",
            "max_queue_time",
            "max_queue_time = 36h",
        ),
        (
            "queue_interval = 30s",
            "queue_interval",
            "queue_interval = 30s",
        ),
        ("user = postling", "user", "user = postling"),
        ("user = mail_user-2.x", "user", "user = mail_user-2.x"),
        // Syntax: comments anywhere, blank lines, no spaces, CRLF line ends.
        (
            "# hostname = a.example\n\n   \n\t# x\n",
            "hostname",
            "hostname = MX.example.org",
        ),
        (
            "hostname = a.example # the name # again",
            "hostname",
            "hostname = a.example",
        ),
        ("hostname=a.example", "hostname", "hostname = a.example"),
        (
            "  hostname\t=\ta.example  ",
            "hostname",
            "hostname = a.example",
        ),
        ("spool = /var/x\r\nuser = mail\r\n", "user", "user = mail"),
        (
            "spool = /var/x\r\nuser = mail\r\n",
            "spool",
            "spool = /var/x",
        ),
        ("aliases = /etc/a=b", "aliases", "aliases = /etc/a=b"),
    ];

    #[test]
    fn values_and_round_trip() {
        for &(text, key, want) in VALUES {
            let c = p(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
            assert_eq!(shown(&c, key), want, "{text:?}");
            let again = p(&render(&c)).unwrap_or_else(|e| panic!("{text:?}: {e}"));
            assert_eq!(again, c, "{text:?} round trip");
        }
    }

    #[test]
    fn render_prints_every_key_in_spec_order() {
        let c = p("").expect("defaults");
        let rendered = render(&c);
        let keys: Vec<&str> = rendered
            .lines()
            .map(|l| {
                let l = l.strip_prefix("# ").unwrap_or(l);
                l.split(" =").next().unwrap_or(l)
            })
            .collect();
        assert_eq!(keys, KEYS);
    }

    #[test]
    fn defaults() {
        let c = p("").expect("defaults");
        assert_eq!(c.path, PathBuf::from(FILE));
        assert_eq!(c.hostname, "MX.example.org");
        assert_eq!(c.local_domains, ["mx.example.org"]);
        assert_eq!(
            c.listen,
            [Listen {
                addr: "127.0.0.1:25".parse().expect("addr"),
                role: Role::Smtp
            }]
        );
        assert_eq!(c.max_message_size, 25 * 1024 * 1024);
        assert_eq!(c.idle_timeout, Duration::from_secs(300));
        assert_eq!(c.retry.len(), 5);
        assert_eq!(c.max_queue_time, Duration::from_secs(5 * 86_400));
        assert!(c.dns.is_empty());
        assert!(c.smarthost_verify && !c.auth_without_tls);
        assert!(c.may_relay("127.0.0.1".parse().expect("ip")));
        assert!(c.may_relay("127.9.9.9".parse().expect("ip")));
        assert!(c.may_relay("::1".parse().expect("ip")));
        assert!(!c.may_relay("192.0.2.1".parse().expect("ip")));
        assert!(c.is_local_domain("mx.example.org."));
        assert!(c.is_local_domain("LOCALHOST"));
        assert!(!c.is_local_domain("example.org"));
    }

    #[test]
    fn structured_values() {
        let c = p("smarthost = [2001:db8::1]:587\ndns = ::1, 192.0.2.1\n\
                   relay_from = 10.0.0.0/8, fe80::1")
        .expect("parses");
        let sh = c.smarthost.expect("smarthost");
        // Without brackets, so the delivery code can parse it as an address.
        assert_eq!(sh.host, "2001:db8::1");
        assert_eq!(sh.port, 587);
        assert_eq!(
            c.dns,
            [
                "[::1]:53".parse::<SocketAddr>().expect("addr"),
                "192.0.2.1:53".parse().expect("addr")
            ]
        );
        assert_eq!(c.relay_from[0].prefix, 8);
        assert_eq!(c.relay_from[1].prefix, 128);
    }

    /// (config text, the exact error).
    const ERRORS: &[(&str, &str)] = &[
        ("listne = 127.0.0.1:25", "/etc/postling.conf:1: unknown key 'listne'"),
        ("\n# c\nHostname = a", "/etc/postling.conf:3: unknown key 'Hostname'"),
        ("hostname a.example", "/etc/postling.conf:1: line is not 'key = value'"),
        ("\n = a.example", "/etc/postling.conf:2: line is not 'key = value'"),
        (
            "hostname =   # nothing",
            "/etc/postling.conf:1: hostname: missing value (comment the line out to use the default)",
        ),
        (
            "user = a\n\nuser = b",
            "/etc/postling.conf:3: duplicate key 'user' (first set on line 1)",
        ),
        (
            "hostname = a_b.example",
            "/etc/postling.conf:1: hostname: bad domain name 'a_b.example'",
        ),
        ("hostname = -a.example", "/etc/postling.conf:1: hostname: bad domain name '-a.example'"),
        ("hostname = a..example", "/etc/postling.conf:1: hostname: bad domain name 'a..example'"),
        ("hostname = .", "/etc/postling.conf:1: hostname: bad domain name '.'"),
        (
            "listen = 127.0.0.1",
            "/etc/postling.conf:1: listen: bad address '127.0.0.1' (use ADDR:PORT, e.g. 0.0.0.0:25 or [::]:25)",
        ),
        (
            "listen = ::1:25",
            "/etc/postling.conf:1: listen: bad address '::1:25' (use ADDR:PORT, e.g. 0.0.0.0:25 or [::]:25)",
        ),
        ("listen = 127.0.0.1:0", "/etc/postling.conf:1: listen: bad port in '127.0.0.1:0' (use 1 to 65535)"),
        (
            "listen = 127.0.0.1:25 mx",
            "/etc/postling.conf:1: listen: bad role 'mx' (use smtp, submission or submissions)",
        ),
        (
            "listen = 127.0.0.1:25 smtp extra",
            "/etc/postling.conf:1: listen: too many words in '127.0.0.1:25 smtp extra' (use ADDR:PORT ROLE)",
        ),
        (
            "listen = 127.0.0.1:25\nlisten = 127.0.0.1:25 submission",
            "/etc/postling.conf:2: listen: 127.0.0.1:25 is already set on line 1",
        ),
        (
            "local_domains = a.example,,b.example",
            "/etc/postling.conf:1: local_domains: empty item in list 'a.example,,b.example'",
        ),
        ("local_domains = a.example,", "/etc/postling.conf:1: local_domains: empty item in list 'a.example,'"),
        ("local_domains = a b", "/etc/postling.conf:1: local_domains: bad domain name 'a b'"),
        (
            "relay_from = 10.0.0.0/33",
            "/etc/postling.conf:1: relay_from: prefix in '10.0.0.0/33' is longer than 32 bits",
        ),
        (
            "relay_from = ::/129",
            "/etc/postling.conf:1: relay_from: prefix in '::/129' is longer than 128 bits",
        ),
        (
            "relay_from = 10.0.0.0/x",
            "/etc/postling.conf:1: relay_from: bad network '10.0.0.0/x' (use ADDR or ADDR/PREFIX)",
        ),
        (
            "relay_from = 10.0.0.0/-1",
            "/etc/postling.conf:1: relay_from: bad network '10.0.0.0/-1' (use ADDR or ADDR/PREFIX)",
        ),
        (
            "relay_from = localhost",
            "/etc/postling.conf:1: relay_from: bad network 'localhost' (use ADDR or ADDR/PREFIX)",
        ),
        (
            "relay_from = 10.0.0.0/99999999999999999999999",
            "/etc/postling.conf:1: relay_from: prefix in '10.0.0.0/99999999999999999999999' is longer than 32 bits",
        ),
        // Cross-key problems name the line of the key concerned.
        ("\ntls_cert = c.pem", "/etc/postling.conf:2: tls_cert is set but tls_key is not"),
        ("user = x\ntls_key = k.pem", "/etc/postling.conf:2: tls_key is set but tls_cert is not"),
        (
            "listen = 0.0.0.0:25\nlisten = 0.0.0.0:465 submissions",
            "/etc/postling.conf:2: listen: the submissions listener 0.0.0.0:465 needs tls_cert and tls_key",
        ),
        (
            "auth_without_tls = maybe",
            "/etc/postling.conf:1: auth_without_tls: bad value 'maybe' (use yes or no)",
        ),
        (
            "smarthost_verify = y",
            "/etc/postling.conf:1: smarthost_verify: bad value 'y' (use yes or no)",
        ),
        (
            "max_message_size = 25Q",
            "/etc/postling.conf:1: max_message_size: bad size '25Q' (use a number with K, M or G)",
        ),
        (
            "max_message_size = 25 M",
            "/etc/postling.conf:1: max_message_size: bad size '25 M' (use a number with K, M or G)",
        ),
        (
            "max_message_size = M",
            "/etc/postling.conf:1: max_message_size: bad size 'M' (use a number with K, M or G)",
        ),
        (
            "max_message_size = -1",
            "/etc/postling.conf:1: max_message_size: bad size '-1' (use a number with K, M or G)",
        ),
        (
            "max_message_size = 0K",
            "/etc/postling.conf:1: max_message_size: must be greater than 0, not '0K'",
        ),
        (
            "max_message_size = 17179869184G",
            "/etc/postling.conf:1: max_message_size: size '17179869184G' is too large",
        ),
        (
            "max_message_size = 99999999999999999999",
            "/etc/postling.conf:1: max_message_size: size '99999999999999999999' is too large",
        ),
        ("max_recipients = 0", "/etc/postling.conf:1: max_recipients: must be greater than 0, not '0'"),
        ("max_recipients = ten", "/etc/postling.conf:1: max_recipients: bad number 'ten'"),
        ("max_recipients = +5", "/etc/postling.conf:1: max_recipients: bad number '+5'"),
        ("max_recipients = 5K", "/etc/postling.conf:1: max_recipients: bad number '5K'"),
        (
            "max_recipients = 99999999999999999999",
            "/etc/postling.conf:1: max_recipients: number '99999999999999999999' is too large",
        ),
        ("max_connections = 0", "/etc/postling.conf:1: max_connections: must be greater than 0, not '0'"),
        (
            "max_connections_per_ip = 1.5",
            "/etc/postling.conf:1: max_connections_per_ip: bad number '1.5'",
        ),
        (
            "idle_timeout = 5x",
            "/etc/postling.conf:1: idle_timeout: bad duration '5x' (use a number with s, m, h or d)",
        ),
        (
            "idle_timeout = 5M",
            "/etc/postling.conf:1: idle_timeout: bad duration '5M' (use a number with s, m, h or d)",
        ),
        ("idle_timeout = 0s", "/etc/postling.conf:1: idle_timeout: must be greater than 0, not '0s'"),
        (
            "idle_timeout = 366d",
            "/etc/postling.conf:1: idle_timeout: duration '366d' is too long (at most 365d)",
        ),
        (
            "idle_timeout = 999999999999999999d",
            "/etc/postling.conf:1: idle_timeout: duration '999999999999999999d' is too long (at most 365d)",
        ),
        (
            "smarthost = ::1",
            "/etc/postling.conf:1: smarthost: bad host '::1' (use HOST, HOST:PORT or [IPv6]:PORT)",
        ),
        (
            "smarthost = [relay]:25",
            "/etc/postling.conf:1: smarthost: bad host '[relay]:25' (use HOST, HOST:PORT or [IPv6]:PORT)",
        ),
        (
            "smarthost = [::1]25",
            "/etc/postling.conf:1: smarthost: bad host '[::1]25' (use HOST, HOST:PORT or [IPv6]:PORT)",
        ),
        (
            "smarthost = relay_1.example",
            "/etc/postling.conf:1: smarthost: bad host 'relay_1.example' (use HOST, HOST:PORT or [IPv6]:PORT)",
        ),
        (
            "smarthost = relay.example:70000",
            "/etc/postling.conf:1: smarthost: bad port '70000' (use 1 to 65535)",
        ),
        ("smarthost = relay.example:", "/etc/postling.conf:1: smarthost: bad port '' (use 1 to 65535)"),
        (
            "smarthost_tls = ssl",
            "/etc/postling.conf:1: smarthost_tls: bad value 'ssl' (use starttls, tls or none)",
        ),
        (
            "outbound_tls = always",
            "/etc/postling.conf:1: outbound_tls: bad value 'always' (use opportunistic, require or none)",
        ),
        (
            "dns = 8.8.8.8, dns.example",
            "/etc/postling.conf:1: dns: bad name server 'dns.example' (use ADDR or ADDR:PORT, [IPv6]:PORT)",
        ),
        ("dns = 127.0.0.1:0", "/etc/postling.conf:1: dns: bad port in '127.0.0.1:0' (use 1 to 65535)"),
        ("dns = ,", "/etc/postling.conf:1: dns: empty item in list ','"),
        ("smtp_port = 0", "/etc/postling.conf:1: smtp_port: bad port '0' (use 1 to 65535)"),
        ("smtp_port = 65536", "/etc/postling.conf:1: smtp_port: bad port '65536' (use 1 to 65535)"),
        ("retry = 1m,, 5m", "/etc/postling.conf:1: retry: empty item in list '1m,, 5m'"),
        (
            "retry = 1m, soon",
            "/etc/postling.conf:1: retry: bad duration 'soon' (use a number with s, m, h or d)",
        ),
        ("max_queue_time = 0d", "/etc/postling.conf:1: max_queue_time: must be greater than 0, not '0d'"),
        ("queue_interval = 0", "/etc/postling.conf:1: queue_interval: must be greater than 0, not '0'"),
        ("user = 1000", "/etc/postling.conf:1: user: bad user name '1000'"),
        ("user = root user", "/etc/postling.conf:1: user: bad user name 'root user'"),
        ("user = -x", "/etc/postling.conf:1: user: bad user name '-x'"),
        (
            "user = aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "/etc/postling.conf:1: user: bad user name 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'",
        ),
    ];

    #[test]
    fn errors() {
        let mut wrong = Vec::new();
        for &(text, want) in ERRORS {
            match p(text) {
                Ok(_) => wrong.push(format!("{text:?} parsed")),
                Err(e) if e.to_string() != want => wrong.push(format!("{text:?}: {e}")),
                Err(_) => {}
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    #[test]
    fn bad_system_hostname_is_a_file_error() {
        let e = parse_with(Path::new(FILE), "", || "my_box".to_string()).expect_err("invalid");
        assert_eq!(
            e.message,
            "/etc/postling.conf: the system host name 'my_box' is not a valid domain name; \
             set hostname"
        );
        // A configured hostname means the system one is never consulted.
        assert!(parse_with(Path::new(FILE), "hostname = ok.example", || "my_box".into()).is_ok());
    }

    #[test]
    fn missing_file() {
        let e = load(Path::new("/nonexistent/postling.conf")).expect_err("missing");
        assert_eq!(
            e.message,
            "/nonexistent/postling.conf: No such file or directory"
        );
    }

    #[test]
    fn round_trip_everything_set() {
        let text = "hostname = mail.example.com\nspool = /srv/spool\n\
            listen = 0.0.0.0:25\nlisten = [::]:587 submission\nlisten = 0.0.0.0:465 submissions\n\
            local_domains = example.com, example.net\nrelay_from = 10.0.0.0/8, 2001:db8::/48\n\
            tls_cert = /etc/ssl/c.pem\ntls_key = /etc/ssl/k.pem\nusers = /etc/postling.users\n\
            auth_without_tls = yes\nmax_message_size = 1536K\nmax_recipients = 7\n\
            max_connections = 9\nmax_connections_per_ip = 3\nidle_timeout = 61s\n\
            smarthost = [2001:db8::25]\nsmarthost_tls = tls\nsmarthost_auth = /etc/auth\n\
            smarthost_verify = off\noutbound_tls = require\ntls_ca_file = /etc/ca.pem\n\
            dns = 192.0.2.53, [::1]:5353\nsmtp_port = 2526\nmail_dir = /srv/mail\n\
            aliases = /srv/aliases\nretry = 0, 1h\nmax_queue_time = 25h\nqueue_interval = 10s\n\
            user = postling\n";
        let c = p(text).expect("parses");
        let rendered = render(&c);
        assert!(!rendered.contains("(not set)"), "{rendered}");
        let mut again = parse_with(Path::new("/other"), &rendered, || "x".into()).expect("again");
        assert_eq!(again.path, PathBuf::from("/other"));
        again.path = c.path.clone();
        assert_eq!(again, c);
        assert_eq!(shown(&c, "smarthost"), "smarthost = [2001:db8::25]:465");
    }

    /// (network, address, contained?)
    const NETWORKS: &[(&str, &str, bool)] = &[
        ("127.0.0.1/8", "127.0.0.1", true),
        ("127.0.0.1/8", "127.255.255.254", true),
        ("127.0.0.1/8", "128.0.0.1", false),
        ("192.0.2.7/32", "192.0.2.7", true),
        ("192.0.2.7/32", "192.0.2.8", false),
        ("192.0.2.7", "192.0.2.7", true),
        ("0.0.0.0/0", "203.0.113.9", true),
        ("0.0.0.0/0", "::1", false),
        ("10.0.0.0/8", "::ffff:10.1.2.3", true),
        ("10.0.0.0/8", "::ffff:11.1.2.3", false),
        ("::1", "::1", true),
        ("::1/128", "::2", false),
        ("2001:db8:1:2::/64", "2001:db8:1:2:ffff::1", true),
        ("2001:db8:1:2::/64", "2001:db8:1:3::1", false),
        ("::/0", "2001:db8::1", true),
        ("::/0", "192.0.2.1", false),
        ("::1", "127.0.0.1", false),
    ];

    #[test]
    fn network_contains() {
        for &(net, ip, want) in NETWORKS {
            let n = network(net).unwrap_or_else(|e| panic!("{e}"));
            let addr: IpAddr = ip.parse().expect("test address");
            assert_eq!(n.contains(addr), want, "{net} contains {ip}");
        }
    }

    #[test]
    fn example_config_parses() {
        let c = p(include_str!("../etc/postling.conf")).unwrap_or_else(|e| panic!("{e}"));
        // The example documents the defaults; what it sets must be what we default to.
        let mut defaults = p("").expect("defaults");
        defaults.hostname = c.hostname.clone();
        defaults.local_domains = c.local_domains.clone();
        assert_eq!(c, defaults);
    }

    #[test]
    fn dev_config_parses() {
        let c = parse(Path::new("etc/dev.conf"), include_str!("../etc/dev.conf"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.hostname, "postling.test");
        assert_eq!(c.listen[0].addr, "127.0.0.1:2525".parse().expect("addr"));
        assert_eq!(c.spool, PathBuf::from("var/spool"));
        assert_eq!(c.mail_dir, PathBuf::from("var/mail"));
        assert_eq!(c.aliases, PathBuf::from("etc/dev.aliases"));
        assert!(c.is_local_domain("postling.test") && c.is_local_domain("localhost"));
        assert_eq!(c.dns, ["127.0.0.1:5353".parse().expect("addr")]);
        assert_eq!(c.smtp_port, 2526);
        assert_eq!(c.retry, [Duration::from_secs(10), Duration::from_secs(60)]);
        assert_eq!(c.queue_interval, Duration::from_secs(30));
    }
}
