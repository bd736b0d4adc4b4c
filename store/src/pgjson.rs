//! `jsonb` to and from PostgreSQL without a second serialization: events are
//! sent as their canonical JSON text, and read with `serde_json::from_slice`
//! (tokio-postgres's own `Json` reads through `from_reader`, several times
//! slower on the log's hot read path).

use std::error::Error;

use bytes::{BufMut, BytesMut};
use serde::de::DeserializeOwned;
use tokio_postgres::types::{to_sql_checked, FromSql, IsNull, ToSql, Type};

/// The `jsonb` binary format is a version byte, then the JSON text.
const JSONB_VERSION: u8 = 1;

/// JSON text that is already valid (canonical) JSON, sent as `jsonb`.
#[derive(Debug)]
pub(crate) struct JsonbText<'a>(pub &'a [u8]);

impl ToSql for JsonbText<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        if *ty == Type::JSONB {
            out.put_u8(JSONB_VERSION);
        }
        out.extend_from_slice(self.0);
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::JSONB || *ty == Type::JSON
    }

    to_sql_checked!();
}

/// A `json` or `jsonb` column decoded into `T`.
pub(crate) struct JsonbValue<T>(pub T);

impl<'a, T: DeserializeOwned> FromSql<'a> for JsonbValue<T> {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn Error + Sync + Send>> {
        let text = if *ty == Type::JSONB {
            match raw.split_first() {
                Some((&JSONB_VERSION, rest)) => rest,
                _ => return Err("unsupported jsonb version".into()),
            }
        } else {
            raw
        };
        Ok(JsonbValue(serde_json::from_slice(text)?))
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::JSONB || *ty == Type::JSON
    }
}
