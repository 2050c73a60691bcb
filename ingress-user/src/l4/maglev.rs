//! Maglev consistent hashing (Eisenbud et al., NSDI 2016): a lookup table of prime size `M`
//! in which every endpoint owns close to `M / N` slots, and changing the endpoint set moves
//! few slots between the endpoints that stay. The kernel indexes the table with a flow hash.

/// The default table size: prime, and ≥ 100 × the endpoints of typical services.
pub const DEFAULT_SIZE: u32 = ingress_common::limits::MAGLEV_SIZE;

/// Why a table cannot be built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MaglevError {
    /// The size must be prime for every skip value to visit every slot.
    #[error("Maglev table size {0} is not prime")]
    NotPrime(u32),
    /// More endpoints than slots.
    #[error("{endpoints} endpoints do not fit a Maglev table of {size} slots")]
    TooManyEndpoints {
        /// Endpoints given.
        endpoints: usize,
        /// Table size.
        size: u32,
    },
}

/// Whether `n` is prime (trial division; sizes are small).
pub fn is_prime(n: u32) -> bool {
    if n < 2 {
        return false;
    }
    let mut d = 2u32;
    while d.saturating_mul(d) <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 1;
    }
    true
}

/// FNV-1a, 64-bit, with a seed folded in first. Stable across releases and platforms (unlike
/// `std`'s hasher), so tables computed by an upgraded controller match the old ones.
fn fnv1a(seed: u64, bytes: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Builds the table for endpoints identified by `keys` (e.g. `addr:port` bytes). Slot values
/// are indexes into `keys`. The result does not depend on the order of `keys`: callers pass
/// them sorted, and ties are broken by the key itself.
pub fn table<K: AsRef<[u8]>>(keys: &[K], size: u32) -> Result<Vec<u32>, MaglevError> {
    if !is_prime(size) {
        return Err(MaglevError::NotPrime(size));
    }
    if keys.len() > size as usize {
        return Err(MaglevError::TooManyEndpoints {
            endpoints: keys.len(),
            size,
        });
    }
    let m = u64::from(size);
    let mut table = vec![u32::MAX; size as usize];
    if keys.is_empty() {
        return Ok(table);
    }
    let perms: Vec<(u64, u64)> = keys
        .iter()
        .map(|k| {
            let offset = fnv1a(0x5851_f42d_4c95_7f2d, k.as_ref()) % m;
            let skip = fnv1a(0x1405_7b7e_f767_814f, k.as_ref()) % (m - 1) + 1;
            (offset, skip)
        })
        .collect();
    let mut next = vec![0u64; keys.len()];
    let mut filled = 0usize;
    'fill: loop {
        for (i, (offset, skip)) in perms.iter().enumerate() {
            let mut c = (offset + next[i] * skip) % m;
            while table[c as usize] != u32::MAX {
                next[i] += 1;
                c = (offset + next[i] * skip) % m;
            }
            table[c as usize] = u32::try_from(i).expect("endpoint count fits u32");
            next[i] += 1;
            filled += 1;
            if filled == size as usize {
                break 'fill;
            }
        }
    }
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(n: usize) -> Vec<String> {
        (0..n)
            .map(|i| format!("10.0.{}.{}:6379", i / 250, i % 250 + 1))
            .collect()
    }

    #[test]
    fn primes_are_recognised() {
        for (n, prime) in [
            (0, false),
            (1, false),
            (2, true),
            (65537, true),
            (65536, false),
            (4093, true),
            (251, true),
            (253, false),
        ] {
            assert_eq!(is_prime(n), prime, "{n}");
        }
    }

    #[test]
    fn rejects_non_prime_sizes_and_overfull_tables() {
        assert_eq!(table(&keys(2), 100), Err(MaglevError::NotPrime(100)));
        assert_eq!(
            table(&keys(12), 11),
            Err(MaglevError::TooManyEndpoints {
                endpoints: 12,
                size: 11
            })
        );
    }

    #[test]
    fn every_slot_is_owned_and_shares_are_even() {
        // (endpoints, size, max allowed share / ideal share)
        let cases = [
            (1, 251, 1.0),
            (2, 4093, 1.02),
            (3, 4093, 1.03),
            (10, 4093, 1.05),
            (100, 65537, 1.05),
        ];
        for (n, size, tolerance) in cases {
            let t = table(&keys(n), size).expect("table");
            let mut counts = vec![0usize; n];
            for slot in &t {
                assert!((*slot as usize) < n, "slot {slot} unowned for n={n}");
                counts[*slot as usize] += 1;
            }
            let ideal = f64::from(size) / n as f64;
            let max = *counts.iter().max().expect("n > 0") as f64;
            assert!(
                max / ideal <= tolerance,
                "n={n} size={size}: max share {max} vs ideal {ideal}"
            );
        }
    }

    #[test]
    fn removing_an_endpoint_moves_few_other_slots() {
        let size = 4093;
        let before_keys = keys(10);
        let before = table(&before_keys, size).expect("table");
        let mut after_keys = before_keys.clone();
        let removed = after_keys.remove(3);
        let after = table(&after_keys, size).expect("table");
        let mut moved_between_survivors = 0;
        for (b, a) in before.iter().zip(&after) {
            let b_key = &before_keys[*b as usize];
            let a_key = &after_keys[*a as usize];
            if *b_key != removed && b_key != a_key {
                moved_between_survivors += 1;
            }
        }
        // The removed endpoint's ~10% must move; survivors' slots should nearly all stay.
        let share = f64::from(moved_between_survivors) / f64::from(size);
        assert!(
            share < 0.03,
            "{moved_between_survivors} slots ({share:.3}) moved between survivors"
        );
    }

    #[test]
    fn result_is_deterministic() {
        assert_eq!(table(&keys(5), 251), table(&keys(5), 251));
    }
}
