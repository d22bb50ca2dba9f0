//! Signed tracking links: the open pixel, click redirects and the
//! unsubscribe link of each message, and the HTML changes that put them
//! into a message.
//!
//! A link carries one token in its `t` query parameter, made with the
//! SDK's `signed` module (HMAC-SHA256 under a key of this plugin and
//! tenant). The token names the send record and, for a click, the original
//! URL, so a redirect only ever goes where the message pointed: there is no
//! open redirect, and a changed or made-up token is refused (404) before
//! anything is recorded.

use crm_plugin_sdk::prelude::*;
use crm_plugin_sdk::signed;

use crate::html;

/// The public routes, below `/hooks/<tenant>/<plugin>`.
pub const OPEN: &str = "/open";
pub const CLICK: &str = "/click";
pub const UNSUBSCRIBE: &str = "/unsubscribe";

/// A transparent 1×1 GIF, what the open pixel answers.
pub const PIXEL: [u8; 43] = [
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0x21, 0xf9,
    0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00,
    0x3b,
];

/// What a token stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    Open { send: String },
    Click { send: String, url: String },
    Unsubscribe { send: String },
}

impl Token {
    /// The signed data: `o:<send>`, `c:<send>:<url>` or `u:<send>`.
    fn data(&self) -> String {
        match self {
            Token::Open { send } => format!("o:{send}"),
            Token::Click { send, url } => format!("c:{send}:{url}"),
            Token::Unsubscribe { send } => format!("u:{send}"),
        }
    }

    fn from_data(data: &str) -> Option<Token> {
        let (kind, rest) = data.split_once(':')?;
        match kind {
            "o" if !rest.is_empty() && !rest.contains(':') => Some(Token::Open { send: rest.to_owned() }),
            "u" if !rest.is_empty() && !rest.contains(':') => Some(Token::Unsubscribe { send: rest.to_owned() }),
            "c" => {
                let (send, url) = rest.split_once(':')?;
                (!send.is_empty() && crate::config::is_http_url(url))
                    .then(|| Token::Click { send: send.to_owned(), url: url.to_owned() })
            }
            _ => None,
        }
    }

    pub fn sign(&self) -> Result<String> {
        signed::sign(&self.data())
    }

    /// The token a link carried, if this plugin signed it for this tenant
    /// and nobody changed it.
    pub fn verify(text: &str) -> Result<Option<Token>> {
        Ok(signed::verify(text)?.as_deref().and_then(Token::from_data))
    }

    /// The send record the token is about.
    pub fn send(&self) -> &str {
        match self {
            Token::Open { send } | Token::Click { send, .. } | Token::Unsubscribe { send } => send,
        }
    }
}

/// Builds the absolute links of one tenant.
#[derive(Debug, Clone)]
pub struct Links {
    /// `<public_url>/hooks/<tenant>/<plugin>`.
    pub base: String,
}

impl Links {
    pub fn url(&self, route: &str, token: &Token) -> Result<String> {
        Ok(format!("{}{route}?t={}", self.base, token.sign()?))
    }

    pub fn unsubscribe(&self, send: &str) -> Result<String> {
        self.url(UNSUBSCRIBE, &Token::Unsubscribe { send: send.to_owned() })
    }

    /// Whether `url` is one of this plugin's own links (never wrapped in a
    /// click redirect).
    pub fn is_own(&self, url: &str) -> bool {
        url.starts_with(&self.base)
    }

    /// The message's HTML with every http(s) link going through the click
    /// redirect and the open pixel added before `</body>`.
    pub fn instrument(&self, html: &str, send: &str) -> Result<String> {
        let tracked = html::rewrite_links(html, |url| {
            if !crate::config::is_http_url(url) || self.is_own(url) {
                return Ok(None);
            }
            self.url(CLICK, &Token::Click { send: send.to_owned(), url: url.to_owned() }).map(Some)
        })?;
        let pixel = self.url(OPEN, &Token::Open { send: send.to_owned() })?;
        let img = format!(
            "<img src=\"{}\" width=\"1\" height=\"1\" alt=\"\" style=\"display:block;border:0;width:1px;height:1px\">",
            html::escape(&pixel)
        );
        Ok(html::insert_before_body_end(&tracked, &img))
    }
}

/// The footer added to a message whose template has no
/// `{{unsubscribe_url}}`, so every marketing email can be opted out of.
pub fn unsubscribe_footer(url: &str) -> String {
    format!(
        "<p style=\"font-size:12px;color:#666666\">Do not want these emails? <a href=\"{}\">Unsubscribe</a>.</p>",
        html::escape(url)
    )
}
