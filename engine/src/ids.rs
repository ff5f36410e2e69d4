//! Typed identifiers and the timestamp type.
//!
//! Every entity has its own id type so that a license id cannot be passed where a device id is
//! expected. Ids are UUIDv7: random enough to be unguessable across organizations, and ordered by
//! creation time, which gives lists a natural order and keeps B-tree inserts at the right edge.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A fresh, time-ordered id.
            pub fn generate() -> Self {
                $name(Uuid::now_v7())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        // A UUID string in the admin API's OpenAPI document.
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                text_schema("uuid")
            }
        }

        impl utoipa::ToSchema for $name {}

        impl std::str::FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map($name)
            }
        }
    };
}

id_type!(
    /// An organization (a customer of the portal).
    OrgId
);
id_type!(
    /// An organization API key.
    KeyId
);
id_type!(
    /// An operator token (what the admin API lists and revokes it by; never the token).
    OperatorTokenId
);
id_type!(
    /// A license.
    LicenseId
);
id_type!(
    /// A pairing code (reusable or single-use).
    CodeId
);
id_type!(
    /// A configuration.
    ConfigId
);
id_type!(
    /// A staged rollout of a configuration's revision.
    RolloutId
);
id_type!(
    /// A webhook: an endpoint an organization registered for events.
    WebhookId
);
id_type!(
    /// A device: one pairing of one installation. Unpairing ends it; pairing again makes a new one.
    DeviceId
);
id_type!(
    /// An app installation, chosen by the app.
    InstallationId
);

/// Milliseconds since the Unix epoch, UTC. Stored as a 64-bit integer in every backend; shown
/// to admins (JSON) as RFC 3339 text with milliseconds, e.g. `2026-11-28T05:29:09.123Z`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// RFC 3339 text, UTC, with milliseconds.
    pub fn to_rfc3339(self) -> String {
        let millis = u64::try_from(self.0).unwrap_or(0);
        let time = std::time::UNIX_EPOCH + std::time::Duration::from_millis(millis);
        humantime::format_rfc3339_millis(time).to_string()
    }

    /// Parses RFC 3339 text in UTC (`Z` or `+00:00`, or no offset at all).
    pub fn parse_rfc3339(text: &str) -> Option<Timestamp> {
        let text = text.trim();
        // humantime reads any offset as UTC; refuse offsets other than UTC rather than shift
        // the time silently.
        let date_time = text
            .strip_suffix('Z')
            .or_else(|| text.strip_suffix("+00:00"))
            .unwrap_or(text);
        if date_time
            .get(10..)
            .is_some_and(|time| time.contains(['+', '-', 'Z']))
        {
            return None;
        }
        let time = humantime::parse_rfc3339_weak(date_time).ok()?;
        let since = time.duration_since(std::time::UNIX_EPOCH).ok()?;
        i64::try_from(since.as_millis()).ok().map(Timestamp)
    }
}

/// A string schema of the given format, for the OpenAPI document: ids are `uuid` text and
/// times `date-time` text (RFC 3339).
fn text_schema(format: &str) -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    use utoipa::openapi::schema::{ObjectBuilder, SchemaFormat, Type};
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::Custom(format.to_string())))
        .into()
}

// RFC 3339 text in the admin API's OpenAPI document.
impl utoipa::PartialSchema for Timestamp {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        text_schema("date-time")
    }
}

impl utoipa::ToSchema for Timestamp {}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_rfc3339())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Timestamp::parse_rfc3339(&text).ok_or_else(|| {
            serde::de::Error::custom("expected an RFC 3339 time such as 2027-01-31T00:00:00Z")
        })
    }
}

impl Timestamp {
    pub fn from_millis(ms: i64) -> Self {
        Timestamp(ms)
    }

    pub fn millis(self) -> i64 {
        self.0
    }

    pub fn plus_millis(self, ms: i64) -> Self {
        Timestamp(self.0.saturating_add(ms))
    }

    pub fn plus(self, duration: std::time::Duration) -> Self {
        self.plus_millis(i64::try_from(duration.as_millis()).unwrap_or(i64::MAX))
    }

    /// Milliseconds from `self` until `later`, zero if `later` is not after `self`.
    pub fn millis_until(self, later: Timestamp) -> u64 {
        u64::try_from(later.0.saturating_sub(self.0)).unwrap_or(0)
    }

    /// Milliseconds since the epoch, unsigned: times before 1970 do not occur; they clamp to
    /// zero.
    pub fn unsigned_millis(self) -> u64 {
        u64::try_from(self.0).unwrap_or(0)
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trip_and_utc_only() {
        let t = Timestamp(1_800_000_000_123);
        assert_eq!(t.to_rfc3339(), "2027-01-15T08:00:00.123Z");
        assert_eq!(Timestamp::parse_rfc3339(&t.to_rfc3339()), Some(t));
        assert_eq!(
            Timestamp::parse_rfc3339("2027-01-15T08:00:00.123+00:00"),
            Some(t)
        );
        assert_eq!(
            Timestamp::parse_rfc3339("2027-01-15T08:00:00"),
            Some(Timestamp(1_800_000_000_000))
        );
        assert_eq!(
            Timestamp::parse_rfc3339("2027-01-15T08:00:00.0+05:00"),
            None
        );
        assert_eq!(Timestamp::parse_rfc3339("2027-01-15T08:00:00-01:00"), None);
        assert_eq!(Timestamp::parse_rfc3339("tomorrow"), None);
    }
}
