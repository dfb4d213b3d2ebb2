//! Encoders that append one frame straight into the caller's buffer.
//!
//! Each reserves exactly the frame's wire length once, then writes it; none
//! builds an intermediate buffer.

use bytes::{BufMut, BytesMut};

use super::{
    Handshake, Kind, CLOSE_CODE_LEN, HANDSHAKE_FRAME_LEN, HANDSHAKE_LEN, HEADER_LEN, MAGIC,
    MAX_CLOSE_REASON, U64_LEN, VERSION,
};
use crate::error::CloseCode;

/// Writes a header announcing `payload_len` bytes of kind `kind`.
/// `payload_len` is below `u32::MAX` (checked by the callers that take it
/// from their own input).
#[inline]
fn put_header(kind: Kind, payload_len: usize, dst: &mut BytesMut) {
    dst.put_u32(payload_len as u32 + 1);
    dst.put_u8(kind as u8);
}

#[inline]
fn encode_handshake(kind: Kind, hs: &Handshake, dst: &mut BytesMut) {
    dst.reserve(HANDSHAKE_FRAME_LEN);
    put_header(kind, HANDSHAKE_LEN, dst);
    dst.put_slice(&MAGIC);
    dst.put_u8(VERSION);
    dst.put_u8(hs.flags);
    dst.put_u32(hs.interval_ms);
    dst.put_u32(hs.timeout_ms);
    dst.put_u64(hs.session_id);
    dst.put_u64(hs.recv_seq);
}

#[inline]
fn encode_u64(kind: Kind, value: u64, dst: &mut BytesMut) {
    dst.reserve(HEADER_LEN + U64_LEN);
    put_header(kind, U64_LEN, dst);
    dst.put_u64(value);
}

/// Appends a HELLO frame (35 bytes) carrying `hs`, with magic `TTHR` and
/// version 1.
#[inline]
pub fn encode_hello(hs: &Handshake, dst: &mut BytesMut) {
    encode_handshake(Kind::Hello, hs, dst);
}

/// Appends a WELCOME frame (35 bytes) carrying `hs`, with magic `TTHR` and
/// version 1.
#[inline]
pub fn encode_welcome(hs: &Handshake, dst: &mut BytesMut) {
    encode_handshake(Kind::Welcome, hs, dst);
}

/// Appends a PING frame (13 bytes) with `nonce`.
#[inline]
pub fn encode_ping(nonce: u64, dst: &mut BytesMut) {
    encode_u64(Kind::Ping, nonce, dst);
}

/// Appends a PONG frame (13 bytes) echoing `nonce`.
#[inline]
pub fn encode_pong(nonce: u64, dst: &mut BytesMut) {
    encode_u64(Kind::Pong, nonce, dst);
}

/// Appends an ACK frame (13 bytes) with the count of DATA frames received.
#[inline]
pub fn encode_ack(count: u64, dst: &mut BytesMut) {
    encode_u64(Kind::Ack, count, dst);
}

/// Appends a CLOSE frame with `code` and `reason`.
///
/// A reason longer than 123 bytes is cut at the last char boundary at or
/// before byte 123, so the frame is always valid and this never panics.
#[inline]
pub fn encode_close(code: CloseCode, reason: &str, dst: &mut BytesMut) {
    let reason = truncate_reason(reason);
    dst.reserve(HEADER_LEN + CLOSE_CODE_LEN + reason.len());
    put_header(Kind::Close, CLOSE_CODE_LEN + reason.len(), dst);
    dst.put_u16(code.0);
    dst.put_slice(reason.as_bytes());
}

/// Appends a DATA frame carrying a copy of `payload`.
///
/// To send a [`Bytes`](bytes::Bytes) payload without copying it, write
/// [`data_header`] and the payload as two slices instead.
///
/// # Panics
///
/// If `payload` is 2³² − 1 bytes or longer: no `u32` length can describe
/// it, and writing a wrapped length would let the payload's bytes be read
/// as frames by the peer.
#[inline]
pub fn encode_data(payload: &[u8], dst: &mut BytesMut) {
    dst.reserve(HEADER_LEN + payload.len());
    dst.put_slice(&data_header(payload.len()));
    dst.put_slice(payload);
}

/// The 5-byte header of a DATA frame with `payload_len` payload bytes, for
/// writev-style sends (this header, then the caller's own payload buffer).
///
/// ```
/// use tether::proto::codec::data_header;
/// assert_eq!(data_header(2), [0, 0, 0, 3, 0x03]);
/// ```
///
/// # Panics
///
/// If `payload_len >= u32::MAX` (see [`encode_data`]); the caller
/// guarantees it is not, normally by bounding messages with `max_frame`.
#[inline]
pub fn data_header(payload_len: usize) -> [u8; HEADER_LEN] {
    assert!(
        payload_len < u32::MAX as usize,
        "DATA payload of {payload_len} bytes does not fit a u32 frame length"
    );
    let [a, b, c, d] = (payload_len as u32 + 1).to_be_bytes();
    [a, b, c, d, Kind::Data as u8]
}

/// `reason` cut to at most [`MAX_CLOSE_REASON`] bytes at a char boundary.
#[inline]
fn truncate_reason(reason: &str) -> &str {
    if reason.len() <= MAX_CLOSE_REASON {
        return reason;
    }
    // A UTF-8 char is at most 4 bytes, so this steps back at most 3 times;
    // index 0 is always a boundary, so it ends.
    let mut end = MAX_CLOSE_REASON;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}
