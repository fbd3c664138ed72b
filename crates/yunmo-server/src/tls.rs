//! TLS for both servers from one PEM certificate chain and key (rustls with ring). HTTP gets a listener
//! that completes handshakes off the accept loop, so a slow client cannot hold up others; gRPC gets
//! tonic's own rustls acceptor with the same files.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::server::TlsStream;

use crate::conn::{Activity, GuardedIo, Slots};
use crate::http::HttpListener;

/// A handshake must finish within this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The PEM files, read and checked once at start.
pub struct TlsFiles {
    /// Certificate chain PEM.
    pub cert: Vec<u8>,
    /// Private key PEM.
    pub key: Vec<u8>,
}

impl TlsFiles {
    /// Reads and parses both files; errors name the file.
    pub fn read(cert: &Path, key: &Path) -> anyhow::Result<TlsFiles> {
        let files = TlsFiles {
            cert: std::fs::read(cert).with_context(|| format!("cannot read server.tls.cert_file {}", cert.display()))?,
            key: std::fs::read(key).with_context(|| format!("cannot read server.tls.key_file {}", key.display()))?,
        };
        files.rustls_config(vec![]).with_context(|| format!("invalid TLS certificate or key ({}, {})", cert.display(), key.display()))?;
        Ok(files)
    }

    /// A rustls server config announcing `alpn`.
    fn rustls_config(&self, alpn: Vec<Vec<u8>>) -> anyhow::Result<ServerConfig> {
        let certs = CertificateDer::pem_slice_iter(&self.cert).collect::<Result<Vec<_>, _>>().context("certificate PEM")?;
        anyhow::ensure!(!certs.is_empty(), "the certificate file holds no certificate");
        let key = PrivateKeyDer::from_pem_slice(&self.key).context("private key PEM")?;
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(certs, key)?;
        config.alpn_protocols = alpn;
        Ok(config)
    }

    /// tonic's TLS settings for the gRPC server.
    pub fn grpc(&self) -> tonic::transport::ServerTlsConfig {
        tonic::transport::ServerTlsConfig::new().identity(tonic::transport::Identity::from_pem(&self.cert, &self.key))
    }

    /// An HTTP listener (HTTP/2 and HTTP/1.1 by ALPN) over `listener`, taking connections in `slots`.
    pub fn http_listener(&self, listener: TcpListener, slots: Slots) -> anyhow::Result<TlsListener> {
        let config = self.rustls_config(vec![b"h2".to_vec(), b"http/1.1".to_vec()])?;
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let (sender, receiver) = mpsc::channel(64);
        let task = tokio::spawn(accept_loop(listener, slots, acceptor, sender));
        Ok(TlsListener { receiver, task })
    }
}

type Accepted = (TlsStream<GuardedIo>, SocketAddr, Arc<Activity>);

async fn accept_loop(listener: TcpListener, slots: Slots, acceptor: TlsAcceptor, sender: mpsc::Sender<Accepted>) {
    loop {
        let (stream, peer) = slots.accept(&listener, "http").await;
        let activity = stream.activity();
        let acceptor = acceptor.clone();
        let sender = sender.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    let _ = sender.send((tls, peer, activity)).await;
                }
                Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake failed."),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out."),
            }
        });
    }
}

/// Yields connections whose TLS handshake has completed.
pub struct TlsListener {
    receiver: mpsc::Receiver<Accepted>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl HttpListener for TlsListener {
    type Io = TlsStream<GuardedIo>;

    async fn accept(&mut self) -> Accepted {
        match self.receiver.recv().await {
            Some(connection) => connection,
            // The accept loop never ends on its own; if it did, stop accepting.
            None => std::future::pending().await,
        }
    }
}
