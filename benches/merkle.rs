//! Claim-tree benchmarks (run with `cargo bench --bench merkle -- <mode> …`).
//!
//! - `oz N`: the same N leaves as `shared/bench/oz_merkle_bench.js` (leaf i =
//!   sha256("leaf"+i): first 20 bytes the address, last 12 bytes the amount), an OZ
//!   `StandardMerkleTree` over `["address","uint256"]` plus every proof; prints one JSON
//!   line with the root (must equal the JS one) and the time.
//! - `floor N RUNS`: on a 2-thread pool, the keccak floor (3N keccak256 of 64 bytes, split
//!   over both threads) against building an N-leaf OZ tree, interleaved, RUNS times;
//!   prints medians and the ratio.
//! - `distributor N RUNS`: a Uniswap merkle-distributor distribution of N claims (the `oz`
//!   leaves' accounts and amounts), its `parseBalanceMap` JSON with every proof rendered
//!   to a sink RUNS times; prints the median (the pipeline's largest file, its last one
//!   written).

use rayon::prelude::*;
use recoup::claims::{
    build_tree, BalanceEntry, ClaimEntry, ClaimTreeSpec, LeafEncoding, LeafValue,
    StandardMerkleTree, TreeFormat, UniswapDistribution,
};
use recoup::primitives::{keccak256, Address, Amount, B256, U256};
use sha2_010::{Digest, Sha256};
use std::hint::black_box;
use std::time::Instant;

fn oz_bench_leaf(i: usize) -> (Address, U256) {
    let h = Sha256::digest(format!("leaf{i}").as_bytes());
    (
        Address::from_slice(&h[..20]),
        U256::from_be_slice(&h[20..32]),
    )
}

fn values(n: usize) -> Vec<LeafValue> {
    (0..n)
        .into_par_iter()
        .flat_map_iter(|i| {
            let (a, v) = oz_bench_leaf(i);
            [LeafValue::Address(a), LeafValue::Uint(v)]
        })
        .collect()
}

fn enc() -> LeafEncoding {
    LeafEncoding::new(&["address", "uint256"]).unwrap()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn oz(n: usize) {
    let vals = values(n);
    let t0 = Instant::now();
    let tree = StandardMerkleTree::of_flat(enc(), vals, true).unwrap();
    let t_of = t0.elapsed();
    let t1 = Instant::now();
    // Every proof as its own vector, as getProof(i) returns a fresh array.
    let proofs: Vec<Vec<B256>> = (0..n).into_par_iter().map(|i| tree.proof(i)).collect();
    let t_proofs = t1.elapsed();
    let total_len: usize = proofs.iter().map(Vec::len).sum();
    let total = t0.elapsed();
    println!(
        "{{\"N\":{n},\"root\":\"{}\",\"of_ms\":{:.2},\"getProof_all_ms\":{:.2},\"total_ms\":{:.2},\"avg_proof_len\":{:.2},\"threads\":{}}}",
        tree.root(),
        t_of.as_secs_f64() * 1e3,
        t_proofs.as_secs_f64() * 1e3,
        total.as_secs_f64() * 1e3,
        total_len as f64 / n as f64,
        rayon::current_num_threads()
    );
    black_box(proofs);
}

fn floor(n: usize, runs: usize) {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    pool.install(|| {
        let vals = values(n);
        let entries: Vec<ClaimEntry> = (0..n)
            .into_par_iter()
            .map(|i| {
                let (a, v) = oz_bench_leaf(i);
                ClaimEntry { account: a, amount: Amount::new(v) }
            })
            .collect();
        let inputs: Vec<[u8; 64]> = (0..3 * n)
            .map(|i| {
                let mut b = [0u8; 64];
                b[..8].copy_from_slice(&(i as u64).to_le_bytes());
                b
            })
            .collect();
        let spec = ClaimTreeSpec::new(TreeFormat::OzStandard, "bench.json");
        let (mut fl, mut of, mut bt, mut root) = (Vec::new(), Vec::new(), Vec::new(), B256::ZERO);
        for _ in 0..runs + 1 {
            // Floor: 3N keccak256 of 64 bytes, the hashes an N-leaf OZ tree needs (2 per
            // leaf, 1 per internal node), split evenly over the two threads.
            let t = Instant::now();
            let x = inputs.par_chunks(inputs.len().div_ceil(2)).map(|c| c.iter().fold(B256::ZERO, |acc, b| acc ^ keccak256(b))).reduce(|| B256::ZERO, |a, b| a ^ b);
            fl.push(t.elapsed().as_secs_f64());
            black_box(x);
            // StandardMerkleTree::of over typed values (clone excluded from the timing).
            let v = vals.clone();
            let t = Instant::now();
            let tree = StandardMerkleTree::of_flat(enc(), v, true).unwrap();
            of.push(t.elapsed().as_secs_f64());
            root = tree.root();
            let t = Instant::now();
            drop(black_box(tree));
            let _ = t;
            // The pipeline entry point: ClaimEntry rows → canonical order → tree.
            let t = Instant::now();
            let built = build_tree(&spec, &entries).unwrap();
            bt.push(t.elapsed().as_secs_f64());
            assert_eq!(built.root(), root);
            drop(black_box(built));
        }
        // Drop the warm-up round.
        let (fl, of, bt) = (median(fl[1..].to_vec()), median(of[1..].to_vec()), median(bt[1..].to_vec()));
        println!(
            "{{\"N\":{n},\"runs\":{runs},\"threads\":2,\"root\":\"{root}\",\"keccak_floor_s\":{fl:.4},\"of_s\":{of:.4},\"of_over_floor\":{:.3},\"build_tree_s\":{bt:.4},\"build_tree_over_floor\":{:.3}}}",
            of / fl,
            bt / fl
        );
    });
}

fn distributor(n: usize, runs: usize) {
    let entries: Vec<BalanceEntry> = (0..n)
        .into_par_iter()
        .map(|i| {
            let (account, v) = oz_bench_leaf(i);
            BalanceEntry {
                account,
                amount: Amount::new(v | U256::from(1u8)),
                flags: None,
            }
        })
        .collect();
    let d = UniswapDistribution::parse_balance_map(&entries).unwrap();
    let mut times = Vec::new();
    for _ in 0..runs + 1 {
        let t = Instant::now();
        d.write_json_to(&mut std::io::sink()).unwrap();
        times.push(t.elapsed().as_secs_f64());
    }
    println!(
        "{{\"N\":{n},\"runs\":{runs},\"root\":\"{}\",\"write_json_s\":{:.4}}}",
        d.root(),
        median(times[1..].to_vec())
    );
}

fn main() {
    // `cargo bench` passes `--bench`; ignore flags.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    match args.first().map(String::as_str) {
        Some("oz") => oz(args.get(1).map_or(100_000, |s| s.parse().expect("N"))),
        Some("distributor") => distributor(
            args.get(1).map_or(1_000_000, |s| s.parse().expect("N")),
            args.get(2).map_or(7, |s| s.parse().expect("RUNS")),
        ),
        Some("floor") => floor(
            args.get(1).map_or(1_000_000, |s| s.parse().expect("N")),
            args.get(2).map_or(7, |s| s.parse().expect("RUNS")),
        ),
        _ => {
            oz(100_000);
            floor(1_000_000, 7);
        }
    }
}
