//! TLS with rustls (feature `tls`): configurations for
//! [`Reactor::listen_tls`](crate::Reactor::listen_tls) and
//! [`Reactor::dial_tls`](crate::Reactor::dial_tls), built from PEM.
//!
//! TLS sits in each connection's socket I/O, below the frame codec: the
//! TLS handshake comes first, then the tether protocol runs unchanged
//! inside the TLS stream, from HELLO on (`docs/PROTOCOL.md`). The
//! handshake timeout covers the TLS handshake and HELLO together; every
//! byte received, TLS records included, is proof of life. A failed
//! handshake ends that attempt with
//! [`DisconnectReason::Tls`](crate::DisconnectReason::Tls), whose
//! [`TlsFailure`] says what failed; a dialed link backs off and redials
//! as after any failed attempt.
//!
//! The crypto provider is rustls's `ring` (no OpenSSL, no C toolchain
//! beyond what `ring` needs); the helpers here pass it explicitly, so they
//! work whatever process-wide default provider is (or is not) installed.
//! The helpers' configurations speak TLS 1.3 only ([`PROTOCOL_VERSIONS`]);
//! TLS 1.2 is there for configurations that enable it.
//!
//! The ALPN id is [`ALPN`] (`tether/1`). The helpers set it; a
//! configuration of your own that lacks it gets it added by
//! `listen_tls`/`dial_tls` (on a copy: the `Arc` you passed is not
//! changed), so that both ends always offer it.
//!
//! ```no_run
//! # fn main() -> std::io::Result<()> {
//! use std::path::Path;
//! use tether::{tls, Reactor};
//!
//! let mut server = Reactor::new()?;
//! let config = tls::server_config_from_files(
//!     Path::new("cert.pem"), Path::new("key.pem"), None)?;
//! server.listen_tls("0.0.0.0:7443".parse().unwrap(), config)?;
//!
//! let mut client = Reactor::new()?;
//! let config = tls::client_config_from_files(Path::new("ca.pem"), None)?;
//! let name = tls::server_name("example.com")?;
//! let server: tether::Endpoint = "example.com:7443".parse().expect("host:port");
//! client.dial_tls(server, name, config);
//! # Ok(()) }
//! ```

use std::fs;
use std::io;
use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::error::TlsFailure;

pub use rustls;
pub use rustls_pki_types;

/// The ALPN protocol id of tether over TLS.
pub const ALPN: &[u8] = b"tether/1";

/// The TLS versions of the configurations the helpers build: TLS 1.3
/// only, as the wire contract asks ("1.3, or 1.2 where configured"). For
/// TLS 1.2 as well, build the configuration yourself (for example with
/// [`provider`] and `with_protocol_versions(rustls::ALL_VERSIONS)`) and
/// pass it to `listen_tls`/`dial_tls`.
pub const PROTOCOL_VERSIONS: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];

/// The crypto provider of the helpers: rustls's `ring`.
///
/// rustls 0.23.48 marks `ring`'s provider deprecated because it offers no
/// post-quantum key exchange (X25519MLKEM768 needs `aws-lc-rs`, whose
/// build wants cmake or a larger C toolchain); the classical suites and
/// groups it does offer (X25519, P-256, P-384; AES-GCM, ChaCha20-Poly1305)
/// are rustls's defaults. An application that wants post-quantum key
/// exchange builds its own configuration with another provider and
/// passes it to `listen_tls`/`dial_tls`.
///
/// Its key exchange groups are offered X25519 first (then P-256, P-384):
/// `ring`'s default order puts P-384 first, and a server follows the
/// client's order, so two tether ends would otherwise agree on P-384,
/// which costs the server about five times the CPU of X25519 per
/// handshake (docs/TLS.md has the measured figures).
#[allow(deprecated)]
pub fn provider() -> Arc<CryptoProvider> {
    use rustls::crypto::ring::kx_group;
    let mut provider = rustls::crypto::ring::default_provider();
    provider.kx_groups = vec![kx_group::X25519, kx_group::SECP256R1, kx_group::SECP384R1];
    Arc::new(provider)
}

fn invalid(what: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, what.to_string())
}

/// The certificates of a PEM document (at least one).
pub fn certs_from_pem(pem: &[u8]) -> io::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(format_args!("bad certificate PEM: {e}")))?;
    if certs.is_empty() {
        return Err(invalid("no certificate in the PEM"));
    }
    Ok(certs)
}

/// The private key of a PEM document (PKCS#8, PKCS#1 or SEC1).
pub fn key_from_pem(pem: &[u8]) -> io::Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_slice(pem)
        .map_err(|e| invalid(format_args!("bad private key PEM: {e}")))
}

/// A root store holding the certificates of a PEM document.
pub fn roots_from_pem(pem: &[u8]) -> io::Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for cert in certs_from_pem(pem)? {
        roots
            .add(cert)
            .map_err(|e| invalid(format_args!("bad CA certificate: {e}")))?;
    }
    Ok(roots)
}

fn read(path: &Path) -> io::Result<Vec<u8>> {
    fs::read(path).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

/// A server configuration from a PEM certificate chain (leaf first) and
/// its key; with `client_ca`, clients must present a certificate that
/// chains to one of its certificates. ALPN is `tether/1`.
pub fn server_config_from_pem(
    cert_chain: &[u8],
    key: &[u8],
    client_ca: Option<&[u8]>,
) -> io::Result<Arc<ServerConfig>> {
    let chain = certs_from_pem(cert_chain)?;
    let key = key_from_pem(key)?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(PROTOCOL_VERSIONS)
        .map_err(invalid)?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let roots = Arc::new(roots_from_pem(ca)?);
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider())
                .build()
                .map_err(invalid)?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(chain, key).map_err(invalid)?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    Ok(Arc::new(config))
}

/// [`server_config_from_pem`] with the PEM documents read from files.
pub fn server_config_from_files(
    cert_chain: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> io::Result<Arc<ServerConfig>> {
    let ca = client_ca.map(read).transpose()?;
    server_config_from_pem(&read(cert_chain)?, &read(key)?, ca.as_deref())
}

/// A client configuration trusting the CA certificates of a PEM
/// document; with `client_cert` (a PEM chain and its key) it presents
/// that certificate to servers that ask for one. ALPN is `tether/1`.
pub fn client_config_from_pem(
    roots: &[u8],
    client_cert: Option<(&[u8], &[u8])>,
) -> io::Result<Arc<ClientConfig>> {
    let roots = roots_from_pem(roots)?;
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(PROTOCOL_VERSIONS)
        .map_err(invalid)?
        .with_root_certificates(roots);
    let mut config = match client_cert {
        None => builder.with_no_client_auth(),
        Some((chain, key)) => builder
            .with_client_auth_cert(certs_from_pem(chain)?, key_from_pem(key)?)
            .map_err(invalid)?,
    };
    config.alpn_protocols = vec![ALPN.to_vec()];
    Ok(Arc::new(config))
}

/// [`client_config_from_pem`] with the PEM documents read from files
/// (`client_cert`: the certificate chain's file and the key's).
pub fn client_config_from_files(
    roots: &Path,
    client_cert: Option<(&Path, &Path)>,
) -> io::Result<Arc<ClientConfig>> {
    let cert = match client_cert {
        Some((chain, key)) => Some((read(chain)?, read(key)?)),
        None => None,
    };
    client_config_from_pem(
        &read(roots)?,
        cert.as_ref().map(|(c, k)| (c.as_slice(), k.as_slice())),
    )
}

/// The name to verify the server's certificate against: a DNS name or an
/// IP address.
pub fn server_name(name: &str) -> io::Result<ServerName<'static>> {
    ServerName::try_from(name.to_owned()).map_err(|e| invalid(format_args!("{name:?}: {e}")))
}

/// `config` with [`ALPN`] among its protocols (a copy if it lacked it).
pub(crate) fn with_alpn_server(config: Arc<ServerConfig>) -> Arc<ServerConfig> {
    if config.alpn_protocols.iter().any(|p| p == ALPN) {
        return config;
    }
    let mut config = (*config).clone();
    config.alpn_protocols.push(ALPN.to_vec());
    Arc::new(config)
}

/// `config` with [`ALPN`] among its protocols (a copy if it lacked it).
pub(crate) fn with_alpn_client(config: Arc<ClientConfig>) -> Arc<ClientConfig> {
    if config.alpn_protocols.iter().any(|p| p == ALPN) {
        return config;
    }
    let mut config = (*config).clone();
    config.alpn_protocols.push(ALPN.to_vec());
    Arc::new(config)
}

/// What a rustls error says failed; `handshaking`: it came before the
/// handshake completed (where a record that does not parse means the peer
/// does not speak TLS).
pub(crate) fn failure_of(error: &rustls::Error, handshaking: bool) -> TlsFailure {
    use rustls::{AlertDescription as Alert, CertificateError as Cert, Error};
    match error {
        Error::InvalidCertificate(cert) => match cert {
            Cert::Expired
            | Cert::ExpiredContext { .. }
            | Cert::NotValidYet
            | Cert::NotValidYetContext { .. } => TlsFailure::Expired,
            Cert::NotValidForName | Cert::NotValidForNameContext { .. } => TlsFailure::NameMismatch,
            _ => TlsFailure::UntrustedCertificate,
        },
        Error::NoCertificatesPresented | Error::AlertReceived(Alert::CertificateRequired) => {
            TlsFailure::ClientCertRequired
        }
        Error::AlertReceived(_) => TlsFailure::PeerAlert,
        Error::InvalidMessage(_) | Error::InappropriateMessage { .. } if handshaking => {
            TlsFailure::NotTls
        }
        Error::NoApplicationProtocol | Error::PeerIncompatible(_) => TlsFailure::Incompatible,
        _ => TlsFailure::Other,
    }
}
