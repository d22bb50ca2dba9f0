//! Test plugin: public routes. `POST /lead` takes a form-urlencoded or JSON
//! body (email, first_name, last_name) and upserts the contact by email;
//! `GET /pixel.gif` answers a 1×1 GIF and emits a `pixel.open` event whose
//! payload is the request's query string. With config `{"thank_you": true}`
//! each lead also gets a "Thanks" email.

use crm_plugin_sdk::prelude::*;
use crm_plugin_sdk::serde::Deserialize;
use crm_plugin_sdk::serde_json::{self, json};

/// A transparent 1×1 GIF.
pub const PIXEL: [u8; 43] = [
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0x21, 0xf9,
    0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00,
    0x3b,
];

#[derive(Deserialize, Default)]
#[serde(crate = "crm_plugin_sdk::serde", default)]
struct Config {
    thank_you: bool,
}

#[derive(Default)]
pub struct WebForm;

impl Plugin for WebForm {
    fn manifest(&self) -> Manifest {
        Manifest::new("web-form", "0.1.0")
            .description("A public lead form and a tracking pixel")
            .route("POST", "/lead")
            .route("GET", "/pixel.gif")
            .access(ObjectAccess::new("contact").fields(["email", "first_name", "last_name"]).read().create().update())
            .events()
            .outbound("email")
            .config_schema(json!({
                "type": "object",
                "properties": {"thank_you": {"type": "boolean", "default": false}},
                "additionalProperties": false
            }))
    }

    fn http(&self, ctx: &Ctx, request: &HttpRequest) -> HttpResponse {
        let result = match (request.method.as_str(), request.path.as_str()) {
            ("POST", "/lead") => lead(ctx, request),
            ("GET", "/pixel.gif") => pixel(request),
            (_, "/lead") => Ok(HttpResponse::method_not_allowed("POST")),
            (_, "/pixel.gif") => Ok(HttpResponse::method_not_allowed("GET")),
            _ => Ok(HttpResponse::not_found()),
        };
        result.unwrap_or_else(|error| {
            let status = match error.code() {
                None | Some(ErrorCode::Invalid) => 400,
                Some(ErrorCode::Conflict) => 409,
                Some(ErrorCode::Forbidden) => 403,
                Some(ErrorCode::Limit) => 429,
                Some(_) => 503,
            };
            HttpResponse::json(status, &json!({"error": error.message()}))
        })
    }
}

struct Lead {
    email: String,
    first_name: Option<String>,
    last_name: Option<String>,
}

fn parse_lead(request: &HttpRequest) -> Result<Lead> {
    let pairs: Vec<(String, String)> = if request.content_type().as_deref() == Some("application/json") {
        let body: serde_json::Map<String, serde_json::Value> = request.json()?;
        body.into_iter().filter_map(|(key, value)| value.as_str().map(|value| (key, value.to_owned()))).collect()
    } else {
        request.form()?
    };
    let field = |name: &str| {
        pairs.iter().find(|(key, _)| key == name).map(|(_, value)| value.trim().to_owned()).filter(|value| !value.is_empty())
    };
    let email = field("email").ok_or("email is required")?.to_lowercase();
    if !email.contains('@') {
        return Err(format!("'{email}' is not an email address").into());
    }
    Ok(Lead { email, first_name: field("first_name"), last_name: field("last_name") })
}

fn lead(ctx: &Ctx, request: &HttpRequest) -> Result<HttpResponse> {
    let lead = parse_lead(request)?;
    let mut fields = Fields::new();
    if let Some(first_name) = &lead.first_name {
        fields.set("first_name", first_name.as_str());
    }
    if let Some(last_name) = &lead.last_name {
        fields.set("last_name", last_name.as_str());
    }
    let filter = json!({"email": {"eq": lead.email}}).to_string();
    let (status, contact) = match records::first("contact", &filter)? {
        Some(existing) => (200, records::update("contact", &existing.id, fields, Some(existing.version))?),
        None => (201, records::create("contact", fields.with("email", lead.email.as_str()))?),
    };
    info!("lead {} stored as contact {}", lead.email, contact.id);
    if ctx.config::<Config>()?.thank_you {
        let name = lead.first_name.as_deref().unwrap_or("there");
        outbound::send(&Message::email(&lead.email, "Thanks", format!("Hi {name}, thanks for getting in touch!")))?;
    }
    Ok(HttpResponse::json(status, &json!({"id": contact.id, "created": status == 201})))
}

fn pixel(request: &HttpRequest) -> Result<HttpResponse> {
    events::emit("pixel.open", &request.query)?;
    Ok(HttpResponse::new(200).with_header("content-type", "image/gif").with_header("cache-control", "no-store").with_body(PIXEL))
}

register_plugin!(WebForm);

#[cfg(test)]
mod tests {
    use super::*;
    use crm_plugin_sdk::testing::TestHost;

    fn post(host: &TestHost, request: HttpRequest) -> (u16, serde_json::Value) {
        let response = host.http(&WebForm, request).unwrap();
        (response.status, response.json_body().unwrap_or_default())
    }

    #[test]
    fn manifest_is_valid() {
        WebForm.manifest().validate().unwrap();
    }

    #[test]
    fn a_form_post_creates_then_updates_by_email() {
        let host = TestHost::new();
        let form = [("email", "Ada@Math.org"), ("first_name", "Ada"), ("last_name", "Byron")];
        let (status, body) = post(&host, HttpRequest::post("/lead").with_form(form));
        assert_eq!(status, 201, "{body}");
        let id = body["id"].as_str().unwrap().to_owned();
        assert_eq!(host.record("contact", &id).unwrap().text("email"), Some("ada@math.org"));

        let (status, body) =
            post(&host, HttpRequest::post("/lead").with_json(&json!({"email": "ada@math.org", "last_name": "Lovelace"})));
        assert_eq!((status, body["id"].as_str()), (200, Some(id.as_str())));
        let contact = host.record("contact", &id).unwrap();
        assert_eq!((contact.text("first_name"), contact.text("last_name")), (Some("Ada"), Some("Lovelace")));
        assert_eq!(host.records("contact").len(), 1);
        assert!(host.sent().is_empty());
    }

    #[test]
    fn thanks_are_sent_when_configured() {
        let host = TestHost::new();
        host.set_config(json!({"thank_you": true}));
        let (status, _) =
            post(&host, HttpRequest::post("/lead").with_form([("email", "grace@navy.mil"), ("first_name", "Grace")]));
        assert_eq!(status, 201);
        let sent = host.sent();
        assert_eq!(sent.len(), 1);
        assert_eq!((sent[0].message.channel.as_str(), sent[0].message.to.as_str()), ("email", "grace@navy.mil"));
        assert_eq!(sent[0].message.subject, "Thanks");
    }

    #[test]
    fn bad_leads_get_400() {
        let host = TestHost::new();
        assert_eq!(post(&host, HttpRequest::post("/lead").with_form([("first_name", "X")])).0, 400);
        assert_eq!(post(&host, HttpRequest::post("/lead").with_form([("email", "nope")])).0, 400);
        let (status, body) =
            post(&host, HttpRequest::post("/lead").with_header("content-type", "application/json").with_body("{"));
        assert_eq!(status, 400);
        assert!(body["error"].as_str().unwrap().contains("invalid JSON"));
        assert!(host.records("contact").is_empty());
    }

    #[test]
    fn the_pixel_is_a_gif_and_an_event() {
        let host = TestHost::new();
        let response = host.http(&WebForm, HttpRequest::get("/pixel.gif").with_query("c=spring&u=42")).unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(response.header("content-type"), Some("image/gif"));
        assert!(response.body.starts_with(b"GIF89a"));
        assert_eq!(response.body.len(), 43);
        let emitted = host.emitted();
        assert_eq!((emitted[0].name.as_str(), emitted[0].payload.as_str()), ("pixel.open", "c=spring&u=42"));
    }

    #[test]
    fn other_routes_and_methods() {
        let host = TestHost::new();
        assert_eq!(host.http(&WebForm, HttpRequest::get("/nothing")).unwrap().status, 404);
        assert_eq!(host.http(&WebForm, HttpRequest::get("/lead")).unwrap().status, 405);
        // Called directly (as a host that forwards every path would).
        let ctx = host.ctx(&WebForm);
        assert_eq!(WebForm.http(&ctx, &HttpRequest::get("/nothing")).status, 404);
        assert_eq!(WebForm.http(&ctx, &HttpRequest::post("/pixel.gif")).status, 405);
    }
}
