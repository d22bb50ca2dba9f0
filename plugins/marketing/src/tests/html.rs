//! HTML helpers: escaping, link rewriting, insertion and the text part.

use crate::html::{escape, insert_before_body_end, rewrite_links, to_text, unescape};

#[test]
fn escapes_and_unescapes() {
    assert_eq!(escape(r#"<a href="x">'&'</a>"#), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
    assert_eq!(unescape("a&amp;b&lt;&gt;&quot;&#39;&#x41;&nbsp;&bogus; & c"), "a&b<>\"'A &bogus; & c");
}

fn rewrite(html: &str) -> String {
    rewrite_links::<()>(html, |url| Ok(url.starts_with("https://").then(|| format!("T[{url}]")))).unwrap()
}

#[test]
fn rewrites_the_href_of_links_only() {
    assert_eq!(
        rewrite(r#"<p><a href="https://a.example/x?y=1&amp;z=2">A</a></p>"#),
        r#"<p><a href="T[https://a.example/x?y=1&amp;z=2]">A</a></p>"#
    );
    assert_eq!(rewrite("<A class='c' HREF='https://b.example'>B</A>"), "<A class='c' HREF='T[https://b.example]'>B</A>");
    assert_eq!(rewrite("<a href=https://c.example/p/q>C</a>"), r#"<a href="T[https://c.example/p/q]">C</a>"#);
    // Attributes that only look like href, other tags and skipped links stay.
    assert_eq!(rewrite(r#"<a data-href="https://d" title="href=x">D</a>"#), r#"<a data-href="https://d" title="href=x">D</a>"#);
    assert_eq!(rewrite(r#"<link href="https://e"><abbr href="https://f">"#), r#"<link href="https://e"><abbr href="https://f">"#);
    assert_eq!(
        rewrite(r##"<a href="mailto:x@y.z">m</a><a href="#top">t</a>"##),
        r##"<a href="mailto:x@y.z">m</a><a href="#top">t</a>"##
    );
    // A broken tag is copied as it is.
    assert_eq!(rewrite("<a href=\"https://g"), "<a href=\"https://g");
    assert_eq!(rewrite("é <a href=\"https://é.example\">é</a>"), "é <a href=\"T[https://é.example]\">é</a>");
}

#[test]
fn inserts_before_the_body_end_or_appends() {
    assert_eq!(insert_before_body_end("<html><BODY>x</BODY></html>", "<i>"), "<html><BODY>x<i></BODY></html>");
    assert_eq!(insert_before_body_end("<p>x</p>", "<i>"), "<p>x</p><i>");
}

#[test]
fn derives_readable_text_from_html() {
    let html = "<html><head><title>T</title><style>p { color: red }</style></head><body>\
        <h1>Spring  news</h1><p>Hello&nbsp;Ada,<br>see <a href=\"https://x.example/a?b=1&amp;c=2\">our offer</a>.</p>\
        <!-- a comment --><ul><li>One</li><li>Two</li></ul><p><a href=\"#top\">top</a></p><script>var x = 1;</script></body></html>";
    assert_eq!(to_text(html), "Spring news\n\nHello Ada,\nsee our offer (https://x.example/a?b=1&c=2).\n\nOne\nTwo\n\ntop");
    assert_eq!(to_text("plain &amp; simple"), "plain & simple");
}
