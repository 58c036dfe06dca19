//! The page frame every console page shares: semantic landmarks, a skip link, the navigation,
//! and the console's own stylesheet and script (served by the host: no fonts, scripts or CDNs
//! from elsewhere, so it works air-gapped).

use maud::{DOCTYPE, Markup, html};

use crate::use_cases::caller::Caller;

/// What a page shows.
pub struct Page<'a> {
    pub title: &'a str,
    /// The signed-in person and the CSRF value of their forms (`None` on the sign-in pages).
    pub user: Option<(&'a Caller, &'a str)>,
    pub body: Markup,
}

/// The whole document.
pub fn page(page: Page<'_>) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (page.title) " · Leadtime agent host" }
                link rel="stylesheet" href="/console/assets/console.css";
                script src="/console/assets/live.js" defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/console/tasks" { "Leadtime agent host" }
                    @if let Some((caller, csrf)) = page.user {
                        nav aria-label="Main" {
                            ul {
                                li { a href="/console/tasks" { "Tasks" } }
                                @if caller.is_admin() {
                                    li { a href="/console/admin" { "Admin" } }
                                }
                            }
                        }
                        form.signout method="post" action="/console/sign-out" {
                            input type="hidden" name="csrf" value=(csrf);
                            span.who { "@" (caller.user.handle) }
                            button.link type="submit" { "Sign out" }
                        }
                    }
                }
                main #main tabindex="-1" {
                    (page.body)
                }
            }
        }
    }
}

/// A status as a labelled badge (colour is never the only cue: the word is there).
pub fn badge(status: &str) -> Markup {
    html! { span class={ "badge badge-" (status) } data-status=(status) { (status) } }
}
