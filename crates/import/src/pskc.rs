//! PSKC key containers (RFC 6030): plain, pre-shared-key encrypted and
//! PBKDF2 passphrase encrypted.
//!
//! Supported: `KeyContainer` version 1.0; per `KeyPackage` the
//! `DeviceInfo` (`Manufacturer`, `SerialNo`, `Model`) and one `Key` with
//! algorithm `urn:ietf:params:xml:ns:keyprov:pskc:hotp` or `…:totp`,
//! `AlgorithmParameters/Suite` (`HMAC-SHA1` default, `HMAC-SHA256`,
//! `HMAC-SHA512`), `ResponseFormat` (`Length` 6 or 8, `Encoding` DECIMAL),
//! `Data/Secret` as `PlainValue` (base64) or `EncryptedValue`, and plain
//! `Data/Counter` (HOTP, default 0) and `Data/TimeInterval` (TOTP, 30 or
//! 60, default 30). `Data/Time` is checked to be a number and otherwise
//! ignored: clock drift is learnt at the first login. PIN keys
//! (`…:pin`) are reported as skipped. A package without `SerialNo` takes
//! its serial from the `Key` `Id`.
//!
//! Encryption: `EncryptedValue` with `xenc#aes128-cbc`, the IV prepended to
//! the ciphertext, under either a pre-shared key (`EncryptionKey/KeyName`;
//! the caller supplies the 16 bytes) or a PBKDF2 key (`DerivedKey` with
//! `pkcs5:PBKDF2-params`: `Salt/Specified`, `IterationCount`, `KeyLength`
//! 16, `PRF` HMAC-SHA1 by default or HMAC-SHA256; the caller supplies the
//! passphrase). Every encrypted secret must carry a `ValueMAC`
//! (`MACMethod` HMAC-SHA1 or HMAC-SHA256 over IV ‖ ciphertext, keyed with
//! the `MACKey`, itself AES-128-CBC encrypted; without `MACKey` the
//! encryption key is the MAC key, as in the drafts before RFC 6030). The
//! MAC is checked, in constant time, before anything is decrypted, so a
//! wrong key or passphrase gives [`ImportError::WrongKey`], never garbage
//! secrets. An encrypted secret without a MAC is refused for the same
//! reason.
//!
//! This module must not do I/O, must not fetch anything a document points
//! at (no external entities, no `RetrievalMethod`), and must not put key
//! material in an error.

use core::fmt;

use aes::Aes128;
use cbc::cipher::block_padding::NoPadding;
use cbc::cipher::{BlockModeDecrypt, KeyIvInit};
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use sha2::Sha256;
use tessera_otp::{Algorithm, Digits, Period};
use zeroize::Zeroizing;

use crate::xml::{self, Element};
use crate::{
    ImportError, ImportReport, ImportedToken, MAX_LABEL_LEN, ReportBuilder, TokenKind, check_input_len, optional_label,
    secret, serial,
};

/// Most PBKDF2 iterations accepted: well above what token vendors use
/// (RFC 6030's example uses 1,000) while keeping a hostile file from
/// pinning a CPU for more than a few seconds.
pub const MAX_PBKDF2_ITERATIONS: u32 = 5_000_000;

const AES128_CBC: &str = "http://www.w3.org/2001/04/xmlenc#aes128-cbc";
const HMAC_SHA1: &str = "http://www.w3.org/2000/09/xmldsig#hmac-sha1";
const HMAC_SHA256: &str = "http://www.w3.org/2001/04/xmldsig-more#hmac-sha256";
const PBKDF2: &str = "http://www.rsasecurity.com/rsalabs/pkcs/schemas/pkcs-5v2-0#pbkdf2";
const URN_PREFIX: &str = "urn:ietf:params:xml:ns:keyprov:pskc:";
/// Algorithm URIs of the drafts before RFC 6030, still found in the wild.
const DRAFT_PREFIX: &str = "http://www.ietf.org/keyprov/pskc#";

/// The secret that opens an encrypted container.
#[derive(Clone)]
pub enum PskcKey {
    /// The 16-byte AES-128 transport key shared with the vendor
    /// (`EncryptionKey/KeyName`).
    PreShared(Zeroizing<[u8; 16]>),
    /// The passphrase a PBKDF2 `DerivedKey` is derived from.
    Passphrase(Zeroizing<String>),
}

impl PskcKey {
    fn kind(&self) -> &'static str {
        match self {
            PskcKey::PreShared(_) => "pre-shared key",
            PskcKey::Passphrase(_) => "passphrase",
        }
    }
}

impl fmt::Debug for PskcKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "PskcKey::{}(<redacted>)",
            if matches!(self, PskcKey::PreShared(_)) { "PreShared" } else { "Passphrase" }
        )
    }
}

#[derive(Clone, Copy)]
enum MacAlgorithm {
    Sha1,
    Sha256,
}

impl MacAlgorithm {
    fn from_uri(uri: &str) -> Option<Self> {
        match uri.trim() {
            HMAC_SHA1 => Some(MacAlgorithm::Sha1),
            HMAC_SHA256 => Some(MacAlgorithm::Sha256),
            _ => None,
        }
    }

    /// Checks `tag` over `data` in constant time. `false` also for a key
    /// HMAC refuses (none: HMAC takes any key length).
    fn verify(self, key: &[u8], data: &[u8], tag: &[u8]) -> bool {
        fn verify<M: Mac + KeyInit>(key: &[u8], data: &[u8], tag: &[u8]) -> bool {
            match <M as KeyInit>::new_from_slice(key) {
                Ok(mut mac) => {
                    mac.update(data);
                    mac.verify_slice(tag).is_ok()
                }
                Err(_) => false,
            }
        }
        match self {
            MacAlgorithm::Sha1 => verify::<Hmac<Sha1>>(key, data, tag),
            MacAlgorithm::Sha256 => verify::<Hmac<Sha256>>(key, data, tag),
        }
    }
}

/// A row's failure: reported (error or skip), or fatal for the file.
enum RowFailure {
    Error(String),
    Skip(&'static str),
    MacMismatch,
    Fatal(ImportError),
}

impl From<String> for RowFailure {
    fn from(message: String) -> Self {
        RowFailure::Error(message)
    }
}

impl From<&str> for RowFailure {
    fn from(message: &str) -> Self {
        RowFailure::Error(message.to_owned())
    }
}

struct Parser {
    caller_key: Option<PskcKey>,
    /// The AES-128 key that opens `EncryptedValue`s, once known.
    encryption_key: Option<Zeroizing<Vec<u8>>>,
    mac: Option<(MacAlgorithm, Option<Zeroizing<Vec<u8>>>)>,
    report: ReportBuilder,
    packages: usize,
    encrypted: usize,
    mac_failures: usize,
}

/// Parses a PSKC document. `key` opens encrypted containers; plain ones
/// ignore it.
///
/// Whole-file errors: oversized or malformed XML, not a `KeyContainer`,
/// an encrypted container without (or with the wrong kind of) key, key
/// protection that is unsupported or malformed, and a wrong key or
/// passphrase. Everything else is reported per `KeyPackage`.
pub fn parse(xml: &[u8], key: Option<PskcKey>) -> Result<ImportReport, ImportError> {
    check_input_len(xml.len())?;
    let text = std::str::from_utf8(xml)
        .map_err(|e| ImportError::Xml { position: u64::try_from(e.valid_up_to()).unwrap_or(u64::MAX) })?;
    let mut parser = Parser {
        caller_key: key,
        encryption_key: None,
        mac: None,
        report: ReportBuilder::new(),
        packages: 0,
        encrypted: 0,
        mac_failures: 0,
    };
    let seen_root = xml::stream(
        text,
        |root| {
            if root.name != "KeyContainer" || root.attr("Version").is_some_and(|v| v.trim() != "1.0") {
                return Err(ImportError::NotPskc);
            }
            Ok(())
        },
        |child| parser.child(child),
    )?;
    if !seen_root {
        return Err(ImportError::NotPskc);
    }
    if parser.encrypted > 0 && parser.mac_failures == parser.encrypted {
        return Err(ImportError::WrongKey);
    }
    Ok(parser.report.finish())
}

impl Parser {
    fn child(&mut self, child: Element) -> Result<(), ImportError> {
        match child.name.as_str() {
            "EncryptionKey" => self.encryption_key_element(&child),
            "MACMethod" => self.mac_method(&child),
            "KeyPackage" => {
                self.report.check_row_bound()?;
                self.packages += 1;
                let serial = package_serial(&child);
                match self.package(&child) {
                    Ok(token) => self.report.push(self.packages, serial, Ok(token)),
                    Err(RowFailure::Error(message)) => self.report.push(self.packages, serial, Err(message)),
                    Err(RowFailure::Skip(why)) => self.report.skip(self.packages, serial, why),
                    Err(RowFailure::MacMismatch) => {
                        self.mac_failures += 1;
                        self.report.push(
                            self.packages,
                            serial,
                            Err("ValueMAC does not match (wrong key, or the file was altered)".into()),
                        );
                    }
                    Err(RowFailure::Fatal(e)) => return Err(e),
                }
                Ok(())
            }
            // Signature, extensions: nothing to import.
            _ => Ok(()),
        }
    }

    fn encryption_key_element(&mut self, element: &Element) -> Result<(), ImportError> {
        if let Some(derived) = element.child("DerivedKey") {
            let passphrase = match &self.caller_key {
                Some(PskcKey::Passphrase(p)) => p,
                Some(other) => return Err(ImportError::KeyKindMismatch { wanted: "passphrase", given: other.kind() }),
                None => return Err(ImportError::KeyRequired),
            };
            self.encryption_key = Some(derive(derived, passphrase)?);
            Ok(())
        } else if element.child("KeyName").is_some() {
            self.encryption_key = Some(self.pre_shared()?);
            Ok(())
        } else {
            Err(ImportError::Unsupported("EncryptionKey is neither a KeyName nor a DerivedKey"))
        }
    }

    fn pre_shared(&self) -> Result<Zeroizing<Vec<u8>>, ImportError> {
        match &self.caller_key {
            Some(PskcKey::PreShared(k)) => Ok(Zeroizing::new(k.to_vec())),
            Some(other) => Err(ImportError::KeyKindMismatch { wanted: "pre-shared key", given: other.kind() }),
            None => Err(ImportError::KeyRequired),
        }
    }

    /// The encryption key; a container that names none uses the caller's
    /// pre-shared key.
    fn key(&mut self) -> Result<Zeroizing<Vec<u8>>, ImportError> {
        if let Some(key) = &self.encryption_key {
            return Ok(key.clone());
        }
        let key = self.pre_shared()?;
        self.encryption_key = Some(key.clone());
        Ok(key)
    }

    fn mac_method(&mut self, element: &Element) -> Result<(), ImportError> {
        let algorithm = MacAlgorithm::from_uri(element.attr("Algorithm").unwrap_or(""))
            .ok_or(ImportError::Unsupported("MACMethod algorithm (HMAC-SHA1 or HMAC-SHA256 expected)"))?;
        let mac_key = match element.child("MACKey") {
            Some(encrypted) => {
                let key = self.key()?;
                let mac_key = decrypt(&key, encrypted).map_err(|e| match e {
                    // The MAC key is not MAC-protected itself: bad padding
                    // after decryption is the first sign of a wrong key.
                    Decrypt::Padding => ImportError::WrongKey,
                    Decrypt::Malformed(what) => ImportError::BadKeyProtection(what),
                    Decrypt::Unsupported(what) => ImportError::Unsupported(what),
                })?;
                if mac_key.is_empty() {
                    return Err(ImportError::BadKeyProtection("MACKey is empty"));
                }
                Some(mac_key)
            }
            None => None,
        };
        self.mac = Some((algorithm, mac_key));
        Ok(())
    }

    fn package(&mut self, package: &Element) -> Result<ImportedToken, RowFailure> {
        let key = package.child("Key").ok_or("KeyPackage has no Key")?;
        let uri = key.attr("Algorithm").unwrap_or("").trim();
        let name = uri.strip_prefix(URN_PREFIX).or_else(|| uri.strip_prefix(DRAFT_PREFIX));
        let is_totp = match name {
            Some("hotp") => false,
            Some("totp") => true,
            Some("pin") => return Err(RowFailure::Skip("PIN key, not an OTP token")),
            _ => return Err("Key algorithm is not HOTP or TOTP".into()),
        };
        let serial = match package.path(&["DeviceInfo", "SerialNo"]).map(Element::trimmed) {
            Some(s) if !s.is_empty() => serial(s)?,
            _ => serial(key.attr("Id").unwrap_or("")).map_err(|_| "neither DeviceInfo/SerialNo nor Key Id is given")?,
        };
        let device = package.child("DeviceInfo");
        let device_text = |name: &str| device.and_then(|d| d.child(name)).map_or("", Element::trimmed);
        let manufacturer = optional_label(device_text("Manufacturer"), "manufacturer", MAX_LABEL_LEN)?;
        let model = optional_label(device_text("Model"), "model", MAX_LABEL_LEN)?;

        let algorithm = match key.path(&["AlgorithmParameters", "Suite"]).map(Element::trimmed) {
            None | Some("") => Algorithm::Sha1,
            Some(suite) => {
                let suite = suite.to_ascii_uppercase();
                let hash = suite.strip_prefix("HMAC-").unwrap_or(&suite);
                hash.parse::<Algorithm>().map_err(|_| "Suite must be HMAC-SHA1, HMAC-SHA256 or HMAC-SHA512")?
            }
        };
        let digits = match key.path(&["AlgorithmParameters", "ResponseFormat"]) {
            None => Digits::SIX,
            Some(format) => {
                if format.attr("Encoding").is_some_and(|e| e.trim() != "DECIMAL") {
                    return Err("ResponseFormat Encoding must be DECIMAL".into());
                }
                format
                    .attr("Length")
                    .and_then(|l| l.trim().parse::<u8>().ok())
                    .and_then(|l| Digits::new(l).ok())
                    .ok_or("ResponseFormat Length must be 6 or 8")?
            }
        };
        let data = key.child("Data").ok_or("Key has no Data")?;
        let kind = if is_totp {
            let period = match plain_number(data, "TimeInterval")? {
                None => Period::THIRTY,
                Some(p) => {
                    u32::try_from(p).ok().and_then(|p| Period::new(p).ok()).ok_or("TimeInterval must be 30 or 60")?
                }
            };
            plain_number(data, "Time")?;
            TokenKind::Totp { period }
        } else {
            TokenKind::Hotp { counter: plain_number(data, "Counter")?.unwrap_or(0) }
        };
        let secret = self.secret(data.child("Secret").ok_or("Data has no Secret")?)?;
        secret::check_len(&secret)?;
        Ok(ImportedToken { serial, secret, kind, algorithm, digits, manufacturer, model, user: None })
    }

    fn secret(&mut self, element: &Element) -> Result<Zeroizing<Vec<u8>>, RowFailure> {
        if let Some(plain) = element.child("PlainValue") {
            return secret::base64(&plain.text).ok_or_else(|| "Secret PlainValue is not base64".into());
        }
        let encrypted = element.child("EncryptedValue").ok_or("Secret has neither PlainValue nor EncryptedValue")?;
        let key = self.key().map_err(RowFailure::Fatal)?;
        let Some((algorithm, mac_key)) = &self.mac else {
            return Err("encrypted Secret without a MACMethod is refused: a wrong key would go unnoticed".into());
        };
        let tag = element
            .child("ValueMAC")
            .ok_or("encrypted Secret without a ValueMAC is refused: a wrong key would go unnoticed")?;
        let tag = secret::base64(&tag.text).ok_or("ValueMAC is not base64")?;
        let cipher_value = cipher_value(encrypted).map_err(Decrypt::into_row)?;
        self.encrypted += 1;
        let mac_key: &[u8] = mac_key.as_deref().map_or(&key, Vec::as_slice);
        if !algorithm.verify(mac_key, &cipher_value, &tag) {
            return Err(RowFailure::MacMismatch);
        }
        decrypt(&key, encrypted).map_err(Decrypt::into_row)
    }
}

fn package_serial(package: &Element) -> Option<String> {
    let serial = package.path(&["DeviceInfo", "SerialNo"]).map(Element::trimmed).filter(|s| !s.is_empty());
    let serial = serial.or_else(|| package.child("Key").and_then(|k| k.attr("Id")).map(str::trim));
    serial.filter(|s| !s.is_empty()).and_then(|s| crate::serial(s).ok())
}

/// `Data/<name>/PlainValue` as a number; encrypted values of these are not
/// supported (no vendor is known to send them).
fn plain_number(data: &Element, name: &str) -> Result<Option<u64>, String> {
    let Some(element) = data.child(name) else { return Ok(None) };
    let Some(plain) = element.child("PlainValue") else {
        return Err(format!("{name} must be a PlainValue"));
    };
    plain.trimmed().parse::<u64>().map(Some).map_err(|_| format!("{name} must be a whole number"))
}

enum Decrypt {
    Padding,
    Malformed(&'static str),
    Unsupported(&'static str),
}

impl Decrypt {
    fn into_row(self) -> RowFailure {
        match self {
            // Reached only after the MAC matched: the sender padded badly.
            Decrypt::Padding => "EncryptedValue has invalid padding".into(),
            Decrypt::Malformed(what) | Decrypt::Unsupported(what) => what.into(),
        }
    }
}

/// The base64-decoded `CipherData/CipherValue` (IV ‖ ciphertext) of an
/// `EncryptedValue` or `MACKey`, after checking its `EncryptionMethod`.
fn cipher_value(encrypted: &Element) -> Result<Zeroizing<Vec<u8>>, Decrypt> {
    let method = encrypted
        .child("EncryptionMethod")
        .and_then(|m| m.attr("Algorithm"))
        .ok_or(Decrypt::Malformed("EncryptionMethod is missing"))?;
    if method.trim() != AES128_CBC {
        return Err(Decrypt::Unsupported("encryption algorithm (only AES-128-CBC is supported)"));
    }
    let value = encrypted
        .path(&["CipherData", "CipherValue"])
        .ok_or(Decrypt::Malformed("CipherData/CipherValue is missing"))?;
    let bytes = secret::base64(&value.text).ok_or(Decrypt::Malformed("CipherValue is not base64"))?;
    // IV plus at least one block, whole blocks only.
    if bytes.len() < 32 || !bytes.len().is_multiple_of(16) {
        return Err(Decrypt::Malformed("CipherValue is not an IV and whole AES blocks"));
    }
    Ok(bytes)
}

/// AES-128-CBC with the IV prepended; XML Encryption padding (the last byte
/// counts the padding bytes; their values are arbitrary).
fn decrypt(key: &[u8], encrypted: &Element) -> Result<Zeroizing<Vec<u8>>, Decrypt> {
    let bytes = cipher_value(encrypted)?;
    let (iv, ciphertext) = bytes.split_at(16);
    let decryptor = cbc::Decryptor::<Aes128>::new_from_slices(key, iv)
        .map_err(|_| Decrypt::Malformed("the encryption key is not 16 bytes"))?;
    let mut buffer = Zeroizing::new(ciphertext.to_vec());
    let len = decryptor.decrypt_padded::<NoPadding>(&mut buffer).map_err(|_| Decrypt::Padding)?.len();
    let pad = usize::from(*buffer.get(len.wrapping_sub(1)).ok_or(Decrypt::Padding)?);
    if pad == 0 || pad > 16 || pad > len {
        return Err(Decrypt::Padding);
    }
    buffer.truncate(len - pad);
    Ok(buffer)
}

/// Derives the AES-128 key from `DerivedKey` (PBKDF2 only).
fn derive(derived: &Element, passphrase: &str) -> Result<Zeroizing<Vec<u8>>, ImportError> {
    let method =
        derived.child("KeyDerivationMethod").ok_or(ImportError::BadKeyProtection("KeyDerivationMethod is missing"))?;
    if method.attr("Algorithm").map(str::trim) != Some(PBKDF2) {
        return Err(ImportError::Unsupported("key derivation (only PBKDF2 is supported)"));
    }
    let params = method.child("PBKDF2-params").ok_or(ImportError::BadKeyProtection("PBKDF2-params is missing"))?;
    let salt = params
        .path(&["Salt", "Specified"])
        .and_then(|s| secret::base64(&s.text))
        .ok_or(ImportError::BadKeyProtection("PBKDF2 Salt/Specified is missing or not base64"))?;
    let iterations = params
        .child("IterationCount")
        .and_then(|c| c.trimmed().parse::<u32>().ok())
        .filter(|c| (1..=MAX_PBKDF2_ITERATIONS).contains(c))
        .ok_or(ImportError::BadKeyProtection("PBKDF2 IterationCount is missing or out of range"))?;
    if let Some(length) = params.child("KeyLength")
        && length.trimmed() != "16"
    {
        return Err(ImportError::Unsupported("PBKDF2 KeyLength (only 16, for AES-128)"));
    }
    let prf = match params.child("PRF").and_then(|p| p.attr("Algorithm")) {
        None => MacAlgorithm::Sha1,
        Some(uri) => {
            MacAlgorithm::from_uri(uri).ok_or(ImportError::Unsupported("PBKDF2 PRF (HMAC-SHA1 or HMAC-SHA256)"))?
        }
    };
    let mut key = Zeroizing::new(vec![0u8; 16]);
    match prf {
        MacAlgorithm::Sha1 => pbkdf2::pbkdf2_hmac::<Sha1>(passphrase.as_bytes(), &salt, iterations, &mut key),
        MacAlgorithm::Sha256 => pbkdf2::pbkdf2_hmac::<Sha256>(passphrase.as_bytes(), &salt, iterations, &mut key),
    }
    Ok(key)
}
