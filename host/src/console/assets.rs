//! The console's stylesheet and its one script, compiled into the host.

use axum::http::header;
use axum::response::IntoResponse;

/// `GET /console/assets/console.css`
pub(super) async fn stylesheet() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        CSS,
    )
}

/// `GET /console/assets/live.js`
pub(super) async fn script() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        LIVE_JS,
    )
}

/// System fonts, readable line lengths, visible focus, one column below 700 px.
const CSS: &str = r#"
:root { --fg: #1b1f24; --muted: #57606a; --line: #d0d7de; --bg: #ffffff; --soft: #f6f8fa; --accent: #0a58ca;
  --ok: #1a7f37; --bad: #cf222e; --warn: #9a6700; font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--fg); background: var(--bg); line-height: 1.5; }
a { color: var(--accent); }
:focus-visible { outline: 3px solid var(--accent); outline-offset: 2px; }
.skip { position: absolute; left: -999px; } .skip:focus { left: 1rem; top: 1rem; background: var(--bg); padding: .5rem; z-index: 2; }
header.top { display: flex; flex-wrap: wrap; gap: 1rem; align-items: center; padding: .75rem 1.25rem; border-bottom: 1px solid var(--line); background: var(--soft); }
header.top .brand { font-weight: 700; text-decoration: none; color: var(--fg); }
header.top nav ul { display: flex; gap: 1rem; list-style: none; margin: 0; padding: 0; }
header.top .signout { margin-left: auto; display: flex; gap: .5rem; align-items: center; }
main { max-width: 72rem; margin: 0 auto; padding: 1.25rem; }
main:focus { outline: none; }
.narrow { max-width: 32rem; }
h1 { font-size: 1.6rem; margin: .25rem 0 1rem; } h2 { font-size: 1.2rem; margin: 1.5rem 0 .5rem; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .5rem; border-bottom: 1px solid var(--line); vertical-align: top; }
label { display: block; font-weight: 600; margin: .75rem 0 .25rem; }
input[type=text], input[type=password], textarea, select { width: 100%; padding: .5rem; font: inherit; border: 1px solid var(--muted); border-radius: 6px; }
textarea { min-height: 6rem; }
button { font: inherit; padding: .45rem 1rem; border-radius: 6px; border: 1px solid var(--accent); background: var(--accent); color: #fff; cursor: pointer; margin-top: .5rem; }
button.secondary, button.link { background: transparent; color: var(--accent); }
button.link { border: none; padding: 0; margin: 0; text-decoration: underline; }
button.danger { background: var(--bad); border-color: var(--bad); }
.help { color: var(--muted); font-size: .9rem; }
.problem { border-left: 4px solid var(--bad); padding: .5rem .75rem; background: #fff0f0; }
.notice { border-left: 4px solid var(--ok); padding: .5rem .75rem; background: #f0fff4; }
.layout { display: grid; grid-template-columns: minmax(0, 2fr) minmax(0, 1fr); gap: 2rem; }
@media (max-width: 700px) { .layout { grid-template-columns: 1fr; } main { padding: .75rem; } th.optional, td.optional { display: none; } }
.description { white-space: pre-wrap; background: var(--soft); padding: .75rem; border-radius: 6px; }
ol.timeline { list-style: none; padding: 0; margin: 0; }
ol.timeline > li { border-left: 2px solid var(--line); padding: .25rem 0 .75rem 1rem; position: relative; }
.meta { color: var(--muted); font-size: .85rem; }
.comment-body { white-space: pre-wrap; }
.mention { font-weight: 600; color: var(--accent); }
article.session { border: 1px solid var(--line); border-radius: 8px; padding: .75rem; margin: .25rem 0; background: var(--bg); }
article.session header { display: flex; flex-wrap: wrap; gap: .5rem; align-items: baseline; }
article.session ol.feed { list-style: none; padding: 0; margin: .5rem 0 0; max-height: 28rem; overflow: auto; }
article.session ol.feed li { padding: .25rem 0; border-top: 1px dashed var(--line); white-space: pre-wrap; overflow-wrap: anywhere; }
.kind { font-size: .75rem; text-transform: uppercase; letter-spacing: .04em; color: var(--muted); margin-right: .5rem; }
.badge { display: inline-block; padding: 0 .5rem; border-radius: 999px; font-size: .8rem; font-weight: 600; border: 1px solid currentColor; }
.badge-done { color: var(--ok); } .badge-failed, .badge-canceled { color: var(--bad); } .badge-running { color: var(--accent); } .badge-queued { color: var(--warn); }
.live { font-size: .8rem; color: var(--muted); }
"#;

/// Follows each unfinished session card over its event stream (`data-stream`), appending
/// activities and updating the status badge as they are committed; announces changes politely
/// to screen readers (the feed is an `aria-live` region). Without JavaScript the page still works:
/// a reload shows the same.
const LIVE_JS: &str = r#"
(function () {
  function follow(card) {
    var url = card.getAttribute('data-stream');
    var after = card.getAttribute('data-last-event');
    if (after) { url += '?lastEventId=' + encodeURIComponent(after); }
    var feed = card.querySelector('ol.feed');
    var badge = card.querySelector('[data-status]');
    var note = card.querySelector('.live');
    var seen = {};
    card.querySelectorAll('ol.feed li[id]').forEach(function (li) { seen[li.id] = true; });
    var source = new EventSource(url);
    if (note) { note.textContent = 'live'; }
    source.addEventListener('activity', function (e) {
      if (seen[e.lastEventId]) { return; }
      seen[e.lastEventId] = true;
      var a = JSON.parse(e.data);
      var li = document.createElement('li');
      li.id = e.lastEventId;
      var kind = document.createElement('span');
      kind.className = 'kind';
      kind.textContent = a.activityType;
      li.appendChild(kind);
      li.appendChild(document.createTextNode(a.body || a.action || ''));
      feed.appendChild(li);
    });
    source.addEventListener('status', function (e) {
      var s = JSON.parse(e.data);
      if (badge) {
        badge.textContent = s.status;
        badge.setAttribute('data-status', s.status);
        badge.className = 'badge badge-' + s.status;
      }
      card.setAttribute('data-session-status', s.status);
      var message = card.querySelector('.status-message');
      if (message) { message.textContent = s.message || ''; }
    });
    source.addEventListener('end', function () {
      source.close();
      if (note) { note.textContent = ''; }
      var cancel = card.querySelector('form.cancel');
      if (cancel) { cancel.remove(); }
    });
  }
  document.addEventListener('DOMContentLoaded', function () {
    if (!window.EventSource) { return; }
    document.querySelectorAll('article.session[data-stream]').forEach(follow);
  });
})();
"#;
