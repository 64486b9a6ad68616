//! A refused TLS certificate in words a user can act on. rustls says what failed the way a TLS
//! library does ("UnknownIssuer", seconds since 1970, `DnsName("…")`); the user needs to know
//! whether it is their machine's trust, their clock, the URL they typed or the publisher, and
//! what to do. Feeds, article pages, webhooks and email all meet the same rustls error, which
//! reqwest and lettre hand on inside an I/O error, so they share these words.

use std::error::Error;

use chrono::DateTime;
use rustls::CertificateError;
use rustls::pki_types::UnixTime;

use super::causes;

/// Where README says how to make this machine trust a CA.
const README: &str = "README, \"TLS certificates\"";

/// What was wrong with the server's certificate and what to do, when `err` (or an error it was
/// caused by) is rustls refusing it; `None` for any other failure.
pub(crate) fn refused_certificate(err: &(dyn Error + 'static)) -> Option<String> {
    let refusal = causes(err).find_map(|cause| match cause.downcast_ref() {
        Some(rustls::Error::InvalidCertificate(refusal)) => Some(refusal),
        _ => None,
    })?;
    Some(format!("TLS certificate refused: {}", explain(refusal)))
}

fn explain(refusal: &CertificateError) -> String {
    match refusal {
        CertificateError::UnknownIssuer => format!(
            "it is not signed by a CA this machine trusts (a self-signed certificate, or a \
             private or company CA); if you trust that server, add its CA to the system's roots \
             or name it in SSL_CERT_FILE, and restart the daemon ({README}){}",
            roots_from_environment()
        ),
        // The CA it names is trusted but did not sign it: no CA to add, whatever the user does.
        CertificateError::BadSignature => "its signature does not verify against the CA it names \
                                           (forged, or damaged on the way); tell the server's \
                                           owner"
            .to_owned(),
        CertificateError::ExpiredContext { time, not_after } => format!(
            "it expired on {}; the server's owner has to renew it (unless this machine's clock, \
             at {}, is wrong)",
            utc(*not_after),
            utc(*time)
        ),
        CertificateError::Expired => "it has expired; the server's owner has to renew it (unless \
                                      this machine's clock is wrong)"
            .to_owned(),
        CertificateError::NotValidYetContext { time, not_before } => format!(
            "it is valid only from {}, and this machine's clock says {}: check the clock",
            utc(*not_before),
            utc(*time)
        ),
        CertificateError::NotValidYet => {
            "it is not valid yet: check this machine's clock".to_owned()
        }
        CertificateError::NotValidForNameContext {
            expected,
            presented,
        } => format!(
            "it is for {}, not {}; use an address with a name it lists, or tell the server's \
             owner",
            listed_names(presented),
            expected.to_str()
        ),
        CertificateError::NotValidForName => "it is for another host name; use an address with \
                                              a name it lists, or tell the server's owner"
            .to_owned(),
        CertificateError::Revoked => "its CA has revoked it; tell the server's owner".to_owned(),
        other => other.to_string(),
    }
}

/// How many of a certificate's names an error lists: a CDN's may have hundreds.
const NAMES_SHOWN: usize = 5;

/// The host names and addresses a certificate is for, as webpki lists them
/// (`DnsName("news.example")`, `IpAddress(192.0.2.1)`), bare. The server wrote them, so only
/// names made of what host names and addresses are made of are shown: no control or
/// bidirectional characters reach `feeds`, `alerts` or the log.
fn listed_names(presented: &[String]) -> String {
    let names: Vec<&str> = presented
        .iter()
        .filter_map(|listed| {
            let name = listed
                .strip_prefix("DnsName(\"")
                .and_then(|name| name.strip_suffix("\")"))
                .or_else(|| {
                    listed
                        .strip_prefix("IpAddress(")
                        .and_then(|name| name.strip_suffix(')'))
                })?;
            let plain = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '*' | ':'));
            plain.then_some(name)
        })
        .collect();
    match names.len() {
        0 => "no host name".to_owned(),
        count if count > NAMES_SHOWN => format!(
            "{} and {} more names",
            names[..NAMES_SHOWN].join(", "),
            count - NAMES_SHOWN
        ),
        _ => names.join(", "),
    }
}

/// Roots named in the environment, which replace the system's (rustls-native-certs reads
/// only them): the likeliest reason a CA the user added is not trusted, or a public one no
/// longer is.
fn roots_from_environment() -> String {
    ["SSL_CERT_FILE", "SSL_CERT_DIR"]
        .into_iter()
        .filter_map(|variable| {
            let path = std::path::PathBuf::from(std::env::var_os(variable)?);
            let missing = if path.exists() {
                ""
            } else {
                ", which does not exist"
            };
            Some(format!(
                "; {variable} is set to {}{missing}, so only the CAs there are trusted",
                path.display()
            ))
        })
        .collect()
}

fn utc(time: UnixTime) -> String {
    i64::try_from(time.as_secs())
        .ok()
        .and_then(|secs| DateTime::from_timestamp(secs, 0))
        .map_or_else(
            || format!("{} seconds after 1970", time.as_secs()),
            |time| time.format("%Y-%m-%d %H:%M UTC").to_string(),
        )
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::time::Duration;

    use rustls::pki_types::ServerName;

    use super::*;

    /// As hyper and lettre hand it on: rustls's error in an I/O error in another.
    fn wrapped(refusal: CertificateError) -> io::Error {
        io::Error::other(io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(refusal),
        ))
    }

    fn at(secs: u64) -> UnixTime {
        UnixTime::since_unix_epoch(Duration::from_secs(secs))
    }

    #[test]
    fn a_name_mismatch_lists_at_most_five_names_and_only_what_names_are_made_of() {
        let mut presented = vec![
            "DnsName(\"evil.example\nfeed 2: ok\")".to_owned(),
            "DnsName(\"\u{202E}elpmaxe.ssen\")".to_owned(),
            "DirectoryName".to_owned(),
            "UniformResourceIdentifier(\"https://x.example/\")".to_owned(),
        ];
        presented.extend((1..=7).map(|n| format!("DnsName(\"edge{n}.cdn.example\")")));
        let refusal = CertificateError::NotValidForNameContext {
            expected: ServerName::try_from("news.example").unwrap(),
            presented,
        };
        assert_eq!(
            refused_certificate(&wrapped(refusal)).unwrap(),
            "TLS certificate refused: it is for edge1.cdn.example, edge2.cdn.example, \
             edge3.cdn.example, edge4.cdn.example, edge5.cdn.example and 2 more names, not \
             news.example; use an address with a name it lists, or tell the server's owner"
        );
    }

    #[test]
    fn a_bad_signature_is_not_taken_for_an_unknown_ca() {
        let words = refused_certificate(&wrapped(CertificateError::BadSignature)).unwrap();
        assert!(
            words.contains("does not verify") && !words.contains("SSL_CERT_FILE"),
            "{words}"
        );
    }

    #[test]
    fn a_name_mismatch_lists_the_certificates_names_bare() {
        let refusal = CertificateError::NotValidForNameContext {
            expected: ServerName::try_from("news.example").unwrap(),
            presented: vec![
                "DnsName(\"cdn.example\")".to_owned(),
                "IpAddress(192.0.2.1)".to_owned(),
            ],
        };
        assert_eq!(
            refused_certificate(&wrapped(refusal)).unwrap(),
            "TLS certificate refused: it is for cdn.example, 192.0.2.1, not news.example; use an \
             address with a name it lists, or tell the server's owner"
        );
    }

    #[test]
    fn an_expired_certificate_gives_its_date_and_the_clocks() {
        let refusal = CertificateError::ExpiredContext {
            time: at(1_795_698_764),
            not_after: at(1_577_836_800),
        };
        let words = refused_certificate(&wrapped(refusal)).unwrap();
        assert!(
            words.contains("expired on 2020-01-01 00:00 UTC")
                && words.contains("clock, at 2026-11-26 13:12 UTC"),
            "{words}"
        );
    }

    #[test]
    fn the_refusal_is_found_however_deep_and_only_there() {
        #[derive(Debug)]
        struct Outer(io::Error);
        impl std::fmt::Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("client error (Connect)")
            }
        }
        impl Error for Outer {
            fn source(&self) -> Option<&(dyn Error + 'static)> {
                Some(&self.0)
            }
        }
        let deep = Outer(wrapped(CertificateError::UnknownIssuer));
        let words = refused_certificate(&deep).unwrap();
        assert!(words.contains("SSL_CERT_FILE"), "{words}");
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert_eq!(refused_certificate(&Outer(refused)), None);
        let other_tls = io::Error::new(io::ErrorKind::InvalidData, rustls::Error::DecryptError);
        assert_eq!(refused_certificate(&other_tls), None);
    }
}
