//! MQTT 5 properties (5.0 §2.2.2): typed, checked against the packet they
//! appear in.
//!
//! # Format
//!
//! ```text
//!  property length   variable byte integer: bytes of properties that follow
//!  property ...      identifier (variable byte integer) then its value:
//!                    byte | two-byte int | four-byte int | variable byte int
//!                    | UTF-8 string | binary data | UTF-8 string pair
//! ```
//!
//! | id   | property                          | type   | packets |
//! |------|-----------------------------------|--------|---------|
//! | 0x01 | Payload Format Indicator          | byte   | PUBLISH, will |
//! | 0x02 | Message Expiry Interval           | u32    | PUBLISH, will |
//! | 0x03 | Content Type                      | string | PUBLISH, will |
//! | 0x08 | Response Topic                    | string | PUBLISH, will |
//! | 0x09 | Correlation Data                  | binary | PUBLISH, will |
//! | 0x0B | Subscription Identifier           | vbi    | PUBLISH, SUBSCRIBE |
//! | 0x11 | Session Expiry Interval           | u32    | CONNECT, CONNACK, DISCONNECT |
//! | 0x12 | Assigned Client Identifier        | string | CONNACK |
//! | 0x13 | Server Keep Alive                 | u16    | CONNACK |
//! | 0x15 | Authentication Method             | string | CONNECT, CONNACK, AUTH |
//! | 0x16 | Authentication Data               | binary | CONNECT, CONNACK, AUTH |
//! | 0x17 | Request Problem Information       | byte   | CONNECT |
//! | 0x18 | Will Delay Interval               | u32    | will |
//! | 0x19 | Request Response Information      | byte   | CONNECT |
//! | 0x1A | Response Information              | string | CONNACK |
//! | 0x1C | Server Reference                  | string | CONNACK, DISCONNECT |
//! | 0x1F | Reason String                     | string | CONNACK, PUBACK..PUBCOMP, SUBACK, UNSUBACK, DISCONNECT, AUTH |
//! | 0x21 | Receive Maximum                   | u16    | CONNECT, CONNACK |
//! | 0x22 | Topic Alias Maximum               | u16    | CONNECT, CONNACK |
//! | 0x23 | Topic Alias                       | u16    | PUBLISH |
//! | 0x24 | Maximum QoS                       | byte   | CONNACK |
//! | 0x25 | Retain Available                  | byte   | CONNACK |
//! | 0x26 | User Property                     | pair   | all |
//! | 0x27 | Maximum Packet Size               | u32    | CONNECT, CONNACK |
//! | 0x28 | Wildcard Subscription Available   | byte   | CONNACK |
//! | 0x29 | Subscription Identifier Available | byte   | CONNACK |
//! | 0x2A | Shared Subscription Available     | byte   | CONNACK |
//!
//! # Invariants
//!
//! - An identifier not allowed in the packet (or unknown) is malformed
//!   (§2.2.2.2); a property twice is a protocol error, except User Property
//!   and, in PUBLISH, Subscription Identifier.
//! - Protocol errors on values: Subscription Identifier 0, Receive Maximum 0,
//!   Maximum Packet Size 0, a 0-or-1 byte with another value, Authentication
//!   Data without Authentication Method. The encoder refuses the same.
//! - Not checked here, left to the session: Topic Alias against the
//!   negotiated maximum (0 included: its answer is Topic Alias invalid, 0x94).

use bytes::{BufMut, Bytes, BytesMut};

use super::{
    DecodeError, EncodeError, MAX_VARIABLE_BYTE_INTEGER, Protocol, Reader, put_binary, put_string,
    put_vbi, vbi_len,
};

/// Every MQTT 5 property, typed. For 3.1.1 packets it is always default
/// (empty). Field docs give the identifier; §3.x of the 5.0 spec says why each
/// exists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Properties {
    /// 0x01: 0 unspecified bytes, 1 UTF-8 payload.
    pub payload_format_indicator: Option<u8>,
    /// 0x02: seconds the message lives.
    pub message_expiry_interval: Option<u32>,
    /// 0x03: MIME-like type of the payload.
    pub content_type: Option<String>,
    /// 0x08: topic for a response (request/response).
    pub response_topic: Option<String>,
    /// 0x09: matches a response to its request.
    pub correlation_data: Option<Bytes>,
    /// 0x0B: PUBLISH may carry several; SUBSCRIBE at most one; 1..=268,435,455.
    pub subscription_identifiers: Vec<u32>,
    /// 0x11: seconds the session outlives the connection.
    pub session_expiry_interval: Option<u32>,
    /// 0x12: the client id the server chose for an empty one.
    pub assigned_client_identifier: Option<String>,
    /// 0x13: keep alive the server imposes.
    pub server_keep_alive: Option<u16>,
    /// 0x15: extended authentication method.
    pub authentication_method: Option<String>,
    /// 0x16: extended authentication data (needs a method).
    pub authentication_data: Option<Bytes>,
    /// 0x17: 0 or 1.
    pub request_problem_information: Option<u8>,
    /// 0x18: seconds before the will is published.
    pub will_delay_interval: Option<u32>,
    /// 0x19: 0 or 1.
    pub request_response_information: Option<u8>,
    /// 0x1A: basis for response topics.
    pub response_information: Option<String>,
    /// 0x1C: another server to use.
    pub server_reference: Option<String>,
    /// 0x1F: human-readable diagnostics.
    pub reason_string: Option<String>,
    /// 0x21: in-flight QoS 1/2 limit, never 0.
    pub receive_maximum: Option<u16>,
    /// 0x22: highest topic alias accepted.
    pub topic_alias_maximum: Option<u16>,
    /// 0x23: stands for the topic name.
    pub topic_alias: Option<u16>,
    /// 0x24: 0 or 1.
    pub maximum_qos: Option<u8>,
    /// 0x25: 0 or 1.
    pub retain_available: Option<u8>,
    /// 0x26: application name/value pairs, order kept, repeats allowed.
    pub user_properties: Vec<(String, String)>,
    /// 0x27: largest packet the sender accepts, never 0.
    pub maximum_packet_size: Option<u32>,
    /// 0x28: 0 or 1.
    pub wildcard_subscription_available: Option<u8>,
    /// 0x29: 0 or 1.
    pub subscription_identifier_available: Option<u8>,
    /// 0x2A: 0 or 1.
    pub shared_subscription_available: Option<u8>,
}

/// Where a property list appears; decides which identifiers are allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Context {
    Connect,
    Will,
    ConnAck,
    Publish,
    Ack,
    Subscribe,
    SubAck,
    Unsubscribe,
    UnsubAck,
    Disconnect,
    Auth,
}

impl Context {
    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

const CONNECT: u16 = 1 << Context::Connect as u16;
const WILL: u16 = 1 << Context::Will as u16;
const CONNACK: u16 = 1 << Context::ConnAck as u16;
const PUBLISH: u16 = 1 << Context::Publish as u16;
const ACK: u16 = 1 << Context::Ack as u16;
const SUBSCRIBE: u16 = 1 << Context::Subscribe as u16;
const SUBACK: u16 = 1 << Context::SubAck as u16;
const UNSUBACK: u16 = 1 << Context::UnsubAck as u16;
const DISCONNECT: u16 = 1 << Context::Disconnect as u16;
const AUTH: u16 = 1 << Context::Auth as u16;
const ALL: u16 = (1 << (Context::Auth as u16 + 1)) - 1;

/// The contexts an identifier may appear in (0: unknown identifier).
pub(crate) fn allowed_in(id: u32) -> u16 {
    match id {
        0x01 | 0x02 | 0x03 | 0x08 | 0x09 => PUBLISH | WILL,
        0x0b => PUBLISH | SUBSCRIBE,
        0x11 => CONNECT | CONNACK | DISCONNECT,
        0x12 | 0x13 | 0x1a | 0x24 | 0x25 | 0x28 | 0x29 | 0x2a => CONNACK,
        0x15 | 0x16 => CONNECT | CONNACK | AUTH,
        0x17 | 0x19 => CONNECT,
        0x18 => WILL,
        0x1c => CONNACK | DISCONNECT,
        0x1f => CONNACK | ACK | SUBACK | UNSUBACK | DISCONNECT | AUTH,
        0x21 | 0x22 | 0x27 => CONNECT | CONNACK,
        0x23 => PUBLISH,
        0x26 => ALL,
        _ => 0,
    }
}

/// Stores a property that may appear once.
fn once<T>(slot: &mut Option<T>, value: T, id: u32) -> Result<(), DecodeError> {
    if slot.is_some() {
        return Err(DecodeError::Protocol(format!(
            "property {id:#04x} appears more than once"
        )));
    }
    *slot = Some(value);
    Ok(())
}

impl Properties {
    /// A packet's properties under `protocol`: read as [`Properties::read`]
    /// does for 5.0; none for 3.1.1, which has no properties.
    pub(crate) fn read_in(
        r: &mut Reader,
        protocol: Protocol,
        ctx: Context,
    ) -> Result<Self, DecodeError> {
        match protocol {
            Protocol::V5 => Self::read(r, ctx),
            Protocol::V311 => Ok(Self::default()),
        }
    }

    /// Bytes the properties take under `protocol` (none for 3.1.1).
    pub(crate) fn len_in(&self, protocol: Protocol) -> usize {
        match protocol {
            Protocol::V5 => self.encoded_len(),
            Protocol::V311 => 0,
        }
    }

    /// Writes the properties as [`Properties::write`] does under 5.0;
    /// nothing under 3.1.1.
    pub(crate) fn write_in(
        &self,
        protocol: Protocol,
        ctx: Context,
        out: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        match protocol {
            Protocol::V5 => self.write(ctx, out),
            Protocol::V311 => Ok(()),
        }
    }

    /// Reads a property length and the properties it covers.
    pub(crate) fn read(r: &mut Reader, ctx: Context) -> Result<Self, DecodeError> {
        let len = r.vbi("property length")?;
        let len = usize::try_from(len)
            .map_err(|_| DecodeError::Malformed("property length out of range".into()))?;
        let mut r = Reader::new(r.take(len, "properties")?);
        let mut p = Self::default();
        while !r.is_empty() {
            let id = r.vbi("property identifier")?;
            if allowed_in(id) & ctx.bit() == 0 {
                return Err(DecodeError::Malformed(format!(
                    "property {id:#04x} is not allowed in {ctx:?}"
                )));
            }
            let what = "property value";
            match id {
                0x01 => once(&mut p.payload_format_indicator, r.u8(what)?, id)?,
                0x02 => once(&mut p.message_expiry_interval, r.u32(what)?, id)?,
                0x03 => once(&mut p.content_type, r.string(what)?, id)?,
                0x08 => once(&mut p.response_topic, r.string(what)?, id)?,
                0x09 => once(&mut p.correlation_data, r.binary(what)?, id)?,
                0x0b => p.subscription_identifiers.push(r.vbi(what)?),
                0x11 => once(&mut p.session_expiry_interval, r.u32(what)?, id)?,
                0x12 => once(&mut p.assigned_client_identifier, r.string(what)?, id)?,
                0x13 => once(&mut p.server_keep_alive, r.u16(what)?, id)?,
                0x15 => once(&mut p.authentication_method, r.string(what)?, id)?,
                0x16 => once(&mut p.authentication_data, r.binary(what)?, id)?,
                0x17 => once(&mut p.request_problem_information, r.u8(what)?, id)?,
                0x18 => once(&mut p.will_delay_interval, r.u32(what)?, id)?,
                0x19 => once(&mut p.request_response_information, r.u8(what)?, id)?,
                0x1a => once(&mut p.response_information, r.string(what)?, id)?,
                0x1c => once(&mut p.server_reference, r.string(what)?, id)?,
                0x1f => once(&mut p.reason_string, r.string(what)?, id)?,
                0x21 => once(&mut p.receive_maximum, r.u16(what)?, id)?,
                0x22 => once(&mut p.topic_alias_maximum, r.u16(what)?, id)?,
                0x23 => once(&mut p.topic_alias, r.u16(what)?, id)?,
                0x24 => once(&mut p.maximum_qos, r.u8(what)?, id)?,
                0x25 => once(&mut p.retain_available, r.u8(what)?, id)?,
                0x26 => p.user_properties.push((r.string(what)?, r.string(what)?)),
                0x27 => once(&mut p.maximum_packet_size, r.u32(what)?, id)?,
                0x28 => once(&mut p.wildcard_subscription_available, r.u8(what)?, id)?,
                0x29 => once(&mut p.subscription_identifier_available, r.u8(what)?, id)?,
                0x2a => once(&mut p.shared_subscription_available, r.u8(what)?, id)?,
                _ => {
                    return Err(DecodeError::Malformed(format!(
                        "unknown property {id:#04x}"
                    )));
                }
            }
        }
        p.value_error(ctx)
            .map_or(Ok(p), |e| Err(DecodeError::Protocol(e)))
    }

    /// Which identifiers are present.
    fn present(&self) -> [(u32, bool); 27] {
        [
            (0x01, self.payload_format_indicator.is_some()),
            (0x02, self.message_expiry_interval.is_some()),
            (0x03, self.content_type.is_some()),
            (0x08, self.response_topic.is_some()),
            (0x09, self.correlation_data.is_some()),
            (0x0b, !self.subscription_identifiers.is_empty()),
            (0x11, self.session_expiry_interval.is_some()),
            (0x12, self.assigned_client_identifier.is_some()),
            (0x13, self.server_keep_alive.is_some()),
            (0x15, self.authentication_method.is_some()),
            (0x16, self.authentication_data.is_some()),
            (0x17, self.request_problem_information.is_some()),
            (0x18, self.will_delay_interval.is_some()),
            (0x19, self.request_response_information.is_some()),
            (0x1a, self.response_information.is_some()),
            (0x1c, self.server_reference.is_some()),
            (0x1f, self.reason_string.is_some()),
            (0x21, self.receive_maximum.is_some()),
            (0x22, self.topic_alias_maximum.is_some()),
            (0x23, self.topic_alias.is_some()),
            (0x24, self.maximum_qos.is_some()),
            (0x25, self.retain_available.is_some()),
            (0x26, !self.user_properties.is_empty()),
            (0x27, self.maximum_packet_size.is_some()),
            (0x28, self.wildcard_subscription_available.is_some()),
            (0x29, self.subscription_identifier_available.is_some()),
            (0x2a, self.shared_subscription_available.is_some()),
        ]
    }

    /// The first value the protocol forbids in `ctx`, described.
    fn value_error(&self, ctx: Context) -> Option<String> {
        let flags = [
            (0x01, self.payload_format_indicator),
            (0x17, self.request_problem_information),
            (0x19, self.request_response_information),
            (0x24, self.maximum_qos),
            (0x25, self.retain_available),
            (0x28, self.wildcard_subscription_available),
            (0x29, self.subscription_identifier_available),
            (0x2a, self.shared_subscription_available),
        ];
        if let Some((id, v)) = flags.iter().find(|(_, v)| v.is_some_and(|v| v > 1)) {
            return Some(format!("property {id:#04x} is {v:?}, not 0 or 1"));
        }
        let ids = &self.subscription_identifiers;
        if ids
            .iter()
            .any(|&id| id == 0 || id > MAX_VARIABLE_BYTE_INTEGER)
        {
            return Some("subscription identifier out of 1..=268435455".into());
        }
        if ctx == Context::Subscribe && ids.len() > 1 {
            return Some("more than one subscription identifier in SUBSCRIBE".into());
        }
        if self.receive_maximum == Some(0) {
            return Some("receive maximum 0".into());
        }
        if self.maximum_packet_size == Some(0) {
            return Some("maximum packet size 0".into());
        }
        if self.authentication_data.is_some() && self.authentication_method.is_none() {
            return Some("authentication data without authentication method".into());
        }
        None
    }

    /// Bytes the properties take, without their length prefix.
    fn body_len(&self) -> usize {
        let byte = |v: Option<u8>| v.map_or(0, |_| 2);
        let two = |v: Option<u16>| v.map_or(0, |_| 3);
        let four = |v: Option<u32>| v.map_or(0, |_| 5);
        let string = |v: &Option<String>| v.as_ref().map_or(0, |s| 3 + s.len());
        let binary = |v: &Option<Bytes>| v.as_ref().map_or(0, |b| 3 + b.len());
        let sub_ids: usize = self
            .subscription_identifiers
            .iter()
            .map(|&id| 1 + vbi_len(id as usize))
            .sum();
        let users: usize = self
            .user_properties
            .iter()
            .map(|(k, v)| 5 + k.len() + v.len())
            .sum();
        byte(self.payload_format_indicator)
            + four(self.message_expiry_interval)
            + string(&self.content_type)
            + string(&self.response_topic)
            + binary(&self.correlation_data)
            + sub_ids
            + four(self.session_expiry_interval)
            + string(&self.assigned_client_identifier)
            + two(self.server_keep_alive)
            + string(&self.authentication_method)
            + binary(&self.authentication_data)
            + byte(self.request_problem_information)
            + four(self.will_delay_interval)
            + byte(self.request_response_information)
            + string(&self.response_information)
            + string(&self.server_reference)
            + string(&self.reason_string)
            + two(self.receive_maximum)
            + two(self.topic_alias_maximum)
            + two(self.topic_alias)
            + byte(self.maximum_qos)
            + byte(self.retain_available)
            + users
            + four(self.maximum_packet_size)
            + byte(self.wildcard_subscription_available)
            + byte(self.subscription_identifier_available)
            + byte(self.shared_subscription_available)
    }

    /// Bytes the properties take with their length prefix.
    pub(crate) fn encoded_len(&self) -> usize {
        let body = self.body_len();
        vbi_len(body) + body
    }

    /// Writes the property length and the properties, after checking that
    /// each is allowed in `ctx` and has a value the protocol allows.
    pub(crate) fn write(&self, ctx: Context, out: &mut BytesMut) -> Result<(), EncodeError> {
        if let Some((id, _)) = self
            .present()
            .iter()
            .find(|(id, p)| *p && allowed_in(*id) & ctx.bit() == 0)
        {
            return Err(EncodeError::Invalid(format!(
                "property {id:#04x} is not allowed in {ctx:?}"
            )));
        }
        if let Some(e) = self.value_error(ctx) {
            return Err(EncodeError::Invalid(e));
        }
        let len = u32::try_from(self.body_len())
            .ok()
            .filter(|&len| len <= MAX_VARIABLE_BYTE_INTEGER)
            .ok_or_else(|| EncodeError::Invalid("properties too long".into()))?;
        put_vbi(out, len);
        let what = "property value";
        put_u8(out, 0x01, self.payload_format_indicator);
        put_u32(out, 0x02, self.message_expiry_interval);
        put_str(out, 0x03, &self.content_type)?;
        put_str(out, 0x08, &self.response_topic)?;
        put_bin(out, 0x09, &self.correlation_data)?;
        for &id in &self.subscription_identifiers {
            out.put_u8(0x0b);
            put_vbi(out, id);
        }
        put_u32(out, 0x11, self.session_expiry_interval);
        put_str(out, 0x12, &self.assigned_client_identifier)?;
        put_u16(out, 0x13, self.server_keep_alive);
        put_str(out, 0x15, &self.authentication_method)?;
        put_bin(out, 0x16, &self.authentication_data)?;
        put_u8(out, 0x17, self.request_problem_information);
        put_u32(out, 0x18, self.will_delay_interval);
        put_u8(out, 0x19, self.request_response_information);
        put_str(out, 0x1a, &self.response_information)?;
        put_str(out, 0x1c, &self.server_reference)?;
        put_str(out, 0x1f, &self.reason_string)?;
        put_u16(out, 0x21, self.receive_maximum);
        put_u16(out, 0x22, self.topic_alias_maximum);
        put_u16(out, 0x23, self.topic_alias);
        put_u8(out, 0x24, self.maximum_qos);
        put_u8(out, 0x25, self.retain_available);
        for (key, value) in &self.user_properties {
            out.put_u8(0x26);
            put_string(out, key, what)?;
            put_string(out, value, what)?;
        }
        put_u32(out, 0x27, self.maximum_packet_size);
        put_u8(out, 0x28, self.wildcard_subscription_available);
        put_u8(out, 0x29, self.subscription_identifier_available);
        put_u8(out, 0x2a, self.shared_subscription_available);
        Ok(())
    }
}

fn put_u8(out: &mut BytesMut, id: u8, v: Option<u8>) {
    if let Some(v) = v {
        out.put_u8(id);
        out.put_u8(v);
    }
}

fn put_u16(out: &mut BytesMut, id: u8, v: Option<u16>) {
    if let Some(v) = v {
        out.put_u8(id);
        out.put_u16(v);
    }
}

fn put_u32(out: &mut BytesMut, id: u8, v: Option<u32>) {
    if let Some(v) = v {
        out.put_u8(id);
        out.put_u32(v);
    }
}

fn put_str(out: &mut BytesMut, id: u8, v: &Option<String>) -> Result<(), EncodeError> {
    if let Some(v) = v {
        out.put_u8(id);
        put_string(out, v, "property value")?;
    }
    Ok(())
}

fn put_bin(out: &mut BytesMut, id: u8, v: &Option<Bytes>) -> Result<(), EncodeError> {
    if let Some(v) = v {
        out.put_u8(id);
        put_binary(out, v, "property value")?;
    }
    Ok(())
}
