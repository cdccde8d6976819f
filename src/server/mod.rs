//! The daemon: one mio event loop serving every listener.
//!
//! This layer only moves bytes between sockets and [`Session`]s and keeps the limits
//! that need a clock or a view of all connections: `max_connections`,
//! `max_connections_per_ip`, `idle_timeout`, the shutdown grace. Everything the protocol
//! says lives in the session.
//!
//! Invariants:
//! - Nothing blocks on a peer: sockets are non-blocking, a connection whose replies are
//!   not being read stops being read from (bounded buffers), so one slow or hostile
//!   client never stalls the others.
//! - Per connection memory is bounded by [`MAX_PENDING_INPUT`] + the session's limits;
//!   an idle connection holds no buffers.
//! - On SIGTERM/SIGINT nothing acknowledged is lost: a message only gets `250` after it
//!   is durable, and sessions in DATA may finish within the grace period.

mod privsep;
mod runner;
mod signals;
mod store;
pub mod tls;
mod transport;

use std::cell::Cell;
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{debug, error, info, warn};
use mio::net::{TcpListener, TcpStream};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use rustls::ServerConfig;

use crate::auth::throttle::{AddressMemory, Policy};
use crate::auth::users::Users;
use crate::config::{self, Config, Role};
use crate::exit;
use crate::local::aliases::Aliases;
use crate::local::directory::Directory;
use crate::smtp::reply::{self, Reply};
use crate::smtp::session::{Peer, Session};
use crate::spool::{Incoming, Spool};
use runner::PassRunner;
use signals::SignalPipe;
pub use store::SpoolBackend;
use transport::Transport;

/// Unprocessed input kept per connection when the session pauses (its replies are not
/// being read). Reading stops at this size: the kernel's socket buffer and then TCP flow
/// control hold the rest.
pub const MAX_PENDING_INPUT: usize = 64 * 1024;

/// Replies waiting to be sent above which we stop reading from that client.
const MAX_PENDING_OUTPUT: usize = 64 * 1024;

/// How long sessions may take to finish after SIGTERM before they are cut off.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Bytes read from a socket per call, into one buffer shared by all connections.
const READ_CHUNK: usize = 64 * 1024;

const SIGNAL: Token = Token(usize::MAX - 1);
/// The maildrop FIFO: a local `sendmail` dropped mail.
const PICKUP: Token = Token(usize::MAX - 2);
const FIRST_CONNECTION: usize = 1024;

/// Read/process/write rounds one connection gets per turn of the event loop before the
/// others have theirs (each reads at most READ_CHUNK): a client that keeps its socket
/// full of pipelined commands must not hold the loop.
const MAX_ROUNDS_PER_TURN: usize = 4;

struct Connection {
    stream: Transport,
    ip: IpAddr,
    session: Session,
    incoming: Option<Incoming>,
    /// Input the session has not consumed yet (usually empty).
    pending: Vec<u8>,
    /// Replies not yet written.
    out: Vec<u8>,
    deadline: Instant,
    /// The last read returned WouldBlock: wait for a readable event.
    read_blocked: bool,
    peer_closed: bool,
    /// The TLS handshake finished and was logged.
    tls_logged: bool,
    /// Replies are held until then (a failed AUTH); nothing is read or sent meanwhile.
    hold_until: Option<Instant>,
    /// A received message waiting for the group commit at the end of this loop turn.
    staged: Option<(Incoming, crate::spool::Envelope)>,
    /// Its turn ended with work left: drive it again after the others.
    yielded: bool,
    /// It is in `Server::ready` (at most once).
    in_ready: bool,
}

/// Everything that can change on SIGHUP.
struct Settings {
    config: Arc<Config>,
    directory: Directory,
    /// From `tls_cert`/`tls_key`; `None` when not configured (no STARTTLS offered).
    tls: Option<Arc<ServerConfig>>,
    /// The `users` file, when configured.
    users: Option<Arc<Users>>,
}

/// Loads the `users` file when one is configured.
fn load_users(config: &Config) -> Result<Option<Arc<Users>>, String> {
    match &config.users {
        Some(path) => Users::load(path)
            .map(|u| Some(Arc::new(u)))
            .map_err(|e| e.to_string()),
        None => Ok(None),
    }
}

/// Loads the TLS certificate and key when both are configured.
fn load_tls(config: &Config) -> Result<Option<Arc<ServerConfig>>, String> {
    match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => tls::server_config(cert, key).map(Some),
        (None, None) => Ok(None),
        _ => Err(format!(
            "{}: tls_cert and tls_key must be set together",
            config.path.display()
        )),
    }
}

struct Server {
    poll: Poll,
    listeners: Vec<(TcpListener, Role)>,
    settings: Settings,
    spool: Spool,
    connections: Vec<Option<Connection>>,
    free: Vec<usize>,
    open: usize,
    per_ip: HashMap<IpAddr, usize>,
    scratch: Vec<u8>,
    /// Recent failed AUTHs per client address, across sessions.
    auth_memory: AddressMemory,
    /// Delivery passes: run here, or asked of the root parent (privilege separation).
    passes: Passes,
    /// A session queued a message since the loop last looked.
    new_mail: Cell<bool>,
    /// Set once SIGTERM/SIGINT arrived: the moment sessions are cut off.
    stopping: Option<Instant>,
    /// Connections whose turn ended with work left (no readiness event will come).
    ready: Vec<usize>,
}

/// `postling serve`: returns the process exit code.
pub fn serve(config: Config) -> i32 {
    let directory = match Aliases::load(&config.aliases) {
        Ok(a) => Directory::new(a, &config.mail_dir),
        Err(e) => {
            eprintln!("postling: {e}");
            return exit::CONFIG;
        }
    };
    let tls = match load_tls(&config) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("postling: {e}");
            return exit::CONFIG;
        }
    };
    let users = match load_users(&config) {
        Ok(u) => u,
        Err(e) => {
            eprintln!("postling: {e}");
            return exit::CONFIG;
        }
    };
    if tls.is_none() {
        if let Some(l) = config.listen.iter().find(|l| l.role == Role::Submissions) {
            eprintln!(
                "postling: {}: listen {} submissions: implicit TLS needs tls_cert and tls_key",
                config.path.display(),
                l.addr
            );
            return exit::CONFIG;
        }
    }
    let spool = match Spool::open(&config.spool) {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "postling: {}: {}",
                config.spool.display(),
                crate::time::io_reason(&e)
            );
            return exit::CANTCREAT;
        }
    };
    // Files a crash left half-written in tmp/ were never acknowledged.
    if let Err(e) = spool.clean_tmp(3600) {
        warn!(
            "{}: cleaning tmp/: {}",
            config.spool.display(),
            crate::time::io_reason(&e)
        );
    }
    if let Err(e) = spool.clean_orphans(3600) {
        warn!(
            "{}: cleaning msg/: {}",
            config.spool.display(),
            crate::time::io_reason(&e)
        );
    }
    let mut server = match Server::new(config, directory, tls, users, spool) {
        Ok(s) => s,
        Err((what, e)) => {
            eprintln!("postling: {what}: {}", crate::time::io_reason(&e));
            return exit::UNAVAILABLE;
        }
    };
    if let Some(name) = server.settings.config.user.clone() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            warn!("user = {name}: not started as root, running as we are");
        } else {
            match separate(&mut server, &name) {
                Ok(Some(code)) => return code, // the root parent, done
                Ok(None) => {}                 // the unprivileged child: serve
                Err(e) => {
                    eprintln!("postling: user = {name}: {e}");
                    return exit::CONFIG;
                }
            }
        }
    }
    match server.run() {
        Ok(()) => exit::OK,
        Err(e) => {
            error!("event loop failed: {e}");
            exit::SOFTWARE
        }
    }
}

/// Fork into a root parent that runs delivery passes and an unprivileged child that
/// serves SMTP (see `privsep`). Returns `Some(exit code)` in the parent once the child
/// has ended, `None` in the child.
fn separate(server: &mut Server, name: &str) -> Result<Option<i32>, String> {
    let (uid, gid) = privsep::lookup_user(name)?;
    privsep::hand_over_spool(server.spool.root(), uid, gid)
        .map_err(|e| format!("spool: {}", crate::time::io_reason(&e)))?;
    let (notify_r, notify_w) = privsep::notify_pipe().map_err(|e| e.to_string())?;
    // SAFETY: single-threaded here (no thread has been started), so fork is sound.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => Err(io::Error::last_os_error().to_string()),
        0 => {
            drop(notify_r);
            privsep::drop_to(uid, gid).map_err(|e| e.to_string())?;
            info!("serving as {name} (uid {uid}, gid {gid}); delivery runs as root");
            server.passes = Passes::Ask(notify_w);
            Ok(None)
        }
        child => {
            drop(notify_w);
            // The parent never touches the network: close the listeners.
            for (listener, _) in server.listeners.drain(..) {
                drop(listener);
            }
            let config = Arc::clone(&server.settings.config);
            Ok(Some(privsep::supervise(&config, child, notify_r)))
        }
    }
}

/// Who runs delivery passes.
enum Passes {
    /// This process (no privilege separation).
    Run(PassRunner),
    /// The root parent, asked through this pipe.
    Ask(std::fs::File),
}

impl Passes {
    fn request(&mut self) {
        match self {
            Passes::Run(r) => r.request(),
            Passes::Ask(w) => privsep::request_pass(w),
        }
    }
    fn poll(&mut self, now: Instant) {
        if let Passes::Run(r) = self {
            r.poll(now);
        }
    }
    fn next_deadline(&self) -> Option<Instant> {
        match self {
            Passes::Run(r) => r.next_deadline(),
            Passes::Ask(_) => None,
        }
    }
    fn set_interval(&mut self, d: Duration) {
        if let Passes::Run(r) = self {
            r.set_interval(d);
        }
    }
    /// The maildrop FIFO, when this process is the one that runs passes.
    fn fifo(&self, spool_root: &std::path::Path) -> io::Result<std::fs::File> {
        match self {
            Passes::Run(_) => crate::spool::maildrop::open_fifo(spool_root),
            Passes::Ask(_) => Err(io::Error::other("read by the root process")),
        }
    }
}

impl Server {
    fn new(
        config: Config,
        directory: Directory,
        tls: Option<Arc<ServerConfig>>,
        users: Option<Arc<Users>>,
        spool: Spool,
    ) -> Result<Server, (String, io::Error)> {
        let poll = Poll::new().map_err(|e| ("poll".to_string(), e))?;
        let mut listeners = Vec::new();
        for (i, l) in config.listen.iter().enumerate() {
            let mut listener =
                TcpListener::bind(l.addr).map_err(|e| (format!("listen {}", l.addr), e))?;
            poll.registry()
                .register(&mut listener, Token(i), Interest::READABLE)
                .map_err(|e| (format!("listen {}", l.addr), e))?;
            listeners.push((listener, l.role));
        }
        let addrs: Vec<String> = config
            .listen
            .iter()
            .map(|l| format!("{} ({:?})", l.addr, l.role).to_lowercase())
            .collect();
        info!(
            "postling {} started: hostname={}, spool={}, listening on {}",
            env!("CARGO_PKG_VERSION"),
            config.hostname,
            config.spool.display(),
            addrs.join(", ")
        );
        let passes = Passes::Run(PassRunner::new(config.path.clone(), config.queue_interval));
        Ok(Server {
            poll,
            listeners,
            settings: Settings {
                config: Arc::new(config),
                directory,
                tls,
                users,
            },
            spool,
            connections: Vec::new(),
            free: Vec::new(),
            open: 0,
            per_ip: HashMap::new(),
            scratch: vec![0; READ_CHUNK],
            auth_memory: AddressMemory::new(Policy::DEFAULT),
            passes,
            new_mail: Cell::new(false),
            stopping: None,
            ready: Vec::new(),
        })
    }

    fn run(&mut self) -> io::Result<()> {
        let signals = SignalPipe::install()?;
        let sig_fd = signals.fd();
        self.poll
            .registry()
            .register(&mut SourceFd(&sig_fd), SIGNAL, Interest::READABLE)?;
        // Local submissions poke this FIFO; without it they wait for queue_interval. With
        // privilege separation the root parent listens to it instead.
        let fifo = match self.passes.fifo(self.spool.root()) {
            Ok(f) => {
                use std::os::fd::AsRawFd;
                let fd = f.as_raw_fd();
                self.poll
                    .registry()
                    .register(&mut SourceFd(&fd), PICKUP, Interest::READABLE)?;
                Some(f)
            }
            Err(e) => {
                if matches!(self.passes, Passes::Run(_)) {
                    warn!("maildrop FIFO: {}", crate::time::io_reason(&e));
                }
                None
            }
        };
        let mut events = Events::with_capacity(256);
        loop {
            let timeout = self.next_timeout();
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
            for event in events.iter() {
                match event.token() {
                    SIGNAL => {
                        let got = signals.drain();
                        if got.reload {
                            self.reload();
                        }
                        if got.stop {
                            self.begin_shutdown();
                        }
                    }
                    PICKUP => {
                        if let Some(mut f) = fifo.as_ref() {
                            let mut buf = [0u8; 256];
                            while matches!(f.read(&mut buf), Ok(n) if n > 0) {}
                        }
                        self.passes.request();
                    }
                    Token(i) if i < self.listeners.len() => self.accept(i),
                    Token(t) if t >= FIRST_CONNECTION => {
                        let slot = t - FIRST_CONNECTION;
                        if let Some(Some(conn)) = self.connections.get_mut(slot) {
                            if event.is_readable() || event.is_read_closed() {
                                conn.read_blocked = false;
                            }
                        }
                        self.drive(slot);
                    }
                    _ => {}
                }
            }
            for slot in std::mem::take(&mut self.ready) {
                if let Some(Some(conn)) = self.connections.get_mut(slot) {
                    conn.in_ready = false;
                    self.drive(slot);
                }
            }
            self.commit_staged();
            self.expire();
            if self.new_mail.take() {
                self.passes.request();
            }
            if self.stopping.is_none() {
                self.passes.poll(Instant::now());
            }
            if self.stopping.is_some() && self.open == 0 {
                info!("stopped");
                return Ok(());
            }
        }
    }

    /// Group commit: every message that finished DATA in this loop turn is made
    /// durable together (one fsync of msg/ and one of env/ for all), then each session
    /// gets its `250` (or its error). Sessions with more pipelined mail may stage again.
    fn commit_staged(&mut self) {
        loop {
            let mut slots = Vec::new();
            let mut items = Vec::new();
            for (slot, conn) in self.connections.iter_mut().enumerate() {
                if let Some(item) = conn.as_mut().and_then(|c| c.staged.take()) {
                    slots.push(slot);
                    items.push(item);
                }
            }
            if items.is_empty() {
                return;
            }
            let results = crate::spool::commit_group(items);
            let idle = self.settings.config.idle_timeout;
            for (slot, result) in slots.into_iter().zip(results) {
                if result.is_ok() {
                    self.new_mail.set(true);
                }
                if let Some(Some(conn)) = self.connections.get_mut(slot) {
                    conn.session.handle_commit_result(result.map(|_| ()));
                    conn.deadline = Instant::now() + idle;
                }
                self.drive(slot);
            }
        }
    }

    /// The earliest idle deadline (or shutdown grace end), as a poll timeout.
    fn next_timeout(&self) -> Option<Duration> {
        if !self.ready.is_empty() {
            return Some(Duration::ZERO);
        }
        let now = Instant::now();
        let mut next = self.stopping;
        if self.stopping.is_none() {
            next = self.passes.next_deadline();
        }
        for conn in self.connections.iter().flatten() {
            let due = conn
                .hold_until
                .map_or(conn.deadline, |h| h.min(conn.deadline));
            next = Some(next.map_or(due, |n| n.min(due)));
        }
        next.map(|t| t.saturating_duration_since(now))
    }

    fn accept(&mut self, index: usize) {
        loop {
            let (mut stream, addr) = match self.listeners[index].0.accept() {
                Ok(x) => x,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    // EMFILE and friends: leave the connection in the backlog and retry
                    // on the next event rather than spinning.
                    warn!(
                        "accept on {}: {}",
                        self.settings.config.listen[index].addr, e
                    );
                    return;
                }
            };
            let ip = canonical_ip(addr);
            let config = &self.settings.config;
            let refusal = if self.open >= config.max_connections {
                Some(reply::too_many_connections())
            } else if self.per_ip.get(&ip).copied().unwrap_or(0) >= config.max_connections_per_ip {
                Some(reply::too_many_connections_from_ip())
            } else {
                None
            };
            if let Some(r) = refusal {
                info!("reject: connect from [{ip}]: {r}");
                // Best effort: a fresh socket's send buffer takes one short line.
                let _ = stream.write(&r.to_bytes());
                continue;
            }
            self.add_connection(stream, ip, index);
        }
    }

    fn add_connection(&mut self, mut tcp: TcpStream, ip: IpAddr, listener: usize) {
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.connections.push(None);
                self.connections.len() - 1
            }
        };
        if let Err(e) = self.poll.registry().register(
            &mut tcp,
            Token(FIRST_CONNECTION + slot),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            warn!("register connection from [{ip}]: {e}");
            self.free.push(slot);
            return;
        }
        let role = self.listeners[listener].1;
        let implicit_tls = role == Role::Submissions;
        let mut stream = Transport::plain(tcp);
        if let (Some(tls), true) = (&self.settings.tls, implicit_tls) {
            if let Err(e) = stream.start_tls(tls) {
                warn!("TLS setup for [{ip}]: {e}");
                let _ = self.poll.registry().deregister(stream.socket());
                self.free.push(slot);
                return;
            }
        }
        let config = Arc::clone(&self.settings.config);
        let idle = config.idle_timeout;
        let peer = Peer {
            ip: Some(ip),
            role,
            starttls: self.settings.tls.is_some(),
            implicit_tls,
            prior_auth_failures: self.auth_memory.prior_failures(ip, crate::time::unix_now()),
        };
        let mut session = Session::new(config, peer);
        if self.stopping.is_some() {
            session.begin_shutdown();
        }
        debug!("connect from [{ip}]");
        self.connections[slot] = Some(Connection {
            stream,
            ip,
            session,
            incoming: None,
            pending: Vec::new(),
            out: Vec::new(),
            deadline: Instant::now() + idle,
            read_blocked: false,
            peer_closed: false,
            tls_logged: false,
            hold_until: None,
            staged: None,
            yielded: false,
            in_ready: false,
        });
        self.open += 1;
        *self.per_ip.entry(ip).or_insert(0) += 1;
        self.drive(slot);
    }

    /// Move bytes for one connection as far as they go without blocking; close it when
    /// its session is over.
    fn drive(&mut self, slot: usize) {
        let Some(Some(conn)) = self.connections.get_mut(slot) else {
            return;
        };
        let alive = drive_connection(
            conn,
            &mut self.scratch,
            &self.spool,
            &self.settings,
            &mut self.auth_memory,
            &self.new_mail,
        );
        if !alive {
            self.close(slot);
        } else if std::mem::take(&mut conn.yielded) && !conn.in_ready {
            conn.in_ready = true;
            self.ready.push(slot);
        }
    }

    fn close(&mut self, slot: usize) {
        let Some(mut conn) = self.connections.get_mut(slot).and_then(Option::take) else {
            return;
        };
        let mut backend = SpoolBackend {
            spool: &self.spool,
            directory: &self.settings.directory,
            users: self.settings.users.as_deref(),
            incoming: &mut conn.incoming,
            group: None,
            new_mail: &self.new_mail,
        };
        conn.session.handle_disconnect(&mut backend);
        conn.stream.close();
        let _ = self.poll.registry().deregister(conn.stream.socket());
        debug!("disconnect from [{}]", conn.ip);
        self.free.push(slot);
        self.open -= 1;
        if let Some(n) = self.per_ip.get_mut(&conn.ip) {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&conn.ip);
            }
        }
    }

    /// Idle timeouts and the end of the shutdown grace.
    fn expire(&mut self) {
        let now = Instant::now();
        let grace_over = self.stopping.is_some_and(|t| now >= t);
        for slot in 0..self.connections.len() {
            let Some(conn) = self.connections[slot].as_mut() else {
                continue;
            };
            if conn.hold_until.is_some_and(|h| now >= h) && !grace_over {
                conn.hold_until = None;
                self.drive(slot);
                continue;
            }
            let reply: Reply = if grace_over {
                reply::shutting_down()
            } else if now >= conn.deadline {
                info!("timeout after {} from [{}]", phase(&conn.session), conn.ip);
                reply::idle_timeout()
            } else {
                continue;
            };
            let mut backend = SpoolBackend {
                spool: &self.spool,
                directory: &self.settings.directory,
                users: self.settings.users.as_deref(),
                incoming: &mut conn.incoming,
                group: None,
                new_mail: &self.new_mail,
            };
            conn.session.abort(&reply, &mut backend);
            conn.out.extend_from_slice(&conn.session.take_output());
            // One non-blocking attempt to say goodbye, then close.
            if !conn.stream.handshaking() {
                let _ = conn.stream.write(&conn.out);
            }
            self.close(slot);
        }
    }

    fn begin_shutdown(&mut self) {
        if self.stopping.is_some() {
            return;
        }
        info!(
            "stopping: no new connections, {} open session(s) get 421 at their next command",
            self.open
        );
        for (listener, _) in &mut self.listeners {
            let _ = self.poll.registry().deregister(listener);
        }
        self.listeners.clear();
        self.stopping = Some(Instant::now() + SHUTDOWN_GRACE);
        for slot in 0..self.connections.len() {
            if let Some(conn) = self.connections[slot].as_mut() {
                conn.session.begin_shutdown();
                // A session with a complete command already buffered answers it now.
                self.drive(slot);
            }
        }
    }

    /// SIGHUP: re-read the configuration and aliases; new sessions use them. Listener
    /// changes need a restart.
    fn reload(&mut self) {
        let path = self.settings.config.path.clone();
        let config = match config::load(&path) {
            Ok(c) => c,
            Err(e) => {
                error!("reload: {e}; keeping the running configuration");
                return;
            }
        };
        let aliases = match Aliases::load(&config.aliases) {
            Ok(a) => a,
            Err(e) => {
                error!("reload: {e}; keeping the running configuration");
                return;
            }
        };
        if config.listen != self.settings.config.listen {
            warn!("reload: listen changes take effect after a restart");
        }
        if config.spool != self.settings.config.spool {
            warn!("reload: spool changes take effect after a restart");
        }
        // A renewed certificate is picked up by new connections; a broken one keeps the
        // old one rather than turning TLS off.
        let tls = match load_tls(&config) {
            Ok(t) => t,
            Err(e) => {
                error!("reload: {e}; keeping the running configuration");
                return;
            }
        };
        if tls.is_none() && config.listen.iter().any(|l| l.role == Role::Submissions) {
            error!("reload: submissions listeners need tls_cert and tls_key; keeping the running configuration");
            return;
        }
        let users = match load_users(&config) {
            Ok(u) => u,
            Err(e) => {
                error!("reload: {e}; keeping the running configuration");
                return;
            }
        };
        self.passes.set_interval(config.queue_interval);
        info!("reloaded {}", path.display());
        self.settings = Settings {
            directory: Directory::new(aliases, &config.mail_dir),
            config: Arc::new(config),
            tls,
            users,
        };
    }
}

fn phase(session: &Session) -> &'static str {
    if session.in_data() {
        "DATA"
    } else {
        "command"
    }
}

/// IPv4-mapped IPv6 peers count as their IPv4 address (per-IP limits, relay checks).
fn canonical_ip(addr: SocketAddr) -> IpAddr {
    match addr.ip() {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// Returns false when the connection should be closed.
fn drive_connection(
    conn: &mut Connection,
    scratch: &mut [u8],
    spool: &Spool,
    settings: &Settings,
    auth_memory: &mut AddressMemory,
    new_mail: &Cell<bool>,
) -> bool {
    let directory = &settings.directory;
    let idle = settings.config.idle_timeout;
    if conn.hold_until.is_some() {
        return true; // expire() drives it again when the hold is over
    }
    let mut rounds = 0;
    loop {
        rounds += 1;
        if rounds > MAX_ROUNDS_PER_TURN {
            conn.yielded = true;
            return true;
        }
        let mut progress = false;
        // 1. Let the session work on buffered input.
        if !conn.pending.is_empty() && !conn.session.is_closed() && !conn.session.is_committing() {
            let mut backend = SpoolBackend {
                spool,
                directory,
                users: settings.users.as_deref(),
                incoming: &mut conn.incoming,
                group: Some(&mut conn.staged),
                new_mail,
            };
            let was_data = conn.session.in_data();
            let n = conn
                .session
                .handle_input(&conn.pending, crate::time::unix_now(), &mut backend);
            for _ in 0..conn.session.take_auth_failures() {
                auth_memory.record_failure(conn.ip, crate::time::unix_now());
            }
            if let Some(delay) = conn.session.take_reply_delay() {
                conn.pending.drain(..n);
                let until = Instant::now() + delay;
                conn.hold_until = Some(until);
                conn.deadline = conn.deadline.max(until + idle);
                return true;
            }
            if n > 0 {
                conn.pending.drain(..n);
                progress = true;
                // A completed command (a reply) or message bytes count as activity;
                // a client trickling a command line a byte at a time does not.
                if was_data || conn.session.pending_output() > 0 {
                    conn.deadline = Instant::now() + idle;
                }
            }
        }
        // 2. Send replies.
        if conn.session.pending_output() > 0 {
            conn.out.extend_from_slice(&conn.session.take_output());
        }
        if !conn.out.is_empty() {
            match write_some(&mut conn.stream, &mut conn.out) {
                Ok(n) => progress |= n > 0,
                Err(_) => return false,
            }
        }
        if conn.stream.flush().is_err() {
            return false;
        }
        if conn.session.is_closed() {
            // Stay open only to flush the last replies.
            return (!conn.out.is_empty() || conn.stream.has_unsent()) && !conn.peer_closed;
        }
        if conn.peer_closed {
            return false;
        }
        if conn.session.wants_tls() {
            // The 220 must leave in plaintext before the first TLS byte; the client's
            // hello waits in the socket meanwhile, so read nothing until then.
            if !conn.out.is_empty() {
                return true;
            }
            let Some(tls) = settings.tls.as_ref() else {
                return false; // the session only accepts STARTTLS when TLS is configured
            };
            if let Err(e) = conn.stream.start_tls(tls) {
                warn!("STARTTLS from [{}]: {e}", conn.ip);
                return false;
            }
            conn.pending.clear();
            conn.session.handle_tls_started();
            debug!("STARTTLS from [{}]: handshake started", conn.ip);
            progress = true;
        }
        // 3. Read more, unless the client is not reading our replies or its input
        // is piling up.
        if conn.read_blocked
            || conn.out.len() > MAX_PENDING_OUTPUT
            || conn.pending.len() >= MAX_PENDING_INPUT
        {
            if !progress {
                return true;
            }
            continue;
        }
        match conn.stream.read(scratch) {
            Ok(0) => {
                conn.peer_closed = true;
                // Let the session see what is buffered, then close.
                if conn.pending.is_empty() {
                    return false;
                }
            }
            Ok(n) => {
                conn.pending.extend_from_slice(&scratch[..n]);
                if !conn.tls_logged && !conn.stream.handshaking() {
                    if let Some(tls) = conn.stream.describe() {
                        info!("[{}]: TLS established: {tls}", conn.ip);
                        conn.tls_logged = true;
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                conn.read_blocked = true;
                if !progress {
                    return true;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
}

/// Write as much of `out` as the transport takes; drop what was written.
fn write_some(stream: &mut Transport, out: &mut Vec<u8>) -> io::Result<usize> {
    let mut written = 0;
    while written < out.len() {
        match stream.write(&out[written..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    out.drain(..written);
    Ok(written)
}
