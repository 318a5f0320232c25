//! A channel's raw samples, addressed by absolute index and kept in fixed pages, so what a
//! stream holds is what its windows still need: no deque doubling when a backlog keeps a
//! queued window's samples a little longer, and no capacity left behind after it.

use std::collections::VecDeque;

/// Samples per page (4 KiB of f32): few enough allocations, little kept beyond the need.
const PAGE: usize = 1024;

/// Raw f32 samples from absolute index `offset` on.
#[derive(Debug, Default)]
pub(crate) struct RawSamples {
    /// Absolute index of `pages[0][0]` (a multiple of [`PAGE`]).
    offset: usize,
    /// Full pages, then the one being filled.
    pages: VecDeque<Vec<f32>>,
}

impl RawSamples {
    /// Index one past the last sample.
    pub(crate) fn end(&self) -> usize {
        self.offset
            + self.pages.len().saturating_sub(1) * PAGE
            + self.pages.back().map_or(0, Vec::len)
    }

    pub(crate) fn push(&mut self, x: f32) {
        match self.pages.back_mut() {
            Some(page) if page.len() < PAGE => page.push(x),
            _ => {
                let mut page = Vec::with_capacity(PAGE);
                page.push(x);
                self.pages.push_back(page);
            }
        }
    }

    pub(crate) fn get(&self, index: usize) -> Option<f32> {
        let i = index.checked_sub(self.offset)?;
        self.pages.get(i / PAGE)?.get(i % PAGE).copied()
    }

    /// Samples `first..first + len`; NaN where a sample was dropped or not received yet.
    pub(crate) fn range(&self, first: usize, len: usize) -> Vec<f32> {
        (first..first + len)
            .map(|i| self.get(i).unwrap_or(f32::NAN))
            .collect()
    }

    /// Frees the pages that hold only samples before `index`.
    pub(crate) fn drop_before(&mut self, index: usize) {
        while self.offset + PAGE <= index && self.pages.len() > 1 {
            self.pages.pop_front();
            self.offset += PAGE;
        }
        // A backlog (or a whole recording pushed at once) may have grown the page list.
        if self.pages.capacity() > 2 * self.pages.len().max(64) {
            self.pages.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_addressed_across_pages_and_dropped_by_whole_pages() {
        let mut raw = RawSamples::default();
        for i in 0..3 * PAGE + 10 {
            raw.push(i as f32);
        }
        assert_eq!(raw.end(), 3 * PAGE + 10);
        assert_eq!(raw.get(PAGE + 5), Some((PAGE + 5) as f32));
        assert_eq!(raw.get(3 * PAGE + 10), None);
        raw.drop_before(2 * PAGE - 1);
        // The page holding index 2 * PAGE - 1 stays, whole.
        assert_eq!(raw.get(PAGE - 1), None);
        assert_eq!(raw.get(PAGE), Some(PAGE as f32));
        assert_eq!(raw.end(), 3 * PAGE + 10);
        let tail = raw.range(3 * PAGE + 8, 4);
        assert_eq!(tail[..2], [(3 * PAGE + 8) as f32, (3 * PAGE + 9) as f32]);
        assert!(
            tail[2].is_nan() && tail[3].is_nan(),
            "not received yet: {tail:?}"
        );
    }

    #[test]
    fn dropping_everything_keeps_the_page_being_filled() {
        let mut raw = RawSamples::default();
        for i in 0..PAGE + 3 {
            raw.push(i as f32);
        }
        raw.drop_before(usize::MAX);
        assert_eq!(raw.end(), PAGE + 3);
        assert_eq!(raw.get(PAGE + 2), Some((PAGE + 2) as f32));
        raw.push(7.0);
        assert_eq!(raw.get(PAGE + 3), Some(7.0));
    }
}
