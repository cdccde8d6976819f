//! `postling resolve [-c FILE] DOMAIN`: print what delivery would try for DOMAIN, in
//! order — the local mailbox, the smarthost, or the MX hosts with their addresses — for
//! administrators whose mail does not leave.
//!
//! Output goes to stdout; lookup warnings (skipped MX hosts) go to the log on stderr.
//! Exit codes (sysexits.h): 0 when delivery has somewhere to go, 69 when the result is
//! permanent (null MX, no such domain), 75 when it is temporary, 64 and 78 as usual.

use std::net::{IpAddr, SocketAddr};

use getopts::Options;

use super::{HostResult, MxResult, ResolvConf, Resolver};
use crate::config::Config;
use crate::exit;

const USAGE: &str = "postling resolve [-c FILE] DOMAIN";

/// The subcommand, from its arguments (after `resolve`) to an exit code.
pub fn main(args: &[String]) -> i32 {
    let mut opts = Options::new();
    opts.optopt("c", "config", "configuration file", "FILE");
    opts.optflag("h", "help", "print this help");
    let m = match opts.parse(args) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("postling: {e}\nusage: {USAGE}");
            return exit::USAGE;
        }
    };
    if m.opt_present("h") {
        println!("usage: {USAGE}");
        return exit::OK;
    }
    let [target] = m.free.as_slice() else {
        eprintln!("postling: resolve takes one DOMAIN\nusage: {USAGE}");
        return exit::USAGE;
    };
    let path = crate::config::config_path(m.opt_str("c").as_deref());
    let config = match crate::config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("postling: {e}");
            return exit::CONFIG;
        }
    };
    // Accept a whole address too: `postling resolve user@example.org`.
    let domain = target.rsplit('@').next().unwrap_or(target);
    let mut resolver = Resolver::new(&config);
    let (text, code) = report(&config, &mut resolver, domain);
    print!("{text}");
    code
}

/// The report and exit code for `domain`.
pub fn report(config: &Config, resolver: &mut Resolver, domain: &str) -> (String, i32) {
    let mut out = servers_line(resolver.conf(), !config.dns.is_empty());
    if config.is_local_domain(domain) {
        out.push_str(&format!(
            "{domain}: local domain, delivered to Maildir under {}/USER/\n",
            config.mail_dir.display()
        ));
        return (out, exit::OK);
    }
    if let Some(sh) = &config.smarthost {
        out.push_str(&format!(
            "{domain}: relayed through the smarthost {}, port {}\n",
            sh.host, sh.port
        ));
        let (text, code) = render_host(&sh.host, &resolver.host(&sh.host), sh.port);
        out.push_str(&text);
        return (out, code);
    }
    let (text, code) = render_mx(domain, &resolver.mx(domain), config.smtp_port);
    out.push_str(&text);
    (out, code)
}

fn servers_line(conf: &ResolvConf, from_config: bool) -> String {
    let servers: Vec<String> = conf.servers.iter().map(SocketAddr::to_string).collect();
    format!(
        "; name servers {} ({}), timeout {}s, {} attempts{}\n",
        servers.join(", "),
        if from_config {
            "dns"
        } else {
            super::RESOLV_CONF
        },
        conf.timeout.as_secs_f64(),
        conf.attempts,
        if conf.rotate { ", rotate" } else { "" }
    )
}

fn addr_list(addrs: &[IpAddr]) -> String {
    addrs
        .iter()
        .map(IpAddr::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The MX part of the report.
pub fn render_mx(domain: &str, result: &MxResult, port: u16) -> (String, i32) {
    match result {
        MxResult::Found(hosts) => {
            let implicit = hosts.iter().all(|h| h.implicit);
            let mut out = if implicit {
                format!(
                    "{domain}: no MX records, the domain's own addresses are used \
                     (implicit MX, RFC 5321 §5.1), port {port}:\n"
                )
            } else {
                format!("{domain}: MX hosts in the order delivery tries them, port {port}:\n")
            };
            for h in hosts {
                if h.implicit {
                    out.push_str(&format!("  {}: {}\n", h.name, addr_list(&h.addrs)));
                } else {
                    out.push_str(&format!(
                        "  {} (preference {}): {}\n",
                        h.name,
                        h.preference,
                        addr_list(&h.addrs)
                    ));
                }
            }
            let shuffled = hosts
                .windows(2)
                .any(|w| !w[0].implicit && w[0].preference == w[1].preference);
            if shuffled {
                out.push_str("  (hosts of equal preference are shuffled on every lookup)\n");
            }
            (out, exit::OK)
        }
        MxResult::NullMx => (
            format!(
                "{domain}: null MX (RFC 7505): the domain accepts no mail; \
                 delivery bounces at once (5.1.10)\n"
            ),
            exit::UNAVAILABLE,
        ),
        MxResult::NoSuchDomain => (
            format!("{domain}: no such domain (NXDOMAIN); delivery bounces\n"),
            exit::UNAVAILABLE,
        ),
        MxResult::Temporary(reason) => (
            format!("{domain}: temporary DNS failure: {reason}; delivery defers\n"),
            exit::TEMPFAIL,
        ),
    }
}

/// The smarthost part of the report. An unresolvable smarthost defers (spec).
pub fn render_host(name: &str, result: &HostResult, port: u16) -> (String, i32) {
    match result {
        HostResult::Found(addrs) => (
            format!("  {name}: {}, port {port}\n", addr_list(addrs)),
            exit::OK,
        ),
        HostResult::NotFound(reason) | HostResult::Temporary(reason) => (
            format!("  {name}: cannot be resolved: {reason}; delivery defers\n"),
            exit::TEMPFAIL,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::MxHost;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn mx_reports() {
        let two = MxResult::Found(vec![
            MxHost {
                name: "mx1.example.test".into(),
                preference: 10,
                addrs: vec![ip("::2"), ip("127.0.0.2")],
                implicit: false,
            },
            MxHost {
                name: "mx2.example.test".into(),
                preference: 10,
                addrs: vec![ip("127.0.0.3")],
                implicit: false,
            },
        ]);
        let implicit = MxResult::Found(vec![MxHost {
            name: "example.test".into(),
            preference: 0,
            addrs: vec![ip("127.0.0.5")],
            implicit: true,
        }]);
        // (result, exact output, exit code)
        let cases: Vec<(MxResult, &str, i32)> = vec![
            (
                two,
                "example.test: MX hosts in the order delivery tries them, port 25:\n  \
                 mx1.example.test (preference 10): ::2, 127.0.0.2\n  \
                 mx2.example.test (preference 10): 127.0.0.3\n  \
                 (hosts of equal preference are shuffled on every lookup)\n",
                0,
            ),
            (
                implicit,
                "example.test: no MX records, the domain's own addresses are used \
                 (implicit MX, RFC 5321 §5.1), port 25:\n  example.test: 127.0.0.5\n",
                0,
            ),
            (
                MxResult::NullMx,
                "example.test: null MX (RFC 7505): the domain accepts no mail; \
                 delivery bounces at once (5.1.10)\n",
                69,
            ),
            (
                MxResult::NoSuchDomain,
                "example.test: no such domain (NXDOMAIN); delivery bounces\n",
                69,
            ),
            (
                MxResult::Temporary("timed out from 127.0.0.1:53".into()),
                "example.test: temporary DNS failure: timed out from 127.0.0.1:53; delivery defers\n",
                75,
            ),
        ];
        for (result, text, code) in cases {
            assert_eq!(
                render_mx("example.test", &result, 25),
                (text.to_string(), code)
            );
        }
    }

    #[test]
    fn host_reports() {
        let cases: Vec<(HostResult, &str, i32)> = vec![
            (
                HostResult::Found(vec![ip("192.0.2.1")]),
                "  relay.test: 192.0.2.1, port 587\n",
                0,
            ),
            (
                HostResult::NotFound("relay.test does not exist".into()),
                "  relay.test: cannot be resolved: relay.test does not exist; delivery defers\n",
                75,
            ),
        ];
        for (result, text, code) in cases {
            assert_eq!(
                render_host("relay.test", &result, 587),
                (text.to_string(), code)
            );
        }
    }
}
