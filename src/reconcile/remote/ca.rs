//! An HTTPS server's certificate checked against `--git-ca-file` (PEM, one
//! or more certificates, every one a trust anchor: a private CA, with its
//! intermediates when the server does not send them), with OpenSSL: signed
//! by one of them, in its validity period, and naming the host (or the IP
//! address) the URL names.

use std::net::IpAddr;
use std::path::Path;

use openssl::stack::Stack;
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::verify::X509VerifyParam;
use openssl::x509::{X509, X509StoreContext};

/// The certificates of the file; an error says why there are none.
pub(super) fn load(file: &Path) -> Result<Vec<X509>, String> {
    let pem = std::fs::read(file).map_err(|e| format!("cannot read `{}`: {e}", file.display()))?;
    let certs = X509::stack_from_pem(&pem)
        .map_err(|e| format!("`{}` holds no PEM certificate: {e}", file.display()))?;
    if certs.is_empty() {
        return Err(format!("`{}` holds no PEM certificate", file.display()));
    }
    Ok(certs)
}

/// Whether the server certificate `der` is signed by a certificate of
/// `file` and names `host`.
pub(super) fn verify(file: &Path, der: &[u8], host: &str) -> Result<(), String> {
    let refused = |why: String| {
        format!("the certificate of {host} is refused: {why} (checked against --git-ca-file)")
    };
    let ssl = |e: openssl::error::ErrorStack| refused(e.to_string());
    let leaf = X509::from_der(der).map_err(ssl)?;
    let mut store = X509StoreBuilder::new().map_err(ssl)?;
    for c in load(file)? {
        store.add_cert(c).map_err(ssl)?;
    }
    let mut param = X509VerifyParam::new().map_err(ssl)?;
    let name = host.trim_start_matches('[').trim_end_matches(']');
    match name.parse::<IpAddr>() {
        Ok(ip) => param.set_ip(ip).map_err(ssl)?,
        Err(_) => param.set_host(name).map_err(ssl)?,
    }
    store.set_param(&param).map_err(ssl)?;
    let store = store.build();
    let chain = Stack::new().map_err(ssl)?;
    let mut ctx = X509StoreContext::new().map_err(ssl)?;
    let outcome = ctx
        .init(&store, &leaf, &chain, |c| {
            let ok = c.verify_cert()?;
            Ok((!ok).then(|| c.error().error_string().to_string()))
        })
        .map_err(ssl)?;
    match outcome {
        None => Ok(()),
        Some(why) => Err(refused(why)),
    }
}
