//! Internet checksum arithmetic (RFC 1071 / RFC 1624), shared by the eBPF NAT code and host tests.
//!
//! All functions work on the ones'-complement sum in host order over big-endian 16-bit words,
//! which is how the bytes sit in the packet; callers pass words as read with `u16::from_be_bytes`.

/// Folds a 32-bit accumulator into 16 bits with end-around carry.
#[inline(always)]
pub const fn fold(mut sum: u32) -> u16 {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

/// RFC 1624 eqn. 3 incremental update: `HC' = ~(~HC + ~m + m')` for one 16-bit word.
#[inline(always)]
pub const fn update16(check: u16, old: u16, new: u16) -> u16 {
    let sum = (!check as u32) + (!old as u32) + (new as u32);
    !fold(sum)
}

/// Incremental update for a 32-bit field (an IPv4 address), as two 16-bit words.
#[inline(always)]
pub const fn update32(check: u16, old: u32, new: u32) -> u16 {
    let c = update16(check, (old >> 16) as u16, (new >> 16) as u16);
    update16(c, old as u16, new as u16)
}

/// Incremental update for a 128-bit field (an IPv6 address), as eight 16-bit words.
#[inline(always)]
pub fn update128(mut check: u16, old: &[u8; 16], new: &[u8; 16]) -> u16 {
    let mut i = 0;
    while i < 16 {
        check = update16(
            check,
            u16::from_be_bytes([old[i], old[i + 1]]),
            u16::from_be_bytes([new[i], new[i + 1]]),
        );
        i += 2;
    }
    check
}

/// The ones'-complement difference of one 16-bit word changing from `old` to `new`, to be
/// summed with others and applied once with [`apply`]. (Summing up to 32,768 of them cannot
/// overflow the accumulator.)
#[inline(always)]
pub const fn diff16(old: u16, new: u16) -> u32 {
    (!old as u32) + (new as u32)
}

/// [`diff16`] for a 32-bit field (an IPv4 address, as read with `u32::from_be_bytes`).
#[inline(always)]
pub const fn diff32(old: u32, new: u32) -> u32 {
    diff16((old >> 16) as u16, (new >> 16) as u16) + diff16(old as u16, new as u16)
}

/// [`diff16`] for a 128-bit field (an IPv6 address).
#[inline(always)]
pub fn diff128(old: &[u8; 16], new: &[u8; 16]) -> u32 {
    let mut d = 0u32;
    let mut i = 0;
    while i < 16 {
        d += diff16(
            u16::from_be_bytes([old[i], old[i + 1]]),
            u16::from_be_bytes([new[i], new[i + 1]]),
        );
        i += 2;
    }
    d
}

/// Applies an accumulated difference (sums of [`diff16`]) to a checksum: RFC 1624 eqn. 3 for
/// several words at once, `HC' = ~(~HC + Σ(~m + m'))`.
#[inline(always)]
pub const fn apply(check: u16, diff: u32) -> u16 {
    !fold((!check as u32) + fold(diff) as u32)
}

/// Full checksum of a byte slice (odd length padded with a zero byte), seeded with `initial`.
pub fn checksum(bytes: &[u8], initial: u32) -> u16 {
    let mut sum = initial;
    let mut chunks = bytes.chunks_exact(2);
    for w in &mut chunks {
        sum = sum.wrapping_add(u32::from(u16::from_be_bytes([w[0], w[1]])));
        sum = (sum & 0xffff) + (sum >> 16);
    }
    if let [last] = chunks.remainder() {
        sum = sum.wrapping_add(u32::from(*last) << 8);
    }
    !fold(sum)
}

/// The ones'-complement sum of the TCP/UDP pseudo-header (RFC 793 / RFC 8200 §8.1): both
/// addresses (the first 4 bytes of each for IPv4), the protocol and the segment length.
#[inline(always)]
pub const fn pseudo_header(src: &[u8; 16], dst: &[u8; 16], v6: bool, proto: u8, len: u32) -> u32 {
    let n = if v6 { 16 } else { 4 };
    let mut sum = proto as u32 + (len >> 16) + (len & 0xffff);
    let mut i = 0;
    while i < n {
        sum += u16::from_be_bytes([src[i], src[i + 1]]) as u32;
        sum += u16::from_be_bytes([dst[i], dst[i + 1]]) as u32;
        i += 2;
    }
    sum
}

/// Whether a segment's checksum is right, from the sum of its bytes as the kernel's
/// `bpf_csum_diff` returns it (`csum_partial`: 32-bit words loaded in host order, so on a
/// little-endian host the folded sum is byte-swapped) and its [`pseudo_header`] sum: the sum
/// over pseudo-header and segment, checksum field included, folds to `0xffff`.
#[inline(always)]
pub const fn segment_ok(native_sum: u32, pseudo: u32) -> bool {
    let data = u16::from_be(fold(native_sum)) as u32;
    fold(fold(pseudo) as u32 + data) == 0xffff
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The IPv4 header from RFC 1071 style examples: checksum over a header with the field
    /// zeroed must equal the stored value, and an incremental update must equal a recompute.
    const HDR: [u8; 20] = [
        0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8, 0x00,
        0x01, 0xc0, 0xa8, 0x00, 0xc7,
    ];

    #[test]
    fn full_checksum_matches_known_value() {
        assert_eq!(checksum(&HDR, 0), 0xb861);
    }

    #[test]
    fn incremental_updates_equal_recompute() {
        let cases: &[(&str, [u8; 4])] = &[
            ("private to private", [10, 0, 0, 1]),
            ("all ones", [255, 255, 255, 255]),
            ("zero", [0, 0, 0, 0]),
            ("carry heavy", [0xff, 0x00, 0xff, 0x01]),
        ];
        for (name, new_dst) in cases {
            let base = checksum(&HDR, 0);
            let old = u32::from_be_bytes([HDR[16], HDR[17], HDR[18], HDR[19]]);
            let new = u32::from_be_bytes(*new_dst);
            let mut h = HDR;
            h[16..20].copy_from_slice(new_dst);
            assert_eq!(update32(base, old, new), checksum(&h, 0), "case {name}");
        }
    }

    #[test]
    fn incremental_128_bit_update_equals_recompute() {
        // A pseudo-header-like buffer: two IPv6 addresses and a port pair.
        let mut buf = [0u8; 36];
        buf[..16].copy_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        buf[16..32].copy_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        buf[32..].copy_from_slice(&[0x9c, 0x40, 0x23, 0x28]);
        let base = checksum(&buf, 0);
        let new = [
            0x20, 0x01, 0x0d, 0xb8, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0xab, 0xcd, 0xef,
        ];
        let mut old = [0u8; 16];
        old.copy_from_slice(&buf[16..32]);
        buf[16..32].copy_from_slice(&new);
        assert_eq!(update128(base, &old, &new), checksum(&buf, 0));
    }

    #[test]
    fn accumulated_differences_equal_recompute() {
        // Several words of one header change at once (both addresses and the TTL word).
        type Case = (&'static str, [u8; 4], [u8; 4], [u8; 2]);
        let cases: &[Case] = &[
            ("private", [10, 1, 2, 3], [10, 9, 8, 7], [0x3f, 0x11]),
            ("all ones", [255; 4], [255; 4], [0xff, 0xff]),
            ("zero", [0; 4], [0; 4], [0, 0]),
            (
                "carry heavy",
                [0xff, 0, 0xff, 1],
                [1, 0xff, 0, 0xff],
                [0x01, 0x11],
            ),
        ];
        for (name, src, dst, ttl) in cases {
            let mut h = HDR;
            let base = checksum(&h, 0);
            let mut d = diff32(
                u32::from_be_bytes([h[12], h[13], h[14], h[15]]),
                u32::from_be_bytes(*src),
            );
            d += diff32(
                u32::from_be_bytes([h[16], h[17], h[18], h[19]]),
                u32::from_be_bytes(*dst),
            );
            d += diff16(u16::from_be_bytes([h[8], h[9]]), u16::from_be_bytes(*ttl));
            h[12..16].copy_from_slice(src);
            h[16..20].copy_from_slice(dst);
            h[8..10].copy_from_slice(ttl);
            assert_eq!(apply(base, d), checksum(&h, 0), "case {name}");
        }
    }

    #[test]
    fn accumulated_128_bit_difference_equals_recompute() {
        let mut buf = [0u8; 36];
        buf[..16].copy_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        buf[16..32].copy_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        buf[32..].copy_from_slice(&[0x9c, 0x40, 0x23, 0x28]);
        let base = checksum(&buf, 0);
        let new = [0xff; 16];
        let mut old = [0u8; 16];
        old.copy_from_slice(&buf[..16]);
        buf[..16].copy_from_slice(&new);
        let d = diff128(&old, &new) + diff16(0x9c40, 0x0001);
        buf[32..34].copy_from_slice(&[0x00, 0x01]);
        assert_eq!(apply(base, d), checksum(&buf, 0));
        assert_eq!(apply(base, 0), base, "no change, no difference");
    }

    #[test]
    fn odd_length_is_zero_padded() {
        assert_eq!(checksum(&[0x01], 0), checksum(&[0x01, 0x00], 0));
    }

    /// `csum_partial` as the kernel computes it on a little-endian host: native 32-bit
    /// words, end-around carry.
    fn native_sum(bytes: &[u8]) -> u32 {
        let mut sum = 0u64;
        for w in bytes.chunks_exact(4) {
            sum += u64::from(u32::from_le_bytes([w[0], w[1], w[2], w[3]]));
        }
        while sum >> 32 != 0 {
            sum = (sum & 0xffff_ffff) + (sum >> 32);
        }
        sum as u32
    }

    /// A SYN with a right checksum passes, over IPv4 and IPv6; any flipped bit (in the
    /// segment, or an address the pseudo-header covers) fails.
    #[test]
    fn segment_checksum_verifies_with_the_pseudo_header() {
        let mut v4s = [0u8; 16];
        v4s[..4].copy_from_slice(&[10, 50, 0, 1]);
        let mut v4d = [0u8; 16];
        v4d[..4].copy_from_slice(&[10, 50, 0, 2]);
        let v6s: [u8; 16] = [0xfd, 0x50, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        let v6d: [u8; 16] = [0xfd, 0x50, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
        for (name, src, dst, v6) in [("v4", v4s, v4d, false), ("v6", v6s, v6d, true)] {
            // SYN 40000 → 9000 with an MSS option: 24 bytes.
            let mut seg: [u8; 24] = [
                0x9c, 0x40, 0x23, 0x28, 0, 0, 0x03, 0xe8, 0, 0, 0, 0, 0x60, 0x02, 0xff, 0xff, 0, 0,
                0, 0, 0x02, 0x04, 0x05, 0xb4,
            ];
            let pseudo = pseudo_header(&src, &dst, v6, 6, seg.len() as u32);
            let c = checksum(&seg, pseudo);
            seg[16..18].copy_from_slice(&c.to_be_bytes());
            assert!(
                segment_ok(native_sum(&seg), pseudo),
                "{name}: right checksum"
            );
            for bit in 0..seg.len() * 8 {
                let mut bad = seg;
                bad[bit / 8] ^= 1 << (bit % 8);
                assert!(
                    !segment_ok(native_sum(&bad), pseudo),
                    "{name}: bit {bit} flipped"
                );
            }
            let mut other = src;
            other[3] ^= 1;
            let wrong = pseudo_header(&other, &dst, v6, 6, seg.len() as u32);
            assert!(!segment_ok(native_sum(&seg), wrong), "{name}: other source");
        }
    }
}
