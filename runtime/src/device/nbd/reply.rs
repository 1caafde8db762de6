//! One reply of the transmission phase read off the wire. The server's
//! bytes are untrusted, so this runs over any `Read` (fuzzed:
//! `fuzz/nbd_client`): a reply must carry the simple-reply magic and a
//! cookie the client is waiting for, and the data read is the length the
//! client asked for, never a length the server names.

use crate::frontend::nbd::proto::SIMPLE_REPLY_MAGIC;
use std::io::{self, Read};

/// A server's answer to the request sent with `cookie`.
#[derive(Debug, PartialEq, Eq)]
pub struct Reply {
    pub cookie: u64,
    /// The data of a successful read (empty for other commands), or the
    /// server's error number.
    pub answer: Result<Vec<u8>, u32>,
}

/// Read one reply. `waiting(cookie)` says how many data bytes a
/// successful reply to that request carries, or None when no request has
/// that cookie (which ends the connection: the stream can no longer be
/// followed).
pub fn read<R: Read>(r: &mut R, waiting: impl FnOnce(u64) -> Option<usize>) -> io::Result<Reply> {
    let mut head = [0u8; 16];
    r.read_exact(&mut head)?;
    let magic = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
    if magic != SIMPLE_REPLY_MAGIC {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("bad reply magic {magic:#010x}")));
    }
    let error = u32::from_be_bytes([head[4], head[5], head[6], head[7]]);
    let cookie = u64::from_be_bytes([head[8], head[9], head[10], head[11], head[12], head[13], head[14], head[15]]);
    let Some(len) = waiting(cookie) else {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("reply to unknown cookie {cookie}")));
    };
    if error != 0 {
        return Ok(Reply { cookie, answer: Err(error) });
    }
    let mut data = vec![0u8; len];
    r.read_exact(&mut data)?;
    Ok(Reply { cookie, answer: Ok(data) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(error: u32, cookie: u64) -> Vec<u8> {
        [&SIMPLE_REPLY_MAGIC.to_be_bytes()[..], &error.to_be_bytes(), &cookie.to_be_bytes()].concat()
    }

    #[test]
    fn data_is_the_length_asked_for() {
        let wire = [head(0, 7), vec![1, 2, 3, 4, 5]].concat();
        let reply = read(&mut &wire[..], |c| (c == 7).then_some(4)).unwrap();
        assert_eq!(reply, Reply { cookie: 7, answer: Ok(vec![1, 2, 3, 4]) });
        let reply = read(&mut &head(5, 7)[..], |_| Some(4)).unwrap();
        assert_eq!(reply.answer, Err(5), "an error reply carries no data");
    }

    #[test]
    fn unknown_cookies_bad_magic_and_short_data_end_the_stream() {
        let e = read(&mut &head(0, 9)[..], |_| None).unwrap_err();
        assert!(e.to_string().contains("unknown cookie 9"), "{e}");
        let mut bad = head(0, 7);
        bad[0] ^= 1;
        assert_eq!(read(&mut &bad[..], |_| Some(0)).unwrap_err().kind(), io::ErrorKind::InvalidData);
        let short = [head(0, 7), vec![1, 2]].concat();
        assert_eq!(read(&mut &short[..], |_| Some(4)).unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
    }
}
