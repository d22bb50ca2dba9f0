//! Small HTML helpers for email bodies: escaping, rewriting the `href` of
//! links, inserting before `</body>`, and deriving the plain-text part.
//!
//! Email HTML is written by people and tools of every kind, so these work
//! on the text directly and tolerate anything: what they do not recognise
//! is copied unchanged.

/// Escapes text for HTML content and attribute values.
pub use crm_plugin_sdk::text::escape_html as escape;

/// Decodes the entities a URL or a text is likely to contain: the five of
/// [`escape`], `&nbsp;` and numeric ones. Unknown entities stay as they are.
pub fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('&') {
        out.push_str(&rest[..start]);
        let tail = &rest[start..];
        let entity_end = tail.find(';').filter(|end| *end <= 10);
        let decoded = entity_end.and_then(|end| entity(&tail[1..end]).map(|c| (c, end)));
        match decoded {
            Some((c, end)) => {
                out.push(c);
                rest = &tail[end + 1..];
            }
            None => {
                out.push('&');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn entity(name: &str) -> Option<char> {
    match name {
        "amp" => Some('&'),
        "lt" => Some('<'),
        "gt" => Some('>'),
        "quot" => Some('"'),
        "apos" => Some('\''),
        "nbsp" => Some(' '),
        _ => {
            let number = name.strip_prefix('#')?;
            let code = match number.strip_prefix(['x', 'X']) {
                Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                None => number.parse().ok()?,
            };
            char::from_u32(code)
        }
    }
}

/// Whether `html[at..]` starts with `<name` followed by whitespace, `>` or
/// `/` (ASCII case-insensitive).
fn tag_at(html: &str, at: usize, name: &str) -> bool {
    let bytes = html.as_bytes();
    let end = at + 1 + name.len();
    bytes.get(at) == Some(&b'<')
        && bytes.get(at + 1..end).is_some_and(|found| found.eq_ignore_ascii_case(name.as_bytes()))
        && bytes.get(end).is_some_and(|next| next.is_ascii_whitespace() || *next == b'>' || *next == b'/')
}

/// The end (index of `>`) of the tag starting at `start`, quotes respected.
fn tag_end(html: &str, start: usize) -> Option<usize> {
    let mut quote = None;
    for (offset, byte) in html.as_bytes()[start..].iter().enumerate() {
        match (quote, byte) {
            (None, b'"' | b'\'') => quote = Some(*byte),
            (Some(open), _) if open == *byte => quote = None,
            (None, b'>') => return Some(start + offset),
            _ => {}
        }
    }
    None
}

/// The value span (without quotes) of the `href` attribute inside the tag
/// `html[start..end]`.
fn href_span(html: &str, start: usize, end: usize) -> Option<(usize, usize)> {
    let tag = &html.as_bytes()[..end];
    let mut index = start + 2;
    while index < end {
        let byte = tag[index];
        if byte == b'"' || byte == b'\'' {
            // Skip a quoted value of another attribute.
            let close = tag[index + 1..].iter().position(|b| *b == byte)?;
            index += close + 2;
            continue;
        }
        let boundary = tag[index - 1].is_ascii_whitespace();
        if boundary && tag.get(index..index + 4).is_some_and(|name| name.eq_ignore_ascii_case(b"href")) {
            let mut cursor = index + 4;
            while cursor < end && tag[cursor].is_ascii_whitespace() {
                cursor += 1;
            }
            if tag.get(cursor) != Some(&b'=') {
                index += 4;
                continue;
            }
            cursor += 1;
            while cursor < end && tag[cursor].is_ascii_whitespace() {
                cursor += 1;
            }
            return match tag.get(cursor) {
                Some(quote @ (b'"' | b'\'')) => {
                    let close = tag[cursor + 1..end].iter().position(|b| b == quote)?;
                    Some((cursor + 1, cursor + 1 + close))
                }
                Some(_) => {
                    let len = tag[cursor..end].iter().position(|b| b.is_ascii_whitespace()).unwrap_or(end - cursor);
                    Some((cursor, cursor + len))
                }
                None => None,
            };
        }
        index += 1;
    }
    None
}

/// Rewrites the `href` of every `<a>` tag: `rewrite` gets the decoded URL
/// and returns the new one (unescaped), or `None` to keep the link.
pub fn rewrite_links<E>(html: &str, mut rewrite: impl FnMut(&str) -> Result<Option<String>, E>) -> Result<String, E> {
    let mut out = String::with_capacity(html.len() + 256);
    let mut copied = 0;
    let mut search = 0;
    while let Some(found) = html[search..].find('<') {
        let start = search + found;
        search = start + 1;
        if !tag_at(html, start, "a") {
            continue;
        }
        let Some(end) = tag_end(html, start) else { break };
        search = end + 1;
        let Some((value_start, value_end)) = href_span(html, start, end) else { continue };
        let url = unescape(html[value_start..value_end].trim());
        if let Some(new) = rewrite(&url)? {
            out.push_str(&html[copied..value_start]);
            let quoted = matches!(html.as_bytes()[value_start - 1], b'"' | b'\'');
            let escaped = escape(&new);
            if quoted {
                out.push_str(&escaped);
            } else {
                out.push('"');
                out.push_str(&escaped);
                out.push('"');
            }
            copied = value_end;
        }
    }
    out.push_str(&html[copied..]);
    Ok(out)
}

/// `snippet` inserted before the last `</body>` (any case), or appended.
pub fn insert_before_body_end(html: &str, snippet: &str) -> String {
    let lower = html.to_ascii_lowercase();
    match lower.rfind("</body") {
        Some(at) => format!("{}{snippet}{}", &html[..at], &html[at..]),
        None => format!("{html}{snippet}"),
    }
}

/// Elements whose content is not text a reader sees.
const HIDDEN: [&str; 4] = ["head", "style", "script", "title"];
/// Elements that stand apart as paragraphs.
const BLOCKS: [&str; 13] = ["p", "div", "h1", "h2", "h3", "h4", "h5", "h6", "table", "ul", "ol", "blockquote", "hr"];
/// Elements that start a line.
const LINES: [&str; 3] = ["br", "li", "tr"];

/// The plain-text version of an HTML body: tags dropped, paragraphs apart,
/// line breaks and list items on lines of their own, a link as
/// `label (url)`, entities decoded, blank runs collapsed.
pub fn to_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len() / 2);
    let mut index = 0;
    let mut link: Option<String> = None;
    while index < html.len() {
        let Some(found) = html[index..].find('<') else {
            out.push_str(&unescape(&html[index..]));
            break;
        };
        out.push_str(&unescape(&html[index..index + found]));
        let start = index + found;
        let Some(end) = tag_end(html, start) else {
            out.push_str(&unescape(&html[start..]));
            break;
        };
        let tag = &html[start + 1..end];
        let closing = tag.starts_with('/');
        let name: String = tag
            .trim_start_matches('/')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_lowercase();
        index = end + 1;
        if tag.starts_with("!--") {
            // A comment: skip to its end.
            index = html[start..].find("-->").map_or(html.len(), |close| start + close + 3);
            continue;
        }
        if !closing && HIDDEN.contains(&name.as_str()) {
            let close = format!("</{name}");
            index = html[index..].to_ascii_lowercase().find(&close).map_or(html.len(), |at| {
                let after = index + at;
                tag_end(html, after).map_or(html.len(), |end| end + 1)
            });
            continue;
        }
        if name == "a" {
            if closing {
                if let Some(url) = link.take() {
                    out.push_str(&format!(" ({url})"));
                }
            } else {
                link = href_span(html, start, end)
                    .map(|(from, to)| unescape(html[from..to].trim()))
                    .filter(|url| url.starts_with("http://") || url.starts_with("https://"));
            }
        } else if BLOCKS.contains(&name.as_str()) {
            out.push_str("\n\n");
        } else if LINES.contains(&name.as_str()) && !closing {
            out.push('\n');
        }
    }
    tidy(&out)
}

/// Collapses spaces within lines, trims lines and keeps at most one blank
/// line in a row.
fn tidy(text: &str) -> String {
    let mut lines: Vec<String> = Vec::new();
    for line in text.lines() {
        let line = line.split_whitespace().collect::<Vec<_>>().join(" ");
        if line.is_empty() && lines.last().is_none_or(|last| last.is_empty()) {
            continue;
        }
        lines.push(line);
    }
    while lines.last().is_some_and(|last| last.is_empty()) {
        lines.pop();
    }
    lines.join("\n")
}
