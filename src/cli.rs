//! The command line: argv[0] dispatch (`sendmail`, `mailq`, `newaliases` are links to
//! the one binary, as busybox does) and one getopts table per subcommand.
//! Every subcommand returns a sysexits.h code; errors are one line on stderr.

use std::path::Path;

use getopts::Options;

use crate::config::{self, Config};
use crate::exit;
use crate::local::aliases::Aliases;
use crate::spool::{listing, QueueId, Spool};

const USAGE: &str = "usage: postling COMMAND [options]

  serve   [-c FILE]            run the daemon in the foreground
  flush   [-c FILE] [--due]    one delivery pass over the whole queue (--due: only
                               what the retry schedule says is due), then exit
  queue   [-c FILE] [--json]   list the queue
  queue   [-c FILE] -d ID|ALL  remove a message (ALL: every message)
  send    [-c FILE] [sendmail options] [RECIPIENT...]
                               submit a message read from stdin
  check   [-c FILE]            validate the configuration and print the effective settings
  resolve [-c FILE] DOMAIN     print the hosts and addresses delivery would try
  passwd  [NAME]               read a password, print a NAME:$6$... line for the users file
  --help | --version

The configuration file is -c FILE, else $POSTLING_CONFIG, else /etc/postling.conf.
Invoked as sendmail it is 'postling send', as mailq 'postling queue', as newaliases it
validates the aliases file. Logging goes to stderr; RUST_LOG sets the level (default info).";

pub fn main() -> i32 {
    let args: Vec<String> = std::env::args().collect();
    init_logging();
    let argv0 = args
        .first()
        .map(|a| {
            Path::new(a)
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
        })
        .unwrap_or_default()
        .unwrap_or_default();
    let rest = args.get(1..).unwrap_or(&[]);
    match argv0.as_str() {
        "sendmail" => crate::submit::main(rest),
        "mailq" => queue(rest),
        "newaliases" => newaliases(rest),
        _ => postling(rest),
    }
}

/// Run a `postling` subcommand line (also what `sendmail -bp`/`-q` map to).
pub fn run(args: &[String]) -> i32 {
    postling(args)
}

/// `newaliases [-c FILE]`.
pub fn run_newaliases(args: &[String]) -> i32 {
    newaliases(args)
}

fn postling(args: &[String]) -> i32 {
    let Some(cmd) = args.first() else {
        eprintln!("{USAGE}");
        return exit::USAGE;
    };
    let rest = &args[1..];
    match cmd.as_str() {
        "serve" => serve(rest),
        "check" => check(rest),
        "queue" => queue(rest),
        "flush" => flush(rest),
        "send" => crate::submit::main(rest),
        "resolve" => crate::dns::report::main(rest),
        "passwd" => crate::auth::passwd::main(rest),
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            exit::OK
        }
        "-V" | "--version" | "version" => {
            println!("postling {}", env!("CARGO_PKG_VERSION"));
            exit::OK
        }
        other => {
            eprintln!("postling: unknown command '{other}' (see postling --help)");
            exit::USAGE
        }
    }
}

/// Logging to stderr through env_logger, one line per event in the Postfix manner:
/// `2026-12-04T15:06:23Z postling[123]: ID: from=<a@b>, size=N, nrcpt=K`.
fn init_logging() {
    use std::io::Write;
    let env = env_logger::Env::default().default_filter_or("info");
    let _ = env_logger::Builder::from_env(env)
        .format(move |buf, record| {
            let level = match record.level() {
                log::Level::Error => "error: ",
                log::Level::Warn => "warning: ",
                log::Level::Info => "",
                log::Level::Debug => "debug: ",
                log::Level::Trace => "trace: ",
            };
            // The pid is read per line: `serve` forks (privilege separation).
            writeln!(
                buf,
                "{} postling[{}]: {level}{}",
                crate::time::iso8601(crate::time::unix_now()),
                std::process::id(),
                record.args()
            )
        })
        .try_init();
}

/// Parse options, handling `-h` and usage errors. `Err(code)` ends the command.
fn parse_opts(opts: &Options, args: &[String], usage: &str) -> Result<getopts::Matches, i32> {
    match opts.parse(args) {
        Ok(m) if m.opt_present("h") => {
            println!("usage: {usage}");
            Err(exit::OK)
        }
        Ok(m) => Ok(m),
        Err(e) => {
            eprintln!("postling: {e}\nusage: {usage}");
            Err(exit::USAGE)
        }
    }
}

fn base_options() -> Options {
    let mut o = Options::new();
    o.optopt("c", "config", "configuration file", "FILE");
    o.optflag("h", "help", "print this help");
    o
}

fn load_config(m: &getopts::Matches) -> Result<Config, i32> {
    let path = config::config_path(m.opt_str("c").as_deref());
    config::load(&path).map_err(|e| {
        eprintln!("postling: {e}");
        exit::CONFIG
    })
}

fn serve(args: &[String]) -> i32 {
    let opts = base_options();
    let m = match parse_opts(&opts, args, "postling serve [-c FILE]") {
        Ok(m) => m,
        Err(code) => return code,
    };
    if !m.free.is_empty() {
        eprintln!("postling: serve takes no arguments");
        return exit::USAGE;
    }
    match load_config(&m) {
        Ok(c) => crate::server::serve(c),
        Err(code) => code,
    }
}

fn check(args: &[String]) -> i32 {
    let opts = base_options();
    let m = match parse_opts(&opts, args, "postling check [-c FILE]") {
        Ok(m) => m,
        Err(code) => return code,
    };
    let config = match load_config(&m) {
        Ok(c) => c,
        Err(code) => return code,
    };
    // The aliases file is part of the configuration: a bad one stops `serve` too.
    if let Err(e) = Aliases::load(&config.aliases) {
        eprintln!("postling: {e}");
        return exit::CONFIG;
    }
    if let Some(path) = &config.users {
        if let Err(e) = crate::auth::users::Users::load(path) {
            eprintln!("postling: {e}");
            return exit::CONFIG;
        }
    }
    if let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) {
        if let Err(e) = crate::server::tls::server_config(cert, key) {
            eprintln!("postling: {e}");
            return exit::CONFIG;
        }
    }
    // Valid but risky settings: warnings on stderr, the exit code stays 0.
    for w in crate::lint::warnings(&config, &crate::lint::FsFacts::gather(&config)) {
        eprintln!("postling: warning: {w}");
    }
    print!("{}", config::render(&config));
    exit::OK
}

/// `flush`: one delivery pass over the whole queue (`--due`: only what the retry
/// schedule says is due, which is what `serve` runs).
fn flush(args: &[String]) -> i32 {
    let mut opts = base_options();
    opts.optflag(
        "",
        "due",
        "only messages whose retry time has come (what serve runs)",
    );
    let m = match parse_opts(&opts, args, "postling flush [-c FILE] [--due]") {
        Ok(m) => m,
        Err(code) => return code,
    };
    let config = match load_config(&m) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if let Some(path) = &config.smarthost_auth {
        if let Err(e) = crate::delivery::remote::load_smarthost_auth(path) {
            eprintln!("postling: {e}");
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
    let opts = crate::delivery::pass::PassOptions {
        force: !m.opt_present("due"),
    };
    match crate::delivery::pass::run(&config, &spool, opts) {
        Ok(s) => {
            if s.messages > 0 || s.busy > 0 {
                log::info!(
                    "pass: {} message(s): {} delivered, {} deferred, {} bounced, {} busy in another pass",
                    s.messages,
                    s.delivered,
                    s.deferred,
                    s.failed,
                    s.busy
                );
            }
            exit::OK
        }
        Err(e) => {
            eprintln!("postling: {e}");
            exit::CONFIG
        }
    }
}

fn queue(args: &[String]) -> i32 {
    let mut opts = base_options();
    opts.optflag("", "json", "one JSON object per message per line");
    opts.optopt("d", "delete", "remove a message (ALL: every message)", "ID");
    // `mailq` is also called with sendmail's -bp; accept and ignore it.
    opts.optflagopt("b", "", "(sendmail compatibility, ignored)", "p");
    let m = match parse_opts(&opts, args, "postling queue [-c FILE] [--json] [-d ID|ALL]") {
        Ok(m) => m,
        Err(code) => return code,
    };
    let config = match load_config(&m) {
        Ok(c) => c,
        Err(code) => return code,
    };
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
    if let Some(target) = m.opt_str("d") {
        return delete(&spool, &target);
    }
    let envelopes = match spool.list() {
        Ok(e) => e,
        Err(e) => {
            eprintln!(
                "postling: {}: {}",
                config.spool.display(),
                crate::time::io_reason(&e)
            );
            return exit::IOERR;
        }
    };
    if m.opt_present("json") {
        let now = crate::time::unix_now();
        for env in &envelopes {
            println!("{}", listing::json_line(env, now));
        }
    } else {
        print!("{}", listing::mailq(&envelopes));
    }
    exit::OK
}

fn delete(spool: &Spool, target: &str) -> i32 {
    let ids: Vec<QueueId> = if target == "ALL" {
        match spool.list() {
            Ok(envs) => envs.into_iter().map(|e| e.id).collect(),
            Err(e) => {
                eprintln!("postling: {}", crate::time::io_reason(&e));
                return exit::IOERR;
            }
        }
    } else {
        match QueueId::parse(target) {
            Some(id) => vec![id],
            None => {
                eprintln!("postling: '{target}' is not a queue ID");
                return exit::USAGE;
            }
        }
    };
    let mut removed = 0;
    for id in &ids {
        match spool.remove(id) {
            Ok(true) => {
                log::info!("{id}: removed");
                removed += 1;
            }
            Ok(false) => {
                eprintln!("postling: {id}: no such message");
                return exit::NOUSER;
            }
            Err(e) => {
                eprintln!("postling: {id}: {}", crate::time::io_reason(&e));
                return exit::IOERR;
            }
        }
    }
    println!("postling: removed {removed} message(s)");
    exit::OK
}

/// `newaliases`: there is no database to build; validate the file and say what is in it.
fn newaliases(args: &[String]) -> i32 {
    let opts = base_options();
    let m = match parse_opts(&opts, args, "newaliases [-c FILE]") {
        Ok(m) => m,
        Err(code) => return code,
    };
    let config = match load_config(&m) {
        Ok(c) => c,
        Err(code) => return code,
    };
    // The daemon tolerates a missing aliases file; newaliases is asked about it.
    if let Err(e) = std::fs::metadata(&config.aliases) {
        eprintln!(
            "newaliases: {}: {}",
            config.aliases.display(),
            crate::time::io_reason(&e)
        );
        return exit::CONFIG;
    }
    match Aliases::load(&config.aliases) {
        Ok(a) => {
            println!("{}: {} aliases", config.aliases.display(), a.len());
            exit::OK
        }
        Err(e) => {
            eprintln!("postling: {e}");
            exit::CONFIG
        }
    }
}
