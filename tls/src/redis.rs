//! A redis-rs client for `rediss://` URLs, trusting a CA file or the system's roots.

use std::path::Path;

use redis::{Client, ConnectionAddr, IntoConnectionInfo, TlsCertificates};

use crate::{TlsError, install_default_provider, read_ca_file};

/// A client for a `redis://` or `rediss://` URL; with `ca_file`, a `rediss://` server's
/// certificate must chain up to it (and name the host), instead of to the system's roots.
///
/// Pass `client.get_connection_info().clone()` to bb8-redis' `RedisConnectionManager::new`
/// to pool it: the CA travels with the connection info.
///
/// # Errors
/// [`TlsError::Redis`] for a URL redis-rs refuses, [`TlsError::CaFile`],
/// [`TlsError::CaFileWithoutTls`] for a CA file with a `redis://` URL (a CA only means
/// something with TLS: the URL is probably wrong).
pub fn client(url: &str, ca_file: Option<&Path>) -> Result<Client, TlsError> {
    // redis-rs builds its rustls configuration from the process default provider.
    install_default_provider();
    let info = url.into_connection_info().map_err(TlsError::Redis)?;
    let Some(ca_file) = ca_file else {
        return Client::open(info).map_err(TlsError::Redis);
    };
    if !matches!(info.addr(), ConnectionAddr::TcpTls { .. }) {
        return Err(TlsError::CaFileWithoutTls);
    }
    let root_cert = read_ca_file(ca_file)?;
    Client::build_with_tls(
        info,
        TlsCertificates {
            client_tls: None,
            root_cert: Some(root_cert),
        },
    )
    .map_err(|e| TlsError::CaFile {
        path: ca_file.to_owned(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_with_a_plain_url_is_refused() {
        let err = client(
            "redis://127.0.0.1:6379",
            Some(Path::new("/nonexistent.pem")),
        )
        .unwrap_err();
        assert!(matches!(err, TlsError::CaFileWithoutTls), "{err}");
        assert_eq!(err.setting(), "ca_file");
    }

    #[test]
    fn a_missing_ca_file_names_itself() {
        let err = client(
            "rediss://127.0.0.1:6390",
            Some(Path::new("/nonexistent/ca.pem")),
        )
        .unwrap_err();
        assert_eq!(err.setting(), "ca_file");
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
    }

    #[test]
    fn rediss_urls_are_understood() {
        let client = client("rediss://:s3cret@cache.internal:6380/1", None).unwrap();
        assert!(matches!(
            client.get_connection_info().addr(),
            ConnectionAddr::TcpTls { host, port: 6380, .. } if host == "cache.internal"
        ));
    }
}
