//! Fixed newstyle handshake and option haggling.

use super::proto::*;
use super::{Export, Exports, NbdError};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The longest option payload accepted.
const MAX_OPTION: u32 = 64 << 10;

/// What the handshake settled: the export to serve, or nothing (the client
/// aborted or only listed).
pub enum Outcome {
    Serve(Arc<Export>),
    Done,
}

pub fn transmission_flags() -> u16 {
    TFLAG_HAS_FLAGS | TFLAG_SEND_FLUSH | TFLAG_SEND_FUA | TFLAG_SEND_TRIM | TFLAG_SEND_WRITE_ZEROES | TFLAG_CAN_MULTI_CONN
}

/// Run the server side of the handshake.
pub async fn negotiate<R, W>(rd: &mut R, wr: &mut W, exports: &Exports) -> Result<Outcome, NbdError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut hello = Vec::with_capacity(18);
    hello.extend_from_slice(&NBDMAGIC.to_be_bytes());
    hello.extend_from_slice(&IHAVEOPT.to_be_bytes());
    hello.extend_from_slice(&(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES).to_be_bytes());
    wr.write_all(&hello).await?;
    wr.flush().await?;
    let client_flags = rd.read_u32().await?;
    if client_flags & CLIENT_FIXED_NEWSTYLE == 0 {
        return Err(NbdError::Protocol(format!("client flags {client_flags:#x} lack FIXED_NEWSTYLE")));
    }
    if client_flags & !(CLIENT_FIXED_NEWSTYLE | CLIENT_NO_ZEROES) != 0 {
        return Err(NbdError::Protocol(format!("unknown client flags {client_flags:#x}")));
    }
    let no_zeroes = client_flags & CLIENT_NO_ZEROES != 0;
    loop {
        let magic = rd.read_u64().await?;
        if magic != IHAVEOPT {
            return Err(NbdError::Protocol(format!("bad option magic {magic:#018x}")));
        }
        let option = rd.read_u32().await?;
        let len = rd.read_u32().await?;
        if len > MAX_OPTION {
            return Err(NbdError::Protocol(format!("option {option} carries {len} bytes (at most {MAX_OPTION})")));
        }
        let mut data = vec![0u8; len as usize];
        rd.read_exact(&mut data).await?;
        match option {
            OPT_EXPORT_NAME => {
                let name = String::from_utf8_lossy(&data).into_owned();
                // This option cannot report errors: an unknown name closes.
                let Some(export) = exports.find(&name) else {
                    return Err(NbdError::Protocol(format!("NBD_OPT_EXPORT_NAME for unknown export {name:?}")));
                };
                let mut reply = Vec::with_capacity(134);
                reply.extend_from_slice(&export.device.size().to_be_bytes());
                reply.extend_from_slice(&transmission_flags().to_be_bytes());
                if !no_zeroes {
                    reply.extend_from_slice(&[0u8; 124]);
                }
                wr.write_all(&reply).await?;
                wr.flush().await?;
                return Ok(Outcome::Serve(export));
            }
            OPT_ABORT => {
                wr.write_all(&option_reply(option, REP_ACK, &[])).await?;
                wr.flush().await?;
                return Ok(Outcome::Done);
            }
            OPT_LIST => {
                if !data.is_empty() {
                    wr.write_all(&option_reply(option, REP_ERR_INVALID, b"LIST takes no data")).await?;
                } else {
                    for name in exports.names() {
                        let mut d = (name.len() as u32).to_be_bytes().to_vec();
                        d.extend_from_slice(name.as_bytes());
                        wr.write_all(&option_reply(option, REP_SERVER, &d)).await?;
                    }
                    wr.write_all(&option_reply(option, REP_ACK, &[])).await?;
                }
            }
            OPT_INFO | OPT_GO => match super::proto::decode_info_request(&data) {
                Err(why) => wr.write_all(&option_reply(option, REP_ERR_INVALID, why.as_bytes())).await?,
                Ok((name, requests)) => match exports.find(&name) {
                    None => {
                        let msg = format!("no export named {name:?}");
                        wr.write_all(&option_reply(option, REP_ERR_UNKNOWN, msg.as_bytes())).await?;
                    }
                    Some(export) => {
                        for info in info_replies(&export, &name, &requests) {
                            wr.write_all(&option_reply(option, REP_INFO, &info)).await?;
                        }
                        wr.write_all(&option_reply(option, REP_ACK, &[])).await?;
                        if option == OPT_GO {
                            wr.flush().await?;
                            return Ok(Outcome::Serve(export));
                        }
                    }
                },
            },
            _ => {
                let msg = format!("option {option} is not supported");
                wr.write_all(&option_reply(option, REP_ERR_UNSUP, msg.as_bytes())).await?;
            }
        }
        wr.flush().await?;
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
                let mut d = INFO_BLOCK_SIZE.to_be_bytes().to_vec();
                d.extend_from_slice(&1u32.to_be_bytes());
                d.extend_from_slice(&4096u32.to_be_bytes());
                d.extend_from_slice(&MAX_REQUEST.to_be_bytes());
                out.push(d);
            }
            _ => {}
        }
    }
    out
}
