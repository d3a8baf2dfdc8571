//! Weighted choice of read answers: `answers` distinct nodes drawn in proportion to
//! weight, or every node in weighted random order.
//!
//! Efraimidis–Spirakis sampling without replacement: each candidate draws the key
//! `ln(u) / weight` with `u` uniform in (0, 1]; the largest keys win. The first pick is
//! node `i` with probability `w_i / Σw`, and sorting by key gives a weighted random order.
//! With a few candidates the same order is drawn one node at a time from those left
//! (successive sampling, the same distribution), which needs no logarithm.

use rand::{Rng, RngExt};

/// Picks up to `count` distinct nodes from `candidates` (`(node, weight)`), in proportion
/// to weight; `None` returns every candidate in weighted random order. Candidates with
/// weight 0 are never picked.
pub fn pick<R: Rng + ?Sized>(candidates: &[(usize, u32)], count: Option<usize>, rng: &mut R) -> Vec<usize> {
    let mut picked = Vec::new();
    pick_into(candidates, count, rng, &mut Vec::new(), &mut picked);
    picked
}

/// [`pick`] appending to `picked`, with `keys` as scratch: the fast answer path
/// (`dns::fast`) draws with it into buffers it keeps, allocating nothing per query.
pub fn pick_into<R: Rng + ?Sized>(
    candidates: &[(usize, u32)],
    count: Option<usize>,
    rng: &mut R,
    keys: &mut Vec<(f64, usize)>,
    picked: &mut Vec<usize>,
) {
    let want = count.unwrap_or(usize::MAX);
    if want == 0 {
        return;
    }
    if want == 1 {
        picked.extend(pick_one(candidates, rng));
        return;
    }
    if candidates.len() <= IN_TURN {
        pick_in_turn(candidates, want, rng, picked);
    } else {
        pick_keyed(candidates, want, rng, keys, picked);
    }
}

/// Up to this many candidates, [`pick_into`] draws one at a time from what is left
/// (`pick_in_turn`): a few integer draws instead of a logarithm per candidate and a sort
/// (measured with perf at saturation, `answers = "all"` on two replicas: `ln` and the
/// sort were about a tenth of lagdns's user time).
const IN_TURN: usize = 8;

/// Successive weighted draws without replacement: the same distribution of orders as
/// the keys of [`pick_keyed`] (Efraimidis–Spirakis is successive sampling).
fn pick_in_turn<R: Rng + ?Sized>(candidates: &[(usize, u32)], want: usize, rng: &mut R, picked: &mut Vec<usize>) {
    let mut left = [0u64; IN_TURN];
    for (l, &(_, w)) in left.iter_mut().zip(candidates) {
        *l = u64::from(w);
    }
    let left = &mut left[..candidates.len()];
    for _ in 0..want {
        let Some(i) = draw(left.iter().copied(), rng) else { break };
        picked.push(candidates[i].0);
        left[i] = 0;
    }
}

/// The keyed draw: every candidate's `ln(u) / weight`, the largest `want` in order.
fn pick_keyed<R: Rng + ?Sized>(
    candidates: &[(usize, u32)],
    want: usize,
    rng: &mut R,
    keys: &mut Vec<(f64, usize)>,
    picked: &mut Vec<usize>,
) {
    keys.clear();
    keys.extend(candidates.iter().filter(|(_, w)| *w > 0).map(|&(node, w)| (key(w, rng), node)));
    keys.sort_by(|a, b| b.0.total_cmp(&a.0));
    picked.extend(keys.iter().take(want).map(|&(_, node)| node));
}

/// The common `answers = 1` case: one draw over the summed weights (the same
/// distribution as the largest key: node `i` with probability `w_i / Σw`), no
/// allocation and no logarithm per candidate.
fn pick_one<R: Rng + ?Sized>(candidates: &[(usize, u32)], rng: &mut R) -> Option<usize> {
    draw(candidates.iter().map(|&(_, w)| u64::from(w)), rng).map(|i| candidates[i].0)
}

/// The index of one weight drawn in proportion to it (`None` when they sum to 0, with
/// nothing drawn).
fn draw<R: Rng + ?Sized>(weights: impl Iterator<Item = u64> + Clone, rng: &mut R) -> Option<usize> {
    let total: u64 = weights.clone().sum();
    if total == 0 {
        return None;
    }
    let mut r = rng.random_range(0..total);
    for (i, w) in weights.enumerate() {
        if r < w {
            return Some(i);
        }
        r -= w;
    }
    None
}

/// [`pick`] with `answers = 1` over candidates given as their running weight sums
/// (`cumulative[i]` = the weights of candidates `0..=i`): the same draw and the same
/// candidate as `pick_one`, found by binary search instead of a walk.
pub fn pick_one_cumulative<R: Rng + ?Sized>(cumulative: &[u64], rng: &mut R) -> Option<usize> {
    let total = cumulative.last().copied().unwrap_or(0);
    if total == 0 {
        return None;
    }
    let r = rng.random_range(0..total);
    Some(cumulative.partition_point(|&sum| sum <= r))
}

/// The running sums of the candidates' weights, for [`pick_one_cumulative`].
pub fn cumulative(candidates: &[(usize, u32)]) -> Box<[u64]> {
    candidates.iter().scan(0u64, |sum, &(_, w)| Some(*sum + u64::from(w)).inspect(|&s| *sum = s)).collect()
}

/// `ln(u) / w` for `u` in (0, 1]: larger is better, and ordering matches `u^(1/w)`.
fn key<R: Rng + ?Sized>(weight: u32, rng: &mut R) -> f64 {
    let u = 1.0 - rng.random::<f64>();
    u.ln() / f64::from(weight)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::SeedableRng;

    const DRAWS: usize = 20_000;

    /// How often each node comes first over many seeded draws.
    fn first_counts(candidates: &[(usize, u32)], count: Option<usize>, seed: u64) -> Vec<usize> {
        let mut rng = SmallRng::seed_from_u64(seed);
        let size = candidates.iter().map(|c| c.0).max().unwrap_or(0) + 1;
        let mut counts = vec![0; size];
        for _ in 0..DRAWS {
            if let Some(&first) = pick(candidates, count, &mut rng).first() {
                counts[first] += 1;
            }
        }
        counts
    }

    fn share(count: usize) -> f64 {
        count as f64 / DRAWS as f64
    }

    /// (candidates, count, expected share of first pick per node index)
    type Case<'a> = (&'a [(usize, u32)], Option<usize>, &'a [f64]);

    #[test]
    fn first_pick_is_proportional_to_weight() {
        let cases: &[Case] = &[
            (&[(0, 100), (1, 100)], Some(1), &[0.5, 0.5]),
            (&[(0, 300), (1, 100)], Some(1), &[0.75, 0.25]),
            (&[(0, 1), (1, 0)], Some(1), &[1.0, 0.0]),
            (&[(0, 1), (1, 1), (2, 2)], Some(1), &[0.25, 0.25, 0.5]),
            (&[(0, 300), (1, 100)], None, &[0.75, 0.25]),
            (&[(0, 300), (1, 100), (2, 0)], Some(2), &[0.75, 0.25, 0.0]),
            (&[(4, 10), (7, 30)], Some(1), &[0.0, 0.0, 0.0, 0.0, 0.25, 0.0, 0.0, 0.75]),
        ];
        for (i, (candidates, count, expected)) in cases.iter().enumerate() {
            let counts = first_counts(candidates, *count, 7 + i as u64);
            for (node, want) in expected.iter().enumerate() {
                let got = share(counts[node]);
                assert!((got - want).abs() < 0.02, "case {i} node {node}: share {got}, expected {want}");
            }
        }
    }

    #[test]
    fn never_duplicates_and_never_picks_weight_zero() {
        let candidates = [(0, 5), (1, 0), (2, 50), (3, 500), (4, 1)];
        let mut rng = SmallRng::seed_from_u64(42);
        for count in [Some(1), Some(2), Some(3), Some(4), Some(10), None] {
            for _ in 0..500 {
                let got = pick(&candidates, count, &mut rng);
                let mut sorted = got.clone();
                sorted.sort_unstable();
                sorted.dedup();
                assert_eq!(sorted.len(), got.len(), "duplicate in {got:?}");
                assert!(!got.contains(&1), "weight 0 picked: {got:?}");
                let expected = count.unwrap_or(usize::MAX).min(4);
                assert_eq!(got.len(), expected, "count {count:?}");
            }
        }
    }

    #[test]
    fn count_larger_than_candidates_returns_all_positive() {
        let mut rng = SmallRng::seed_from_u64(1);
        let mut got = pick(&[(3, 1), (9, 2)], Some(5), &mut rng);
        got.sort_unstable();
        assert_eq!(got, vec![3, 9]);
        assert!(pick(&[], Some(1), &mut rng).is_empty());
        assert!(pick(&[(0, 0)], None, &mut rng).is_empty());
        assert!(pick(&[(0, 5)], Some(0), &mut rng).is_empty());
    }

    #[test]
    fn the_cumulative_draw_is_the_walk() {
        let candidates = [(0, 5), (1, 0), (2, 50), (3, 500), (4, 0), (5, 1)];
        let sums = cumulative(&candidates);
        assert_eq!(&sums[..], &[5, 5, 55, 555, 555, 556]);
        for seed in 0..2000 {
            let walked = pick_one(&candidates, &mut SmallRng::seed_from_u64(seed));
            let searched = pick_one_cumulative(&sums, &mut SmallRng::seed_from_u64(seed)).map(|i| candidates[i].0);
            assert_eq!(walked, searched, "seed {seed}");
        }
        assert_eq!(pick_one_cumulative(&cumulative(&[(0, 0)]), &mut SmallRng::seed_from_u64(1)), None);
        assert_eq!(pick_one_cumulative(&[], &mut SmallRng::seed_from_u64(1)), None);
    }

    #[test]
    fn orders_drawn_in_turn_follow_the_keyed_draw() {
        // Weights 3/2/1 (+ a 0): each of the six orders as often drawn in turn as by keys,
        // and as successive sampling says (e.g. 0,1,2: 3/6 × 2/3 = 1/3).
        let candidates = [(0, 3), (1, 2), (2, 1), (3, 0)];
        let orders = |keyed: bool, seed: u64| {
            let mut rng = SmallRng::seed_from_u64(seed);
            let mut counts = std::collections::HashMap::new();
            for _ in 0..DRAWS {
                let mut got = Vec::new();
                if keyed {
                    pick_keyed(&candidates, usize::MAX, &mut rng, &mut Vec::new(), &mut got);
                } else {
                    pick_in_turn(&candidates, usize::MAX, &mut rng, &mut got);
                }
                *counts.entry(got).or_insert(0usize) += 1;
            }
            counts
        };
        let (in_turn, keyed) = (orders(false, 3), orders(true, 4));
        assert_eq!(in_turn.len(), 6, "{in_turn:?}");
        let expected = |o: &[usize]| {
            let mut left: Vec<f64> = candidates.iter().map(|c| f64::from(c.1)).collect();
            o.iter().fold(1.0, |p, &n| {
                let share = left[n] / left.iter().sum::<f64>();
                left[n] = 0.0;
                p * share
            })
        };
        for (order, n) in &in_turn {
            let (a, b, want) = (share(*n), share(keyed.get(order).copied().unwrap_or(0)), expected(order));
            assert!(
                (a - want).abs() < 0.02 && (b - want).abs() < 0.02,
                "{order:?}: in turn {a}, keyed {b}, expected {want}"
            );
        }
    }

    #[test]
    fn many_candidates_are_drawn_by_key() {
        // More than IN_TURN: the keyed draw, still proportional and without repeats.
        let candidates: Vec<(usize, u32)> = (0..12).map(|i| (i, if i == 0 { 11 } else { 1 })).collect();
        let counts = first_counts(&candidates, None, 5);
        assert!((share(counts[0]) - 0.5).abs() < 0.02, "node 0 first: {}", share(counts[0]));
        let got = pick(&candidates, Some(12), &mut SmallRng::seed_from_u64(2));
        let mut sorted = got.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..12).collect::<Vec<_>>());
    }

    #[test]
    fn second_pick_follows_remaining_weight() {
        // Weights 2/1/1: when node 0 is first, nodes 1 and 2 share the second slot evenly;
        // when node 1 is first, node 0 takes the second slot 2/3 of the time.
        let mut rng = SmallRng::seed_from_u64(9);
        let (mut after1, mut zero_second) = (0usize, 0usize);
        for _ in 0..DRAWS {
            let got = pick(&[(0, 2), (1, 1), (2, 1)], Some(2), &mut rng);
            if got[0] == 1 {
                after1 += 1;
                zero_second += usize::from(got[1] == 0);
            }
        }
        let ratio = zero_second as f64 / after1 as f64;
        assert!((ratio - 2.0 / 3.0).abs() < 0.03, "ratio {ratio}");
    }
}
