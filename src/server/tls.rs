//! The server's TLS setup: certificate chain and key from PEM files into a rustls
//! `ServerConfig` (ring provider, TLS 1.2 and 1.3).
//!
//! Errors name the file and say what is wrong in one line, because an administrator
//! reads them at startup (exit 78) or in the log after SIGHUP.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;

/// Builds the server TLS configuration from `cert` (chain, leaf first) and `key`.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, String> {
    let chain = load_chain(cert)?;
    let key_der = load_key(key)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_no_client_auth();
    // with_single_cert checks that the private key belongs to the leaf certificate.
    let config = builder.with_single_cert(chain, key_der).map_err(|e| {
        format!(
            "{} and {}: certificate and key do not match or are unusable: {e}",
            cert.display(),
            key.display()
        )
    })?;
    Ok(Arc::new(config))
}

fn load_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    // Read the file ourselves first so an unreadable file gives the OS reason.
    let pem = std::fs::read(path)
        .map_err(|e| format!("{}: {}", path.display(), crate::time::io_reason(&e)))?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: bad PEM certificate: {e}", path.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "{}: no PEM certificate (-----BEGIN CERTIFICATE-----) found",
            path.display()
        ));
    }
    Ok(chain)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let pem = std::fs::read(path)
        .map_err(|e| format!("{}: {}", path.display(), crate::time::io_reason(&e)))?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        format!(
            "{}: no usable PEM private key (PKCS#8, PKCS#1 or SEC1): {e}",
            path.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_files_are_named() {
        let e = server_config(Path::new("/nonexistent/cert.pem"), Path::new("/k.pem"))
            .expect_err("missing");
        assert!(e.starts_with("/nonexistent/cert.pem: "), "{e}");
    }

    #[test]
    fn a_file_without_pem_is_named() {
        let dir = std::env::temp_dir().join(format!("postling-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let cert = dir.join("cert.pem");
        std::fs::write(&cert, "not a certificate\n").expect("write");
        let e = server_config(&cert, &cert).expect_err("no pem");
        assert!(e.contains("cert.pem: no PEM certificate"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
