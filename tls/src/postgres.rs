//! A tokio-postgres configuration and rustls connector from a libpq connection string.

use std::{
    borrow::Cow,
    fmt,
    path::{Path, PathBuf},
    sync::Arc,
};

use percent_encoding::percent_decode_str;
use rustls::{ClientConfig, client::WebPkiServerVerifier};
use tokio_postgres::{Config, config::SslMode as PgSslMode};
pub use tokio_postgres_rustls::MakeRustlsConnect;

use crate::{
    SslMode, TlsError, crypto_provider, root_store,
    verify::{ChainOnly, NoVerification},
};

/// What [`connect_config`] makes of a connection string: the tokio-postgres configuration and
/// the connector that carries out its `sslmode`.
#[derive(Clone)]
pub struct PostgresTarget {
    config: Config,
    connector: MakeRustlsConnect,
    mode: SslMode,
    ca_file: Option<PathBuf>,
}

impl PostgresTarget {
    /// The tokio-postgres configuration (its `ssl_mode` is `disable`, `prefer` or `require`;
    /// the stricter checks are in the connector).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The configuration, to change what the connection string did not set.
    pub fn config_mut(&mut self) -> &mut Config {
        &mut self.config
    }

    /// The connector to pass to `Config::connect` or bb8-postgres.
    pub fn connector(&self) -> &MakeRustlsConnect {
        &self.connector
    }

    /// The `sslmode` asked for.
    pub fn mode(&self) -> SslMode {
        self.mode
    }

    /// The CA file in use, from `sslrootcert` or the caller.
    pub fn ca_file(&self) -> Option<&Path> {
        self.ca_file.as_deref()
    }

    /// The configuration and the connector.
    pub fn into_parts(self) -> (Config, MakeRustlsConnect) {
        (self.config, self.connector)
    }
}

impl fmt::Debug for PostgresTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // tokio-postgres' Config redacts the password in its Debug.
        f.debug_struct("PostgresTarget")
            .field("config", &self.config)
            .field("mode", &self.mode)
            .field("ca_file", &self.ca_file)
            .finish_non_exhaustive()
    }
}

/// Parses a `postgres://` URL or key-value connection string, taking out libpq's `sslmode`
/// and `sslrootcert` (tokio-postgres knows only part of the first and none of the second), and
/// builds the rustls connector that carries them out.
///
/// The URL's `sslrootcert` wins over `ca_file`. `sslmode` defaults to `prefer`, as in libpq:
/// a server that offers TLS gets an encrypted connection, unchecked; use `verify-full` to
/// know who answers.
///
/// # Errors
/// [`TlsError::SslMode`], [`TlsError::Postgres`] (the rest did not parse), [`TlsError::CaFile`],
/// [`TlsError::NoRoots`].
pub fn connect_config(url: &str, ca_file: Option<&Path>) -> Result<PostgresTarget, TlsError> {
    let params = split_ssl_params(url)?;
    let mut config: Config = params.rest.parse().map_err(TlsError::Postgres)?;
    let mode = params.mode.unwrap_or_default();
    config.ssl_mode(match mode {
        SslMode::Disable => PgSslMode::Disable,
        SslMode::Prefer => PgSslMode::Prefer,
        SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => PgSslMode::Require,
    });
    let ca_file = params
        .root_cert
        .map(PathBuf::from)
        .or_else(|| ca_file.map(Path::to_owned));
    let connector = connector(mode, ca_file.as_deref())?;
    Ok(PostgresTarget {
        config,
        connector,
        mode,
        ca_file,
    })
}

/// The rustls connector for `mode`, trusting `ca_file` (or the system's roots for the
/// verifying modes).
///
/// # Errors
/// [`TlsError::CaFile`], [`TlsError::NoRoots`], [`TlsError::Rustls`].
pub fn connector(mode: SslMode, ca_file: Option<&Path>) -> Result<MakeRustlsConnect, TlsError> {
    let provider = crypto_provider();
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()?;
    let check_chain = match mode {
        SslMode::VerifyCa | SslMode::VerifyFull => true,
        // libpq: `require` with a root certificate checks it, as `verify-ca`.
        SslMode::Require => ca_file.is_some(),
        SslMode::Disable | SslMode::Prefer => false,
    };
    let config = if check_chain {
        let verifier =
            WebPkiServerVerifier::builder_with_provider(Arc::new(root_store(ca_file)?), provider)
                .build()
                .map_err(|e| TlsError::Rustls(rustls::Error::General(e.to_string())))?;
        if mode == SslMode::VerifyFull {
            builder.with_webpki_verifier(verifier).with_no_client_auth()
        } else {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(ChainOnly(verifier)))
                .with_no_client_auth()
        }
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
            .with_no_client_auth()
    };
    Ok(MakeRustlsConnect::new(config))
}

/// A connection string with libpq's TLS parameters taken out.
#[derive(Debug, PartialEq, Eq)]
struct SslParams {
    rest: String,
    mode: Option<SslMode>,
    root_cert: Option<String>,
}

/// Takes `sslmode` and `sslrootcert` out of a URL's query (`?sslmode=…&…`) or a key-value
/// string (`sslmode=… host=…`).
fn split_ssl_params(url: &str) -> Result<SslParams, TlsError> {
    let mut mode = None;
    let mut root_cert = None;
    let mut take = |key: &str, value: Cow<'_, str>| -> Result<bool, TlsError> {
        match key {
            "sslmode" => mode = Some(SslMode::parse(&value)?),
            "sslrootcert" => root_cert = Some(value.into_owned()),
            _ => return Ok(false),
        }
        Ok(true)
    };
    let rest = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        match url.split_once('?') {
            None => url.to_owned(),
            Some((base, query)) => {
                let mut kept = Vec::new();
                for pair in query.split('&').filter(|pair| !pair.is_empty()) {
                    let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                    if !take(key, percent_decode_str(value).decode_utf8_lossy())? {
                        kept.push(pair);
                    }
                }
                if kept.is_empty() {
                    base.to_owned()
                } else {
                    format!("{base}?{}", kept.join("&"))
                }
            }
        }
    } else {
        let mut kept = Vec::new();
        for pair in url.split_whitespace() {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            if !take(key, Cow::Borrowed(value.trim_matches('\'')))? {
                kept.push(pair);
            }
        }
        kept.join(" ")
    };
    Ok(SslParams {
        rest,
        mode,
        root_cert,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssl_params_come_out_of_urls_and_key_value_strings() {
        let params = split_ssl_params(
            "postgres://u@h:5432/db?sslmode=verify-full&application_name=x&sslrootcert=%2Fca.pem",
        )
        .unwrap();
        assert_eq!(params.rest, "postgres://u@h:5432/db?application_name=x");
        assert_eq!(params.mode, Some(SslMode::VerifyFull));
        assert_eq!(params.root_cert.as_deref(), Some("/ca.pem"));

        let params = split_ssl_params("host=h user=u sslmode=require sslrootcert=/ca.pem").unwrap();
        assert_eq!(params.rest, "host=h user=u");
        assert_eq!(params.mode, Some(SslMode::Require));
        assert_eq!(params.root_cert.as_deref(), Some("/ca.pem"));

        let params = split_ssl_params("postgres://u@h/db?sslmode=disable").unwrap();
        assert_eq!(
            (params.rest.as_str(), params.mode),
            ("postgres://u@h/db", Some(SslMode::Disable))
        );
        let params = split_ssl_params("postgres://u@h/db").unwrap();
        assert_eq!(
            (params.rest.as_str(), params.mode),
            ("postgres://u@h/db", None)
        );
    }

    #[test]
    fn a_mode_libpq_does_not_know_is_refused() {
        let err = connect_config("postgres://h/db?sslmode=always", None).unwrap_err();
        assert!(
            matches!(err, TlsError::SslMode(ref v) if v == "always"),
            "{err}"
        );
    }

    #[test]
    fn tokio_postgres_sees_only_the_modes_it_knows() {
        for (mode, expected) in [
            ("disable", PgSslMode::Disable),
            ("prefer", PgSslMode::Prefer),
            ("require", PgSslMode::Require),
            ("verify-ca", PgSslMode::Require),
            ("verify-full", PgSslMode::Require),
        ] {
            let target =
                connect_config(&format!("postgres://u@localhost/db?sslmode={mode}"), None).unwrap();
            assert_eq!(target.config().get_ssl_mode(), expected, "{mode}");
            assert_eq!(target.mode().as_str(), mode);
        }
        let target = connect_config("postgres://u@localhost/db", None).unwrap();
        assert_eq!(target.mode(), SslMode::Prefer);
    }

    #[test]
    fn a_bad_url_is_a_url_error_without_the_password() {
        let err =
            connect_config("postgres://u:s3cret@h:notaport/db?sslmode=require", None).unwrap_err();
        assert_eq!(err.setting(), "url");
        assert!(!err.to_string().contains("s3cret"), "{err}");
    }
}
