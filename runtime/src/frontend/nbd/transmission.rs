//! The transmission phase: requests are read in order, served concurrently
//! on the blocking pool, and answered as they complete (out of order,
//! matched by cookie).

use super::proto::*;
use super::{Export, NbdError};
use crate::device::BlockDevice;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{Mutex, Semaphore};

/// Requests served at once per connection.
const IN_FLIGHT: u32 = 128;

pub async fn run<S>(mut rd: ReadHalf<S>, wr: WriteHalf<S>, export: Arc<Export>) -> Result<(), NbdError>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let wr = Arc::new(Mutex::new(wr));
    let slots = Arc::new(Semaphore::new(IN_FLIGHT as usize));
    let mut header = [0u8; REQUEST_HEADER];
    loop {
        if let Err(e) = rd.read_exact(&mut header).await {
            drain(&slots).await;
            return if e.kind() == std::io::ErrorKind::UnexpectedEof { Ok(()) } else { Err(e.into()) };
        }
        let request = match decode_request(&header) {
            Ok(r) => r,
            Err(e) => {
                drain(&slots).await;
                return Err(e.into());
            }
        };
        if request.command == CMD_DISC {
            // Finish what is in flight, then close.
            drain(&slots).await;
            return Ok(());
        }
        let payload = if request.command == CMD_WRITE {
            let mut data = vec![0u8; request.length as usize];
            rd.read_exact(&mut data).await?;
            Some(data)
        } else {
            None
        };
        let permit = slots.clone().acquire_owned().await.map_err(|_| NbdError::Protocol("connection shutting down".into()))?;
        let (device, wr) = (export.device.clone(), wr.clone());
        tokio::spawn(async move {
            let reply = tokio::task::spawn_blocking(move || serve(&*device, request, payload)).await;
            let (error, data) = match reply {
                Ok(r) => r,
                Err(_) => (EIO, None),
            };
            let mut w = wr.lock().await;
            let header = simple_reply(error, request.cookie);
            let sent = match &data {
                Some(d) if error == 0 => async {
                    w.write_all(&header).await?;
                    w.write_all(d).await?;
                    w.flush().await
                }
                .await,
                _ => async {
                    w.write_all(&header).await?;
                    w.flush().await
                }
                .await,
            };
            if let Err(e) = sent {
                tracing::debug!("nbd reply not sent: {e}");
            }
            drop(permit);
        });
    }
}

async fn drain(slots: &Semaphore) {
    let _ = slots.acquire_many(IN_FLIGHT).await;
}

/// Serve one request on a blocking thread: (NBD error, data for a read).
fn serve(device: &dyn BlockDevice, r: Request, payload: Option<Vec<u8>>) -> (u32, Option<Vec<u8>>) {
    let fua = r.flags & CMD_FLAG_FUA != 0;
    let in_range = r.offset.checked_add(u64::from(r.length)).is_some_and(|end| end <= device.size());
    let result = match r.command {
        CMD_FLUSH => device.flush(),
        _ if !in_range => return (if r.command == CMD_WRITE { ENOSPC } else { EINVAL }, None),
        CMD_READ => {
            let mut buf = vec![0u8; r.length as usize];
            return match device.read_at(&mut buf, r.offset) {
                Ok(()) => (0, Some(buf)),
                Err(e) => (errno(&e, r), None),
            };
        }
        CMD_WRITE => device.write_at(payload.as_deref().unwrap_or(&[]), r.offset, fua),
        CMD_TRIM => device.discard(r.offset, u64::from(r.length)),
        CMD_WRITE_ZEROES => device.write_zeroes(r.offset, u64::from(r.length), fua),
        _ => return (EINVAL, None),
    };
    match result {
        Ok(()) => (0, None),
        Err(e) => (errno(&e, r), None),
    }
}

fn errno(e: &std::io::Error, r: Request) -> u32 {
    tracing::warn!(command = command_name(r.command), offset = r.offset, length = r.length, "request failed: {e}");
    match e.kind() {
        std::io::ErrorKind::InvalidInput => EINVAL,
        std::io::ErrorKind::Unsupported => ENOTSUP,
        _ => EIO,
    }
}
