//! rustls for covet's PostgreSQL and Redis clients.
//!
//! covet-pools, covet-health's URL checks and covet-layers' Redis rate-limit store turn this on
//! with their `tls` features; use it directly to build the same clients yourself.
//!
//! - **PostgreSQL** (feature `postgres`): [`postgres::connect_config`] reads libpq's `sslmode`
//!   and `sslrootcert` from a URL or key-value string, with libpq's meaning:
//!
//!   | `sslmode` | encrypted | server certificate checked |
//!   |---|---|---|
//!   | `disable` | no | — |
//!   | `allow`, `prefer` (the default) | when the server offers it | no |
//!   | `require` | yes | no; with a CA file, its chain (as `verify-ca`) |
//!   | `verify-ca` | yes | its chain, up to the CA file or the system's roots |
//!   | `verify-full` | yes | its chain and the host name |
//!
//! - **Redis** (feature `redis`): [`redis::client`] takes `rediss://` URLs, always verified
//!   like `verify-full`, against a CA file or the system's roots.
//!
//! The CA file is PEM (one or more certificates: a private CA, or a cloud provider's bundle
//! such as RDS's `global-bundle.pem`). Without one, the system's roots are read
//! (`rustls-native-certs`: `SSL_CERT_FILE`, `/etc/ssl/certs`, …).
//!
//! rustls runs on the process's default crypto provider, else `ring` ([`crypto_provider`]);
//! `rediss://` clients install `ring` as the default when none is
//! ([`install_default_provider`]), since redis-rs reads the default.
//!
//! ```
//! # #[cfg(feature = "postgres")]
//! # fn doc() -> Result<(), covet_tls::TlsError> {
//! let target = covet_tls::postgres::connect_config(
//!     "postgres://app@db.internal:5432/app?sslmode=verify-full",
//!     None, // or Some(Path::new("/etc/ssl/certs/rds-global-bundle.pem"))
//! )?;
//! assert_eq!(target.mode(), covet_tls::SslMode::VerifyFull);
//! // tokio-postgres sees only what it knows: `sslmode=require`, and the rustls connector.
//! assert_eq!(target.config().get_ssl_mode(), tokio_postgres::config::SslMode::Require);
//! # Ok(())
//! # }
//! # #[cfg(feature = "postgres")]
//! # doc().unwrap();
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]

use std::{
    fs,
    path::{Path, PathBuf},
    sync::Arc,
};

use rustls::{
    RootCertStore,
    crypto::CryptoProvider,
    pki_types::{CertificateDer, pem::PemObject},
};

#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub mod postgres;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod redis;
#[cfg(feature = "postgres")]
mod verify;

pub use rustls;

/// libpq's `sslmode`: whether to encrypt, and what to check of the server's certificate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum SslMode {
    /// Never encrypt.
    Disable,
    /// Encrypt when the server offers it, without checking its certificate (libpq's `allow`
    /// and `prefer`; the default).
    #[default]
    Prefer,
    /// Always encrypt; check the certificate's chain only when a CA file is given.
    Require,
    /// Always encrypt; check the chain up to the CA file (or the system's roots), not the
    /// host name.
    VerifyCa,
    /// Always encrypt; check the chain and that the certificate names the host.
    VerifyFull,
}

impl SslMode {
    /// Parses libpq's spelling (`disable`, `allow`, `prefer`, `require`, `verify-ca`,
    /// `verify-full`).
    ///
    /// # Errors
    /// [`TlsError::SslMode`] for any other value.
    pub fn parse(value: &str) -> Result<Self, TlsError> {
        Ok(match value {
            "disable" => Self::Disable,
            "allow" | "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            _ => return Err(TlsError::SslMode(value.to_owned())),
        })
    }

    /// libpq's spelling (`allow` reads back as `prefer`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }
}

/// A TLS setting that cannot be carried out; [`setting`](Self::setting) names which.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// `sslmode` has a value libpq does not know.
    #[error("sslmode={0} is not one of disable, allow, prefer, require, verify-ca, verify-full")]
    SslMode(String),
    /// The CA file cannot be read or holds no usable certificate.
    #[error("CA file {}: {reason}", path.display())]
    CaFile {
        /// The file, as given.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// No CA file is given and the system has no root certificates.
    #[error("no CA file is given and no system root certificates were found")]
    NoRoots,
    /// A CA file is given for a Redis URL that does not use TLS.
    #[error("a CA file is given but the Redis URL is not rediss://")]
    CaFileWithoutTls,
    /// The PostgreSQL connection string is not valid (tokio-postgres' error; never the
    /// password).
    #[cfg(feature = "postgres")]
    #[error("invalid PostgreSQL connection string: {0}")]
    Postgres(#[source] tokio_postgres::Error),
    /// The Redis URL is not valid (redis-rs' error; never the password).
    #[cfg(feature = "redis")]
    #[error("invalid Redis URL: {0}")]
    Redis(#[source] ::redis::RedisError),
    /// rustls refused the configuration.
    #[error("rustls: {0}")]
    Rustls(#[from] rustls::Error),
}

impl TlsError {
    /// The setting at fault: `"url"` (the connection string, its `sslmode` included) or
    /// `"ca_file"` (an unusable CA file, no roots, or a CA file given for a plain URL).
    pub fn setting(&self) -> &'static str {
        match self {
            Self::CaFile { .. } | Self::NoRoots | Self::CaFileWithoutTls => "ca_file",
            _ => "url",
        }
    }
}

/// The rustls crypto provider covet's PostgreSQL connector uses: the process default if one is
/// installed, else `ring`. Nothing is installed.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()))
}

/// Makes `ring` the process-wide default provider unless one is installed already, and returns
/// the default.
///
/// redis-rs builds its rustls configuration from the process default, which rustls can pick by
/// itself only when exactly one provider is compiled into the binary; `redis::client` calls
/// this so a binary with two never panics. An application that wants another provider installs
/// it before building its first `rediss://` client.
pub fn install_default_provider() -> Arc<CryptoProvider> {
    // Another library (or the application) may have installed one first: it stays the default.
    let _ = rustls::crypto::ring::default_provider().install_default();
    crypto_provider()
}

/// The PEM bytes of a CA file, checked to hold at least one certificate.
///
/// # Errors
/// [`TlsError::CaFile`] when it cannot be read, is not PEM or holds no certificate.
pub fn read_ca_file(path: &Path) -> Result<Vec<u8>, TlsError> {
    let fail = |reason: String| TlsError::CaFile {
        path: path.to_owned(),
        reason,
    };
    let pem = fs::read(path).map_err(|e| fail(e.to_string()))?;
    let mut found = 0;
    for cert in CertificateDer::pem_slice_iter(&pem) {
        cert.map_err(|e| fail(format!("not PEM: {e}")))?;
        found += 1;
    }
    if found == 0 {
        return Err(fail("holds no PEM certificate".into()));
    }
    Ok(pem)
}

/// The trust anchors: the CA file's certificates, or the system's roots without one.
///
/// # Errors
/// [`TlsError::CaFile`] for an unusable CA file, [`TlsError::NoRoots`] when the system has
/// none.
pub fn root_store(ca_file: Option<&Path>) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let pem = read_ca_file(path)?;
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| TlsError::CaFile {
                    path: path.to_owned(),
                    reason: format!("not PEM: {e}"),
                })?;
                store.add(cert).map_err(|e| TlsError::CaFile {
                    path: path.to_owned(),
                    reason: format!("not a usable CA certificate: {e}"),
                })?;
            }
        }
        None => {
            // Unreadable entries are skipped, as every TLS client does; none at all is an error.
            store.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
            if store.is_empty() {
                return Err(TlsError::NoRoots);
            }
        }
    }
    Ok(store)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssl_modes_read_as_libpq_spells_them() {
        for mode in ["disable", "prefer", "require", "verify-ca", "verify-full"] {
            assert_eq!(SslMode::parse(mode).unwrap().as_str(), mode);
        }
        assert_eq!(SslMode::parse("allow").unwrap(), SslMode::Prefer);
        let err = SslMode::parse("always").unwrap_err();
        assert_eq!(err.setting(), "url");
        assert!(err.to_string().starts_with("sslmode=always is not one of"));
    }

    #[test]
    fn a_ca_file_that_is_not_a_certificate_names_the_file() {
        let dir = std::env::temp_dir().join(format!("covet-tls-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        fs::write(&empty, "no certificate here\n").unwrap();
        let err = root_store(Some(&empty)).unwrap_err();
        assert_eq!(err.setting(), "ca_file");
        assert!(err.to_string().contains("empty.pem"), "{err}");
        let missing = dir.join("missing.pem");
        let err = root_store(Some(&missing)).unwrap_err();
        assert!(err.to_string().contains("missing.pem"), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_default_provider_is_installed_once_and_then_shared() {
        let installed = install_default_provider();
        assert!(Arc::ptr_eq(&installed, &install_default_provider()));
        assert!(Arc::ptr_eq(&installed, &crypto_provider()));
    }
}
