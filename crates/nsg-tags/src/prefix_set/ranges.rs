//! Set algebra on lists of inclusive ranges, generic over the address width (`u32`, `u128`).
//!
//! Every list these functions take or return is *normalised*: sorted by start, disjoint and
//! non-adjacent (`next.start > prev.end + 1`). Normalised lists have one representation per set,
//! which is what makes [`super::PrefixSet`]'s derived `Eq`/`Hash` mean set equality.
//!
//! The last address (`MAX`) has no successor, so every `+ 1` and `- 1` goes through
//! [`Addr::succ`]/[`Addr::pred`] instead of plain arithmetic.

/// An address as an unsigned integer.
pub(crate) trait Addr: Copy + Ord {
    /// The next address, `None` after the last one.
    fn succ(self) -> Option<Self>;
    /// The previous address, `None` before the first one.
    fn pred(self) -> Option<Self>;
}

impl Addr for u32 {
    fn succ(self) -> Option<Self> {
        self.checked_add(1)
    }
    fn pred(self) -> Option<Self> {
        self.checked_sub(1)
    }
}

impl Addr for u128 {
    fn succ(self) -> Option<Self> {
        self.checked_add(1)
    }
    fn pred(self) -> Option<Self> {
        self.checked_sub(1)
    }
}

/// Normalises ranges given in any order, overlapping or not; a range with `start > end` is empty.
pub(crate) fn normalize<A: Addr>(mut ranges: Vec<(A, A)>) -> Vec<(A, A)> {
    ranges.retain(|&(start, end)| start <= end);
    ranges.sort_unstable();
    coalesce_sorted(ranges)
}

/// Merges overlapping and adjacent ranges of a list sorted by start.
fn coalesce_sorted<A: Addr>(sorted: impl IntoIterator<Item = (A, A)>) -> Vec<(A, A)> {
    let mut out: Vec<(A, A)> = Vec::new();
    for (start, end) in sorted {
        match out.last_mut() {
            // `None` from succ: the previous range runs to the last address and swallows this one.
            Some(last) if !matches!(last.1.succ(), Some(next) if start > next) => {
                last.1 = last.1.max(end);
            }
            _ => out.push((start, end)),
        }
    }
    out
}

/// Whether `x` is in the list, by binary search.
pub(crate) fn contains<A: Addr>(ranges: &[(A, A)], x: A) -> bool {
    let after = ranges.partition_point(|&(start, _)| start <= x);
    after
        .checked_sub(1)
        .and_then(|i| ranges.get(i))
        .is_some_and(|&(_, end)| x <= end)
}

/// `a ∪ b`, by a linear merge.
pub(crate) fn union<A: Addr>(a: &[(A, A)], b: &[(A, A)]) -> Vec<(A, A)> {
    let mut a = a.iter().copied().peekable();
    let mut b = b.iter().copied().peekable();
    let merged = std::iter::from_fn(|| match (a.peek(), b.peek()) {
        (Some(x), Some(y)) if y < x => b.next(),
        (Some(_), _) => a.next(),
        (None, _) => b.next(),
    });
    coalesce_sorted(merged)
}

/// `a \ b`, by a linear sweep.
pub(crate) fn difference<A: Addr>(a: &[(A, A)], b: &[(A, A)]) -> Vec<(A, A)> {
    let mut out = Vec::with_capacity(a.len());
    // Index of the first range of `b` that can still overlap the current range of `a` or a later one.
    let mut first = 0;
    for &(start, end) in a {
        while b.get(first).is_some_and(|&(_, b_end)| b_end < start) {
            first += 1;
        }
        // `rest` is the start of the part of [start, end] not yet cut; `None` once nothing is left.
        let mut rest = Some(start);
        for &(b_start, b_end) in b.iter().skip(first) {
            let Some(from) = rest else { break };
            if b_start > end {
                break;
            }
            if from < b_start {
                if let Some(before) = b_start.pred() {
                    out.push((from, before));
                }
            }
            rest = b_end.succ().filter(|&after| after <= end);
        }
        if let Some(from) = rest {
            out.push((from, end));
        }
    }
    out
}

/// `a ∩ b`, by a linear sweep.
pub(crate) fn intersection<A: Addr>(a: &[(A, A)], b: &[(A, A)]) -> Vec<(A, A)> {
    let mut out = Vec::new();
    let mut a = a.iter().copied().peekable();
    let mut b = b.iter().copied().peekable();
    while let (Some(&(a_start, a_end)), Some(&(b_start, b_end))) = (a.peek(), b.peek()) {
        let (start, end) = (a_start.max(b_start), a_end.min(b_end));
        if start <= end {
            out.push((start, end));
        }
        // Drop the range that ends first: it cannot overlap anything further in the other list.
        if a_end < b_end {
            a.next();
        } else {
            b.next();
        }
    }
    out
}

/// Whether `a ∩ b` is non-empty, without building it.
pub(crate) fn intersects<A: Addr>(a: &[(A, A)], b: &[(A, A)]) -> bool {
    let mut a = a.iter().peekable();
    let mut b = b.iter().peekable();
    while let (Some(&&(a_start, a_end)), Some(&&(b_start, b_end))) = (a.peek(), b.peek()) {
        if a_end < b_start {
            a.next();
        } else if b_end < a_start {
            b.next();
        } else {
            return true;
        }
    }
    false
}

/// Whether `a ⊆ b`. As `b` is normalised, a range of `a` is covered only if one range of `b` covers it.
pub(crate) fn is_subset<A: Addr>(a: &[(A, A)], b: &[(A, A)]) -> bool {
    a.iter().all(|&(start, end)| {
        let after = b.partition_point(|&(b_start, _)| b_start <= start);
        after
            .checked_sub(1)
            .and_then(|i| b.get(i))
            .is_some_and(|&(_, b_end)| end <= b_end)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOP: u32 = u32::MAX;

    #[test]
    fn normalize_merges_overlapping_and_adjacent_and_drops_empty() {
        let got = normalize(vec![
            (10u32, 20),
            (5, 9),
            (30, 40),
            (21, 21),
            (35, 50),
            (7, 3),
        ]);
        assert_eq!(got, vec![(5, 21), (30, 50)]);
    }

    #[test]
    fn normalize_at_the_top_of_the_space_does_not_overflow() {
        assert_eq!(
            normalize(vec![(TOP, TOP), (TOP - 1, TOP - 1)]),
            vec![(TOP - 1, TOP)]
        );
        assert_eq!(
            normalize(vec![(0, TOP), (TOP, TOP), (5, 6)]),
            vec![(0, TOP)]
        );
        let v6 = normalize(vec![(u128::MAX, u128::MAX), (0u128, u128::MAX - 1)]);
        assert_eq!(v6, vec![(0, u128::MAX)]);
    }

    #[test]
    fn contains_checks_range_edges() {
        let r = [(0u32, 0), (10, 20), (TOP, TOP)];
        for (x, want) in [
            (0, true),
            (1, false),
            (9, false),
            (10, true),
            (20, true),
            (21, false),
        ] {
            assert_eq!(contains(&r, x), want, "{x}");
        }
        assert!(contains(&r, TOP));
        assert!(!contains(&r, TOP - 1));
        assert!(!contains::<u32>(&[], 0));
    }

    #[test]
    fn difference_cuts_at_both_ends_of_the_space() {
        assert_eq!(
            difference(&[(0u32, TOP)], &[(0, 0), (TOP, TOP)]),
            vec![(1, TOP - 1)]
        );
        assert_eq!(difference(&[(0u32, TOP)], &[(0, TOP)]), vec![]);
        assert_eq!(
            difference(&[(0u32, TOP)], &[(5, 9)]),
            vec![(0, 4), (10, TOP)]
        );
        // One range of `b` spanning several ranges of `a`.
        assert_eq!(
            difference(&[(0u32, 5), (10, 15), (20, 25)], &[(3, 22)]),
            vec![(0, 2), (23, 25)]
        );
    }

    #[test]
    fn intersection_and_intersects_agree() {
        let a = [(0u32, 5), (10, 15), (TOP, TOP)];
        let b = [(5u32, 10), (TOP - 3, TOP)];
        assert_eq!(intersection(&a, &b), vec![(5, 5), (10, 10), (TOP, TOP)]);
        assert!(intersects(&a, &b));
        assert!(!intersects(&a, &[(6, 9)]));
    }

    #[test]
    fn is_subset_needs_one_covering_range() {
        let b = [(0u32, 5), (7, 10)];
        assert!(is_subset(&[(1, 2), (8, 10)], &b));
        assert!(!is_subset(&[(4, 8)], &b));
        assert!(is_subset::<u32>(&[], &[]));
    }
}
