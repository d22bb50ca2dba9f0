//! Messages for the kernel's outbound channel.

/// A message to queue on a channel (`email`, `sms` or `webhook`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub channel: String,
    /// An address, a phone number or a URL, depending on the channel.
    pub to: String,
    pub subject: String,
    pub body: String,
    pub html: Option<String>,
}

impl Message {
    pub fn email(to: impl Into<String>, subject: impl Into<String>, body: impl Into<String>) -> Message {
        Message { channel: "email".into(), to: to.into(), subject: subject.into(), body: body.into(), html: None }
    }

    pub fn sms(to: impl Into<String>, body: impl Into<String>) -> Message {
        Message { channel: "sms".into(), to: to.into(), subject: String::new(), body: body.into(), html: None }
    }

    /// A webhook call to `url` with `body` (usually JSON).
    pub fn webhook(url: impl Into<String>, body: impl Into<String>) -> Message {
        Message { channel: "webhook".into(), to: url.into(), subject: String::new(), body: body.into(), html: None }
    }

    pub fn with_html(mut self, html: impl Into<String>) -> Message {
        self.html = Some(html.into());
        self
    }
}
