//! Stable pseudo-random numbers from a seed and a name, for the simulator's reproducible
//! choices (job durations, object sizes).

/// A number in `[0, 1)` from the seed and a string: FNV-1a then a splitmix64 finaliser.
/// Stable across platforms and releases (unlike `std`'s hasher).
pub fn unit_hash(seed: u64, key: &str) -> f64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    for byte in key.bytes() {
        h ^= u64::from(byte);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    (h >> 11) as f64 / (1u64 << 53) as f64
}
