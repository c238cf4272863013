//! Label Studio's pagination: page numbers from 1, a default and a maximum page size, and 404
//! ("Invalid page.") past the last page, which is how its clients stop iterating.

use serde::Serialize;

use crate::error::{ApiError, ErrorCode};

/// A validated page request.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    /// 1-based page number.
    pub number: i64,
    /// Items per page.
    pub size: i64,
}

impl Page {
    /// Validates `page` and `page_size` (capped at `max`).
    pub fn new(
        page: Option<i64>,
        page_size: Option<i64>,
        default_size: i64,
        max: i64,
    ) -> Result<Self, ApiError> {
        let number = page.unwrap_or(1);
        if number < 1 {
            return Err(ApiError::field(
                ErrorCode::InvalidQuery,
                "page",
                "must be 1 or more",
            ));
        }
        let size = match page_size {
            None => default_size,
            Some(s) if s < 1 => {
                return Err(ApiError::field(
                    ErrorCode::InvalidQuery,
                    "page_size",
                    "must be 1 or more",
                ));
            }
            Some(s) => s.min(max),
        };
        // The offset must fit an i64 (SQL's OFFSET); such a page is past any end anyway.
        if (number - 1).checked_mul(size).is_none() {
            return Err(ApiError::field(
                ErrorCode::InvalidQuery,
                "page",
                "is too large",
            ));
        }
        Ok(Self { number, size })
    }

    /// SQL offset.
    pub fn offset(&self) -> i64 {
        (self.number - 1) * self.size
    }

    /// 404 when the page starts past the end (page 1 of an empty list is fine).
    pub fn check(&self, total: i64) -> Result<(), ApiError> {
        if self.number > 1 && self.offset() >= total {
            return Err(ApiError::new(ErrorCode::InvalidPage, "Invalid page."));
        }
        Ok(())
    }
}

/// Django REST framework's page envelope.
#[derive(Debug, Serialize)]
pub struct DrfPage<T> {
    /// Total items.
    pub count: i64,
    /// Next page URL.
    pub next: Option<String>,
    /// Previous page URL.
    pub previous: Option<String>,
    /// Items.
    pub results: Vec<T>,
}

/// Builds the `next`/`previous` links of a page from the request URI.
pub fn links(uri: &http::Uri, page: Page, total: i64) -> (Option<String>, Option<String>) {
    let path = uri.path();
    let other: Vec<String> = uri
        .query()
        .unwrap_or_default()
        .split('&')
        .filter(|kv| !kv.is_empty() && !kv.starts_with("page="))
        .map(str::to_string)
        .collect();
    let link = |n: i64| {
        let mut q = other.clone();
        q.push(format!("page={n}"));
        format!("{path}?{}", q.join("&"))
    };
    let next = (page.offset() + page.size < total).then(|| link(page.number + 1));
    let previous = (page.number > 1).then(|| link(page.number - 1));
    (next, previous)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn past_the_end_is_invalid() {
        let p = Page::new(Some(3), Some(10), 30, 100).expect("valid");
        assert!(p.check(20).is_err());
        assert!(p.check(21).is_ok());
        assert!(
            Page::new(Some(1), None, 30, 100)
                .expect("valid")
                .check(0)
                .is_ok()
        );
        assert_eq!(
            Page::new(None, Some(1000), 30, 100).expect("valid").size,
            100
        );
        assert!(Page::new(Some(0), None, 30, 100).is_err());
    }

    #[test]
    fn links_keep_other_parameters() {
        let uri: http::Uri = "/api/projects?page=2&page_size=10&title=x"
            .parse()
            .expect("uri");
        let (next, prev) = links(
            &uri,
            Page {
                number: 2,
                size: 10,
            },
            25,
        );
        assert_eq!(
            next.as_deref(),
            Some("/api/projects?page_size=10&title=x&page=3")
        );
        assert_eq!(
            prev.as_deref(),
            Some("/api/projects?page_size=10&title=x&page=1")
        );
    }
}
