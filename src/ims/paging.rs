//! Paging through `GET /v2/cloudimages`: how many images a page asks for, and where the next
//! page starts. API knowledge, shared by the run's status check and its sweeps.

use super::ImageStatusPage;
use super::types::PageInfo;

/// Images per list page (the API's default is 500).
pub const PAGE_LIMIT: u32 = 1000;

/// Where the next page starts: `page_info.next_marker` when the server sends one; without it
/// (older IMS versions never send `page_info`, and the last page may omit it), after the last
/// image of a page that looks full, i.e. holds [`PAGE_LIMIT`] images or at least the API's
/// default page size of 500 (in case the server caps `limit` silently).
pub fn next_marker(page: &ImageStatusPage) -> Option<String> {
    next_marker_of(
        page.page_info.as_ref(),
        page.images.len(),
        page.images.last().map(|image| image.id.as_str()),
    )
}

/// [`next_marker`] for any page shape: its `page_info`, how many images it holds, and the
/// last one's ID.
pub fn next_marker_of(
    page_info: Option<&PageInfo>,
    count: usize,
    last_id: Option<&str>,
) -> Option<String> {
    if let Some(marker) = page_info
        .and_then(|info| info.next_marker.clone())
        .filter(|m| !m.is_empty())
    {
        return Some(marker);
    }
    let full = count >= PAGE_LIMIT.min(500) as usize;
    full.then(|| last_id.map(str::to_string)).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ims::{ImageStatus, ImageStatusEntry};

    fn page(n: usize, marker: Option<&str>, with_page_info: bool) -> ImageStatusPage {
        let images = (0..n)
            .map(|i| ImageStatusEntry {
                id: format!("id-{i:05}"),
                status: ImageStatus::Queued,
                updated_at: None,
            })
            .collect();
        ImageStatusPage {
            images,
            page_info: with_page_info.then(|| PageInfo {
                next_marker: marker.map(str::to_string),
            }),
        }
    }

    #[test]
    fn next_page_from_the_marker_or_a_full_page() {
        assert_eq!(next_marker(&page(3, Some("m"), true)).as_deref(), Some("m"));
        assert_eq!(next_marker(&page(3, None, true)), None);
        assert_eq!(
            next_marker(&page(3, None, false)),
            None,
            "a short last page"
        );
        assert_eq!(next_marker(&page(0, None, false)), None);
        assert_eq!(
            next_marker(&page(1000, None, false)).as_deref(),
            Some("id-00999"),
            "a full page without page_info"
        );
        assert_eq!(
            next_marker(&page(500, Some(""), true)).as_deref(),
            Some("id-00499")
        );
    }
}
