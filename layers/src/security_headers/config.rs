//! The headers one layer sets, precomputed, and how they are applied to a response.

use http::{
    HeaderMap, HeaderName,
    header::{CONTENT_SECURITY_POLICY, Entry},
};

use super::{
    layer::HeaderMode,
    nonce::{CspNonce, NoncePolicy},
};

#[derive(Debug)]
pub(crate) struct Config {
    /// Every configured header, ready to be cloned as the start of a response's header map.
    pub(crate) template: HeaderMap,
    pub(crate) remove: Box<[HeaderName]>,
    pub(crate) mode: HeaderMode,
    pub(crate) nonce_policy: Option<NoncePolicy>,
}

impl Config {
    /// Adds the configured headers to a response's headers and strips the removed ones.
    ///
    /// Rather than inserting each configured header into the response's map (a hash and maybe a
    /// re-allocation per header), the response starts from a clone of the prebuilt template —
    /// its index table and entries, and reference-count bumps — and its own few headers are
    /// moved in (the entries grow once; the table has room, see `RESPONSE_HEADER_ROOM`).
    pub(crate) fn apply(&self, headers: &mut HeaderMap, nonce: Option<&CspNonce>) {
        let original = std::mem::replace(headers, self.template.clone());
        let override_mode = self.mode == HeaderMode::Override;
        // `HeaderMap::into_iter` yields a name only for the first value of each header.
        let mut current: Option<(HeaderName, bool)> = None;
        for (name, value) in original {
            match name {
                Some(name) => {
                    let removed = self.remove.contains(&name);
                    let overridden = override_mode && self.template.contains_key(&name);
                    let keep = !(removed || overridden);
                    if keep {
                        // The handler's value replaces the template's (set-if-missing).
                        headers.insert(name.clone(), value);
                    }
                    current = Some((name, keep));
                }
                None => {
                    if let Some((name, true)) = &current {
                        headers.append(name.clone(), value);
                    }
                }
            }
        }
        if let Some(value) = nonce
            .zip(self.nonce_policy.as_ref())
            .and_then(|(nonce, policy)| policy.render(nonce))
        {
            match self.mode {
                HeaderMode::IfMissing => {
                    if let Entry::Vacant(entry) = headers.entry(CONTENT_SECURITY_POLICY) {
                        entry.insert(value);
                    }
                }
                HeaderMode::Override => {
                    headers.insert(CONTENT_SECURITY_POLICY, value);
                }
            }
        }
    }
}
