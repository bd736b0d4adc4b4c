//! Every bound the store enforces, in one place, units last.

pub const STREAM_ID_BYTES_MAX: usize = 200;
pub const TYPE_NAME_BYTES_MAX: usize = 100;
pub const IDEMPOTENCY_KEY_BYTES_MAX: usize = 200;
pub const EVENT_VERSION_BYTES_MAX: usize = 20;
/// The serialized JSON of one payload. Larger content belongs beside the log.
pub const PAYLOAD_BYTES_MAX: usize = 64 * 1024;
pub const METADATA_BYTES_MAX: usize = 4 * 1024;
pub const METADATA_ENTRIES_MAX: usize = 32;
pub const STREAMS_PER_APPEND_MAX: usize = 64;
pub const EVENTS_PER_APPEND_MAX: usize = 1_000;
/// Nesting of JSON arrays and objects in a payload.
pub const PAYLOAD_DEPTH_MAX: usize = 32;
/// Appends and events one group-commit transaction takes at most.
pub const BATCH_APPENDS_MAX: usize = 512;
pub const BATCH_EVENTS_MAX: usize = 8_192;
/// Appends waiting for a community's writer before callers wait to enqueue.
pub const WRITER_QUEUE_CAPACITY: usize = 4_096;
/// Rows one read of the log returns at most.
pub const READ_BATCH_MAX: i64 = 10_000;
/// One piece of content beside the log (a report's text, a photo link list).
pub const CONTENT_BYTES_MAX: usize = 1024 * 1024;
/// Pieces of content one append may carry.
pub const CONTENTS_PER_APPEND_MAX: usize = 16;
pub const MEDIA_TYPE_BYTES_MAX: usize = 100;
pub const ERASURE_REASON_BYTES_MAX: usize = 1_000;
/// Integers in payloads must be exactly representable as IEEE doubles (I-JSON),
/// so that every canonicalizer agrees on their form.
pub const SAFE_INTEGER_MAX: i64 = (1 << 53) - 1;
