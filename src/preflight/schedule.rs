//! Size-aware submission order, as pure functions.
//!
//! IMS job time grows with the file's size and at most `max_active_jobs` jobs run at once, so a
//! run is a scheduling problem on identical machines. Submitting the largest files first
//! (longest-processing-time first, LPT) keeps the run close to its lower bound
//! `max(total work / slots, longest job)`: the big jobs start early and the small ones fill the
//! gaps at the end. [`makespan`] replays an order on `slots` machines, for benchmarks and tests.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::time::Duration;

/// Indices of `items` in submission order: known sizes largest first (equal sizes in manifest
/// order), then the items whose size is unknown, in manifest order.
pub fn largest_first<T>(items: &[T], size: impl Fn(&T) -> Option<u64>) -> Vec<usize> {
    let sizes: Vec<Option<u64>> = items.iter().map(size).collect();
    let mut order: Vec<usize> = (0..items.len()).collect();
    // A stable sort: ties keep their manifest order.
    order.sort_by(|&a, &b| match (sizes[a], sizes[b]) {
        (Some(x), Some(y)) => y.cmp(&x),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    });
    order
}

/// No schedule of `jobs` on `slots` parallel slots can finish sooner than this:
/// `max(sum / slots, longest)`. `slots` of 0 counts as 1.
pub fn lower_bound(jobs: &[Duration], slots: usize) -> Duration {
    let slots = u32::try_from(slots.max(1)).unwrap_or(u32::MAX);
    let total: Duration = jobs.iter().sum();
    let longest = jobs.iter().max().copied().unwrap_or_default();
    (total / slots).max(longest)
}

/// How long `jobs`, started in the given order, take on `slots` slots when each job starts as
/// soon as a slot is free (greedy list scheduling). `slots` of 0 counts as 1.
pub fn makespan(jobs: &[Duration], slots: usize) -> Duration {
    let mut free_at: BinaryHeap<Reverse<Duration>> =
        std::iter::repeat_n(Reverse(Duration::ZERO), slots.max(1)).collect();
    let mut end = Duration::ZERO;
    for job in jobs {
        let Some(Reverse(start)) = free_at.pop() else {
            break; // never: the heap always holds `slots` entries
        };
        let done = start + *job;
        end = end.max(done);
        free_at.push(Reverse(done));
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(values: &[u64]) -> Vec<Duration> {
        values.iter().map(|&s| Duration::from_secs(s)).collect()
    }

    #[test]
    fn largest_first_is_stable_and_puts_unknown_sizes_last() {
        let sizes = [Some(5), None, Some(9), Some(5), None, Some(1), Some(9)];
        assert_eq!(largest_first(&sizes, |s| *s), vec![2, 6, 0, 3, 5, 1, 4]);
        assert_eq!(largest_first(&[None::<u64>, None], |s| *s), vec![0, 1]);
        assert!(largest_first(&[] as &[Option<u64>], |s| *s).is_empty());
        // Zero is a known size, sorted among the known ones.
        assert_eq!(
            largest_first(&[None, Some(0), Some(3)], |s| *s),
            vec![2, 1, 0]
        );
    }

    #[test]
    fn lower_bound_is_the_larger_of_average_load_and_longest_job() {
        assert_eq!(
            lower_bound(&secs(&[10, 10, 10, 10]), 2),
            Duration::from_secs(20)
        );
        assert_eq!(
            lower_bound(&secs(&[100, 1, 1]), 2),
            Duration::from_secs(100)
        );
        assert_eq!(lower_bound(&secs(&[3, 3]), 0), Duration::from_secs(6));
        assert_eq!(lower_bound(&[], 4), Duration::ZERO);
        assert_eq!(
            lower_bound(&secs(&[1, 1, 1]), 2),
            Duration::from_millis(1500)
        );
    }

    #[test]
    fn makespan_replays_greedy_list_scheduling() {
        assert_eq!(makespan(&secs(&[4, 3, 3, 2, 2]), 2), Duration::from_secs(8));
        assert_eq!(makespan(&secs(&[2, 2, 3, 3, 4]), 2), Duration::from_secs(9));
        assert_eq!(makespan(&secs(&[5]), 3), Duration::from_secs(5));
        assert_eq!(makespan(&[], 3), Duration::ZERO);
    }

    /// The benchmark shape: 1,000 jobs of 2-100 GiB, job time proportional to size,
    /// 40 slots. Largest-first lands within 5 % of the lower bound; smallest-first (the worst
    /// manifest order) leaves the biggest jobs running alone at the end.
    #[test]
    fn largest_first_is_near_the_bound_on_a_wide_size_distribution() {
        // A fixed linear congruential generator: the same sizes on every run.
        let mut state: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            state >> 33
        };
        let gib = 1u64 << 30;
        let sizes: Vec<u64> = (0..1000).map(|_| 2 * gib + next() % (98 * gib)).collect();
        // One second per GiB.
        let time = |size: u64| Duration::from_secs_f64(size as f64 / gib as f64);
        let jobs: Vec<Duration> = sizes.iter().map(|&s| time(s)).collect();
        let bound = lower_bound(&jobs, 40);

        let lpt: Vec<Duration> = largest_first(&sizes, |s| Some(*s))
            .into_iter()
            .map(|i| jobs[i])
            .collect();
        let lpt_span = makespan(&lpt, 40);
        assert!(lpt_span >= bound);
        assert!(
            lpt_span.as_secs_f64() <= bound.as_secs_f64() * 1.05,
            "largest first {lpt_span:?}, bound {bound:?}"
        );

        let mut ascending = jobs.clone();
        ascending.sort();
        assert!(makespan(&ascending, 40) > lpt_span);
    }
}
