//! Fixed newstyle handshake and option haggling, with `NBD_OPT_STARTTLS`
//! as the protocol document has it: after the server's ack the client
//! starts TLS on the same socket and the haggling goes on, encrypted. A
//! server that requires TLS refuses every option before it but ABORT
//! (`NBD_REP_ERR_TLS_REQD`), and closes on `NBD_OPT_EXPORT_NAME`, which
//! cannot carry an error.

use super::proto::*;
use super::{Export, Exports, NbdError};
use crate::tls::TlsMode;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The longest option payload accepted.
const MAX_OPTION: u32 = 64 << 10;

/// What the haggling settled.
pub enum Outcome {
    Serve(Arc<Export>),
    /// The client aborted or only listed.
    Done,
    /// The client asked for TLS and was told yes: start it, then haggle on.
    StartTls,
}

/// What a client chose for its transmission phase.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Negotiated {
    /// `NBD_OPT_STRUCTURED_REPLY`: reads answer in chunks, block status works.
    pub structured: bool,
    /// `NBD_OPT_EXTENDED_HEADERS`: 32-byte requests with 64-bit lengths,
    /// and every reply an extended chunk (implies `structured`).
    pub extended: bool,
    /// Metadata contexts for `NBD_CMD_BLOCK_STATUS`, by id (`context_name`).
    pub contexts: Vec<u32>,
}

/// The contexts this server offers, by id.
pub fn context_name(id: u32) -> Option<&'static str> {
    match id {
        1 => Some(CONTEXT_BASE_ALLOCATION),
        2 => Some(CONTEXT_HEALTH),
        _ => None,
    }
}

/// The contexts a query names: `LIST` also takes a bare namespace
/// (`base:`) and, with no query at all, lists everything.
fn contexts_for(query: &str, listing: bool) -> Vec<u32> {
    (1..=2)
        .filter(|&id| {
            let name = context_name(id).unwrap_or_default();
            name == query || (listing && query.ends_with(':') && name.starts_with(query))
        })
        .collect()
}

/// What protects the connection while it haggles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// Plaintext, with what the server offers.
    Plain(TlsMode),
    Encrypted,
}

pub fn transmission_flags() -> u16 {
    TFLAG_HAS_FLAGS
        | TFLAG_SEND_FLUSH
        | TFLAG_SEND_FUA
        | TFLAG_SEND_TRIM
        | TFLAG_SEND_WRITE_ZEROES
        | TFLAG_SEND_FAST_ZERO
        | TFLAG_SEND_CACHE
        | TFLAG_CAN_MULTI_CONN
}

/// Send the greeting and read the client's flags: whether it skips the
/// zeroes after `NBD_OPT_EXPORT_NAME`.
pub async fn greet<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S) -> Result<bool, NbdError> {
    let mut hello = Vec::with_capacity(18);
    hello.extend_from_slice(&NBDMAGIC.to_be_bytes());
    hello.extend_from_slice(&IHAVEOPT.to_be_bytes());
    hello.extend_from_slice(&(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES).to_be_bytes());
    s.write_all(&hello).await?;
    s.flush().await?;
    let client_flags = s.read_u32().await?;
    if client_flags & CLIENT_FIXED_NEWSTYLE == 0 {
        return Err(NbdError::Protocol(format!("client flags {client_flags:#x} lack FIXED_NEWSTYLE")));
    }
    if client_flags & !(CLIENT_FIXED_NEWSTYLE | CLIENT_NO_ZEROES) != 0 {
        return Err(NbdError::Protocol(format!("unknown client flags {client_flags:#x}")));
    }
    Ok(client_flags & CLIENT_NO_ZEROES != 0)
}

/// Answer options until one settles the connection.
pub async fn haggle<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    exports: &Exports,
    no_zeroes: bool,
    wire: Wire,
    chosen: &mut Negotiated,
) -> Result<Outcome, NbdError> {
    let tls_required = wire == Wire::Plain(TlsMode::Require);
    loop {
        let magic = s.read_u64().await?;
        if magic != IHAVEOPT {
            return Err(NbdError::Protocol(format!("bad option magic {magic:#018x}")));
        }
        let option = s.read_u32().await?;
        let len = s.read_u32().await?;
        if len > MAX_OPTION {
            return Err(NbdError::Protocol(format!("option {option} carries {len} bytes (at most {MAX_OPTION})")));
        }
        let mut data = vec![0u8; len as usize];
        s.read_exact(&mut data).await?;
        match option {
            OPT_ABORT => {
                s.write_all(&option_reply(option, REP_ACK, &[])).await?;
                s.flush().await?;
                return Ok(Outcome::Done);
            }
            OPT_STARTTLS => match wire {
                Wire::Encrypted => s.write_all(&option_reply(option, REP_ERR_INVALID, b"TLS is already on")).await?,
                Wire::Plain(TlsMode::Off) => {
                    s.write_all(&option_reply(option, REP_ERR_POLICY, b"this server does not offer TLS (wasmraid serve --tls on|require)")).await?
                }
                Wire::Plain(_) if !data.is_empty() => s.write_all(&option_reply(option, REP_ERR_INVALID, b"STARTTLS takes no data")).await?,
                Wire::Plain(_) => {
                    s.write_all(&option_reply(option, REP_ACK, &[])).await?;
                    s.flush().await?;
                    // What was chosen in plaintext is chosen again over TLS.
                    *chosen = Negotiated::default();
                    return Ok(Outcome::StartTls);
                }
            },
            // This option cannot carry an error: a refused one closes.
            OPT_EXPORT_NAME if tls_required => {
                return Err(NbdError::Protocol("NBD_OPT_EXPORT_NAME before STARTTLS on a server that requires TLS".into()));
            }
            OPT_EXPORT_NAME if chosen.extended => {
                return Err(NbdError::Protocol("NBD_OPT_EXPORT_NAME after NBD_OPT_EXTENDED_HEADERS (the protocol requires NBD_OPT_GO)".into()));
            }
            _ if tls_required => {
                s.write_all(&option_reply(option, REP_ERR_TLS_REQD, b"this server requires TLS: send NBD_OPT_STARTTLS first")).await?;
            }
            OPT_EXPORT_NAME => {
                let name = String::from_utf8_lossy(&data).into_owned();
                let Some(export) = exports.find(&name) else {
                    return Err(NbdError::Protocol(format!("NBD_OPT_EXPORT_NAME for unknown export {name:?}")));
                };
                let mut reply = Vec::with_capacity(134);
                reply.extend_from_slice(&export.device.size().to_be_bytes());
                reply.extend_from_slice(&transmission_flags().to_be_bytes());
                if !no_zeroes {
                    reply.extend_from_slice(&[0u8; 124]);
                }
                s.write_all(&reply).await?;
                s.flush().await?;
                return Ok(Outcome::Serve(export));
            }
            OPT_LIST => {
                if !data.is_empty() {
                    s.write_all(&option_reply(option, REP_ERR_INVALID, b"LIST takes no data")).await?;
                } else {
                    for name in exports.names() {
                        let mut d = (name.len() as u32).to_be_bytes().to_vec();
                        d.extend_from_slice(name.as_bytes());
                        s.write_all(&option_reply(option, REP_SERVER, &d)).await?;
                    }
                    s.write_all(&option_reply(option, REP_ACK, &[])).await?;
                }
            }
            OPT_STRUCTURED_REPLY if !data.is_empty() => {
                s.write_all(&option_reply(option, REP_ERR_INVALID, b"STRUCTURED_REPLY takes no data")).await?;
            }
            OPT_STRUCTURED_REPLY if chosen.extended => {
                s.write_all(&option_reply(option, REP_ERR_EXT_HEADER_REQD, b"extended headers are already on and take precedence")).await?;
            }
            OPT_EXTENDED_HEADERS if !data.is_empty() => {
                s.write_all(&option_reply(option, REP_ERR_INVALID, b"EXTENDED_HEADERS takes no data")).await?;
            }
            OPT_EXTENDED_HEADERS => {
                chosen.extended = true;
                chosen.structured = true;
                s.write_all(&option_reply(option, REP_ACK, &[])).await?;
            }
            OPT_STRUCTURED_REPLY => {
                chosen.structured = true;
                s.write_all(&option_reply(option, REP_ACK, &[])).await?;
            }
            OPT_LIST_META_CONTEXT | OPT_SET_META_CONTEXT => {
                let setting = option == OPT_SET_META_CONTEXT;
                match decode_meta_request(&data) {
                    Err(why) => s.write_all(&option_reply(option, REP_ERR_INVALID, why.as_bytes())).await?,
                    Ok(_) if setting && !chosen.structured => {
                        s.write_all(&option_reply(option, REP_ERR_INVALID, b"SET_META_CONTEXT needs NBD_OPT_STRUCTURED_REPLY first")).await?
                    }
                    Ok((name, _)) if exports.find(&name).is_none() => {
                        s.write_all(&option_reply(option, REP_ERR_UNKNOWN, format!("no export named {name:?}").as_bytes())).await?
                    }
                    Ok((_, queries)) => {
                        let mut ids: Vec<u32> =
                            if queries.is_empty() && !setting { vec![1, 2] } else { queries.iter().flat_map(|q| contexts_for(q, !setting)).collect() };
                        ids.sort_unstable();
                        ids.dedup();
                        for &id in &ids {
                            let mut d = id.to_be_bytes().to_vec();
                            d.extend_from_slice(context_name(id).unwrap_or_default().as_bytes());
                            s.write_all(&option_reply(option, REP_META_CONTEXT, &d)).await?;
                        }
                        s.write_all(&option_reply(option, REP_ACK, &[])).await?;
                        if setting {
                            chosen.contexts = ids;
                        }
                    }
                }
            }
            OPT_INFO | OPT_GO => match super::proto::decode_info_request(&data) {
                Err(why) => s.write_all(&option_reply(option, REP_ERR_INVALID, why.as_bytes())).await?,
                Ok((name, requests)) => match exports.find(&name) {
                    None => {
                        let msg = format!("no export named {name:?}");
                        s.write_all(&option_reply(option, REP_ERR_UNKNOWN, msg.as_bytes())).await?;
                    }
                    Some(export) => {
                        for info in info_replies(&export, &name, &requests) {
                            s.write_all(&option_reply(option, REP_INFO, &info)).await?;
                        }
                        s.write_all(&option_reply(option, REP_ACK, &[])).await?;
                        if option == OPT_GO {
                            s.flush().await?;
                            return Ok(Outcome::Serve(export));
                        }
                    }
                },
            },
            _ => {
                let msg = format!("option {option} is not supported");
                s.write_all(&option_reply(option, REP_ERR_UNSUP, msg.as_bytes())).await?;
            }
        }
        s.flush().await?;
    }
}

fn info_replies(export: &Export, name: &str, requests: &[u16]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut info = INFO_EXPORT.to_be_bytes().to_vec();
    info.extend_from_slice(&export.device.size().to_be_bytes());
    info.extend_from_slice(&transmission_flags().to_be_bytes());
    out.push(info);
    for &r in requests {
        match r {
            INFO_NAME => {
                let mut d = INFO_NAME.to_be_bytes().to_vec();
                d.extend_from_slice(name.as_bytes());
                out.push(d);
            }
            INFO_DESCRIPTION => {
                let mut d = INFO_DESCRIPTION.to_be_bytes().to_vec();
                d.extend_from_slice(export.description.as_bytes());
                out.push(d);
            }
            INFO_BLOCK_SIZE => {
                let sizes = export.device.block_sizes();
                let mut d = INFO_BLOCK_SIZE.to_be_bytes().to_vec();
                d.extend_from_slice(&sizes.minimum.to_be_bytes());
                d.extend_from_slice(&sizes.preferred.to_be_bytes());
                d.extend_from_slice(&MAX_REQUEST.to_be_bytes());
                out.push(d);
            }
            _ => {}
        }
    }
    out
}
