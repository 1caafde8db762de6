//! NBD URIs, the forms qemu, nbdkit and libnbd use:
//! `nbd://host[:port][/export]` and `nbd+unix:///[export]?socket=PATH`,
//! and with TLS `nbds://` and `nbds+unix://`, taking libnbd's
//! `tls-certificates=DIR`, `tls-verify-peer=false` and `tls-hostname=NAME`.

use std::path::PathBuf;

/// Where an NBD export lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Tcp { host: String, port: u16 },
    Unix(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NbdUri {
    pub endpoint: Endpoint,
    pub export: String,
    /// Present for `nbds://` and `nbds+unix://`.
    pub tls: Option<UriTls>,
}

/// What an `nbds` URI says about TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UriTls {
    /// `tls-certificates=DIR` (None: libnbd's default directory).
    pub certificates: Option<PathBuf>,
    /// `tls-verify-peer=false` turns the server's certificate checks off.
    pub verify_peer: bool,
    /// `tls-hostname=NAME`: the name the certificate must carry, instead
    /// of the URI's host.
    pub hostname: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("NBD URI {uri:?}: {why}")]
pub struct UriError {
    pub uri: String,
    pub why: String,
}

/// The default NBD port (IANA).
pub const DEFAULT_PORT: u16 = 10809;

impl NbdUri {
    /// Whether a leg's text is meant as an NBD URI (and not a path).
    pub fn looks_like(text: &str) -> bool {
        ["nbd://", "nbd+unix://", "nbd+tcp://", "nbds://", "nbds+unix://", "nbds+tcp://"].iter().any(|s| text.starts_with(s))
    }

    pub fn parse(text: &str) -> Result<NbdUri, UriError> {
        let fail = |why: &str| UriError { uri: text.to_string(), why: why.to_string() };
        let (scheme, rest) = text.split_once("://").ok_or_else(|| fail("expected nbd://host[:port]/export or nbd+unix:///export?socket=PATH"))?;
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, Some(q)),
            None => (rest, None),
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, ""),
        };
        let export = percent_decode(path).ok_or_else(|| fail("bad %-escape in the export name"))?;
        let (scheme, tls) = match scheme.strip_prefix("nbds") {
            Some(rest) => (rest, Some(UriTls { certificates: None, verify_peer: true, hostname: None })),
            None => (scheme.strip_prefix("nbd").unwrap_or("?"), None),
        };
        let mut tls = tls;
        let mut socket = None;
        for pair in query.into_iter().flat_map(|q| q.split('&')).filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_decode(value).ok_or_else(|| fail(&format!("bad %-escape in {key}=")))?;
            match (key, tls.as_mut()) {
                ("socket", _) => socket = Some(value),
                ("tls-certificates", Some(t)) => t.certificates = Some(PathBuf::from(value)),
                ("tls-hostname", Some(t)) => t.hostname = Some(value),
                ("tls-verify-peer", Some(t)) => {
                    t.verify_peer = match value.as_str() {
                        "true" | "1" | "on" | "yes" => true,
                        "false" | "0" | "off" | "no" => false,
                        _ => return Err(fail(&format!("tls-verify-peer={value:?}: expected true or false"))),
                    }
                }
                ("tls-certificates" | "tls-hostname" | "tls-verify-peer", None) => {
                    return Err(fail(&format!("{key}= needs TLS: write nbds:// or nbds+unix://")));
                }
                _ => {
                    return Err(fail(&format!(
                        "unsupported query parameter {pair:?} (understood: socket=, tls-certificates=, tls-verify-peer=, tls-hostname=)"
                    )));
                }
            }
        }
        let endpoint = match scheme {
            "" | "+tcp" => {
                if socket.is_some() {
                    return Err(fail("socket= belongs to nbd+unix:// URIs"));
                }
                if authority.is_empty() {
                    return Err(fail("no host"));
                }
                let (host, port) = split_host_port(authority).ok_or_else(|| fail("bad host:port"))?;
                Endpoint::Tcp { host, port: port.unwrap_or(DEFAULT_PORT) }
            }
            "+unix" => {
                if !authority.is_empty() {
                    return Err(fail("nbd+unix:// takes no host (write nbd+unix:///export?socket=PATH)"));
                }
                Endpoint::Unix(PathBuf::from(socket.ok_or_else(|| fail("nbd+unix:// needs ?socket=PATH"))?))
            }
            _ => return Err(fail("unsupported scheme (nbd, nbd+unix, nbds, nbds+unix)")),
        };
        Ok(NbdUri { endpoint, export, tls })
    }
}

impl std::fmt::Display for NbdUri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = if self.tls.is_some() { "nbds" } else { "nbd" };
        let mut query = Vec::new();
        match &self.endpoint {
            Endpoint::Tcp { host, port } if host.contains(':') => write!(f, "{s}://[{host}]:{port}/{}", self.export)?,
            Endpoint::Tcp { host, port } => write!(f, "{s}://{host}:{port}/{}", self.export)?,
            Endpoint::Unix(p) => {
                write!(f, "{s}+unix:///{}", self.export)?;
                query.push(format!("socket={}", p.display()));
            }
        }
        if let Some(t) = &self.tls {
            if let Some(d) = &t.certificates {
                query.push(format!("tls-certificates={}", d.display()));
            }
            if let Some(h) = &t.hostname {
                query.push(format!("tls-hostname={h}"));
            }
            if !t.verify_peer {
                query.push("tls-verify-peer=false".into());
            }
        }
        if !query.is_empty() {
            write!(f, "?{}", query.join("&"))?;
        }
        Ok(())
    }
}

/// `host`, `host:port`, `[v6]`, `[v6]:port`.
fn split_host_port(a: &str) -> Option<(String, Option<u16>)> {
    if let Some(rest) = a.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p.parse().ok()?),
            None if after.is_empty() => None,
            None => return None,
        };
        return Some((host.to_string(), port));
    }
    match a.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => Some((host.to_string(), Some(port.parse().ok()?))),
        Some(_) => None,
        None => Some((a.to_string(), None)),
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_standard_forms() {
        let u = NbdUri::parse("nbd://127.0.0.1:10810/disk").unwrap();
        assert_eq!(u.endpoint, Endpoint::Tcp { host: "127.0.0.1".into(), port: 10810 });
        assert_eq!(u.export, "disk");
        let u = NbdUri::parse("nbd://localhost").unwrap();
        assert_eq!(u.endpoint, Endpoint::Tcp { host: "localhost".into(), port: DEFAULT_PORT });
        assert_eq!(u.export, "");
        let u = NbdUri::parse("nbd://[::1]:7000/a%20b").unwrap();
        assert_eq!(u.endpoint, Endpoint::Tcp { host: "::1".into(), port: 7000 });
        assert_eq!(u.export, "a b");
        let u = NbdUri::parse("nbd+unix:///leg0?socket=/run/x.sock").unwrap();
        assert_eq!(u.endpoint, Endpoint::Unix("/run/x.sock".into()));
        assert_eq!(u.export, "leg0");
        assert_eq!(u.to_string(), "nbd+unix:///leg0?socket=/run/x.sock");
        assert_eq!(u.tls, None);
    }

    #[test]
    fn parses_libnbd_tls_forms() {
        let u = NbdUri::parse("nbds://db1.example:10810/disk?tls-certificates=/etc/pki/x").unwrap();
        assert_eq!(u.endpoint, Endpoint::Tcp { host: "db1.example".into(), port: 10810 });
        assert_eq!(u.tls, Some(UriTls { certificates: Some("/etc/pki/x".into()), verify_peer: true, hostname: None }));
        assert_eq!(u.to_string(), "nbds://db1.example:10810/disk?tls-certificates=/etc/pki/x");
        let u = NbdUri::parse("nbds+unix:///leg?socket=/s&tls-certificates=c&tls-hostname=h&tls-verify-peer=false").unwrap();
        assert_eq!(u.endpoint, Endpoint::Unix("/s".into()));
        assert_eq!(u.tls, Some(UriTls { certificates: Some("c".into()), verify_peer: false, hostname: Some("h".into()) }));
        assert_eq!(NbdUri::parse(&u.to_string()).unwrap(), u);
        assert!(NbdUri::looks_like("nbds://h/x") && NbdUri::looks_like("nbds+unix:///x?socket=/s"));
    }

    #[test]
    fn refuses_with_a_reason() {
        for (bad, why) in [
            ("nbd+unix:///x", "needs ?socket"),
            ("nbd+unix://host/x?socket=/s", "takes no host"),
            ("nbd://h:99999/x", "host:port"),
            ("nbd:///x", "no host"),
            ("http://h/x", "unsupported scheme"),
            ("nbd://h/x?tls=on", "unsupported query"),
            ("nbd://h/x?tls-certificates=/d", "needs TLS"),
            ("nbds://h/x?tls-verify-peer=maybe", "expected true or false"),
            ("nbdx://h/x", "unsupported scheme"),
            ("nbd://h/%zz", "%-escape"),
        ] {
            let e = NbdUri::parse(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
