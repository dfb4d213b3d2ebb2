//! The `tls` family's certificates and configurations: a CA and a server
//! certificate for `localhost` and 127.0.0.1 made with rcgen when the run
//! starts, written as PEM files to a temporary directory that the servers
//! (`--tls-cert`, `--tls-key`) and the generator (`--tls-ca`) read.
//!
//! Both TLS servers, tether's and tokio-rustls's, get the very same rustls
//! server configuration (`tether::tls::server_config_from_pem`: TLS 1.3,
//! rustls's `ring` provider, ALPN `tether/1`, ECDSA P-256 certificate),
//! so what differs between them is only the I/O around rustls. The
//! generator disables TLS session resumption: every handshake of the
//! accept storm is a full one. Without the `tls` feature every function
//! here says so and fails; nothing else depends on it.

use std::path::{Path, PathBuf};

/// The PEM files of one run, removed with their directory on drop.
pub struct Files {
    pub dir: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
    /// The one key exchange group the generator offers (`--tls-kx`:
    /// x25519, p256 or p384); `None`: all of the provider's, in its order.
    pub client_kx: Option<String>,
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Files {
    /// Server arguments naming the certificate and key.
    pub fn server_args(&self) -> Vec<String> {
        vec![
            "--tls-cert".to_owned(),
            self.cert.display().to_string(),
            "--tls-key".to_owned(),
            self.key.display().to_string(),
        ]
    }

    /// Generator arguments naming the CA to trust.
    pub fn client_args(&self) -> Vec<String> {
        let mut args = vec!["--tls-ca".to_owned(), self.ca.display().to_string()];
        if let Some(kx) = &self.client_kx {
            args.extend(["--tls-kx".to_owned(), kx.clone()]);
        }
        args
    }
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(feature = "tls")]
mod on {
    use std::path::Path;
    use std::sync::Arc;

    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    use tether::tls::rustls::client::Resumption;
    use tether::tls::rustls::crypto::ring;
    use tether::tls::rustls::pki_types::ServerName;
    use tether::tls::rustls::ClientConfig;

    use super::{read, Files};

    /// The server name the generator verifies (the certificate also names
    /// 127.0.0.1).
    const SERVER_NAME: &str = "localhost";

    /// What the generator needs to open TLS sessions.
    #[derive(Clone, Debug)]
    pub struct Client {
        pub config: Arc<ClientConfig>,
        pub name: ServerName<'static>,
    }

    /// The servers' configuration.
    pub type ServerConfig = Arc<tether::tls::rustls::ServerConfig>;

    /// The rustls client session of one connection.
    pub type Session = tether::tls::rustls::ClientConnection;

    /// A fresh CA and server certificate, written to a new temporary
    /// directory.
    pub fn make_files() -> Result<Files, String> {
        let e = |what: &str, err: rcgen::Error| format!("{what}: {err}");
        let ca_key = KeyPair::generate().map_err(|err| e("CA key", err))?;
        let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(|err| e("CA", err))?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "tether bench CA");
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca.self_signed(&ca_key).map_err(|err| e("CA", err))?;
        let key = KeyPair::generate().map_err(|err| e("server key", err))?;
        let mut leaf = CertificateParams::new(vec![SERVER_NAME.to_owned(), "127.0.0.1".to_owned()])
            .map_err(|err| e("server certificate", err))?;
        leaf.distinguished_name
            .push(DnType::CommonName, "tether bench");
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = leaf
            .signed_by(&key, &ca_cert, &ca_key)
            .map_err(|err| e("server certificate", err))?;

        let dir = std::env::temp_dir().join(format!("tether-bench-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|err| format!("{}: {err}", dir.display()))?;
        let files = Files {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
            ca: dir.join("ca.pem"),
            dir,
            client_kx: None,
        };
        for (path, pem) in [
            (&files.cert, cert.pem()),
            (&files.key, key.serialize_pem()),
            (&files.ca, ca_cert.pem()),
        ] {
            std::fs::write(path, pem).map_err(|err| format!("{}: {err}", path.display()))?;
        }
        Ok(files)
    }

    /// The server configuration both TLS servers use.
    pub fn server_config(cert: &Path, key: &Path) -> Result<ServerConfig, String> {
        tether::tls::server_config_from_pem(&read(cert)?, &read(key)?, None)
            .map_err(|e| format!("TLS server configuration: {e}"))
    }

    /// The generator's configuration: trusts `ca`, never resumes a TLS
    /// session; with `kx`, offers only that key exchange group (the
    /// server's configuration is the same either way).
    pub fn client(ca: &Path, kx: Option<&str>) -> Result<Client, String> {
        let ca = read(ca)?;
        let fail = |e: &dyn std::fmt::Display| format!("TLS client configuration: {e}");
        let config = tether::tls::client_config_from_pem(&ca, None).map_err(|e| fail(&e))?;
        let mut config = (*config).clone();
        if let Some(kx) = kx {
            #[allow(deprecated)] // rustls's ring provider: see tether::tls::provider
            let group = match kx {
                "x25519" => ring::kx_group::X25519,
                "p256" => ring::kx_group::SECP256R1,
                "p384" => ring::kx_group::SECP384R1,
                other => {
                    return Err(format!(
                        "--tls-kx must be x25519, p256 or p384, not {other}"
                    ))
                }
            };
            let mut provider = (*tether::tls::provider()).clone();
            provider.kx_groups = vec![group];
            let roots = tether::tls::roots_from_pem(&ca).map_err(|e| fail(&e))?;
            let alpn = config.alpn_protocols.clone();
            config = ClientConfig::builder_with_provider(Arc::new(provider))
                .with_protocol_versions(tether::tls::PROTOCOL_VERSIONS)
                .map_err(|e| fail(&e))?
                .with_root_certificates(roots)
                .with_no_client_auth();
            config.alpn_protocols = alpn;
        }
        config.resumption = Resumption::disabled();
        let name = tether::tls::server_name(SERVER_NAME).map_err(|e| e.to_string())?;
        Ok(Client {
            config: Arc::new(config),
            name,
        })
    }
}

#[cfg(not(feature = "tls"))]
mod off {
    use std::path::Path;

    use super::Files;

    const NEEDS: &str = "the tls family needs the bench built with `--features tls`";

    /// Never built without the `tls` feature.
    #[derive(Clone, Debug)]
    pub enum Client {}

    /// Never built without the `tls` feature.
    pub enum Session {}

    /// Never built without the `tls` feature.
    pub enum ServerConfig {}

    pub fn make_files() -> Result<Files, String> {
        Err(NEEDS.to_owned())
    }

    pub fn server_config(_cert: &Path, _key: &Path) -> Result<ServerConfig, String> {
        Err(NEEDS.to_owned())
    }

    pub fn client(_ca: &Path, _kx: Option<&str>) -> Result<Client, String> {
        let _ = super::read;
        Err(NEEDS.to_owned())
    }
}

#[cfg(not(feature = "tls"))]
pub use off::*;
#[cfg(feature = "tls")]
pub use on::*;
