//! Response bodies. An answer that can carry a secret (a login's token, a data key, a
//! decrypted plaintext) is read into one buffer that is wiped when dropped, and grows
//! without leaving an unwiped copy behind; other answers stay in reqwest's shared bytes,
//! uncopied.
//!
//! What this cannot reach: hyper reads the socket (or rustls's plaintext) into its own
//! buffers and hands them over as chunks, which are freed unwiped; so do the TLS
//! library's buffers. The chunks are dropped as soon as they are copied, so the copy
//! this crate keeps and parses from is the wiped one.

use std::fmt;
use std::ops::Deref;

use bytes::Bytes;
use zeroize::Zeroizing;

/// Whether an answer can carry a secret (token, data key, plaintext).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Secrecy {
    Public,
    Secret,
}

/// A response body, read whole.
pub(crate) enum ResponseBody {
    Public(Bytes),
    Secret(Zeroizing<Vec<u8>>),
}

impl Deref for ResponseBody {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            ResponseBody::Public(b) => b,
            ResponseBody::Secret(b) => b,
        }
    }
}

/// Never the contents: a body may hold a token or key material.
impl fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self {
            ResponseBody::Public(_) => "Public",
            ResponseBody::Secret(_) => "Secret",
        };
        write!(f, "ResponseBody::{kind}(<{} bytes>)", self.len())
    }
}

/// Most bytes reserved up front on the word of a `Content-Length` header; a longer body
/// grows the buffer as it arrives.
const PRESIZE_LIMIT: u64 = 16 << 20;

pub(crate) async fn read(
    resp: reqwest::Response,
    secrecy: Secrecy,
) -> Result<ResponseBody, reqwest::Error> {
    match secrecy {
        Secrecy::Public => Ok(ResponseBody::Public(resp.bytes().await?)),
        Secrecy::Secret => read_secret(resp).await.map(ResponseBody::Secret),
    }
}

/// Reads the body chunk by chunk into a wiped buffer (`bytes()` would first gather it
/// into an unwiped one). A future dropped halfway drops, and so wipes, the buffer.
async fn read_secret(mut resp: reqwest::Response) -> Result<Zeroizing<Vec<u8>>, reqwest::Error> {
    let presize = resp.content_length().unwrap_or(0).min(PRESIZE_LIMIT) as usize;
    let mut buf = Zeroizing::new(Vec::with_capacity(presize));
    while let Some(chunk) = resp.chunk().await? {
        append_wiped(&mut buf, &chunk);
    }
    Ok(buf)
}

/// Appends `bytes`, moving to a larger buffer by hand when full: `Vec`'s own growth
/// would free the old allocation, with the secret in it, unwiped. The old buffer is
/// wiped as it is dropped.
pub(crate) fn append_wiped(buf: &mut Zeroizing<Vec<u8>>, bytes: &[u8]) {
    let needed = buf.len() + bytes.len();
    if needed > buf.capacity() {
        let mut bigger = Zeroizing::new(Vec::with_capacity(needed.max(buf.capacity() * 2)));
        bigger.extend_from_slice(buf);
        *buf = bigger;
    }
    buf.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appending_grows_by_hand_and_keeps_every_byte() {
        let mut buf = Zeroizing::new(Vec::with_capacity(4));
        let first = buf.as_ptr();
        append_wiped(&mut buf, b"abc");
        assert_eq!(buf.as_ptr(), first, "room enough: no new buffer");
        append_wiped(&mut buf, b"defgh");
        assert_eq!(&buf[..], b"abcdefgh");
        assert!(buf.capacity() >= 8);
        let cap = buf.capacity();
        append_wiped(&mut buf, &vec![b'x'; cap]);
        assert_eq!(buf.len(), 8 + cap);
        assert_eq!(&buf[..8], b"abcdefgh");
    }

    #[test]
    fn debug_shows_the_size_not_the_contents() {
        let secret = ResponseBody::Secret(Zeroizing::new(
            br#"{"auth":{"client_token":"hvs.body-secret"}}"#.to_vec(),
        ));
        let public = ResponseBody::Public(Bytes::from_static(b"{\"data\":\"visible\"}"));
        let shown = format!("{secret:?} {public:?}");
        assert!(
            !shown.contains("body-secret") && !shown.contains("visible"),
            "{shown}"
        );
        assert!(shown.contains("Secret(<43 bytes>)"), "{shown}");
    }
}
