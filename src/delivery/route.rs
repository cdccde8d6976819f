//! Where a recipient goes: a local mailbox, the smarthost, or the MX hosts of its
//! domain. Pure: the config and the address in, a [`Route`] out.

use crate::config::Config;

/// A destination a pass delivers to; remote destinations group recipients so that one
/// connection carries every message for them.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Route {
    /// A local part of a local domain (lower-cased), before alias expansion.
    Local(String),
    /// Every non-local recipient when `smarthost` is set.
    Smarthost,
    /// MX delivery to this domain (lower-cased).
    Domain(String),
}

/// The route of `address` (`local@domain`, as stored in the envelope).
pub fn route(config: &Config, address: &str) -> Route {
    // The last '@' splits: a quoted local part may contain '@' (RFC 5321 §4.1.2).
    let (local, domain) = match address.rsplit_once('@') {
        Some((l, d)) => (l, d),
        // No domain (cannot come from SMTP; a local submission may write a bare user).
        None => return Route::Local(address.to_ascii_lowercase()),
    };
    let domain = domain.to_ascii_lowercase();
    if config.is_local_domain(&domain) {
        return Route::Local(local.to_ascii_lowercase());
    }
    if config.smarthost.is_some() {
        return Route::Smarthost;
    }
    Route::Domain(domain)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config(extra: &str) -> Config {
        let text = format!("hostname = mx.test\nlocal_domains = mx.test, other.test\n{extra}");
        crate::config::parse(Path::new("t.conf"), &text).expect("config")
    }

    #[test]
    fn routes() {
        let direct = config("");
        let relayed = config("smarthost = relay.example:587\n");
        const CASES: &[(&str, &str, &str)] = &[
            // address, without smarthost, with smarthost
            ("Alice@MX.test", "local alice", "local alice"),
            ("bob@other.test", "local bob", "local bob"),
            ("root@localhost", "local root", "local root"),
            ("x@Example.NET", "domain example.net", "smarthost"),
            ("\"a@b\"@example.net", "domain example.net", "smarthost"),
            ("postmaster", "local postmaster", "local postmaster"),
        ];
        let show = |r: Route| match r {
            Route::Local(u) => format!("local {u}"),
            Route::Smarthost => "smarthost".to_string(),
            Route::Domain(d) => format!("domain {d}"),
        };
        for (addr, want_direct, want_relayed) in CASES {
            assert_eq!(show(route(&direct, addr)), *want_direct, "{addr}");
            assert_eq!(show(route(&relayed, addr)), *want_relayed, "{addr}");
        }
    }
}
