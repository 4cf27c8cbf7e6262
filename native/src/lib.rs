//! `spanlake_native.decode_proto`: OTLP protobuf `ExportTraceServiceRequest` -> spanlake `Span`s.
//!
//! A drop-in for `_decode_proto` in `ingest/otlp.py` (the pure-Python path stays the reference):
//! the same `Span` / `SpanReject` objects, field by field, and the same decode errors.
//!
//! Two passes over the bytes:
//!
//! 1. `check` walks the whole request against the schema as upb (the runtime behind
//!    `ExportTraceServiceRequest.ParseFromString`) does and fails with upb's status where upb
//!    fails: truncation, tags/lengths over 5 bytes, varints over 10, field number 0 (outside
//!    groups), wire types 6/7, stray or mismatched end-group tags, more than 100 nested
//!    messages and groups, and invalid UTF-8 in *any* `string` field the schema knows (links,
//!    scopes, schema urls and entity refs included, though none of them is returned). A known
//!    field with an unexpected wire type is an unknown field to upb, not an error; so it is
//!    here. These rules were probed from upb (protobuf 7.36); tests/test_native_decode.py
//!    fuzzes them against it.
//! 2. `Builder` walks the now-valid bytes again and builds the Python objects with protobuf's
//!    merge semantics: the last occurrence of a scalar wins, repeated occurrences of a
//!    singular message (status, resource, an `AnyValue`) merge, and a oneof takes the last
//!    member set (an array/kvlist set twice in a row merges, otherwise it starts afresh).
//!
//! Why no protobuf crate (prost): it rejects a known field with an unexpected wire type,
//! accepts 6..10-byte tags and lengths, and would still need a second walk for upb's error
//! order; hand-written, the wire format is ~150 lines and the build needs only pyo3.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use pyo3::create_exception;
use pyo3::exceptions::PyValueError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString, PyTuple};

create_exception!(
    spanlake_native,
    DecodeError,
    PyValueError,
    "The bytes are not an ExportTraceServiceRequest (the message names upb's status)."
);

const REQUEST_TYPE: &str = "opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest";
/// upb's default decode depth limit (`kUpb_WireFormat_DefaultDepthLimit`), counting both
/// sub-messages and groups.
const MAX_DEPTH: i32 = 100;
// Timestamps outside this window are clock bugs, not traces: 2000-01-01 .. 2100-01-01 in ns.
const MIN_TIME_NS: u64 = 946_684_800 * 1_000_000_000;
const MAX_TIME_NS: u64 = 4_102_444_800 * 1_000_000_000;

// --- wire format ---------------------------------------------------------------------------

const WT_VARINT: u32 = 0;
const WT_I64: u32 = 1;
const WT_LEN: u32 = 2;
const WT_START_GROUP: u32 = 3;
const WT_END_GROUP: u32 = 4;
const WT_I32: u32 = 5;

/// upb's decode statuses that this input can produce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Bad {
    Malformed,
    Utf8,
    Depth,
}

impl Bad {
    fn upb_text(self) -> &'static str {
        match self {
            Bad::Malformed => "Wire format was corrupt",
            Bad::Utf8 => "String field had bad UTF-8",
            Bad::Depth => "Exceeded upb_DecodeOptions_MaxDepth",
        }
    }
}

/// A position in the request. upb reads a field's tag and varint or length without checking
/// the limit of the enclosing message (past the end of the input it reads zeros); the limit is
/// checked before the next field. The `*_at_will` reads do the same; the bounded ones stop at
/// `end` with an error (inside unknown groups, where "corrupt" is all upb can report).
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    #[inline]
    fn next_byte(&mut self) -> u8 {
        let byte = self.buf.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        byte
    }

    /// A varint of at most 10 bytes; bits beyond 64 are dropped (as upb does).
    #[inline]
    fn varint_at_will(&mut self) -> Result<u64, Bad> {
        let mut value: u64 = 0;
        for i in 0..10 {
            let byte = self.next_byte();
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(Bad::Malformed)
    }

    /// A tag: at most 5 bytes and at most u32::MAX.
    #[inline]
    fn tag_at_will(&mut self) -> Result<u32, Bad> {
        let start = self.pos;
        let value = self.varint_at_will()?;
        if self.pos - start > 5 || value > u64::from(u32::MAX) {
            return Err(Bad::Malformed);
        }
        Ok(value as u32)
    }

    /// A length: at most 5 bytes and below i32::MAX.
    #[inline]
    fn size_at_will(&mut self) -> Result<usize, Bad> {
        let start = self.pos;
        let value = self.varint_at_will()?;
        if self.pos - start > 5 || value >= i32::MAX as u64 {
            return Err(Bad::Malformed);
        }
        Ok(value as usize)
    }

    #[inline]
    fn varint(&mut self, end: usize) -> Result<u64, Bad> {
        let start = self.pos;
        let value = self.varint_at_will()?;
        if self.pos > end {
            self.pos = start;
            return Err(Bad::Malformed);
        }
        Ok(value)
    }

    #[inline]
    fn tag(&mut self, end: usize) -> Result<u32, Bad> {
        let tag = self.tag_at_will()?;
        if self.pos > end {
            return Err(Bad::Malformed);
        }
        Ok(tag)
    }

    #[inline]
    fn size(&mut self, end: usize) -> Result<usize, Bad> {
        let size = self.size_at_will()?;
        if self.pos > end || size > end - self.pos {
            return Err(Bad::Malformed);
        }
        Ok(size)
    }

    #[inline]
    fn skip(&mut self, n: usize, end: usize) -> Result<(), Bad> {
        if end < self.pos + n {
            return Err(Bad::Malformed);
        }
        self.pos += n;
        Ok(())
    }
}

// --- schema (opentelemetry-proto 1.x: collector/trace/v1, trace/v1, common/v1, resource/v1) --

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Msg {
    Request,
    ResourceSpans,
    Resource,
    EntityRef,
    ScopeSpans,
    Scope,
    Span,
    Event,
    Link,
    Status,
    KeyValue,
    AnyValue,
    ArrayValue,
    KeyValueList,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    Unknown,
    Varint, // int32, int64, uint32, bool, enum
    Fixed64,
    Fixed32,
    Str,
    Bytes,
    Message(Msg),
}

const ALL_MESSAGES: [Msg; 14] = [
    Msg::Request,
    Msg::ResourceSpans,
    Msg::Resource,
    Msg::EntityRef,
    Msg::ScopeSpans,
    Msg::Scope,
    Msg::Span,
    Msg::Event,
    Msg::Link,
    Msg::Status,
    Msg::KeyValue,
    Msg::AnyValue,
    Msg::ArrayValue,
    Msg::KeyValueList,
];

impl Msg {
    fn full_name(self) -> &'static str {
        match self {
            Msg::Request => REQUEST_TYPE,
            Msg::ResourceSpans => "opentelemetry.proto.trace.v1.ResourceSpans",
            Msg::Resource => "opentelemetry.proto.resource.v1.Resource",
            Msg::EntityRef => "opentelemetry.proto.common.v1.EntityRef",
            Msg::ScopeSpans => "opentelemetry.proto.trace.v1.ScopeSpans",
            Msg::Scope => "opentelemetry.proto.common.v1.InstrumentationScope",
            Msg::Span => "opentelemetry.proto.trace.v1.Span",
            Msg::Event => "opentelemetry.proto.trace.v1.Span.Event",
            Msg::Link => "opentelemetry.proto.trace.v1.Span.Link",
            Msg::Status => "opentelemetry.proto.trace.v1.Status",
            Msg::KeyValue => "opentelemetry.proto.common.v1.KeyValue",
            Msg::AnyValue => "opentelemetry.proto.common.v1.AnyValue",
            Msg::ArrayValue => "opentelemetry.proto.common.v1.ArrayValue",
            Msg::KeyValueList => "opentelemetry.proto.common.v1.KeyValueList",
        }
    }

    /// Every field of every message reachable from the request (the test suite compares this
    /// table with the installed descriptors, so a proto upgrade cannot slip by).
    fn field(self, number: u32) -> Field {
        use Field::*;
        match (self, number) {
            (Msg::Request, 1) => Message(Msg::ResourceSpans),
            (Msg::ResourceSpans, 1) => Message(Msg::Resource),
            (Msg::ResourceSpans, 2) => Message(Msg::ScopeSpans),
            (Msg::ResourceSpans, 3) => Str, // schema_url
            (Msg::Resource, 1) => Message(Msg::KeyValue),
            (Msg::Resource, 2) => Varint, // dropped_attributes_count
            (Msg::Resource, 3) => Message(Msg::EntityRef),
            (Msg::EntityRef, 1..=4) => Str, // schema_url, type, id_keys, description_keys
            (Msg::ScopeSpans, 1) => Message(Msg::Scope),
            (Msg::ScopeSpans, 2) => Message(Msg::Span),
            (Msg::ScopeSpans, 3) => Str, // schema_url
            (Msg::Scope, 1 | 2) => Str,  // name, version
            (Msg::Scope, 3) => Message(Msg::KeyValue),
            (Msg::Scope, 4) => Varint,
            (Msg::Span, 1 | 2 | 4) => Bytes, // trace_id, span_id, parent_span_id
            (Msg::Span, 3 | 5) => Str,       // trace_state, name
            (Msg::Span, 6 | 10 | 12 | 14) => Varint, // kind, dropped_*_count
            (Msg::Span, 7 | 8) => Fixed64,   // start/end_time_unix_nano
            (Msg::Span, 9) => Message(Msg::KeyValue),
            (Msg::Span, 11) => Message(Msg::Event),
            (Msg::Span, 13) => Message(Msg::Link),
            (Msg::Span, 15) => Message(Msg::Status),
            (Msg::Span, 16) => Fixed32, // flags
            (Msg::Event, 1) => Fixed64, // time_unix_nano
            (Msg::Event, 2) => Str,     // name
            (Msg::Event, 3) => Message(Msg::KeyValue),
            (Msg::Event, 4) => Varint,
            (Msg::Link, 1 | 2) => Bytes,
            (Msg::Link, 3) => Str, // trace_state
            (Msg::Link, 4) => Message(Msg::KeyValue),
            (Msg::Link, 5) => Varint,
            (Msg::Link, 6) => Fixed32,  // flags
            (Msg::Status, 2) => Str,    // message
            (Msg::Status, 3) => Varint, // code
            (Msg::KeyValue, 1) => Str,  // key
            (Msg::KeyValue, 2) => Message(Msg::AnyValue),
            (Msg::KeyValue, 3) => Varint,         // key_strindex
            (Msg::AnyValue, 1) => Str,            // string_value
            (Msg::AnyValue, 2 | 3 | 8) => Varint, // bool_value, int_value, string_value_strindex
            (Msg::AnyValue, 4) => Fixed64,        // double_value
            (Msg::AnyValue, 5) => Message(Msg::ArrayValue),
            (Msg::AnyValue, 6) => Message(Msg::KeyValueList),
            (Msg::AnyValue, 7) => Bytes,
            (Msg::ArrayValue, 1) => Message(Msg::AnyValue),
            (Msg::KeyValueList, 1) => Message(Msg::KeyValue),
            _ => Unknown,
        }
    }
}

// --- pass 1: upb's verdict -----------------------------------------------------------------

/// `str::from_utf8(bytes).is_ok()`, with a quicker answer for the usual short ASCII strings.
#[inline]
fn is_utf8(bytes: &[u8]) -> bool {
    let mut words = bytes.chunks_exact(8);
    let mut high = 0u64;
    for word in &mut words {
        high |= u64::from_le_bytes(word.try_into().unwrap());
    }
    for &byte in words.remainder() {
        high |= u64::from(byte);
    }
    high & 0x8080_8080_8080_8080 == 0 || std::str::from_utf8(bytes).is_ok()
}

/// Parses the fields of one message of type `msg` from `r.pos` to `end`; `depth` is how many
/// more nested messages or groups upb allows.
fn check(r: &mut Reader, end: usize, msg: Msg, depth: i32) -> Result<(), Bad> {
    while r.pos < end {
        let tag = r.tag_at_will()?;
        let (number, wire_type) = (tag >> 3, tag & 7);
        match wire_type {
            WT_VARINT => {
                r.varint_at_will()?;
            }
            WT_I64 => r.pos += 8,
            WT_I32 => r.pos += 4,
            WT_LEN => {
                let size = r.size_at_will()?;
                let start = r.pos;
                match msg.field(number) {
                    Field::Str => {
                        // upb checks a string against the end of the input, not of its message
                        // (that comes before the next field): bad UTF-8 past the message's end
                        // is reported as such.
                        let text = r.buf.get(start..start + size).ok_or(Bad::Malformed)?;
                        if !is_utf8(text) {
                            return Err(Bad::Utf8);
                        }
                    }
                    Field::Message(sub) => {
                        if start + size > end {
                            return Err(Bad::Malformed);
                        }
                        if depth < 1 {
                            return Err(Bad::Depth);
                        }
                        check(
                            &mut Reader {
                                buf: r.buf,
                                pos: start,
                            },
                            start + size,
                            sub,
                            depth - 1,
                        )?;
                    }
                    _ => {
                        if start + size > end {
                            return Err(Bad::Malformed);
                        }
                    }
                }
                r.pos = start + size;
            }
            // No field of these proto3 messages is a group: a group is always an unknown field.
            WT_START_GROUP if number != 0 => skip_group(r, end, number, depth)?,
            _ => return Err(Bad::Malformed), // end-group outside a group, wire types 6 and 7
        }
        if number == 0 {
            return Err(Bad::Malformed);
        }
    }
    if r.pos != end {
        return Err(Bad::Malformed); // the last field ran past the end of its message
    }
    Ok(())
}

/// Skips an unknown group as upb does: without looking inside (any field number, no UTF-8
/// checks), and every failure, running too deep included, is "Wire format was corrupt".
fn skip_group(r: &mut Reader, end: usize, number: u32, depth: i32) -> Result<(), Bad> {
    if depth < 1 {
        return Err(Bad::Malformed);
    }
    while r.pos < end {
        let tag = r.tag(end)?;
        match tag & 7 {
            WT_VARINT => {
                r.varint(end)?;
            }
            WT_I64 => r.skip(8, end)?,
            WT_I32 => r.skip(4, end)?,
            WT_LEN => {
                let size = r.size(end)?;
                r.pos += size;
            }
            WT_START_GROUP => skip_group(r, end, tag >> 3, depth - 1)?,
            WT_END_GROUP if tag >> 3 == number => return Ok(()),
            _ => return Err(Bad::Malformed),
        }
    }
    Err(Bad::Malformed) // unterminated
}

// --- pass 2: building the Python objects ---------------------------------------------------

#[derive(Clone, Copy)]
enum Value<'a> {
    Varint(u64),
    Fixed64(u64),
    Len(&'a [u8]),
    Other,
}

/// The fields of a message that pass 1 accepted, in wire order.
struct Fields<'a> {
    buf: &'a [u8],
    pos: usize,
}

fn fields(buf: &[u8]) -> Fields<'_> {
    Fields { buf, pos: 0 }
}

impl<'a> Fields<'a> {
    #[inline]
    fn raw_varint(&mut self) -> u64 {
        if let Some(&byte) = self.buf.get(self.pos) {
            if byte < 0x80 {
                self.pos += 1;
                return u64::from(byte);
            }
        }
        let mut value: u64 = 0;
        let mut shift = 0;
        while let Some(&byte) = self.buf.get(self.pos) {
            self.pos += 1;
            if shift < 64 {
                value |= u64::from(byte & 0x7f) << shift;
            }
            shift += 7;
            if byte & 0x80 == 0 {
                break;
            }
        }
        value
    }

    fn skip_group(&mut self) {
        let mut open = 1usize;
        while self.pos < self.buf.len() {
            let tag = self.raw_varint();
            match (tag & 7) as u32 {
                WT_VARINT => {
                    self.raw_varint();
                }
                WT_I64 => self.pos += 8,
                WT_I32 => self.pos += 4,
                WT_LEN => {
                    let n = self.raw_varint() as usize;
                    self.pos += n;
                }
                WT_START_GROUP => open += 1,
                _ => {
                    open -= 1;
                    if open == 0 {
                        return;
                    }
                }
            }
        }
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = (u32, Value<'a>);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.buf.len() {
            return None;
        }
        let tag = self.raw_varint();
        let number = (tag >> 3) as u32;
        let value = match (tag & 7) as u32 {
            WT_VARINT => Value::Varint(self.raw_varint()),
            WT_I64 => {
                let bytes = self.buf.get(self.pos..self.pos + 8)?;
                self.pos += 8;
                Value::Fixed64(u64::from_le_bytes(bytes.try_into().ok()?))
            }
            WT_LEN => {
                let n = self.raw_varint() as usize;
                let bytes = self.buf.get(self.pos..self.pos + n)?;
                self.pos += n;
                Value::Len(bytes)
            }
            WT_I32 => {
                self.pos += 4;
                Value::Other
            }
            WT_START_GROUP => {
                self.skip_group();
                Value::Other
            }
            _ => return None, // cannot happen after pass 1
        };
        Some((number, value))
    }
}

/// Text that pass 1 proved to be UTF-8.
#[inline]
fn text(bytes: &[u8]) -> &str {
    // SAFETY: `check` ran `str::from_utf8` over every `string` field before any is built.
    unsafe { std::str::from_utf8_unchecked(bytes) }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn hex<'py>(py: Python<'py>, bytes: &[u8]) -> Bound<'py, PyString> {
    let mut out = [0u8; 32]; // ids are 8 or 16 bytes
    let out = &mut out[..bytes.len() * 2];
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = HEX[usize::from(b >> 4)];
        out[2 * i + 1] = HEX[usize::from(b & 15)];
    }
    PyString::new(py, text(out))
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// `base64.b64encode(data).decode()`: standard alphabet, padded.
fn base64<'py>(py: Python<'py>, data: &[u8]) -> Bound<'py, PyString> {
    let mut out = Vec::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(B64[(n >> 18) as usize & 63]);
        out.push(B64[(n >> 12) as usize & 63]);
        out.push(if chunk.len() > 1 {
            B64[(n >> 6) as usize & 63]
        } else {
            b'='
        });
        out.push(if chunk.len() > 2 {
            B64[n as usize & 63]
        } else {
            b'='
        });
    }
    PyString::new(py, text(&out))
}

/// A fast non-cryptographic hash (FxHash's mixing step) for the string cache.
#[derive(Default)]
struct Fx(u64);

impl Hasher for Fx {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            self.add(u64::from_le_bytes(chunk.try_into().unwrap()));
        }
        let mut tail = [0u8; 8];
        tail[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
        self.add(u64::from_le_bytes(tail));
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

impl Fx {
    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

/// An `AnyValue` being merged: the oneof member set last.
enum Any<'py, 'a> {
    Unset, // no member, or string_value_strindex: `_any_value` returns None for both
    Str(&'a [u8]),
    Bool(bool),
    Int(i64),
    Double(f64),
    Bytes(&'a [u8]),
    Array(Bound<'py, PyList>),
    KvList(Bound<'py, PyDict>),
}

struct Builder<'py, 'a> {
    py: Python<'py>,
    /// Attribute keys, one `str` per distinct key in the request (a dozen or two serve
    /// thousands of attributes): no allocation, UTF-8 decoding or hashing per key after the
    /// first. The objects are equal to upb's, just shared.
    keys: RefCell<HashMap<&'a [u8], Bound<'py, PyString>, BuildHasherDefault<Fx>>>,
    span_cls: Bound<'py, PyAny>,
    reject_cls: Bound<'py, PyAny>,
    spans: Bound<'py, PyList>,
    rejects: Bound<'py, PyList>,
}

impl<'py, 'a> Builder<'py, 'a> {
    fn key(&self, key: &'a [u8]) -> Bound<'py, PyString> {
        self.keys
            .borrow_mut()
            .entry(key)
            .or_insert_with(|| PyString::new(self.py, text(key)))
            .clone()
    }

    fn request(&self, buf: &'a [u8]) -> PyResult<()> {
        for (number, value) in fields(buf) {
            if let (1, Value::Len(rs)) = (number, value) {
                self.resource_spans(rs)?;
            }
        }
        Ok(())
    }

    fn resource_spans(&self, buf: &'a [u8]) -> PyResult<()> {
        // One dict per ResourceSpans, shared by all its spans (rows.py caches by its id).
        let resource = PyDict::new(self.py);
        for (number, value) in fields(buf) {
            if let (1, Value::Len(res)) = (number, value) {
                for (number, value) in fields(res) {
                    if let (1, Value::Len(kv)) = (number, value) {
                        self.key_value(&resource, kv)?;
                    }
                }
            }
        }
        for (number, value) in fields(buf) {
            if let (2, Value::Len(ss)) = (number, value) {
                for (number, value) in fields(ss) {
                    if let (2, Value::Len(span)) = (number, value) {
                        self.span(span, &resource)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn key_value(&self, dict: &Bound<'py, PyDict>, buf: &'a [u8]) -> PyResult<()> {
        let mut key: &[u8] = b"";
        let mut value = Any::Unset;
        for (number, field) in fields(buf) {
            match (number, field) {
                (1, Value::Len(k)) => key = k,
                (2, Value::Len(v)) => self.merge_any(&mut value, v)?,
                _ => {}
            }
        }
        dict.set_item(self.key(key), self.any_object(value))
    }

    fn merge_any(&self, value: &mut Any<'py, 'a>, buf: &'a [u8]) -> PyResult<()> {
        for (number, field) in fields(buf) {
            match (number, field) {
                (1, Value::Len(s)) => *value = Any::Str(s),
                (2, Value::Varint(v)) => *value = Any::Bool(v != 0),
                (3, Value::Varint(v)) => *value = Any::Int(v as i64),
                (4, Value::Fixed64(v)) => *value = Any::Double(f64::from_bits(v)),
                (5, Value::Len(array)) => {
                    if !matches!(value, Any::Array(_)) {
                        *value = Any::Array(PyList::empty(self.py));
                    }
                    if let Any::Array(list) = value {
                        for (number, field) in fields(array) {
                            if let (1, Value::Len(item)) = (number, field) {
                                let mut element = Any::Unset;
                                self.merge_any(&mut element, item)?;
                                list.append(self.any_object(element))?;
                            }
                        }
                    }
                }
                (6, Value::Len(kvlist)) => {
                    if !matches!(value, Any::KvList(_)) {
                        *value = Any::KvList(PyDict::new(self.py));
                    }
                    if let Any::KvList(dict) = value {
                        for (number, field) in fields(kvlist) {
                            if let (1, Value::Len(kv)) = (number, field) {
                                self.key_value(dict, kv)?;
                            }
                        }
                    }
                }
                (7, Value::Len(b)) => *value = Any::Bytes(b),
                (8, Value::Varint(_)) => *value = Any::Unset,
                _ => {}
            }
        }
        Ok(())
    }

    fn any_object(&self, value: Any<'py, '_>) -> Bound<'py, PyAny> {
        let py = self.py;
        match value {
            Any::Unset => py.None().into_bound(py),
            Any::Str(s) => PyString::new(py, text(s)).into_any(),
            Any::Bool(b) => b.into_pyobject(py).unwrap().to_owned().into_any(),
            Any::Int(i) => i.into_pyobject(py).unwrap().into_any(),
            Any::Double(f) => f.into_pyobject(py).unwrap().into_any(),
            Any::Bytes(b) => base64(py, b).into_any(),
            Any::Array(list) => list.into_any(),
            Any::KvList(dict) => dict.into_any(),
        }
    }

    fn event(&self, buf: &'a [u8]) -> PyResult<Bound<'py, PyDict>> {
        let py = self.py;
        let mut name: &[u8] = b"";
        let mut time: u64 = 0;
        let attributes = PyDict::new(py);
        for (number, field) in fields(buf) {
            match (number, field) {
                (1, Value::Fixed64(t)) => time = t,
                (2, Value::Len(n)) => name = n,
                (3, Value::Len(kv)) => self.key_value(&attributes, kv)?,
                _ => {}
            }
        }
        let event = PyDict::new(py);
        event.set_item(intern!(py, "name"), PyString::new(py, text(name)))?;
        event.set_item(intern!(py, "time_unix_nano"), time)?;
        event.set_item(intern!(py, "attributes"), attributes)?;
        Ok(event)
    }

    fn span(&self, buf: &'a [u8], resource: &Bound<'py, PyDict>) -> PyResult<()> {
        let py = self.py;
        let (mut trace_id, mut span_id, mut parent): (&[u8], &[u8], &[u8]) = (b"", b"", b"");
        let mut name: &[u8] = b"";
        let (mut kind, mut status_code): (i32, i32) = (0, 0);
        let (mut start, mut end): (u64, u64) = (0, 0);
        let mut status_message: &[u8] = b"";
        let attributes = PyDict::new(py);
        let events = PyList::empty(py);
        for (number, field) in fields(buf) {
            match (number, field) {
                (1, Value::Len(b)) => trace_id = b,
                (2, Value::Len(b)) => span_id = b,
                (4, Value::Len(b)) => parent = b,
                (5, Value::Len(b)) => name = b,
                (6, Value::Varint(v)) => kind = v as i32, // int32 enum: the low 32 bits
                (7, Value::Fixed64(v)) => start = v,
                (8, Value::Fixed64(v)) => end = v,
                (9, Value::Len(kv)) => self.key_value(&attributes, kv)?,
                (11, Value::Len(e)) => events.append(self.event(e)?)?,
                (15, Value::Len(status)) => {
                    for (number, field) in fields(status) {
                        match (number, field) {
                            (2, Value::Len(m)) => status_message = m,
                            (3, Value::Varint(v)) => status_code = v as i32,
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        let name = PyString::new(py, text(name));
        if let Some(problem) = span_problem(trace_id, span_id, parent, start, end) {
            let tid = if trace_id.len() == 16 {
                hex(py, trace_id).into_any()
            } else {
                py.None().into_bound(py)
            };
            let sid = if span_id.len() == 8 {
                hex(py, span_id).into_any()
            } else {
                py.None().into_bound(py)
            };
            let error = format!("span {}: {}", name.repr()?, problem);
            let reject = self.reject_cls.call1((tid, sid, error))?;
            return self.rejects.append(reject);
        }
        let parent_id = if parent.iter().any(|&b| b != 0) {
            hex(py, parent).into_any()
        } else {
            py.None().into_bound(py)
        };
        let status_message = if status_message.is_empty() {
            py.None().into_bound(py)
        } else {
            PyString::new(py, text(status_message)).into_any()
        };
        let args = PyTuple::new(
            py,
            [
                hex(py, trace_id).into_any(),
                hex(py, span_id).into_any(),
                parent_id,
                name.into_any(),
                kind_name(py, kind).clone().into_any(),
                start.into_pyobject(py)?.into_any(),
                end.into_pyobject(py)?.into_any(),
                status_name(py, status_code).clone().into_any(),
                status_message,
                attributes.into_any(),
                events.into_any(),
                resource.clone().into_any(),
            ],
        )?;
        self.spans.append(self.span_cls.call1(args)?)
    }
}

fn kind_name(py: Python<'_>, kind: i32) -> &Bound<'_, PyString> {
    match kind {
        1 => intern!(py, "INTERNAL"),
        2 => intern!(py, "SERVER"),
        3 => intern!(py, "CLIENT"),
        4 => intern!(py, "PRODUCER"),
        5 => intern!(py, "CONSUMER"),
        _ => intern!(py, "UNSPECIFIED"),
    }
}

fn status_name(py: Python<'_>, code: i32) -> &Bound<'_, PyString> {
    match code {
        1 => intern!(py, "OK"),
        2 => intern!(py, "ERROR"),
        _ => intern!(py, "UNSET"),
    }
}

/// `_span_problem` in ingest/otlp.py, check for check and word for word.
fn span_problem(
    trace_id: &[u8],
    span_id: &[u8],
    parent: &[u8],
    start: u64,
    end: u64,
) -> Option<String> {
    let all_zero = |b: &[u8]| b.iter().all(|&x| x == 0);
    if trace_id.len() != 16 || all_zero(trace_id) {
        return Some(format!(
            "trace_id must be 16 non-zero bytes, got {} bytes",
            trace_id.len()
        ));
    }
    if span_id.len() != 8 || all_zero(span_id) {
        return Some(format!(
            "span_id must be 8 non-zero bytes, got {} bytes",
            span_id.len()
        ));
    }
    if !parent.is_empty() && parent.len() != 8 {
        return Some(format!(
            "parent_span_id must be empty or 8 bytes, got {} bytes",
            parent.len()
        ));
    }
    if !(MIN_TIME_NS..MAX_TIME_NS).contains(&start) {
        return Some(format!(
            "start_time_unix_nano {start} is outside 2000-01-01..2100-01-01"
        ));
    }
    if !(MIN_TIME_NS..MAX_TIME_NS).contains(&end) {
        return Some(format!(
            "end_time_unix_nano {end} is outside 2000-01-01..2100-01-01"
        ));
    }
    if end < start {
        return Some(format!(
            "end_time_unix_nano {end} is before start_time_unix_nano {start}"
        ));
    }
    None
}

/// Decodes an OTLP protobuf ExportTraceServiceRequest into `(spans, rejects)`, built with the
/// given `Span` and `SpanReject` classes (called with their fields in declaration order).
/// Raises `DecodeError` where `ExportTraceServiceRequest.ParseFromString` raises.
#[pyfunction]
fn decode_proto<'py>(
    py: Python<'py>,
    value: &[u8],
    span_cls: Bound<'py, PyAny>,
    reject_cls: Bound<'py, PyAny>,
) -> PyResult<(Bound<'py, PyList>, Bound<'py, PyList>)> {
    if let Err(bad) = check(
        &mut Reader { buf: value, pos: 0 },
        value.len(),
        Msg::Request,
        MAX_DEPTH,
    ) {
        return Err(DecodeError::new_err(format!(
            "Error parsing message with type '{REQUEST_TYPE}': {}",
            bad.upb_text()
        )));
    }
    let builder = Builder {
        py,
        keys: RefCell::default(),
        span_cls,
        reject_cls,
        spans: PyList::empty(py),
        rejects: PyList::empty(py),
    };
    builder.request(value)?;
    Ok((builder.spans, builder.rejects))
}

/// The schema this decoder was written for: {message full name: {field number: kind}}, kind
/// one of "varint", "fixed64", "fixed32", "string", "bytes" or a message's full name.
#[pyfunction]
fn schema(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let out = PyDict::new(py);
    for msg in ALL_MESSAGES {
        let table = PyDict::new(py);
        for number in 1..=32 {
            let kind = match msg.field(number) {
                Field::Unknown => continue,
                Field::Varint => "varint",
                Field::Fixed64 => "fixed64",
                Field::Fixed32 => "fixed32",
                Field::Str => "string",
                Field::Bytes => "bytes",
                Field::Message(m) => m.full_name(),
            };
            table.set_item(number, kind)?;
        }
        out.set_item(msg.full_name(), table)?;
    }
    Ok(out)
}

#[pymodule]
mod spanlake_native {
    #[pymodule_export]
    use super::{decode_proto, schema, DecodeError};
}
