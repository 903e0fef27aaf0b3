//! The agox-rs protocol: how a coordinator and its workers talk, and nothing else.
//!
//! A connection carries **frames**: a 4-byte little-endian body length followed by a
//! MessagePack body (encoded with `rmp-serde`, structs as maps so fields are named on
//! the wire). Each direction has one message enum, [`ToWorker`] and [`FromWorker`];
//! their variant docs say who sends what, when, and which answer is expected. The
//! small fork-server conversation has its own pair, [`ForkRequest`] / [`ForkReply`].
//!
//! A frame longer than the configured maximum is a protocol error before any buffer
//! is allocated for it, so a corrupt or hostile length prefix cannot exhaust memory.
//!
//! `docs/protocol.md` in the repository describes the conversation end to end.

mod frame;
mod message;

pub use frame::{
    decode, decode_borrowed, encode_frame, encode_frame_into, read_frame, write_frame, FrameReader,
    WireError, DEFAULT_MAX_FRAME, HEADER_LEN,
};
pub use message::{
    set_attributes_pieces, FailureKind, ForkReply, ForkRequest, FromWorker, Hello, ToWorker,
    ToWorkerRef, ToWorkerView, PROTOCOL_VERSION,
};
