//! The public routes under `/hooks/<tenant>/marketing`: the open pixel,
//! click redirects, the unsubscribe link (each with a signed token in `t`)
//! and the web-to-lead form.
//!
//! A token that does not verify, or names a send record that does not
//! exist, gets 404 and nothing is recorded. Recording an open or a click
//! never stands between the recipient and the pixel or the link: should it
//! fail, the failure is logged and the answer is the same.

use crm_plugin_sdk::prelude::*;

use crate::config::Config;
use crate::engagement;
use crate::form;
use crate::html::escape;
use crate::objects::SEND;
use crate::sequences;
use crate::tracking::{CLICK, OPEN, PIXEL, Token, UNSUBSCRIBE};

pub const LEAD: &str = "/lead";

/// The routes the manifest declares: (method, path).
pub const ROUTES: [(&str, &str); 5] =
    [("GET", OPEN), ("GET", CLICK), ("GET", UNSUBSCRIBE), ("POST", UNSUBSCRIBE), ("POST", LEAD)];

pub fn handle(ctx: &Ctx, request: &HttpRequest) -> HttpResponse {
    let config = match Config::load(ctx) {
        Ok(config) => config,
        Err(error) => {
            error!("routes are unavailable: {error}");
            return HttpResponse::text(503, "this service is not configured correctly");
        }
    };
    match (request.method.as_str(), request.path.as_str()) {
        ("GET", OPEN) => open(request),
        ("GET", CLICK) => click(request),
        ("GET" | "POST", UNSUBSCRIBE) => unsubscribe(&config, request),
        ("POST", LEAD) => form::submit(&config, request),
        (_, OPEN | CLICK) => HttpResponse::method_not_allowed("GET"),
        (_, UNSUBSCRIBE) => HttpResponse::method_not_allowed("GET, POST"),
        (_, LEAD) => HttpResponse::method_not_allowed("POST"),
        _ => HttpResponse::not_found(),
    }
}

/// The verified token of a request, or the answer to give instead.
fn token(request: &HttpRequest) -> Result<Token, HttpResponse> {
    let Some(text) = request.query_param("t") else {
        return Err(HttpResponse::bad_request("t: the link's token is missing"));
    };
    match Token::verify(&text) {
        Ok(Some(token)) => Ok(token),
        Ok(None) => Err(HttpResponse::not_found()),
        Err(error) => {
            warn!("cannot check a tracking token: {error}");
            Err(HttpResponse::text(503, "try again later"))
        }
    }
}

fn pixel() -> HttpResponse {
    HttpResponse::new(200)
        .with_header("content-type", "image/gif")
        .with_header("cache-control", "no-store, max-age=0")
        .with_body(PIXEL)
}

fn open(request: &HttpRequest) -> HttpResponse {
    let send = match token(request) {
        Ok(Token::Open { send }) => send,
        Ok(_) => return HttpResponse::not_found(),
        Err(response) => return response,
    };
    match engagement::open(&send) {
        Ok(true) => pixel(),
        Ok(false) => HttpResponse::not_found(),
        Err(error) => {
            warn!("open of send {send} not recorded: {error}");
            pixel()
        }
    }
}

fn click(request: &HttpRequest) -> HttpResponse {
    let (send, url) = match token(request) {
        Ok(Token::Click { send, url }) => (send, url),
        Ok(_) => return HttpResponse::not_found(),
        Err(response) => return response,
    };
    match engagement::click(&send, &url) {
        Ok(false) => return HttpResponse::not_found(),
        Ok(true) => {}
        Err(error) => warn!("click of send {send} not recorded: {error}"),
    }
    HttpResponse::new(302).with_header("location", url).with_header("cache-control", "no-store")
}

fn page(status: u16, title: &str, message: &str) -> HttpResponse {
    let body = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"><title>{title}</title></head>\
         <body style=\"font-family:sans-serif;max-width:36em;margin:3em auto;padding:0 1em\"><h1>{title}</h1><p>{message}</p></body></html>",
        title = escape(title),
        message = escape(message),
    );
    HttpResponse::new(status)
        .with_header("content-type", "text/html; charset=utf-8")
        .with_header("cache-control", "no-store")
        .with_body(body)
}

/// The consent source an unsubscribe records: `unsubscribe link` and what
/// the message belonged to.
pub fn consent_source(send: &Record) -> String {
    match (send.id("campaign_id"), send.id("sequence_id")) {
        (Some(campaign), _) => format!("unsubscribe link (campaign {campaign})"),
        (None, Some(sequence)) => format!("unsubscribe link (sequence {sequence})"),
        _ => "unsubscribe link".into(),
    }
}

fn unsubscribe(config: &Config, request: &HttpRequest) -> HttpResponse {
    let send_id = match token(request) {
        Ok(Token::Unsubscribe { send }) => send,
        Ok(_) => return HttpResponse::not_found(),
        Err(response) => return response,
    };
    match record_unsubscribe(&send_id) {
        Ok(Some(email)) => page(200, "You are unsubscribed", &format!("{email}: {}", config.unsubscribe_message)),
        Ok(None) => HttpResponse::not_found(),
        Err(error) => {
            warn!("unsubscribe through send {send_id} failed: {error}");
            page(503, "Please try again", "We could not record your request just now. Please open the link again in a moment.")
        }
    }
}

/// Withdraws the contact's email consent, marks the message and ends the
/// contact's sequences. Returns the address, or `None` if the send record
/// is gone.
pub fn record_unsubscribe(send_id: &str) -> Result<Option<String>> {
    let Some(send) = records::get(SEND, send_id)?.filter(|record| !record.deleted) else { return Ok(None) };
    let contact_id = send.id("contact_id").unwrap_or_default().to_owned();
    if let Some(contact) = records::get("contact", &contact_id)?.filter(|record| !record.deleted)
        && contact.bool("email_opt_in") != Some(false)
    {
        let update = Fields::new().with("email_opt_in", false).with("email_opt_in_source", consent_source(&send));
        records::update("contact", &contact_id, update, None)?;
    }
    engagement::unsubscribed(send_id)?;
    sequences::exit_contact(&contact_id, "unsubscribed")?;
    Ok(Some(send.text("email").unwrap_or("Your address").to_owned()))
}
