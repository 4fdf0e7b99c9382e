//! Random bytes for names and tokens (lease tokens, probe files, renewal jitter), straight
//! from the kernel's getrandom(2).
//!
//! Not aws-lc's RNG: its first use seeds a jitter-entropy pool (30–70 ms of CPU), and
//! `issue` lets key generation pay that off the critical path. Keys are never made here.

use std::fmt::Write as _;

/// Fill `b` from the kernel's RNG.
pub(crate) fn fill(b: &mut [u8]) {
    let mut done = 0;
    while done < b.len() {
        match rustix::rand::getrandom(&mut b[done..], rustix::rand::GetRandomFlags::empty()) {
            Ok(n) => done += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => panic!("getrandom: {e}"),
        }
    }
}

/// `n` random bytes as lower-case hex.
pub(crate) fn hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    fill(&mut b);
    let mut s = String::with_capacity(2 * n);
    for x in b {
        let _ = write!(s, "{x:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn hex_is_fresh_and_sized() {
        let (a, b) = (super::hex(16), super::hex(16));
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
    }
}
