//! The identity a peer's certificate proves: its subject's common name and
//! its DNS and IP subject alternative names, as an operator would look
//! them up (`openssl x509 -noout -subject -ext subjectAltName`).

use rustls_pki_types::CertificateDer;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// Longest identity reported: a peer's certificate is untrusted bytes
/// until verified, and a status line has to stay readable.
const MAX_IDENTITY: usize = 256;

/// "CN=client.example (DNS:client.example, IP:10.0.0.2)", or a note
/// that the certificate does not parse.
pub fn describe(cert: &CertificateDer<'_>) -> String {
    let Ok((_, parsed)) = X509Certificate::from_der(cert.as_ref()) else {
        return "an unparsable certificate".to_string();
    };
    let mut text = parsed.subject().to_string();
    if text.is_empty() {
        text = "an empty subject".to_string();
    }
    if let Ok(Some(san)) = parsed.subject_alternative_name() {
        let names: Vec<String> = san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::DNSName(d) => Some(format!("DNS:{d}")),
                GeneralName::IPAddress(ip) => match ip.len() {
                    4 => Some(format!("IP:{}", std::net::Ipv4Addr::from([ip[0], ip[1], ip[2], ip[3]]))),
                    16 => <[u8; 16]>::try_from(*ip).ok().map(|b| format!("IP:{}", std::net::Ipv6Addr::from(b))),
                    _ => None,
                },
                _ => None,
            })
            .collect();
        if !names.is_empty() {
            text = format!("{text} ({})", names.join(", "));
        }
    }
    // Names a peer chose reach logs and status: no control characters.
    text.retain(|c| !c.is_control());
    if text.len() > MAX_IDENTITY {
        let mut cut = MAX_IDENTITY;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    text
}
