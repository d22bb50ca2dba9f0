//! Requests to a plugin's public routes and its responses.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// A request to one of the plugin's routes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HttpRequest {
    /// Upper case: `GET`, `POST`, …
    pub method: String,
    /// The path below the plugin's prefix, starting with `/`.
    pub path: String,
    /// The query string without `?`.
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpRequest {
    pub fn new(method: impl Into<String>, path: impl Into<String>) -> HttpRequest {
        HttpRequest { method: method.into(), path: path.into(), ..HttpRequest::default() }
    }

    pub fn get(path: impl Into<String>) -> HttpRequest {
        HttpRequest::new("GET", path)
    }

    pub fn post(path: impl Into<String>) -> HttpRequest {
        HttpRequest::new("POST", path)
    }

    pub fn with_query(mut self, query: impl Into<String>) -> HttpRequest {
        self.query = query.into();
        self
    }

    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> HttpRequest {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> HttpRequest {
        self.body = body.into();
        self
    }

    /// A JSON body with its content type.
    pub fn with_json<T: Serialize + ?Sized>(self, body: &T) -> HttpRequest {
        let body = serde_json::to_vec(body).unwrap_or_default();
        self.with_header("content-type", "application/json").with_body(body)
    }

    /// A form-urlencoded body with its content type.
    pub fn with_form<K: AsRef<str>, V: AsRef<str>>(self, fields: impl IntoIterator<Item = (K, V)>) -> HttpRequest {
        let body = encode_form(fields);
        self.with_header("content-type", "application/x-www-form-urlencoded").with_body(body)
    }

    /// The first header of this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(header, _)| header.eq_ignore_ascii_case(name)).map(|(_, value)| value.as_str())
    }

    /// The media type of the body, without parameters, lower case.
    pub fn content_type(&self) -> Option<String> {
        let value = self.header("content-type")?;
        Some(value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase())
    }

    /// The decoded query parameters, in order.
    pub fn query_params(&self) -> Vec<(String, String)> {
        decode_form(&self.query)
    }

    /// The first query parameter of this name.
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query_params().into_iter().find(|(key, _)| key == name).map(|(_, value)| value)
    }

    pub fn body_text(&self) -> Result<&str> {
        Ok(std::str::from_utf8(&self.body)?)
    }

    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(&self.body).map_err(|error| Error::msg(format!("invalid JSON body: {error}")))
    }

    /// The body decoded as `application/x-www-form-urlencoded`.
    pub fn form(&self) -> Result<Vec<(String, String)>> {
        Ok(decode_form(self.body_text()?))
    }
}

/// The plugin's response to a route request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// An empty response with this status.
    pub fn new(status: u16) -> HttpResponse {
        HttpResponse { status, headers: Vec::new(), body: Vec::new() }
    }

    pub fn text(status: u16, text: impl Into<String>) -> HttpResponse {
        HttpResponse::new(status).with_header("content-type", "text/plain; charset=utf-8").with_body(text.into())
    }

    pub fn json<T: Serialize + ?Sized>(status: u16, body: &T) -> HttpResponse {
        match serde_json::to_vec(body) {
            Ok(body) => HttpResponse::new(status).with_header("content-type", "application/json").with_body(body),
            Err(error) => HttpResponse::text(500, format!("cannot encode the response: {error}")),
        }
    }

    /// 404, what the default `Plugin::http` answers.
    pub fn not_found() -> HttpResponse {
        HttpResponse::text(404, "not found")
    }

    /// 405 with the `allow` header listing the allowed methods.
    pub fn method_not_allowed(allow: &str) -> HttpResponse {
        HttpResponse::text(405, "method not allowed").with_header("allow", allow)
    }

    /// 400 with `{"error": message}`.
    pub fn bad_request(message: impl Into<String>) -> HttpResponse {
        HttpResponse::json(400, &serde_json::json!({ "error": message.into() }))
    }

    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> HttpResponse {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> HttpResponse {
        self.body = body.into();
        self
    }

    /// The first header of this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(header, _)| header.eq_ignore_ascii_case(name)).map(|(_, value)| value.as_str())
    }

    pub fn body_text(&self) -> Result<&str> {
        Ok(std::str::from_utf8(&self.body)?)
    }

    pub fn json_body<T: DeserializeOwned>(&self) -> Result<T> {
        Ok(serde_json::from_slice(&self.body)?)
    }
}

/// Decodes `a=1&b=x+y%21`; a key without `=` has an empty value.
pub fn decode_form(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key), percent_decode(value))
        })
        .collect()
}

/// Encodes pairs as `application/x-www-form-urlencoded`.
pub fn encode_form<K: AsRef<str>, V: AsRef<str>>(fields: impl IntoIterator<Item = (K, V)>) -> String {
    fields
        .into_iter()
        .map(|(key, value)| format!("{}={}", percent_encode(key.as_ref()), percent_encode(value.as_ref())))
        .collect::<Vec<_>>()
        .join("&")
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let escaped = match bytes.get(index..index + 3) {
            Some([b'%', high, low]) => hex(*high).zip(hex(*low)).map(|(high, low)| high * 16 + low),
            _ => None,
        };
        match (bytes[index], escaped) {
            (_, Some(byte)) => {
                out.push(byte);
                index += 3;
            }
            (b'+', None) => {
                out.push(b' ');
                index += 1;
            }
            (byte, None) => {
                out.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => out.push(byte as char),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_decoding() {
        assert_eq!(
            decode_form("email=a%40b.c&name=Ada+Lovelace&flag&=x&bad=%zz%4"),
            vec![
                ("email".into(), "a@b.c".into()),
                ("name".into(), "Ada Lovelace".into()),
                ("flag".into(), String::new()),
                (String::new(), "x".into()),
                ("bad".into(), "%zz%4".into()),
            ]
        );
        let pairs = [("e-mail", "a@b.c"), ("note", "x & y = 100%é")];
        let decoded = decode_form(&encode_form(pairs));
        assert_eq!(decoded, pairs.map(|(k, v)| (k.to_owned(), v.to_owned())));
    }

    #[test]
    fn request_helpers() {
        let request = HttpRequest::post("/lead").with_query("utm=x&id=3").with_form([("email", "a@b.c")]);
        assert_eq!(request.content_type().as_deref(), Some("application/x-www-form-urlencoded"));
        assert_eq!(request.header("Content-Type"), Some("application/x-www-form-urlencoded"));
        assert_eq!(request.query_param("id").as_deref(), Some("3"));
        assert_eq!(request.form().unwrap(), vec![("email".to_owned(), "a@b.c".to_owned())]);
        let request = HttpRequest::post("/lead").with_json(&serde_json::json!({"email": "a@b.c"}));
        let body: serde_json::Value = request.json().unwrap();
        assert_eq!(body["email"], "a@b.c");
        assert!(HttpRequest::post("/").with_body("{").json::<serde_json::Value>().is_err());
    }

    #[test]
    fn response_helpers() {
        let response = HttpResponse::json(201, &serde_json::json!({"id": "x"}));
        assert_eq!(response.header("content-type"), Some("application/json"));
        assert_eq!(response.json_body::<serde_json::Value>().unwrap()["id"], "x");
        assert_eq!(HttpResponse::not_found().status, 404);
        assert_eq!(HttpResponse::method_not_allowed("GET").header("allow"), Some("GET"));
        assert_eq!(HttpResponse::bad_request("no").body_text().unwrap(), r#"{"error":"no"}"#);
    }
}
