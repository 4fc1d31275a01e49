//! The SASL responses a client puts in connection.start-ok's `response`:
//! user name and password out of PLAIN and AMQPLAIN.
//!
//! # Format
//!
//! ```text
//!  PLAIN (RFC 4616)   [authzid] NUL authcid NUL passwd
//!                     clients send an empty authzid: "\0guest\0guest"
//!  AMQPLAIN           the entries of a field table without its leading
//!                     long length: shortstr "LOGIN", 'S', longstr user,
//!                     shortstr "PASSWORD", 'S', longstr password
//!                     (in either order, other entries ignored)
//! ```
//!
//! # Invariants
//!
//! - The user name is non-empty UTF-8; the password is UTF-8 and may be
//!   empty (refusing it is the authenticator's business, which answers 403
//!   ACCESS_REFUSED either way).
//! - PLAIN's authzid must be empty or the user name itself: acting as
//!   another identity is not supported.

use bytes::Bytes;

use super::field_table::{self, FieldValue};

/// The user name and password of a PLAIN response, `None` when it is not
/// one.
pub fn parse_plain(response: &[u8]) -> Option<(String, String)> {
    let mut parts = response.split(|&b| b == 0);
    let (authzid, user, password) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || user.is_empty() || !(authzid.is_empty() || authzid == user) {
        return None;
    }
    let user = std::str::from_utf8(user).ok()?;
    let password = std::str::from_utf8(password).ok()?;
    Some((user.to_owned(), password.to_owned()))
}

/// The user name and password of an AMQPLAIN response, `None` when it is
/// not one.
pub fn parse_amqplain(response: &[u8]) -> Option<(String, String)> {
    let table =
        field_table::read_entries(Bytes::copy_from_slice(response), 1, "AMQPLAIN response").ok()?;
    let text = |name: &str| match table.get(name)? {
        FieldValue::LongString(s) => std::str::from_utf8(s).ok().map(str::to_owned),
        _ => None,
    };
    let (user, password) = (text("LOGIN")?, text("PASSWORD")?);
    (!user.is_empty()).then_some((user, password))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(user: &str, password: &str) -> Option<(String, String)> {
        Some((user.to_owned(), password.to_owned()))
    }

    #[test]
    fn plain() {
        assert_eq!(parse_plain(b"\0guest\0guest"), pair("guest", "guest"));
        assert_eq!(
            parse_plain(b"guest\0guest\0s3cr\xc3\xa9t"),
            pair("guest", "s3cr\u{e9}t")
        );
        assert_eq!(parse_plain(b"\0user\0"), pair("user", ""));
        // Another authorization identity, no user, too many or few parts,
        // bad UTF-8.
        for bad in [
            &b"admin\0guest\0guest"[..],
            b"\0\0guest",
            b"\0a\0b\0c",
            b"\0guest",
            b"guest",
            b"",
            b"\0gu\xffest\0pw",
            b"\0guest\0p\xff",
        ] {
            assert_eq!(parse_plain(bad), None, "{bad:?}");
        }
    }

    /// An AMQPLAIN response with the given entries, each a longstr.
    fn amqplain(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, value) in entries {
            out.push(u8::try_from(name.len()).unwrap());
            out.extend_from_slice(name.as_bytes());
            out.push(b'S');
            out.extend_from_slice(&u32::try_from(value.len()).unwrap().to_be_bytes());
            out.extend_from_slice(value);
        }
        out
    }

    #[test]
    fn amqplain_responses() {
        let bytes = amqplain(&[("LOGIN", b"guest"), ("PASSWORD", b"pw")]);
        assert_eq!(
            bytes,
            b"\x05LOGINS\x00\x00\x00\x05guest\x08PASSWORDS\x00\x00\x00\x02pw"
        );
        assert_eq!(parse_amqplain(&bytes), pair("guest", "pw"));
        let reversed = amqplain(&[("PASSWORD", b""), ("x", b"y"), ("LOGIN", b"u")]);
        assert_eq!(parse_amqplain(&reversed), pair("u", ""));

        assert_eq!(parse_amqplain(&amqplain(&[("LOGIN", b"guest")])), None);
        assert_eq!(parse_amqplain(&amqplain(&[("PASSWORD", b"pw")])), None);
        let empty_user = amqplain(&[("LOGIN", b""), ("PASSWORD", b"pw")]);
        assert_eq!(parse_amqplain(&empty_user), None);
        let bad_utf8 = amqplain(&[("LOGIN", b"\xff"), ("PASSWORD", b"pw")]);
        assert_eq!(parse_amqplain(&bad_utf8), None);
        // Truncated, and with the table length a field table would have.
        assert_eq!(parse_amqplain(&bytes[..bytes.len() - 1]), None);
        let mut with_length = u32::try_from(bytes.len()).unwrap().to_be_bytes().to_vec();
        with_length.extend_from_slice(&bytes);
        assert_eq!(parse_amqplain(&with_length), None);
        // A login that is not a longstr.
        let number = b"\x05LOGINB\x07\x08PASSWORDS\x00\x00\x00\x02pw";
        assert_eq!(parse_amqplain(number), None);
    }
}
