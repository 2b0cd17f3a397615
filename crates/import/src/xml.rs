//! A small, bounded XML reader for PSKC: turns quick-xml events into one
//! element tree per child of the document root, handed out as each child
//! closes, so memory follows one `KeyPackage` rather than the whole file.
//!
//! Namespaces are reduced to local names (PSKC files use `pskc:`, default
//! namespaces or none, interchangeably). This module must not resolve
//! external entities or DTDs (quick-xml does neither) and must not nest
//! deeper than [`MAX_DEPTH`]. Text is kept in zeroizing strings because it
//! may be key material.

use quick_xml::XmlVersion;
use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::{BytesStart, Event};
use quick_xml::reader::Reader;
use zeroize::Zeroizing;

use crate::ImportError;

/// Deepest nesting accepted. PSKC needs about 8 levels.
pub(crate) const MAX_DEPTH: usize = 32;

/// One element: local name, attributes by local name, child elements and
/// the concatenated text directly inside it.
#[derive(Default)]
pub(crate) struct Element {
    pub(crate) name: String,
    pub(crate) attrs: Vec<(String, String)>,
    pub(crate) children: Vec<Element>,
    pub(crate) text: Zeroizing<String>,
}

impl Element {
    pub(crate) fn attr(&self, name: &str) -> Option<&str> {
        self.attrs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub(crate) fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// Follows a path of child names.
    pub(crate) fn path(&self, names: &[&str]) -> Option<&Element> {
        names.iter().try_fold(self, |e, name| e.child(name))
    }

    /// The trimmed text of the element.
    pub(crate) fn trimmed(&self) -> &str {
        self.text.trim()
    }
}

fn element(start: &BytesStart<'_>, position: u64) -> Result<Element, ImportError> {
    let bad = || ImportError::Xml { position };
    let local = start.local_name();
    let name = AsRef::<str>::as_ref(&local).to_owned();
    let mut attrs = Vec::new();
    for attr in start.attributes() {
        let attr = attr.map_err(|_| bad())?;
        let local = attr.key.local_name();
        let key = AsRef::<str>::as_ref(&local).to_owned();
        let value = attr.normalized_value(XmlVersion::Implicit1_0).map_err(|_| bad())?.into_owned();
        attrs.push((key, value));
    }
    Ok(Element { name, attrs, ..Element::default() })
}

/// Reads `xml`: calls `on_root` with the root element (attributes only),
/// then `on_child` with every child of the root, complete, in order.
/// Returns `false` if the document had no root element.
pub(crate) fn stream(
    xml: &str,
    mut on_root: impl FnMut(&Element) -> Result<(), ImportError>,
    mut on_child: impl FnMut(Element) -> Result<(), ImportError>,
) -> Result<bool, ImportError> {
    let mut reader = Reader::from_str(xml);
    let mut stack: Vec<Element> = Vec::new();
    let mut seen_root = false;
    loop {
        let event = reader.read_event().map_err(|_| ImportError::Xml { position: reader.error_position() })?;
        let position = reader.buffer_position();
        match event {
            Event::Start(start) | Event::Empty(start) if seen_root && stack.is_empty() => {
                let _ = start;
                // A second root element.
                return Err(ImportError::Xml { position });
            }
            Event::Start(start) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(ImportError::TooDeep { max: MAX_DEPTH });
                }
                let e = element(&start, position)?;
                if stack.is_empty() {
                    seen_root = true;
                    on_root(&e)?;
                }
                stack.push(e);
            }
            Event::Empty(start) => {
                let e = element(&start, position)?;
                close(&mut stack, e, &mut on_root, &mut on_child, &mut seen_root)?;
            }
            Event::End(_) => {
                let e = stack.pop().ok_or(ImportError::Xml { position })?;
                if stack.is_empty() {
                    // The root closed; its children were handed out already.
                    continue;
                }
                close(&mut stack, e, &mut on_root, &mut on_child, &mut seen_root)?;
            }
            Event::Text(text) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&text.xml10_content());
                }
            }
            Event::CData(data) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&data.xml10_content());
                }
            }
            Event::GeneralRef(reference) => {
                let resolved = match reference.resolve_char_ref() {
                    Ok(Some(c)) => Some(c.to_string()),
                    Ok(None) => resolve_predefined_entity(&reference).map(str::to_owned),
                    Err(_) => None,
                };
                let resolved = resolved.ok_or(ImportError::Xml { position })?;
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&resolved);
                }
            }
            Event::Eof => {
                if !stack.is_empty() {
                    return Err(ImportError::Xml { position });
                }
                return Ok(seen_root);
            }
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_) => {}
        }
    }
}

/// Attaches a finished element to its parent, or hands it out when it is a
/// child of the root (or is an empty root itself).
fn close(
    stack: &mut [Element],
    e: Element,
    on_root: &mut impl FnMut(&Element) -> Result<(), ImportError>,
    on_child: &mut impl FnMut(Element) -> Result<(), ImportError>,
    seen_root: &mut bool,
) -> Result<(), ImportError> {
    match stack {
        [] => {
            *seen_root = true;
            on_root(&e)
        }
        [_root] => on_child(e),
        [.., parent] => {
            parent.children.push(e);
            Ok(())
        }
    }
}
