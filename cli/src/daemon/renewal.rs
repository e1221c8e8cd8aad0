//! Renews the node certificate automatically once half of its lifetime has passed, so a node
//! never drops out of its cluster because a certificate expired.
//!
//! A daemon concern rather than part of `crate::tls` (where swarmkit keeps its
//! `ca/renewer.go`): a renewal asks the cluster's CA through the node's membership (its
//! connector and the managers it knows) and must not interleave with joining, leaving or a
//! role change, which also replace the certificate, so it holds the daemon's membership
//! lock. From the transport it needs only `NodeCredentials` and the identity swap that
//! `Membership::renew_certificate` makes.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use super::Daemon;

/// How often the certificate's age is checked.
const CHECK_EVERY: Duration = Duration::from_secs(60);

/// Whether a certificate valid from `not_before` to `not_after` (Unix seconds) is due for
/// renewal at `now`: once half its lifetime has passed.
pub fn renewal_due(not_before: i64, not_after: i64, now: i64) -> bool {
    now >= not_before + (not_after - not_before) / 2
}

fn validity(cert_pem: &str) -> anyhow::Result<(i64, i64)> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes())
        .context("the node certificate is not PEM")?;
    let cert = pem
        .parse_x509()
        .context("the node certificate cannot be parsed")?;
    let v = cert.validity();
    Ok((v.not_before.timestamp(), v.not_after.timestamp()))
}

/// Runs for as long as the membership does.
pub async fn run(daemon: Arc<Daemon>) {
    loop {
        tokio::time::sleep(CHECK_EVERY).await;
        if let Err(e) = check(&daemon).await {
            tracing::warn!("certificate renewal failed; will retry: {e:#}");
        }
    }
}

async fn check(daemon: &Daemon) -> anyhow::Result<()> {
    let creds = daemon.credentials()?;
    let (not_before, not_after) = validity(&creds.cert_pem)?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    if !renewal_due(not_before, not_after, now) {
        return Ok(());
    }
    let guard = daemon.membership.lock().await;
    if let Some(membership) = guard.as_ref() {
        membership.renew_certificate(daemon).await?;
        tracing::info!("renewed the node certificate");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::renewal_due;

    #[test]
    fn renews_after_half_the_lifetime() {
        let day = 86_400;
        assert!(!renewal_due(0, 90 * day, 44 * day));
        assert!(renewal_due(0, 90 * day, 45 * day));
        assert!(renewal_due(0, 90 * day, 100 * day));
    }
}
