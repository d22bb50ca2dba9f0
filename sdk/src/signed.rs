//! Signed tokens for public links: tracking pixels and redirects,
//! unsubscribe links, survey answers — anything a plugin hands out in a URL
//! and must later trust when it comes back through a public route.
//!
//! A token carries its data in the clear (URL-safe base64) followed by an
//! HMAC-SHA256 tag under a key that belongs to this plugin and tenant. The
//! key is 32 random bytes created on first use and kept in the plugin's kv
//! store under [`KEY`], so signing needs the `kv` capability. A token
//! changed in any byte, made up, or signed for another tenant does not
//! verify.
//!
//! ```
//! use crm_plugin_sdk::signed;
//! # let host = crm_plugin_sdk::testing::TestHost::new();
//! # host.make_current();
//! let token = signed::sign("open:01J0CAMPAIGN:01J0CONTACT").unwrap();
//! assert_eq!(signed::verify(&token).unwrap().as_deref(), Some("open:01J0CAMPAIGN:01J0CONTACT"));
//! let forged = format!("{}.{}", "Y2xpY2s6MDFKMENBTVBBSUdOOjAxSjBDT05UQUNU", token.split_once('.').unwrap().1);
//! assert_eq!(signed::verify(&forged).unwrap(), None);
//! ```

use data_encoding::BASE64URL_NOPAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::Result;
use crate::host::kv;

/// The kv key that holds the signing key.
pub const KEY: &str = "sdk:signing-key";

/// Bytes of the tag kept in a token (128 bits).
const TAG_BYTES: usize = 16;

/// `data` with a tag: `<base64url(data)>.<base64url(tag)>`.
pub fn sign(data: &str) -> Result<String> {
    let key = key()?;
    let tag = tag(&key, data.as_bytes());
    Ok(format!("{}.{}", BASE64URL_NOPAD.encode(data.as_bytes()), BASE64URL_NOPAD.encode(&tag)))
}

/// The data of a token signed by this plugin for this tenant, or `None`
/// when the token is malformed, forged or tampered with.
pub fn verify(token: &str) -> Result<Option<String>> {
    let Some((data, tag_text)) = token.split_once('.') else { return Ok(None) };
    let (Ok(data), Ok(given)) = (BASE64URL_NOPAD.decode(data.as_bytes()), BASE64URL_NOPAD.decode(tag_text.as_bytes())) else {
        return Ok(None);
    };
    let Some(key) = kv::get(KEY)? else { return Ok(None) };
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key).map_err(|_| crate::Error::msg("the signing key is unusable"))?;
    mac.update(&data);
    if given.len() != TAG_BYTES || mac.verify_truncated_left(&given).is_err() {
        return Ok(None);
    }
    Ok(String::from_utf8(data).ok())
}

/// `N` bytes from the host's secure random source.
pub fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|error| crate::Error::msg(format!("no random bytes: {error}")))?;
    Ok(bytes)
}

fn key() -> Result<Vec<u8>> {
    if let Some(key) = kv::get(KEY)? {
        return Ok(key);
    }
    let key = random_bytes::<32>()?.to_vec();
    kv::set(KEY, &key)?;
    Ok(key)
}

fn tag(key: &[u8], data: &[u8]) -> [u8; TAG_BYTES] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("hmac takes keys of any length");
    mac.update(data);
    let full = mac.finalize().into_bytes();
    let mut tag = [0u8; TAG_BYTES];
    tag.copy_from_slice(&full[..TAG_BYTES]);
    tag
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestHost;

    #[test]
    fn tokens_verify_only_unchanged_and_under_the_same_key() {
        let host = TestHost::new();
        host.make_current();
        let token = sign("click:c1:k9").unwrap();
        assert_eq!(verify(&token).unwrap().as_deref(), Some("click:c1:k9"));
        // The key is created once and reused.
        assert_eq!(sign("click:c1:k9").unwrap(), token);

        let (data, tag) = token.split_once('.').unwrap();
        let other = BASE64URL_NOPAD.encode(b"click:c2:k9");
        assert_eq!(verify(&format!("{other}.{tag}")).unwrap(), None, "data swapped under an old tag");
        let mut flipped = tag.as_bytes().to_vec();
        flipped[0] = if flipped[0] == b'A' { b'B' } else { b'A' };
        assert_eq!(verify(&format!("{data}.{}", String::from_utf8(flipped).unwrap())).unwrap(), None, "tag changed");
        assert_eq!(verify(data).unwrap(), None, "no tag");
        assert_eq!(verify(&format!("{data}.")).unwrap(), None, "empty tag");
        assert_eq!(verify("not base64!.x").unwrap(), None);

        // Another tenant (another kv store) has another key.
        let elsewhere = TestHost::new();
        elsewhere.make_current();
        assert_eq!(verify(&token).unwrap(), None);
        let there = sign("click:c1:k9").unwrap();
        assert_ne!(there, token);
    }
}
