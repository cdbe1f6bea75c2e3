//! The request-response codec: `length u32 ‖ frame` (SPEC.md §11.4), the length checked
//! against the protocol's bound before a byte of the frame is read.
//!
//! Owns framing only. Must never allocate on a peer's say-so beyond the bound, nor hand an
//! undecodable frame upward.

use std::io;

use cairn_spec::wire::{MAX_REQUEST_BYTES, MAX_RESPONSE_BYTES};
use cairn_spec::{Decode, Encode, Request, Response};
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;

#[derive(Clone, Default)]
pub(crate) struct CairnCodec;

/// An inbound request as read: decoded, or why not. A frame that does not decode is handed
/// up as `Malformed` rather than failed in the codec, because libp2p drops a request whose
/// read fails without telling anyone: the sender would cost nothing and hear nothing.
#[derive(Debug)]
pub(crate) enum Inbound {
    /// A request.
    Request(Box<Request>),
    /// Not one: its length above the bound (unread), or its bytes undecodable.
    Malformed(String),
}

async fn read_frame<T: AsyncRead + Unpin + Send>(io: &mut T, max: usize) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("frame of {len} bytes above {max}")));
    }
    let mut buf = vec![0u8; len];
    io.read_exact(&mut buf).await?;
    Ok(buf)
}

async fn write_frame<T: AsyncWrite + Unpin + Send>(io: &mut T, bytes: &[u8]) -> io::Result<()> {
    let len = u32::try_from(bytes.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))?;
    io.write_all(&len.to_be_bytes()).await?;
    io.write_all(bytes).await?;
    io.close().await
}

fn invalid(e: cairn_spec::DecodeError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl libp2p::request_response::Codec for CairnCodec {
    type Protocol = StreamProtocol;
    type Request = Inbound;
    type Response = Response;

    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Inbound> {
        match read_frame(io, MAX_REQUEST_BYTES).await {
            Ok(bytes) => Ok(Request::from_bytes(&bytes).map_or_else(
                |e| Inbound::Malformed(format!("undecodable request ({})", e.code())),
                |r| Inbound::Request(Box::new(r)),
            )),
            Err(e) if e.kind() == io::ErrorKind::InvalidData => Ok(Inbound::Malformed(e.to_string())),
            Err(e) => Err(e),
        }
    }

    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Response> {
        Response::from_bytes(&read_frame(io, MAX_RESPONSE_BYTES).await?).map_err(invalid)
    }

    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Inbound,
    ) -> io::Result<()> {
        let Inbound::Request(req) = req else {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "only requests are sent"));
        };
        let bytes = req.to_bytes();
        if bytes.len() > MAX_REQUEST_BYTES {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "request above its bound"));
        }
        write_frame(io, &bytes).await
    }

    async fn write_response<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Response,
    ) -> io::Result<()> {
        let bytes = res.to_bytes();
        if bytes.len() > MAX_RESPONSE_BYTES {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "response above its bound"));
        }
        write_frame(io, &bytes).await
    }
}
