//! Rules for names that arrive from the network or the command line:
//! usernames, realms, token serials, API key names.

use crate::error::CoreError;

pub const MAX_USERNAME_LEN: usize = 256;
pub const MAX_REALM_LEN: usize = 64;
pub const MAX_SERIAL_LEN: usize = 64;
pub const MAX_DESCRIPTION_LEN: usize = 256;
pub const DEFAULT_REALM: &str = "default";

/// Usernames are kept exactly as given (case-sensitive, as directory logins
/// are compared later), but must be printable and bounded.
pub fn check_username(name: &str) -> Result<(), CoreError> {
    if name.is_empty() {
        return Err(CoreError::invalid("username", "must not be empty"));
    }
    if name.len() > MAX_USERNAME_LEN {
        return Err(CoreError::invalid("username", format!("longer than {MAX_USERNAME_LEN} bytes")));
    }
    if name.chars().any(|c| c.is_control()) {
        return Err(CoreError::invalid("username", "contains control characters"));
    }
    if name.trim() != name {
        return Err(CoreError::invalid("username", "has leading or trailing whitespace"));
    }
    if name.contains('*') {
        return Err(CoreError::invalid("username", "must not contain `*` (reserved for search)"));
    }
    Ok(())
}

pub fn check_realm(realm: &str) -> Result<(), CoreError> {
    let ok = !realm.is_empty()
        && realm.len() <= MAX_REALM_LEN
        && realm.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if ok {
        Ok(())
    } else {
        Err(CoreError::invalid(
            "realm",
            format!("must be 1–{MAX_REALM_LEN} characters of letters, digits, '.', '-' or '_'"),
        ))
    }
}

pub fn check_serial(serial: &str) -> Result<(), CoreError> {
    let ok = !serial.is_empty() && serial.len() <= MAX_SERIAL_LEN && serial.chars().all(|c| c.is_ascii_graphic());
    if ok {
        Ok(())
    } else {
        Err(CoreError::invalid("serial", format!("must be 1–{MAX_SERIAL_LEN} printable ASCII characters")))
    }
}

pub fn check_description(d: &str) -> Result<(), CoreError> {
    if d.len() > MAX_DESCRIPTION_LEN || d.chars().any(|c| c.is_control()) {
        return Err(CoreError::invalid(
            "description",
            format!("must be at most {MAX_DESCRIPTION_LEN} bytes without control characters"),
        ));
    }
    Ok(())
}

/// 1–64 ASCII letters, digits, `.`, `-` or `_`: names typed on command
/// lines and shown in tables (API keys, cluster nodes).
pub fn is_short_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

pub fn check_key_name(name: &str) -> Result<(), CoreError> {
    if is_short_name(name) {
        Ok(())
    } else {
        Err(CoreError::invalid("name", "must be 1–64 characters of letters, digits, '.', '-' or '_'"))
    }
}

/// Group names: as directories spell them (spaces and most punctuation
/// allowed), but printable and bounded.
pub fn check_group(name: &str) -> Result<(), CoreError> {
    if name.is_empty() || name.len() > 256 || name.chars().any(char::is_control) || name.trim() != name {
        return Err(CoreError::invalid("group", "must be 1–256 printable characters without surrounding spaces"));
    }
    Ok(())
}
