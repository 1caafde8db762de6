//! NBD URIs, the forms qemu, nbdkit and libnbd use:
//! `nbd://host[:port][/export]` and `nbd+unix:///[export]?socket=PATH`.

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
        text.starts_with("nbd://") || text.starts_with("nbd+unix://") || text.starts_with("nbd+tcp://")
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
        let mut socket = None;
        for pair in query.into_iter().flat_map(|q| q.split('&')).filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("socket", v)) => socket = Some(percent_decode(v).ok_or_else(|| fail("bad %-escape in socket="))?),
                _ => return Err(fail(&format!("unsupported query parameter {pair:?} (only socket= is understood)"))),
            }
        }
        let endpoint = match scheme {
            "nbd" | "nbd+tcp" => {
                if socket.is_some() {
                    return Err(fail("socket= belongs to nbd+unix:// URIs"));
                }
                if authority.is_empty() {
                    return Err(fail("no host"));
                }
                let (host, port) = split_host_port(authority).ok_or_else(|| fail("bad host:port"))?;
                Endpoint::Tcp { host, port: port.unwrap_or(DEFAULT_PORT) }
            }
            "nbd+unix" => {
                if !authority.is_empty() {
                    return Err(fail("nbd+unix:// takes no host (write nbd+unix:///export?socket=PATH)"));
                }
                Endpoint::Unix(PathBuf::from(socket.ok_or_else(|| fail("nbd+unix:// needs ?socket=PATH"))?))
            }
            other => return Err(fail(&format!("unsupported scheme {other:?} (nbd, nbd+unix)"))),
        };
        Ok(NbdUri { endpoint, export })
    }
}

impl std::fmt::Display for NbdUri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.endpoint {
            Endpoint::Tcp { host, port } if host.contains(':') => write!(f, "nbd://[{host}]:{port}/{}", self.export),
            Endpoint::Tcp { host, port } => write!(f, "nbd://{host}:{port}/{}", self.export),
            Endpoint::Unix(p) => write!(f, "nbd+unix:///{}?socket={}", self.export, p.display()),
        }
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
            ("nbd://h/%zz", "%-escape"),
        ] {
            let e = NbdUri::parse(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
