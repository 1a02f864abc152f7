//! Primitives side by side with the library each replaces or wraps, one thread, same input
//! in the same process: `cargo bench --bench primitives` (env `N`, `RUNS`).
//!
//! - `keccak`: N 64-byte messages (a mapping-slot preimage, a Merkle node) through
//!   `primitives::keccak::keccak256_many_lanes` (eight lanes, whatever the CPU) and through
//!   alloy's `keccak256` one at a time; the digests are compared. The ratio is what
//!   `keccak::lanes_pay` decides on: the batch functions use eight lanes only with
//!   AVX-512F, where they win.
//! - `parse_address`: N lowercase addresses through `primitives::parse_address` (EIP-55
//!   rules) and through alloy's `Address::from_str` (no checksum rules).

use recoup::primitives::keccak::{keccak256_many_lanes, lanes_pay};
use recoup::primitives::{keccak256, parse_address, Address, B256};
use std::time::{Duration, Instant};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ns_each(d: Duration, n: usize) -> f64 {
    d.as_nanos() as f64 / n as f64
}

fn main() {
    let env = |k: &str, d: usize| {
        std::env::var(k)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(d)
    };
    let (n, runs) = (env("N", 3_000_000), env("RUNS", 5));

    let msgs: Vec<[u8; 64]> = (0..n as u64)
        .map(|i| {
            let h = keccak256(i.to_le_bytes());
            let mut m = [0u8; 64];
            m[..32].copy_from_slice(h.as_slice());
            m[63] = 3;
            m
        })
        .collect();
    let (mut scalar, mut lanes) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let t = Instant::now();
        let a: Vec<B256> = msgs.iter().map(keccak256).collect();
        scalar.push(t.elapsed());
        let t = Instant::now();
        let mut b = Vec::new();
        keccak256_many_lanes(&msgs, &mut b);
        lanes.push(t.elapsed());
        assert_eq!(a, b, "eight-lane digests differ from alloy's");
    }
    let (s, l) = (median(scalar), median(lanes));
    println!("keccak256 of {n} 64-byte messages, one thread, median of {runs}:");
    println!(
        "  alloy keccak256, one at a time   {:>7.1} ns a hash",
        ns_each(s, n)
    );
    println!(
        "  keccak256_many, eight lanes      {:>7.1} ns a hash",
        ns_each(l, n)
    );
    println!(
        "  ratio alloy / eight lanes        {:>7.2}",
        s.as_secs_f64() / l.as_secs_f64()
    );
    println!(
        "  this CPU {} AVX-512F: the batch functions hash {}",
        if lanes_pay() { "has" } else { "lacks" },
        if lanes_pay() {
            "eight at a time"
        } else {
            "one at a time with alloy's"
        }
    );

    let texts: Vec<String> = msgs
        .iter()
        .take(n.min(1_000_000))
        .map(|m| format!("{:#x}", Address::from_slice(&m[..20])))
        .collect();
    let (mut ours, mut alloy) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let t = Instant::now();
        let a: Vec<Address> = texts.iter().map(|s| parse_address(s).unwrap()).collect();
        ours.push(t.elapsed());
        let t = Instant::now();
        let b: Vec<Address> = texts.iter().map(|s| s.parse().unwrap()).collect();
        alloy.push(t.elapsed());
        assert_eq!(a, b);
    }
    let (o, a) = (median(ours), median(alloy));
    let m = texts.len();
    println!("parse of {m} lowercase addresses, one thread, median of {runs}:");
    println!(
        "  recoup parse_address (EIP-55)    {:>7.1} ns an address",
        ns_each(o, m)
    );
    println!(
        "  alloy Address::from_str          {:>7.1} ns an address",
        ns_each(a, m)
    );
    println!(
        "  ratio recoup / alloy             {:>7.2}",
        o.as_secs_f64() / a.as_secs_f64()
    );
}
