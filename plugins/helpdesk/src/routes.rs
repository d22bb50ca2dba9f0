//! The public routes, under `/hooks/<tenant>/helpdesk/`: survey answers
//! from the links in survey emails. No credentials: a request is trusted
//! only as far as its signed token.
//!
//! - `GET /csat?token=<t>&rating=<1-5>` records a CSAT rating;
//!   `GET /nps?token=<t>&score=<0-10>` an NPS score. Without the answer
//!   parameter the page offers the choices instead of recording.
//! - `POST /csat` and `POST /nps` with a form (or JSON) body `token`,
//!   `rating`/`score` and optional `comment` record the answer with a
//!   comment (the thank-you page has that form).
//! - Answers: `200` and a thank-you page; `400` for a missing token or an
//!   answer out of range; `404` for a token that does not verify (forged,
//!   changed, another tenant's) or a survey that is gone; `405` for `PUT`
//!   and `DELETE`. Pages are HTML, or JSON when the request accepts
//!   `application/json`.

use crm_plugin_sdk::prelude::*;
use crm_plugin_sdk::serde_json::{self, json};

use crate::config::Config;
use crate::surveys::{self, Answered, Kind};
use crate::text::escape_html;

/// The routes the manifest declares: every method on both paths, so that
/// methods other than GET and POST get a proper 405.
pub fn declared() -> Vec<(&'static str, &'static str)> {
    let mut routes = Vec::new();
    for path in ["/csat", "/nps"] {
        for method in ["GET", "POST", "PUT", "DELETE"] {
            routes.push((method, path));
        }
    }
    routes
}

/// Answers one request.
pub fn handle(ctx: &Ctx, request: &HttpRequest) -> HttpResponse {
    let kind = match request.path.as_str() {
        "/csat" => Kind::Csat,
        "/nps" => Kind::Nps,
        _ => return HttpResponse::not_found(),
    };
    let json = request.header("accept").is_some_and(|accept| accept.contains("application/json"));
    let page = Page { json };
    let config = match Config::load(ctx) {
        Ok(config) => config,
        Err(error) => {
            crm_plugin_sdk::error!("survey answer refused: {error}");
            return page.answer(503, "Surveys are unavailable", "Please try again later.", json!({"error": "unavailable"}));
        }
    };
    let result = match request.method.as_str() {
        "GET" => get(ctx, &config, kind, request, page),
        "POST" => post(&config, kind, request, page),
        _ => Ok(HttpResponse::method_not_allowed("GET, POST")),
    };
    result.unwrap_or_else(|error| {
        crm_plugin_sdk::error!("survey answer failed: {error}");
        page.answer(
            500,
            "Something went wrong",
            "Your answer was not recorded. Please try again later.",
            json!({"error": "internal"}),
        )
    })
}

fn get(ctx: &Ctx, config: &Config, kind: Kind, request: &HttpRequest, page: Page) -> Result<HttpResponse> {
    let Some(token) = request.query_param("token").filter(|token| !token.is_empty()) else {
        return Ok(page.bad_request("token: is required"));
    };
    match request.query_param(kind.answer_name()) {
        Some(value) => record(config, kind, &token, &value, None, page),
        None => {
            if surveys::verify(kind, &token)?.is_none() {
                return Ok(page.unknown());
            }
            Ok(page.choices(config, ctx, kind, &token))
        }
    }
}

fn post(config: &Config, kind: Kind, request: &HttpRequest, page: Page) -> Result<HttpResponse> {
    let form: Vec<(String, String)> = if request.content_type().as_deref() == Some("application/json") {
        match request.json::<serde_json::Map<String, serde_json::Value>>() {
            Ok(object) => object
                .into_iter()
                .map(|(key, value)| (key, value.as_str().map(str::to_owned).unwrap_or_else(|| value.to_string())))
                .collect(),
            Err(error) => return Ok(page.bad_request(&error.to_string())),
        }
    } else {
        match request.form() {
            Ok(form) => form,
            Err(_) => return Ok(page.bad_request("the body is not a form")),
        }
    };
    let field = |name: &str| form.iter().find(|(key, _)| key == name).map(|(_, value)| value.clone());
    let Some(token) = field("token").filter(|token| !token.is_empty()) else {
        return Ok(page.bad_request("token: is required"));
    };
    let Some(value) = field(kind.answer_name()) else {
        return Ok(page.bad_request(&format!("{}: is required", kind.answer_name())));
    };
    record(config, kind, &token, &value, field("comment").as_deref(), page)
}

fn record(config: &Config, kind: Kind, token: &str, value: &str, comment: Option<&str>, page: Page) -> Result<HttpResponse> {
    let (low, high) = kind.range();
    let Ok(number) = value.trim().parse::<i64>() else {
        return Ok(page.bad_request(&format!("{}: must be a whole number from {low} to {high}", kind.answer_name())));
    };
    Ok(match surveys::answer(config, kind, token, number, comment, crm_plugin_sdk::clock::now())? {
        Answered::Recorded { survey, ticket, value } => page.thanks(kind, token, &survey, ticket.as_deref(), value),
        Answered::Unknown => page.unknown(),
        Answered::Invalid(message) => page.bad_request(&message),
    })
}

/// How answers are shown: an HTML page, or JSON for API clients.
#[derive(Clone, Copy)]
struct Page {
    json: bool,
}

impl Page {
    fn answer(self, status: u16, title: &str, text: &str, body: serde_json::Value) -> HttpResponse {
        if self.json {
            return HttpResponse::json(status, &body).with_header("cache-control", "no-store");
        }
        self.html(status, title, &format!("<p>{}</p>", escape_html(text)))
    }

    fn html(self, status: u16, title: &str, content: &str) -> HttpResponse {
        let html = format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
             <title>{title}</title></head><body style=\"font-family:sans-serif;max-width:36em;margin:3em auto\">\
             <h1>{title}</h1>{content}</body></html>",
            title = escape_html(title)
        );
        HttpResponse::new(status)
            .with_header("content-type", "text/html; charset=utf-8")
            .with_header("cache-control", "no-store")
            .with_body(html)
    }

    fn bad_request(self, message: &str) -> HttpResponse {
        self.answer(400, "This answer cannot be recorded", message, json!({"error": message}))
    }

    fn unknown(self) -> HttpResponse {
        self.answer(404, "Survey not found", "This survey link is not valid.", json!({"error": "unknown survey link"}))
    }

    fn choices(self, config: &Config, ctx: &Ctx, kind: Kind, token: &str) -> HttpResponse {
        if self.json {
            let links: Vec<serde_json::Value> = kind
                .choices()
                .into_iter()
                .map(|(value, label)| json!({"value": value, "label": label, "url": surveys::link(config, ctx, kind, token, value)}))
                .collect();
            return HttpResponse::json(200, &json!({"choices": links})).with_header("cache-control", "no-store");
        }
        let mut content = String::from("<ul>");
        for (value, label) in kind.choices() {
            let url = surveys::link(config, ctx, kind, token, value);
            content.push_str(&format!("<li><a href=\"{}\">{}</a></li>", escape_html(&url), escape_html(&label)));
        }
        content.push_str("</ul>");
        self.html(200, "Your answer", &content)
    }

    fn thanks(self, kind: Kind, token: &str, survey: &str, ticket: Option<&str>, value: i64) -> HttpResponse {
        if self.json {
            let body = json!({"recorded": true, "kind": kind.as_str(), kind.answer_name(): value, "survey_response_id": survey, "ticket_id": ticket});
            return HttpResponse::json(200, &body).with_header("cache-control", "no-store");
        }
        let form = format!(
            "<p>We recorded your answer: {value}.</p>\
             <form method=\"post\" action=\"{path}\"><input type=\"hidden\" name=\"token\" value=\"{token}\">\
             <input type=\"hidden\" name=\"{name}\" value=\"{value}\">\
             <p><label>Anything you would like to add?<br><textarea name=\"comment\" rows=\"4\" cols=\"40\"></textarea></label></p>\
             <p><button type=\"submit\">Send</button></p></form>",
            path = kind.as_str(),
            token = escape_html(token),
            name = kind.answer_name(),
        );
        self.html(200, "Thank you", &form)
    }
}
